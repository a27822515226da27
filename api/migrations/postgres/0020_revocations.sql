-- What survives an SFU restart or failover: exclusions and the end of a permanent room live
-- here and are checked at /join; revocations are the recent changes every SFU pod polls so
-- that live sessions and unexpired join tokens follow them.

-- Raised when an account's level changes, it is disabled or its password is reset: join
-- tokens carry it (`ep`) and older ones are refused.
ALTER TABLE accounts ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;

-- Someone a moderator excluded, for one occurrence (its start; '' for a permanent room).
-- `address` is a guest's network: other guest IDs from there are refused too.
CREATE TABLE exclusions (
    conference_id TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    identity TEXT NOT NULL,
    address TEXT,
    excluded_at TEXT NOT NULL,
    PRIMARY KEY (conference_id, occurrence, identity)
);

-- A permanent room a moderator ended: only its owner or a moderator opens it again.
CREATE TABLE room_closures (
    conference_id TEXT PRIMARY KEY,
    closed_at TEXT NOT NULL
);

-- Recent revocations (kind: account, excluded, ended), kept a little longer than a join token
-- lives.
CREATE TABLE revocations (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    conference_id TEXT,
    identity TEXT,
    epoch INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX revocations_at ON revocations (at);
