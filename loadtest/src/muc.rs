//! The `muc` scenario on one core: join every logged-in user to its room
//! (whoever the service says created a room submits the instant-room form;
//! the others wait until the room is unlocked and retry a refused join with a
//! short backoff), wait until each occupant has seen all K occupants, then
//! send groupchat messages at a fixed rate or in a closed loop and count every
//! reflected copy. See [`crate::room`] for the layout and the accounting.

use crate::client::Client;
use crate::core::{phase, Core};
use crate::frame::attr;
use crate::msg::Body;
use crate::room::{create_reply_room, status_codes, Layout, Tally};
use ahash::{HashMap, HashSet};
use glommio::timer::sleep;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A non-owner joins anyway after waiting this long for its room to be unlocked
/// (its owner may have failed to log in; whoever creates the room configures it).
const OPEN_WAIT: Duration = Duration::from_secs(3);
/// First wait before joining again after a refused join; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// Longest wait between two join attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How often the join driver looks at its pending occupants.
const JOIN_TICK: Duration = Duration::from_millis(5);

/// The scenario's settings.
#[derive(Debug, Clone)]
pub struct MucPlan {
    /// Rooms, occupants, service.
    pub layout: Layout,
    /// Messages per second per occupant (fixed rate; unused when `closed`).
    pub msg_rate: f64,
    /// Closed loop: one message in flight per occupant.
    pub closed: bool,
    /// Time for all joins (the rest count as failed).
    pub join_timeout: Duration,
}

/// Where one occupant is in joining its room.
#[derive(Debug, Clone, Copy)]
enum Join {
    /// Not sent yet (waiting for the room to be unlocked).
    Waiting,
    /// Join presence sent, no answer yet. Never sent again without a refusal: a
    /// service busy with a join storm would only get a storm of presence updates,
    /// each broadcast to the whole room.
    Sent,
    /// Refused; join again at this time.
    RetryAt(Instant),
    /// The service confirmed the join (status 110).
    InRoom,
}

struct Occupant {
    join: Join,
    /// Refused joins so far (for the backoff).
    refused: u32,
    /// Members of the room this occupant has seen present.
    seen: HashSet<u32>,
    /// Counted in `joined` once it saw all K.
    full: bool,
}

/// One core's muc state.
#[derive(Default)]
pub struct MucCore {
    occupants: RefCell<HashMap<u32, Occupant>>,
    /// Deliveries seen on this core.
    pub tally: RefCell<Tally>,
}

/// The rooms the service has unlocked (shared by all cores).
pub fn open_flags(plan: Option<&MucPlan>) -> Vec<AtomicBool> {
    let n = plan.map_or(0, |m| m.layout.rooms);
    (0..n).map(|_| AtomicBool::new(false)).collect()
}

fn mark_open(core: &Core, r: u32) {
    if let Some(f) = core.shared.rooms_open.get(r as usize) {
        f.store(true, Relaxed);
    }
}

fn is_open(core: &Core, r: u32) -> bool {
    core.shared
        .rooms_open
        .get(r as usize)
        .is_some_and(|f| f.load(Relaxed))
}

/// Join this core's logged-in `users` to their rooms and wait until each saw
/// all its room's occupants (or the join timeout passed: those count as failed joins).
pub async fn join_all(core: &Rc<Core>, m: &MucCore, plan: &MucPlan, users: &[u32]) {
    let start = Instant::now();
    for &u in users {
        if core.client(u).outbox().is_none() {
            continue; // its login failed
        }
        let o = Occupant {
            join: Join::Waiting,
            refused: 0,
            seen: HashSet::default(),
            full: false,
        };
        m.occupants.borrow_mut().insert(u, o);
    }
    let l = &plan.layout;
    loop {
        let now = Instant::now();
        let mut pending = 0;
        let mut due = Vec::new();
        for (&u, o) in m.occupants.borrow_mut().iter_mut() {
            if o.full {
                continue;
            }
            pending += 1;
            let send = match o.join {
                Join::Waiting => {
                    l.is_owner(u) || is_open(core, l.room_of(u)) || now - start > OPEN_WAIT
                }
                Join::RetryAt(t) => now >= t,
                Join::Sent | Join::InRoom => false,
            };
            if send {
                o.join = Join::Sent;
                due.push(u);
            }
        }
        for u in due {
            let nick = core.plan.naming.local(u);
            core.client(u)
                .push_stanza(core.stats(), |b| l.write_join(b, l.room_of(u), &nick));
        }
        if pending == 0 || now - start > plan.join_timeout {
            core.stats().join_failed.fetch_add(pending, Relaxed);
            return;
        }
        sleep(JOIN_TICK).await;
    }
}

/// A presence from the MUC service to `client`.
pub fn on_presence(core: &Core, m: &MucCore, plan: &MucPlan, client: &Client, el: &[u8]) {
    let l = &plan.layout;
    let Some((r, nick)) = attr(el, b"from").and_then(|f| l.occupant(f)) else {
        return;
    };
    let mut occ = m.occupants.borrow_mut();
    let Some(o) = occ.get_mut(&client.u) else {
        return;
    };
    let st = core.stats();
    match attr(el, b"type") {
        Some(b"error") => {
            st.join_retries.fetch_add(1, Relaxed);
            if o.refused == 0 {
                core.complain(format_args!(
                    "join of {} refused (retrying): {}",
                    core.plan.naming.bare(client.u),
                    String::from_utf8_lossy(el)
                ));
            }
            let backoff = MIN_BACKOFF
                .saturating_mul(1 << o.refused.min(8))
                .min(MAX_BACKOFF);
            o.refused += 1;
            o.join = Join::RetryAt(Instant::now() + backoff);
        }
        Some(b"unavailable") => {
            if let Some(u) = core.plan.naming.index_of(nick) {
                o.seen.remove(&u);
            }
        }
        Some(_) => {}
        None => {
            let member = core
                .plan
                .naming
                .index_of(nick)
                .filter(|&u| l.room_of(u) == r);
            if r != l.room_of(client.u) || member.is_none() {
                // Someone else's room, or a stranger in ours: never counted as an occupant.
                st.errors.fetch_add(1, Relaxed);
                core.complain(format_args!(
                    "unexpected occupant presence to {}: {}",
                    core.plan.naming.bare(client.u),
                    String::from_utf8_lossy(el)
                ));
                return;
            }
            o.seen.extend(member);
            let mut created = false;
            let mut me = false;
            for c in status_codes(el) {
                me |= c == 110;
                created |= c == 201;
            }
            if me {
                if !matches!(o.join, Join::InRoom) {
                    st.in_room.fetch_add(1, Relaxed);
                }
                o.join = Join::InRoom;
                if created {
                    // This occupant created the room: accept the default configuration.
                    client.push_stanza(st, |b| l.write_instant_form(b, r));
                } else {
                    mark_open(core, r);
                }
            }
            if !o.full && o.seen.len() as u64 >= u64::from(l.occupants) {
                o.full = true;
                st.joined.fetch_add(1, Relaxed);
            }
        }
    }
}

/// An iq result or error; `true` when it answered an instant-room form.
pub fn on_iq_reply(core: &Core, el: &[u8]) -> bool {
    let Some(r) = attr(el, b"id").and_then(create_reply_room) else {
        return false;
    };
    if attr(el, b"type") == Some(b"result") {
        mark_open(core, r);
    } else {
        core.stats().errors.fetch_add(1, Relaxed);
        core.complain(format_args!(
            "instant-room form of room {r} refused: {}",
            String::from_utf8_lossy(el)
        ));
    }
    true
}

/// A groupchat load message `b` reflected to `client`: count it; in a closed
/// loop the sender's own copy releases its next message.
pub fn on_delivery(core: &Core, m: &MucCore, plan: &MucPlan, client: &Client, b: Body, now: u64) {
    let l = &plan.layout;
    let room = l.room_of(client.u);
    {
        let mut t = m.tally.borrow_mut();
        if l.room_of(b.from) == room {
            t.delivered(b.from, b.seq);
        } else {
            t.misrouted += 1;
        }
    }
    if plan.closed && b.from == client.u && core.shared.phase() == phase::RUN {
        let p = &core.plan;
        client.send(&p.naming, room, now, p.payload, core.stats());
    }
}

/// Start sending: one message per occupant in a closed loop, else one sender task per occupant.
pub fn start(core: &Rc<Core>, plan: &MucPlan, users: &[u32]) {
    let l = &plan.layout;
    let p = &core.plan;
    let n = users.len().max(1) as f64;
    let interval = Duration::from_secs_f64(1.0 / plan.msg_rate.max(1e-6));
    for (k, &u) in users.iter().enumerate() {
        let c = core.client(u);
        if plan.closed {
            c.send(
                &p.naming,
                l.room_of(u),
                core.shared.now_ns(),
                p.payload,
                core.stats(),
            );
        } else {
            // Spread first sends evenly over one interval.
            let offset = interval.mul_f64(k as f64 / n);
            glommio::spawn_local(sender(core.clone(), c, l.room_of(u), interval, offset)).detach();
        }
    }
}

async fn sender(
    core: Rc<Core>,
    client: Rc<Client>,
    room: u32,
    interval: Duration,
    offset: Duration,
) {
    let p = &core.plan;
    let mut next = Instant::now() + offset;
    while crate::core::wait_until(&core, next).await {
        client.send(
            &p.naming,
            room,
            core.shared.now_ns(),
            p.payload,
            core.stats(),
        );
        next += interval;
    }
}

/// This core's tally with every local sender's message count, for the final verdict.
pub fn finish(m: &MucCore, clients: &[Rc<Client>]) -> Tally {
    let mut t = m.tally.take();
    for c in clients {
        if c.created() > 0 {
            t.sent.insert(c.u, c.created());
        }
    }
    t
}
