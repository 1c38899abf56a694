//! `mod_stream_management`: XEP-0198 stream management with resumption on any shard.
//!
//! The per-stream protocol (counters, buffer, `<enable/>`, `<r/>`, `<a/>`) is sans-IO inside the c2s
//! (`c2s::sm_xep198`). This module holds what lives beyond one connection:
//! - the resumption table on the HOME shard of each user (resumption id -> full JID and the session's
//!   current `SessionRef`), kept by [`SmShardMsg`] messages and the `sm_remove_connection` hook;
//! - the life of a session whose connection dropped ([`park::Park`]): it stays registered, keeps
//!   buffering what is routed to it, and either moves to the connection that resumes it or, at
//!   `resume_timeout`, re-routes its unacknowledged stanzas and unregisters;
//! - the hand-over protocol between the old connection, the home shard and the new connection.
//!
//! Hand-over (see docs/ROUTE.md, "Stream management and resumption", for the ordering argument):
//! 1. new connection N -> home H: `Resume { bare, id, h, new: N }`; H checks the id belongs to the
//!    authenticated user, else `Failed(item-not-found)` to N.
//! 2. H -> old session O: `Takeover`. O alone decides; a live, attached O first parks itself (its
//!    connection is closed with `conflict`: the client came back elsewhere) and then hands over.
//! 3. O commits: applies the client's `h`, sends `Handover` (counters, buffer, full JID, presence) to
//!    N and `Switch` to H, then forwards everything that still reaches it to N (`Forwarded`).
//! 4. H re-points the full JID from O to N and answers O with `SwitchDone`; O tells N
//!    `HandoverDone` and ends. N writes `<resumed/>` + the buffer at once, writes forwarded stanzas
//!    as they come, and holds stanzas H routed to it directly until `HandoverDone`.

mod handover;
pub mod park;
pub mod remote;
#[cfg(test)]
mod tests;

use ahash::HashMap;

use crate::c2s::{ResumeError, SmConfig, SmState};
use crate::hooks::{Acc, HookCtx, HookResult, SessionEvent};
use crate::jid::{BareJid, FullJid};
use crate::modules::OptionError;
use crate::shard::{home_shard, ConnMsg, SessionRef, Shard};
use crate::xmpp::StreamErrorCondition;

/// The module's name in `[modules.*]`.
pub const NAME: &str = "stream_management";

/// Largest `buffer_max` accepted (a session's buffer is memory held per user).
const MAX_BUFFER: u64 = 100_000;

/// Reads `[modules.stream_management]`: `resume_timeout` (seconds, default 600; 0 = no resumption),
/// `buffer_max` (stanzas, default 500), `ack_freq` (stanzas, default 10). `None` when the module is off.
pub fn options(table: Option<&toml::Table>) -> Result<Option<SmConfig>, OptionError> {
    let Some(table) = table else {
        return Ok(None);
    };
    let o = super::options::Options::new(NAME, Some(table));
    o.only(&["resume_timeout", "buffer_max", "ack_freq"])?;
    let d = SmConfig::default();
    // Both positive: an empty buffer or acks every 0 stanzas make no sense.
    let buffer_max = o.uint_in("buffer_max", d.buffer_max as u64, 1..=MAX_BUFFER)?;
    let ack_freq = o.positive_u32("ack_freq", d.ack_freq)?;
    Ok(Some(SmConfig {
        buffer_max: buffer_max as usize,
        ack_freq,
        resume_timeout: o.secs("resume_timeout", d.resume_timeout.as_secs())?,
        id_prefix: None,
    }))
}

/// Registers the home-side handlers on `shard`.
pub fn start(shard: &mut Shard) {
    shard.hooks.sm_remove_connection.add(
        90,
        NAME,
        |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            ctx.ext.get_or_default::<ResumeTable>().forget(ev.session);
            HookResult::Continue
        },
    );
    remote::start(shard);
}

/// Module event: a session was resumed on a new connection (emitted on the user's home shard once
/// the session manager points at it); the client is back (push restarts its count).
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The session's full JID.
    pub jid: FullJid,
}

/// A message for the home shard of a user (run there by a `ShardMsg::Run`).
#[derive(Debug)]
pub enum SmShardMsg {
    /// A session enabled resumption with `id`.
    Register {
        /// The resumption id.
        id: String,
        /// The session's full JID.
        jid: FullJid,
        /// Where it lives.
        session: SessionRef,
    },
    /// Connection `new`, authenticated as `bare`, asks to resume session `id`.
    Resume {
        /// The authenticated account.
        bare: BareJid,
        /// The id asked for.
        id: String,
        /// The client's handled count.
        h: u32,
        /// The asking connection.
        new: SessionRef,
        /// Its stream management settings (a session from another node gets them).
        cfg: SmConfig,
    },
    /// Session `id` moved from `old` to `new`: re-point the registration.
    Switch {
        /// The resumption id.
        id: String,
        /// The session's full JID.
        jid: FullJid,
        /// Where it lived.
        old: SessionRef,
        /// Where it lives now.
        new: SessionRef,
    },
}

/// A message for one connection (over `ConnMsg::Ext`).
#[derive(Debug)]
pub enum SmConnMsg {
    /// To the old session: give yourself to `new`.
    Takeover(Takeover),
    /// To the resuming connection: no session to resume.
    Failed(ResumeError),
    /// To the resuming connection: the session's state.
    Handover(Box<Handover>),
    /// To the resuming connection: a stanza that reached the old session after it handed over.
    Forwarded(Acc),
    /// To the resuming connection: nothing more will be forwarded.
    HandoverDone,
    /// To the old session: the home shard routes to the new connection now.
    SwitchDone,
}

/// A request to hand a session over.
#[derive(Debug)]
pub struct Takeover {
    /// The resumption id.
    pub id: String,
    /// The client's handled count (applied before the hand-over).
    pub h: u32,
    /// Who resumes.
    pub to: Requester,
}

/// Who asks to resume a session.
#[derive(Debug)]
pub enum Requester {
    /// A connection of this node.
    Local(SessionRef),
    /// A connection of another node (see [`remote`]).
    Node(remote::NodeAsk),
}

impl Requester {
    /// Tells the requester the resumption failed.
    pub fn failed(self, shard: &mut Shard, e: ResumeError) {
        match self {
            Requester::Local(to) => {
                shard.send_to_session(to, ConnMsg::ext(SmConnMsg::Failed(e)));
            }
            Requester::Node(ask) => remote::failed(shard, &ask.reply, e),
        }
    }
}

/// A session's state on its way to the connection resuming it.
#[derive(Debug)]
pub struct Handover {
    /// The session's full JID.
    pub jid: FullJid,
    /// `Some(priority)` when the session was available.
    pub presence: Option<i8>,
    /// Counters and unacknowledged stanzas (already trimmed to the client's `h`).
    pub sm: Box<SmState>,
    /// Where the session lived (on this node).
    pub old: SessionRef,
    /// `Some` when the session comes from another node: it binds here afresh.
    pub from_node: Option<remote::FromNode>,
}

/// Home shard: resumable sessions of the users this shard is home to.
#[derive(Default)]
pub struct ResumeTable {
    by_id: HashMap<String, (FullJid, SessionRef)>,
    by_session: HashMap<SessionRef, String>,
}

impl ResumeTable {
    /// Records `id` for the session at `session`.
    pub fn insert(&mut self, id: String, jid: FullJid, session: SessionRef) {
        self.forget(session);
        self.by_session.insert(session, id.clone());
        self.by_id.insert(id, (jid, session));
    }

    /// The session `id` of user `bare`, if any (another user's id is not found).
    pub fn find(&self, id: &str, bare: &BareJid) -> Option<(FullJid, SessionRef)> {
        self.by_id
            .get(id)
            .filter(|(jid, _)| jid.bare() == *bare)
            .cloned()
    }

    /// Re-points `id` from `old` to `new`; false when `id` is not at `old`.
    pub fn move_to(&mut self, id: &str, old: SessionRef, new: SessionRef) -> bool {
        match self.by_id.get_mut(id) {
            Some((_, at)) if *at == old => {
                *at = new;
                self.by_session.remove(&old);
                self.by_session.insert(new, id.to_string());
                true
            }
            _ => false,
        }
    }

    /// Forgets the id of the session at `session` (it ended).
    pub fn forget(&mut self, session: SessionRef) {
        if let Some(id) = self.by_session.remove(&session) {
            self.by_id.remove(&id);
        }
    }

    /// Number of resumable sessions recorded.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no resumable session is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A session on this shard enabled resumption: tell its home shard.
pub fn enabled(shard: &mut Shard, jid: &FullJid, session: SessionRef, id: String) {
    let home = home_shard(&jid.bare(), shard.shards);
    let msg = SmShardMsg::Register {
        id,
        jid: jid.clone(),
        session,
    };
    to_home(shard, home, msg);
}

/// Connection `new` asks to resume `id` as `bare`: the request goes to the user's home shard.
pub fn resume_request(
    shard: &mut Shard,
    bare: BareJid,
    id: String,
    h: u32,
    new: SessionRef,
    cfg: SmConfig,
) {
    let home = home_shard(&bare, shard.shards);
    let msg = SmShardMsg::Resume {
        bare,
        id,
        h,
        new,
        cfg,
    };
    to_home(shard, home, msg);
}

/// Asks the session at `at` to hand over to `t`'s requester, once every stanza other shards sent
/// straight to it is in its mailbox (`sm::after_drain`): what it hands over is then complete, and
/// what comes later passes this home shard, which sends it to the new session.
pub(super) fn take_over(shard: &mut Shard, jid: &FullJid, at: SessionRef, t: Takeover) {
    crate::sm::after_drain(
        shard,
        jid,
        at,
        Box::new(move |s| s.send_to_session(at, ConnMsg::ext(SmConnMsg::Takeover(t)))),
    );
}

/// Handles `msg` on the home shard `home` (now, when that is this shard), in order with this
/// shard's other traffic there.
pub(super) fn to_home(shard: &mut Shard, home: crate::shard::ShardId, msg: SmShardMsg) {
    crate::sm::run_on(shard, home, Box::new(move |s| handle_shard_msg(s, msg)));
}

/// Handles a [`SmShardMsg`] on the home shard.
pub fn handle_shard_msg(shard: &mut Shard, msg: SmShardMsg) {
    match msg {
        SmShardMsg::Register { id, jid, session } => {
            // Only while the session is still the registered one (it may have ended or been
            // replaced while this message travelled).
            let live = shard
                .sm
                .resources(&jid.bare())
                .iter()
                .any(|r| r.jid == jid && r.session == session);
            if live {
                shard
                    .ext
                    .get_or_default::<ResumeTable>()
                    .insert(id, jid, session);
            }
        }
        SmShardMsg::Resume {
            bare,
            id,
            h,
            new,
            cfg,
        } => {
            let found = shard.ext.get_or_default::<ResumeTable>().find(&id, &bare);
            match found {
                Some((jid, at)) => {
                    let to = Requester::Local(new);
                    let t = Takeover { id, h, to };
                    take_over(shard, &jid, at, t);
                }
                // Not here: the node that issued the id may hold it.
                None => remote::ask(shard, bare, id, h, new, cfg),
            }
        }
        SmShardMsg::Switch { id, jid, old, new } => {
            shard
                .ext
                .get_or_default::<ResumeTable>()
                .move_to(&id, old, new);
            if crate::sm::move_session(shard, &jid, old, new) {
                crate::hooks::Events::<Resumed>::emit(shard, &Resumed { jid });
            } else {
                // Replaced by a fresh bind of the same full JID meanwhile: the resumed stream
                // loses, as a bound session loses to a newer one.
                shard.send_to_session(new, ConnMsg::Close(StreamErrorCondition::Conflict));
            }
            shard.send_to_session(old, ConnMsg::ext(SmConnMsg::SwitchDone));
        }
    }
}

impl crate::shard::ConnExtMsg for SmConnMsg {
    fn conn_gone(self: Box<Self>, shard: &mut Shard) {
        conn_gone(shard, *self);
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A [`SmConnMsg`] reached a connection that no longer exists.
pub fn conn_gone(shard: &mut Shard, msg: SmConnMsg) {
    match msg {
        // The old session ended (timed out, handed over) before the request reached it.
        SmConnMsg::Takeover(t) => t.to.failed(shard, ResumeError::ItemNotFound),
        SmConnMsg::Forwarded(acc) => shard.reroute(acc),
        SmConnMsg::Handover(mut h) => {
            // Cannot happen (a resuming connection waits for its answer); never drop stanzas.
            tracing::error!(
                jid = h.jid.as_str(),
                "hand-over reached a closed connection"
            );
            for item in h.sm.take_unacked() {
                if let crate::c2s::Unacked::Routed(acc) = item {
                    shard.reroute(acc);
                }
            }
        }
        SmConnMsg::Failed(_) | SmConnMsg::HandoverDone | SmConnMsg::SwitchDone => {}
    }
}
