//! The accumulator that travels with a stanza along the route (MongooseIM's `mongoose_acc`).

use std::any::Any;
use std::time::Instant;

use crate::explain::Outcome;
use crate::jid::Jid;
use crate::shard::ShardId;
use crate::xml::{Element, Node, Stanza, StanzaKind};
use crate::xmpp::{ns, ErrorType, StanzaErrorCondition};

/// A stanza on its way through the route, with its addressing and per-route scratch values.
///
/// A handle to a boxed [`AccData`]: the route moves it through many steps (router modules, queues,
/// rings), and moving a pointer beats moving ~300 bytes at every step.
#[derive(Debug)]
pub struct Acc(Box<AccData>);

impl std::ops::Deref for Acc {
    type Target = AccData;
    fn deref(&self) -> &AccData {
        &self.0
    }
}

impl std::ops::DerefMut for Acc {
    fn deref_mut(&mut self) -> &mut AccData {
        &mut self.0
    }
}

/// What an [`Acc`] carries.
#[derive(Debug)]
pub struct AccData {
    /// The stanza bytes as they will be written to the recipient (with `from` stamped).
    pub stanza: Stanza,
    /// Sender (the session's full JID, or a server/domain JID for server-generated stanzas).
    pub from: Jid,
    /// Recipient (`to`, or the sender's bare JID when the client left `to` out).
    pub to: Jid,
    /// Shard where the stanza entered the route.
    pub origin_shard: ShardId,
    /// When the stanza entered the route.
    pub entered: Instant,
    /// How many times the stanza was bounced back to the session manager after its target session vanished.
    pub reroutes: u8,
    /// A client sent it on its stream (`c2s::route`): RFC 6120 §10.1 orders what a client sends
    /// (see `sm::order`); stanzas the server makes (rooms, notifications, errors) are not held to
    /// it. Copies do not carry it.
    pub(crate) from_client: bool,
    /// The shard that asked, with this stanza, where its recipient's session lives (see
    /// `sm::locations`): the recipient's shard answers once the stanza is in the session's mailbox.
    pub(crate) locate_for: Option<crate::shard::Ask>,
    /// What this stanza, on the long way through its recipient's home shard, waits for on the
    /// shards its sender's shard sent that recipient's stanzas straight to (see `shard::fence`).
    /// Copies carry it: the home shard delivers copies.
    pub(crate) fences: Option<Box<[crate::shard::Fence]>>,
    /// The sender's XEP-0198 acknowledgement, released when the stanza's route ends (see
    /// [`super::handled`]); copies made by [`Acc::fork`] do not carry it.
    pub handled: Option<super::Handled>,
    /// The `route explain` trace of this stanza (None for every ordinary stanza; see
    /// [`crate::explain`]). Copies made by [`Acc::fork`] and replies carry a clone.
    pub trace: Option<Box<crate::explain::Trace>>,
    scratch: Vec<(&'static str, Box<dyn Any + Send>)>,
}

impl Acc {
    /// A new accumulator for a stanza entering the route on `shard`.
    pub fn new(stanza: Stanza, from: Jid, to: Jid, shard: ShardId) -> Acc {
        Acc(Box::new(AccData {
            stanza,
            from,
            to,
            origin_shard: shard,
            entered: super::clock::now(),
            reroutes: 0,
            from_client: false,
            locate_for: None,
            fences: None,
            handled: None,
            trace: None,
            scratch: Vec::new(),
        }))
    }

    /// Gives up the stanza (its buffer goes on to the socket).
    pub fn into_stanza(self) -> Stanza {
        self.0.stanza
    }

    /// A copy for a second recipient: same stanza and addressing, fresh scratch values.
    pub fn fork(&self) -> Acc {
        Acc(Box::new(AccData {
            stanza: self.stanza.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            origin_shard: self.origin_shard,
            entered: self.entered,
            reroutes: self.reroutes,
            from_client: false,
            locate_for: None,
            fences: self.fences.clone(),
            handled: None,
            trace: self.trace.clone(),
            scratch: Vec::new(),
        }))
    }

    /// The stanza's kind (message, presence, iq, other).
    pub fn kind(&self) -> StanzaKind {
        self.stanza.kind()
    }

    /// The stanza's `type` attribute.
    pub fn ty(&self) -> crate::xml::StanzaType {
        self.stanza.ty()
    }

    /// Stores a scratch value under `key`, replacing any earlier one.
    pub fn put<T: Any + Send>(&mut self, key: Key<T>, value: T) {
        self.scratch.retain(|(k, _)| *k != key.name);
        self.scratch.push((key.name, Box::new(value)));
    }

    /// Reads a scratch value set earlier on this route.
    pub fn get<T: Any + Send>(&self, key: Key<T>) -> Option<&T> {
        self.scratch
            .iter()
            .find(|(k, _)| *k == key.name)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// Takes a scratch value set earlier on this route out of the accumulator.
    pub fn take<T: Any + Send>(&mut self, key: Key<T>) -> Option<T> {
        let at = self
            .scratch
            .iter()
            .position(|(k, v)| *k == key.name && v.is::<T>())?;
        let (_, v) = self.scratch.remove(at);
        v.downcast().ok().map(|b| *b)
    }

    /// Builds the error reply RFC 6120 §8.3 asks for: `from`/`to` swapped, `type='error'`, the original
    /// payload kept, and the `<error/>` appended. `None` for stanzas that must never be answered with an
    /// error (errors themselves, IQ results).
    pub fn error_reply(&self, cond: StanzaErrorCondition, shard: ShardId) -> Option<Acc> {
        self.error_reply_with(cond, None, shard)
    }

    /// [`Acc::error_reply`] with an application-specific condition element inside the `<error/>`
    /// (RFC 6120 §8.3.2), e.g. XEP-0363's `<file-too-large/>`.
    pub fn error_reply_with(
        &self,
        cond: StanzaErrorCondition,
        app: Option<Element>,
        shard: ShardId,
    ) -> Option<Acc> {
        self.error_reply_typed(cond, cond.default_type(), app, shard)
    }

    /// [`Acc::error_reply_with`] with an error type other than the condition's usual one, e.g.
    /// `wait` for a failure that passes (a store that is down).
    pub fn error_reply_typed(
        &self,
        cond: StanzaErrorCondition,
        ty: ErrorType,
        app: Option<Element>,
        shard: ShardId,
    ) -> Option<Acc> {
        if self.stanza.forbids_error_reply() {
            return None;
        }
        let el = self.stanza.tree().ok()?;
        Some(self.error_of(el, cond, ty, app, shard))
    }

    /// [`Acc::error_reply`] without the original payload: for a request whose payload must not
    /// travel back (a new password, XEP-0077 §3.3).
    pub fn error_reply_without_payload(
        &self,
        cond: StanzaErrorCondition,
        shard: ShardId,
    ) -> Option<Acc> {
        if self.stanza.forbids_error_reply() {
            return None;
        }
        let mut el = self.stanza.tree().ok()?;
        el.children.clear();
        Some(self.error_of(el, cond, cond.default_type(), None, shard))
    }

    /// The error reply made of `el`, this stanza's element (its children as the reply keeps them).
    fn error_of(
        &self,
        mut el: Element,
        cond: StanzaErrorCondition,
        ty: ErrorType,
        app: Option<Element>,
        shard: ShardId,
    ) -> Acc {
        el.attrs
            .retain(|(k, _)| k != "type" && k != "from" && k != "to");
        el.attrs.push(("type".into(), "error".into()));
        el.attrs.push(("from".into(), self.to.as_str().into()));
        el.attrs.push(("to".into(), self.from.as_str().into()));
        // The stanza id the server gave the message for the addressee's archive (XEP-0359, `by`
        // the addressee) is the addressee's, not the sender's to learn.
        let by = self.to.bare_str();
        el.children.retain(|c| {
            !matches!(c, Node::Element(e)
                if e.name == "stanza-id" && e.ns == ns::STANZA_ID && e.attr("by") == Some(by))
        });
        let mut error = Element::new("error", ns::CLIENT)
            .with_attr("type", ty.as_str())
            .with_child(Element::new(cond.as_str(), ns::STANZAS));
        if let Some(app) = app {
            error = error.with_child(app);
        }
        el.children.push(Node::Element(error));
        let mut reply = Acc::new(
            Stanza::from_element(&el),
            self.to.clone(),
            self.from.clone(),
            shard,
        );
        self.reply_trace(&mut reply, shard, Outcome::Bounced, Some(cond.as_str()));
        reply
    }

    /// Gives `reply`, a stanza the route makes in answer to this one, a copy of this one's trace
    /// (if any) with a step saying why.
    #[inline]
    pub fn reply_trace(
        &self,
        reply: &mut Acc,
        shard: ShardId,
        outcome: Outcome,
        detail: Option<&'static str>,
    ) {
        self.derive_trace(reply, shard, "reply", outcome, detail);
    }

    /// Gives `new`, a stanza a module derives from this one (a carbon copy), a copy of this one's
    /// trace (if any) with a step of `stage` saying why.
    #[inline]
    pub fn derive_trace(
        &self,
        new: &mut Acc,
        shard: ShardId,
        stage: &'static str,
        outcome: Outcome,
        detail: Option<&'static str>,
    ) {
        if let Some(t) = &self.trace {
            let mut t = t.clone();
            t.push(shard, stage, None, outcome, detail.map(str::to_owned));
            new.trace = Some(t);
        }
    }
}

/// What a message handed to one session is, for the session manager when that session is gone
/// before it took it (RFC 6121 §8.5.3.2.1 would send it on as if to the bare JID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFor {
    /// One of the copies of a bare-JID message delivered to several resources (§8.5.2.1.1), the
    /// one for this resource: the others got theirs, so it goes to this resource only (bound
    /// again after a resumption) or, when no resource is left, to offline storage.
    FanOut(crate::jid::FullJid),
    /// Made for that session alone (an archive query's results, a carbon copy): nobody else
    /// needs it.
    SessionOnly,
}

/// The [`CopyFor`] of a message, when it is one.
pub const COPY_FOR: Key<CopyFor> = Key::new("sm.copy_for");

/// A room occupant's real JID on the room's broadcast of its message: the room's archive keeps it
/// (and shows it only on [`ROOM_REAL_JIDS_SHOWN`] queries).
pub const ROOM_REAL_JID: Key<crate::jid::FullJid> = Key::new("muc.real_jid");

/// Set on a query of a room's archive by a requester who may see the occupants' real JIDs at the
/// time of the query (the room is non-anonymous, or the requester moderates it): the results keep
/// the real JIDs the archive has (XEP-0313 §6.1.2); others get none.
pub const ROOM_REAL_JIDS_SHOWN: Key<()> = Key::new("muc.real_jids_shown");

/// The `<stanza-id/>` element (its bytes) an archive gave a message (a room's archive its
/// broadcast, a user's archive an incoming message): the room's history copy carries it too, and
/// so do the copies of one private message for the recipient's other sessions in the room.
pub const ARCHIVE_STANZA_ID: Key<Vec<u8>> = Key::new("mam.stanza_id");

/// The id under which the local recipient's archive keeps this message (set by the archive on
/// its way): a server that then refuses the message tells [`super::MessageRefused`] with it.
pub const ARCHIVED_FOR_RECIPIENT: Key<i64> = Key::new("mam.received_id");

/// The `<stanza-id/>` element (its bytes) under which the sender's own archive keeps a message it
/// sent: its `<sent/>` carbons carry it (XEP-0313 §3.3); the message itself goes without.
pub const SENT_STANZA_ID: Key<Vec<u8>> = Key::new("mam.sent_stanza_id");

/// Set on a stanza whose router waits for the recipient client's XEP-0198 acknowledgement of it
/// (offline storage delivers its next messages then): a stream-managed session asks for an ack as
/// soon as it is written, not after `ack_freq` stanzas.
pub const ACK_WANTED: Key<()> = Key::new("sm.ack_wanted");

/// Set by a `user_send` hook on a request after which nothing the client sends may be handled
/// before its answer: the stream's input waits for it (an account's removal, XEP-0077 §3.2, after
/// which nothing may act for the account). See `c2s::route::SendOutcome::HoldInput`.
pub const HOLD_INPUT: Key<()> = Key::new("c2s.hold_input");

/// Put by the c2s on a client's presence broadcast: the stream's input waits until this guard
/// dies. A handler that routes the stanza's effects later (from a store job) keeps it until they
/// are routed ([`super::JobDone::keeping`]), so the client's next stanzas cannot overtake them
/// (RFC 6120 §10.1). Whatever ends the route drops it; dropping releases the input.
pub const RELEASE_INPUT: Key<super::OnDrop> = Key::new("c2s.release_input");

/// The key of a scratch value on an [`Acc`]: its type is part of the key, so a handler reads back
/// exactly the type the writer stored (a mismatch does not compile). The name keeps keys of
/// different modules apart and shows in `Debug` output.
pub struct Key<T> {
    name: &'static str,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A key named `name` (by convention `module.what`).
    pub const fn new(name: &'static str) -> Key<T> {
        Key {
            name,
            _value: std::marker::PhantomData,
        }
    }
}

// Not derived: the derives would ask `T: Clone`, which a key does not need.
impl<T> Clone for Key<T> {
    fn clone(&self) -> Key<T> {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl<T> std::fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Key").field(&self.name).finish()
    }
}
