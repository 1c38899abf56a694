-- Version 11 (XEP-0363 upload quota): the upload slots given to each user, with their sizes, kept
-- for the quota's window (a day) so that a slot request sees what the user was given across every
-- shard and session. Grants for one user run under that user's advisory lock. Rows older than the
-- window are pruned.
CREATE TABLE IF NOT EXISTS upload_grant (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    granted  BIGINT NOT NULL,
    size     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_grant_user ON upload_grant (domain, username, granted);
CREATE INDEX IF NOT EXISTS upload_grant_time ON upload_grant (granted);
