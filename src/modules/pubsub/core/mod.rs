//! The sans-IO publish-subscribe core (XEP-0060) shared by PEP (XEP-0163) and the pubsub service.
//!
//! Requests are parsed from an IQ payload into a typed [`Request`]; a [`Node`] holds its
//! configuration, items (oldest first, bounded by `max_items`), affiliations and subscriptions;
//! refusals are [`PubsubError`]s carrying the XEP-0060 application condition; notifications are built
//! by [`event`]. Who may do what is decided from an [`Access`] value the caller computes (PEP: from
//! the roster; the service: from affiliations), so nothing here does I/O.

pub mod config;
mod error;
pub mod event;
pub mod node;
pub mod request;
mod stored;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_request;

pub use config::{AccessModel, MaxItems, NodeConfig, NotificationType, PublishModel, SendLast};
pub use error::{PubsubAppError, PubsubError};
pub use node::{Access, Affiliation, Item, Node, NodeMeta, Published, SubState, Subscription};
pub use request::{Extras, PublishItem, Request};

/// Namespaces of XEP-0060.
pub mod ns {
    /// Requests.
    pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    /// Owner requests.
    pub const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
    /// Notifications.
    pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    /// Application error conditions.
    pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
    /// FORM_TYPE of the node configuration form.
    pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
    /// Node metadata in a node's disco#info (§5.4).
    pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
    /// FORM_TYPE of publish options.
    pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
    /// FORM_TYPE of subscription options.
    pub const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
}

/// The `pubsub#…` features a service built on this core supports (disco#info, XEP-0060 §10).
pub const FEATURES: &[&str] = &[
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "multi-items",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-only-affiliation",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
];

/// Full feature URIs (`http://jabber.org/protocol/pubsub#NAME`) of [`FEATURES`].
pub fn feature_uris() -> impl Iterator<Item = String> {
    FEATURES.iter().map(|f| format!("{}#{f}", ns::PUBSUB))
}

/// A new item or subscription id: time and randomness, unique in practice.
pub fn new_id() -> String {
    let mut r = [0u8; 6];
    // Only uniqueness matters; on failure the time part alone still nearly always differs.
    let _ = getrandom::getrandom(&mut r);
    let rand: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:x}-{rand}", now_micros())
}

/// Now, in microseconds since the Unix epoch (an item's `published`).
pub fn now_micros() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000
}

/// Bounds a service enforces on every node and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most items a node keeps (`pubsub#max_items` above it is refused; `max` means this).
    pub max_items_per_node: usize,
    /// Largest item accepted, in bytes of its serialized payload (`payload-too-big` past it).
    pub max_item_bytes: usize,
    /// Most nodes one owner may have (`max-nodes-exceeded` past it).
    pub max_nodes_per_owner: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_items_per_node: 256,
            max_item_bytes: 128 * 1024,
            max_nodes_per_owner: 256,
        }
    }
}
