-- Version 6 (XEP-0357 push): an account's push registrations, one per (app server, node). `form`
-- is the enable's publish-options form, serialized (empty: none); `resource` is the resource of the
-- session that enabled it.
CREATE TABLE IF NOT EXISTS push_registration (
    owner    TEXT NOT NULL,
    service  TEXT NOT NULL,
    node     TEXT NOT NULL,
    resource TEXT NOT NULL,
    form     TEXT NOT NULL,
    created  INTEGER NOT NULL,
    PRIMARY KEY (owner, service, node)
) WITHOUT ROWID;
