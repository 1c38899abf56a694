//! `mod_bookmarks`: room bookmarks kept in step across their three homes, so clients of every
//! generation see the same list:
//! - XEP-0048 `<storage xmlns='storage:bookmarks'/>` in private XML storage (XEP-0049);
//! - the same `<storage/>` as item `current` of the PEP node `storage:bookmarks` (XEP-0411);
//! - one item per room in the PEP node `urn:xmpp:bookmarks:1` (XEP-0402, with its §5.3
//!   compatibility: only changed rooms are published, removed ones retracted).
//!
//! A change a client makes in one place (the `private_stored` and PEP events) is written to the
//! other two on the owner's behalf; those writes emit no events, so nothing loops. Private storage
//! keeps what XEP-0402 cannot hold (`<url/>` bookmarks) across rewrites.

pub mod convert;

use convert::{Bookmark, NS_BOOKMARKS2, NS_STORAGE};

use crate::hooks::{Events, HookCtx};
use crate::jid::BareJid;
use crate::modules::pep::api::{
    after_owner_requests, apply_as_owner, publish_request, request_as_owner, with_items, PepChange,
    PepEvent,
};
use crate::modules::private::{self, PrivateStored};
use crate::modules::pubsub::core::{Item, Request};
use crate::shard::Shard;
use crate::xml::Element;

/// The module's name in `[modules]`.
pub const NAME: &str = "bookmarks";
/// XEP-0402 §5.3: the server keeps XEP-0048 private storage in step.
pub const FEATURE_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
/// XEP-0411: the server converts between private storage and the PEP node `storage:bookmarks`.
pub const FEATURE_CONVERSION: &str = "urn:xmpp:bookmarks-conversion:0";
/// The XEP-0411 item id.
const CURRENT: &str = "current";

/// Listens to private storage and PEP, and advertises the conversions on every host.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    Events::<PrivateStored>::listen(shard, 50, NAME, private_stored);
    Events::<PepEvent>::listen(shard, 50, NAME, pep_changed);
    for host in hosts {
        for f in [FEATURE_COMPAT, FEATURE_CONVERSION] {
            crate::modules::disco::add_account_feature(&mut shard.ext, host, f);
        }
    }
}

/// Publishes `payload` as item `id` of `node`, with the options of both bookmark nodes: private
/// (whitelist), persistent, never pushed on presence (XEP-0402 §3.2, XEP-0223).
fn publish(node: &str, id: String, payload: Element, max_items: &str) -> Request {
    publish_request(
        node,
        id,
        payload,
        &[
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", max_items),
            ("pubsub#send_last_published_item", "never"),
            ("pubsub#access_model", "whitelist"),
        ],
    )
}

/// A client stored XEP-0048 bookmarks in private storage: PEP follows.
fn private_stored(shard: &mut Shard, ev: &PrivateStored) {
    let Some(storage) = ev
        .fragments
        .iter()
        .find(|f| f.ns == NS_STORAGE && f.name == "storage")
    else {
        return;
    };
    let rooms = convert::from_storage(storage);
    sync_bookmarks2(shard, ev.owner.clone(), rooms);
    publish_legacy(shard, ev.owner.clone(), storage.clone());
    // The answer follows the mirror: another resource reading the PEP bookmarks once the user
    // saw it finds them.
    if let Some(answer) = ev.answer.take() {
        after_owner_requests(shard, ev.owner.clone(), move |s| {
            crate::router::route(s, answer)
        });
    }
}

/// A client changed one of the PEP nodes.
fn pep_changed(shard: &mut Shard, ev: &PepEvent) {
    let owner = ev.owner.clone();
    match (ev.node.as_str(), &ev.change) {
        (NS_BOOKMARKS2, _) => {
            // Collate every item (XEP-0402 §5.3.1) once this change is in.
            with_items(
                shard,
                owner.clone(),
                NS_BOOKMARKS2.to_owned(),
                move |shard, items| {
                    let rooms = rooms_of(items);
                    // The XEP-0411 item's other entries (`<url/>`s) stay in it, as they stay in
                    // private storage.
                    with_items(
                        shard,
                        owner.clone(),
                        NS_STORAGE.to_owned(),
                        move |shard, legacy| {
                            let keep = legacy
                                .unwrap_or_default()
                                .iter()
                                .rev()
                                .find(|i| i.id == CURRENT)
                                .and_then(|i| i.payload.as_ref())
                                .filter(|p| p.ns == NS_STORAGE && p.name == "storage")
                                .map(convert::non_rooms)
                                .unwrap_or_default();
                            write_private(shard, owner.clone(), rooms.clone(), None);
                            publish_legacy(shard, owner, convert::to_storage(&rooms, &keep));
                        },
                    );
                },
            );
        }
        (
            NS_STORAGE,
            PepChange::Published {
                payload: Some(storage),
                ..
            },
        ) if storage.ns == NS_STORAGE => {
            // The published storage is the whole XEP-0048 set: its `<url/>`s replace private
            // storage's too.
            let rooms = convert::from_storage(storage);
            let keep = convert::non_rooms(storage);
            write_private(shard, owner.clone(), rooms.clone(), Some(keep));
            sync_bookmarks2(shard, owner, rooms);
        }
        _ => {}
    }
}

/// The bookmarks of the XEP-0402 node's items (foreign items skipped).
fn rooms_of(items: Option<Vec<Item>>) -> Vec<Bookmark> {
    items
        .unwrap_or_default()
        .iter()
        .filter_map(|i| convert::from_item(&i.id, i.payload.as_ref()?))
        .collect()
}

/// Makes the XEP-0402 node hold `rooms`: publishes the new and changed ones, retracts the rest
/// (read and written in one turn, so quick successive edits cannot interleave).
fn sync_bookmarks2(shard: &mut Shard, owner: BareJid, rooms: Vec<Bookmark>) {
    apply_as_owner(shard, owner, NS_BOOKMARKS2.to_owned(), move |items| {
        let changes = convert::changes(&rooms_of(items), &rooms);
        let mut reqs: Vec<Request> = changes
            .publish
            .iter()
            .map(|b| {
                let (id, payload) = convert::to_item(b);
                publish(NS_BOOKMARKS2, id, payload, "max")
            })
            .collect();
        if !changes.retract.is_empty() {
            reqs.push(Request::Retract {
                node: NS_BOOKMARKS2.to_owned(),
                ids: changes
                    .retract
                    .iter()
                    .map(|j| j.as_str().to_owned())
                    .collect(),
                notify: true,
            });
        }
        reqs
    });
}

/// Rewrites the private XEP-0048 fragment with `rooms` and `others` (its other children: `None`
/// keeps the fragment's own).
fn write_private(
    shard: &mut Shard,
    owner: BareJid,
    rooms: Vec<Bookmark>,
    others: Option<Vec<Element>>,
) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    private::update_as_server(&mut ctx, owner, NS_STORAGE, move |old| {
        let keep = others
            .or_else(|| old.map(|o| convert::non_rooms(&o)))
            .unwrap_or_default();
        Some(convert::to_storage(&rooms, &keep))
    });
}

/// Publishes `storage` as the XEP-0411 item.
fn publish_legacy(shard: &mut Shard, owner: BareJid, storage: Element) {
    request_as_owner(
        shard,
        owner,
        publish(NS_STORAGE, CURRENT.to_owned(), storage, "1"),
    );
}
