-- Version 7: the archive keyed by integers. Each bare JID an archive names (owners and the other
-- parties) gets a small integer once, in `mam_jid`; an archive row names both by it, so the two
-- indexes hold three integers per row instead of two JIDs' text: about half the bytes, so far fewer
-- index pages written per commit (the indexes' dirty leaves were most of an archive commit's cost).
-- JIDs are never removed from `mam_jid` (an id stays valid for every connection that cached it).
CREATE TABLE mam_jid (
    jid_id INTEGER PRIMARY KEY,
    jid    TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO mam_jid (jid) SELECT owner FROM mam_message ORDER BY seq;
INSERT OR IGNORE INTO mam_jid (jid) SELECT with_bare FROM mam_message ORDER BY seq;
-- Rows are appended in time order (`seq`), so inserts land at the right edge of the table's B-tree.
CREATE TABLE mam_row (
    seq      INTEGER PRIMARY KEY,
    oid      INTEGER NOT NULL,
    id       INTEGER NOT NULL,
    wid      INTEGER NOT NULL,
    with_res TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    stanza   BLOB NOT NULL
);
INSERT INTO mam_row (seq, oid, id, wid, with_res, outgoing, ts, stanza)
    SELECT m.seq, o.jid_id, m.id, w.jid_id, m.with_res, m.outgoing, m.ts, m.stanza
    FROM mam_message m JOIN mam_jid o ON o.jid = m.owner JOIN mam_jid w ON w.jid = m.with_bare
    ORDER BY m.seq;
DROP TABLE mam_message;
-- Every query names the owner: pages and counts by (owner, id), with a contact by
-- (owner, contact, id); time ranges use the ids (time-ordered), so `ts` needs no index.
CREATE UNIQUE INDEX mam_row_owner_id ON mam_row (oid, id);
CREATE INDEX mam_row_with ON mam_row (oid, wid, id);
