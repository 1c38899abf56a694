-- Version 6 (XEP-0357 push): an account's push registrations, one per (app server, node). `form`
-- is the enable's publish-options form, serialized (empty: none); `resource` is the resource of the
-- session that enabled it.
CREATE TABLE push_registration (
    owner    TEXT COLLATE "C" NOT NULL,
    service  TEXT COLLATE "C" NOT NULL,
    node     TEXT COLLATE "C" NOT NULL,
    resource TEXT NOT NULL,
    form     TEXT NOT NULL,
    created  BIGINT NOT NULL,
    PRIMARY KEY (owner, service, node)
);
