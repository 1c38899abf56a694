//! Notifications (`<message><event xmlns='pubsub#event'/></message>`, XEP-0060 §7.1.2, §7.2.2,
//! §8.1.3, §8.4.2, §8.5.2) and the payloads of IQ results.
//!
//! Messages are built without `to`: the caller addresses one copy per recipient.

use super::node::{Affiliation, Item, Subscription};
use super::{ns, NodeConfig, NotificationType};
use crate::xml::Element;
use crate::xmpp::ns::CLIENT;

/// The disco#info of a leaf node (XEP-0060 §5.3): its identity, the pubsub feature and its
/// meta-data form (§5.4).
pub fn node_info(name: &str, config: &NodeConfig) -> Element {
    use crate::xmpp::ns::DISCO_INFO;
    Element::new("query", DISCO_INFO)
        .with_attr("node", name)
        .with_child(
            Element::new("identity", DISCO_INFO)
                .with_attr("category", "pubsub")
                .with_attr("type", "leaf"),
        )
        .with_child(Element::new("feature", DISCO_INFO).with_attr("var", ns::PUBSUB))
        .with_child(config.meta_data())
}

/// A notification message from `from` carrying `event`'s children.
pub fn message(from: &str, ty: NotificationType, event: Element) -> Element {
    Element::new("message", CLIENT)
        .with_attr("from", from)
        .with_attr("type", ty.as_str())
        .with_child(event)
}

fn event(child: Element) -> Element {
    Element::new("event", ns::EVENT).with_child(child)
}

/// `<items node=…><item id=…>payload</item>…</items>` for published items.
pub fn items(from: &str, node: &str, config: &NodeConfig, published: &[&Item]) -> Element {
    let mut items = Element::new("items", ns::EVENT).with_attr("node", node);
    for i in published {
        let mut e = i.element(ns::EVENT, config.deliver_payloads);
        // XEP-0060 §7.1.2.3: the publisher, so receivers can tell who wrote it.
        e = e.with_attr("publisher", publisher_bare(&i.publisher));
        items = items.with_child(e);
    }
    message(from, config.notification_type, event(items))
}

fn publisher_bare(publisher: &str) -> &str {
    publisher.split('/').next().unwrap_or(publisher)
}

/// `<items node=…><retract id=…/>…</items>`.
pub fn retract(from: &str, node: &str, config: &NodeConfig, ids: &[String]) -> Element {
    let mut items = Element::new("items", ns::EVENT).with_attr("node", node);
    for id in ids {
        items = items.with_child(Element::new("retract", ns::EVENT).with_attr("id", id));
    }
    message(from, config.notification_type, event(items))
}

/// `<purge node=…/>`.
pub fn purge(from: &str, node: &str, config: &NodeConfig) -> Element {
    message(
        from,
        config.notification_type,
        event(Element::new("purge", ns::EVENT).with_attr("node", node)),
    )
}

/// `<delete node=…><redirect uri=…/></delete>`.
pub fn delete(from: &str, node: &str, config: &NodeConfig, redirect: Option<&str>) -> Element {
    let mut d = Element::new("delete", ns::EVENT).with_attr("node", node);
    if let Some(uri) = redirect {
        d = d.with_child(Element::new("redirect", ns::EVENT).with_attr("uri", uri));
    }
    message(from, config.notification_type, event(d))
}

/// `<configuration node=…>` with the form when payloads are delivered (§8.2.5.5).
pub fn configuration(from: &str, node: &str, config: &NodeConfig) -> Element {
    let mut c = Element::new("configuration", ns::EVENT).with_attr("node", node);
    if config.deliver_payloads {
        c = c.with_child(config.form().with_attr("type", "result"));
    }
    message(from, config.notification_type, event(c))
}

/// `<subscription node=… jid=… subscription=…/>` (§8.8.4: the owner changed a subscription).
pub fn subscription(from: &str, node: &str, s: &Subscription) -> Element {
    message(
        from,
        NotificationType::Normal,
        Element::new("event", ns::EVENT).with_child(subscription_el(ns::EVENT, Some(node), s)),
    )
}

/// `<subscription node? jid subscription subid/>` in namespace `ns`.
pub fn subscription_el(ns: &str, node: Option<&str>, s: &Subscription) -> Element {
    let mut e = Element::new("subscription", ns);
    if let Some(n) = node {
        e = e.with_attr("node", n);
    }
    let e = e
        .with_attr("jid", &s.jid)
        .with_attr("subscription", s.state.as_str());
    // A removed subscription has no id left to name (XEP-0060 §8.8.4, §8.6).
    if s.subid.is_empty() {
        e
    } else {
        e.with_attr("subid", &s.subid)
    }
}

/// `<pubsub><items node=…>…</items></pubsub>`, the result of an items request.
/// With `total` when these are the newest of more (some left out for size): a result set says so
/// (XEP-0060 §6.5.4, XEP-0059), with the first item's index among them all.
pub fn items_page(node: &str, items: &[&Item], total: Option<usize>) -> Element {
    let mut el = Element::new("items", ns::PUBSUB).with_attr("node", node);
    for i in items {
        // §7.1.2.3: notifications name the publisher, so must every other form of retrieval.
        let item = i.element(ns::PUBSUB, true);
        el = el.with_child(item.with_attr("publisher", publisher_bare(&i.publisher)));
    }
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(el);
    if let (Some(total), Some(first), Some(last)) = (total, items.first(), items.last()) {
        let rsm = crate::xmpp::ns::RSM;
        let index = total.saturating_sub(items.len()).to_string();
        pubsub = pubsub.with_child(
            Element::new("set", rsm)
                .with_child(
                    Element::new("first", rsm)
                        .with_attr("index", index)
                        .with_text(&first.id),
                )
                .with_child(Element::new("last", rsm).with_text(&last.id))
                .with_child(Element::new("count", rsm).with_text(&total.to_string())),
        );
    }
    pubsub
}

/// `<pubsub><publish node=…><item id=…/></publish></pubsub>`, the result of a publish.
pub fn publish_result(node: &str, id: &str) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", node)
            .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id)),
    )
}

/// `<pubsub><create node=…/></pubsub>`, the result of creating an instant node.
pub fn create_result(node: &str) -> Element {
    Element::new("pubsub", ns::PUBSUB)
        .with_child(Element::new("create", ns::PUBSUB).with_attr("node", node))
}

/// `<pubsub xmlns=ns><configure node=…><x/></configure></pubsub>` (owner: current configuration;
/// without node: the default).
pub fn configure_result(owner_ns: &str, node: Option<&str>, form: Element) -> Element {
    let name = if node.is_some() {
        "configure"
    } else {
        "default"
    };
    let mut c = Element::new(name, owner_ns);
    if let Some(n) = node {
        c = c.with_attr("node", n);
    }
    Element::new("pubsub", owner_ns).with_child(c.with_child(form))
}

/// `<pubsub xmlns=ns><subscriptions node?>…</subscriptions></pubsub>`; `with_node` adds `node` to
/// each entry (the requester's own list across nodes).
pub fn subscriptions_result(
    ns: &str,
    node: Option<&str>,
    subs: &[(&str, &Subscription)],
) -> Element {
    let mut el = Element::new("subscriptions", ns);
    if let Some(n) = node {
        el = el.with_attr("node", n);
    }
    for (n, s) in subs {
        el = el.with_child(subscription_el(ns, node.is_none().then_some(*n), s));
    }
    Element::new("pubsub", ns).with_child(el)
}

/// `<pubsub xmlns=ns><affiliations node?><affiliation …/></affiliations></pubsub>`: `(node, jid,
/// affiliation)` rows; the owner's list (`node` given) names JIDs, the requester's own names nodes.
pub fn affiliations_result(
    ns: &str,
    node: Option<&str>,
    rows: &[(&str, &str, Affiliation)],
) -> Element {
    let mut el = Element::new("affiliations", ns);
    if let Some(n) = node {
        el = el.with_attr("node", n);
    }
    for (n, jid, a) in rows {
        let mut e = Element::new("affiliation", ns).with_attr("affiliation", a.as_str());
        e = match node {
            Some(_) => e.with_attr("jid", *jid),
            None => e.with_attr("node", *n),
        };
        el = el.with_child(e);
    }
    Element::new("pubsub", ns).with_child(el)
}

/// The owner's view of `n`'s subscriptions (§8.8.1).
pub fn owner_subscriptions(n: &super::Node) -> Element {
    let subs: Vec<_> = n
        .meta
        .subscriptions
        .iter()
        .map(|s| (n.name.as_str(), s))
        .collect();
    subscriptions_result(ns::OWNER, Some(&n.name), &subs)
}

/// The owner's view of `n`'s affiliations (§8.9.1).
pub fn owner_affiliations(n: &super::Node) -> Element {
    let rows: Vec<_> = n
        .meta
        .affiliations
        .iter()
        .map(|(j, a)| (n.name.as_str(), j.as_str(), *a))
        .collect();
    affiliations_result(ns::OWNER, Some(&n.name), &rows)
}
