-- Version 3: the message archive (XEP-0313) and its preferences.
CREATE TABLE IF NOT EXISTS mam_message (
    owner     TEXT NOT NULL,
    id        INTEGER NOT NULL,
    with_bare TEXT NOT NULL,
    with_res  TEXT NOT NULL,
    outgoing  INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    stanza    BLOB NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mam_message_with ON mam_message (owner, with_bare, id);
CREATE INDEX IF NOT EXISTS mam_message_ts ON mam_message (ts);
CREATE TABLE IF NOT EXISTS mam_prefs (
    owner   TEXT NOT NULL PRIMARY KEY,
    mode    TEXT NOT NULL,
    always  TEXT NOT NULL,
    never   TEXT NOT NULL
) WITHOUT ROWID;
