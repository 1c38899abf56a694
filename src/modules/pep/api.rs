//! What other modules ask of an account's PEP service, and what it tells them: a module mirroring
//! PEP data elsewhere (bookmarks, avatars) listens to [`PepEvent`]s (`crate::hooks::Events`) and
//! publishes or retracts on the owner's behalf with [`request_as_owner`]. Events are emitted only
//! for what the owner's clients did, so a mirror's own publications do not come back to it.

use super::handle;
use super::state::{with_user, Home, UserPep};
use crate::hooks::{Acc, Events};
use crate::jid::{BareJid, Jid};
use crate::modules::pubsub::core::{ns as ps_ns, AccessModel, Item, PublishItem, Request};
use crate::shard::{home_shard_of, Shard};
use crate::xml::{Element, Stanza};
use crate::xmpp::{form, ns};

/// What changed in a node.
#[derive(Debug, Clone)]
pub enum PepChange {
    /// An item was published (or replaced).
    Published {
        /// Its id.
        id: String,
        /// Its payload.
        payload: Option<Element>,
    },
    /// Items were retracted.
    Retracted(Vec<String>),
}

/// Emitted on the owner's home shard after one of the owner's clients changed a node.
#[derive(Debug, Clone)]
pub struct PepEvent {
    /// The account.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// What happened.
    pub change: PepChange,
}

/// Whether a request came from one of the owner's clients (always a full JID) rather than from
/// [`request_as_owner`] (the bare JID).
pub(super) fn by_client(acc: &Acc) -> bool {
    acc.from.resource().is_some()
}

/// Emits `change` of `owner`'s `node` when a client did it and someone listens.
pub(super) fn emit(
    shard: &mut Shard,
    acc: &Acc,
    owner: &BareJid,
    node: &str,
    change: impl FnOnce() -> PepChange,
) {
    if !by_client(acc) || !Events::<PepEvent>::heard(shard) {
        return;
    }
    let ev = PepEvent {
        owner: owner.clone(),
        node: node.to_owned(),
        change: change(),
    };
    Events::<PepEvent>::emit(shard, &ev);
}

/// Home shard of `owner` as PEP sees it.
fn home_of(shard: &mut Shard, owner: &BareJid) -> crate::shard::ShardId {
    let shards = shard.ext.get::<Home>().map_or(shard.shards, |h| h.shards);
    home_shard_of(owner.as_str(), shards)
}

/// Carries out `req` on `owner`'s PEP service as the owner, on the server's behalf (from any
/// shard; it runs on the owner's home shard, in order with the owner's own requests). Refusals are
/// logged: the caller built the request.
pub fn request_as_owner(shard: &mut Shard, owner: BareJid, req: Request) {
    apply_as_owner(shard, owner, String::new(), move |_| vec![req]);
}

/// Runs `f` on `owner`'s home shard once the requests queued for their PEP service so far (by
/// [`request_as_owner`], [`apply_as_owner`]) were carried out: an answer routed there reaches its
/// client after what it announces.
pub fn after_owner_requests(
    shard: &mut Shard,
    owner: BareJid,
    f: impl FnOnce(&mut Shard) + Send + 'static,
) {
    on_owner(shard, owner, move |shard, _| f(shard));
}

/// Reads the items of `owner`'s `node` (`None`: no such node) and carries out the requests
/// `decide` builds from them, as the owner, in one turn on the home shard: nothing the owner's
/// clients do comes between the read and the writes. The requests run in order; the first refused
/// (logged) stops the rest. `publish-options` of a server request only
/// configure a node it creates; an existing node keeps the configuration its owner chose (a
/// precondition the server's options did not meet would otherwise refuse the mirror forever).
pub fn apply_as_owner(
    shard: &mut Shard,
    owner: BareJid,
    node: String,
    decide: impl FnOnce(Option<Vec<Item>>) -> Vec<Request> + Send + 'static,
) {
    on_owner(shard, owner.clone(), move |shard, u| {
        let Some(u) = u else {
            tracing::warn!(
                user = owner.as_str(),
                "pep: state unavailable for a server request"
            );
            return;
        };
        let items = node_items(Some(&*u), &node);
        let acc = server_iq(&owner, shard.id);
        for mut req in decide(items) {
            if let Request::Publish { node, options, .. } = &mut req {
                if u.nodes.contains_key(node.as_str()) {
                    *options = None;
                }
            }
            if let Err(e) = handle::run(shard, u, &owner, &acc, req) {
                // The later requests may depend on this one (metadata naming data).
                tracing::warn!(user = owner.as_str(), error = ?e, "pep: server request refused; the rest not tried");
                break;
            }
        }
    });
}

/// Runs `op` with `owner`'s PEP state on their home shard (from any shard).
fn on_owner(
    shard: &mut Shard,
    owner: BareJid,
    op: impl FnOnce(&mut Shard, Option<&mut UserPep>) + Send + 'static,
) {
    let home = home_of(shard, &owner);
    crate::sm::run_on(
        shard,
        home,
        Box::new(move |shard: &mut Shard| with_user(shard, &owner, Box::new(op))),
    );
}

/// The items of `node` in `u` (oldest first), `None` without state or node.
fn node_items(u: Option<&UserPep>, node: &str) -> Option<Vec<Item>> {
    u.and_then(|u| u.nodes.get(node))
        .map(|n| n.items(None, &[]).into_iter().cloned().collect())
}

/// The IQ a server request stands for: from the owner's bare JID (which marks it as the server's,
/// see [`by_client`]) to the owner.
fn server_iq(owner: &BareJid, shard: crate::shard::ShardId) -> Acc {
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "pep-server")
        .with_attr("from", owner.as_str())
        .with_attr("to", owner.as_str());
    Acc::new(
        Stanza::from_element(&iq),
        Jid::from(owner.clone()),
        Jid::from(owner.clone()),
        shard,
    )
}

/// Runs `f` on `owner`'s home shard with the items of their node `node` (oldest first; `None`
/// when there is no such node or the state could not be had).
pub fn with_items(
    shard: &mut Shard,
    owner: BareJid,
    node: String,
    f: impl FnOnce(&mut Shard, Option<Vec<Item>>) + Send + 'static,
) {
    on_owner(shard, owner, move |shard, u| {
        let items = node_items(u.as_deref(), &node);
        f(shard, items)
    });
}

/// [`with_items`] for a node anyone may read (access model `open`): `None` for any other, so
/// that what only some contacts may see is not copied where everyone can (XEP-0398 §7).
pub fn with_open_items(
    shard: &mut Shard,
    owner: BareJid,
    node: String,
    f: impl FnOnce(&mut Shard, Option<Vec<Item>>) + Send + 'static,
) {
    on_owner(shard, owner, move |shard, u| {
        let open = u
            .as_deref()
            .and_then(|u| u.nodes.get(node.as_str()))
            .is_some_and(|n| n.meta.config.access_model == AccessModel::Open);
        let items = if open {
            node_items(u.as_deref(), &node)
        } else {
            None
        };
        f(shard, items)
    });
}

/// A publication of `payload` as item `id` of `node` with `publish-options` `options` (pairs of
/// `pubsub#…` field and value), for [`request_as_owner`].
pub fn publish_request(
    node: &str,
    id: String,
    payload: Element,
    options: &[(&str, &str)],
) -> Request {
    let mut x = form::new_form("submit", ps_ns::PUBLISH_OPTIONS);
    for (var, value) in options {
        x = x.with_child(form::field(var, "text-single", None, &[value]));
    }
    Request::Publish {
        node: node.to_owned(),
        item: PublishItem {
            id: Some(id),
            payload: Some(payload),
        },
        options: Some(x),
    }
}

/// What a shard knows right now of one node of a user homed here, without loading anything.
pub enum Peek<'a> {
    /// The user's PEP state is not in memory (or in use).
    NotLoaded,
    /// Loaded, and the user has no such node.
    NoNode,
    /// Loaded; the node's newest item (`None`: the node has none).
    Last(Option<&'a Item>),
}

/// The newest item of `owner`'s `node` if their PEP state is in memory on this shard (their home
/// shard): for decisions that cannot wait for a load, such as a presence on its way.
pub fn peek_last<'a>(shard: &'a Shard, owner: &BareJid, node: &str) -> Peek<'a> {
    match shard
        .ext
        .get::<Home>()
        .and_then(|h| h.loaded(owner.as_str()))
    {
        None => Peek::NotLoaded,
        Some(u) => match u.nodes.get(node) {
            None => Peek::NoNode,
            Some(n) => Peek::Last(n.last()),
        },
    }
}

/// Starts loading `owner`'s PEP state on their home shard (this one) if it is not in memory, so
/// that it is likely there when it is needed (a session was just bound).
pub fn preload(shard: &mut Shard, owner: &BareJid) {
    with_user(shard, owner, Box::new(|_, _| {}));
}
