//! What one executor (one core) does: log its users in, then drive the scenario
//! for them. Everything here is single-threaded; the only shared state is the
//! run's [`Shared`] (atomics and interval histograms).

use crate::cli::Scenario;
use crate::conn::{self, Conn, ConnError, Outbox, ReadHalf, WriteHalf};
use crate::frame::{attr, name, FrameError, FrameKind, Framer};
use crate::login::{Login, LoginConfig, LoginError, Registered, Step};
use crate::msg::{write_message, BodyParser, Naming};
use crate::stats::CoreStats;
use futures_lite::future;
use glommio::timer::sleep;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
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
    /// Max window per sender.
    pub window: u32,
    /// Extra body bytes.
    pub payload: usize,
    /// Loopback source addresses to spread connections over (0 = kernel's choice).
    pub source_ips: u32,
    /// Use the relay's one-line handshake instead of XMPP.
    pub relay: bool,
    /// Idle keepalive period per session.
    pub keepalive: Duration,
    /// Number of cores.
    pub cores: usize,
}

impl Plan {
    /// The core that handles user `idx`: pairs (2k, 2k+1) stay on one core so a
    /// receiver can credit its partner's window without crossing threads.
    pub fn core_of(&self, idx: u32) -> usize {
        (idx as usize / 2) % self.cores.max(1)
    }

    fn source_ip(&self, idx: u32) -> Option<IpAddr> {
        (self.source_ips > 0).then(|| {
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
            IpAddr::V4(Ipv4Addr::from(base + idx % self.source_ips))
        })
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
}

impl Shared {
    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn phase(&self) -> u8 {
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
struct Session {
    rd: ReadHalf,
    wr: WriteHalf,
    framer: Framer,
    registered: Option<Registered>,
}

/// One core's state.
struct Core {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    idx: usize,
    /// Outboxes of this core's sessions, by user index.
    outboxes: RefCell<ahash::HashMap<u32, Rc<Outbox>>>,
    parser: BodyParser,
    /// Login errors already printed (only the first few are).
    printed: Cell<u32>,
}

impl Core {
    fn stats(&self) -> &CoreStats {
        &self.shared.cores[self.idx]
    }
}

/// Run one core: log in `users`, report ready, drive the scenario until DONE.
pub async fn run_core(plan: Arc<Plan>, shared: Arc<Shared>, idx: usize, users: Vec<u32>) {
    let core = Rc::new(Core {
        plan,
        shared,
        idx,
        outboxes: RefCell::new(Default::default()),
        parser: BodyParser::default(),
        printed: Cell::new(0),
    });
    login_all(&core, &users).await;
    core.shared.ready.fetch_add(1, Relaxed);
    while core.shared.phase() == phase::LOGIN {
        sleep(Duration::from_millis(1)).await;
    }
    if core.shared.phase() == phase::RUN {
        start_scenario(&core, &users);
    }
    while core.shared.phase() != phase::DONE {
        sleep(Duration::from_millis(5)).await;
    }
    for ob in core.outboxes.borrow().values() {
        ob.close();
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
    match future::or(open_session(core, u), timeout).await {
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
            if core.printed.get() < 5 {
                core.printed.set(core.printed.get() + 1);
                eprintln!("login of {} failed: {e}", core.plan.naming.bare(u));
            }
        }
    }
}

async fn open_session(core: &Core, u: u32) -> Result<Session, SessionError> {
    let plan = &core.plan;
    let mut conn = Conn::new(conn::connect(plan.addr, plan.source_ip(u))?);
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
                });
            }
            if rd.read_into(&mut framer).await? == 0 {
                return Err(SessionError::Eof);
            }
        }
    }
    let mut login = Login::new(&plan.login, plan.naming.local(u));
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
                    conn.start_tls(cfg, &plan.login.domain).await?;
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
                Step::Done(b) => {
                    if !b.is_empty() {
                        wr.write_all(&b).await?;
                    }
                    return Ok(Session {
                        rd,
                        wr,
                        framer,
                        registered: login.registered,
                    });
                }
            }
        }
    }
}

fn start_session(core: &Rc<Core>, u: u32, s: Session) {
    let outbox = Rc::new(Outbox::default());
    core.outboxes.borrow_mut().insert(u, outbox.clone());
    let writer = outbox.clone().run_writer(s.wr);
    glommio::spawn_local(async move {
        // A failed write shows up on the read side as a closed connection.
        let _ = writer.await;
    })
    .detach();
    let core = core.clone();
    glommio::spawn_local(read_loop(core, u, s.rd, s.framer, outbox)).detach();
}

async fn read_loop(core: Rc<Core>, u: u32, mut rd: ReadHalf, mut framer: Framer, ob: Rc<Outbox>) {
    loop {
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if !on_frame(&core, u, &ob, f.kind, framer.bytes(&f)) {
                        return lost_connection(&core);
                    }
                }
                Ok(None) => break,
                Err(_) => return lost_connection(&core),
            }
        }
        match rd.read_into(&mut framer).await {
            Ok(n) if n > 0 => {}
            _ => return lost_connection(&core),
        }
    }
}

fn lost_connection(core: &Core) {
    if core.shared.phase() != phase::DONE {
        core.stats().errors.fetch_add(1, Relaxed);
    }
}

/// Handle one stanza; `false` ends the connection.
fn on_frame(core: &Core, u: u32, ob: &Outbox, kind: FrameKind, el: &[u8]) -> bool {
    match kind {
        FrameKind::StreamClose => return false,
        FrameKind::StreamOpen => return true,
        FrameKind::Element => {}
    }
    match name(el) {
        b"message" => {
            if attr(el, b"type") == Some(b"error") {
                core.stats().errors.fetch_add(1, Relaxed);
                return true;
            }
            let Some((sent_ns, from)) = core.parser.parse(el) else {
                return true;
            };
            let now = core.shared.now_ns();
            core.stats()
                .record_delivery(now.saturating_sub(sent_ns) / 1000);
            if core.plan.scenario == Scenario::Max && core.shared.phase() == phase::RUN {
                // Closed loop: the delivery frees one slot of the sender's window.
                if let Some(sender) = core.outboxes.borrow().get(&from) {
                    let plan = &core.plan;
                    sender
                        .push_with(|b| write_message(b, &plan.naming, from, u, now, plan.payload));
                    core.stats().sent.fetch_add(1, Relaxed);
                }
            }
            true
        }
        b"iq" => {
            if matches!(attr(el, b"type"), Some(b"get") | Some(b"set")) {
                reply_iq(ob, el);
            }
            true
        }
        b"stream:error" => false,
        _ => true,
    }
}

/// Answer a server's iq: result for pings, service-unavailable otherwise.
fn reply_iq(ob: &Outbox, el: &[u8]) {
    let id = attr(el, b"id").unwrap_or_default();
    let from = attr(el, b"from");
    let ping = memchr::memmem::find(el, b"urn:xmpp:ping").is_some();
    ob.push_with(|b| {
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
    });
}

fn start_scenario(core: &Rc<Core>, users: &[u32]) {
    let plan = &core.plan;
    match plan.scenario {
        Scenario::Max => {
            let now = core.shared.now_ns();
            let obs = core.outboxes.borrow();
            for &u in users {
                let peer = u ^ 1; // pairs (2k, 2k+1)
                if !obs.contains_key(&peer) {
                    continue;
                }
                if let Some(ob) = obs.get(&u) {
                    ob.push_with(|b| {
                        for _ in 0..plan.window {
                            write_message(b, &plan.naming, u, peer, now, plan.payload);
                        }
                    });
                    core.stats().sent.fetch_add(u64::from(plan.window), Relaxed);
                }
            }
        }
        Scenario::Chat => {
            let n = users.len().max(1) as u64;
            for (k, &u) in users.iter().enumerate() {
                if let Some(ob) = core.outboxes.borrow().get(&u).cloned() {
                    // Spread first sends evenly over one interval.
                    let offset = plan.interval.mul_f64(k as f64 / n as f64);
                    glommio::spawn_local(chat_sender(core.clone(), u, ob, offset)).detach();
                }
            }
        }
        Scenario::Idle => {
            glommio::spawn_local(keepalives(core.clone())).detach();
        }
        Scenario::Connect | Scenario::Register | Scenario::RelayServer => {}
    }
}

async fn chat_sender(core: Rc<Core>, u: u32, ob: Rc<Outbox>, offset: Duration) {
    let plan = &core.plan;
    let n = plan.users;
    let mut next = Instant::now() + offset;
    let mut k: u32 = 0;
    loop {
        let now = Instant::now();
        if next > now {
            sleep(next - now).await;
        }
        if core.shared.phase() != phase::RUN || ob.is_closed() {
            return;
        }
        let to = (u + 1 + k % 8) % n;
        k = k.wrapping_add(1);
        if to != u {
            let ts = core.shared.now_ns();
            ob.push_with(|b| write_message(b, &plan.naming, u, to, ts, plan.payload));
            core.stats().sent.fetch_add(1, Relaxed);
        }
        next += plan.interval;
    }
}

async fn keepalives(core: Rc<Core>) {
    let period = core.plan.keepalive.max(Duration::from_millis(10));
    while core.shared.phase() == phase::RUN {
        // Sleep in short steps so the end of the run is noticed promptly.
        let until = Instant::now() + period;
        while Instant::now() < until && core.shared.phase() == phase::RUN {
            sleep(Duration::from_millis(100).min(period)).await;
        }
        for ob in core.outboxes.borrow().values() {
            ob.push(b" ");
        }
    }
}
