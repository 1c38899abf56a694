-- Version 11 (XEP-0363 upload quota): the upload slots given to each user, with their sizes, kept
-- for the quota's window (a day) so that a slot request sees what the user was given across every
-- shard and session. Rows older than the window are pruned.
CREATE TABLE IF NOT EXISTS upload_grant (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    granted  INTEGER NOT NULL,
    size     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_grant_user ON upload_grant (domain, username, granted);
CREATE INDEX IF NOT EXISTS upload_grant_time ON upload_grant (granted);
