//! Starting a request: the stanza enters the route as if the sender's session had sent it.
//!
//! The stanza is routed for real: explaining a message to bob sends it to bob. It enters on the
//! shard that serves the request, through `user_send_*`, as sent by a session of `from`: a full JID
//! bound on this shard is that very session (its connection is the sender handlers see, replies
//! come back to it); any other JID gets a synthetic session on a connection that does not exist
//! (a bare JID gets the resource [`EXPLAIN_RESOURCE`]), so what the route sends back to it ends
//! as undeliverable, and that shows in the explanation.

use std::sync::Arc;

use super::{Explanation, Head, Outcome, Sink, Trace};
use crate::c2s::route::{user_send_traced, Session};
use crate::jid::{FullJid, Jid};
use crate::shard::{ConnId, SessionRef, Shard};
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

/// Parses `xml` and sends it into the route on `shard` as `from` would (see the module doc). The
/// caller then carries out what the shard queued (mesh messages, store jobs) and waits for
/// [`Pending::done`].
pub fn start(shard: &mut Shard, from: Jid, xml: &str) -> Result<Pending, ExplainError> {
    let mut stanza = Stanza::parse(xml.as_bytes().to_vec())?;
    if stanza.kind() == StanzaKind::Other {
        return Err(ExplainError::NotAStanza(stanza.name().to_owned()));
    }
    if from.node().is_none() || !shard.hosts.contains(from.domain()) {
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
    // A real session of this JID on this shard, or a connection id no connection ever gets
    // (ids start at 1).
    let conn = shard.local_session(full.as_str()).unwrap_or(ConnId(0));
    let synthetic = conn == ConnId(0);
    let mut sess = Session::new(full.clone(), shard.session_ref(conn));
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
    let mut trace = Box::new(Trace::new(sink.clone()));
    let sref: SessionRef = sess.session;
    trace.push(
        shard.id,
        "c2s",
        None,
        Outcome::Ok,
        Some(if synthetic {
            format!("sent by a synthetic session of {full}")
        } else {
            format!("sent by the session of {full} (connection {})", sref.conn.0)
        }),
    );
    user_send_traced(shard, &mut sess, stanza, trace);
    Ok(Pending { sink, head })
}
