//! The c2s ends of the route (MongooseIM's `mongoose_c2s_hooks`): step 2, a stanza from the client enters
//! the route (`user_send_*`), and step 7, a routed stanza leaves towards the client (`user_receive_*`,
//! `xmpp_presend_element`).

use std::cell::RefCell;

use crate::hooks::{Acc, HookResult, SessionEnd, SessionEndKind};
use crate::jid::{FullJid, Jid};
use crate::shard::{SessionRef, Shard};
use crate::xml::{Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

/// What the route needs to know about a bound session on its own shard.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bound full JID.
    pub jid: FullJid,
    /// Where the session lives.
    pub session: SessionRef,
    /// `Some(priority)` after initial presence, `None` while not available.
    pub presence: Option<i8>,
    /// Presence stanzas this session may still send right now (flood limit, see [`PRESENCE_BURST`]).
    presence_budget: f32,
    /// When `presence_budget` was last refilled.
    budget_at: std::time::Instant,
    /// The `to` of the last stanza this session sent, prepared. A conversation addresses the same
    /// JID stanza after stanza, and preparing it (stringprep of each part) was 5-7 % of the route's
    /// cost at high rates; a `to` written exactly as this prepared form reuses it, since preparing
    /// a prepared JID gives it back.
    last_to: Option<Jid>,
}

/// Presence flood limit per session: a burst of this many presences (joining many rooms, a roster of
/// directed presences), then [`PRESENCE_PER_SEC`] a second. Each presence fans out to every contact, so
/// a flood costs the server far more than it costs the client; past the limit the client gets
/// `policy-violation` errors and nothing is broadcast. Unavailable presences are not limited.
pub const PRESENCE_BURST: f32 = 30.0;
/// Sustained presence rate per session.
pub const PRESENCE_PER_SEC: f32 = 2.0;

impl Session {
    /// A freshly bound session (not yet available).
    pub fn new(jid: FullJid, session: SessionRef) -> Session {
        Session {
            jid,
            session,
            presence: None,
            presence_budget: PRESENCE_BURST,
            budget_at: crate::hooks::clock::now(),
            last_to: None,
        }
    }

    /// The stanza's `to`, prepared (`None` without one). The usual case, the same JID as the last
    /// stanza's written the same way, is decided on the bytes as written.
    fn prepared_to(&mut self, stanza: &Stanza) -> Option<Result<Jid, crate::jid::JidError>> {
        if let Some(last) = self.last_to.as_ref().filter(|l| stanza.to_is(l.as_str())) {
            return Some(Ok(last.clone()));
        }
        Some(self.parse_to(&stanza.to()?))
    }

    /// Prepares `to`, reusing the last one this session addressed when it is written the same way.
    fn parse_to(&mut self, to: &str) -> Result<Jid, crate::jid::JidError> {
        if let Some(last) = &self.last_to {
            if last.as_str() == to {
                return Ok(last.clone());
            }
        }
        let jid = Jid::parse(to)?;
        self.last_to = Some(jid.clone());
        Ok(jid)
    }

    /// The bound JID as a `Jid`, the `from` of a stanza the session sends (a copy of the JID, as a
    /// stored `Jid` would cost at each stanza too: not kept twice per session).
    pub fn from(&self) -> Jid {
        Jid::from(self.jid.clone())
    }

    /// Takes one presence from the flood budget; false when the session is over the limit.
    fn spend_presence(&mut self) -> bool {
        let now = crate::hooks::clock::now();
        let refill = now.saturating_duration_since(self.budget_at).as_secs_f32() * PRESENCE_PER_SEC;
        self.budget_at = now;
        self.presence_budget = (self.presence_budget + refill).min(PRESENCE_BURST);
        if self.presence_budget >= 1.0 {
            self.presence_budget -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the c2s should do after handing a stanza to the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The stanza is on its way (or was consumed by a hook).
    Continue,
    /// Close the stream with this error.
    Close(StreamErrorCondition),
    /// Handle nothing more from this stream (read nothing either) until this happens.
    HoldInput(HoldUntil),
}

/// What a stream's held input waits for ([`SendOutcome::HoldInput`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldUntil {
    /// The answer to the IQ with this id reached the connection: a hook marked the request so
    /// ([`crate::hooks::HOLD_INPUT`]).
    Answer(String),
    /// [`crate::shard::ConnMsg::InputReleased`] came: the presence broadcast the stanza started
    /// is routed ([`crate::hooks::RELEASE_INPUT`]).
    Released,
}

/// Step 2: runs `user_send_packet` and the type-specific `user_send_*` hook, then hands the stanza to
/// the router. `stanza.from` was already stamped with the session's full JID by the c2s.
pub fn user_send(shard: &mut Shard, sess: &mut Session, stanza: Stanza) -> SendOutcome {
    user_send_acked(shard, sess, stanza, None)
}

/// [`user_send`] for a stanza from a stream-managed client: `handled` travels with it and is
/// released when its route ends (see `hooks::handled`).
pub fn user_send_acked(
    shard: &mut Shard,
    sess: &mut Session,
    stanza: Stanza,
    handled: Option<crate::hooks::Handled>,
) -> SendOutcome {
    send(shard, sess, stanza, handled, None)
}

/// [`user_send`] for a stanza being explained (`route explain`): `trace` rides on it.
pub fn user_send_traced(
    shard: &mut Shard,
    sess: &mut Session,
    stanza: Stanza,
    trace: Box<crate::explain::Trace>,
) -> SendOutcome {
    send(shard, sess, stanza, None, Some(trace))
}

fn send(
    shard: &mut Shard,
    sess: &mut Session,
    stanza: Stanza,
    handled: Option<crate::hooks::Handled>,
    trace: Option<Box<crate::explain::Trace>>,
) -> SendOutcome {
    shard.stats.routed += 1;
    let kind = stanza.kind();
    shard.metrics.stanza_in(kind);
    let to = match sess.prepared_to(&stanza) {
        None => None,
        Some(Ok(jid)) => Some(jid),
        Some(Err(_)) => {
            jid_malformed(shard, sess, stanza);
            return SendOutcome::Continue;
        }
    };
    // An unavailable presence is never refused: it ends fan-outs (the broadcast's, a directed
    // presence's) instead of starting them, and refusing it left contacts seeing the session
    // available after it had said goodbye.
    if kind == StanzaKind::Presence
        && stanza.ty() != StanzaType::Unavailable
        && !sess.spend_presence()
    {
        presence_flood(shard, sess, stanza);
        return SendOutcome::Continue;
    }
    // No `to`: the stanza is for the sender's own account (RFC 6120 §10.3).
    let broadcast_presence = kind == StanzaKind::Presence && to.is_none();
    let to = to.unwrap_or_else(|| Jid::from(sess.jid.bare()));
    let mut acc = Acc::new(stanza, sess.from(), to, shard.id);
    acc.from_client = true;
    acc.handled = handled;
    acc.trace = trace;
    let bad_presence = kind == StanzaKind::Presence && !valid_priority(&acc.stanza);
    if bad_presence || (kind == StanzaKind::Iq && !acc.stanza.is_well_formed_iq()) {
        // Answered before any hook or recipient sees it; a result or error is dropped instead, as
        // nothing may answer an answer (RFC 6120 §8.3.1).
        shard.bounce(&acc, StanzaErrorCondition::BadRequest);
        shard.drain_to_route();
        return SendOutcome::Continue;
    }
    if shard.run_hook(|h| &h.user_send_packet, &mut acc) == HookResult::Stop {
        shard.drain_to_route();
        return SendOutcome::Continue;
    }
    let typed = match kind {
        StanzaKind::Message => shard.run_hook(|h| &h.user_send_message, &mut acc),
        StanzaKind::Presence => {
            // Per-session state of presence handlers (the avatar hash) is found by the session.
            acc.put(SENDER, sess.session);
            shard.run_hook(|h| &h.user_send_presence, &mut acc)
        }
        StanzaKind::Iq => shard.run_hook(|h| &h.user_send_iq, &mut acc),
        StanzaKind::Other => {
            // Elements with their own namespace (stream management, CSI...) are consumed by the
            // modules that registered for them; one nobody took is not a stanza of this stream.
            // They act on the sending connection, so its handlers are told which one it is.
            acc.put(SENDER, sess.session);
            let r = shard.run_hook(|h| &h.user_send_xmlel, &mut acc);
            shard.drain_to_route();
            return match r {
                HookResult::Stop => SendOutcome::Continue,
                HookResult::Continue => {
                    SendOutcome::Close(StreamErrorCondition::UnsupportedStanzaType)
                }
            };
        }
    };
    // Only a request with an id can be waited for (its answer carries it).
    let mut hold = (kind == StanzaKind::Iq && acc.get(crate::hooks::HOLD_INPUT).is_some())
        .then(|| acc.stanza.id().map(|id| HoldUntil::Answer(id.into_owned())))
        .flatten();
    if typed == HookResult::Continue {
        if broadcast_presence {
            if update_presence(shard, sess, acc) {
                hold = Some(HoldUntil::Released);
            }
        } else {
            crate::router::route(shard, acc);
        }
    }
    shard.drain_to_route();
    match hold {
        Some(until) => SendOutcome::HoldInput(until),
        None => SendOutcome::Continue,
    }
}

/// Presence without `to` sets the session's availability and priority (RFC 6121 §4.2, §4.5): the
/// stanza goes to the home shard, which records it and hands it to the presence module for the
/// broadcast. Every available presence goes (its status may have changed); a repeated unavailable
/// does not.
///
/// Returns true when the stanza went: the stream's input then waits until the broadcast's copies
/// are routed (RFC 6120 §10.1: the contacts get the presence before the client's next stanzas;
/// the copies leave after a store job reads the roster, which the next message would overtake).
fn update_presence(shard: &mut Shard, sess: &mut Session, mut acc: Acc) -> bool {
    let priority = match acc.ty() {
        StanzaType::Absent => Some(presence_priority(&acc.stanza)),
        StanzaType::Unavailable => None,
        // A type no RFC defines (RFC 6121 §4.7.1): bad-request, as for a directed presence.
        StanzaType::Unknown => {
            shard.bounce(&acc, crate::xmpp::StanzaErrorCondition::BadRequest);
            shard.drain_to_route();
            return false;
        }
        // Subscription management and probes addressed to no one: nothing to record.
        _ => return false,
    };
    if priority.is_none() && sess.presence.is_none() {
        return false;
    }
    sess.presence = priority;
    let session = sess.session;
    acc.put(
        crate::hooks::RELEASE_INPUT,
        crate::hooks::OnDrop::new(Box::new(move |shard: &mut Shard| {
            shard.send_to_session(session, crate::shard::ConnMsg::InputReleased)
        })),
    );
    acc.put(
        crate::sm::PRESENCE_UPDATE,
        crate::sm::PresenceUpdate {
            session: sess.session,
            priority,
            initial: false,
        },
    );
    crate::sm::route(shard, acc);
    true
}

/// The `<priority/>` of an available presence: -128..=127, 0 when absent or invalid (RFC 6121 §4.7.2.3).
pub fn presence_priority(stanza: &Stanza) -> i8 {
    stanza
        .tree()
        .ok()
        .and_then(|el| {
            el.get_child("priority", ns::CLIENT)
                .and_then(|p| p.text().trim().parse::<i8>().ok())
        })
        .unwrap_or(0)
}

/// At most one `<priority/>`, an integer in -128..=127 (RFC 6121 §4.7.2.3): otherwise the
/// presence is refused `bad-request`, since what contacts would see (the value as sent) is not
/// what routing would use.
fn valid_priority(stanza: &Stanza) -> bool {
    if memchr::memmem::find(stanza.bytes(), b"priority").is_none() {
        return true;
    }
    let Ok(el) = stanza.tree() else {
        return true;
    };
    let mut found = el
        .child_elements()
        .filter(|c| c.name == "priority" && c.ns == ns::CLIENT);
    match (found.next(), found.next()) {
        (None, _) => true,
        (Some(p), None) => p.text().trim().parse::<i8>().is_ok(),
        (Some(_), Some(_)) => false,
    }
}

/// Answers a presence over the flood limit with `policy-violation`, from the sender's own domain.
fn presence_flood(shard: &mut Shard, sess: &Session, stanza: Stanza) {
    bounce_from_domain(shard, sess, stanza, StanzaErrorCondition::PolicyViolation);
}

fn jid_malformed(shard: &mut Shard, sess: &Session, stanza: Stanza) {
    bounce_from_domain(shard, sess, stanza, StanzaErrorCondition::JidMalformed);
}

fn bounce_from_domain(
    shard: &mut Shard,
    sess: &Session,
    stanza: Stanza,
    cond: StanzaErrorCondition,
) {
    // The reply comes from the sender's own domain (a malformed `to` cannot be an address).
    let Ok(domain) = Jid::parse(sess.jid.domain()) else {
        return;
    };
    let acc = Acc::new(stanza, sess.from(), domain, shard.id);
    shard.bounce(&acc, cond);
    shard.drain_to_route();
}

/// Scratch key of the [`SessionRef`] that sent a non-stanza element or a presence (set before
/// `user_send_xmlel` and `user_send_presence`).
pub const SENDER: crate::hooks::Key<SessionRef> = crate::hooks::Key::new("c2s.sender");

/// Scratch key of the [`Receiver`] a stanza is being delivered to (set by [`user_receive_at`] for
/// the `user_receive_*` and `xmpp_presend_element` handlers).
pub const RECEIVER: crate::hooks::Key<Receiver> = crate::hooks::Key::new("c2s.receiver");

/// Scratch key under which an `xmpp_presend_element` handler leaves a [`Release`]: stanzas it held
/// back and now lets go, to be written before the stanza being delivered (CSI flush).
pub const PRESEND_RELEASE: crate::hooks::Key<Release> =
    crate::hooks::Key::new("c2s.presend_release");

/// Stanzas a presend handler releases, in write order.
pub type Release = RefCell<Vec<Acc>>;

/// The session a stanza is delivered to.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its full JID.
    pub jid: FullJid,
    /// Where it lives.
    pub session: SessionRef,
}

/// Marker in `Shard::ext`: some module reads [`RECEIVER`] (set at start-up; without it the route
/// does not pay for the scratch value).
#[derive(Default)]
pub struct WantReceiver;

/// What to write to a client after step 7, in order: stanzas a presend handler released, then the
/// delivered stanza unless a handler stopped it.
#[derive(Default)]
pub struct Delivery {
    released: Vec<Acc>,
    acc: Option<Acc>,
}

impl IntoIterator for Delivery {
    type Item = Acc;
    type IntoIter = std::iter::Chain<std::vec::IntoIter<Acc>, std::option::IntoIter<Acc>>;
    fn into_iter(self) -> Self::IntoIter {
        self.released.into_iter().chain(self.acc)
    }
}

/// Step 7: `user_receive_packet`, the type-specific `user_receive_*` hook, then `xmpp_presend_element`.
/// Returns the stanza to write, or `None` when a handler stopped it. Handlers are not told the
/// receiving session (so nothing is held back or released); the driver uses [`user_receive_at`].
pub fn user_receive(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    receive(shard, acc, None).into_iter().last()
}

/// Step 7 for the session `receiver`: as [`user_receive`], with [`RECEIVER`] set for the handlers,
/// and the stanzas a presend handler released (CSI) written first.
pub fn user_receive_at(shard: &mut Shard, receiver: &Session, mut acc: Acc) -> Delivery {
    if shard.ext.get::<WantReceiver>().is_some() {
        acc.put(
            RECEIVER,
            Receiver {
                jid: receiver.jid.clone(),
                session: receiver.session,
            },
        );
    }
    receive(shard, acc, Some(&receiver.jid))
}

/// Step 7 proper; `receiver` names the session in a `route explain` trace.
fn receive(shard: &mut Shard, mut acc: Acc, receiver: Option<&FullJid>) -> Delivery {
    let mut go = shard.run_hook(|h| &h.user_receive_packet, &mut acc) == HookResult::Continue;
    if go {
        go = match acc.kind() {
            StanzaKind::Message => shard.run_hook(|h| &h.user_receive_message, &mut acc),
            StanzaKind::Presence => shard.run_hook(|h| &h.user_receive_presence, &mut acc),
            StanzaKind::Iq => shard.run_hook(|h| &h.user_receive_iq, &mut acc),
            StanzaKind::Other => shard.run_hook(|h| &h.user_receive_xmlel, &mut acc),
        } == HookResult::Continue;
    }
    let mut out = Delivery::default();
    if go {
        presend(shard, acc, &mut out, true);
    }
    // What goes to the connection now leaves the route: a traced stanza's path ends here.
    for acc in out.released.iter_mut().chain(out.acc.as_mut()) {
        acc.end_trace(shard.id, receiver, crate::explain::Outcome::Written);
    }
    shard.drain_to_route();
    out
}

/// Runs `xmpp_presend_element`. A handler that releases held stanzas (a [`Release`] left in the
/// scratch) and stops this one gets the released stanzas through the hook first, then this one
/// again: every handler after it (stream management counters) sees them in write order. Only one
/// level: stanzas released by a release are not asked again.
fn presend(shard: &mut Shard, mut acc: Acc, out: &mut Delivery, top: bool) {
    let go = shard.run_hook(|h| &h.xmpp_presend_element, &mut acc) == HookResult::Continue;
    let released = acc
        .get(PRESEND_RELEASE)
        .map(|r| r.take())
        .filter(|r| top && !r.is_empty());
    let Some(released) = released else {
        if go {
            out.acc = Some(acc);
        }
        return;
    };
    for held in released {
        let mut one = Delivery::default();
        presend(shard, held, &mut one, false);
        out.released.extend(one.acc);
    }
    if go {
        out.acc = Some(acc);
    } else {
        presend(shard, acc, out, false);
    }
}

/// The session bound: register it with its home shard (the answer comes back as `ConnMsg::Bound`).
pub fn bind(
    shard: &mut Shard,
    jid: FullJid,
    session: SessionRef,
    authenticated: std::time::Instant,
) {
    crate::sm::register(shard, jid, session, authenticated);
    shard.drain_to_route();
}

/// The session ended: an available session first goes unavailable as if the client had said so
/// (RFC 6121 §4.5.2: contacts and directed-presence targets learn it; the user_send hooks do not
/// run, the client sent nothing), then it is unregistered from its home shard.
pub fn unbind(shard: &mut Shard, sess: &Session) {
    let mut gone = None;
    if sess.presence.is_some() {
        let el = crate::xml::Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", sess.jid.as_str());
        gone = Some(Acc::new(
            Stanza::from_element(&el),
            sess.from(),
            Jid::from(sess.jid.bare()),
            shard.id,
        ));
    }
    let mut end = SessionEnd {
        jid: sess.jid.clone(),
        session: sess.session,
        kind: SessionEndKind::Closed,
        unavailable: gone,
        held: Vec::new(),
    };
    shard.session_end(&mut end);
    if let Some(acc) = end.unavailable {
        update_presence(shard, &mut sess.clone(), acc);
    }
    shard.local_unbind(&sess.jid, sess.session.conn);
    crate::sm::unregister(shard, sess.jid.clone(), sess.session);
    // What modules held back for a closed session and gave up is routed again, behind the
    // unregistration (see `SessionEnd::held`).
    for acc in end.held {
        if crate::sm::worth_rerouting(&acc) {
            shard.reroute(acc);
        }
    }
    shard.drain_to_route();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{ConnId, ShardId};

    fn session() -> Session {
        let jid = FullJid::parse("romeo@example.com/balcony").expect("a valid full JID");
        Session::new(
            jid,
            SessionRef {
                shard: ShardId(0),
                conn: ConnId(1),
            },
        )
    }

    #[test]
    fn a_repeated_to_reuses_the_prepared_jid_and_a_new_one_is_prepared() {
        let mut s = session();
        let first = s.parse_to("Juliet@Example.com/Chamber").expect("valid");
        assert_eq!(first.as_str(), "juliet@example.com/Chamber");
        // The prepared form hits the cache and gives the same JID; other spellings are prepared.
        for to in [
            "juliet@example.com/Chamber",
            "JULIET@EXAMPLE.COM/Chamber",
            "juliet@example.com/Chamber",
        ] {
            assert_eq!(s.parse_to(to).expect("valid"), first, "{to}");
        }
        let other = s.parse_to("nurse@example.com").expect("valid");
        assert_eq!(other.as_str(), "nurse@example.com");
        assert_eq!(s.last_to.as_ref(), Some(&other));
        // A bad `to` is refused whatever the cache holds, and does not replace it.
        assert!(s.parse_to("@example.com").is_err());
        assert_eq!(s.last_to.as_ref(), Some(&other));
    }

    /// The bytes as written decide only when they need no unescaping: a resource written
    /// `x&amp;y` is `x&y`, even when the cached JID is literally `x&amp;y`.
    #[test]
    fn a_to_as_written_hits_the_cache_only_without_references() {
        let msg = |to: &str| {
            let xml = format!("<message xmlns='jabber:client' to='{to}'><body>b</body></message>");
            Stanza::parse(xml.into_bytes()).expect("a valid stanza")
        };
        let to = |s: &mut Session, st: &Stanza| s.prepared_to(st).expect("a to").expect("valid");
        let mut s = session();
        assert!(s
            .prepared_to(
                &Stanza::parse(b"<message xmlns='jabber:client'/>".to_vec()).expect("valid")
            )
            .is_none());
        let amp = to(&mut s, &msg("juliet@example.com/x&amp;amp;y"));
        assert_eq!(amp.as_str(), "juliet@example.com/x&amp;y");
        let plain = to(&mut s, &msg("juliet@example.com/x&amp;y"));
        assert_eq!(
            plain.as_str(),
            "juliet@example.com/x&y",
            "unescaped, not the cached JID"
        );
        assert_eq!(
            to(&mut s, &msg("juliet@example.com/x&#38;y")),
            plain,
            "another spelling"
        );
        // A hit is the cached JID itself (its string shared), not one prepared again.
        let c = to(&mut s, &msg("nurse@example.com"));
        let again = to(&mut s, &msg("nurse@example.com"));
        assert!(std::ptr::eq(c.as_str().as_ptr(), again.as_str().as_ptr()));
    }
}
