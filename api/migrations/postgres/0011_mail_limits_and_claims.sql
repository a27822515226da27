-- Mail limits count what each account queued in the last 24 hours; a replica claims a row
-- before delivering it (claimed_by, with next_attempt_at pushed out as the lease), so two API
-- replicas never send the same mail; purges find old delivered rows by status and age.
ALTER TABLE outbox ADD COLUMN account_id TEXT;
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
CREATE INDEX outbox_account ON outbox(account_id, created_at);
CREATE INDEX outbox_created ON outbox(created_at);
CREATE INDEX login_failures_last ON login_failures(last_failure_at);
