//! What travels over the cross-shard mesh and into connection mailboxes.

use crate::c2s::BindError;
use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::shard::{ConnId, SessionRef};
use crate::xmpp::StreamErrorCondition;

/// A message from one shard to another over their SPSC ring.
pub enum ShardMsg {
    /// Step 6 on the recipient's home shard: `ejabberd_sm:route`.
    SmRoute(Acc),
    /// A session asks its home shard to register it (resource bind).
    Register {
        /// The bound full JID.
        jid: FullJid,
        /// Where the session lives.
        session: SessionRef,
        /// When the connection's authentication began (see `sm::register`).
        authenticated: std::time::Instant,
    },
    /// A session left (stream closed); the home shard forgets it if it is still the registered one.
    Unregister {
        /// The session's full JID.
        jid: FullJid,
        /// Where the session lived.
        session: SessionRef,
    },
    /// Something for a connection living on the destination shard.
    Conn(ConnId, ConnMsg),
    /// XEP-0198 acknowledgements for clients on the destination shard: (connection, stanza numbers).
    Handled(Vec<(ConnId, Vec<u32>)>),
    /// One stanza for several full JIDs whose sessions live on the destination shard (a room's
    /// fan-out): carried once, copied there with `to` set per recipient.
    Multicast(Acc, std::sync::Arc<[crate::jid::FullJid]>),
    /// A stanza for a remote domain, to the outgoing streams on that domain's home shard.
    Remote(Acc),
    /// The answer to a stanza that asked where its recipient's session lives (`sm::locations`),
    /// from the recipient's shard once the stanza is in the mailbox (`Some`), or from wherever
    /// it went another way (`None`).
    Located {
        /// The recipient asked about.
        jid: FullJid,
        /// The question's number ([`crate::shard::Ask::id`]).
        id: u32,
        /// Its session, when the stanza reached it.
        at: Option<SessionRef>,
    },
    /// From a home shard to a shard that learnt where `jid`'s session lives: it ended or moved.
    Forget {
        /// The session's full JID.
        jid: FullJid,
        /// The session that is no longer `jid`'s.
        session: SessionRef,
    },
    /// Sent by a shard that forgot where `jid`'s session lives, to that session's shard behind
    /// what it sent straight there ([`DrainCause::Forgot`]), or by the session's shard when an
    /// asking stanza found the session gone and was re-routed ([`DrainCause::Rerouted`]); passed
    /// on to `jid`'s home shard (behind what was re-routed), which answers the question with
    /// `Located { at: None }`.
    Drain {
        /// The session's full JID.
        jid: FullJid,
        /// The session forgotten.
        session: SessionRef,
        /// The shard that waits for the answer, and its question.
        ask: crate::shard::Ask,
        /// Who sent it.
        cause: DrainCause,
    },
    /// Module work to run on the destination shard (a control message: ordered with the other
    /// traffic from the sending shard, never refused by the outbox bound).
    Run(crate::hooks::OnShard),
}

/// Why a [`ShardMsg::Drain`] was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCause {
    /// It answers a `Forget`: counted for a session waiting to move.
    Forgot,
    /// An asking stanza found the session gone and was re-routed.
    Rerouted,
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::SmRoute(acc) => f.debug_tuple("SmRoute").field(acc).finish(),
            ShardMsg::Remote(acc) => f.debug_tuple("Remote").field(acc).finish(),
            ShardMsg::Register { jid, session, .. } => {
                write!(f, "Register({jid}, {session:?})")
            }
            ShardMsg::Unregister { jid, session } => {
                write!(f, "Unregister({jid}, {session:?})")
            }
            ShardMsg::Conn(conn, msg) => f.debug_tuple("Conn").field(conn).field(msg).finish(),
            ShardMsg::Run(_) => f.write_str("Run(..)"),
            ShardMsg::Located { jid, id, at } => write!(f, "Located({jid}, #{id}, {at:?})"),
            ShardMsg::Forget { jid, session } => write!(f, "Forget({jid}, {session:?})"),
            ShardMsg::Drain {
                jid, session, ask, ..
            } => write!(f, "Drain({jid}, {session:?}, {ask:?})"),
            ShardMsg::Multicast(acc, to) => {
                write!(f, "Multicast({acc:?}, {} recipients)", to.len())
            }
            ShardMsg::Handled(h) => write!(f, "Handled({} acks)", h.len()),
        }
    }
}

impl ShardMsg {
    /// True for messages that carry a stanza (bounded by the outbox policy); control messages are few
    /// per connection and always queued so session state never diverges.
    pub fn is_stanza(&self) -> bool {
        matches!(
            self,
            ShardMsg::SmRoute(_)
                | ShardMsg::Remote(_)
                | ShardMsg::Conn(_, ConnMsg::Deliver(_))
                | ShardMsg::Multicast(..)
        )
    }

    /// The stanza carried to one recipient, if any (a refused one is answered to its sender). A
    /// refused [`ShardMsg::Multicast`] gives none: an error to the room would tell no one.
    pub fn into_acc(self) -> Option<Acc> {
        match self {
            ShardMsg::SmRoute(acc)
            | ShardMsg::Remote(acc)
            | ShardMsg::Conn(_, ConnMsg::Deliver(acc)) => Some(acc),
            _ => None,
        }
    }
}

/// A message for one connection's c2s.
#[derive(Debug)]
pub enum ConnMsg {
    /// Step 7: a stanza for this session's client.
    Deliver(Acc),
    /// The home shard's answer to `Register`.
    Bound(Result<(), BindError>),
    /// Close the stream with this error (`conflict` when another connection bound the same full JID,
    /// `system-shutdown` when the server stops).
    Close(StreamErrorCondition),
    /// Close the stream with this error and text (an administrator's kick).
    CloseText(StreamErrorCondition, &'static str),
    /// A module's message for this connection (XEP-0198 hand-over of a session, for one): the core
    /// carries it without knowing its type.
    Ext(Box<dyn ConnExtMsg>),
    /// These stanzas from the client (XEP-0198 inbound numbers) are handled (see `hooks::handled`).
    Handled(Vec<u32>),
    /// What the client's presence broadcast started is routed: its input is read again (see
    /// `hooks::RELEASE_INPUT`).
    InputReleased,
    /// For an incoming s2s stream: the remote's authoritative server answered the dialback
    /// verification of (`remote`, `local`).
    DialbackVerified {
        /// The remote domain that asked to be verified.
        remote: String,
        /// Our domain it wants to talk to.
        local: String,
        /// The key is valid (`Some(true)`), not (`Some(false)`), or the authoritative server
        /// could not be asked (`None`: unreachable, error).
        valid: Option<bool>,
    },
}

/// A module's message for one connection, carried by the core as a trait object so the core never
/// names the module; the module's connection driver downcasts it ([`ConnMsg::downcast_ext`]).
pub trait ConnExtMsg: std::any::Any + Send + std::fmt::Debug {
    /// The connection it was for is gone (or cannot take it): the module answers or re-routes
    /// what it carried.
    fn conn_gone(self: Box<Self>, shard: &mut crate::shard::Shard);
    /// The message as `Any`, to downcast by value.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
    /// The message as `Any`, to check its type before downcasting.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl dyn ConnExtMsg {
    /// The message as a `T`, or the message unchanged.
    pub fn downcast<T: ConnExtMsg>(self: Box<Self>) -> Result<T, Box<dyn ConnExtMsg>> {
        if !self.as_any().is::<T>() {
            return Err(self);
        }
        // Cannot fail: the box was just checked to hold a `T`.
        let t = self.into_any().downcast::<T>().expect("type checked above");
        Ok(*t)
    }
}

impl ConnMsg {
    /// Wraps a module's message for a connection.
    pub fn ext<T: ConnExtMsg>(msg: T) -> ConnMsg {
        ConnMsg::Ext(Box::new(msg))
    }

    /// The module message of type `T` this carries, or the message unchanged.
    pub fn downcast_ext<T: ConnExtMsg>(self) -> Result<T, ConnMsg> {
        match self {
            ConnMsg::Ext(m) => m.downcast::<T>().map_err(ConnMsg::Ext),
            other => Err(other),
        }
    }
}
