-- Room reports already applied, by the Idempotency-Key the SFU sends: a report retried after
-- its answer got lost is applied once. Rows older than a day are purged by the lifecycle pass.
CREATE TABLE room_reports (
    id TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
);
CREATE INDEX room_reports_applied_at ON room_reports (applied_at);
