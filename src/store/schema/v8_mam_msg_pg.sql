-- Version 8: each archived message's stanza stored once, in `mam_msg` keyed by the archive id;
-- the per-owner rows in `mam_entry` refer to it (see v8_mam_msg_sqlite.sql, also for how
-- deletions find the messages no row refers to any more).
CREATE TABLE mam_msg (
    id     BIGINT PRIMARY KEY,
    stanza BYTEA NOT NULL
);
INSERT INTO mam_msg (id, stanza) SELECT DISTINCT ON (id) id, stanza FROM mam_row ORDER BY id;
CREATE TABLE mam_entry (
    oid      BIGINT NOT NULL,
    id       BIGINT NOT NULL,
    wid      BIGINT NOT NULL,
    with_res TEXT COLLATE "C" NOT NULL,
    outgoing BIGINT NOT NULL,
    ts       BIGINT NOT NULL,
    PRIMARY KEY (oid, id)
);
INSERT INTO mam_entry (oid, id, wid, with_res, outgoing, ts)
    SELECT oid, id, wid, with_res, outgoing, ts FROM mam_row;
DROP TABLE mam_row;
CREATE INDEX mam_entry_with ON mam_entry (oid, wid, id);
