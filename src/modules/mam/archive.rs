//! Archiving on the route: which messages, under which id, and the buffered write.
//!
//! A message is archivable when it is `chat` or `normal` with a `<body/>`, or carries the XEP-0334
//! `<store/>` hint, and has no `<no-store/>` / `<no-permanent-store/>` hint; a room archives its
//! `groupchat` messages with a body. One id is taken per message on the shard that routes it and
//! used in the sender's and the recipient's archives alike; the recipient (or the room's occupants)
//! see it as `<stanza-id by='owner' id='…'/>`.

use std::rc::Rc;
use std::time::SystemTime;

use memchr::memmem;

use super::id::{self, IdGen};
use super::prefs::{Decision, PrefsTable};
use super::{ns, MamOptions};
use crate::hooks::{Acc, HookCtx, HookResult, JobDone};
use crate::jid::Jid;
use crate::shard::Shard;
use crate::store::{ArchiveBatch, ArchiveInbox, Keep, RowRef};
use crate::xml::{Element, Node, Stanza, StanzaKind, StanzaType};

/// Scratch key: the archive id taken for this message by the sender's side.
const MAM_ID: crate::hooks::Key<i64> = crate::hooks::Key::new("mam.id");

/// A substring searcher built once per process (building one per search, as `memmem::find` does,
/// cost more than the search itself).
macro_rules! needle {
    ($name:ident, $text:expr) => {
        static $name: std::sync::LazyLock<memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memmem::Finder::new($text));
    };
}

needle!(STANZA_ID, "stanza-id");
needle!(BODY, "<body");
needle!(SUBJECT, "<subject");
needle!(HINTS, ns::HINTS);
needle!(FORWARD, ns::FORWARD);

/// This shard's archive state: the id generator and the rows waiting for the next write.
#[derive(Default)]
struct Archive {
    ids: IdGen,
    rows: ArchiveBatch,
    batch: usize,
    /// The domains served here, configured or added at run time (whose users have archives).
    served: crate::shard::Served,
    /// Where this shard's rows wait for the store thread (which takes them all at once).
    inbox: std::sync::Arc<ArchiveInbox>,
    /// The inbox may hold rows no take was asked for yet: look again at the next turn.
    unasked: bool,
}

/// Registers the handlers and the per-turn write.
pub fn start(shard: &mut Shard, opts: &MamOptions) {
    let written = shard.metrics.counter(
        "petrel_archive_rows_written",
        "Message archive rows committed to the store",
    );
    // Rows committed to the archive (this shard's series).
    let inbox = ArchiveInbox::new(Box::new(move |r| match r {
        Ok(n) => {
            written.inc_by(n as u64);
        }
        Err(e) => tracing::error!(error = %e, "archive write failed"),
    }));
    shard.ext.insert(Archive {
        inbox: std::sync::Arc::new(inbox),
        batch: opts.batch,
        served: shard.served(),
        ..Archive::default()
    });
    seed_ids(shard);
    // Before anything else reads the message: forged stanza ids go first.
    shard
        .hooks
        .user_send_message
        .add(5, super::NAME, strip_forged);
    shard
        .hooks
        .user_send_message
        .add(80, super::NAME, archive_outgoing);
    shard
        .hooks
        .filter_local_packet
        .add(80, super::NAME, archive_incoming);
    shard
        .hooks
        .filter_room_packet
        .add(80, super::NAME, archive_groupchat);
    // Just before the session manager's bounce (i32::MAX): nobody took the message, offline
    // storage neither (too large, or not running).
    shard
        .hooks
        .offline_message
        .add(i32::MAX - 1, super::NAME, unarchive_refused);
    shard.add_flusher(Rc::new(flush));
}

/// Clients may send `origin-id`, never `stanza-id`: only the archiving entity assigns those
/// (XEP-0359 §3.1), so any a client wrote is removed before anyone trusts it.
fn strip_forged(acc: &mut Acc, _ctx: &mut HookCtx<'_>) -> HookResult {
    strip_stanza_ids(acc, |_| true);
    HookResult::Continue
}

/// Removes the top-level stanza ids whose `by` `by` accepts.
fn strip_stanza_ids(acc: &mut Acc, by: impl Fn(Option<&str>) -> bool) {
    if STANZA_ID.find(acc.stanza.bytes()).is_none() {
        return;
    }
    let Ok(mut el) = acc.stanza.tree() else {
        return;
    };
    let before = el.children.len();
    el.children.retain(|c| {
        !matches!(c, Node::Element(e) if e.name == "stanza-id" && e.ns == ns::SID && by(e.attr("by")))
    });
    if el.children.len() != before {
        acc.stanza = Stanza::from_element(&el);
    }
}

/// Whether a message goes to the archive (`groupchat`: a room's message, else a 1:1 one).
fn archivable(stanza: &Stanza, groupchat: bool) -> bool {
    let ty = stanza.ty();
    let type_ok = if groupchat {
        ty == StanzaType::Groupchat
    } else {
        ty.is_one_to_one_message()
    };
    if !type_ok {
        return false;
    }
    let bytes = stanza.bytes();
    // Hints and forwarded messages are rare: only then is the tree built, and only the message's
    // own children count. A forwarded message (a MAM result, a carbon) carries another message's
    // body and hints (a result carrying a `<store/>` message was archived again at each query
    // that returned it), and a hint may be written with a prefix (`<h:no-store xmlns:h=...>`),
    // which no byte search for `<no-store` finds.
    if HINTS.find(bytes).is_some() || FORWARD.find(bytes).is_some() {
        let Ok(t) = stanza.tree() else {
            return false;
        };
        let own = |name| t.get_child(name, ns::HINTS).is_some();
        if own("no-store") || own("no-permanent-store") {
            return false;
        }
        if own("store") || t.get_child("body", crate::xmpp::ns::CLIENT).is_some() {
            return true;
        }
        return groupchat && t.get_child("subject", crate::xmpp::ns::CLIENT).is_some();
    }
    if BODY.find(bytes).is_some() {
        return true;
    }
    // A room's subject change is kept too (XEP-0313 §6.1.2: "as should subject change stanzas").
    groupchat
        && SUBJECT.find(bytes).is_some()
        && stanza
            .tree()
            .is_ok_and(|t| t.get_child("subject", crate::xmpp::ns::CLIENT).is_some())
}

/// `user_send_message`: the sender's copy.
fn archive_outgoing(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if acc.kind() != StanzaKind::Message || !archivable(&acc.stanza, false) {
        return HookResult::Continue;
    }
    let owner = acc.from.bare_str();
    let Some(decision) = ctx
        .ext
        .get::<PrefsTable>()
        .map(|t| t.decide(owner, &acc.to))
    else {
        return HookResult::Continue;
    };
    let (id, ts) = next_id(ctx);
    if decision != Decision::Skip {
        // The sender's account may be removed before the row's commit (checked when written).
        let keep = keep(decision, Keep::IfAccount);
        let row = row(owner, id, ts, &acc.to, true, keep, acc.stanza.bytes());
        push(ctx, row);
        // Under `roster` preferences whether the row is kept is known only when it is written
        // (the roster is in the store): no id that might name nothing.
        if decision == Decision::Archive {
            let sid = stanza_id(owner, id);
            acc.put(crate::hooks::SENT_STANZA_ID, sid);
        }
    }
    acc.put(MAM_ID, id);
    HookResult::Continue
}

/// `filter_local_packet`: the local recipient's copy, stamped with its stanza id.
fn archive_incoming(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    // The sender's side took an id for it on this route: it found the message archivable (and it
    // is no offline message routed again), so neither needs searching the stanza again.
    let sent_here = acc.get(MAM_ID).copied();
    if acc.kind() != StanzaKind::Message
        || acc.to.node().is_none()
        || (sent_here.is_none() && !archivable(&acc.stanza, false))
    {
        return HookResult::Continue;
    }
    // Users of the hosted domains only: a message to a service (a room occupant's private
    // message) is not a user's, and belongs to no archive.
    let hosted = ctx
        .ext
        .get::<Archive>()
        .is_some_and(|a| a.served.contains(acc.to.domain()));
    if !hosted {
        return HookResult::Continue;
    }
    if sent_here.is_none() && has_stanza_id_by(&acc.stanza, acc.to.bare_str()) {
        // Routed again (offline storage delivering it at login, a session's unacknowledged
        // message going elsewhere): archived and stamped already.
        let again = acc.reroutes > 0 || acc.get(crate::modules::offline::OFFLINE_ROW).is_some();
        if again {
            return HookResult::Continue;
        }
        // From outside (a remote server, a component) with an id claiming to be ours: forged
        // (XEP-0359 §7: the archive removes it); it kept the message out of the archive and gave
        // the client a catch-up id of the sender's choosing. Archived as any other. (The owner
        // is copied only here, off the common path.)
        let owner = acc.to.bare_str().to_owned();
        strip_stanza_ids(acc, |by| by == Some(owner.as_str()));
    }
    let owner = acc.to.bare_str();
    let Some(decision) = ctx
        .ext
        .get::<PrefsTable>()
        .map(|t| t.decide(owner, &acc.from))
    else {
        return HookResult::Continue;
    };
    if decision == Decision::Skip {
        return HookResult::Continue;
    }
    let (id, ts) = match sent_here {
        Some(id) => (id, id::micros_of(id)),
        None => next_id(ctx),
    };
    // The address may name no one: kept only for an account (checked when written).
    let keep = keep(decision, Keep::IfAccount);
    let row = row(owner, id, ts, &acc.from, false, keep, acc.stanza.bytes());
    push(ctx, row);
    let sid = stanza_id(owner, id);
    acc.stanza.append_child(&sid);
    acc.put(crate::hooks::ARCHIVE_STANZA_ID, sid);
    acc.put(crate::hooks::ARCHIVED_FOR_RECIPIENT, id);
    HookResult::Continue
}

/// `offline_message`, last before the bounce: the recipient's server refuses the message, so its
/// archive does not keep it (XEP-0313 §7.1).
fn unarchive_refused(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if let Some(&id) = acc.get(crate::hooks::ARCHIVED_FOR_RECIPIENT) {
        unarchive(ctx, acc.to.bare_str().to_owned(), id);
    }
    HookResult::Continue
}

/// [`crate::hooks::MessageRefused`]: another module refused a message this archive kept for its
/// recipient (a block, offline storage full).
pub fn on_refused(shard: &mut Shard, ev: &crate::hooks::MessageRefused) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    unarchive(&mut ctx, ev.owner.as_str().to_owned(), ev.archived);
}

/// Takes message `id` out of `owner`'s archive, where it was archived as received: the message
/// was refused after all (a block, offline storage full, too large for it, or none). The row may
/// still wait in a shard's buffer: the delete runs after it is written.
fn unarchive(ctx: &mut HookCtx<'_>, owner: String, id: i64) {
    if ctx.ext.get::<Archive>().is_none() {
        return;
    }
    after_rows(ctx, move |store| {
        if let Err(e) = store.mam_delete_received(&owner, id) {
            tracing::error!(error = %e, owner, id, "archive: refused message not removed");
        }
    });
}

/// `filter_room_packet`: a room's groupchat message, archived under the room's JID.
fn archive_groupchat(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if acc.kind() != StanzaKind::Message || !archivable(&acc.stanza, true) {
        return HookResult::Continue;
    }
    // A client's own `<x muc#user>` was removed by the room (XEP-0313 §5.1.2).
    let room = acc.to.bare_str();
    let (id, ts) = next_id(ctx);
    // The archive's copy carries the sender's real JID as `<x muc#user><item jid/></x>`; the
    // broadcast does not. Who sees it is decided at query time (XEP-0313 §6.1.2: the room may
    // have changed its anonymity since, `RealJids`).
    let with_real = acc.get(crate::hooks::ROOM_REAL_JID).map(|real| {
        let x = Element::new("x", crate::xmpp::ns::MUC_USER).with_child(
            Element::new("item", crate::xmpp::ns::MUC_USER).with_attr("jid", real.as_str()),
        );
        let mut bytes = Vec::new();
        x.write_to(&mut bytes);
        let mut kept = acc.stanza.clone();
        kept.append_child(&bytes);
        kept
    });
    let kept = with_real.as_ref().unwrap_or(&acc.stanza);
    let row = row(room, id, ts, &acc.from, false, Keep::Always, kept.bytes());
    push(ctx, row);
    let sid = stanza_id(room, id);
    acc.stanza.append_child(&sid);
    acc.put(crate::hooks::ARCHIVE_STANZA_ID, sid);
    HookResult::Continue
}

/// The stanza carries our `<stanza-id by='owner'/>` (clients' own were removed when they sent it).
fn has_stanza_id_by(stanza: &Stanza, owner: &str) -> bool {
    if STANZA_ID.find(stanza.bytes()).is_none() {
        return false;
    }
    stanza.tree().is_ok_and(|t| {
        t.child_elements()
            .any(|c| c.name == "stanza-id" && c.ns == ns::SID && c.attr("by") == Some(owner))
    })
}

fn next_id(ctx: &mut HookCtx<'_>) -> (i64, i64) {
    let shard = ctx.shard;
    ctx.ext
        .get_or_default::<Archive>()
        .ids
        .next(shard, SystemTime::now())
}

/// When a user's row is kept: `otherwise` unless the owner archives only roster contacts.
fn keep(decision: Decision, otherwise: Keep) -> Keep {
    if decision == Decision::IfInRoster {
        Keep::IfInRoster
    } else {
        otherwise
    }
}

fn row<'a>(
    owner: &'a str,
    id: i64,
    ts: i64,
    with: &'a Jid,
    outgoing: bool,
    keep: Keep,
    stanza: &'a [u8],
) -> RowRef<'a> {
    RowRef {
        owner,
        id,
        with_bare: with.bare_str(),
        with_res: with.resource().unwrap_or_default(),
        outgoing,
        ts,
        stanza,
        keep,
    }
}

/// `<stanza-id xmlns='urn:xmpp:sid:0' by='owner' id='…'/>`, serialized (written directly: one
/// per archived message, and building an element tree for it cost several allocations).
fn stanza_id(owner: &str, id: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64 + owner.len());
    bytes.extend_from_slice(b"<stanza-id xmlns='");
    bytes.extend_from_slice(ns::SID.as_bytes());
    bytes.extend_from_slice(b"' by='");
    crate::xml::escape::escape_attr_into(owner, &mut bytes);
    bytes.extend_from_slice(b"' id='");
    // Decimal digits (`id::encode`): nothing to escape.
    id::encode_into(id, &mut bytes);
    bytes.extend_from_slice(b"'/>");
    bytes
}

/// Appends `<stanza-id xmlns='urn:xmpp:sid:0' by='owner' id='…'/>`.
#[cfg(test)]
fn stamp(stanza: &mut Stanza, owner: &str, id: i64) {
    stanza.append_child(&stanza_id(owner, id));
}

/// New ids must sort after every stored one, even if the clock went back across a restart (clients
/// catch up with `after=<last id>`): the generator starts past the largest stored id.
fn seed_ids(shard: &mut Shard) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(Some(super::STORE_KEY), |store| {
        let max = store.mam_max_id();
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| match max {
                Ok(max) => {
                    if let Some(a) = shard.ext.get_mut::<Archive>() {
                        a.ids.at_least(max);
                    }
                }
                Err(e) => tracing::error!(error = %e, "archive: largest stored id unreadable"),
            })),
            ..JobDone::default()
        }
    });
}

/// Buffers a row (copied into the shard's batch); a full batch is handed to the store at once.
fn push(ctx: &mut HookCtx<'_>, row: RowRef<'_>) {
    let a = ctx.ext.get_or_default::<Archive>();
    a.rows.push(row);
    if a.rows.len() >= a.batch.max(1) {
        hand_over(ctx);
    }
}

/// Moves the buffered rows into this shard's inbox, and queues the store job that takes them when
/// the inbox asks for it (see [`ArchiveInbox`] for when).
fn hand_over(ctx: &mut HookCtx<'_>) {
    let a = ctx.ext.get_or_default::<Archive>();
    let (ask, unasked) = a.inbox.put(&mut a.rows);
    a.unasked = unasked;
    if !ask {
        return;
    }
    let inbox = a.inbox.clone();
    // Coalesced with later takes into one transaction (committed before any archive query on
    // this store thread runs, see `STORE_KEY`).
    ctx.store(Some(super::STORE_KEY), move |store| {
        store.mam_take(&inbox);
        JobDone::default()
    });
}

/// Empties `owner`'s archive of every row archived until now, rows still on their way included,
/// and none archived after. A room keeps its archive on its home shard: called there when a room
/// is destroyed or a new one created under a name, so that the new room never shows what an
/// earlier one kept (a destroyed room's last rows were written after the delete; a temporary
/// room's outlived a restart). Ids grow on this shard, so a cut at a fresh id tells the earlier
/// rows from the new room's, whenever each is written; every row of this shard's taken before
/// the delete is written first (the delete flushes), and a row taken after it is newer anyway.
pub fn forget_owner(shard: &mut Shard, owner: String) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    if ctx.ext.get::<Archive>().is_none() {
        // No archive running: whatever an earlier run kept goes.
        ctx.store(Some(super::STORE_KEY), move |store| {
            if let Err(e) = store.mam_delete_owner(&owner) {
                tracing::error!(error = %e, owner, "archive not deleted");
            }
            JobDone::default()
        });
        return;
    }
    let (before, _) = next_id(&mut ctx);
    after_rows(&mut ctx, move |store| {
        if let Err(e) = store.mam_delete_owner_before(&owner, before) {
            tracing::error!(error = %e, owner, "archive not deleted");
        }
    });
}

/// Runs `job` on the archive's store thread after every row buffered on this shard so far: they go
/// to the inbox now, and the job takes them ahead of its own work.
fn after_rows(ctx: &mut HookCtx<'_>, job: impl FnOnce(&crate::store::Store) + Send + 'static) {
    hand_over(ctx);
    let inbox = ctx.ext.get::<Archive>().map(|a| a.inbox.clone());
    ctx.store(Some(super::STORE_KEY), move |store| {
        if let Some(inbox) = &inbox {
            store.mam_take(inbox);
        }
        job(store);
        JobDone::default()
    });
}

/// Whether this shard archives (the module runs here): only then does a room's archive hold its
/// messages, to refill its history from after a restart.
pub fn running(shard: &Shard) -> bool {
    shard.ext.get::<Archive>().is_some()
}

/// One message of a room's archive, as a restored room's history takes it.
pub struct RoomArchived {
    /// The groupchat message as archived (from `room/nick`).
    pub stanza: Vec<u8>,
    /// When the room got it.
    pub at: SystemTime,
    /// Its `<stanza-id by='room'/>`, serialized.
    pub stanza_id: Vec<u8>,
}

/// On a pool thread: the newest `n` messages with a body of `room`'s archive, oldest first (a
/// restored room's history: XEP-0045 keeps it in memory only; Prosody's mod_muc_mam refills it
/// likewise). Body-less rows (`<store/>` hints) are passed over, a few pages back at most.
pub fn room_history(
    store: &crate::store::Store,
    room: &str,
    n: usize,
) -> Result<Vec<RoomArchived>, crate::store::StoreError> {
    const PAGES: usize = 4;
    let mut found = Vec::new();
    let mut filter = crate::store::MamFilter::default();
    for _ in 0..PAGES {
        if found.len() >= n {
            break;
        }
        let rows = store.mam_query(room, &filter, n, true)?;
        let Some(oldest) = rows.first().map(|m| m.id) else {
            break;
        };
        let full = rows.len() == n;
        // Newest first while collecting; the page is oldest first.
        for m in rows.into_iter().rev() {
            if found.len() < n && BODY.find(&m.stanza).is_some() {
                found.push(RoomArchived {
                    at: std::time::UNIX_EPOCH
                        + std::time::Duration::from_micros(u64::try_from(m.ts).unwrap_or_default()),
                    stanza_id: stanza_id(room, m.id),
                    stanza: m.stanza,
                });
            }
        }
        if !full {
            break;
        }
        filter.before_id = Some(oldest);
    }
    found.reverse();
    Ok(found)
}

/// Once per scheduler turn (and at least once a second): the rows buffered on this shard go to its
/// inbox, and a take is asked for when one is due.
fn flush(shard: &mut Shard) {
    let due = shard
        .ext
        .get::<Archive>()
        .is_some_and(|a| !a.rows.is_empty() || a.unasked);
    if due {
        let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
        hand_over(&mut ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stanza id written directly is what the element tree would serialize.
    #[test]
    fn stanza_id_is_the_element() {
        for owner in ["bob@example.com", "r&d@rooms.example.com", "o'hara@x"] {
            let el = crate::xml::Element::new("stanza-id", ns::SID)
                .with_attr("by", owner)
                .with_attr("id", id::encode(1234567890123));
            let mut want = Vec::new();
            el.write_to(&mut want);
            assert_eq!(
                String::from_utf8_lossy(&stanza_id(owner, 1234567890123)),
                String::from_utf8_lossy(&want)
            );
        }
    }

    /// The message `xml` (a `<message>` start tag) with `type='ty'` (none when empty).
    fn m(xml: &[u8], ty: &str) -> Stanza {
        let xml = String::from_utf8_lossy(xml);
        let typed = if ty.is_empty() {
            xml.into_owned()
        } else {
            xml.replacen("<message", &format!("<message type='{ty}'"), 1)
        };
        Stanza::parse(typed.into_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn what_is_archived() {
        assert!(archivable(
            &m(b"<message><body>x</body></message>", "chat"),
            false
        ));
        assert!(archivable(
            &m(b"<message><body>x</body></message>", ""),
            false
        ));
        assert!(!archivable(
            &m(b"<message><body>x</body></message>", "headline"),
            false
        ));
        assert!(!archivable(
            &m(b"<message><body>x</body></message>", "groupchat"),
            false
        ));
        assert!(archivable(
            &m(b"<message><body>x</body></message>", "groupchat"),
            true
        ));
        // A room's subject change, not a 1:1 message's subject alone.
        assert!(archivable(
            &m(b"<message><subject>topic</subject></message>", "groupchat"),
            true
        ));
        assert!(!archivable(
            &m(b"<message><subject>topic</subject></message>", "chat"),
            false
        ));
        assert!(!archivable(
            &m(
                b"<message><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
                "chat"
            ),
            false
        ));
        assert!(archivable(
            &m(
                b"<message><store xmlns='urn:xmpp:hints'/></message>",
                "chat"
            ),
            false
        ));
        assert!(!archivable(
            &m(
                b"<message><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
                "chat"
            ),
            false
        ));
        assert!(!archivable(
            &m(
                b"<message><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
                "chat"
            ),
            false
        ));
        // A prefixed hint is the same hint.
        assert!(!archivable(
            &m(
                b"<message><body>x</body><h:no-store xmlns:h='urn:xmpp:hints'/></message>",
                "chat"
            ),
            false
        ));
        assert!(archivable(
            &m(
                b"<message><h:store xmlns:h='urn:xmpp:hints'/><received xmlns='urn:xmpp:receipts' id='1'/></message>",
                "chat"
            ),
            false
        ));
        // A MAM result (no type: normal) forwarding a `<store/>`-hinted or bodied message is not
        // archived again; a carbon-like wrapper with a body of its own is.
        for inner in [
            "<message type='chat'><store xmlns='urn:xmpp:hints'/></message>",
            "<message type='chat'><body>x</body></message>",
        ] {
            let result = format!(
                "<message><result xmlns='urn:xmpp:mam:2' queryid='q' id='1'>\
                 <forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded></result></message>"
            );
            assert!(!archivable(&m(result.as_bytes(), ""), false), "{result}");
        }
        assert!(archivable(
            &m(
                b"<message><body>own</body><forwarded xmlns='urn:xmpp:forward:0'>\
                  <message><no-store xmlns='urn:xmpp:hints'/></message></forwarded></message>",
                "chat"
            ),
            false
        ));
    }

    #[test]
    fn stamping_keeps_the_stanza_indexed() {
        for xml in [
            "<message to='a@x' id='1'><body>hi</body></message>",
            "<message to='a@x' id='1'/>",
            "<message to='a@x' id='1'>text</message>",
            "<message to='a@x' id='1'><body>spaced end tag</body></message >",
            "<message to='a@x' id='1'><body>x</body></message\n\t>",
        ] {
            let mut s = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
            stamp(&mut s, "a@x", 42);
            let again = Stanza::parse(s.bytes().to_vec()).unwrap_or_else(|e| panic!("{e}: {xml}"));
            assert_eq!(again.to().as_deref(), Some("a@x"));
            assert_eq!(s.id().as_deref(), Some("1"));
            let t = s.tree().unwrap_or_else(|e| panic!("{e}"));
            let sid = t
                .get_child("stanza-id", ns::SID)
                .unwrap_or_else(|| panic!("{xml}"));
            assert_eq!(sid.attr("id"), Some("42"));
            s.set_to("b@x/r");
            assert_eq!(s.to().as_deref(), Some("b@x/r"));
        }
    }
}
