// A real OpenID Connect provider for Conclave's login tests: npm `oidc-provider` (a certified
// implementation) with a small login page, users from a JSON file, and a few test-only controls
// under /test/ that a real provider has too in some form (rotate the signing key, disable a
// user, change a user's groups) — plus one a real provider never has: sign the next ID tokens
// wrongly (wrong nonce, expired, wrong audience, an unpublished key), with the provider's own
// published key, so the relying party's checks meet a validly signed but wrong token.
//
// Usage: node provider.mjs CONFIG.json
//   CONFIG: { "clients": [ { client_id, client_secret, redirect_uris, post_logout_redirect_uris } ],
//             "users": { "<login>": { "password": "...", "claims": { name, email, zoneinfo, groups, ... } } } }
// Listens on 127.0.0.1 on a free port and prints one JSON line `{"issuer": "http://127.0.0.1:PORT"}`
// on stdout when ready.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, importJWK } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = new Map(Object.entries(config.users ?? {}).map(([login, user]) => [login, { disabled: false, ...user }]));
// The signing keys (one; rotation replaces it).
const keys = [];
// What to do to the ID tokens the token endpoint answers with: null, 'nonce', 'expired',
// 'audience' or 'unknownKey'.
let tamper = null;

async function newKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function loginPage(uid, error) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test provider — sign in</title></head>
<body><h1>Test provider</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="login" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function tamperWith(idToken) {
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let signer = keys[0];
  switch (tamper) {
    case 'nonce': claims.nonce = 'not-the-nonce-that-was-sent'; break;
    case 'expired': claims.iat = now - 3600; claims.exp = now - 1800; break;
    case 'audience': claims.aud = 'some-other-client'; break;
    case 'unknownKey': signer = await newKey(); break;
    default: return idToken;
  }
  const key = await importJWK(signer, 'RS256');
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signer.kid, typ: 'JWT' }).sign(key);
}

function build(issuer) {
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...client,
    })),
    jwks: { keys },
    cookies: { keys: ['test-provider-cookie-key'] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'zoneinfo'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
    },
    // A refresh token for every code grant of a client allowed to refresh (Keycloak's
    // behaviour), without `offline_access`.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // A refresh token outlives the provider's browser session, as at most providers.
    expiresWithSession: async () => false,
    async findAccount(_ctx, sub) {
      const user = users.get(sub);
      // A disabled user is unknown: the refresh grant is refused (invalid_grant).
      if (!user || user.disabled) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, preferred_username: sub, ...user.claims };
        },
      };
    },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
  });
  provider.proxy = false;

  provider.use(async (ctx, next) => {
    const { req, res } = ctx;
    const path = ctx.path;
    if (path.startsWith('/test/') && ctx.method === 'POST') {
      if (path === '/test/rotate') {
        // The old key goes: a login after this can only pass with the new one.
        keys.splice(0, keys.length, await newKey());
        swap();
        ctx.body = { kid: keys[0].kid };
        return;
      }
      if (path === '/test/id-token') {
        tamper = (await readJson(req)).tamper ?? null;
        ctx.body = { tamper };
        return;
      }
      const user = path.match(/^\/test\/users\/([^/]+)$/);
      if (user) {
        const login = decodeURIComponent(user[1]);
        const change = await readJson(req);
        const before = users.get(login) ?? { disabled: false, claims: {} };
        users.set(login, { ...before, ...change, claims: { ...before.claims, ...(change.claims ?? {}) } });
        ctx.body = users.get(login);
        return;
      }
    }
    const interaction = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (interaction) {
      const details = await provider.interactionDetails(req, res);
      if (ctx.method === 'GET' && details.prompt.name === 'consent') {
        // First-party client: consent is given at once, as an administrator's pre-approval.
        const { prompt: { details: missing }, params, session } = details;
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        const grantId = await grant.save();
        ctx.status = 303;
        ctx.redirect(await provider.interactionResult(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true }));
        return;
      }
      if (ctx.method === 'GET') {
        ctx.type = 'html';
        ctx.body = loginPage(details.uid);
        return;
      }
      if (ctx.method === 'POST' && interaction[2]) {
        const form = await readForm(req);
        const login = form.get('login') ?? '';
        const user = users.get(login);
        if (!user || user.password !== form.get('password')) {
          ctx.type = 'html';
          ctx.status = 200;
          ctx.body = loginPage(details.uid, 'Wrong username or password.');
          return;
        }
        if (user.disabled) {
          ctx.type = 'html';
          ctx.body = loginPage(details.uid, 'This account is disabled.');
          return;
        }
        ctx.status = 303;
        ctx.redirect(await provider.interactionResult(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false }));
        return;
      }
    }
    await next();
    if (tamper && ctx.path === '/token' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: await tamperWith(ctx.body.id_token) };
    }
  });
  return provider;
}

let handler = null;
let issuer = null;
// A new provider object with the current keys (oidc-provider reads its keys at construction);
// its stored grants, sessions and tokens live in the module-wide memory adapter and survive.
function swap() {
  handler = build(issuer).callback();
}

keys.push(await newKey());
const server = createServer((req, res) => handler(req, res));
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  swap();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
