-- Version 3: the message archive (XEP-0313) and its preferences. A rowid table (rows are appended
-- in time order, so inserts land at the end of its B-tree) with small indexes for the lookups;
-- time ranges use the ids (time-ordered), so `ts` needs no index.
CREATE TABLE IF NOT EXISTS mam_message (
    seq       INTEGER PRIMARY KEY,
    owner     TEXT NOT NULL,
    id        INTEGER NOT NULL,
    with_bare TEXT NOT NULL,
    with_res  TEXT NOT NULL,
    outgoing  INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    stanza    BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS mam_message_owner_id ON mam_message (owner, id);
CREATE INDEX IF NOT EXISTS mam_message_with ON mam_message (owner, with_bare, id);
CREATE TABLE IF NOT EXISTS mam_prefs (
    owner   TEXT NOT NULL PRIMARY KEY,
    mode    TEXT NOT NULL,
    always  TEXT NOT NULL,
    never   TEXT NOT NULL
) WITHOUT ROWID;
