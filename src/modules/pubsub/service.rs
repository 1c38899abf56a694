//! The service's packet handler: runs on the shard where a stanza to `pubsub.example.org` is
//! routed. It answers the service itself (disco, the default configuration, lists across nodes)
//! and carries requests about one node to the node's home shard.

use std::sync::Arc;

use super::core::{self as ps, event, ns as psns, NodeConfig, PubsubError, Request};
use super::home::{self, on_home};
use crate::hooks::Acc;
use crate::local::result_reply;
use crate::modules::gather::{gather, with_children};
use crate::shard::Shard;
use crate::xml::{Element, StanzaKind, StanzaType};
use crate::xmpp::{form, ns, StanzaErrorCondition as C};

/// Routes a stanza addressed to the service.
pub fn route(shard: &mut Shard, acc: Acc) {
    if acc.to.node().is_some() || !acc.to.is_bare() {
        // Nodes are not addressed as JIDs.
        shard.bounce(&acc, C::ItemNotFound);
        return;
    }
    if acc.kind() == StanzaKind::Message && acc.ty() != StanzaType::Error {
        return authorization_answer(shard, acc);
    }
    let Some(payload) = crate::local::service_iq(shard, &acc) else {
        return;
    };
    let service = acc.to.domain().to_owned();
    let ty = acc.ty();
    match (ty, payload.ns.as_str()) {
        (StanzaType::Get, ns::DISCO_INFO) => disco_info(shard, acc, &service, payload.attr("node")),
        (StanzaType::Get, ns::DISCO_ITEMS) => {
            disco_items(shard, acc, &service, payload.attr("node"))
        }
        (_, psns::PUBSUB | psns::OWNER) => pubsub(shard, acc, service, ty, &payload),
        _ => shard.bounce(&acc, C::ServiceUnavailable),
    }
}

fn pubsub(shard: &mut Shard, acc: Acc, service: String, ty: StanzaType, payload: &Element) {
    // The extras (a publish without item, the items' subid) go with the request to the node.
    let (req, extras) = match Request::parse_with_extras(ty, payload) {
        Ok((Request::Create { node: None, config }, extras)) => (
            Request::Create {
                // An instant node (§8.1.2): the service names it.
                node: Some(ps::new_id()),
                config,
            },
            extras,
        ),
        Ok(r) => r,
        Err(e) => return home::reply(shard, &acc, Err(e)),
    };
    let from_bare = acc.from.bare().as_str().to_owned();
    match &req {
        Request::Default => {
            let form = NodeConfig::default().form_offering(super::handle::offered);
            let body = event::configure_result(psns::OWNER, None, form);
            home::reply(shard, &acc, Ok(Some(body)));
        }
        Request::Subscriptions { node: None } => {
            let svc = service.clone();
            let collect = Arc::new(move |s: &mut Shard| {
                home::each_node(s, &svc, |n| {
                    n.meta
                        .subscriptions
                        .iter()
                        .filter(|x| {
                            crate::jid::Jid::parse(&x.jid)
                                .is_ok_and(|j| j.bare().as_str() == from_bare)
                        })
                        .map(|x| event::subscription_el(psns::PUBSUB, Some(&n.name), x))
                        .collect()
                })
            });
            gather(
                shard,
                acc,
                collect,
                Box::new(|els| list("subscriptions", els)),
            );
        }
        Request::Affiliations { node: None } => {
            let svc = service.clone();
            let collect = Arc::new(move |s: &mut Shard| {
                home::each_node(s, &svc, |n| {
                    let a = n.affiliation(&from_bare);
                    (a != ps::Affiliation::None)
                        .then(|| {
                            Element::new("affiliation", psns::PUBSUB)
                                .with_attr("node", &n.name)
                                .with_attr("affiliation", a.as_str())
                        })
                        .into_iter()
                        .collect()
                })
            });
            gather(
                shard,
                acc,
                collect,
                Box::new(|els| list("affiliations", els)),
            );
        }
        _ => {
            let Some(node) = req.node().map(str::to_owned) else {
                return home::reply(shard, &acc, Err(PubsubError::bad_request()));
            };
            let svc = service.clone();
            on_home(
                shard,
                &service,
                &node,
                acc,
                Box::new(move |s, acc| home::request(s, svc, acc, (req, extras))),
            );
        }
    }
}

/// `<pubsub><NAME>els</NAME></pubsub>`.
fn list(name: &str, els: Vec<Element>) -> Element {
    Element::new("pubsub", psns::PUBSUB)
        .with_child(with_children(Element::new(name, psns::PUBSUB), els))
}

/// disco#info of the service, or of one node (on its home shard).
fn disco_info(shard: &mut Shard, acc: Acc, service: &str, node: Option<&str>) {
    let Some(node) = node else {
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "pubsub")
                .with_attr("type", "service")
                .with_attr("name", "Publish-Subscribe"),
        );
        let features = [ns::DISCO_INFO, ns::DISCO_ITEMS, psns::PUBSUB]
            .into_iter()
            .map(str::to_owned)
            .chain(super::feature_uris());
        for f in features {
            q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        let reply = result_reply(&acc, Some(q), shard.id);
        shard.fx.to_route.push(reply);
        return;
    };
    answer_on_node(shard, service, node, acc, |_, _, n| {
        event::node_info(&n.name, n.config())
    });
}

/// disco#items of the service (its nodes, from every shard), or of a node (its item ids).
fn disco_items(shard: &mut Shard, acc: Acc, service: &str, node: Option<&str>) {
    let svc = service.to_owned();
    let Some(node) = node else {
        let collect = Arc::new(move |s: &mut Shard| {
            home::each_node(s, &svc, |n| {
                let mut item = Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", &svc)
                    .with_attr("node", &n.name);
                if !n.config().title.is_empty() {
                    item = item.with_attr("name", &n.config().title);
                }
                vec![item]
            })
        });
        let finish = Box::new(|mut els: Vec<Element>| {
            els.sort_by(|a, b| a.attr("node").cmp(&b.attr("node")));
            with_children(Element::new("query", ns::DISCO_ITEMS), els)
        });
        return gather(shard, acc, collect, finish);
    };
    answer_on_node(shard, service, node, acc, |svc, acc, n| {
        let mut q = Element::new("query", ns::DISCO_ITEMS).with_attr("node", &n.name);
        // Item ids only to those who may read the items.
        let from = acc.from.bare();
        if n.can_read(&super::handle::access(n, from.as_str())).is_ok() {
            for i in n.all_items() {
                q = q.with_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", svc)
                        .with_attr("name", &i.id),
                );
            }
        }
        q
    });
}

/// Answers `acc` on the home shard of `node` with `f(service, acc, node)`, or `item-not-found`.
fn answer_on_node(
    shard: &mut Shard,
    service: &str,
    node: &str,
    acc: Acc,
    f: impl FnOnce(&str, &Acc, &ps::Node) -> Element + Send + 'static,
) {
    let (svc, name) = (service.to_owned(), node.to_owned());
    on_home(
        shard,
        service,
        node,
        acc,
        Box::new(move |s, acc| {
            let body = home::with_node(s, &svc, &name, |_, live| f(&svc, &acc, &live.node));
            answer_node(s, &acc, body);
        }),
    );
}

/// The result with `body`, or `item-not-found` when the node does not exist.
fn answer_node(shard: &mut Shard, acc: &Acc, body: Option<Element>) {
    let out = body.map(Some).ok_or_else(PubsubError::not_found);
    home::reply(shard, acc, out);
    shard.drain_to_route();
}

/// A message to the service: an owner's answer to the subscription authorization form (§8.6),
/// carried to the node's home shard; other messages are refused.
fn authorization_answer(shard: &mut Shard, acc: Acc) {
    let answer = acc.stanza.tree().ok().and_then(|m| {
        m.get_child("x", form::NS)
            .and_then(super::notify::authorization)
    });
    let Some((node, jid, allow)) = answer else {
        shard.bounce(&acc, C::ServiceUnavailable);
        return;
    };
    let service = acc.to.domain().to_owned();
    let svc = service.clone();
    on_home(
        shard,
        &service,
        &node.clone(),
        acc,
        Box::new(move |s, acc| {
            home::with_node(s, &svc, &node, |s, live| {
                super::handle::authorize(s, &svc, live, &acc.from, &jid, allow)
            });
        }),
    );
}
