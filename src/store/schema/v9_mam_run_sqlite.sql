-- Version 9: each owner's archive entries packed into runs (see src/store/mam_runs.rs): one row per
-- entry in `mam_entry`, plus its entry in the contact index, made every commit insert four
-- scattered keys per 1:1 message. A run holds consecutive entries of one list — an owner's whole
-- archive (wid 0) or the part with one contact (wid = the contact's `mam_jid` id) — encoded in
-- `data`, `n` of them, ids `first` to `last`. The rows of `mam_entry` are converted by the code
-- that applies this version, which then drops the table.
CREATE TABLE mam_run (
    oid   INTEGER NOT NULL,
    wid   INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last  INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    data  BLOB NOT NULL,
    PRIMARY KEY (oid, wid, first)
) WITHOUT ROWID;
