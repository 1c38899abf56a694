//! `mod_offline`: offline message storage (XEP-0160).
//!
//! On the recipient's home shard, `offline_message` (no available resource can take a message) hands
//! chat/normal messages to a store job and stops the hook before the session manager's default
//! handler (which answers `service-unavailable`). The job checks the account exists, applies the
//! per-user limit and commits before it returns; any refusal goes back to the sender as an error,
//! never a silent drop.
//!
//! On `user_available` (initial presence, home shard) a second job leases the user's oldest
//! messages, a chunk at a time (`CHUNK_ROWS`, `CHUNK_BYTES`), and routes each to the resource that
//! became available with a XEP-0203 `<delay/>` stamped at storage time; the last message of a
//! chunk delivered fetches the next (a stream-managed client is asked for its ack at once,
//! `hooks::ACK_WANTED`), so a backlog of any length fits the session's mailbox and unacknowledged
//! bounds.
//!
//! Delivery is at least once, never lost: the fetch leases the rows instead of deleting them, and
//! each delivered message carries a guard ([`OFFLINE_ROW`], `hooks::OnDrop`) that deletes its row
//! when the message leaves the route for good — written to a client without stream management, or
//! acknowledged by one with it. A message that comes back to this hook (its session ended without
//! it) releases its row instead, for the next login; a crash releases every lease.
//!
//! Bind 2 (XEP-0386 §3.2): a session bound inside SASL2 syncs from the archive, so the server
//! "MUST clear the offline messages [...] without sending them (as they will be provided by MAM)".
//! Only the messages the archive holds (they carry its `<stanza-id by='user'>`) are cleared so; any
//! other (no archive, or one that kept no copy) is delivered as usual, never lost. The connection's
//! shard tells the home shard at the bind, ahead of the initial presence on the same ring.
//!
//! Ordering: both jobs are keyed by the user ([`user_key`]), so they run one after another on one pool
//! thread in the order the home shard queued them. A message routed to offline storage before the
//! initial presence is therefore stored before the fetch reads the table (nothing is lost while a
//! store job is in flight), and two resources becoming available at once run their fetches in
//! turn: each chunk goes to one of them (exactly once), so a backlog may be split between them.

use crate::hooks::{Acc, HookCtx, HookResult, JobDone, OnDrop, SessionEvent};
use crate::jid::{BareJid, Jid};
use crate::metrics::Counter;
use crate::shard::{Shard, ShardId};
use crate::store::{OfflinePush, Store};
use crate::xml::{Element, Node, Stanza};
use crate::xmpp::{ErrorType, StanzaErrorCondition};

use crate::modules::options::{self, OptionError};

pub mod hold;

/// Features this module adds to the server's disco#info (XEP-0160).
pub const FEATURES: &[&str] = &["msgoffline"];

/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = crate::xmpp::ns::DELAY;
/// XEP-0334 message processing hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0085 chat state notifications.
pub const NS_CHATSTATES: &str = crate::xmpp::ns::CHATSTATES;

/// Handler priority on `offline_message`: before the session manager's default (i32::MAX).
pub const PRIORITY: i32 = 50;

/// Scratch key of the guard a message delivered from storage carries (an `OnDrop` deleting its row).
pub const OFFLINE_ROW: crate::hooks::Key<OfflineRow> = crate::hooks::Key::new("offline.row");

/// Room kept under the 64 KiB stanza limit for the `<delay/>` added at delivery.
const DELAY_ROOM: usize = 256;
/// Largest stanza re-parsed at delivery (`Stanza::parse` limit).
const MAX_STORED: usize = 65_536 - DELAY_ROOM;

/// `[modules.offline]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Messages kept per user; past it the sender gets `service-unavailable` (XEP-0160 §2).
    pub max_per_user: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_per_user: 1000 }
    }
}

impl Options {
    /// Reads and checks `[modules.offline]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new("offline", Some(table));
        o.only(&["max_per_user"])?;
        Ok(Options {
            max_per_user: o.positive_u32("max_per_user", Options::default().max_per_user)?,
        })
    }
}

/// The store-job ordering key of a user's data (same for every module and shard).
pub fn user_key(user: &BareJid) -> u64 {
    // Fixed seeds: every shard must compute the same key for the same user.
    ahash::RandomState::with_seeds(0x6f66_666c, 0x696e_6531, 0x7065_7472, 0x656c_0005)
        .hash_one(user.as_str())
}

/// What to do with a message nobody could take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Store it.
    Store,
    /// Not ours: the next handler (the default `service-unavailable`) decides.
    Pass,
    /// Drop silently (chat state notifications, XEP-0085 §5.6).
    Drop,
}

/// XEP-0160 with XEP-0334 hints: a chat/normal message is stored unless it carries `<no-store/>`
/// or holds nothing but chat states (dropped, XEP-0085 §5.6) and a thread. Body-less ones are kept
/// too: receipts, markers, reactions, retractions and direct invitations (XEP-0184, 0333, 0444,
/// 0424, 0249) mean as much to the recipient later, and bouncing them makes the sender's client
/// report a failure (ejabberd's and Prosody's default). An empty message has nothing to keep.
/// Headline, groupchat and error messages are never stored.
pub fn disposition(acc: &Acc) -> Disposition {
    let ty = acc.ty();
    if !ty.is_one_to_one_message() {
        return Disposition::Pass;
    }
    let Ok(el) = acc.stanza.tree() else {
        return Disposition::Pass;
    };
    let hint = |name: &str| el.get_child(name, NS_HINTS).is_some();
    if hint("no-store") || hint("no-permanent-store") {
        return Disposition::Pass;
    }
    if hint("store") {
        return Disposition::Store;
    }
    let is_thread = |c: &Element| c.ns == crate::xmpp::ns::CLIENT && c.name == "thread";
    let mut chat_state = false;
    for c in el.child_elements() {
        if c.ns == NS_CHATSTATES {
            chat_state = true;
        } else if !is_thread(c) {
            return Disposition::Store;
        }
    }
    if chat_state {
        Disposition::Drop
    } else {
        Disposition::Pass
    }
}

/// Home shard: sessions bound with Bind 2 whose initial presence has not come yet (one entry per
/// such session, gone with it).
#[derive(Default)]
struct Bind2Sessions(ahash::HashSet<crate::jid::FullJid>);

/// Registers the handlers on `shard`.
pub fn start(shard: &mut Shard, opts: &Options) {
    let shards = shard.shards;
    // Stored messages before newer live ones (see `hold`): ahead of CSI, whose holding is for
    // what a client in the background may get late.
    shard
        .ext
        .get_or_default::<crate::c2s::route::WantReceiver>();
    shard
        .hooks
        .xmpp_presend_element
        .add(5, "offline", hold::presend);
    shard
        .hooks
        .session_end
        .add(PRIORITY, "offline", hold::session_end);
    shard.hooks.bind2_enable_features.add(
        PRIORITY,
        "offline",
        move |ev: &mut crate::hooks::Bind2Enable, ctx: &mut HookCtx<'_>| {
            let jid = ev.jid.clone();
            let home = crate::shard::home_shard_of(jid.bare().as_str(), shards);
            ctx.run_on(
                home,
                Box::new(move |shard: &mut Shard| {
                    shard.ext.get_or_default::<Bind2Sessions>().0.insert(jid);
                }),
            );
            HookResult::Continue
        },
    );
    shard.hooks.sm_remove_connection.add(
        PRIORITY,
        "offline",
        |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            if let Some(s) = ctx.ext.get_mut::<Bind2Sessions>() {
                s.0.remove(&ev.jid);
            }
            HookResult::Continue
        },
    );
    let max = opts.max_per_user;
    let stored = shard
        .metrics
        .counter("petrel_offline_stored", "Messages put in offline storage");
    let delivered = shard.metrics.counter(
        "petrel_offline_delivered",
        "Stored messages sent to a session that became available",
    );
    shard.hooks.offline_message.add(
        PRIORITY,
        "offline",
        move |acc: &mut Acc, ctx: &mut HookCtx<'_>| {
            if let Some(row) = acc.take(OFFLINE_ROW) {
                // Delivered from storage to a session that ended without it: it is still stored.
                row.release();
                return HookResult::Stop;
            }
            if acc.stanza.bytes().len() > MAX_STORED {
                return HookResult::Continue;
            }
            match disposition(acc) {
                Disposition::Pass => return HookResult::Continue,
                Disposition::Drop => return HookResult::Stop,
                Disposition::Store => {}
            }
            let user = acc.to.bare();
            // Refused here, it leaves the archive that kept it for the user, if one did.
            let refused_event = crate::hooks::MessageRefused::of(acc);
            let msg = acc.fork();
            let on = ctx.shard;
            // The sender's XEP-0198 ack waits for the commit.
            let token = acc.handled.take();
            let stored = stored.clone();
            ctx.store(Some(user_key(&user)), move |store| {
                let (done, refused) = store_job(store, &user, msg, max, on, &stored);
                match refused_event.filter(|_| refused) {
                    Some(ev) => tell_refused(done, ev),
                    None => done,
                }
                .holding(token)
            });
            HookResult::Stop
        },
    );
    shard.hooks.user_available.add(
        PRIORITY,
        "offline",
        move |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            // XEP-0160 §3 / RFC 6121 §8.5.2.1.1: a negative priority resource gets no offline messages.
            if ev.priority.is_some_and(|p| p < 0) {
                return HookResult::Continue;
            }
            let synced = ctx
                .ext
                .get_mut::<Bind2Sessions>()
                .is_some_and(|s| s.0.remove(&ev.jid));
            let to = Jid::from(ev.jid.clone());
            // Live messages routed from now on wait behind the backlog (see `hold`).
            if let Some(m) = hold::marker(hold::Marker::Hold, &to, ctx.shard) {
                ctx.route(m);
            }
            let chunk = Chunk::new(ev.jid.bare(), to, delivered.clone(), synced);
            fetch(ctx, chunk);
            HookResult::Continue
        },
    );
}

/// Messages leased per fetch: far under a mailbox's bound (`4 x outbound_queue_bytes`) and a
/// stream-managed session's unacknowledged limit (`buffer_max`), so a long backlog is never
/// bounced for want of room, nor closes the stream it is delivered on.
const CHUNK_ROWS: usize = 32;
/// Stanza bytes leased per fetch (at least one message).
const CHUNK_BYTES: usize = 128 * 1024;

/// One fetch's messages on their way to a session: when the last of them is delivered (its row
/// deleted) the next fetch runs, so the backlog goes out a chunk at a time, each once the session
/// took the one before. A session that ends without some of them ends the chain (their rows go
/// back for the next login).
struct Chunk {
    user: BareJid,
    to: Jid,
    delivered: Counter,
    /// Messages of this chunk not yet delivered.
    left: std::sync::atomic::AtomicUsize,
    /// The session syncs from the archive (Bind 2): archived messages are cleared, not sent.
    synced: bool,
}

impl Chunk {
    fn new(user: BareJid, to: Jid, delivered: Counter, synced: bool) -> std::sync::Arc<Chunk> {
        std::sync::Arc::new(Chunk {
            user,
            to,
            delivered,
            left: std::sync::atomic::AtomicUsize::new(0),
            synced,
        })
    }

    /// The next chunk for the same session.
    fn next(&self) -> std::sync::Arc<Chunk> {
        let (user, to) = (self.user.clone(), self.to.clone());
        Chunk::new(user, to, self.delivered.clone(), self.synced)
    }
}

/// Queues the fetch of `chunk`'s messages (a store job keyed by the user).
fn fetch(ctx: &mut HookCtx<'_>, chunk: std::sync::Arc<Chunk>) {
    let on = ctx.shard;
    ctx.store(Some(user_key(&chunk.user)), move |store| {
        let mut msgs = deliver_job(store, &chunk, on);
        chunk.delivered.inc_by(msgs.len() as u64);
        if msgs.is_empty() {
            // Nothing left: what the session got meanwhile may go (see `hold`).
            msgs.extend(hold::marker(hold::Marker::Done, &chunk.to, on));
        }
        JobDone::from(msgs)
    });
}

/// Stores `msg` for `user` (committed before returning, counted in `stored`) or answers its sender
/// with why not; with whether it refused the message.
pub fn store_job(
    store: &Store,
    user: &BareJid,
    msg: Acc,
    max: u32,
    on: ShardId,
    stored: &Counter,
) -> (JobDone, bool) {
    let refuse = |cond| refusal(msg.error_reply(cond, on));
    // A message a session ended without (unacknowledged, unwritten) is stamped with the time its
    // delivery was first tried, not the time it came here (XEP-0198 §4, XEP-0203).
    let msg_at = (msg.reroutes > 0)
        .then(|| std::time::SystemTime::now().checked_sub(msg.entered.elapsed()))
        .flatten();
    let Ok(mut el) = msg.stanza.tree() else {
        return refuse(StanzaErrorCondition::ServiceUnavailable);
    };
    // The route's sender, whatever the bytes say (the c2s stamps it; server-built stanzas may not).
    el.attrs.retain(|(k, _)| k != "from");
    el.attrs.push(("from".into(), msg.from.as_str().into()));
    // Serialized from the tree: self-contained (namespaces declared), whatever the sender's stream
    // declared.
    let bytes = Stanza::from_element(&el).into_bytes();
    match store.offline_push(user, msg.from.as_str(), &bytes, max, msg_at) {
        Ok(OfflinePush::Stored) => {
            stored.inc();
            (JobDone::default(), false)
        }
        Ok(OfflinePush::NoSuchUser) => refuse(StanzaErrorCondition::ServiceUnavailable),
        // XEP-0160 §2: a full queue is `service-unavailable` (ejabberd and MongooseIM answer
        // `resource-constraint`); the text tells a person why.
        Ok(OfflinePush::Full) => {
            let text = Element::new("text", crate::xmpp::ns::STANZAS)
                .with_attr("xml:lang", "en")
                .with_text("the recipient's offline storage is full");
            let cond = StanzaErrorCondition::ServiceUnavailable;
            refusal(msg.error_reply_with(cond, Some(text), on))
        }
        // The store is down for now: `wait` tells the sender to try again, where
        // `service-unavailable` would read as "no such user".
        Err(e) => {
            tracing::error!(error = %e, user = user.as_str(), "offline store failed");
            let cond = StanzaErrorCondition::InternalServerError;
            refusal(msg.error_reply_typed(cond, ErrorType::Wait, None, on))
        }
    }
}

/// A refused message's [`store_job`] outcome: the error for its sender, if it may have one.
fn refusal(reply: Option<Acc>) -> (JobDone, bool) {
    (JobDone::from(reply.into_iter().collect::<Vec<_>>()), true)
}

/// `done` of a refused message's [`store_job`], which also tells that the message was refused
/// (its recipient's archive drops it: XEP-0313 §7.1, a message the user's server rejected is not
/// archived).
fn tell_refused(mut done: JobDone, ev: crate::hooks::MessageRefused) -> JobDone {
    done.then = Some(Box::new(move |shard: &mut Shard| {
        crate::hooks::Events::<crate::hooks::MessageRefused>::emit(shard, &ev)
    }));
    done
}

/// What a message delivered from storage carries (under [`OFFLINE_ROW`]): its row is deleted when
/// the message dies, unless `OfflineRow::release` hands it back first.
pub struct OfflineRow {
    id: i64,
    user: BareJid,
    guard: OnDrop,
}

impl OfflineRow {
    /// The row of a message of `chunk`: deleted once delivered, and the last of the chunk
    /// delivered fetches the next.
    fn new(chunk: std::sync::Arc<Chunk>, id: i64) -> OfflineRow {
        use std::sync::atomic::Ordering;
        chunk.left.fetch_add(1, Ordering::AcqRel);
        let user = chunk.user.clone();
        let ack = row_work(&user, id, |store, id| store.offline_ack(&[id]));
        let guard = OnDrop::new(Box::new(move |shard: &mut Shard| {
            ack(shard);
            if chunk.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
                fetch(&mut ctx, chunk.next());
            }
        }));
        OfflineRow { id, user, guard }
    }

    /// The session ended without the message: its row stays stored, for the next login.
    fn release(mut self) {
        let work = row_work(&self.user, self.id, |store, id| {
            store.offline_release(&[id])
        });
        self.guard.replace(work);
    }
}

/// Work on the shard: `f(store, id)` as a store job keyed by `user` (ordered with its fetches).
fn row_work(
    user: &BareJid,
    id: i64,
    f: impl FnOnce(&Store, i64) -> Result<(), crate::store::StoreError> + Send + 'static,
) -> crate::hooks::OnShard {
    let key = user_key(user);
    let name = user.as_str().to_owned();
    Box::new(move |shard: &mut Shard| {
        let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
        ctx.store(Some(key), move |store| {
            if let Err(e) = f(store, id) {
                tracing::error!(error = %e, user = name, "offline row update failed");
            }
            JobDone::default()
        });
    })
}

/// Leases the next chunk of the user's stored messages and addresses them to the chunk's session,
/// each with its `<delay/>` and the guard that deletes its row once the client has it.
fn deliver_job(store: &Store, chunk: &std::sync::Arc<Chunk>, on: ShardId) -> Vec<Acc> {
    let user = &chunk.user;
    let mut out = Vec::new();
    // Unreadable rows are dropped here: lease again until a chunk has a message or none is left.
    while out.is_empty() {
        let msgs = match store.offline_lease(user, CHUNK_ROWS, CHUNK_BYTES) {
            Ok(m) if m.is_empty() => break,
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, user = user.as_str(), "offline fetch failed");
                break;
            }
        };
        lease_to_accs(store, chunk, on, msgs, &mut out);
    }
    // The next chunk waits for this one: a stream-managed client is asked for its ack at once.
    if let Some(last) = out.last_mut() {
        last.put(crate::hooks::ACK_WANTED, ());
    }
    out
}

/// Whether the user's archive holds `el`: it carries the archive's `<stanza-id by='user'>`, and
/// the row is there (an id is given before the archive decides to keep the message, e.g. under
/// `roster` preferences). When in doubt (not written yet, a store error) it is not, and the
/// message is delivered: twice at worst, never lost.
fn archived_for(store: &Store, el: &Element, user: &BareJid) -> bool {
    let id = el.child_elements().find_map(|c| {
        let ours = c.name == "stanza-id"
            && c.ns == crate::xmpp::ns::STANZA_ID
            && c.attr("by") == Some(user.as_str());
        ours.then(|| c.attr("id").and_then(crate::modules::mam::id::decode))
            .flatten()
    });
    id.is_some_and(|id| store.mam_has(user.as_str(), id).unwrap_or(false))
}

/// Turns leased rows into messages for the chunk's session (unreadable rows are deleted).
fn lease_to_accs(
    store: &Store,
    chunk: &std::sync::Arc<Chunk>,
    on: ShardId,
    msgs: Vec<crate::store::OfflineMessage>,
    out: &mut Vec<Acc>,
) {
    let (user, to) = (&chunk.user, &chunk.to);
    for m in msgs {
        let parsed = Stanza::parse(m.stanza).and_then(|s| s.tree());
        let (Ok(mut el), Ok(from)) = (parsed, Jid::parse(&m.sender)) else {
            tracing::error!(user = user.as_str(), "unreadable offline message dropped");
            let _ = store.offline_ack(&[m.id]);
            continue;
        };
        if chunk.synced && archived_for(store, &el, user) {
            // The client gets it from the archive (XEP-0386 §3.2).
            if let Err(e) = store.offline_ack(&[m.id]) {
                tracing::error!(error = %e, user = user.as_str(), "offline clear failed");
            }
            continue;
        }
        let delay = Element::new("delay", NS_DELAY)
            .with_attr("from", user.domain())
            .with_attr("stamp", m.stamp.as_str())
            .with_text("Offline Storage");
        el.children.push(Node::Element(delay));
        let mut acc = Acc::new(Stanza::from_element(&el), from, to.clone(), on);
        acc.put(OFFLINE_ROW, OfflineRow::new(chunk.clone(), m.id));
        out.push(acc);
    }
}

#[cfg(test)]
mod tests;
