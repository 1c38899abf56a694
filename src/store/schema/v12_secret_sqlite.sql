-- Version 12: server secrets, generated once and shared by every shard and cluster node (the key of
-- MUC occupant ids, XEP-0421, which must stay the same across restarts and nodes).
CREATE TABLE IF NOT EXISTS server_secret (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
