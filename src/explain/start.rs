//! Starting a request: the stanza enters the route as if the sender's session had sent it.
//!
//! The stanza is routed for real: explaining a message to bob sends it to bob. It goes first to
//! the home shard of `from`, which knows where the session of that full JID lives, and enters
//! there through `user_send_*`: a bound session is the very sender (the handlers see its
//! connection and its per-connection state, e.g. its block list; replies reach its client). A JID
//! with no session (a bare JID gets the resource [`EXPLAIN_RESOURCE`]) enters on its home shard
//! from a synthetic session on a connection that does not exist: per-connection module state is
//! not there for it, and what the route sends back to it ends as undeliverable, which shows in
//! the explanation.

use std::sync::Arc;

use super::{Explanation, Head, Outcome, Sink, Trace};
use crate::c2s::route::{user_send_traced, Session};
use crate::jid::{FullJid, Jid};
use crate::shard::{home_shard, ConnId, Shard, ShardMsg};
use crate::xml::{Stanza, StanzaKind, XmlError};

/// Resource of the synthetic session of a sender given as a bare JID.
pub const EXPLAIN_RESOURCE: &str = "explain";

/// Why a request could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The stanza is not well-formed XML (or over the stanza limits).
    #[error("the stanza does not parse: {0}")]
    Parse(#[from] XmlError),
    /// The element is not a message, presence or iq in the client namespace.
    #[error("<{0}/> is not a stanza (message, presence or iq expected)")]
    NotAStanza(String),
    /// Presence is not explained (it would change the sender's session state behind its back).
    #[error("presence is not explained: it changes the sender's session state (explain a message or an iq)")]
    Presence,
    /// The sender is not a user of a domain served here.
    #[error("{0} is not a user of a domain served here")]
    BadSender(String),
    /// The resource could not be added to a bare sender.
    #[error("the sender's JID is not valid: {0}")]
    SenderJid(#[from] crate::jid::JidError),
    /// The stanza's `to` is not a JID.
    #[error("the stanza's to ({0}) is not a valid JID")]
    BadTo(String),
}

/// A request whose stanza is on its way.
#[derive(Debug)]
pub struct Pending {
    sink: Arc<Sink>,
    head: Head,
}

impl Pending {
    /// True when every copy of the stanza has reached an end.
    pub fn done(&self) -> bool {
        Sink::in_flight(&self.sink) == 0
    }

    /// What was learned so far (copies still on their way are counted, not waited for).
    pub fn finish(self) -> Explanation {
        let (paths, dropped) = self.sink.take();
        let in_flight = Sink::in_flight(&self.sink);
        Explanation::new(self.head, paths, dropped, in_flight)
    }
}

/// Parses `xml` and sends it into the route as `from` would (see the module doc): first to the
/// home shard of `from`, which knows where its session lives, then into `user_send_*` on that
/// session's shard. The caller then carries out what `shard` queued (mesh messages, store jobs)
/// and waits for [`Pending::done`].
pub fn start(shard: &mut Shard, from: Jid, xml: &str) -> Result<Pending, ExplainError> {
    let mut stanza = Stanza::parse(xml.as_bytes().to_vec())?;
    if stanza.kind() == StanzaKind::Other {
        return Err(ExplainError::NotAStanza(stanza.name().to_owned()));
    }
    // Presence changes its session's state (availability, directed presence), which a stanza
    // entering beside the session's own driver would leave inconsistent.
    if stanza.kind() == StanzaKind::Presence {
        return Err(ExplainError::Presence);
    }
    if from.node().is_none() || !shard.is_hosted(from.domain()) {
        return Err(ExplainError::BadSender(from.as_str().to_owned()));
    }
    let to = match stanza.to() {
        Some(to) => Some(Jid::parse(&to).map_err(|_| ExplainError::BadTo(to.into_owned()))?),
        None => None,
    };
    let full: FullJid = match from.try_into_full() {
        Ok(full) => full,
        Err(bare) => bare.bare().with_resource(EXPLAIN_RESOURCE)?,
    };
    stanza.set_from(full.as_str());
    let head = Head {
        from: full.as_str().to_owned(),
        to: to.map_or_else(
            || full.bare().as_str().to_owned(),
            |t| t.as_str().to_owned(),
        ),
        kind: stanza.name().to_owned(),
        shard: shard.id.0,
    };
    let sink = Sink::new();
    // Until the stanza enters, the trace rides in the closures below: the request waits for it.
    let trace = Box::new(Trace::new(sink.clone()));
    let home = home_shard(&full.bare(), shard.shards);
    shard.send_to_shard(
        home,
        ShardMsg::Run(Box::new(move |s: &mut Shard| {
            find_session(s, full, stanza, trace)
        })),
    );
    shard.drain_to_route();
    Ok(Pending { sink, head })
}

/// On the home shard of the sender: enters where its session lives, here when it has none.
fn find_session(shard: &mut Shard, full: FullJid, stanza: Stanza, mut trace: Box<Trace>) {
    let at = shard
        .sm
        .resources_of(full.bare().as_str())
        .iter()
        .find(|r| r.jid == full)
        .map(|r| r.session.shard);
    match at {
        Some(at) if at != shard.id => {
            trace.push(
                shard.id,
                crate::sm::STAGE,
                None,
                Outcome::Forwarded,
                Some(format!("the session of {full} lives on shard {}", at.0)),
            );
            shard.send_to_shard(
                at,
                ShardMsg::Run(Box::new(move |s: &mut Shard| enter(s, full, stanza, trace))),
            );
        }
        _ => enter(shard, full, stanza, trace),
    }
}

/// `user_send_*` on this shard, from the session of `full` bound here, or a synthetic one.
fn enter(shard: &mut Shard, full: FullJid, stanza: Stanza, mut trace: Box<Trace>) {
    // A connection id no connection ever gets (ids start at 1) when no session is bound here.
    let conn = shard.local_session(full.as_str()).unwrap_or(ConnId(0));
    let detail = if conn == ConnId(0) {
        format!("sent by a synthetic session of {full}")
    } else {
        format!("sent by the session of {full} (connection {})", conn.0)
    };
    trace.push(shard.id, "c2s", None, Outcome::Ok, Some(detail));
    let mut sess = Session::new(full, shard.session_ref(conn));
    user_send_traced(shard, &mut sess, stanza, trace);
}
