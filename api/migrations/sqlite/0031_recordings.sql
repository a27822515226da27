-- Recordings of meetings. The SFU writes each track in segments to the file store and reports
-- the start and the stop; the API composes the segments into one file after the stop (or when
-- the SFU pod was lost) and files the recording under the occurrence's archive entry.
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    conference_id TEXT NOT NULL,
    -- The meeting's owner and topic when it was made: who may see it does not depend on the
    -- archive entry (repeating an entry removes it; its recordings stay).
    owner_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    -- The occurrence it was made in (NULL for a permanent room), linked to its archive entry
    -- when the occurrence is archived.
    occurrence_start TEXT,
    archive_id TEXT,
    started_by_identity TEXT NOT NULL,
    started_by_name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    -- recording | stopped | composing | ready | failed
    state TEXT NOT NULL,
    duration_ms INTEGER,
    size_bytes INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- The API replica composing it, until when (another replica takes over after a crash).
    claimed_by TEXT,
    claimed_until TEXT
);
CREATE INDEX recordings_conference ON recordings(conference_id, occurrence_start);
CREATE INDEX recordings_archive ON recordings(archive_id);
CREATE INDEX recordings_state ON recordings(state);
