//! `mod_avatar`: XEP-0398, user avatars kept in step between PEP (XEP-0084) and vCards
//! (XEP-0153), so clients of either kind see the same picture.
//!
//! - A client publishes `urn:xmpp:avatar:metadata` (PEP event on the owner's home shard): the image
//!   of the first `<info/>` without a URL is looked up in `urn:xmpp:avatar:data`, its SHA-1
//!   checked against the id, and written as the vCard's `<PHOTO/>`; an empty `<metadata/>` removes
//!   the photo.
//! - A client stores a vCard with an embedded photo (`vcard_stored`): the server publishes the data
//!   item (id: the image's SHA-1) and then the metadata on the owner's behalf; a vCard without a
//!   photo disables a PEP avatar that had one.
//! - XEP-0398 §4: the user's available presences carry
//!   `<x xmlns='vcard-temp:x:update'><photo>SHA-1</photo></x>` unless the client wrote a
//!   `<photo/>` itself. The hash is the metadata item's, read on the home shard where the broadcast
//!   passes; the PEP state is loaded there when a session binds so it is usually in memory by the
//!   initial presence. The stamped broadcast is what probes are answered with later, and its hash
//!   goes to the session's connection shard, which stamps the session's directed presences (to a
//!   contact, a room join) with it: they never pass the home shard.

pub mod convert;

use std::rc::Rc;

use convert::{Metadata, Photo, PresenceHash, NS_DATA, NS_METADATA};

use crate::hooks::{Acc, Events, HookCtx, HookResult, SessionEvent};
use crate::jid::{BareJid, FullJid, Jid};
use crate::modules::pep::api::{
    after_owner_requests, apply_as_owner, peek_last, preload, publish_request, with_items,
    with_open_items, Peek, PepChange, PepEvent,
};
use crate::modules::vcard::{self, VcardStored};
use crate::shard::Shard;
use crate::sm::{PresenceUpdate, PRESENCE_UPDATE};
use crate::xml::{Element, Stanza, StanzaKind};

/// Nodes made from a vCard's photo are readable by anyone, as the vCard is (an existing node
/// keeps its own access model).
const OPEN: &[(&str, &str)] = &[("pubsub#access_model", "open")];

/// The module's name in `[modules]`.
pub const NAME: &str = "avatar";
/// XEP-0398's account feature.
pub const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";
/// Item id of the metadata that disables the avatar (XEP-0084 §4.6 names none).
const DISABLED_ID: &str = "disabled";

/// Listens to PEP and vCard changes, loads PEP state as sessions bind, and stamps presences.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    Events::<PepEvent>::listen(shard, 50, NAME, pep_changed);
    Events::<VcardStored>::listen(shard, 50, NAME, vcard_stored);
    shard
        .hooks
        .sm_register_connection
        .add(60, NAME, session_bound);
    shard.sm.add_home_handler(NAME, Rc::new(stamp_presence));
    shard.hooks.user_send_presence.add(60, NAME, stamp_directed);
    shard.hooks.session_end.add(60, NAME, |end, ctx| {
        ctx.ext
            .get_or_default::<SessionHashes>()
            .0
            .remove(&end.session.conn);
        HookResult::Continue
    });
    for host in hosts {
        crate::modules::disco::add_account_feature(&mut shard.ext, host, FEATURE);
    }
}

/// The new session's PEP state is wanted soon (its initial presence): load it now, and tell the
/// session's connection shard the hash once known, so that a directed presence or a room join
/// sent before (or right after) the first broadcast carries it too.
fn session_bound(ev: &mut SessionEvent, ctx: &mut HookCtx<'_>) -> HookResult {
    let owner = ev.jid.bare();
    let (jid, session) = (ev.jid.clone(), ev.session);
    // Runs on the home shard (this one) right after the hook.
    ctx.run_on(
        ctx.shard,
        Box::new(move |shard: &mut Shard| {
            preload(shard, &owner);
            if session.is_remote() {
                return;
            }
            with_items(shard, owner, NS_METADATA.to_owned(), move |shard, items| {
                let last = items.and_then(|i| i.into_iter().last());
                // No avatar (or one disabled, or elsewhere): nothing to add.
                let Some(hash) = stored_hash(last.and_then(|i| i.payload).as_ref()) else {
                    return;
                };
                tell_connection(shard, session, jid.clone(), Some(hash.clone()));
                restamp(shard, session, jid, &hash);
            });
        }),
    );
    HookResult::Continue
}

/// The session's available presence reached this home shard before its PEP state was in memory,
/// and went out without the hash (XEP-0398 §4: every available presence carries it): it is
/// broadcast again, stamped, as if the client had sent it again. Nothing happens when the
/// presence carries a `<photo/>` already, or the session is not available.
fn restamp(shard: &mut Shard, session: crate::shard::SessionRef, jid: FullJid, hash: &str) {
    let Some((priority, last)) = shard
        .sm
        .resources(&jid.bare())
        .iter()
        .find(|r| r.jid == jid && r.session == session)
        .and_then(|r| Some((r.priority?, r.last_presence.as_ref()?.stanza()?)))
    else {
        return;
    };
    let to = Jid::from(jid.bare());
    let mut acc = Acc::new(last, Jid::from(jid), to, shard.id);
    if !stamp(&mut acc, hash) {
        return;
    }
    acc.put(
        PRESENCE_UPDATE,
        PresenceUpdate {
            session,
            priority: Some(priority),
            initial: false,
        },
    );
    crate::sm::route(shard, acc);
    shard.drain_to_route();
}

/// Records on `session`'s connection shard (session `jid`) the hash its directed presences carry
/// (`None`: none any more; an entry of another session reusing the connection id stays).
fn tell_connection(
    shard: &mut Shard,
    session: crate::shard::SessionRef,
    jid: crate::jid::FullJid,
    hash: Option<String>,
) {
    let conn = session.conn;
    crate::sm::run_on(
        shard,
        session.shard,
        Box::new(move |shard: &mut Shard| {
            let hashes = &mut shard.ext.get_or_default::<SessionHashes>().0;
            match hash {
                Some(hash) => {
                    hashes.insert(conn, (jid, hash));
                }
                None => {
                    if hashes.get(&conn).is_some_and(|(j, _)| *j == jid) {
                        hashes.remove(&conn);
                    }
                }
            }
        }),
    );
}

/// The image of `owner`'s avatar item `id`, checked against it (XEP-0398 §3.1).
fn photo_of(
    items: Option<Vec<crate::modules::pubsub::core::Item>>,
    id: &str,
    mime: String,
) -> Option<Photo> {
    let item = items?.into_iter().find(|i| i.id == id)?;
    let bytes = convert::data_bytes(item.payload.as_ref()?)?;
    let photo = Photo { mime, bytes };
    (photo.id() == id).then_some(photo)
}

fn pep_changed(shard: &mut Shard, ev: &PepEvent) {
    if ev.node == NS_METADATA {
        match &ev.change {
            // The node's state is the PEP handler's while it runs: the new item tells the hash. Told
            // now, it reaches each session's shard ahead of the publish's result.
            PepChange::Published { payload, .. } => {
                let hash = stored_hash(payload.as_ref()).unwrap_or_default();
                tell_sessions(shard, &ev.owner, Some(hash));
            }
            // What is left is known once the handler is done.
            PepChange::Retracted(_) => {
                let owner = ev.owner.clone();
                crate::sm::run_on(
                    shard,
                    shard.id,
                    Box::new(move |shard: &mut Shard| {
                        let hash = current_hash(shard, &owner);
                        tell_sessions(shard, &owner, hash);
                    }),
                );
            }
        }
    }
    let PepChange::Published {
        payload: Some(payload),
        ..
    } = &ev.change
    else {
        return;
    };
    if ev.node != NS_METADATA {
        return;
    }
    let owner = ev.owner.clone();
    match convert::metadata(payload) {
        Some(Metadata::Disabled) => set_vcard_photo(shard, owner, None),
        Some(Metadata::Stored { id, mime }) => {
            // XEP-0398 §7: only an avatar anyone may fetch goes to the vCard, which anyone may
            // read; one for some contacts only (the default, `presence`) stays in PEP.
            with_open_items(
                shard,
                owner.clone(),
                NS_DATA.to_owned(),
                move |shard, items| match photo_of(items, &id, mime) {
                    Some(photo) => set_vcard_photo(shard, owner, Some(photo)),
                    None => tracing::debug!(
                        user = owner.as_str(),
                        id,
                        "avatar: no open data item for the metadata; vCard left as it is"
                    ),
                },
            );
        }
        Some(Metadata::External) | None => {}
    }
}

/// On `owner`'s home shard, after a change of the metadata node: every session's connection shard
/// learns `hash`, the one now advertised (`None`: none any more), for the directed presences (and
/// room joins) sent before the next broadcast. They carried the old one until then.
fn tell_sessions(shard: &mut Shard, owner: &BareJid, hash: Option<String>) {
    let sessions: Vec<_> = shard
        .sm
        .resources(owner)
        .iter()
        .filter(|r| !r.session.is_remote())
        .map(|r| (r.session, r.jid.clone()))
        .collect();
    for (session, jid) in sessions {
        tell_connection(shard, session, jid, hash.clone());
    }
}

/// Writes `photo` (or no photo) into `owner`'s vCard, when it differs.
fn set_vcard_photo(shard: &mut Shard, owner: BareJid, photo: Option<Photo>) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    vcard::update_as_server(&mut ctx, owner, move |card| {
        (convert::vcard_photo(&card) != photo)
            .then(|| convert::with_vcard_photo(&card, photo.as_ref()))
    });
}

fn vcard_stored(shard: &mut Shard, ev: &VcardStored) {
    let owner = ev.owner.clone();
    let photo = convert::vcard_photo(&ev.vcard);
    let hash = photo.as_ref().map(Photo::id);
    apply_as_owner(
        shard,
        owner.clone(),
        NS_METADATA.to_owned(),
        move |items| match photo {
            // The data first: the metadata is published only if the data was (XEP-0398 §3.2).
            Some(photo) => {
                let id = photo.id();
                vec![
                    publish_request(NS_DATA, id.clone(), convert::data_payload(&photo), OPEN),
                    publish_request(
                        NS_METADATA,
                        id,
                        convert::metadata_payload(Some(&photo)),
                        OPEN,
                    ),
                ]
            }
            None => {
                // Only a PEP avatar that shows a picture is disabled (no item for users without one).
                let shows = items
                    .and_then(|i| i.into_iter().last())
                    .and_then(|i| i.payload)
                    .and_then(|p| convert::metadata(&p))
                    .is_some_and(|m| m != Metadata::Disabled);
                if shows {
                    vec![publish_request(
                        NS_METADATA,
                        DISABLED_ID.to_owned(),
                        convert::metadata_payload(None),
                        &[],
                    )]
                } else {
                    Vec::new()
                }
            }
        },
    );
    // The answer follows the PEP avatar: a contact reading it once the user saw it finds it; and
    // the sessions' directed presences carry the new picture's hash, as after a client's publish.
    let answer = ev.answer.take();
    after_owner_requests(shard, owner.clone(), move |s| {
        if let Some(h) = hash {
            tell_sessions(s, &owner, Some(h));
        }
        if let Some(a) = answer {
            crate::router::route(s, a);
        }
    });
}

/// The hash to advertise for `owner` as far as this home shard knows now: `Some("")` for no
/// avatar, `None` when their PEP state is not in memory.
fn current_hash(shard: &Shard, owner: &BareJid) -> Option<String> {
    match peek_last(shard, owner, NS_METADATA) {
        // No PEP avatar: the client's own XEP-0153 handling (from its vCard) is left alone.
        Peek::NotLoaded | Peek::NoNode => None,
        Peek::Last(item) => {
            Some(stored_hash(item.and_then(|i| i.payload.as_ref())).unwrap_or_default())
        }
    }
}

/// The hash of the avatar a metadata item's `payload` names, when the server stores its data.
fn stored_hash(payload: Option<&Element>) -> Option<String> {
    match payload.and_then(convert::metadata) {
        Some(Metadata::Stored { id, .. }) => Some(id),
        _ => None,
    }
}

/// Home handler: the user's own available presence, on its way to the broadcast, gets the hash;
/// so does the copy kept for probe answers, and the session's connection shard learns it for the
/// session's directed presences.
fn stamp_presence(shard: &mut Shard, mut acc: Acc) -> Option<Acc> {
    if acc.kind() != StanzaKind::Presence {
        return Some(acc);
    }
    let Some(up) = acc.get(PRESENCE_UPDATE).copied() else {
        return Some(acc);
    };
    if up.priority.is_none() {
        return Some(acc);
    }
    let owner = acc.from.bare();
    let Some(hash) = current_hash(shard, &owner) else {
        return Some(acc);
    };
    if !stamp(&mut acc, &hash) {
        return Some(acc);
    }
    if let Ok(jid) = acc.from.clone().try_into_full() {
        shard
            .sm
            .set_last_presence(&jid, up.session, Some(acc.stanza.clone()));
        if !up.session.is_remote() {
            tell_connection(shard, up.session, jid, Some(hash));
        }
    }
    Some(acc)
}

/// Adds `hash` to the presence in `acc` unless the client wrote its own `<photo/>`; false when
/// it did (or the stanza does not parse).
fn stamp(acc: &mut Acc, hash: &str) -> bool {
    let Ok(el) = acc.stanza.tree() else {
        return false;
    };
    if convert::presence_hash(&el) != PresenceHash::Inject {
        return false;
    }
    acc.stanza = Stanza::from_element(&convert::with_presence_hash(&el, hash));
    true
}

/// Per connection shard: the hash the home shard last gave each session (at its bind, and with
/// each broadcast), with the session's JID (an answer that comes after the session ended must not
/// serve a later connection that reuses the id); one entry per session, gone with it.
#[derive(Default)]
struct SessionHashes(ahash::HashMap<crate::shard::ConnId, (crate::jid::FullJid, String)>);

/// `user_send_presence` (the connection's shard): an available presence to someone (a contact, a
/// room) carries the hash the session's broadcast carries (XEP-0398 §4: "every available
/// presence", "directed presences such as MUC joins"). Broadcasts get it on the home shard.
fn stamp_directed(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if acc.ty() != crate::xml::StanzaType::Absent || acc.stanza.to().is_none() {
        return HookResult::Continue;
    }
    let Some(sender) = acc.get(crate::c2s::route::SENDER).copied() else {
        return HookResult::Continue;
    };
    let known = ctx
        .ext
        .get::<SessionHashes>()
        .and_then(|h| h.0.get(&sender.conn));
    let Some((jid, hash)) = known else {
        return HookResult::Continue;
    };
    if jid.as_str() != acc.from.as_str() {
        return HookResult::Continue;
    }
    let hash = hash.clone();
    stamp(acc, &hash);
    HookResult::Continue
}
