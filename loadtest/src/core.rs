//! What one executor (one core) does: log its users in, then drive the scenario
//! for them. Everything here is single-threaded; the only shared state is the
//! run's [`Shared`] (atomics and interval histograms).

use crate::across::{self, WarmCore, WarmShared};
use crate::cli::Scenario;
use crate::client::Client;
use crate::conn::{self, Conn, ConnError, Outbox, ReadHalf, WriteHalf};
use crate::frame::{attr, name, FrameError, FrameKind, Framer};
use crate::ledger::{AckedAt, Ledger, Link};
use crate::login::{Login, LoginConfig, LoginError, Registered, SmOutcome, Step};
use crate::msg::{BodyParser, Msg, Naming};
use crate::muc::{self, MucCore, MucPlan};
use crate::pep::{self, PepCore, PepPlan, PepShared};
use crate::room::Tally;
use crate::sm;
use crate::stats::CoreStats;
use futures_lite::future;
use glommio::timer::sleep;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Phases of a run, driven by the main thread.
pub mod phase {
    /// Logging in.
    pub const LOGIN: u8 = 0;
    /// Measured phase.
    pub const RUN: u8 = 1;
    /// No new messages; waiting for in-flight ones.
    pub const DRAIN: u8 = 2;
    /// Tear down.
    pub const DONE: u8 = 3;
    /// Soak: every user closes its stream cleanly and logs in afresh (fetching offline messages).
    pub const SWEEP: u8 = 4;
}

/// Largest top-level element accepted from a server.
const MAX_FRAME: usize = 1 << 20;

/// Everything a run needs, read-only, shared by all cores.
pub struct Plan {
    /// Scenario.
    pub scenario: Scenario,
    /// Server address.
    pub addr: SocketAddr,
    /// Login settings.
    pub login: LoginConfig,
    /// TLS client config when STARTTLS is on.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// JID spelling.
    pub naming: Naming,
    /// Total users.
    pub users: u32,
    /// Logins/s across all cores (0 = unlimited).
    pub rate: f64,
    /// Logins in progress per core.
    pub concurrency: u64,
    /// Login timeout.
    pub login_timeout: Duration,
    /// Chat interval per user.
    pub interval: Duration,
    /// Chat: messages per user per interval, sent back to back.
    pub burst: u32,
    /// Max window per sender.
    pub window: u32,
    /// Max: user i sends to user i+1 (mod N) instead of its pair partner.
    pub ring: bool,
    /// Extra body bytes.
    pub payload: usize,
    /// Source addresses to spread connections over, round robin (count 0 = kernel's choice).
    pub sources: crate::cli::AddrRange,
    /// Use the relay's one-line handshake instead of XMPP.
    pub relay: bool,
    /// XMPP over WebSocket (RFC 7395) at this path of the server's HTTP port, instead of TCP.
    pub ws_path: Option<String>,
    /// Idle keepalive period per session.
    pub keepalive: Duration,
    /// XEP-0198 on: ask for an ack every this many stanzas.
    pub sm: Option<u32>,
    /// Soak: mean time between two connection cuts by one client (`None`: never).
    pub cut: Option<Duration>,
    /// Soak: after a cut, resume on the next node (a cluster's resumption across nodes).
    pub resume_elsewhere: bool,
    /// Number of cores.
    pub cores: usize,
    /// The `muc` scenario's rooms and sending pattern.
    pub muc: Option<MucPlan>,
    /// The `pep` scenario's contacts and publishing pattern.
    pub pep: Option<PepPlan>,
    /// Two servers: the second one, where odd user indices log in (see [`crate::across`]).
    pub server_b: Option<ServerB>,
    /// The nodes of one cluster (`--nodes`; empty: `addr` alone).
    pub nodes: Vec<SocketAddr>,
    /// With `nodes`: pair partners on one node instead of user u on node u mod N.
    pub pair_placement: bool,
}

/// The second server of a federation run.
pub struct ServerB {
    /// Its address.
    pub addr: SocketAddr,
    /// Login settings of its users (its domain).
    pub login: LoginConfig,
    /// How long the warm-up messages may take to cross.
    pub warmup_timeout: Duration,
}

impl Plan {
    /// The core that handles user `idx`: pairs (2k, 2k+1) stay on one core so a
    /// receiver can credit its partner's window without crossing threads.
    pub fn core_of(&self, idx: u32) -> usize {
        (idx as usize / 2) % self.cores.max(1)
    }

    /// Deliveries one sent message makes: every occupant of its room in `muc`, every contact
    /// in `pep`, else one.
    pub fn fanout(&self) -> u64 {
        match (&self.muc, &self.pep) {
            (Some(m), _) => u64::from(m.layout.occupants),
            (None, Some(p)) => u64::from(p.contacts),
            (None, None) => 1,
        }
    }

    /// The server user `idx` logs in to and the login settings there; in a cluster, `failover`
    /// nodes past the user's own (its node was down).
    pub fn server_of(&self, idx: u32, failover: u32) -> (SocketAddr, &LoginConfig) {
        if !self.nodes.is_empty() {
            let home = if self.pair_placement { idx / 2 } else { idx } as usize;
            let at = (home + failover as usize) % self.nodes.len();
            return (self.nodes[at], &self.login);
        }
        match (&self.server_b, across::side(idx)) {
            (Some(b), across::Side::B) => (b.addr, &b.login),
            _ => (self.addr, &self.login),
        }
    }

    fn source_ip(&self, idx: u32) -> Option<IpAddr> {
        let s = &self.sources;
        (s.count > 0).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(s.first) + idx % s.count)))
    }
}

/// State shared between the cores and the main thread.
pub struct Shared {
    /// Per-core counters.
    pub cores: Vec<CoreStats>,
    /// Current [`phase`].
    pub phase: AtomicU8,
    /// Cores whose logins are finished.
    pub ready: AtomicUsize,
    /// Clock origin for message timestamps and login completion times.
    pub epoch: Instant,
    /// Muc: the rooms the service has unlocked, by room number.
    pub rooms_open: Vec<AtomicBool>,
    /// Pep: setup progress and publish counts.
    pub pep: PepShared,
    /// Two servers: the warm-up across them.
    pub warm: WarmShared,
}

/// What a core hands back at the end.
#[derive(Default)]
pub struct CoreResult {
    /// The soak's records.
    pub ledger: Option<Ledger>,
    /// The muc occupant deliveries, or the pep notifications.
    pub tally: Option<Tally>,
}

impl Shared {
    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The current [`phase`].
    pub fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }
}

/// Why a session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Transport.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// XMPP login.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// Framing.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Server closed during login.
    #[error("connection closed during login")]
    Eof,
    /// The relay refused the handshake.
    #[error("relay handshake refused")]
    Relay,
    /// Login did not finish in time.
    #[error("login timed out")]
    Timeout,
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> Self {
        SessionError::Conn(ConnError::Io(e))
    }
}

/// A logged-in connection.
pub struct Session {
    rd: ReadHalf,
    wr: WriteHalf,
    framer: Framer,
    registered: Option<Registered>,
    /// What the login leaves to send once the session is attached (initial presence).
    done: Vec<u8>,
    /// Stream management result.
    pub sm: SmOutcome,
    /// A `<resume/>` was refused and the login bound afresh.
    pub resume_failed: bool,
}

/// One core's state.
pub struct Core {
    /// The run's plan.
    pub plan: Arc<Plan>,
    /// Shared with the main thread.
    pub shared: Arc<Shared>,
    idx: usize,
    /// This core's users, by user index.
    clients: RefCell<ahash::HashMap<u32, Rc<Client>>>,
    parser: BodyParser,
    /// Login errors already printed (only the first few are).
    printed: Cell<u32>,
    /// Soak: the exactly-once accounting.
    ledger: Option<RefCell<Ledger>>,
    /// Muc: joins and deliveries.
    muc: Option<MucCore>,
    /// Pep: setup and notifications.
    pep: Option<Rc<PepCore>>,
    /// Two servers: this core's warm-up deliveries.
    warm: Option<WarmCore>,
}

impl Core {
    /// Soak: record a change of user `u`'s connection.
    pub fn record_link(&self, u: u32, change: Link) {
        if let Some(l) = &self.ledger {
            l.borrow_mut().link(u, self.shared.now_ns(), change);
        }
    }

    /// This core's counters.
    pub fn stats(&self) -> &CoreStats {
        &self.shared.cores[self.idx]
    }

    /// The user `u` of this core, created on first use.
    pub fn client(&self, u: u32) -> Rc<Client> {
        self.clients
            .borrow_mut()
            .entry(u)
            .or_insert_with(|| Rc::new(Client::new(u, self.plan.sm)))
            .clone()
    }

    /// Whether user `u` of this core has logged in (or is logging in again).
    pub fn has_client(&self, u: u32) -> bool {
        self.clients.borrow().contains_key(&u)
    }

    /// Print a problem, only the first few times.
    pub fn complain(&self, what: std::fmt::Arguments<'_>) {
        if self.printed.get() < 5 {
            self.printed.set(self.printed.get() + 1);
            eprintln!("{what}");
        }
    }
}

/// Run one core: log in `users`, report ready, drive the scenario until DONE.
pub async fn run_core(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    idx: usize,
    users: Vec<u32>,
) -> CoreResult {
    let soak = plan.scenario == Scenario::Soak;
    let warmup = plan.server_b.as_ref().map(|b| b.warmup_timeout);
    let plan_muc = plan.muc.is_some();
    let plan_pep = plan.pep.is_some();
    let core = Rc::new(Core {
        plan,
        shared,
        idx,
        clients: RefCell::new(Default::default()),
        parser: BodyParser::default(),
        printed: Cell::new(0),
        ledger: soak.then(RefCell::default),
        muc: plan_muc.then(MucCore::default),
        pep: plan_pep.then(|| Rc::new(PepCore::new())),
        warm: warmup.map(|_| WarmCore::default()),
    });
    if soak {
        crate::soak::login_all(&core, &users).await;
    } else {
        login_all(&core, &users).await;
    }
    if let (Some(m), Some(p)) = (&core.muc, &core.plan.muc) {
        muc::join_all(&core, m, p, &users).await;
    }
    if let (Some(m), Some(p)) = (&core.pep, &core.plan.pep) {
        pep::setup(&core, m, p, &users).await;
    }
    if let (Some(w), Some(t)) = (&core.warm, warmup) {
        across::warm_up(&core, w, &users, t).await;
    }
    core.shared.ready.fetch_add(1, Relaxed);
    while core.shared.phase() == phase::LOGIN {
        sleep(Duration::from_millis(1)).await;
    }
    if core.plan.sm.is_some() {
        glommio::spawn_local(ack_requests(core.clone())).detach();
    }
    if core.shared.phase() == phase::RUN {
        start_scenario(&core, &users);
    }
    while core.shared.phase() != phase::DONE {
        sleep(Duration::from_millis(5)).await;
    }
    let clients: Vec<Rc<Client>> = core.clients.borrow().values().cloned().collect();
    for c in &clients {
        c.detach();
    }
    let tally = match (&core.muc, &core.pep) {
        (Some(m), _) => Some(muc::finish(m, &clients)),
        (None, Some(m)) => Some(pep::finish(m)),
        (None, None) => None,
    };
    let ledger = core.ledger.as_ref().map(|l| {
        let mut ledger = l.take();
        for changes in ledger.links.values_mut() {
            changes.sort_by_key(|&(t, _)| t);
        }
        ledger.created = clients.iter().map(|c| c.created()).sum();
        ledger
    });
    CoreResult { ledger, tally }
}

/// With `--sm`: ask for an ack every 100 ms on connections that sent something since their last `<r/>`.
async fn ack_requests(core: Rc<Core>) {
    while core.shared.phase() != phase::DONE {
        sleep(Duration::from_millis(100)).await;
        let clients: Vec<Rc<Client>> = core.clients.borrow().values().cloned().collect();
        for c in clients {
            c.request_if_due();
        }
    }
}

async fn login_all(core: &Rc<Core>, users: &[u32]) {
    let plan = &core.plan;
    let sem = Rc::new(glommio::sync::Semaphore::new(plan.concurrency.max(1)));
    let remaining = Rc::new(Cell::new(users.len()));
    let per_core_rate = plan.rate / plan.cores as f64;
    let start = Instant::now();
    for (k, &u) in users.iter().enumerate() {
        if per_core_rate > 0.0 {
            let due = start + Duration::from_secs_f64(k as f64 / per_core_rate);
            let now = Instant::now();
            if due > now {
                sleep(due - now).await;
            }
        }
        let Ok(permit) = sem.acquire_static_permit(1).await else {
            break; // only fails if the semaphore is closed, which we never do
        };
        let core = core.clone();
        let remaining = remaining.clone();
        glommio::spawn_local(async move {
            login_one(&core, u).await;
            remaining.set(remaining.get() - 1);
            drop(permit);
        })
        .detach();
    }
    while remaining.get() > 0 {
        sleep(Duration::from_millis(2)).await;
    }
}

async fn login_one(core: &Rc<Core>, u: u32) {
    let t0 = Instant::now();
    let timeout = async {
        sleep(core.plan.login_timeout).await;
        Err(SessionError::Timeout)
    };
    match future::or(open_session(core, u, None, 0), timeout).await {
        Ok(s) => {
            let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            core.stats().record_login(us, core.shared.now_ns());
            match s.registered {
                Some(Registered::Created) => {
                    core.stats().registered.fetch_add(1, Relaxed);
                }
                Some(Registered::Existed) => {
                    core.stats().existed.fetch_add(1, Relaxed);
                }
                None => start_session(core, u, s),
            }
        }
        Err(e) => {
            core.stats().login_failed.fetch_add(1, Relaxed);
            core.complain(format_args!(
                "login of {} failed: {e}",
                core.plan.naming.bare(u)
            ));
        }
    }
}

/// Connect and log user `u` in, trying `resume` = (previd, h) instead of binding when given; in a
/// cluster, at the node `failover` places past its own.
pub async fn open_session(
    core: &Core,
    u: u32,
    resume: Option<(String, u32)>,
    failover: u32,
) -> Result<Session, SessionError> {
    let plan = &core.plan;
    let (addr, login_cfg) = plan.server_of(u, failover);
    let mut conn = Conn::new(conn::connect(addr, plan.source_ip(u))?);
    if let Some(path) = &plan.ws_path {
        conn.upgrade_ws(&login_cfg.domain, path).await?;
    }
    let (mut rd, mut wr) = conn.halves();
    let mut framer = Framer::new(4096, MAX_FRAME);
    if plan.relay {
        wr.write_all(format!("LOGIN {}\n", plan.naming.bare(u)).as_bytes())
            .await?;
        loop {
            if let Some(line) = framer.take_line() {
                if framer.slice(line) != b"OK" {
                    return Err(SessionError::Relay);
                }
                framer.set_in_stream();
                return Ok(Session {
                    rd,
                    wr,
                    framer,
                    registered: None,
                    done: Vec::new(),
                    sm: SmOutcome::Off,
                    resume_failed: false,
                });
            }
            if rd.read_into(&mut framer).await? == 0 {
                return Err(SessionError::Eof);
            }
        }
    }
    let mut login = Login::new(login_cfg, plan.naming.local(u));
    if let Some((previd, h)) = resume {
        login = login.with_resume(previd, h);
    }
    wr.write_all(&login.header()).await?;
    loop {
        if rd.read_into(&mut framer).await? == 0 {
            return Err(SessionError::Eof);
        }
        while let Some(f) = framer.next_frame()? {
            match login.on_frame(f.kind, framer.bytes(&f))? {
                Step::Wait => {}
                Step::Send(b) => wr.write_all(&b).await?,
                Step::StartTls => {
                    let cfg = plan.tls.clone().ok_or(LoginError::NoTls)?;
                    conn.start_tls(cfg, &login_cfg.domain).await?;
                    (rd, wr) = conn.halves();
                    framer.reset();
                    wr.write_all(&login.header()).await?;
                    break;
                }
                Step::Restart(b) => {
                    framer.reset();
                    wr.write_all(&b).await?;
                    break;
                }
                Step::Done(done) => {
                    return Ok(Session {
                        rd,
                        wr,
                        framer,
                        registered: login.registered,
                        done,
                        sm: login.sm,
                        resume_failed: login.resume_failed,
                    });
                }
            }
        }
    }
}

fn start_session(core: &Rc<Core>, u: u32, s: Session) {
    let client = core.client(u);
    let (rd, framer) = attach(core, &client, s);
    let core = core.clone();
    glommio::spawn_local(async move {
        read_loop(&core, &client, rd, framer).await;
        client.detach();
        if core.shared.phase() != phase::DONE {
            core.stats().errors.fetch_add(1, Relaxed);
        }
    })
    .detach();
}

/// Give `client` the session's connection: start its writer, apply the stream
/// management outcome (resend what the server never acknowledged), send the
/// initial presence. Returns the reading side.
pub fn attach(core: &Core, client: &Client, s: Session) -> (ReadHalf, Framer) {
    let ob = Rc::new(Outbox::default());
    client.attach(ob.clone());
    let writer = ob.run_writer(s.wr);
    glommio::spawn_local(async move {
        // A failed write shows up on the read side as a closed connection.
        let _ = writer.await;
    })
    .detach();
    let st = core.stats();
    let resend = match (&client.sm, s.sm) {
        (Some(sm), SmOutcome::Resumed(h)) => {
            let r = client.tracking_unacked(sm, st, |sm| sm.resumed(h, |m| on_acked(core, m)));
            r.unwrap_or_else(|e| {
                core.stats().errors.fetch_add(1, Relaxed);
                core.complain(format_args!("resumed: {e}"));
                Vec::new()
            })
        }
        (Some(sm), SmOutcome::Enabled(id)) => client.tracking_unacked(sm, st, |sm| sm.enabled(id)),
        _ => Vec::new(),
    };
    if !s.done.is_empty() {
        client.push_stanza(st, |b| b.extend_from_slice(&s.done));
    }
    let plan = &core.plan;
    for m in resend {
        if let Some(l) = &core.ledger {
            l.borrow_mut().resent.insert((m.from, m.seq));
        }
        client.resend(&plan.naming, m, plan.payload, st);
    }
    (s.rd, s.framer)
}

/// The server acknowledged message `m`.
fn on_acked(core: &Core, m: Msg) {
    core.stats().acked.fetch_add(1, Relaxed);
    if let Some(l) = &core.ledger {
        let at = AckedAt {
            to: m.to,
            sent_ns: m.ts,
            acked_ns: core.shared.now_ns(),
        };
        l.borrow_mut().acked.insert((m.from, m.seq), at);
    }
}

/// Handle what the server sends until the connection ends.
pub async fn read_loop(core: &Core, client: &Client, mut rd: ReadHalf, mut framer: Framer) {
    loop {
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if !on_frame(core, client, f.kind, framer.bytes(&f)) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match rd.read_into(&mut framer).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Handle one stanza; `false` ends the connection.
fn on_frame(core: &Core, client: &Client, kind: FrameKind, el: &[u8]) -> bool {
    match kind {
        FrameKind::StreamClose => return false,
        FrameKind::StreamOpen => return true,
        FrameKind::Element => {}
    }
    let n = name(el);
    if let Some(sm) = &client.sm {
        sm.borrow_mut().on_inbound(n);
    }
    let st = core.stats();
    match n {
        b"message" => on_message(core, client, el),
        b"iq" => {
            if let Some(m) = &core.pep {
                if pep::on_iq(core, m, client, el) {
                    return true;
                }
            }
            if matches!(attr(el, b"type"), Some(b"get") | Some(b"set")) {
                let ping = memchr::memmem::find(el, b"urn:xmpp:ping").is_some();
                if ping {
                    st.pings.fetch_add(1, Relaxed);
                }
                client.push_stanza(st, |b| reply_iq(b, el, ping));
            } else if core.muc.is_some() {
                muc::on_iq_reply(core, el);
            }
            true
        }
        b"presence" => {
            if let (Some(m), Some(p)) = (&core.muc, &core.plan.muc) {
                muc::on_presence(core, m, p, client, el);
            }
            if core.pep.is_some() {
                pep::on_presence(core, client, el);
            }
            true
        }
        b"r" => {
            client.answer_request();
            true
        }
        b"a" => {
            let acked = sm::h_of(el).map(|h| client.on_ack(h, st, |m| on_acked(core, m)));
            match acked {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    st.errors.fetch_add(1, Relaxed);
                    core.complain(format_args!("{e}"));
                    false
                }
                None => true,
            }
        }
        b"stream:error" => false,
        _ => true,
    }
}

fn on_message(core: &Core, client: &Client, el: &[u8]) -> bool {
    if let (Some(m), Some(p)) = (&core.pep, &core.plan.pep) {
        if pep::on_message(core, m, p, client, el) {
            return true;
        }
    }
    let st = core.stats();
    let error = attr(el, b"type") == Some(b"error");
    if let Some(w) = &core.warm {
        if across::on_message(core, w, el, error) {
            return true;
        }
    }
    let body = core.parser.parse(el);
    if error {
        st.errors.fetch_add(1, Relaxed);
        if let (Some(l), Some(b)) = (&core.ledger, body) {
            l.borrow_mut().bounced.insert((b.from, b.seq));
        }
        return true;
    }
    let Some(b) = body else {
        return true;
    };
    let now = core.shared.now_ns();
    st.record_delivery(now.saturating_sub(b.ts) / 1000);
    if core.muc.is_none() && !client.delivered_in_order(b.from, b.seq) {
        st.out_of_order.fetch_add(1, Relaxed);
    }
    if let (Some(m), Some(p)) = (&core.muc, &core.plan.muc) {
        muc::on_delivery(core, m, p, client, b, now);
        return true;
    }
    if let Some(l) = &core.ledger {
        let delayed = memchr::memmem::find(el, b"urn:xmpp:delay").is_some();
        l.borrow_mut().delivered((b.from, b.seq), now, delayed);
    }
    if core.plan.scenario == Scenario::Max && core.shared.phase() == phase::RUN {
        // Closed loop: the delivery frees one slot of the sender's window.
        let sender = core.clients.borrow().get(&b.from).cloned();
        if let Some(sender) = sender {
            let plan = &core.plan;
            sender.send(&plan.naming, client.u, now, plan.payload, st);
        }
    }
    true
}

/// Answer a server's iq: result for pings, service-unavailable otherwise.
fn reply_iq(b: &mut Vec<u8>, el: &[u8], ping: bool) {
    let id = attr(el, b"id").unwrap_or_default();
    let from = attr(el, b"from");
    b.extend_from_slice(b"<iq id='");
    b.extend_from_slice(id);
    if let Some(f) = from {
        b.extend_from_slice(b"' to='");
        b.extend_from_slice(f);
    }
    if ping {
        b.extend_from_slice(b"' type='result'/>");
    } else {
        b.extend_from_slice(b"' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    }
}

fn start_scenario(core: &Rc<Core>, users: &[u32]) {
    let plan = &core.plan;
    match plan.scenario {
        Scenario::Max => {
            let now = core.shared.now_ns();
            for &u in users {
                // Pairs (2k, 2k+1), or a ring (the receiver credits the sender: one core only).
                let peer = if plan.ring {
                    (u + 1) % plan.users
                } else {
                    u ^ 1
                };
                if !core.clients.borrow().contains_key(&peer) {
                    continue;
                }
                let c = core.client(u);
                for _ in 0..plan.window {
                    c.send(&plan.naming, peer, now, plan.payload, core.stats());
                }
            }
        }
        Scenario::Chat | Scenario::Soak => {
            let n = users.len().max(1) as u64;
            for (k, &u) in users.iter().enumerate() {
                // Spread first sends evenly over one interval.
                let offset = plan.interval.mul_f64(k as f64 / n as f64);
                glommio::spawn_local(chat_sender(core.clone(), core.client(u), offset)).detach();
            }
        }
        Scenario::Idle => {
            glommio::spawn_local(keepalives(core.clone())).detach();
        }
        Scenario::Muc => {
            if let Some(m) = &plan.muc {
                muc::start(core, m, users);
            }
        }
        Scenario::Pep => {
            if let (Some(m), Some(p)) = (&core.pep, &plan.pep) {
                if users.contains(&pep::PUBLISHER) {
                    pep::start(core, m, p);
                }
            }
        }
        Scenario::Connect | Scenario::Register | Scenario::RelayServer | Scenario::Chart => {}
    }
}

async fn chat_sender(core: Rc<Core>, client: Rc<Client>, offset: Duration) {
    let plan = &core.plan;
    let n = plan.users;
    let u = client.u;
    let mut next = Instant::now() + offset;
    let mut k: u32 = 0;
    let across = plan.server_b.is_some();
    while wait_until(&core, next).await {
        let ts = core.shared.now_ns();
        for _ in 0..plan.burst {
            let to = if across {
                across::chat_target(u, k, n)
            } else {
                (u + 1 + k % 8) % n
            };
            k = k.wrapping_add(1);
            if to != u {
                // A user whose connection is down skips its turn (the soak reconnects it).
                client.send(&plan.naming, to, ts, plan.payload, core.stats());
            }
        }
        next += plan.interval;
    }
}

/// Sleep until `at`; whether the measured phase is still on (fixed-schedule senders stop when not).
pub async fn wait_until(core: &Core, at: Instant) -> bool {
    let now = Instant::now();
    if at > now {
        sleep(at - now).await;
    }
    core.shared.phase() == phase::RUN
}

async fn keepalives(core: Rc<Core>) {
    let period = core.plan.keepalive.max(Duration::from_millis(10));
    while core.shared.phase() == phase::RUN {
        // Sleep in short steps so the end of the run is noticed promptly.
        let until = Instant::now() + period;
        while Instant::now() < until && core.shared.phase() == phase::RUN {
            sleep(Duration::from_millis(100).min(period)).await;
        }
        let clients: Vec<Rc<Client>> = core.clients.borrow().values().cloned().collect();
        for c in clients {
            c.push_raw(|b| b.push(b' '));
        }
    }
}
