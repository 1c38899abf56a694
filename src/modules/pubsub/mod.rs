//! Publish-subscribe (XEP-0060): the sans-IO core shared by PEP and the pubsub service, and the
//! service `pubsub.@HOST@` (`mod_pubsub`).
//!
//! A node is to the service what a room is to MUC: it lives on one home shard (seeded hash of
//! service and node name) and its subscribers may sit on any shard.
//!
//! - [`service`]: the packet handler of the service's local route, on whichever shard the sender's
//!   stanza is routed; it answers the service itself (disco#info, the default configuration) and
//!   carries requests about a node to the node's home shard as `Run` closures.
//! - [`home`]: the nodes homed on a shard: loading the persistent ones at start (requests wait,
//!   bounded), creation with the quota of [`quota`], persistence in the store's pubsub tables
//!   (`service` = the service's domain).
//! - [`handle`]: the XEP-0060 use cases on one node, the requester's access being its affiliation.
//! - [`notify`]: notifications, one `Shard::multicast` per recipients' home shard.
//! - Lists built from every shard (disco#items, a user's subscriptions/affiliations) use
//!   [`crate::modules::gather`].

pub mod core;
mod handle;
mod home;
mod notify;
pub mod options;
mod quota;
mod service;

pub use options::{PubsubOptions, NAME};

use std::rc::Rc;

use crate::shard::Shard;

/// Registers the service's local route and disco item on every host and queues the loading of
/// this shard's nodes.
///
/// In a cluster (`clustered`) a node lives on one cluster node (docs/CLUSTER.md, "Objects on one
/// node").
pub fn start(shard: &mut Shard, hosts: &[String], opts: PubsubOptions, clustered: bool) {
    let mut services = Vec::new();
    for host in hosts {
        let domain = opts.service_for(host);
        shard.register_route(&domain, Rc::new(service::route));
        crate::modules::disco::add_server_item(&mut shard.ext, host, &domain, "Publish-Subscribe");
        services.push(domain);
    }
    home::start(shard, opts, services, clustered);
    crate::hooks::Events::<crate::modules::register::AccountRemoved>::listen(
        shard,
        50,
        NAME,
        |shard, ev| home::account_removed(shard, &ev.jid),
    );
}

/// The features the service advertises: the core's, less what only PEP does (presence and roster
/// access models, notifications filtered by caps), plus its own.
pub fn feature_uris() -> impl Iterator<Item = String> {
    core::FEATURES
        .iter()
        .filter(|f| {
            !matches!(
                **f,
                "access-presence" | "access-roster" | "filtered-notifications"
            )
        })
        .chain(&[
            "access-authorize",
            "instant-nodes",
            "subscription-notifications",
        ])
        .map(|f| format!("{}#{f}", core::ns::PUBSUB))
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::{error_condition, error_type, World, HOST};
    use crate::shard::ConnMsg;
    use crate::xml::Stanza;

    #[test]
    fn a_publish_the_store_cannot_keep_is_answered_wait_not_result() {
        for shards in [1, 2] {
            let mut w = World::new(shards, "[modules.disco]\n[modules.pubsub]\n");
            let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
            let mut ask = |w: &mut World, id: &str| -> Stanza {
                // `items` asks for the node's items; any other id publishes an item of that id.
                let (ty, body) = match id {
                    "items" => ("get", "<items node='n'/>".to_owned()),
                    _ => (
                        "set",
                        format!(
                            "<publish node='n'><item id='{id}'><x xmlns='t'/></item></publish>"
                        ),
                    ),
                };
                w.send(
                    &mut alice,
                    &format!(
                        "<iq type='{ty}' id='{id}' to='pubsub.{HOST}'><pubsub xmlns='{}'>{body}</pubsub></iq>",
                        super::core::ns::PUBSUB
                    ),
                );
                std::iter::from_fn(|| alice.mb.pop())
                    .filter_map(|m| match m {
                        ConnMsg::Deliver(acc) => Some(acc.into_stanza()),
                        _ => None,
                    })
                    .find(|s| s.name() == "iq" && s.id().as_deref() == Some(id))
                    .unwrap_or_else(|| panic!("no answer to {id}"))
            };
            let ok = ask(&mut w, "first");
            assert_eq!(ok.type_().as_deref(), Some("result"));
            let store = w
                .cluster
                .store
                .as_ref()
                .unwrap_or_else(|| panic!("no store"));
            let node = store.pubsub_load_node(&format!("pubsub.{HOST}"), "n");
            let node = node
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("node not stored"));
            assert_eq!(node.items.len(), 1, "the answer waited for the write");
            w.break_table("pubsub_item");
            let r = ask(&mut w, "second");
            assert_eq!(
                error_condition(&r).as_deref(),
                Some("internal-server-error")
            );
            assert_eq!(error_type(&r).as_deref(), Some("wait"));
            // The store is back: the node is read from it again, without what was refused.
            w.heal_table("pubsub_item");
            let items = ask(&mut w, "items");
            let text = String::from_utf8_lossy(items.bytes()).into_owned();
            assert!(text.contains("first") && !text.contains("second"), "{text}");
        }
    }

    #[test]
    fn features_are_listed_once_and_without_pep_only_ones() {
        let f: Vec<String> = super::feature_uris().collect();
        let set: std::collections::BTreeSet<&String> = f.iter().collect();
        assert_eq!(set.len(), f.len(), "{f:?}");
        assert!(f.iter().any(|x| x.ends_with("#access-authorize")));
        assert!(!f.iter().any(|x| x.ends_with("#access-presence")));
    }
}
