-- Version 4 (admin API): domains hosted at run time, beside general.hosts.
CREATE TABLE hosted_domain (
    domain  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    added   BIGINT NOT NULL
);
