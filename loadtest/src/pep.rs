//! The `pep` scenario on one core: user 0 publishes to its PEP node
//! (XEP-0163), users 1..=N are its contacts and count the notifications.
//!
//! Setup, over the wire: every user asks for its roster (Prosody delivers
//! subscription requests only to sessions that did) and sends available
//! presence, the contacts with entity caps (XEP-0115) advertising
//! `urn:xmpp:petrel:bench+notify`. The publisher's first roster result says
//! which subscriptions are missing (none when the server kept those of an
//! earlier run): those contacts ask to subscribe to the publisher and the
//! publisher to those contacts, everyone approves what it is asked; the
//! publisher reads its roster until every contact is `both` (re-asking for
//! what is missing when progress stalls). If subscriptions were made, the
//! contacts then send their caps presence again (now that the publisher is
//! subscribed to it, so the server learns their interest). Contacts answer
//! the servers' disco#info queries throughout; the publisher publishes warm-up items until every contact has
//! received one. Only then does the measured phase start.

use crate::client::Client;
use crate::core::{phase, Core};
use crate::frame::attr;
use crate::pepwire::{self as w, Tick};
use crate::room::Tally;
use crate::stats::totals;
use ahash::{HashMap, HashSet};
use glommio::timer::sleep;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The publisher's user index.
pub const PUBLISHER: u32 = 0;
/// Between two roster reads of the publisher during setup.
const ROSTER_POLL: Duration = Duration::from_millis(300);
/// Missing subscriptions are asked for again when nothing changed for this long.
const RESEND: Duration = Duration::from_secs(3);
/// Between two warm-up items.
const WARM_EVERY: Duration = Duration::from_millis(500);
/// How often the closed-loop publisher looks at the window.
const WINDOW_TICK: Duration = Duration::from_millis(1);

/// The scenario's settings.
#[derive(Debug, Clone)]
pub struct PepPlan {
    /// Contacts (users 1..=contacts).
    pub contacts: u32,
    /// Items per second (fixed rate); 0 = closed loop with `window` items in flight.
    pub pub_rate: f64,
    /// Items in flight in the closed loop (an item is in flight until all its notifications came).
    pub window: u32,
    /// Time for subscriptions and the warm-up (contacts not reached by then are reported).
    pub setup_timeout: Duration,
    /// This run's tag in every item, to tell them from items a server kept from an earlier run.
    pub run: u64,
}

/// Setup progress shared by the cores.
#[derive(Default)]
pub struct PepShared {
    /// Cores whose logins are done.
    logged: AtomicUsize,
    /// The publisher has read its roster and set `ask`.
    planned: AtomicBool,
    /// By contact index: the contact must ask to subscribe to the publisher (the publisher's
    /// roster has no `from` for it). Empty until `planned`.
    ask: OnceLock<Vec<bool>>,
    /// The publisher's roster shows the mutual subscriptions (or setup gave up waiting).
    subscribed: AtomicBool,
    /// The publisher asked some contacts to subscribe (its roster lacked their `to`).
    subscribed_now: AtomicBool,
    /// The warm-up is over: measuring may start.
    setup_done: AtomicBool,
    /// Contacts with a mutual subscription in the publisher's last roster read.
    pub both: AtomicU64,
    /// Contacts that received a warm-up notification.
    pub reached: AtomicU64,
    /// Publishes the server confirmed.
    pub pub_ok: AtomicU64,
    /// Publishes the server refused.
    pub pub_err: AtomicU64,
    /// Notifications of items from an earlier run (ignored).
    pub stale: AtomicU64,
}

/// One core's pep state.
#[derive(Default)]
pub struct PepCore {
    ver: String,
    /// Contacts of this core that received a warm-up notification.
    reached: RefCell<HashSet<u32>>,
    /// Measured notifications seen on this core.
    pub tally: RefCell<Tally>,
    /// Publisher: subscription of each contact in the last roster result (`None` while waiting).
    roster: RefCell<Option<HashMap<u32, Sub>>>,
    /// Publisher: measured items published.
    published: Cell<u64>,
}

impl PepCore {
    /// Fresh state.
    pub fn new() -> Self {
        PepCore {
            ver: w::our_ver(),
            ..Default::default()
        }
    }
}

/// A roster item's subscription state as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    None,
    /// The publisher sees the contact's presence, not the other way.
    To,
    /// The contact sees the publisher's presence.
    From,
    Both,
}

impl Sub {
    fn parse(s: &[u8]) -> Sub {
        match s {
            b"both" => Sub::Both,
            b"to" => Sub::To,
            b"from" => Sub::From,
            _ => Sub::None,
        }
    }
}

async fn until(f: impl Fn() -> bool) {
    while !f() {
        sleep(Duration::from_millis(2)).await;
    }
}

/// Run the setup for this core's logged-in `users` (see the module doc); returns when measuring may start.
pub async fn setup(core: &Rc<Core>, m: &Rc<PepCore>, plan: &PepPlan, users: &[u32]) {
    let sh = &core.shared.pep;
    sh.logged.fetch_add(1, Relaxed);
    until(|| sh.logged.load(Relaxed) >= core.plan.cores).await;
    let st = core.stats();
    let publisher = core.plan.naming.bare(PUBLISHER);
    let mut contacts = Vec::new();
    for &u in users {
        let c = core.client(u);
        if c.outbox().is_none() {
            if u == PUBLISHER {
                // Nothing can be measured; the failed login is reported (exit 2).
                sh.planned.store(true, Relaxed);
                sh.subscribed.store(true, Relaxed);
                sh.setup_done.store(true, Relaxed);
            }
            continue;
        }
        if u == PUBLISHER {
            c.push_stanza(st, |b| {
                w::write_roster_get(b);
                b.extend_from_slice(b"<presence/>");
            });
            glommio::spawn_local(publisher_setup(core.clone(), m.clone(), plan.clone(), c))
                .detach();
        } else {
            c.push_stanza(st, |b| {
                w::write_roster_get(b);
                w::write_caps_presence(b, &m.ver);
            });
            contacts.push(c);
        }
    }
    // Only what the publisher's roster lacks is asked for: a server that kept the
    // subscriptions of an earlier run has nothing to do.
    until(|| sh.planned.load(Relaxed)).await;
    let ask = sh.ask.get().map(Vec::as_slice).unwrap_or_default();
    for c in &contacts {
        if ask.get(c.u as usize).copied().unwrap_or(true) {
            c.push_stanza(st, |b| w::write_subscription(b, &publisher, "subscribe"));
        }
    }
    until(|| sh.subscribed.load(Relaxed)).await;
    // Presence again only when subscriptions were made now (else the server had it all along).
    let changed =
        ask.iter().any(|&a| a) || sh.ask.get().is_none() || sh.subscribed_now.load(Relaxed);
    for c in contacts.iter().filter(|_| changed) {
        c.push_stanza(st, |b| w::write_caps_presence(b, &m.ver));
    }
    until(|| sh.setup_done.load(Relaxed)).await;
}

/// The publisher's side of the setup: subscriptions both ways, then warm-up items.
async fn publisher_setup(core: Rc<Core>, m: Rc<PepCore>, plan: PepPlan, c: Rc<Client>) {
    let sh = &core.shared.pep;
    let st = core.stats();
    let naming = &core.plan.naming;
    let start = Instant::now();
    let n = plan.contacts;
    let mut last_resend = Instant::now();
    let (mut last_both, mut last_progress) = (0, Instant::now());
    let mut first = true;
    loop {
        // The answer to the outstanding roster request (first: the one sent with the presence).
        // A slow server's answer is never dropped: the next request goes out only after it.
        until(|| m.roster.borrow().is_some() || start.elapsed() > plan.setup_timeout).await;
        let Some(roster) = m.roster.borrow_mut().take() else {
            break;
        };
        let sub = |k: u32| roster.get(&k).copied().unwrap_or(Sub::None);
        let both = (1..=n).filter(|&k| sub(k) == Sub::Both).count() as u64;
        sh.both.store(both, Relaxed);
        if both > last_both {
            (last_both, last_progress) = (both, Instant::now());
        }
        if first {
            // The contacts without `from` ask to subscribe (on their cores); the publisher asks
            // the contacts it has no `to` for.
            first = false;
            let ask = (0..=n)
                .map(|k| k > 0 && matches!(sub(k), Sub::None | Sub::To))
                .collect();
            let _ = sh.ask.set(ask); // set once, here
            let asks = (1..=n).any(|k| matches!(sub(k), Sub::None | Sub::From));
            sh.subscribed_now.store(asks, Relaxed);
            sh.planned.store(true, Relaxed);
            c.push_stanza(st, |b| {
                for k in (1..=n).filter(|&k| matches!(sub(k), Sub::None | Sub::From)) {
                    w::write_subscription(b, &naming.bare(k), "subscribe");
                }
            });
            last_resend = Instant::now();
        }
        if both == u64::from(n) || start.elapsed() > plan.setup_timeout {
            break;
        }
        // Asked again only when the server stopped making progress (a slow server is not flooded).
        if last_resend.elapsed() > RESEND && last_progress.elapsed() > RESEND {
            last_resend = Instant::now();
            c.push_stanza(st, |b| {
                for k in 1..=n {
                    let s = sub(k);
                    if matches!(s, Sub::None | Sub::From) {
                        w::write_subscription(b, &naming.bare(k), "subscribe");
                    }
                    if matches!(s, Sub::None | Sub::To) {
                        // Approves the contact's pending request, if the server still has it.
                        w::write_subscription(b, &naming.bare(k), "subscribed");
                    }
                }
            });
        }
        sleep(ROSTER_POLL).await;
        c.push_stanza(st, w::write_roster_get);
    }
    sh.planned.store(true, Relaxed); // if no roster ever came: every contact asks
    sh.subscribed.store(true, Relaxed);
    // One warm-up item at a time, the next one after the server answered the last (a slow
    // server is not buried under warm-up fan-outs before measuring starts).
    let answered = || sh.pub_ok.load(Relaxed) + sh.pub_err.load(Relaxed);
    let mut seq = 0;
    let timed_out = || start.elapsed() > plan.setup_timeout;
    while sh.reached.load(Relaxed) < u64::from(n) && !timed_out() {
        let ts = core.shared.now_ns();
        let p = core.plan.payload;
        c.push_stanza(st, |b| w::write_publish(b, plan.run, seq, ts, true, p));
        seq += 1;
        let t = Instant::now();
        until(|| sh.reached.load(Relaxed) >= u64::from(n) || t.elapsed() > WARM_EVERY).await;
        until(|| answered() >= seq || timed_out()).await;
    }
    sh.setup_done.store(true, Relaxed);
}

/// A presence to `client`: approve subscription requests.
pub fn on_presence(core: &Core, client: &Client, el: &[u8]) {
    if attr(el, b"type") != Some(b"subscribe") {
        return;
    }
    if let Some(from) = attr(el, b"from") {
        let to = String::from_utf8_lossy(w::bare(from));
        client.push_stanza(core.stats(), |b| {
            w::write_subscription(b, &to, "subscribed")
        });
    }
}

/// An iq to `client`; `true` when the scenario handled it.
pub fn on_iq(core: &Core, m: &PepCore, client: &Client, el: &[u8]) -> bool {
    let st = core.stats();
    let ty = attr(el, b"type");
    if w::is_disco_info_get(el) {
        client.push_stanza(st, |b| w::write_disco_reply(b, el));
        return true;
    }
    if ty == Some(b"set") && memchr::memmem::find(el, b"jabber:iq:roster").is_some() {
        client.push_stanza(st, |b| w::write_empty_result(b, el)); // a roster push
        return true;
    }
    let id = attr(el, b"id").unwrap_or_default();
    if id == w::ROSTER_ID.as_bytes() {
        if client.u == PUBLISHER && ty == Some(b"result") {
            let naming = &core.plan.naming;
            let map = w::roster_items(el)
                .filter_map(|(jid, sub)| {
                    let local = jid.split(|&c| c == b'@').next()?;
                    Some((naming.index_of(local)?, Sub::parse(sub)))
                })
                .collect();
            *m.roster.borrow_mut() = Some(map);
        }
        return true;
    }
    if w::is_publish_reply(id) {
        let sh = &core.shared.pep;
        if ty == Some(b"result") {
            sh.pub_ok.fetch_add(1, Relaxed);
        } else {
            sh.pub_err.fetch_add(1, Relaxed);
            st.errors.fetch_add(1, Relaxed);
            core.complain(format_args!(
                "publish refused: {}",
                String::from_utf8_lossy(el)
            ));
        }
        return true;
    }
    false
}

/// A message to `client`; `true` when it was a PEP notification.
pub fn on_message(core: &Core, m: &PepCore, plan: &PepPlan, client: &Client, el: &[u8]) -> bool {
    let Some(t) = w::parse_notification(el) else {
        return false;
    };
    if client.u == PUBLISHER {
        return true; // the owner's own copy, if the server sends one
    }
    let sh = &core.shared.pep;
    match t {
        Tick { run, .. } if run != plan.run => {
            sh.stale.fetch_add(1, Relaxed);
        }
        Tick { warm: true, .. } => {
            if m.reached.borrow_mut().insert(client.u) {
                sh.reached.fetch_add(1, Relaxed);
            }
        }
        Tick { seq, ts, .. } => {
            let now = core.shared.now_ns();
            core.stats().record_delivery(now.saturating_sub(ts) / 1000);
            m.tally.borrow_mut().delivered(PUBLISHER, seq);
        }
    }
    true
}

/// Start publishing, on the publisher's core.
pub fn start(core: &Rc<Core>, m: &Rc<PepCore>, plan: &PepPlan) {
    let c = core.client(PUBLISHER);
    if c.outbox().is_some() {
        glommio::spawn_local(publish_loop(core.clone(), m.clone(), plan.clone(), c)).detach();
    }
}

fn publish_one(core: &Core, m: &PepCore, plan: &PepPlan, c: &Client) {
    let seq = m.published.get();
    m.published.set(seq + 1);
    let st = core.stats();
    st.sent.fetch_add(1, Relaxed);
    let ts = core.shared.now_ns();
    let p = core.plan.payload;
    c.push_stanza(st, |b| w::write_publish(b, plan.run, seq, ts, false, p));
}

async fn publish_loop(core: Rc<Core>, m: Rc<PepCore>, plan: PepPlan, c: Rc<Client>) {
    let k = u64::from(plan.contacts);
    if plan.pub_rate > 0.0 {
        let interval = Duration::from_secs_f64(1.0 / plan.pub_rate);
        let mut next = Instant::now();
        while crate::core::wait_until(&core, next).await {
            publish_one(&core, &m, &plan, &c);
            next += interval;
        }
        return;
    }
    // Closed loop: in flight = notifications still owed, at most `window` items' worth.
    let cap = u64::from(plan.window) * k;
    while core.shared.phase() == phase::RUN {
        let t = totals(&core.shared.cores);
        let mut owed = (t.sent * k).saturating_sub(t.delivered);
        while owed < cap {
            publish_one(&core, &m, &plan, &c);
            owed += k;
        }
        sleep(WINDOW_TICK).await;
    }
}

/// This core's tally with the publisher's item count, for the final verdict.
pub fn finish(m: &PepCore) -> Tally {
    let mut t = m.tally.take();
    let n = m.published.get();
    if n > 0 {
        t.sent.insert(PUBLISHER, n);
    }
    t
}
