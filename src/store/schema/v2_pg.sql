-- Schema version 2 (PostgreSQL): roster, offline, blocking, private, vcard, last activity,
-- registration log, MUC rooms. Booleans are BIGINT 0/1 as on SQLite, so statements are shared.
-- Text is COLLATE "C" (bytewise, as SQLite compares): the same ORDER BY on both backends.
CREATE TABLE roster_items (
    "user"      TEXT COLLATE "C" NOT NULL,
    contact     TEXT COLLATE "C" NOT NULL,
    name        TEXT,
    sub_to      BIGINT NOT NULL DEFAULT 0,
    sub_from    BIGINT NOT NULL DEFAULT 0,
    ask_out     BIGINT NOT NULL DEFAULT 0,
    pending_in  BIGINT NOT NULL DEFAULT 0,
    approved    BIGINT NOT NULL DEFAULT 0,
    in_roster   BIGINT NOT NULL DEFAULT 1,
    request     TEXT,
    PRIMARY KEY ("user", contact)
);
CREATE TABLE roster_groups (
    "user"  TEXT COLLATE "C" NOT NULL,
    contact TEXT COLLATE "C" NOT NULL,
    grp     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY ("user", contact, grp)
);
CREATE TABLE roster_version (
    "user" TEXT COLLATE "C" PRIMARY KEY,
    ver    BIGINT NOT NULL
);

CREATE TABLE offline_message (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    stamp    TEXT COLLATE "C" NOT NULL,
    sender   TEXT COLLATE "C" NOT NULL,
    stanza   BYTEA NOT NULL,
    lease    BIGINT
);
CREATE INDEX offline_message_user ON offline_message (domain, username, id);

CREATE TABLE blocklist (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (domain, username, jid)
);
CREATE TABLE blocklist_version (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    version  BIGINT NOT NULL,
    PRIMARY KEY (domain, username)
);

CREATE TABLE private_storage (
    domain    TEXT COLLATE "C" NOT NULL,
    username  TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    xml       BYTEA NOT NULL,
    PRIMARY KEY (domain, username, namespace)
);

CREATE TABLE muc_rooms (
    room  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    state TEXT COLLATE "C" NOT NULL
);

CREATE TABLE vcard (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    xml      BYTEA NOT NULL,
    PRIMARY KEY (domain, username)
);

CREATE TABLE last_activity (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    seconds  BIGINT NOT NULL,
    status   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (domain, username)
);
CREATE TABLE last_available (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    resource TEXT COLLATE "C" NOT NULL,
    boot     BIGINT NOT NULL,
    PRIMARY KEY (domain, username, resource)
);

CREATE TABLE register_log (
    ip TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX register_log_ip_at ON register_log (ip, at);
