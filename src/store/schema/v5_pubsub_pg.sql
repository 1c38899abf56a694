-- Version 5 (PEP and pubsub): nodes and their items. `service` is the owner's bare JID for PEP,
-- the service's domain for a pubsub service; `meta` is the node's configuration, affiliations and
-- subscriptions as JSON (the store does not interpret it).
CREATE TABLE pubsub_node (
    service TEXT COLLATE "C" NOT NULL,
    node    TEXT COLLATE "C" NOT NULL,
    meta    TEXT NOT NULL,
    PRIMARY KEY (service, node)
);
CREATE TABLE pubsub_item (
    service   TEXT COLLATE "C" NOT NULL,
    node      TEXT COLLATE "C" NOT NULL,
    item_id   TEXT COLLATE "C" NOT NULL,
    publisher TEXT NOT NULL,
    published BIGINT NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (service, node, item_id)
);
