//! `mod_presence`: presence subscriptions and broadcast (RFC 6121 §3, §4).
//!
//! Where each part runs:
//! - the sender's shard (`user_send_presence`): directed presence tracking per session, bad
//!   presence types; outbound subscription stanzas go on to the user's home shard (roster change
//!   as a store job keyed by the user, then the stanza is routed with bare JIDs);
//! - the user's home shard (a `sm` home handler): the user's own broadcasts (after the session
//!   manager recorded availability and the last presence), probes (answered from the session
//!   manager's last presences), inbound subscription stanzas (roster change, delivery or storage of
//!   the request, pushes).
//!
//! The roster in the store is the only truth about subscriptions; every change is one store job
//! keyed by the user whose roster it touches, so changes to one roster never interleave, queued
//! from that user's home shard, so their pushes leave in the order they were made
//! ([`roster::change_on_home`]).

use std::rc::Rc;

use ahash::HashMap;

use crate::hooks::{Acc, HookCtx, HookResult, JobDone};
use crate::hooks::{SessionEnd, SessionEndKind};
use crate::jid::{BareJid, FullJid, Jid};
use crate::modules::blocking::BlocklistChanged;
use crate::modules::register::AccountRemoved;
use crate::modules::roster::{self, user_key, SubKind, SubState};
use crate::shard::{ConnMsg, SessionRef, Shard, ShardId};
use crate::sm::{PresenceUpdate, PRESENCE_UPDATE};
use crate::store::{RosterWrite, Store, StoreError};
use crate::xml::{Element, Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// Scratch key: the directed-presence targets of a session going unavailable.
const DIRECTED: crate::hooks::Key<Vec<Jid>> = crate::hooks::Key::new("presence.directed");
/// Scratch key: an internal request to the user's home shard.
const OP: crate::hooks::Key<HomeOp> = crate::hooks::Key::new("presence.op");

/// Most directed-presence targets remembered per session (older ones are forgotten first).
pub const MAX_DIRECTED: usize = 1000;

/// Internal requests carried to a user's home shard.
#[derive(Debug, Clone)]
enum HomeOp {
    /// Send `unavailable` from each of the user's available resources to this contact.
    Revoke(BareJid),
    /// Send the last presence of each of the user's available resources to this contact.
    Share(BareJid),
}

/// Directed presence per session on its connection's shard (RFC 6121 §4.6).
#[derive(Default)]
struct Directed(HashMap<FullJid, Vec<Jid>>);

/// Registers the send-side hook and the home-shard handler.
pub fn start(shard: &mut Shard, _hosts: &[String]) {
    shard
        .hooks
        .user_send_presence
        .add(40, "presence", user_send_presence);
    shard.hooks.session_end.add(50, "presence", session_end);
    shard.sm.add_home_handler("presence", Rc::new(home));
    crate::hooks::Events::<BlocklistChanged>::listen(shard, 50, "presence", block_changed);
    crate::hooks::Events::<AccountRemoved>::listen(shard, 50, "presence", account_removed);
}

/// XEP-0077 §3.2: a deleted account's subscriptions are cancelled. Each contact gets what the user
/// would have sent removing the item (RFC 6121 §2.5.2): `unsubscribe` where the user had or asked
/// for the contact's presence, `unsubscribed` where the contact had or asked for the user's. Their
/// servers update their rosters, so the presence they shared does not go to whoever registers the
/// name next.
///
/// On the user's home shard, where its sessions are known: a contact that had the user's presence
/// first gets `unavailable` from each available resource (§3.2.2; the sessions closed next have no
/// roster left to tell), then the cancellation.
fn account_removed(shard: &mut Shard, ev: &AccountRemoved) {
    let (user, roster) = (ev.jid.clone(), ev.roster.clone());
    let home = crate::shard::home_shard(&user, shard.shards);
    crate::sm::run_on(
        shard,
        home,
        Box::new(move |shard| cancel_subscriptions(shard, &user, &roster)),
    );
}

/// [`account_removed`] on the user's home shard.
fn cancel_subscriptions(
    shard: &mut Shard,
    user: &BareJid,
    roster: &[crate::xmpp::roster::RosterItem],
) {
    for item in roster {
        if item.state.from {
            send_unavailable_to(shard, user, &Jid::from(item.jid.clone()));
        }
        let mut kinds = Vec::with_capacity(2);
        if item.state.to || item.state.pending_out {
            kinds.push(SubKind::Unsubscribe);
        }
        if item.state.from || item.state.pending_in {
            kinds.push(SubKind::Unsubscribed);
        }
        for kind in kinds {
            let acc = roster::subscription_stanza(user, &item.jid, kind, shard.id);
            crate::router::route(shard, acc);
        }
    }
}

/// XEP-0191, on the user's home shard: a JID being blocked that is subscribed to the user's
/// presence gets unavailable presence from each available resource (before the block applies;
/// §3.3), an unblocked one that is subscribed gets the current presence (§3.4). Only JIDs of
/// accounts: a domain item has nobody to tell.
fn block_changed(shard: &mut Shard, ev: &BlocklistChanged) {
    match ev {
        BlocklistChanged::Blocking {
            user, subscribers, ..
        } => {
            // Only those that had the user's presence: telling anyone else would tell them the
            // user is online, and blocked them (§3.3).
            for jid in subscribers {
                send_unavailable_to(shard, user, jid);
            }
        }
        BlocklistChanged::Unblocked { user, jids } => {
            for jid in jids.iter().filter(|j| j.node().is_some()) {
                let (user, to) = (user.clone(), jid.clone());
                queue_job(shard, user_key(&user), move |store| {
                    let subscribed = match store.roster_item(&user, &to.bare()) {
                        Ok(item) => item.is_some_and(|i| i.state.from),
                        Err(e) => {
                            tracing::error!(error = %e, "unblock: roster read failed");
                            false
                        }
                    };
                    JobDone {
                        then: subscribed.then(|| {
                            Box::new(move |shard: &mut Shard| share_with(shard, &user, &to))
                                as Box<dyn FnOnce(&mut Shard) + Send>
                        }),
                        ..JobDone::default()
                    }
                });
            }
        }
    }
}

/// The last presence of each of `user`'s available resources, to `to` (on the user's home shard).
fn share_with(shard: &mut Shard, user: &BareJid, to: &Jid) {
    for (jid, _, last) in available(shard, user) {
        if let Some(last) = last {
            let copy = copy_to(&last, &Jid::from(jid), to, shard.id);
            crate::router::route(shard, copy);
        }
    }
}

/// Sends `unavailable` from the user's available resources to `contact` (the contact lost its
/// subscription: RFC 6121 §3.2.2). Works from any shard: the request goes to the user's home shard.
pub fn revoke_presence(shard: &mut Shard, user: &BareJid, contact: &BareJid) {
    home_op(
        shard,
        user,
        Some("unavailable"),
        HomeOp::Revoke(contact.clone()),
    );
}

/// After the user approved `contact`'s subscription: the user's current presence goes to the
/// contact (RFC 6121 §3.1.5), from the user's home shard. Only for remote contacts: a local
/// contact's server (this one) probes on the inbound `subscribed` instead, and so do petrel
/// peers, but not every server (Prosody waits for this presence).
fn share_presence(shard: &mut Shard, user: &BareJid, contact: &BareJid) {
    if shard.is_hosted(contact.domain()) {
        return;
    }
    home_op(shard, user, None, HomeOp::Share(contact.clone()));
}

/// Sends `op` to `user`'s home shard, carried by a presence of type `ty` from the user to
/// themselves (the home handler picks the op up there).
fn home_op(shard: &mut Shard, user: &BareJid, ty: Option<&str>, op: HomeOp) {
    let mut el = Element::new("presence", ns::CLIENT);
    if let Some(ty) = ty {
        el = el.with_attr("type", ty);
    }
    let el = el
        .with_attr("from", user.as_str())
        .with_attr("to", user.as_str());
    let mut acc = Acc::new(
        Stanza::from_element(&el),
        Jid::from(user.clone()),
        Jid::from(user.clone()),
        shard.id,
    );
    acc.put(OP, op);
    crate::sm::route(shard, acc);
}

/// `session_end`: a closed session's directed presence is forgotten and, when it was available,
/// its targets go on the `unavailable` the route broadcasts for it; a session resumed on another
/// shard only forgets it here.
fn session_end(end: &mut SessionEnd, ctx: &mut HookCtx<'_>) -> HookResult {
    if end.kind == SessionEndKind::Detached {
        return HookResult::Continue;
    }
    let list = ctx.ext.get_or_default::<Directed>().0.remove(&end.jid);
    match (end.kind, list) {
        // Resumed on another shard: the directed presences follow the session, so its recipients
        // still hear of its end (§4.6.3).
        (SessionEndKind::MovedTo(to), Some(list)) => {
            let jid = end.jid.clone();
            ctx.run_on(
                to.shard,
                Box::new(move |s: &mut Shard| {
                    let mine = s.ext.get_or_default::<Directed>().0.entry(jid).or_default();
                    for j in list {
                        if !mine.contains(&j) && mine.len() < MAX_DIRECTED {
                            mine.push(j);
                        }
                    }
                }),
            );
        }
        (_, Some(list)) => match end.unavailable.as_mut() {
            Some(acc) => acc.put(DIRECTED, list),
            // A session that was not available (never sent initial presence, or sent
            // unavailable) still told these entities it was there: they hear it is gone.
            None => {
                let from = Jid::from(end.jid.clone());
                for to in list {
                    let el = Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unavailable")
                        .with_attr("from", from.as_str())
                        .with_attr("to", to.as_str());
                    let acc = Acc::new(Stanza::from_element(&el), from.clone(), to, ctx.shard);
                    ctx.route(acc);
                }
            }
        },
        (_, None) => {}
    }
    HookResult::Continue
}

fn bounce(acc: &Acc, ctx: &mut HookCtx<'_>, cond: StanzaErrorCondition) -> HookResult {
    if let Some(reply) = acc.error_reply(cond, ctx.shard) {
        ctx.route(reply);
    }
    HookResult::Stop
}

fn user_send_presence(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let Ok(full) = acc.from.clone().try_into_full() else {
        return HookResult::Continue;
    };
    let user = full.bare();
    let to_absent = acc.stanza.to().is_none();
    let ty = acc.ty();
    match ty {
        StanzaType::Absent | StanzaType::Unavailable => {
            let directed = &mut ctx.ext.get_or_default::<Directed>().0;
            if to_absent {
                if ty == StanzaType::Unavailable {
                    if let Some(list) = directed.remove(&full) {
                        acc.put(DIRECTED, list);
                    }
                }
            } else if acc.to.bare() != user {
                // §4.6: remember who got directed available presence, to tell them on logout.
                let list = directed.entry(full).or_default();
                list.retain(|j| j != &acc.to);
                if ty == StanzaType::Absent {
                    if list.len() >= MAX_DIRECTED {
                        list.remove(0);
                    }
                    list.push(acc.to.clone());
                }
            }
            HookResult::Continue
        }
        StanzaType::Error => HookResult::Continue,
        StanzaType::Probe => {
            // Probes are about bare JIDs (§4.3): answered by the contact's home shard.
            let bare = acc.to.bare();
            acc.stanza.set_to(bare.as_str());
            acc.to = Jid::from(bare);
            HookResult::Continue
        }
        other => {
            let Some(kind) = SubKind::of(other) else {
                // RFC 6120 §8.3.3.1 / RFC 6121 §4.7.1: an unknown presence type is a bad request.
                return bounce(acc, ctx, StanzaErrorCondition::BadRequest);
            };
            let contact = acc.to.bare();
            // A subscription needs a contact; one's own presence needs no subscription (§4.2.2).
            if to_absent || contact == user {
                return bounce(acc, ctx, StanzaErrorCondition::BadRequest);
            }
            let max = ctx
                .ext
                .get::<roster::RosterSettings>()
                .map(|s| s.0)
                .unwrap_or_default();
            let req = acc.fork();
            // From the user's home shard, as every change to their roster (see the function).
            roster::change_on_home(ctx, user.clone(), move |store, shard| {
                outbound(store, req, user, contact, kind, max, shard)
            });
            HookResult::Stop
        }
    }
}

/// Queues a store job from code holding the shard (home handlers, continuations).
fn queue_job(
    shard: &mut Shard,
    key: Option<u64>,
    job: impl FnOnce(&Store) -> JobDone + Send + 'static,
) {
    HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, job);
}

/// Outbound subscription stanza (RFC 6121 Appendix A.2), run on the store pool.
fn outbound(
    store: &Store,
    mut req: Acc,
    user: BareJid,
    contact: BareJid,
    kind: SubKind,
    opts: roster::RosterOpts,
    shard: ShardId,
) -> JobDone {
    let changed = store.roster_change(&user, &contact, |before, count| {
        let was_visible = before.as_ref().is_some_and(|b| b.in_roster);
        let s0 = before.as_ref().map(|b| b.state).unwrap_or_default();
        let t = s0.outbound(kind);
        let write = RosterWrite::after(before, &contact, &t, true);
        let grows = !was_visible && matches!(&write, RosterWrite::Put(i) if i.in_roster);
        if grows && count >= opts.max_items {
            return (RosterWrite::Keep, None);
        }
        (write, Some(t))
    });
    let changed = match changed {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, user = user.as_str(), "presence subscription store job failed");
            return req
                .error_reply(StanzaErrorCondition::InternalServerError, shard)
                .into_iter()
                .collect::<Vec<_>>()
                .into();
        }
    };
    let Some(t) = changed.out else {
        // The roster is full: the new item cannot be created.
        return req
            .error_reply(StanzaErrorCondition::NotAllowed, shard)
            .into_iter()
            .collect::<Vec<_>>()
            .into();
    };
    let push = changed
        .ver
        .map(|ver| roster::push_acc(&user, changed.item.as_ref(), &contact, ver, opts, shard));
    JobDone {
        hold: Vec::new(),
        route: Vec::new(),
        then: Some(Box::new(move |shard: &mut Shard| {
            if let Some(p) = push {
                crate::sm::route(shard, p);
            }
            if t.forward {
                // §3.1.2 etc.: subscription stanzas travel between bare JIDs.
                req.stanza.set_from(user.as_str());
                req.stanza.set_to(contact.as_str());
                req.from = Jid::from(user.clone());
                req.to = Jid::from(contact.clone());
                crate::router::route(shard, req);
                if kind == SubKind::Subscribed {
                    share_presence(shard, &user, &contact);
                }
            }
            if t.revoke_presence {
                revoke_presence(shard, &user, &contact);
            }
        })),
    }
}

/// The home-shard handler: own broadcasts, probes, inbound subscriptions, internal requests.
fn home(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    if acc.kind() != StanzaKind::Presence {
        return Some(acc);
    }
    if let Some(op) = acc.get(OP).cloned() {
        match op {
            HomeOp::Revoke(contact) => {
                send_unavailable_to(shard, &acc.to.bare(), &Jid::from(contact))
            }
            HomeOp::Share(contact) => share_with(shard, &acc.to.bare(), &Jid::from(contact)),
        }
        return None;
    }
    if let Some(up) = acc.get(PRESENCE_UPDATE).copied() {
        broadcast(shard, acc, up);
        return None;
    }
    let ty = acc.ty();
    if ty == StanzaType::Probe {
        probe(shard, acc);
        return None;
    }
    if let Some(kind) = SubKind::of(ty) {
        inbound(shard, acc, kind);
        return None;
    }
    if matches!(ty, StanzaType::Absent | StanzaType::Unavailable) {
        return behind_inbound(shard, acc);
    }
    Some(acc)
}

/// Users with inbound subscription stanzas whose store job has not come back, and how many: a
/// contact's presence that follows one must not overtake it (RFC 6120 §10.1). A remote contact's
/// server sends `subscribed` and then its presence (RFC 6121 §3.1.5); delivered at once, the
/// presence reached the user before the `subscribed` and the roster push it follows.
#[derive(Default)]
struct InboundJobs(HashMap<BareJid, u32>);

/// `acc` (an available or unavailable presence on the user's home shard), or `None` when it waits
/// in the user's job lane behind an inbound subscription stanza, to be delivered after it. Only
/// presences racing such a job take the lane.
fn behind_inbound(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    // Looked up by `&str`: no allocation for the presences that wait for nothing.
    let waiting = shard
        .ext
        .get::<InboundJobs>()
        .is_some_and(|j| !j.0.is_empty() && j.0.contains_key(acc.to.bare_str()));
    if !waiting {
        return Some(acc);
    }
    let user = acc.to.bare();
    queue_job(shard, user_key(&user), move |_| JobDone {
        then: Some(Box::new(move |shard: &mut Shard| {
            crate::sm::route(shard, acc)
        })),
        ..JobDone::default()
    });
    None
}

/// Counts an inbound subscription job of `user` in (`up`) or out.
fn count_inbound(shard: &mut Shard, user: &BareJid, up: bool) {
    let jobs = &mut shard.ext.get_or_default::<InboundJobs>().0;
    if up {
        *jobs.entry(user.clone()).or_default() += 1;
    } else if let Some(n) = jobs.get_mut(user) {
        *n -= 1;
        if *n == 0 {
            jobs.remove(user);
        }
    }
}

/// Available resources of `user` on this (home) shard with their last presence.
fn available(shard: &Shard, user: &BareJid) -> Vec<(FullJid, SessionRef, Option<Stanza>)> {
    shard
        .sm
        .resources(user)
        .iter()
        .filter(|r| r.priority.is_some())
        .map(|r| {
            let last = r.last_presence.as_ref().and_then(|p| p.stanza());
            (r.jid.clone(), r.session, last)
        })
        .collect()
}

fn send_unavailable_to(shard: &mut Shard, user: &BareJid, to: &Jid) {
    for (jid, _, _) in available(shard, user) {
        let el = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", jid.as_str())
            .with_attr("to", to.as_str());
        let acc = Acc::new(
            Stanza::from_element(&el),
            Jid::from(jid),
            to.clone(),
            shard.id,
        );
        crate::router::route(shard, acc);
    }
}

/// A copy of `stanza` addressed to `to` from `from`.
fn copy_to(stanza: &Stanza, from: &Jid, to: &Jid, shard: ShardId) -> Acc {
    let mut s = stanza.clone();
    s.set_to(to.as_str());
    Acc::new(s, from.clone(), to.clone(), shard)
}

/// The user's own broadcast (RFC 6121 §4.2 initial, §4.4 update, §4.5 unavailable).
fn broadcast(shard: &mut Shard, mut acc: Acc, up: PresenceUpdate) {
    let user = acc.from.bare();
    let Ok(sender) = acc.from.clone().try_into_full() else {
        return;
    };
    let own = available(shard, &user);
    // §4.2.2 / §4.4.2 / §4.5.2: every available resource of the user, the sender included.
    for (jid, session, _) in &own {
        let copy = copy_to(&acc.stanza, &acc.from, &Jid::from(jid.clone()), shard.id);
        shard.send_to_session(*session, ConnMsg::Deliver(copy));
    }
    if up.initial {
        // The new resource learns the presence of the user's other resources.
        for (jid, _, last) in &own {
            if jid == &sender {
                continue;
            }
            if let Some(last) = last {
                let to = Jid::from(sender.clone());
                let copy = copy_to(last, &Jid::from(jid.clone()), &to, shard.id);
                shard.send_to_session(up.session, ConnMsg::Deliver(copy));
            }
        }
    }
    let directed: Vec<Jid> = acc.get(DIRECTED).cloned().unwrap_or_default();
    // The client's input waits until the copies below are routed (RFC 6120 §10.1).
    let gate = acc.take(crate::hooks::RELEASE_INPUT);
    let stanza = acc.stanza.clone();
    let from = acc.from.clone();
    let initial = up.initial;
    let available_now = up.priority.is_some();
    let sid = shard.id;
    queue_job(shard, user_key(&user), move |store| {
        let rows = match store.roster_rows(&user) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, user = user.as_str(), "presence broadcast: roster read failed");
                return JobDone::default().keeping(gate);
            }
        };
        let mut route = Vec::new();
        let subscribers: Vec<&BareJid> = rows
            .iter()
            .filter(|r| r.state.from)
            .map(|r| &r.jid)
            .collect();
        for c in &subscribers {
            route.push(copy_to(&stanza, &from, &Jid::from((*c).clone()), sid));
        }
        if !available_now {
            for d in &directed {
                if !subscribers.iter().any(|c| **c == d.bare()) {
                    route.push(copy_to(&stanza, &from, d, sid));
                }
            }
        }
        if initial {
            // §4.2.2: probes to every contact the user is subscribed to. From the new resource's
            // full JID, as Prosody and ejabberd send them: the answers then reach that resource
            // only, where answers to the bare JID would repeat every contact's presence to the
            // user's resources that are already online.
            for r in rows.iter().filter(|r| r.state.to) {
                let el = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "probe")
                    .with_attr("from", from.as_str())
                    .with_attr("to", r.jid.as_str());
                route.push(Acc::new(
                    Stanza::from_element(&el),
                    from.clone(),
                    Jid::from(r.jid.clone()),
                    sid,
                ));
            }
        }
        // §3.1.3: pending requests are delivered when the user becomes available; straight to the
        // session (routing them would run them through the inbound state machine again).
        let mut pending = Vec::new();
        if initial {
            for r in rows.iter().filter(|r| r.state.pending_in) {
                let Some(text) = &r.request else { continue };
                let Ok(s) = Stanza::parse(text.clone().into_bytes()) else {
                    continue;
                };
                pending.push(copy_to(&s, &Jid::from(r.jid.clone()), &from, sid));
            }
        }
        let session = up.session;
        JobDone {
            hold: Vec::new(),
            route,
            then: Some(Box::new(move |shard: &mut Shard| {
                for acc in pending {
                    shard.send_to_session(session, ConnMsg::Deliver(acc));
                }
            })),
        }
        .keeping(gate)
    });
}

/// A probe reached the user's home shard: answer a subscribed prober with the last presence of
/// each available resource, or `unavailable`; any other prober (no account, no subscription) gets
/// `unsubscribed` from the bare JID (RFC 6121 §4.3.2: its server then cancels a subscription it
/// wrongly believes in; a pre-approval stays).
fn probe(shard: &mut Shard, acc: Acc) {
    let user = acc.to.bare();
    let prober = acc.from.clone();
    let contact = prober.bare();
    let sid = shard.id;
    let recorded = shard.ext.get::<crate::modules::last::Recording>().is_some();
    queue_job(shard, user_key(&user), move |store| {
        let subscribed = match store.roster_item(&user, &contact) {
            Ok(item) => item.is_some_and(|i| i.state.from),
            Err(e) => {
                // No answer: an `unsubscribed` would cancel a subscription that may exist.
                tracing::error!(error = %e, "probe: roster read failed");
                return JobDone::default();
            }
        };
        if !subscribed {
            return JobDone {
                hold: Vec::new(),
                route: vec![roster::subscription_stanza(
                    &user,
                    &contact,
                    SubKind::Unsubscribed,
                    sid,
                )],
                then: None,
            };
        }
        // For an answer that the user is away: when that began and what it said (kept by
        // `mod_last`; nothing when it is off or has no record).
        let last = match recorded.then(|| store.last_activity(&user)) {
            Some(Ok(crate::store::LastActivity::Offline { at, status })) => Some((at, status)),
            _ => None,
        };
        JobDone {
            hold: Vec::new(),
            route: Vec::new(),
            then: Some(Box::new(move |shard: &mut Shard| {
                answer_probe(shard, &user, &prober, last)
            })),
        }
    });
}

/// Answers a subscribed prober with the last presence of each available resource of `user`, or
/// `unavailable`: stamped with when the user went away and carrying its last status, when known
/// (`last`: Unix seconds and status text; RFC 6121 §4.3.2, XEP-0203).
fn answer_probe(shard: &mut Shard, user: &BareJid, prober: &Jid, last: Option<(i64, String)>) {
    let own = available(shard, user);
    let mut sent = false;
    for (jid, _, last) in own {
        if let Some(last) = last {
            let copy = copy_to(&last, &Jid::from(jid), prober, shard.id);
            crate::router::route(shard, copy);
            sent = true;
        }
    }
    if !sent {
        let mut el = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", user.as_str())
            .with_attr("to", prober.as_str());
        if let Some((at, status)) = last {
            if !status.is_empty() {
                el = el.with_child(Element::new("status", ns::CLIENT).with_text(&status));
            }
            el = el.with_child(
                Element::new("delay", ns::DELAY)
                    .with_attr("from", user.domain())
                    .with_attr("stamp", crate::xmpp::datetime::stamp(at * 1_000_000)),
            );
        }
        let acc = Acc::new(
            Stanza::from_element(&el),
            Jid::from(user.clone()),
            prober.clone(),
            shard.id,
        );
        crate::router::route(shard, acc);
    }
}

/// An inbound subscription stanza (RFC 6121 Appendix A.3) on the user's home shard.
fn inbound(shard: &mut Shard, acc: Acc, kind: SubKind) {
    let user = acc.to.bare();
    let contact = acc.from.bare();
    if user == contact {
        return;
    }
    let opts = roster::settings(shard);
    let sid = shard.id;
    let request = (kind == SubKind::Subscribe)
        .then(|| String::from_utf8(acc.stanza.bytes().to_vec()).ok())
        .flatten();
    count_inbound(shard, &user, true);
    let key = user_key(&user);
    let counted = user.clone();
    queue_job(shard, key, move |store| {
        let mut done = inbound_job(store, acc, user, contact, kind, request, opts, sid);
        // Counted out on every path, before what the job does on the shard.
        let then = done.then.take();
        done.then = Some(Box::new(move |shard: &mut Shard| {
            count_inbound(shard, &counted, false);
            if let Some(then) = then {
                then(shard);
            }
        }));
        done
    });
}

/// The store job of an inbound subscription stanza, and what its result does on the shard.
#[allow(clippy::too_many_arguments)]
fn inbound_job(
    store: &Store,
    acc: Acc,
    user: BareJid,
    contact: BareJid,
    kind: SubKind,
    request: Option<String>,
    opts: roster::RosterOpts,
    sid: ShardId,
) -> JobDone {
    let changed = store.roster_change(&user, &contact, |before, count| {
        let s0: SubState = before.as_ref().map(|b| b.state).unwrap_or_default();
        let t = s0.inbound(kind);
        let is_new = before.is_none();
        let mut write = RosterWrite::after(before, &contact, &t, false);
        if let RosterWrite::Put(item) = &mut write {
            if t.state.pending_in && kind == SubKind::Subscribe {
                item.request = request;
            }
            // Strangers' requests are bounded like the roster itself.
            if is_new && count >= opts.max_items {
                return (RosterWrite::Keep, None);
            }
        }
        (write, Some(t))
    });
    let changed = match changed {
        Ok(c) => c,
        // RFC 6121 §8.5.1: silently ignored, and nothing kept for a later account of the name.
        Err(StoreError::NoSuchUser) => return JobDone::default(),
        Err(e) => {
            tracing::error!(error = %e, user = user.as_str(), "inbound subscription store job failed");
            return JobDone::default();
        }
    };
    let Some(t) = changed.out else {
        return JobDone::default();
    };
    let push = changed
        .ver
        .map(|ver| roster::push_acc(&user, changed.item.as_ref(), &contact, ver, opts, sid));
    JobDone {
        hold: Vec::new(),
        route: Vec::new(),
        then: Some(Box::new(move |shard: &mut Shard| {
            if let Some(p) = push {
                crate::sm::route(shard, p);
            }
            if t.forward {
                for (_, session, _) in available(shard, &user) {
                    shard.send_to_session(session, ConnMsg::Deliver(acc.fork()));
                }
            }
            if t.auto_approve {
                let ok =
                    roster::subscription_stanza(&user, &contact, SubKind::Subscribed, shard.id);
                crate::router::route(shard, ok);
                // As after an approval by hand (§3.1.5): a remote contact's server may wait
                // for this presence (Prosody does); a local contact probes on `subscribed`.
                if !shard.is_hosted(contact.domain()) {
                    share_with(shard, &user, &Jid::from(contact.clone()));
                }
            }
            if kind == SubKind::Subscribed && t.forward {
                // The subscription now exists: learn the contact's presence right away
                // (the contact's server answers the probe, §3.1.5/§4.3).
                let el = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "probe")
                    .with_attr("from", user.as_str())
                    .with_attr("to", contact.as_str());
                let probe = Acc::new(
                    Stanza::from_element(&el),
                    Jid::from(user.clone()),
                    Jid::from(contact.clone()),
                    shard.id,
                );
                crate::router::route(shard, probe);
            }
            if t.revoke_presence {
                send_unavailable_to(shard, &user, &Jid::from(contact.clone()));
            }
        })),
    }
}

#[cfg(test)]
mod tests;
