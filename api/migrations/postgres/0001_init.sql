-- Accounts, sessions and login throttling.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    level TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at TEXT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Conferences that have not ended. An ended occurrence moves to the archive; a conference
-- with no occurrence left is deleted, which frees its meeting ID.
CREATE TABLE conferences (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES accounts(id),
    topic TEXT NOT NULL,
    meeting_id TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_at TEXT,
    end_at TEXT,
    time_zone TEXT NOT NULL,
    recurrence TEXT,
    max_participants BIGINT,
    allow_join_without_owner BIGINT NOT NULL,
    media TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    phase TEXT NOT NULL,
    occurrence_start TEXT,
    occurrence_end TEXT,
    started_early TEXT,
    ended_occurrence TEXT,
    participants BIGINT NOT NULL DEFAULT 0,
    assignment_pod TEXT,
    assignment_endpoint TEXT,
    udp_first BIGINT,
    udp_last BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX conferences_owner ON conferences(owner_id);

CREATE TABLE conference_invitees (
    conference_id TEXT NOT NULL REFERENCES conferences(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    PRIMARY KEY (conference_id, email)
);

-- Past occurrences with what is needed to show and repeat them.
CREATE TABLE archive (
    id TEXT PRIMARY KEY,
    conference_id TEXT NOT NULL,
    owner_id TEXT NOT NULL REFERENCES accounts(id),
    topic TEXT NOT NULL,
    meeting_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    recurrence TEXT,
    max_participants BIGINT,
    allow_join_without_owner BIGINT NOT NULL,
    media TEXT NOT NULL,
    invitees TEXT NOT NULL,
    archived_at TEXT NOT NULL
);
CREATE INDEX archive_owner ON archive(owner_id);
CREATE UNIQUE INDEX archive_occurrence ON archive(conference_id, start_at);

-- Who was in which occurrence, as the SFU reports it.
CREATE TABLE attendance (
    id TEXT PRIMARY KEY,
    conference_id TEXT NOT NULL,
    occurrence_start TEXT,
    archive_id TEXT REFERENCES archive(id) ON DELETE CASCADE,
    identity TEXT NOT NULL,
    display_name TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    left_at TEXT
);
CREATE INDEX attendance_conference ON attendance(conference_id, occurrence_start);
CREATE INDEX attendance_archive ON attendance(archive_id);
