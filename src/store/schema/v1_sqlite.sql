-- Schema version 1 (SQLite): user accounts.
CREATE TABLE users (
    domain     TEXT NOT NULL,
    username   TEXT NOT NULL,
    scram      TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (domain, username)
) WITHOUT ROWID;
