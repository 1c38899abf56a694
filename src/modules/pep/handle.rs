//! Pubsub requests to an account, carried out on the owner's home shard with their state.

use super::api::PepChange;
use super::notify::{access_for, fan_out, lapsed};
use super::state::{Home, UserPep};
use super::{persist, send_last, Options};
use crate::hooks::{commit, Acc, HookCtx};
use crate::jid::BareJid;
use crate::local::result_reply;
use crate::modules::pubsub::core::{
    event, ns, Item, Node, NodeConfig, PubsubAppError, PubsubError, Request, SendLast, SubState,
};
use crate::shard::Shard;
use crate::store::StoredItem;
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition as C;

/// Answers `acc` (an IQ carrying `req`) to `owner`'s PEP service; `u` is `None` when the owner's
/// state could not be had.
pub(super) fn answer(
    shard: &mut Shard,
    u: Option<&mut UserPep>,
    owner: &BareJid,
    acc: Acc,
    req: Request,
    subid: Option<String>,
) {
    // The answer waits for the writes the request queued (a `result` means it is stored).
    commit::begin(&mut shard.ext);
    let out = match u {
        // RFC 6121 §8.5.1: an IQ to an account that does not exist. Its owner asking proves it
        // exists now (registered since the load).
        Some(u) if u.missing && acc.from.bare() != *owner => {
            Err(PubsubError::new(C::ServiceUnavailable))
        }
        Some(u) if u.missing => {
            u.missing = false;
            items_subid(u, owner, &acc, &req, subid.as_deref())
                .and_then(|()| run(shard, u, owner, &acc, req))
        }
        Some(u) => items_subid(u, owner, &acc, &req, subid.as_deref())
            .and_then(|()| run(shard, u, owner, &acc, req)),
        None => Err(PubsubError::new(C::ResourceConstraint)),
    };
    let reply = match out {
        Ok(body) => Some(result_reply(&acc, body, shard.id)),
        Err(e) => e.reply_to(&acc, shard.id),
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    commit::finish(&mut ctx, reply.into_iter().collect());
    shard.drain_to_route();
}

/// The `subid` of an items request must name one of the requester's subscriptions to the node
/// (XEP-0060 §6.5.9.2), once the node is found and readable (those errors come first, from `run`).
fn items_subid(
    u: &UserPep,
    owner: &BareJid,
    acc: &Acc,
    req: &Request,
    subid: Option<&str>,
) -> Result<(), PubsubError> {
    let (Request::Items { node, .. }, Some(subid)) = (req, subid) else {
        return Ok(());
    };
    let Some(n) = u.nodes.get(node) else {
        return Ok(());
    };
    let from_bare = acc.from.bare();
    if n.can_read(&access_for(u, owner, n, from_bare.as_str()))
        .is_err()
    {
        return Ok(());
    }
    n.check_subid(from_bare.as_str(), subid)
}

/// Subscriptions one bare JID (its resources and itself) may hold on one node; past it new ones are
/// refused with `not-allowed` + `too-many-subscriptions` (XEP-0060 §6.1.3.11 names no cap, the
/// condition is the one the service uses for its own bound).
pub(super) const MAX_SUBS_PER_USER: usize = 8;

/// How many of `n`'s subscriptions are `bare`'s or its resources'.
fn subscriptions_of(n: &Node, bare: &BareJid) -> usize {
    n.meta
        .subscriptions
        .iter()
        .filter(|s| crate::jid::Jid::parse(&s.jid).is_ok_and(|j| j.bare() == *bare))
        .count()
}

fn opts(shard: &mut Shard) -> Options {
    shard.ext.get_or_default::<Home>().opts.clone()
}

/// A new item id: time and randomness, unique in practice.
fn new_id() -> String {
    let mut r = [0u8; 6];
    // Only uniqueness matters; on failure the time part alone still nearly always differs.
    let _ = getrandom::getrandom(&mut r);
    let rand: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:x}-{rand}", now_micros())
}

fn now_micros() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000
}

/// An item as the store keeps it.
fn stored(item: &Item) -> StoredItem {
    StoredItem {
        id: item.id.clone(),
        publisher: item.publisher.clone(),
        published: item.published,
        // Serialized XML is UTF-8.
        payload: String::from_utf8(item.payload_bytes()).unwrap_or_default(),
    }
}

fn node_mut<'a>(u: &'a mut UserPep, name: &str) -> Result<&'a mut Node, PubsubError> {
    u.nodes.get_mut(name).ok_or_else(PubsubError::not_found)
}

pub(super) fn meta_json(n: &Node) -> String {
    // A NodeMeta is plain data (strings, numbers, enums): serializing it cannot fail.
    serde_json::to_string(&n.meta).unwrap_or_default()
}

/// Cancels, on every node of `owner`, the subscriptions of those the access model no longer lets
/// read it (XEP-0163 §7.1: a roster change that loses access cancels the subscription).
pub(super) fn cancel_lapsed(shard: &mut Shard, u: &mut UserPep, owner: &BareJid) {
    let names: Vec<String> = u.nodes.keys().cloned().collect();
    for name in names {
        let gone = lapsed(u, owner, &u.nodes[&name]);
        if gone.is_empty() {
            continue;
        }
        if let Some(n) = u.nodes.get_mut(&name) {
            for jid in &gone {
                // Listed a moment ago: it is there to remove.
                let _ = n.unsubscribe(jid, None);
            }
        }
        save_meta(shard, owner, &u.nodes[&name]);
    }
}

fn save_meta(shard: &mut Shard, owner: &BareJid, n: &Node) {
    let (svc, node, meta) = (owner.as_str().to_owned(), n.name.clone(), meta_json(n));
    persist(shard, owner, move |s| {
        s.pubsub_node_save(&svc, &node, &meta)
    });
}

pub(super) fn run(
    shard: &mut Shard,
    u: &mut UserPep,
    owner: &BareJid,
    acc: &Acc,
    req: Request,
) -> Result<Option<Element>, PubsubError> {
    let o = opts(shard);
    let limits = o.limits.clone();
    let from_bare = acc.from.bare();
    let is_owner = from_bare == *owner;
    let owner_only = || {
        if is_owner {
            Ok(())
        } else {
            Err(PubsubError::forbidden())
        }
    };
    let svc = owner.as_str().to_owned();
    match req {
        Request::Publish {
            node: name,
            item,
            options,
        } => {
            let item = Item {
                id: item.id.unwrap_or_else(new_id),
                publisher: acc.from.as_str().to_owned(),
                published: now_micros(),
                payload: item.payload,
            };
            Node::check_size(&item, &limits)?;
            let created = match u.nodes.get(&name) {
                Some(n) => {
                    let a = access_for(u, owner, n, from_bare.as_str());
                    let subscribed = n.subscription(acc.from.as_str()).is_some();
                    n.can_publish(&a, subscribed)?;
                    if let Some(x) = &options {
                        n.config().check_preconditions(x, &limits)?;
                    }
                    false
                }
                None => {
                    owner_only()?;
                    max_nodes(u, &o)?;
                    let config = match &options {
                        Some(x) => {
                            NodeConfig::from_publish_options(&o.default_config(), x, &limits)?
                        }
                        None => o.default_config(),
                    };
                    u.nodes
                        .insert(name.clone(), Node::new(&name, config, owner.as_str()));
                    true
                }
            };
            let stored = stored(&item);
            // Over the user's byte budget when nothing were replaced or evicted: the node as it
            // was, to restore when the budget is still exceeded after publishing.
            let near = user_bytes(u) + stored.payload.len() > o.max_bytes_per_user;
            let before = near.then(|| u.nodes[&name].clone());
            let n = node_mut(u, &name)?;
            let mirrored = (item.id.clone(), item.payload.clone());
            let published = n.publish(item, &limits).and_then(|p| match &before {
                Some(_) if user_bytes(u) > o.max_bytes_per_user => Err(over_budget()),
                _ => Ok(p),
            });
            let published = match published {
                Ok(p) => p,
                Err(e) => {
                    if created {
                        u.nodes.remove(&name);
                    } else if let Some(b) = before {
                        u.nodes.insert(name, b);
                    }
                    return Err(e);
                }
            };
            let n = &u.nodes[&name];
            if created {
                save_meta(shard, owner, n);
            }
            if n.config().persist_items {
                let (svc, node, ev) = (svc, name.clone(), published.evicted.clone());
                persist(shard, owner, move |s| {
                    s.pubsub_item_put(&svc, &node, &stored, &ev)
                });
            }
            if n.config().deliver_notifications {
                if let Some(last) = n.last() {
                    let msg = event::items(owner.as_str(), &name, n.config(), &[last]);
                    fan_out(shard, u, owner, n, &msg);
                }
            }
            super::api::emit(shard, acc, owner, &name, move || PepChange::Published {
                id: mirrored.0,
                payload: mirrored.1,
            });
            Ok(Some(event::publish_result(&name, &published.id)))
        }
        Request::Retract { node, ids, notify } => {
            owner_only()?;
            let n = node_mut(u, &node)?;
            n.check_keeps_items()?;
            let gone = n.retract(&ids)?;
            let n = &u.nodes[&node];
            if n.config().persist_items {
                let (node, gone) = (node.clone(), gone.clone());
                persist(shard, owner, move |s| {
                    s.pubsub_items_delete(&svc, &node, &gone)
                });
            }
            if notify || n.config().notify_retract {
                let msg = event::retract(owner.as_str(), &node, n.config(), &gone);
                fan_out(shard, u, owner, n, &msg);
            }
            super::api::emit(shard, acc, owner, &node, move || PepChange::Retracted(gone));
            Ok(None)
        }
        Request::Items { node, max, ids } => {
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            n.can_read(&access_for(u, owner, n, from_bare.as_str()))?;
            n.check_keeps_items()?;
            let (page, total) = n.items_bounded(max, &ids);
            Ok(Some(event::items_page(&node, &page, total)))
        }
        Request::Subscribe { node, jid } => {
            // The sender's own full JID or its bare JID only: a user cannot subscribe resources
            // it does not hold (each would be one more copy of every notification).
            if jid != acc.from && !(jid.is_bare() && jid.bare() == from_bare) {
                return Err(PubsubError::app(C::BadRequest, PubsubAppError::InvalidJid));
            }
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            if n.subscription(jid.as_str()).is_none()
                && subscriptions_of(n, &from_bare) >= MAX_SUBS_PER_USER
            {
                return Err(PubsubError::app(
                    C::NotAllowed,
                    PubsubAppError::TooManySubscriptions,
                ));
            }
            let a = access_for(u, owner, n, from_bare.as_str());
            let n = node_mut(u, &node)?;
            let sub = n.subscribe(jid.as_str(), &a, new_id())?;
            let n = &u.nodes[&node];
            save_meta(shard, owner, n);
            if sub.state == SubState::Subscribed
                && n.config().send_last_published_item != SendLast::Never
            {
                send_last(shard, owner, n, jid.clone());
            }
            Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(
                event::subscription_el(ns::PUBSUB, Some(&node), &sub),
            )))
        }
        Request::Unsubscribe { node, jid, subid } => {
            // XEP-0060 §6.2.3.3: unsubscribing someone else is forbidden.
            if jid.bare() != from_bare && !is_owner {
                return Err(PubsubError::new(C::Forbidden));
            }
            let n = node_mut(u, &node)?;
            n.unsubscribe(jid.as_str(), subid.as_deref())?;
            save_meta(shard, owner, &u.nodes[&node]);
            Ok(None)
        }
        Request::Options { .. } => Err(PubsubError::unsupported("subscription-options")),
        Request::Subscriptions { node } => {
            let mine: Vec<(&str, &crate::modules::pubsub::core::Subscription)> = u
                .nodes
                .values()
                .filter(|n| node.as_deref().is_none_or(|x| x == n.name))
                .flat_map(|n| {
                    n.meta
                        .subscriptions
                        .iter()
                        .filter(|s| {
                            crate::jid::Jid::parse(&s.jid).is_ok_and(|j| j.bare() == from_bare)
                        })
                        .map(move |s| (n.name.as_str(), s))
                })
                .collect();
            Ok(Some(event::subscriptions_result(ns::PUBSUB, None, &mine)))
        }
        Request::Affiliations { node } => {
            let rows: Vec<(&str, &str, _)> = u
                .nodes
                .values()
                .filter(|n| node.as_deref().is_none_or(|x| x == n.name))
                .map(|n| (n.name.as_str(), "", n.affiliation(from_bare.as_str())))
                .filter(|(_, _, a)| *a != crate::modules::pubsub::core::Affiliation::None)
                .collect();
            Ok(Some(event::affiliations_result(ns::PUBSUB, None, &rows)))
        }
        Request::Create { node, config } => {
            owner_only()?;
            let name = node.ok_or(PubsubError::app(
                C::NotAcceptable,
                PubsubAppError::NodeidRequired,
            ))?;
            if u.nodes.contains_key(&name) {
                return Err(PubsubError::new(C::Conflict));
            }
            max_nodes(u, &o)?;
            let config = match &config {
                Some(x) => o.default_config().apply(x, &limits)?,
                None => o.default_config(),
            };
            let n = Node::new(&name, config, owner.as_str());
            save_meta(shard, owner, &n);
            u.nodes.insert(name, n);
            Ok(None)
        }
        Request::Default => Ok(Some(event::configure_result(
            ns::OWNER,
            None,
            o.default_config().form(),
        ))),
        Request::ConfigureGet { node } => {
            owner_only()?;
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            Ok(Some(event::configure_result(
                ns::OWNER,
                Some(&node),
                n.config().form(),
            )))
        }
        Request::ConfigureSet { node, form } => {
            owner_only()?;
            let n = node_mut(u, &node)?;
            if form.attr("type") == Some("cancel") {
                return Ok(None);
            }
            let was_persistent = n.config().persist_items;
            let config = n.config().apply(&form, &limits)?;
            let evicted = n.set_config(config, &limits);
            // Subscribers the new access model shuts out lose their subscription.
            let lapsed = lapsed(u, owner, &u.nodes[&node]);
            let n = node_mut(u, &node)?;
            for jid in &lapsed {
                n.unsubscribe(jid, None)?;
            }
            let n = &u.nodes[&node];
            save_meta(shard, owner, n);
            let name = node.clone();
            if was_persistent && !n.config().persist_items {
                persist(shard, owner, move |s| s.pubsub_purge(&svc, &name));
            } else if !was_persistent && n.config().persist_items {
                // Now kept: what the node holds goes to the store.
                let items: Vec<StoredItem> = n.all_items().map(stored).collect();
                persist(shard, owner, move |s| {
                    items
                        .iter()
                        .try_for_each(|i| s.pubsub_item_put(&svc, &name, i, &[]))
                });
            } else if n.config().persist_items && !evicted.is_empty() {
                persist(shard, owner, move |s| {
                    s.pubsub_items_delete(&svc, &name, &evicted)
                });
            }
            if n.config().notify_config {
                let msg = event::configuration(owner.as_str(), &node, n.config());
                fan_out(shard, u, owner, n, &msg);
            }
            Ok(None)
        }
        Request::Delete { node, redirect } => {
            owner_only()?;
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            if n.config().notify_delete {
                let msg = event::delete(owner.as_str(), &node, n.config(), redirect.as_deref());
                fan_out(shard, u, owner, n, &msg);
            }
            u.nodes.remove(&node);
            persist(shard, owner, move |s| s.pubsub_node_delete(&svc, &node));
            Ok(None)
        }
        Request::Purge { node } => {
            owner_only()?;
            let n = node_mut(u, &node)?;
            n.check_keeps_items()?;
            n.purge();
            let n = &u.nodes[&node];
            let msg = event::purge(owner.as_str(), &node, n.config());
            if n.config().notify_retract {
                fan_out(shard, u, owner, n, &msg);
            }
            persist(shard, owner, move |s| s.pubsub_purge(&svc, &node));
            Ok(None)
        }
        Request::OwnerSubscriptions { node } => {
            owner_only()?;
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            let subs: Vec<_> = n
                .meta
                .subscriptions
                .iter()
                .map(|s| (node.as_str(), s))
                .collect();
            Ok(Some(event::subscriptions_result(
                ns::OWNER,
                Some(&node),
                &subs,
            )))
        }
        Request::SetSubscriptions { node, changes } => {
            owner_only()?;
            node_mut(u, &node)?.set_subscriptions(&changes, new_id)?;
            save_meta(shard, owner, &u.nodes[&node]);
            Ok(None)
        }
        Request::OwnerAffiliations { node } => {
            owner_only()?;
            let n = u.nodes.get(&node).ok_or_else(PubsubError::not_found)?;
            let rows: Vec<_> = n
                .meta
                .affiliations
                .iter()
                .map(|(j, a)| (node.as_str(), j.as_str(), *a))
                .collect();
            Ok(Some(event::affiliations_result(
                ns::OWNER,
                Some(&node),
                &rows,
            )))
        }
        Request::SetAffiliations { node, changes } => {
            owner_only()?;
            node_mut(u, &node)?.set_affiliations(&changes)?;
            save_meta(shard, owner, &u.nodes[&node]);
            Ok(None)
        }
    }
}

/// The payload bytes of all of the user's items (what `max_bytes_per_user` bounds).
fn user_bytes(u: &UserPep) -> usize {
    u.nodes
        .values()
        .flat_map(|n| n.all_items())
        .map(|i| i.payload_bytes().len())
        .sum()
}

/// `not-acceptable` + `payload-too-big`: the item would take the user past `max_bytes_per_user`.
/// XEP-0060 has no quota condition; this is its one size refusal (§7.1.3.4), which clients
/// already show as "too big", where `resource-constraint` would read as a passing server fault.
fn over_budget() -> PubsubError {
    PubsubError::app(C::NotAcceptable, PubsubAppError::PayloadTooBig)
}

/// `not-allowed` + `max-nodes-exceeded` when the owner has as many nodes as allowed.
fn max_nodes(u: &UserPep, o: &Options) -> Result<(), PubsubError> {
    if u.nodes.len() >= o.limits.max_nodes_per_owner {
        return Err(PubsubError::app(
            C::NotAllowed,
            PubsubAppError::MaxNodesExceeded,
        ));
    }
    Ok(())
}
