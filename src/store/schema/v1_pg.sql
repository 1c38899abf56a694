-- Schema version 1 (PostgreSQL): user accounts.
CREATE TABLE users (
    domain     TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    scram      TEXT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT (extract(epoch FROM now())::BIGINT),
    PRIMARY KEY (domain, username)
);
