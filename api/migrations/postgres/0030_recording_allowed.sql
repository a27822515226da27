-- `recording.allowed`: whether moderators of level moderatorPlus may record the conference.
-- Existing conferences keep what they could do before: recording allowed.
ALTER TABLE conferences ADD COLUMN recording_allowed BIGINT NOT NULL DEFAULT 1;
