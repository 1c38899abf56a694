-- Version 4 (admin API): domains hosted at run time, beside general.hosts.
CREATE TABLE IF NOT EXISTS hosted_domain (
    domain  TEXT NOT NULL PRIMARY KEY,
    added   INTEGER NOT NULL
) WITHOUT ROWID;
