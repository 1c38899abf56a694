//! The runtime: the only module that names glommio. It starts one `LocalExecutor` per shard, pinned to
//! one CPU, each with its own listeners on the same ports (SO_REUSEPORT: the kernel spreads
//! connections, a connection stays on the shard that accepted it), wires the cross-shard mesh, and
//! drives connections (`conn`) and rings around the sans-IO cores (`c2s::C2s`, `shard::Shard`).

mod address_slots;
mod admin;
mod backlog;
mod bosh;
mod cluster;
mod component;
mod conn;
mod conn_auth;
mod conn_sm;
mod cpus;
pub mod data_lock;
mod explain;
mod http;
mod http_upload;
mod jobs;
mod listeners;
mod mesh;
mod pump;
mod rings;
mod s2s;
mod s2s_dns;
mod s2s_in;
mod s2s_io;
mod s2s_out;
mod shutdown;

pub use cpus::allowed_cpus;
#[allow(unused_imports)] // The admin API (merged separately) calls it.
pub(crate) use explain::explain;
pub use explain::EXPLAIN_TIMEOUT;
pub use rings::ring_depth;
pub use s2s::S2sSetupError;
pub use shutdown::ShutdownFlag;

use crate::xml::StanzaType;
use ahash::HashSet;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::store::{LoginGuard, StorePool};
use crate::web::Link;

/// How often a shard looks for IQs it sent that timed out (`Shard::expire_iqs`).
const IQ_EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RtError {
    /// More shards than CPUs the process may use.
    #[error("--shards {asked} is more than the {allowed} CPUs this process may use (see taskset/cgroups); pass --allow-oversubscribe to run anyway")]
    TooManyShards {
        /// Shards asked for.
        asked: usize,
        /// CPUs available.
        allowed: usize,
    },
    /// Zero shards.
    #[error("--shards must be at least 1")]
    NoShards,
    /// Another server runs on the data directory.
    #[error(transparent)]
    DataDir(#[from] data_lock::DataLockError),
    /// Reading the affinity mask failed.
    #[error("cannot read the CPU affinity mask: {0}")]
    Affinity(std::io::Error),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// TLS set-up failed.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// An executor could not be started.
    #[error("cannot start shard {shard}: {source}")]
    Executor {
        /// Shard index.
        shard: usize,
        /// glommio's error.
        source: glommio::GlommioError<()>,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// Something, another petrel perhaps, already listens on a configured address.
    #[error("cannot listen on {0}: the address is already in use (is another petrel serving this configuration?)")]
    AddrInUse(SocketAddr),
    /// A shard thread panicked or failed.
    #[error("shard {0} failed: {1}")]
    Shard(usize, String),
    /// A `[modules.*]` option is not acceptable.
    #[error("{0}")]
    Module(#[from] crate::modules::OptionError),
    /// A module's options are wrong.
    #[error("{0}")]
    ModuleCheck(#[from] crate::modules::ModuleError),
    /// Federation could not be set up (certificate, trust anchors, resolver).
    #[error("{0}")]
    S2s(#[from] S2sSetupError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How to start the shards.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Number of shards; `None` = one per CPU the process may use.
    pub shards: Option<usize>,
    /// Allow more shards than CPUs (tests on small machines); shards then share CPUs.
    pub allow_oversubscribe: bool,
}

/// SIGHUP: every certificate and key read from files is read again (renewals); new TLS
/// connections on every shard get the new pair, open ones keep theirs. A pair that fails to load
/// keeps the old one, with an error in the log.
fn reload_certificates() {
    let reloaded = crate::tls::reload_all();
    for r in &reloaded {
        match &r.outcome {
            Ok(true) => tracing::info!(cert = %r.cert.display(), "SIGHUP: new certificate served"),
            Ok(false) => tracing::info!(cert = %r.cert.display(), "SIGHUP: certificate unchanged"),
            Err(e) => tracing::error!(
                cert = %r.cert.display(), error = %e,
                "SIGHUP: certificate not reloaded, the previous one stays"
            ),
        }
    }
    if reloaded.is_empty() {
        tracing::info!("SIGHUP: no TLS certificate to reload");
    }
}

/// Every shard's listeners (each shard binds them all).
#[derive(Clone)]
struct Listeners {
    c2s: Vec<Arc<listeners::C2sListener>>,
    http: Vec<Arc<listeners::HttpListener>>,
    component: Vec<Arc<listeners::ComponentListener>>,
    s2s: Vec<Arc<s2s::S2sListener>>,
    /// What every shard's outgoing s2s streams share.
    s2s_shared: Arc<s2s::S2sShared>,
    /// This node in a cluster (one incarnation for every shard), if `[cluster]` is set.
    cluster: Option<Arc<crate::cluster::Node>>,
}

/// What every shard shares off the shards: the store pool and the login throttle its jobs use.
#[derive(Clone)]
struct OffShard {
    store: StorePool,
    login: LoginGuard,
    component_login: LoginGuard,
}

/// Everything a shard's tasks share (single-threaded: `Rc`/`RefCell`).
pub(crate) struct ShardCtx {
    pub shard: RefCell<Shard>,
    pub mesh: Rc<mesh::Mesh>,
    pub store: StorePool,
    /// Login throttling, locked only inside store pool jobs.
    pub login: LoginGuard,
    /// The same for component handshakes, counted apart: password guessers behind the same
    /// address as a component (loopback, a proxy) must not ban it, nor it them.
    pub component_login: LoginGuard,
    pub read_buf: RefCell<Box<[u8]>>,
    pub jobs: jobs::JobQueue,
    /// The admin API's settings.
    pub admin: admin::AdminState,
    /// [`ShardCtx::flush`]'s buffer of mesh messages, kept so a flush allocates nothing.
    pub outgoing: RefCell<Vec<(ShardId, ShardMsg)>>,
}

impl ShardCtx {
    /// Waits until no local mailbox the last deliveries filled is over its bound and the store is
    /// not far behind, then yields if the task ran long: what a receiver of other shards' (or
    /// nodes') traffic does between batches.
    pub async fn wait_for_room(&self) {
        loop {
            let pressured = self.shard.borrow_mut().pressured(None);
            let Some(mb) = pressured else { break };
            std::future::poll_fn(|cx| mb.poll_room(cx)).await;
        }
        std::future::poll_fn(|cx| {
            if self.jobs.poll_room(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        glommio::yield_if_needed().await;
    }

    /// Carries out what the shard queued for other shards; a stanza an outbox has no room for is
    /// answered with `resource-constraint` (see `mesh` for the policy).
    ///
    /// Each peer pushed to is woken once, at the end (see [`mesh::Mesh::send_unnotified`]).
    pub fn flush(self: &Rc<Self>) {
        // Taken, not borrowed: a nested flush (none is known) would only allocate its own.
        let mut out = self.outgoing.take();
        let (here, fenced) = {
            let shard = self.shard.borrow();
            (shard.id, crate::shard::fence::used(shard.shards))
        };
        loop {
            self.run_jobs();
            self.shard.borrow_mut().take_outgoing_into(&mut out);
            if out.is_empty() {
                break;
            }
            for (to, mut msg) in out.drain(..) {
                if fenced {
                    crate::shard::fence::stamp(&mut msg, here, |on| self.mesh.sent(on));
                }
                if let Err(msg) = self.mesh.send_unnotified(to, msg) {
                    self.mesh.rejected(to);
                    let mut shard = self.shard.borrow_mut();
                    shard.stats.outbox_rejected += 1;
                    if let ShardMsg::Multicast(acc, to) = &msg {
                        // Only past 8x the outbox bound: the fan-out of a room to that shard is
                        // dropped (counted and logged); its occupants miss this message.
                        shard.errors_dropped(to.len() as u64);
                        tracing::warn!(
                            shard = shard.id.0,
                            from = acc.from.as_str(),
                            recipients = to.len(),
                            "room fan-out dropped: the mesh towards its occupants is full"
                        );
                        continue;
                    }
                    if let Some(mut acc) = msg.into_acc() {
                        shard.unlocated(&mut acc);
                        if acc.ty() == StanzaType::Error {
                            shard.errors_dropped(1);
                            tracing::warn!(
                                shard = shard.id.0,
                                to = acc.to.as_str(),
                                "error stanza dropped: the mesh towards its recipient is full (or its shard stopped)"
                            );
                            continue;
                        }
                        shard.bounce(&acc, crate::xmpp::StanzaErrorCondition::ResourceConstraint);
                        shard.drain_to_route();
                    }
                }
            }
        }
        self.mesh.notify_sent();
        self.outgoing.replace(out);
    }
}

/// Starts the server and blocks until it stops (SIGINT/SIGTERM), then returns.
pub fn serve(config: Config, opts: ServeOptions) -> Result<(), RtError> {
    let flag = ShutdownFlag::default();
    flag.install_signal_handlers().map_err(RtError::Signals)?;
    // Process-wide, so only for a server process of its own (not for tests serving in-process);
    // the binary turned them off first thing.
    if config.shards.huge_pages {
        if let Err(error) = crate::heap::huge_pages(true) {
            tracing::warn!(%error, "could not turn transparent huge pages back on");
        }
    }
    serve_until(config, opts, flag)
}

/// Starts the server and blocks until `flag` is set and every shard has closed its sessions.
pub fn serve_until(config: Config, opts: ServeOptions, flag: ShutdownFlag) -> Result<(), RtError> {
    crate::auth::set_unknown_user_iterations(config.auth.scram_iterations);
    let cpus = allowed_cpus().map_err(RtError::Affinity)?;
    let n = opts.shards.unwrap_or(cpus.len());
    if n == 0 {
        return Err(RtError::NoShards);
    }
    if n > cpus.len() && !opts.allow_oversubscribe {
        return Err(RtError::TooManyShards {
            asked: n,
            allowed: cpus.len(),
        });
    }
    crate::modules::check(&config)?;
    let modules = crate::modules::c2s_options(&config)?;
    listeners::ensure_free(&config.listen).map_err(RtError::AddrInUse)?;
    // Held until the server has stopped (this function returns).
    let _data_dir = data_lock::DataDirLock::acquire(&config.general.data_dir)?;
    let config = Arc::new(config);
    let off_shard = OffShard {
        store: StorePool::start_backend(
            &crate::store::Backend::from_config(&config)?,
            config.store.pool_size,
            4096,
        )?,
        // Kept next to the store pool, whose threads alone lock it: see `store::login`.
        login: LoginGuard::new(config.auth.throttle.clone()),
        component_login: LoginGuard::new(config.auth.throttle.clone()),
    };
    // The process-wide registry `metrics::render` serves; shards take their handles in `run_shard`.
    crate::metrics::init().attach_store(&off_shard.store);
    let c2s: Vec<Arc<listeners::C2sListener>> = config
        .listen
        .c2s
        .iter()
        .map(|l| listeners::c2s_listener(l, &config.general, &modules).map(Arc::new))
        .collect::<Result<_, _>>()?;
    for l in &config.listen.http {
        let addr = l.session.ip_address;
        if l.handlers.contains(&crate::config::HttpHandler::Metrics) && !addr.is_loopback() {
            // The metrics carry no secrets but tell anyone who can reach them how busy the server
            // is and with what: say so once, the operator may mean it (a scraper elsewhere).
            tracing::warn!(
                port = l.session.port, ip = %addr,
                "/metrics is served without authentication beyond loopback (set the listener's \
                 handlers, or ip_address = \"127.0.0.1\", to keep it local)"
            );
        }
    }
    let http: Vec<Arc<listeners::HttpListener>> = config
        .listen
        .http
        .iter()
        .map(|l| listeners::http_listener(l, &config.general, &modules).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let component = config
        .listen
        .component
        .iter()
        .map(|l| {
            let server = config.general.hosts.first().map(|h| h.to_string());
            Arc::new(listeners::component_listener(
                l,
                &config.components,
                server.as_deref().unwrap_or_default(),
            ))
        })
        .collect();
    let (s2s_shared, s2s) = s2s::setup(&config)?;
    let listeners = Listeners {
        c2s,
        http,
        s2s: s2s.into_iter().map(Arc::new).collect(),
        s2s_shared,
        component,
        cluster: match config.cluster.as_ref() {
            Some(c) => {
                let c2s = config
                    .listen
                    .c2s
                    .first()
                    .map_or_else(String::new, |l| format!("{}:{}", l.ip_address, l.port));
                let mut node = crate::cluster::Node::new(c, c2s);
                if c.nats.iter().any(|u| u.tls) {
                    node.tls = Some(crate::tls::client_config(c.nats_cafile.as_deref())?);
                }
                Some(Arc::new(node))
            }
            None => None,
        },
    };
    let ends = mesh::build(n, config.shards.ring_capacity.max(2));
    let io_memory = config.shards.io_memory_kib * 1024;
    let ring_depth = rings::ring_depth(config.shards.ring_depth, n);
    tracing::info!(ring_depth, "io_uring ring depth per executor");
    let mut handles = Vec::new();
    for (i, ends) in ends.into_iter().enumerate() {
        let cpu = cpus[i % cpus.len()];
        let config = config.clone();
        let listeners = listeners.clone();
        let off_shard = off_shard.clone();
        let flag = flag.clone();
        let placement = if n > cpus.len() {
            Placement::Unbound
        } else {
            Placement::Fixed(cpu)
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("petrel-shard-{i}"))
            .io_memory(io_memory)
            .ring_depth(ring_depth)
            .spawn(move || async move {
                run_shard(
                    ShardId(i as u16),
                    n,
                    config,
                    listeners,
                    ends,
                    off_shard,
                    flag,
                )
                .await
            })
            .map_err(|source| RtError::Executor {
                shard: i,
                source: strip(source),
            })?;
        handles.push(handle);
    }
    tracing::info!(shards = n, "petrel started");
    let mut result = Ok(());
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // One shard failing (e.g. its port is taken) stops the others too.
                flag.trigger();
                result = Err(e);
            }
            Err(e) => {
                flag.trigger();
                result = Err(RtError::Shard(i, e.to_string()));
            }
        }
    }
    off_shard.store.shutdown();
    tracing::info!("petrel stopped");
    result
}

/// Binds `addr` on this shard and hands every accepted connection to `on_accept`.
fn accept_loop(
    id: ShardId,
    addr: SocketAddr,
    on_accept: impl Fn(glommio::net::TcpStream) + 'static,
) -> Result<glommio::Task<()>, RtError> {
    let listener = TcpListener::bind(addr).map_err(|e| RtError::Listen {
        addr,
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => on_accept(stream),
                Err(e) => {
                    tracing::warn!(shard = id.0, error = %e, "accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }))
}

/// The peer of an accepted XMPP stream (none: it is already gone), with Nagle off (stanzas are
/// small and latency matters).
fn stream_peer(stream: &glommio::net::TcpStream) -> Option<SocketAddr> {
    let peer = stream.peer_addr().ok()?;
    let _ = stream.set_nodelay(true);
    Some(peer)
}

fn strip<T>(e: glommio::GlommioError<T>) -> glommio::GlommioError<()> {
    match e {
        glommio::GlommioError::IoError(io) => glommio::GlommioError::IoError(io),
        other => glommio::GlommioError::IoError(std::io::Error::other(other.to_string())),
    }
}

/// The stop's barrier: in each round this shard sends a marker to every other shard behind what
/// it sent before, and waits (bounded by `deadline`) until every shard has handled every marker of
/// the round (see [`ShutdownFlag::marker`]).
async fn mesh_barrier(
    ctx: &Rc<ShardCtx>,
    flag: &ShutdownFlag,
    n: usize,
    deadline: std::time::Instant,
) {
    if n < 2 {
        return;
    }
    let me = ctx.shard.borrow().id;
    for round in 0..shutdown::BARRIER_ROUNDS {
        {
            let mut shard = ctx.shard.borrow_mut();
            for to in (0..n).map(|i| ShardId(i as u16)).filter(|&to| to != me) {
                let flag = flag.clone();
                shard.send_to_shard(to, ShardMsg::Run(Box::new(move |_| flag.marker(round))));
            }
        }
        ctx.flush();
        while flag.markers(round) < n * (n - 1) && std::time::Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn run_shard(
    id: ShardId,
    n: usize,
    config: Arc<Config>,
    listeners: Listeners,
    ends: mesh::MeshEnds,
    off_shard: OffShard,
    flag: ShutdownFlag,
) -> Result<(), RtError> {
    if n > 1 {
        // What the other shards send this one waits up to a nap, instead of costing them a
        // wake-up each time this shard runs out of work (see the README's `shards.nap_us`).
        glommio::executor().set_nap(Some(Duration::from_micros(config.shards.nap_us as u64)));
    }
    let hosts: HashSet<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    let mailbox_limit = listeners
        .c2s
        .iter()
        .map(|l| l.c2s.outbound_queue_bytes)
        .max()
        .unwrap_or(256 * 1024);
    let mut shard = Shard::new(
        id,
        n,
        Rc::new(hosts),
        config.general.routing_modules.clone().into(),
        mailbox_limit,
    );
    // Before the modules start: they take their counters from these handles.
    shard.metrics = crate::metrics::init().shard(id);
    // Domains added at run time (admin API) share the handlers of the first configured host; set
    // before the modules start, which may keep the set.
    let first = config.general.hosts.first().map_or("", |h| h.as_str());
    shard.dynamic_hosts = crate::shard::DynamicHosts::new(first);
    crate::modules::start(&config, &mut shard);
    // Component routes (XEP-0114): every configured domain is known, none connected yet.
    shard.ext.insert(crate::component::Routes::new(
        config.components.keys().map(|d| d.to_string()),
    ));
    match off_shard.store.call(|s| s.list_domains()).await {
        Ok(Ok(domains)) => {
            for d in domains {
                shard.dynamic_hosts.insert(&d);
            }
        }
        Ok(Err(e)) | Err(e) => {
            tracing::error!(shard = id.0, error = %e, "cannot load the run-time domains")
        }
    }
    let (mesh, receivers) =
        mesh::Mesh::connect(ends, config.shards.outbox_capacity, &shard.metrics).await;
    let ctx = Rc::new(ShardCtx {
        shard: RefCell::new(shard),
        mesh: mesh.clone(),
        store: off_shard.store,
        login: off_shard.login,
        component_login: off_shard.component_login,
        read_buf: RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice()),
        jobs: jobs::JobQueue::default(),
        admin: admin::AdminState::new(&config),
        outgoing: RefCell::new(Vec::new()),
    });
    let mut tasks = vec![s2s::S2sRt::install(listeners.s2s_shared.clone(), &ctx)];
    if let (Some(node), Some(cfg)) = (&listeners.cluster, &config.cluster) {
        tasks.extend(cluster::install(node, &cfg.nats, &ctx));
    }
    if id.index() == 0 {
        // Modules' periodic store work (archive retention): queued from one shard only.
        for p in crate::modules::periodic(&config) {
            let ctx = ctx.clone();
            tasks.push(glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(p.every).await;
                    tracing::debug!(task = p.name, "periodic store work");
                    let run = p.run.clone();
                    {
                        let mut shard = ctx.shard.borrow_mut();
                        let shard = &mut *shard;
                        let mut hctx =
                            crate::hooks::HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
                        hctx.store(None, move |store| {
                            run(store);
                            crate::hooks::JobDone::default()
                        });
                    }
                    ctx.flush();
                }
            }));
        }
    }
    // Every second: IQs the server sent and nothing answered (`Shard::send_iq`) time out, and the
    // route's per-second tables (`sm::order`, the location cache) count a second.
    {
        let ctx = ctx.clone();
        tasks.push(glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(IQ_EXPIRY_TICK).await;
                let now = std::time::Instant::now();
                crate::hooks::clock::set_now(now);
                let mut shard = ctx.shard.borrow_mut();
                shard.expire_iqs(now);
                shard.tick();
                drop(shard);
                ctx.flush();
            }
        }));
    }
    for peer in 0..n {
        if peer != id.index() {
            tasks.push(glommio::spawn_local(
                mesh.clone().drain_outbox(ShardId(peer as u16)),
            ));
        }
    }
    for (from, rx) in receivers {
        let ctx = ctx.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                crate::hooks::clock::set_now(std::time::Instant::now());
                ctx.shard.borrow_mut().handle_from(from, msg);
                ctx.flush();
                // Backpressure: a local recipient that cannot keep up holds this ring (it fills,
                // then the sending shard's outbox, which stops its readers). Its connection drains
                // the mailbox without any ring, so this wait cannot close a cycle.
                ctx.wait_for_room().await;
            }
            tracing::debug!(shard = id.0, from = from.0, "ring closed");
        }));
    }
    let mut accepts = Vec::new();
    for l in &listeners.c2s {
        let l = l.clone();
        let ctx2 = ctx.clone();
        accepts.push(accept_loop(id, l.addr, move |stream| {
            let Some(peer) = stream_peer(&stream) else {
                return;
            };
            let run = conn::run(stream, peer, Link::Raw, ctx2.clone(), l.c2s.clone());
            glommio::spawn_local(run).detach();
        })?);
    }
    for l in &listeners.http {
        let l = l.clone();
        let ctx2 = ctx.clone();
        accepts.push(accept_loop(id, l.addr, move |stream| {
            glommio::spawn_local(http::run(stream, ctx2.clone(), l.clone())).detach();
        })?);
    }
    for l in &listeners.s2s {
        // Our services (conference.*, pubsub.*) are s2s domains too, known once modules started.
        let cfg = s2s::with_services(&l.cfg, &ctx.shard.borrow());
        let ctx2 = ctx.clone();
        accepts.push(accept_loop(id, l.addr, move |stream| {
            let Some(peer) = stream_peer(&stream) else {
                return;
            };
            glommio::spawn_local(s2s_in::run(stream, peer, ctx2.clone(), cfg.clone())).detach();
        })?);
    }
    for l in &listeners.component {
        let l = l.clone();
        let ctx2 = ctx.clone();
        accepts.push(accept_loop(id, l.addr, move |stream| {
            let Some(peer) = stream_peer(&stream) else {
                return;
            };
            let run = component::run(stream, peer, ctx2.clone(), l.cfg.clone());
            glommio::spawn_local(run).detach();
        })?);
    }
    tracing::debug!(shard = id.0, "shard ready");
    while !flag.is_set() {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        if flag.take_hangup() {
            reload_certificates();
        }
    }
    // Graceful stop: no new connections, `system-shutdown` to every session, give them time to flush.
    drop(accepts);
    {
        use crate::hooks::{Events, NodeStopping};
        let mut shard = ctx.shard.borrow_mut();
        Events::<NodeStopping>::emit(&mut shard, &NodeStopping);
        shard.close_all(crate::xmpp::StreamErrorCondition::SystemShutdown);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Every shard goes on routing until every shard's sessions are closed: a closing session's
    // last stanzas cross the mesh to their recipients' home shards (offline storage), and its
    // client's acknowledgements come back from there (a stream-managed session waits for them,
    // `C2s::close_when_handled`). A shard that stopped first would drop what was sent to it, and
    // acknowledge it. So: this shard's sessions, then every shard's (bounded).
    let drain = std::time::Instant::now() + Duration::from_secs(3);
    let now = std::time::Instant::now;
    while ctx.shard.borrow().conn_count() > 0 && now() < drain {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    flag.sessions_closed();
    while flag.shards_quiet() < n && now() < drain {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // What the closing sessions and the stopping modules of every shard sent (unavailable
    // presences to remote contacts, rooms' goodbyes to remote occupants) crosses the mesh, up to
    // `BARRIER_ROUNDS` hops, before the outgoing streams close: a timed wait here lost a room's
    // goodbye on a busy machine, and a shard that stopped dropped what was still on its way.
    mesh_barrier(&ctx, &flag, n, drain).await;
    let s2s = ctx.shard.borrow().ext.get::<s2s::S2sExt>().cloned();
    if let Some(s2s::S2sExt(rt)) = &s2s {
        // The queues drain (all bounded), and only then are the outgoing streams closed.
        while rt.waiting() && now() < drain {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        rt.close_all();
    }
    let busy = || {
        ctx.shard.borrow().conn_count() > 0
            || s2s
                .as_ref()
                .is_some_and(|s2s::S2sExt(rt)| rt.task_count() > 0)
    };
    while busy() && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(shard = id.0, "shard stopped");
    drop(tasks);
    Ok(())
}
