-- OpenID Connect login.
-- `oidc_login_states`: a login under way, between the redirect to the provider and its answer:
-- the `state` sent (unique, used once), a hash of the secret in the starting browser's cookie
-- (the answer must come back to the same browser), the nonce and PKCE verifier, the local path
-- to return to, and when it lapses (ten minutes).
CREATE TABLE oidc_login_states (
    state TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX oidc_login_states_expiry ON oidc_login_states(expires_at);
-- The newest refresh token the provider gave for an account (server-side only, never sent to
-- a browser or logged): the check asks the provider with it whether the account still exists.
CREATE TABLE oidc_refresh_tokens (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    refresh_token TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
