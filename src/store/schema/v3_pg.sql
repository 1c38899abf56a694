-- Version 3: the message archive (XEP-0313) and its preferences. Time ranges use the ids
-- (time-ordered), so `ts` needs no index.
CREATE TABLE mam_message (
    owner     TEXT COLLATE "C" NOT NULL,
    id        BIGINT NOT NULL,
    with_bare TEXT COLLATE "C" NOT NULL,
    with_res  TEXT COLLATE "C" NOT NULL,
    outgoing  BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    stanza    BYTEA NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX mam_message_with ON mam_message (owner, with_bare, id);
CREATE TABLE mam_prefs (
    owner   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    mode    TEXT NOT NULL,
    always  TEXT NOT NULL,
    never   TEXT NOT NULL
);
