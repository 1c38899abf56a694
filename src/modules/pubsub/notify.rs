//! Notifications of a service's node to its subscribers, over the mesh: copies to full JIDs of
//! this server are grouped by the home shard of the recipient (the session manager there
//! delivers), one `Shard::multicast` per shard; bare JIDs and other servers' JIDs are routed.
//! Also the subscription authorization form (XEP-0060 §8.6) sent to the owners.

use std::sync::Arc;

use ahash::HashMap;

use super::core::{ns, Affiliation, Node, Subscription};
use crate::hooks::Acc;
use crate::jid::{FullJid, Jid};
use crate::shard::{home_shard_of, Shard, ShardId};
use crate::xml::{Element, Stanza};
use crate::xmpp::form;

/// FORM_TYPE of the subscription authorization form.
pub const SUBSCRIBE_AUTHORIZATION: &str =
    "http://jabber.org/protocol/pubsub#subscribe_authorization";

/// Sends `msg` (built without `to`) from `service` to every subscriber of `node`.
pub(super) fn fan_out(shard: &mut Shard, service: &str, node: &Node, msg: &Element) {
    let to: Vec<Jid> = node
        .subscribers()
        .filter_map(|s| Jid::parse(&s.jid).ok())
        .collect();
    send(shard, service, msg, to);
}

/// Sends `msg` from `service` to each of `to`.
pub(super) fn send(shard: &mut Shard, service: &str, msg: &Element, to: Vec<Jid>) {
    let Ok(from) = Jid::parse(service) else {
        return;
    };
    let stanza = Stanza::from_element(msg);
    let mut by_shard: HashMap<ShardId, Vec<FullJid>> = HashMap::default();
    for jid in to {
        match jid.clone().try_into_full() {
            Ok(full) if shard.is_hosted(full.domain()) => {
                let at = home_shard_of(full.bare().as_str(), shard.shards);
                by_shard.entry(at).or_default().push(full);
            }
            _ => {
                let mut s = stanza.clone();
                s.set_to(jid.as_str());
                shard
                    .fx
                    .to_route
                    .push(Acc::new(s, from.clone(), jid, shard.id));
            }
        }
    }
    for (at, jids) in by_shard {
        let acc = Acc::new(stanza.clone(), from.clone(), from.clone(), shard.id);
        shard.multicast(at, acc, Arc::from(jids));
    }
}

/// The §8.6 form asking the owners of `node` to approve `sub`.
pub(super) fn ask_owners(shard: &mut Shard, service: &str, node: &Node, sub: &Subscription) {
    let x = form::new_form("form", SUBSCRIBE_AUTHORIZATION)
        .with_child(Element::new("title", form::NS).with_text("PubSub subscriber request"))
        .with_child(form::field(
            "pubsub#node",
            "text-single",
            Some("Node ID"),
            &[&node.name],
        ))
        .with_child(form::field(
            "pubsub#subscriber_jid",
            "jid-single",
            Some("Subscriber Address"),
            &[&sub.jid],
        ))
        .with_child(form::field("pubsub#subid", "hidden", None, &[&sub.subid]))
        .with_child(form::field(
            "pubsub#allow",
            "boolean",
            Some("Allow this JID to subscribe to this pubsub node?"),
            &["false"],
        ));
    let msg = Element::new("message", crate::xmpp::ns::CLIENT)
        .with_attr("from", service)
        .with_child(x);
    let owners: Vec<Jid> = node
        .meta
        .affiliations
        .iter()
        .filter(|(_, a)| **a == Affiliation::Owner)
        .filter_map(|(j, _)| Jid::parse(j).ok())
        .collect();
    send(shard, service, &msg, owners);
}

/// An owner's answer to the §8.6 form: (node, subscriber, allow), or `None` when `x` is not one.
pub(super) fn authorization(x: &Element) -> Option<(String, Jid, bool)> {
    let f = form::Form::parse_typed(x, SUBSCRIBE_AUTHORIZATION).ok()?;
    f.form_type.as_deref()?;
    let one = |var: &str| f.get(var).and_then(|v| v.single().ok().flatten());
    let node = one("pubsub#node")?.to_owned();
    let jid = Jid::parse(one("pubsub#subscriber_jid")?).ok()?;
    let allow = f.get("pubsub#allow")?.boolean().ok()?;
    Some((node, jid, allow))
}

/// The `<pubsub><subscription/></pubsub>` answer to a subscribe.
pub(super) fn subscription_result(node: &str, s: &Subscription) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(super::core::event::subscription_el(
        ns::PUBSUB,
        Some(node),
        s,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::pubsub::core::SubState;
    use crate::xml::Stanza;

    #[test]
    fn the_authorization_form_is_read_back() {
        let x = form::new_form("submit", SUBSCRIBE_AUTHORIZATION)
            .with_child(form::field("pubsub#node", "text-single", None, &["n1"]))
            .with_child(form::field(
                "pubsub#subscriber_jid",
                "jid-single",
                None,
                &["bob@x"],
            ))
            .with_child(form::field("pubsub#allow", "boolean", None, &["true"]));
        let got = authorization(&x).map(|(n, j, a)| (n, j.as_str().to_owned(), a));
        assert_eq!(got, Some(("n1".to_owned(), "bob@x".to_owned(), true)));
        // Another form, or one without the answer, is not one.
        let other = Stanza::parse(
            b"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>".to_vec(),
        )
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(authorization(&other), None);
        let s = Subscription {
            jid: "bob@x".into(),
            state: SubState::Pending,
            subid: "1".into(),
        };
        let mut out = Vec::new();
        subscription_result("n1", &s).write_to(&mut out);
        assert!(String::from_utf8_lossy(&out).contains("subscription='pending'"));
    }
}
