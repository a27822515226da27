-- The durable outbox: every mail is written here first and delivered by a background worker
-- with retries, so sending never blocks a request and survives restarts. The rows of a
-- conference are its invitation log.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    conference_id TEXT,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    sequence BIGINT,
    snapshot TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_conference ON outbox(conference_id, created_at);
