//! `mod_csi`: Client State Indication (XEP-0352).
//!
//! A client says `<inactive xmlns='urn:xmpp:csi:0'/>` when its user looks away (a phone in a pocket)
//! and `<active/>` when they come back. While a session is inactive, `xmpp_presend_element` holds back
//! what is not urgent, in a per-session queue on the connection's shard:
//! - presence updates (available and unavailable) — the newest per sender (full JID) wins: an older one
//!   from the same sender leaves the queue and the new one goes to its end;
//! - chat-state notifications (XEP-0085 messages with no body, only chat states, `<thread/>` and
//!   hints) — likewise the newest per sender.
//!
//! Anything else (a message with a body, an IQ, an error, a subscription request) goes out at once,
//! after the queue is flushed in order, so the client never sees a stanza before an older one it
//! depends on. `<active/>` flushes too.
//!
//! **The bound**: a queue holds at most `buffer_max` stanzas (`[modules.csi] buffer_max`, default
//! 100, 1..=10000). The stanza that would exceed it flushes the whole queue: everything held is
//! written at once, in order, followed by that stanza, and holding resumes with an empty queue. Since
//! presences coalesce per sender, this only happens with more than `buffer_max` distinct senders
//! (or chat-state senders) while inactive: memory per session stays bounded and nothing is dropped.
//!
//! **How a flush reaches the socket**: the handler leaves the held stanzas in the delivered stanza's
//! scratch ([`crate::c2s::route::PRESEND_RELEASE`]) and stops it; the route runs `xmpp_presend_element`
//! over each released stanza, then over the current one again (marked to pass), so later presend
//! handlers (stream management counters) see them in write order, and the driver writes them in that
//! order. `<active/>` arrives on the sending side, where nothing can be written: the module marks the
//! session `Flushing` and routes an internal marker to the session itself; it reaches the connection
//! behind anything already queued for it, and the presend handler releases the queue when it sees
//! the marker (or earlier, before the first stanza that arrives meanwhile). The marker never reaches
//! the client.
//!
//! When a session ends, its held stanzas are dropped ([`end_session`]): they are presences and chat
//! states, whose newer versions a new session gets from the presence broadcast anyway.

use std::cell::RefCell;

use ahash::HashMap;

use crate::c2s::route::{WantReceiver, PRESEND_RELEASE, RECEIVER, SENDER};
use crate::hooks::{Acc, HookCtx, HookResult};
use crate::hooks::{Bind2Enable, SessionEnd};
use crate::jid::Jid;
use crate::shard::{ConnId, Shard};
use crate::xml::{Element, Stanza, StanzaKind, StanzaType};
use crate::xmpp::ns;

use super::options::{OptionError, Options};

#[cfg(test)]
mod tests;

/// The CSI namespace (XEP-0352).
pub const NS_CSI: &str = "urn:xmpp:csi:0";
/// XEP-0085 chat states.
pub const NS_CHATSTATES: &str = ns::CHATSTATES;
/// XEP-0334 message processing hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// Namespace of the internal flush marker (never written to a socket).
const NS_FLUSH: &str = "urn:xmpp:petrel:internal:csi";
/// Scratch key: a released stanza, let through.
const PASS: crate::hooks::Key<Pass> = crate::hooks::Key::new("csi.pass");
/// Scratch key: the flush marker routed after `<active/>`.
const FLUSH: crate::hooks::Key<FlushMarker> = crate::hooks::Key::new("csi.flush");

/// `[modules.csi]` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsiOpts {
    /// Most stanzas held per inactive session; one more flushes the queue.
    pub buffer_max: usize,
}

impl Default for CsiOpts {
    fn default() -> Self {
        CsiOpts { buffer_max: 100 }
    }
}

/// Reads and checks `[modules.csi]`.
pub fn options(table: Option<&toml::Table>) -> Result<CsiOpts, OptionError> {
    let o = Options::new("csi", table);
    o.only(&["buffer_max"])?;
    let max = o.uint_in("buffer_max", 100, 1..=10_000)?;
    Ok(CsiOpts {
        buffer_max: max as usize,
    })
}

/// Scratch marker of a released stanza.
struct Pass;
/// Scratch marker of the flush marker.
struct FlushMarker;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `<inactive/>`: hold what can wait.
    Inactive,
    /// `<active/>` with a non-empty queue: hold everything until the queue is flushed.
    Flushing,
}

struct Session {
    mode: Mode,
    queue: Vec<Held>,
}

/// A held stanza and its coalescing key.
struct Held {
    key: (StanzaKind, String),
    acc: Acc,
}

/// Per-shard CSI state: the sessions of this shard's connections that are not active (an active
/// session has no entry).
#[derive(Default)]
pub struct CsiState {
    sessions: HashMap<ConnId, Session>,
    max: usize,
}

impl CsiState {
    /// Number of stanzas held for the connection `conn` (for tests and metrics).
    pub fn held(&self, conn: ConnId) -> usize {
        self.sessions.get(&conn).map_or(0, |s| s.queue.len())
    }

    /// Marks the connection `conn` inactive (what it holds, if anything, stays held).
    fn set_inactive(&mut self, conn: ConnId) {
        self.sessions
            .entry(conn)
            .or_insert_with(|| Session {
                mode: Mode::Inactive,
                queue: Vec::new(),
            })
            .mode = Mode::Inactive;
    }

    /// True while the connection `conn` is inactive.
    pub fn is_inactive(&self, conn: ConnId) -> bool {
        self.sessions
            .get(&conn)
            .is_some_and(|s| s.mode == Mode::Inactive)
    }
}

/// Registers the handlers on `shard`.
pub fn start(shard: &mut Shard, opts: CsiOpts) {
    shard.ext.get_or_default::<WantReceiver>();
    shard.ext.get_or_default::<CsiState>().max = opts.buffer_max;
    shard.hooks.user_send_xmlel.add(50, "csi", on_element);
    // First in line: what CSI holds back must not be counted by later handlers (stream management)
    // until it is really written.
    shard.hooks.xmpp_presend_element.add(10, "csi", presend);
    shard.hooks.session_end.add(50, "csi", session_end);
    shard
        .hooks
        .bind2_enable_features
        .add(50, "csi", bind2_enable);
}

/// XEP-0386: a session bound by Bind 2 with `<inactive/>` among its requests starts inactive.
fn bind2_enable(ev: &mut Bind2Enable, ctx: &mut HookCtx<'_>) -> HookResult {
    let inactive = ev
        .requests
        .iter()
        .any(|e| e.name == "inactive" && e.ns == NS_CSI);
    if inactive {
        ctx.ext
            .get_or_default::<CsiState>()
            .set_inactive(ev.session.conn);
    }
    HookResult::Continue
}

/// `session_end`: forgets the connection's state and gives back what it held to a detached
/// session, for its resumption; a closed one's is dropped (presences and chat states, whose newer
/// versions another session gets anyway, not routed again).
fn session_end(end: &mut SessionEnd, ctx: &mut HookCtx<'_>) -> HookResult {
    if let Some(s) = ctx
        .ext
        .get_or_default::<CsiState>()
        .sessions
        .remove(&end.session.conn)
    {
        if end.kind != crate::hooks::SessionEndKind::Closed {
            end.held.extend(s.queue.into_iter().map(|h| h.acc));
        }
    }
    HookResult::Continue
}

/// `user_send_xmlel`: `<inactive/>` and `<active/>`.
fn on_element(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if acc.stanza.xmlns() != Some(NS_CSI) {
        return HookResult::Continue;
    }
    let active = match acc.stanza.name() {
        "inactive" => false,
        "active" => true,
        // Not a CSI element: let the stream refuse it.
        _ => return HookResult::Continue,
    };
    let Some(sender) = acc.get(SENDER).copied() else {
        return HookResult::Continue;
    };
    let state = ctx.ext.get_or_default::<CsiState>();
    if !active {
        state.set_inactive(sender.conn);
        return HookResult::Stop;
    }
    let Some(sess) = state.sessions.get_mut(&sender.conn) else {
        return HookResult::Stop;
    };
    if sess.queue.is_empty() {
        state.sessions.remove(&sender.conn);
        return HookResult::Stop;
    }
    sess.mode = Mode::Flushing;
    // The marker goes to the session itself: it reaches the connection behind whatever is already
    // on its way there, and the presend handler flushes when it sees it.
    if let Some(marker) = flush_marker(acc, ctx.shard) {
        ctx.route(marker);
    }
    HookResult::Stop
}

fn flush_marker(acc: &Acc, shard: crate::shard::ShardId) -> Option<Acc> {
    let server = Jid::parse(acc.from.domain()).ok()?;
    let stanza = Stanza::from_element(&Element::new("flush", NS_FLUSH));
    let mut marker = Acc::new(stanza, server, acc.from.clone(), shard);
    marker.put(FLUSH, FlushMarker);
    Some(marker)
}

/// `xmpp_presend_element`: hold, release, or let through.
fn presend(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    if acc.get(PASS).is_some() {
        return HookResult::Continue;
    }
    let marker = acc.get(FLUSH).is_some();
    let Some(conn) = acc.get(RECEIVER).map(|r| r.session.conn) else {
        return if marker {
            HookResult::Stop
        } else {
            HookResult::Continue
        };
    };
    let state = ctx.ext.get_or_default::<CsiState>();
    let max = state.max;
    let Some(sess) = state.sessions.get_mut(&conn) else {
        return if marker {
            HookResult::Stop
        } else {
            HookResult::Continue
        };
    };
    if marker {
        if sess.mode == Mode::Flushing {
            let queue = std::mem::take(&mut sess.queue);
            state.sessions.remove(&conn);
            release(acc, queue);
        } else if !sess.queue.is_empty() {
            // Inactive again since `<active/>`: flushing now costs nothing but a few early stanzas.
            let queue = std::mem::take(&mut sess.queue);
            release(acc, queue);
        }
        return HookResult::Stop;
    }
    match sess.mode {
        Mode::Flushing => {
            let queue = std::mem::take(&mut sess.queue);
            state.sessions.remove(&conn);
            if queue.is_empty() {
                return HookResult::Continue;
            }
            release(acc, queue);
            acc.put(PASS, Pass);
            HookResult::Stop
        }
        Mode::Inactive => match hold_key(acc) {
            Some(key) => {
                sess.queue.retain(|h| h.key != key);
                if sess.queue.len() >= max {
                    // The bound: everything goes out now, in order, this stanza last.
                    let queue = std::mem::take(&mut sess.queue);
                    release(acc, queue);
                    acc.put(PASS, Pass);
                    return HookResult::Stop;
                }
                let held = std::mem::replace(acc, acc.fork());
                sess.queue.push(Held { key, acc: held });
                HookResult::Stop
            }
            None if sess.queue.is_empty() => HookResult::Continue,
            None => {
                let queue = std::mem::take(&mut sess.queue);
                release(acc, queue);
                acc.put(PASS, Pass);
                HookResult::Stop
            }
        },
    }
}

/// Leaves `queue` in `acc`'s scratch for the route to write first.
fn release(acc: &mut Acc, queue: Vec<Held>) {
    let accs: Vec<Acc> = queue
        .into_iter()
        .map(|mut h| {
            h.acc.put(PASS, Pass);
            h.acc
        })
        .collect();
    acc.put(PRESEND_RELEASE, RefCell::new(accs));
}

/// The coalescing key of a stanza that can wait, `None` for one that must go out now.
fn hold_key(acc: &Acc) -> Option<(StanzaKind, String)> {
    let kind = acc.kind();
    let ok = match kind {
        StanzaKind::Presence => acc.ty().is_availability(),
        StanzaKind::Message => chat_state_only(&acc.stanza),
        _ => false,
    };
    if ok {
        return Some((kind, acc.from.as_str().to_owned()));
    }
    // A carbon of a chat state (XEP-0280) waits as the chat state itself would; its key names the
    // conversation (every carbon comes from the user's own bare JID).
    let partner = (kind == StanzaKind::Message)
        .then(|| carbon_of_chat_state(&acc.stanza))
        .flatten()?;
    Some((kind, format!("{} {partner}", acc.from.as_str())))
}

/// The other party of a carbon (`<received/>`: the forwarded message's sender, `<sent/>`: its
/// recipient) whose forwarded message carries only chat states.
fn carbon_of_chat_state(stanza: &Stanza) -> Option<String> {
    if stanza.ty() == StanzaType::Error
        || memchr::memmem::find(stanza.bytes(), ns::CARBONS.as_bytes()).is_none()
        || memchr::memmem::find(stanza.bytes(), NS_CHATSTATES.as_bytes()).is_none()
    {
        return None;
    }
    let el = stanza.tree().ok()?;
    let mut children = el.child_elements();
    let wrapper = children.next()?;
    if wrapper.ns != ns::CARBONS || children.next().is_some() {
        return None;
    }
    let inner = wrapper
        .get_child("forwarded", ns::FORWARD)?
        .get_child("message", ns::CLIENT)?;
    let partner = match wrapper.name.as_str() {
        "received" => inner.attr("from")?,
        "sent" => inner.attr("to")?,
        _ => return None,
    };
    only_chat_states(inner).then(|| partner.to_owned())
}

/// A message that carries only chat states (XEP-0085): no body, no subject, no other payload.
pub fn chat_state_only(stanza: &Stanza) -> bool {
    if stanza.ty() == StanzaType::Error {
        return false;
    }
    // Cheap test first: most messages are not chat states.
    if memchr::memmem::find(stanza.bytes(), NS_CHATSTATES.as_bytes()).is_none() {
        return false;
    }
    stanza.tree().is_ok_and(|el| only_chat_states(&el))
}

/// Whether `message`'s children are chat states (at least one), a thread and hints, nothing else.
fn only_chat_states(message: &Element) -> bool {
    let mut states = 0;
    for c in message.child_elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS_CHATSTATES, _) => states += 1,
            (ns::CLIENT, "thread") | (NS_HINTS, _) => {}
            _ => return false,
        }
    }
    states > 0
}
