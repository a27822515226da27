-- Accounts from a company directory (LDAP, OpenID Connect) beside local ones.
-- `source`: `local`, `ldap` or `oidc`; `external_id`: the directory's stable name for the
-- person (LDAP entry DN, OIDC `issuer|subject`); `directory_checked_at`: when the directory
-- last confirmed the account (sessions of an account it no longer knows end at the next check).
ALTER TABLE accounts ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE accounts ADD COLUMN external_id TEXT;
ALTER TABLE accounts ADD COLUMN directory_checked_at TEXT;
CREATE UNIQUE INDEX accounts_external ON accounts(source, external_id);
