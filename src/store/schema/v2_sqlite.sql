-- Schema version 2 (SQLite): roster, offline, blocking, private, vcard, last activity,
-- registration log, MUC rooms. Booleans are INTEGER 0/1.
CREATE TABLE IF NOT EXISTS roster_items (
    "user"      TEXT NOT NULL,
    contact     TEXT NOT NULL,
    name        TEXT,
    sub_to      INTEGER NOT NULL DEFAULT 0,
    sub_from    INTEGER NOT NULL DEFAULT 0,
    ask_out     INTEGER NOT NULL DEFAULT 0,
    pending_in  INTEGER NOT NULL DEFAULT 0,
    approved    INTEGER NOT NULL DEFAULT 0,
    in_roster   INTEGER NOT NULL DEFAULT 1,
    request     TEXT,
    PRIMARY KEY ("user", contact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roster_groups (
    "user"  TEXT NOT NULL,
    contact TEXT NOT NULL,
    grp     TEXT NOT NULL,
    PRIMARY KEY ("user", contact, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roster_version (
    "user" TEXT PRIMARY KEY,
    ver    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS offline_message (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    stamp    TEXT NOT NULL,
    sender   TEXT NOT NULL,
    stanza   BLOB NOT NULL,
    lease    INTEGER
);
CREATE INDEX IF NOT EXISTS offline_message_user ON offline_message (domain, username, id);

CREATE TABLE IF NOT EXISTS blocklist (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    PRIMARY KEY (domain, username, jid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocklist_version (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    version  INTEGER NOT NULL,
    PRIMARY KEY (domain, username)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS private_storage (
    domain    TEXT NOT NULL,
    username  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    xml       BLOB NOT NULL,
    PRIMARY KEY (domain, username, namespace)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS muc_rooms (
    room  TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS vcard (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    xml      BLOB NOT NULL,
    PRIMARY KEY (domain, username)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS last_activity (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    seconds  INTEGER NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (domain, username)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS last_available (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    resource TEXT NOT NULL,
    boot     INTEGER NOT NULL,
    PRIMARY KEY (domain, username, resource)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS register_log (
    ip TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS register_log_ip_at ON register_log (ip, at);
