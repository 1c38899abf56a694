-- Version 5 (PEP and pubsub): nodes and their items. `service` is the owner's bare JID for PEP,
-- the service's domain for a pubsub service; `meta` is the node's configuration, affiliations and
-- subscriptions as JSON (the store does not interpret it).
CREATE TABLE IF NOT EXISTS pubsub_node (
    service TEXT NOT NULL,
    node    TEXT NOT NULL,
    meta    TEXT NOT NULL,
    PRIMARY KEY (service, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pubsub_item (
    service   TEXT NOT NULL,
    node      TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    publisher TEXT NOT NULL,
    published INTEGER NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (service, node, item_id)
) WITHOUT ROWID;
