//! Stored messages before newer live ones (RFC 6120 §10.1 across a reconnection).
//!
//! The backlog leaves the store a chunk at a time, each once the session took the one before, while
//! live messages are delivered as they come: a sender's message written after the recipient came
//! back would reach him before the ones it wrote while he was away. So the home shard, as it starts
//! the first fetch (`user_available`), routes a *hold* marker to the session; the fetch that finds
//! nothing left routes a *done* marker after the last chunk. Both take the path the stored messages
//! take (home shard -> session), so on the connection's shard `xmpp_presend_element` sees: hold,
//! then stored and live messages in any mix, then done. Between the two it holds the live messages
//! (messages without an [`super::OFFLINE_ROW`]) and writes them, in order, at done. Markers never
//! reach the client. Answers to the client's own requests are no live messages and pass: IQs, and
//! the result messages of an archive query (they come before the IQ result, XEP-0313 §4).
//!
//! Bounded: at most [`MAX_HELD`] messages per session; the next one writes them all and ends the
//! hold (order given up rather than memory). A session that ends while holding gives them back:
//! a detached one (XEP-0198) keeps them for its resumption, a closed one has them routed again
//! (another resource, or offline storage).
//! Not covered: a live message that went straight to the session's shard (the location cache)
//! before the hold marker arrived, sent while the initial presence was on its way home.

use std::cell::RefCell;

use ahash::HashMap;

use crate::c2s::route::{PRESEND_RELEASE, RECEIVER};
use crate::hooks::{Acc, HookCtx, HookResult, SessionEnd};
use crate::jid::Jid;
use crate::shard::{ConnId, ShardId};
use crate::xml::{Element, Stanza, StanzaKind};

/// Live messages one session holds while its backlog is delivered.
pub const MAX_HELD: usize = 512;

/// Namespace of the internal markers (never written to a socket).
const NS_HOLD: &str = "urn:xmpp:petrel:internal:offline";

/// Scratch key of a marker.
const MARKER: crate::hooks::Key<Marker> = crate::hooks::Key::new("offline.marker");
/// Scratch key of a released message, let through.
const PASS: crate::hooks::Key<Pass> = crate::hooks::Key::new("offline.pass");

/// Which marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The backlog starts: hold live messages.
    Hold,
    /// The backlog was delivered: write what was held.
    Done,
}

struct Pass;

/// Per-shard state: the live messages held per connection whose backlog is on its way.
#[derive(Default)]
pub struct Holds(HashMap<ConnId, Vec<Acc>>);

impl Holds {
    /// Connections holding (tests, metrics).
    pub fn holding(&self) -> usize {
        self.0.len()
    }
}

/// A marker for the session `to`, from its server (None when `to` has no valid domain JID).
pub fn marker(which: Marker, to: &Jid, on: ShardId) -> Option<Acc> {
    let server = Jid::parse(to.domain()).ok()?;
    let name = match which {
        Marker::Hold => "hold",
        Marker::Done => "done",
    };
    let stanza = Stanza::from_element(&Element::new(name, NS_HOLD));
    let mut acc = Acc::new(stanza, server, to.clone(), on);
    acc.put(MARKER, which);
    Some(acc)
}

/// `xmpp_presend_element`: start or end a hold, hold a live message, or let through.
pub fn presend(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let marker = acc.get(MARKER).copied();
    // Only messages are held: anything else but a marker passes without a look at the table.
    if marker.is_none() && acc.kind() != StanzaKind::Message {
        return HookResult::Continue;
    }
    let holds = ctx.ext.get_or_default::<Holds>();
    if marker.is_none() && holds.0.is_empty() {
        return HookResult::Continue;
    }
    let Some(conn) = acc.get(RECEIVER).map(|r| r.session.conn) else {
        return match marker {
            Some(_) => HookResult::Stop,
            None => HookResult::Continue,
        };
    };
    match marker {
        Some(Marker::Hold) => {
            holds.0.entry(conn).or_default();
            return HookResult::Stop;
        }
        Some(Marker::Done) => {
            if let Some(held) = holds.0.remove(&conn) {
                release(acc, held);
            }
            return HookResult::Stop;
        }
        None => {}
    }
    let live = acc.get(super::OFFLINE_ROW).is_none() && acc.get(PASS).is_none();
    let holding = holds.0.get_mut(&conn);
    let Some(held) = holding.filter(|_| live && !answers_a_query(&acc.stanza)) else {
        return HookResult::Continue;
    };
    if held.len() >= MAX_HELD {
        // The bound: everything goes out now, in order, this one last; no more holding.
        let held = holds.0.remove(&conn).unwrap_or_default();
        release(acc, held);
        acc.put(PASS, Pass);
        return HookResult::Stop;
    }
    held.push(std::mem::replace(acc, acc.fork()));
    HookResult::Stop
}

/// A result message of an archive query (XEP-0313 §4.2, from this server's archive or a remote
/// one): the answer to the client's own request, not a live message sent to the user. It passes,
/// as the IQ result ending the page does, which must come after it; held, the results came after
/// `<fin/>`, once the client had acknowledged the whole backlog.
fn answers_a_query(stanza: &Stanza) -> bool {
    stanza.tree().is_ok_and(|t| {
        t.get_child("result", crate::modules::mam::ns::MAM)
            .is_some()
    })
}

/// Leaves `held` in `acc`'s scratch for the route to write first.
fn release(acc: &mut Acc, held: Vec<Acc>) {
    let accs: Vec<Acc> = held
        .into_iter()
        .map(|mut a| {
            a.put(PASS, Pass);
            a
        })
        .collect();
    acc.put(PRESEND_RELEASE, RefCell::new(accs));
}

/// `session_end`: gives back what the connection held (see the module's bound).
pub fn session_end(end: &mut SessionEnd, ctx: &mut HookCtx<'_>) -> HookResult {
    if let Some(held) = ctx
        .ext
        .get_or_default::<Holds>()
        .0
        .remove(&end.session.conn)
    {
        end.held.extend(held);
    }
    HookResult::Continue
}
