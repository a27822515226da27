// Shared by the end-to-end scenarios: Debian's Chromium driven by playwright-core, the
// Conclave the Rust test started (CONCLAVE_URL), screenshots into CONCLAVE_ARTIFACTS.
// Each scenario is a plain Node script that exits non-zero on the first failed assertion.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export { assert };

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run the scenarios through \`cargo build -p conclave && cargo nextest run -p system-tests --test portal\`.`);
    process.exit(2);
  }
  return value;
}

export const BASE = required('CONCLAVE_URL');
export const ADMIN_PASSWORD = required('CONCLAVE_ADMIN_PASSWORD');
export const ARTIFACTS = process.env.CONCLAVE_ARTIFACTS ?? join(tmpdir(), 'conclave-e2e');
await mkdir(ARTIFACTS, { recursive: true });

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

const opened = [];

/**
 * A fresh browser profile (its own cookies and localStorage) with one page. `viewport`
 * defaults to a desktop; pass `{ width: 390, height: 844 }` for a phone.
 */
export async function openBrowser(name, { viewport = { width: 1280, height: 800 }, args = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), `conclave-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    viewport,
    baseURL: BASE,
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  const browser = {
    name,
    context,
    page,
    problems,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
  opened.push(browser);
  return browser;
}

/** Saves a full-page screenshot as `<artifacts>/<name>.png`. */
export async function screenshot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

let stepNumber = 0;
/** Runs one named step and logs it, so a failure says where it happened. */
export async function step(name, body) {
  stepNumber += 1;
  const started = Date.now();
  process.stdout.write(`  step ${stepNumber}: ${name} … `);
  try {
    const result = await body();
    console.log(`ok (${Date.now() - started} ms)`);
    return result;
  } catch (error) {
    console.log('FAILED');
    for (const browser of opened) {
      await screenshot(browser.page, `FAILED-${stepNumber}-${browser.name}`).catch(() => {});
      if (browser.problems.length) console.log(`  ${browser.name}: ${browser.problems.join('\n    ')}`);
    }
    throw error;
  }
}

/** Runs a scenario with a deadline; exits 1 on failure, closing every browser. */
export async function scenario(name, body, { deadlineSeconds = 240 } = {}) {
  console.log(`scenario: ${name}`);
  const timer = setTimeout(() => {
    console.error(`scenario "${name}" did not finish within ${deadlineSeconds} s`);
    process.exit(1);
  }, deadlineSeconds * 1000);
  let failed = false;
  try {
    await body();
  } catch (error) {
    failed = true;
    console.error(error);
  } finally {
    for (const browser of opened) await browser.close().catch(() => {});
    clearTimeout(timer);
  }
  process.exit(failed ? 1 : 0);
}

/** Calls the API from Node (for setting up accounts), logged in with a bearer token. */
export async function apiCall(method, path, body, token) {
  const response = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

/** A bearer token of the `admin` account. */
export async function adminToken() {
  const answer = await apiCall('POST', '/auth/login', { login: 'admin', password: ADMIN_PASSWORD });
  assert.equal(answer.status, 200, `admin login: ${JSON.stringify(answer.body)}`);
  return answer.body.sessionToken;
}

/** Creates an account through the API and returns its login and password. */
export async function createAccount(token, { login, displayName, level = 'audience', email, timeZone = 'Europe/Berlin' }) {
  const password = `pw-${login}-secret-1`;
  const answer = await apiCall('POST', '/users', { login, displayName, email: email ?? `${login}@example.org`, level, password, timeZone }, token);
  assert.equal(answer.status, 201, `create ${login}: ${JSON.stringify(answer.body)}`);
  return { login, password, displayName, id: answer.body.id };
}

/** Logs in through the portal's form. */
export async function logIn(page, login, password) {
  await page.goto('/login');
  await page.getByLabel('Login name').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** Polls `probe` (in the page) until it returns a truthy value; returns that value. */
export async function waitFor(page, probe, arg, { timeout = 20_000, what = 'condition' } = {}) {
  const handle = await page.waitForFunction(probe, arg, { timeout, polling: 200 }).catch((error) => {
    throw new Error(`timed out waiting for ${what}: ${error.message}`);
  });
  return handle.jsonValue();
}

/**
 * What one page receives, per inbound RTP stream of its subscriber connection:
 * `{kind, track (the room's track ID), framesDecoded, packetsReceived, bytesReceived}`.
 * Reads `window.__conclave`, which the meeting page exposes for these tests.
 */
export async function inboundMedia(page) {
  return page.evaluate(async () => (window.__conclave ? window.__conclave.session.inbound() : []));
}

/**
 * Waits until the page decodes video and receives audio, then until both grow again, so
 * media is flowing now, not only once. `video` picks the video streams to watch (by room
 * track ID); by default any. Returns the last sample.
 */
export async function expectMediaFlowing(page, { what = 'media', video = () => true, audio = true, timeout = 30_000 } = {}) {
  const deadline = Date.now() + timeout;
  const sum = (stats) => ({
    frames: stats.filter((s) => s.kind === 'video' && video(s.track)).reduce((n, s) => n + s.framesDecoded, 0),
    packets: stats.filter((s) => s.kind === 'audio').reduce((n, s) => n + s.packetsReceived, 0),
  });
  let first;
  let last;
  while (Date.now() < deadline) {
    last = sum(await inboundMedia(page));
    if (!first && last.frames > 0 && (!audio || last.packets > 0)) first = last;
    else if (first && last.frames > first.frames + 5 && (!audio || last.packets > first.packets + 5)) return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: media did not keep flowing (first ${JSON.stringify(first)}, last ${JSON.stringify(last)})`);
}

/** Waits until the meeting page is admitted to the room. */
export async function inMeeting(page, what = 'the meeting') {
  await waitFor(page, () => window.__conclave?.state().phase === 'joined', undefined, { what: `${what} to be joined`, timeout: 30_000 });
}
