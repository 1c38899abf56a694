-- Version 8: each archived message's stanza stored once. A 1:1 message has two archive rows (the
-- sender's and the recipient's) under one archive id; both held the stanza, so every message was
-- written twice. Now the stanza is in `mam_msg`, keyed by the archive id (time-ordered: inserts
-- land at the right edge), and the per-owner rows in `mam_entry` only refer to it.
--
-- A message's rows are at most its sender's and its recipient's, each naming the other as its
-- contact (a room's message: the room's row only). So when rows are deleted, a message is still
-- referred to only if the row (contact, id) remains: that is how deletions find the messages to
-- remove without an index on `mam_entry.id`.
CREATE TABLE mam_msg (
    id     INTEGER PRIMARY KEY,
    stanza BLOB NOT NULL
);
-- Both rows of a message held the same stanza; the first written is kept.
INSERT OR IGNORE INTO mam_msg (id, stanza) SELECT id, stanza FROM mam_row ORDER BY seq;
-- WITHOUT ROWID: one B-tree entry per row, clustered by (owner, id), where v7 had a table row and
-- an index entry for the same key.
CREATE TABLE mam_entry (
    oid      INTEGER NOT NULL,
    id       INTEGER NOT NULL,
    wid      INTEGER NOT NULL,
    with_res TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (oid, id)
) WITHOUT ROWID;
INSERT INTO mam_entry (oid, id, wid, with_res, outgoing, ts)
    SELECT oid, id, wid, with_res, outgoing, ts FROM mam_row ORDER BY oid, id;
DROP TABLE mam_row;
CREATE INDEX mam_entry_with ON mam_entry (oid, wid, id);
