//! Step 6 of the seed: `ejabberd_sm`, the session manager, partitioned by bare JID.
//!
//! The home shard of bare JID `b` (`shard::home_shard`) alone owns `b`'s resources, their priorities and
//! where each session lives. `route` runs on the home shard and applies RFC 6121 §8.5:
//! - full JID of a connected resource: delivered to it;
//! - full JID of a missing resource: message (normal/chat/headline) treated as bare, groupchat ->
//!   `service-unavailable`, presence dropped, IQ -> `service-unavailable`;
//! - bare JID, message normal/chat: every available resource with the highest non-negative priority (all of
//!   the highest, as MongooseIM does); headline: every available non-negative resource; groupchat ->
//!   `service-unavailable`; presence: every available resource; negative priorities never get bare-JID
//!   messages;
//! - no resource can take a message: the `offline_message` hook (MongooseIM's `offline_message_hook`),
//!   whose last, default handler answers `service-unavailable` for chat/normal and drops the rest.

mod locations;
pub mod order;
mod removed;
mod sessions;

pub use locations::Locations;
use locations::{Step, Then};
pub use order::HomePaths;
pub use sessions::{Resource, SessionManager};

use crate::c2s::BindError;
use crate::explain::Outcome;
use crate::hooks::{Acc, HookCtx, HookResult, Hooks, SessionEvent};
use crate::jid::{BareJid, FullJid, Jid};
use crate::shard::{home_shard, Ask, ConnMsg, DrainCause, SessionRef, Shard, ShardId, ShardMsg};
use crate::xml::{StanzaKind, StanzaType};
use crate::xmpp::{StanzaErrorCondition, StreamErrorCondition};
use std::time::Instant;

/// A module's handler for stanzas that reached the home shard of their recipient, before §8.5
/// delivery (presence probes and subscriptions, roster push fan-out): returns the stanza to go on
/// with delivery, or None when it took it.
pub type HomeHandler = std::rc::Rc<dyn Fn(&mut Shard, Acc) -> Option<Acc>>;

/// Scratch key of a [`PresenceUpdate`].
pub const PRESENCE_UPDATE: crate::hooks::Key<PresenceUpdate> =
    crate::hooks::Key::new("sm.presence_update");

/// Carried by a presence broadcast (a presence without `to`) on its way to the sender's home shard,
/// which records availability, priority and the stanza there, then hands it to the home handlers.
#[derive(Debug, Clone, Copy)]
pub struct PresenceUpdate {
    /// The sending session.
    pub session: SessionRef,
    /// `Some(priority)` for available, `None` for unavailable.
    pub priority: Option<i8>,
    /// Set on the home shard: the session was not available before (initial presence).
    pub initial: bool,
}

/// Whether a stanza handed back by a session that ended without it (unacknowledged, unwritten,
/// held back by CSI) is worth routing again. Presence is state and every session of the user got
/// its own copy: one to an ended session goes nowhere (RFC 6121 §8.5.3.2.2; a broadcast copy to
/// the bare JID fanned out to every resource again), nor does a headline (per-session
/// notifications such as PEP events; ejabberd drops them too), nor does an IQ's answer (it belongs
/// to the session that asked, RFC 6120 §8.2.3: a later session that bound the same resource did
/// not). Subscription requests and answers (they change the roster), messages (another resource,
/// offline storage) and IQ requests (an error for the sender) go on.
pub fn worth_rerouting(acc: &Acc) -> bool {
    match acc.kind() {
        StanzaKind::Presence => matches!(
            acc.ty(),
            StanzaType::Subscribe
                | StanzaType::Subscribed
                | StanzaType::Unsubscribe
                | StanzaType::Unsubscribed
        ),
        StanzaKind::Message => acc.ty() != StanzaType::Headline,
        StanzaKind::Iq => !acc.ty().is_response(),
        _ => true,
    }
}

/// Runs `f` on shard `to`: now when `to` is this shard, otherwise over the mesh (a control message,
/// in order with this shard's other traffic to `to`).
pub fn run_on(shard: &mut Shard, to: ShardId, f: crate::hooks::OnShard) {
    shard.send_to_shard(to, ShardMsg::Run(f));
}

/// RFC 6121 §3.1.1, §4.3: subscription stanzas are exchanged between bare JIDs, and a probe asks
/// the server for the user's presence: one addressed to a full JID (from a remote server, a
/// component) is handled as if sent to the bare JID, so the home handlers (roster state, probe
/// answers) see it and the client never does. A subscription stanza's `from` loses its resource
/// too (the user's own server stamps outbound ones so); a probe's stays, its answer goes there.
fn to_bare_if_subscription(acc: &mut Acc) {
    let subscription = match acc.ty() {
        StanzaType::Subscribe
        | StanzaType::Subscribed
        | StanzaType::Unsubscribe
        | StanzaType::Unsubscribed => true,
        StanzaType::Probe => false,
        _ => return,
    };
    let to = Jid::from(acc.to.bare());
    acc.stanza.set_to(to.as_str());
    acc.to = to;
    if subscription && acc.from.resource().is_some() {
        let from = Jid::from(acc.from.bare());
        acc.stanza.set_from(from.as_str());
        acc.from = from;
    }
}

/// The home filters alone, on the home shard of `acc`'s recipient (the caller's duty): what they
/// refuse never reaches a module acting for the user. For the requests the server answers on the
/// user's behalf without delivering them (IQs to the bare JID), which must not pass the filters
/// a message would meet (a blocked sender, XEP-0191 §3.4).
pub fn filter_at_home(shard: &mut Shard, mut acc: Acc) -> Option<Acc> {
    let handlers = shard.sm.home_handlers();
    for (name, h) in handlers.iter().take(shard.sm.home_filters()) {
        acc.note_handler(shard.id, HOME_STAGE, name, Outcome::Took);
        let mut a = h(shard, acc)?;
        a.amend_note(HOME_STAGE, name, Outcome::Ok);
        acc = a;
    }
    Some(acc)
}

/// The fences of a client's stanza leaving this shard for `home`, the home shard of the recipient
/// with hash `user`: one per shard other than these two where this shard sends that recipient's
/// stanzas straight (see `shard::fence`; stamped as the stanza leaves).
fn fences_for(shard: &Shard, user: u64, home: ShardId) -> Option<Box<[crate::shard::Fence]>> {
    if !crate::shard::fence::used(shard.shards) {
        return None;
    }
    let here = shard.id;
    let fences: Box<[crate::shard::Fence]> = shard
        .locations
        .straight_to(user)
        .filter(|&on| on != home && on != here)
        .map(|on| crate::shard::Fence {
            from: here,
            on,
            after: 0,
        })
        .collect();
    (!fences.is_empty()).then_some(fences)
}

/// `ejabberd_sm:route`: forwards to the home shard, or picks the resources there and delivers.
pub fn route(shard: &mut Shard, mut acc: Acc) {
    if acc.kind() == StanzaKind::Presence && acc.to.resource().is_some() {
        to_bare_if_subscription(&mut acc);
    }
    let first_hop = acc.reroutes == 0;
    let full_first_hop = first_hop && acc.to.resource().is_some();
    // RFC 6120 §10.1 orders what a client sends; what the server makes (a room's presence, a
    // session's own shard telling it something at once) keeps the shortest path.
    let client_first_hop = first_hop && acc.from_client;
    // The recipient's hash, which picks its home shard (0 with one shard); hashed once, and not
    // for a stanza the local fast path delivers while nothing went home lately.
    let mut hashed = None;
    let mut user_hash = |acc: &Acc, shards: usize| {
        *hashed.get_or_insert_with(|| {
            if shards > 1 {
                crate::shard::home_hash(acc.to.bare_str())
            } else {
                0
            }
        })
    };
    // RFC 6120 §10.1 (see `order`): behind a stanza this shard sent the recipient's way through its
    // home shard lately, a full-JID one goes that way too, not straight.
    let behind = full_first_hop && client_first_hop && !shard.home_paths.is_idle() && {
        let user = user_hash(&acc, shard.shards);
        crate::shard::home_shard_by_hash(user, shard.shards) != shard.id
            && shard.home_paths.recent(user)
    };
    // Fast path: a full JID bound on this very shard is delivered without the home-shard hop. Its
    // path is fixed while the session lives, so per-sender order holds; error and IQ replies to local
    // senders never cross a ring (and so are never lost to a full one).
    if full_first_hop && !behind {
        if let Some(conn) = shard.local_session(acc.to.as_str()) {
            let sref = shard.session_ref(conn);
            if let Some(ask) = acc.locate_for {
                // A sender's shard asks, and this home shard is the session's own: it records who
                // learns the location, to tell them when the session ends or moves; a session
                // about to move (or, never here, another home's) is not to be learnt.
                let home =
                    crate::shard::home_shard_by_hash(user_hash(&acc, shard.shards), shard.shards);
                if home != shard.id || !shard.sm.locate(acc.to.bare_str(), acc.to.as_str(), ask.by)
                {
                    acc.locate_for = None;
                    shard.answer_locate(ask, acc.to.clone(), None);
                }
            }
            acc.note(shard.id, STAGE, Outcome::Delivered, |a| {
                Some(format!(
                    "{} is bound on this shard (no home-shard hop)",
                    a.to
                ))
            });
            shard.send_to_session(sref, ConnMsg::Deliver(acc));
            return;
        }
    }
    let user = user_hash(&acc, shard.shards);
    let home = crate::shard::home_shard_by_hash(user, shard.shards);
    if home != shard.id {
        // Messages, and the IQ answers that may follow them (a MAM query's results, then its
        // result), share the "where does it live" path to a full JID, so the answer does not
        // overtake messages held there while the question is out (XEP-0313 §4.2, RFC 6120 §10.1).
        // Answers pass no home handler; presence and requests do (roster, carbons, PEP).
        let answer = acc.kind() == StanzaKind::Iq
            && matches!(acc.ty(), StanzaType::Result | StanzaType::Error);
        let located = acc.kind() == StanzaKind::Message || answer;
        if first_hop && located && acc.to.resource().is_some() && !behind {
            return by_location(shard, acc, home);
        }
        if client_first_hop {
            // On the home path, behind what this shard sent the recipient's sessions straight:
            // their shards hold it until that is taken (see `shard::fence`). With two shards the
            // session's shard is this one or the home shard, and the rings keep the order.
            let fences = fences_for(shard, user, home);
            // Whatever waits here for where one of the recipient's sessions lives was sent
            // earlier: it goes first. Then later full-JID stanzas follow this one (see `order`).
            for mut held in shard.locations.release_user(user) {
                let why = " (ahead of a stanza to the same user through its home shard)";
                held.fences.clone_from(&fences);
                forward_home(shard, held, home, why);
            }
            shard.home_paths.sent_home(user);
            acc.fences = fences;
        }
        return forward_home(shard, acc, home, "");
    }
    // A sender's shard asking where the session lives is answered on every way out: by the
    // session's shard when the stanza goes to exactly one session of this node, from here otherwise.
    let mut asked = acc.locate_for.take().map(|ask| (ask, acc.to.clone()));
    if let Some(up) = acc.get(PRESENCE_UPDATE).copied() {
        if !presence_update(shard, &mut acc, up) {
            return unasked(shard, asked);
        }
    }
    for (name, h) in shard.sm.home_handlers().iter() {
        // Recorded before the handler runs, so the copies it derives carry it; amended when the
        // handler gives the stanza back.
        acc.note_handler(shard.id, HOME_STAGE, name, Outcome::Took);
        match h(shard, acc) {
            Some(mut a) => {
                a.amend_note(HOME_STAGE, name, Outcome::Ok);
                acc = a
            }
            None => return unasked(shard, asked),
        }
    }
    if acc.get(PRESENCE_UPDATE).is_some() {
        // A broadcast no module took: availability is recorded, nothing is delivered.
        return unasked(shard, asked);
    }
    let bare = acc.to.bare_str();
    let targets = match acc.to.resource() {
        Some(res) => shard.sm.full_targets(bare, res, &acc),
        None => shard.sm.bare_targets(bare, &acc),
    };
    if acc.traced() {
        let detail = resources_detail(shard, &acc);
        acc.note(shard.id, STAGE, Outcome::Took, |_| Some(detail));
    }
    if let (Some((ask, to)), Targets::Deliver(sessions)) = (&asked, &targets) {
        if let [s] = sessions.as_slice() {
            if !s.is_remote() {
                // The session's shard answers once the stanza is in its mailbox.
                if shard.sm.locate(to.bare_str(), to.as_str(), ask.by) {
                    acc.locate_for = Some(*ask);
                    asked = None;
                }
            }
        }
    }
    unasked(shard, asked);
    match targets {
        Targets::Deliver(sessions) => deliver_to(shard, acc, &sessions),
        Targets::Error(cond) => {
            acc.note(shard.id, STAGE, Outcome::Bounced, |_| {
                Some(format!("RFC 6121 §8.5: {}", cond.as_str()))
            });
            shard.bounce(&acc, cond)
        }
        Targets::Drop => acc.note(shard.id, STAGE, Outcome::Dropped, |_| {
            Some("RFC 6121 §8.5: dropped".to_owned())
        }),
        Targets::Offline => {
            acc.note(shard.id, STAGE, Outcome::Offline, |_| {
                Some("no available resource can take it".to_owned())
            });
            offline(shard, acc)
        }
    }
}

/// Answers a sender's shard that asked where the session of `to` lives, when no session's shard will:
/// the stanza went another way.
fn unasked(shard: &mut Shard, asked: Option<(Ask, Jid)>) {
    if let Some((ask, to)) = asked {
        shard.answer_locate(ask, to, None);
    }
}

/// A message to a full JID whose home is another shard, first time through: straight to the
/// session when this shard knows where it lives, through the home shard otherwise (see
/// [`locations`]).
fn by_location(shard: &mut Shard, mut acc: Acc, home: ShardId) {
    match shard.locations.route(acc, shard.id) {
        Step::Direct(s, mut acc) => {
            shard.stats.direct += 1;
            shard.metrics.stanzas_direct.inc();
            acc.note(shard.id, STAGE, Outcome::Delivered, |a| {
                Some(format!(
                    "to shard {}, where {} is bound (no home-shard hop)",
                    s.shard.0, a.to
                ))
            });
            shard.send_to_session(s, ConnMsg::Deliver(acc));
        }
        Step::Home(a) => {
            acc = a;
            let why = if acc.locate_for.is_some() {
                ", asking where the session lives"
            } else {
                ""
            };
            forward_home(shard, acc, home, why);
        }
        // A traced stanza's trace goes on when it does (see `located`).
        Step::Held => {}
        Step::Release(accs) => {
            for acc in accs {
                let why = " (too many waited for where the session lives)";
                forward_home(shard, acc, home, why);
            }
        }
    }
}

/// Sends `acc` on to its recipient's home shard `home` (step 6 there); `why` ends the trace note.
fn forward_home(shard: &mut Shard, mut acc: Acc, home: ShardId, why: &str) {
    acc.note(shard.id, STAGE, Outcome::Forwarded, |a| {
        Some(format!(
            "to shard {}, home of {}{why}",
            home.0,
            a.to.bare_str()
        ))
    });
    shard.send_to_shard(home, ShardMsg::SmRoute(acc));
}

/// The answer about where `jid`'s session lives reached the shard that asked: what waited for it
/// goes on, in order, behind the asking stanza.
pub(crate) fn located(shard: &mut Shard, jid: FullJid, id: u32, at: Option<SessionRef>) {
    let (then, held) = shard.locations.located(&jid, id, at);
    match then {
        // Something went the recipient's way through its home shard since these were held (see
        // `order`): they follow it.
        Then::Direct(_)
            if shard
                .home_paths
                .recent(crate::shard::home_hash(jid.bare_str())) =>
        {
            let home = home_shard(&jid.bare(), shard.shards);
            for acc in held {
                let why = " (behind a stanza to the same user through its home shard)";
                forward_home(shard, acc, home, why);
            }
        }
        Then::Direct(s) => {
            let n = held.len() as u64;
            shard.stats.direct += n;
            shard.metrics.stanzas_direct.inc_by(n);
            for mut acc in held {
                acc.note(shard.id, STAGE, Outcome::Delivered, |_| {
                    Some(format!(
                        "to shard {}, where {jid} is bound (waited for that answer)",
                        s.shard.0
                    ))
                });
                shard.send_to_session(s, ConnMsg::Deliver(acc));
            }
        }
        Then::Home => {
            let home = home_shard(&jid.bare(), shard.shards);
            for acc in held {
                let why = " (waited: no session to go straight to)";
                forward_home(shard, acc, home, why);
            }
        }
    }
}

/// Work a home shard runs once a session's drains are in (see [`after_drain`]).
pub type AfterDrain = Box<dyn FnOnce(&mut Shard)>;

/// Runs `then` on this home shard once no shard sends stanzas straight to `jid` at `session` any
/// more and what they sent is in its mailbox (or re-routed). For a session about to move
/// (XEP-0198 resumption): asked to hand over after that, it hands over everything. Until it
/// moves, stanzas to it pass this shard.
pub fn after_drain(shard: &mut Shard, jid: &FullJid, session: SessionRef, then: AfterDrain) {
    if let Some((_, waiting)) = shard.sm.drains.get_mut(&session) {
        waiting.push(then);
        return;
    }
    let located_by = shard.sm.pin(jid, session).unwrap_or(0);
    let told = locating_shards(shard.shards, located_by).count();
    if told == 0 {
        return then(shard);
    }
    // Counted before the first is told: a drain may come back within this call.
    shard.sm.drains.insert(session, (told, vec![then]));
    forget_location(shard, jid, session, located_by);
}

/// A drain reached a shard (see [`ShardMsg::Drain`]): passed on to the home shard of `jid`, or,
/// there, answered, and counted for a session waiting to move.
pub(crate) fn drained(
    shard: &mut Shard,
    jid: FullJid,
    session: SessionRef,
    ask: Ask,
    cause: DrainCause,
) {
    let home = home_shard(&jid.bare(), shard.shards);
    if home != shard.id {
        let drain = ShardMsg::Drain {
            jid,
            session,
            ask,
            cause,
        };
        shard.send_to_shard(home, drain);
        return;
    }
    let waiting = if cause == DrainCause::Forgot {
        shard.sm.drains.get_mut(&session)
    } else {
        None
    };
    let done = match waiting {
        Some((left, _)) => {
            *left -= 1;
            *left == 0
        }
        None => false,
    };
    shard.answer_locate(ask, Jid::from(jid), None);
    if done {
        if let Some((_, then)) = shard.sm.drains.remove(&session) {
            for f in then {
                f(shard);
            }
        }
    }
}

/// Tells the shards in `located_by` (see [`Resource::located_by`]) that `jid` no longer lives at
/// `session` (each answers with a drain).
fn forget_location(shard: &mut Shard, jid: &FullJid, session: SessionRef, located_by: u64) {
    for to in locating_shards(shard.shards, located_by) {
        let (jid, session) = (jid.clone(), session);
        shard.send_to_shard(to, ShardMsg::Forget { jid, session });
    }
}

/// The shards a [`Resource::located_by`] mask stands for: bit `i % 64` for shard `i` (with more
/// than 64 shards, a bit stands for several; the ones that never asked forget nothing).
fn locating_shards(shards: usize, located_by: u64) -> impl Iterator<Item = ShardId> {
    (0..shards)
        .filter(move |i| located_by & (1 << (i % 64)) != 0)
        .map(|i| ShardId(i as u16))
}

/// Stage name of the session manager's steps in a `route explain` trace.
pub const STAGE: &str = "sm";

/// Stage name of the home handlers' steps in a `route explain` trace.
pub const HOME_STAGE: &str = "sm_home";

/// For a traced stanza on its home shard: the recipient's resources, their priorities, and which
/// kind of address (RFC 6121 §8.5.2 bare, §8.5.3 full) chose among them.
fn resources_detail(shard: &Shard, acc: &Acc) -> String {
    let list = shard.sm.resources_of(acc.to.bare_str());
    let mut d = format!(
        "home shard of {}; {} JID; resources: ",
        acc.to.bare_str(),
        if acc.to.is_bare() { "bare" } else { "full" }
    );
    if list.is_empty() {
        d.push_str("none");
    }
    for (i, r) in list.iter().enumerate() {
        let prio = r
            .priority
            .map_or_else(|| "unavailable".to_owned(), |p| format!("priority {p}"));
        let sep = if i == 0 { "" } else { ", " };
        d.push_str(&format!(
            "{sep}{} ({prio}, shard {})",
            r.jid.resource(),
            r.session.shard.0
        ));
    }
    d
}

/// The full JID bound at `session` for `acc`'s recipient (for trace details).
fn resource_at(shard: &Shard, acc: &Acc, session: SessionRef) -> String {
    shard
        .sm
        .resources_of(acc.to.bare_str())
        .iter()
        .find(|r| r.session == session)
        .map_or_else(|| format!("{session:?}"), |r| r.jid.to_string())
}

/// Sessions chosen for one stanza: one or two almost always, so kept inline (no allocation per stanza).
pub type Sessions = smallvec::SmallVec<[SessionRef; 2]>;

/// What RFC 6121 §8.5 says to do with a stanza.
pub enum Targets {
    /// Deliver to these sessions.
    Deliver(Sessions),
    /// Answer the sender with this error.
    Error(StanzaErrorCondition),
    /// Drop silently (the RFC says so).
    Drop,
    /// No resource can take it: `offline_message`.
    Offline,
}

fn deliver_to(shard: &mut Shard, acc: Acc, sessions: &[SessionRef]) {
    let Some((last, rest)) = sessions.split_last() else {
        return;
    };
    let mut acc = acc;
    // Copies of one message to several resources: each knows which resource it is for (the
    // others got theirs).
    let fan_out = !rest.is_empty() && acc.kind() == StanzaKind::Message;
    let mark = |shard: &Shard, copy: &mut Acc, s: SessionRef| {
        let bare = copy.to.bare();
        if let Some(r) = shard.sm.resources(&bare).iter().find(|r| r.session == s) {
            copy.put(
                crate::hooks::COPY_FOR,
                crate::hooks::CopyFor::FanOut(r.jid.clone()),
            );
        }
    };
    if fan_out {
        mark(shard, &mut acc, *last);
    }
    for &s in rest {
        let mut copy = acc.fork();
        if fan_out {
            mark(shard, &mut copy, s);
        }
        note_delivered(shard, &mut copy, s);
        shard.send_to_session(s, ConnMsg::Deliver(copy));
    }
    note_delivered(shard, &mut acc, *last);
    shard.send_to_session(*last, ConnMsg::Deliver(acc));
}

fn note_delivered(shard: &Shard, acc: &mut Acc, s: SessionRef) {
    if acc.traced() {
        let to = resource_at(shard, acc, s);
        acc.note(shard.id, STAGE, Outcome::Delivered, |_| {
            Some(format!("to {to} on shard {}", s.shard.0))
        });
    }
}

/// No available resource: messages go to `offline_message`, presences are dropped, IQs answered.
fn offline(shard: &mut Shard, mut acc: Acc) {
    match acc.kind() {
        StanzaKind::Message => {
            // The route ends here for the latency histogram (whatever the hook then does).
            shard.metrics.handed_over(acc.entered);
            shard.run_hook(|h| &h.offline_message, &mut acc);
        }
        StanzaKind::Iq => shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable),
        _ => {}
    }
}

/// Registers the session manager's own handlers: the default end of `offline_message`.
pub fn register_default_handlers(hooks: &mut Hooks) {
    // Last in line (priority i32::MAX): a storing module (mod_offline) placed earlier stops the run.
    hooks
        .offline_message
        .add(i32::MAX, "sm", |acc: &mut Acc, ctx: &mut HookCtx<'_>| {
            let ty = acc.ty();
            if ty.is_one_to_one_message() {
                if let Some(reply) =
                    acc.error_reply(StanzaErrorCondition::ServiceUnavailable, ctx.shard)
                {
                    ctx.route(reply);
                }
            }
            HookResult::Stop
        });
}

/// Account `jid` was deleted: its home shard refuses the binds of connections that authenticated
/// before now. Sent ahead of the deletion's kick, on the same ring, so any bind the home shard
/// handles after the kick is checked.
pub fn account_removed(shard: &mut Shard, jid: &BareJid) {
    let now = Instant::now();
    let jid = jid.clone();
    let home = home_shard(&jid, shard.shards);
    run_on(
        shard,
        home,
        Box::new(move |shard| shard.sm.note_removed(jid, now)),
    );
}

/// On the home shard of `bare` (elsewhere: 0): closes its sessions whose full JID `which` accepts,
/// wherever they live, those parked by stream management (XEP-0198) too, each with `msg()`;
/// returns how many.
pub fn close_sessions(
    shard: &mut Shard,
    bare: &BareJid,
    which: impl Fn(&FullJid) -> bool,
    msg: impl Fn() -> ConnMsg,
) -> usize {
    if home_shard(bare, shard.shards) != shard.id {
        return 0;
    }
    let targets: Vec<_> = shard
        .sm
        .resources(bare)
        .iter()
        .filter(|r| which(&r.jid))
        .map(|r| r.session)
        .collect();
    for &at in &targets {
        shard.send_to_session(at, msg());
    }
    targets.len()
}

/// Registers `jid` at `session` (on the home shard), for a connection whose authentication began at
/// `authenticated`. A session already bound to the same full JID is replaced: it gets `conflict`
/// and is closed (the new session wins, as in MongooseIM's default). An account deleted since the
/// authentication began binds nothing: the connection is told `AccountRemoved`.
pub fn register(shard: &mut Shard, jid: FullJid, session: SessionRef, authenticated: Instant) {
    let home = home_shard(&jid.bare(), shard.shards);
    if home != shard.id {
        shard.send_to_shard(
            home,
            ShardMsg::Register {
                jid,
                session,
                authenticated,
            },
        );
        return;
    }
    if shard.sm.removed_since(&jid.bare(), authenticated) {
        shard.send_to_session(session, ConnMsg::Bound(Err(BindError::AccountRemoved)));
        return;
    }
    if let Some(old) = shard.sm.insert(jid.clone(), session) {
        if old.session != session {
            shard.send_to_session(old.session, ConnMsg::Close(StreamErrorCondition::Conflict));
            run_session_hook(
                shard,
                |h| &h.sm_remove_connection,
                &old.jid,
                old.session,
                None,
            );
        }
        // The new record knows of no shard that learnt where the old one lived: they forget it.
        forget_location(shard, &old.jid, old.session, old.located_by);
    }
    run_session_hook(shard, |h| &h.sm_register_connection, &jid, session, None);
    tell_listener(shard, &jid, session, Some(None));
    shard.send_to_session(session, ConnMsg::Bound(Ok::<(), BindError>(())));
}

/// Forgets `jid` if it is still registered at `session` (a replaced session must not remove its successor).
pub fn unregister(shard: &mut Shard, jid: FullJid, session: SessionRef) {
    let home = home_shard(&jid.bare(), shard.shards);
    if home != shard.id {
        shard.send_to_shard(home, ShardMsg::Unregister { jid, session });
        return;
    }
    if let Some(old) = shard.sm.remove(&jid, session) {
        if old.priority.is_some() {
            run_session_hook(shard, |h| &h.unset_presence, &old.jid, session, None);
        }
        run_session_hook(shard, |h| &h.sm_remove_connection, &old.jid, session, None);
        tell_listener(shard, &old.jid, session, None);
        forget_location(shard, &old.jid, session, old.located_by);
    }
}

/// Tells the session listener (a cluster replicating this table), if any, of a local session's
/// change: `Some(priority)` bound or updated, `None` gone.
fn tell_listener(shard: &mut Shard, jid: &FullJid, session: SessionRef, now: Option<Option<i8>>) {
    if let Some(l) = shard.session_listener.clone() {
        l(shard, jid, session, now);
    }
}

/// Re-points `jid` from session `old` to `new` on the home shard (XEP-0198 resumption moved it),
/// keeping availability and priority: the old connection's removal and the new one's registration
/// run their hooks, no presence changes. False when `jid` is not bound at `old`.
pub fn move_session(shard: &mut Shard, jid: &FullJid, old: SessionRef, new: SessionRef) -> bool {
    let Some(located_by) = shard.sm.move_session(jid, old, new) else {
        return false;
    };
    forget_location(shard, jid, old, located_by);
    let mut ev = SessionEvent {
        jid: jid.clone(),
        session: old,
        priority: None,
        moved_to: Some(new),
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    shard.hooks.sm_remove_connection.run(&mut ev, &mut ctx);
    run_session_hook(shard, |h| &h.sm_register_connection, jid, new, None);
    if shard.session_listener.is_some() {
        let priority = shard
            .sm
            .resources(&jid.bare())
            .iter()
            .find(|r| &r.jid == jid)
            .and_then(|r| r.priority);
        tell_listener(shard, jid, new, Some(priority));
    }
    true
}

/// Restores the availability of a session that moved here from another node (XEP-0198
/// resumption there, on the home shard, after its registration): priority and last presence as
/// they were, the listener told, `user_available` run; nothing is broadcast (its contacts saw no
/// change).
pub fn restore_presence(
    shard: &mut Shard,
    jid: &FullJid,
    session: SessionRef,
    priority: Option<i8>,
    last: Option<crate::xml::Stanza>,
) {
    let Some(before) = shard.sm.set_priority(jid, session, priority) else {
        return;
    };
    shard.sm.set_last_presence(jid, session, last);
    tell_listener(shard, jid, session, Some(priority));
    if before.is_none() && priority.is_some() {
        run_session_hook(shard, |h| &h.user_available, jid, session, priority);
    }
}

/// Applies a presence broadcast on the home shard: availability, priority, the last presence and
/// the session hooks. False when the session is no longer the one bound (the stanza is dropped).
fn presence_update(shard: &mut Shard, acc: &mut Acc, up: PresenceUpdate) -> bool {
    let Ok(jid) = acc.from.clone().try_into_full() else {
        return false;
    };
    let Some(before) = shard.sm.set_priority(&jid, up.session, up.priority) else {
        return false;
    };
    let last = up.priority.map(|_| acc.stanza.clone());
    shard.sm.set_last_presence(&jid, up.session, last);
    tell_listener(shard, &jid, up.session, Some(up.priority));
    match (before, up.priority) {
        // Available, or (XEP-0160 §3) able to take the bare JID's messages at last: a negative
        // priority rose.
        (None, Some(_)) => {
            run_session_hook(shard, |h| &h.user_available, &jid, up.session, up.priority)
        }
        (Some(old), Some(new)) if old < 0 && new >= 0 => {
            run_session_hook(shard, |h| &h.user_available, &jid, up.session, up.priority)
        }
        (Some(_), None) => run_session_hook(shard, |h| &h.unset_presence, &jid, up.session, None),
        _ => {}
    }
    acc.put(
        PRESENCE_UPDATE,
        PresenceUpdate {
            initial: before.is_none() && up.priority.is_some(),
            ..up
        },
    );
    true
}

fn run_session_hook(
    shard: &mut Shard,
    pick: impl Fn(&Hooks) -> &crate::hooks::Hook<SessionEvent>,
    jid: &FullJid,
    session: SessionRef,
    priority: Option<i8>,
) {
    let mut ev = SessionEvent {
        jid: jid.clone(),
        session,
        priority,
        moved_to: None,
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    pick(&shard.hooks).run(&mut ev, &mut ctx);
}

#[cfg(test)]
mod tests;
