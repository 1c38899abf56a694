//! Federation in the runtime: the s2s configurations built once for every shard, and per shard the
//! outgoing stream table (`federation::table`) with the tasks driving its streams (`s2s_out`).
//! Stanzas for a remote domain arrive on its home shard through [`crate::shard::Shard::route_remote`];
//! dialback verifications asked by incoming streams (`s2s_in`) arrive as mesh tasks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::HashMap;

use super::s2s_dns::Dns;
use super::s2s_io::Signal;
use super::ShardCtx;
use crate::config::{Config, S2sListenerConfig, S2sTls, StaticAddress};
use crate::federation::table::{self, Failed, OutTable, Pair, Queued, Refused, State};
use crate::hooks::Acc;
use crate::s2s::{AuthMethod, S2sConfig, Trust};
use crate::shard::{ConnMsg, SessionRef, Shard};
use crate::xmpp::StanzaErrorCondition;

/// How often the table looks for streams past their deadline or idle.
const TICK: Duration = Duration::from_secs(1);

/// Outgoing pairs (local domain, remote domain) per shard at once: each is a task and a DNS
/// lookup, and remotes choose the domains of their dialback requests. Past it a stanza for a new
/// pair bounces `resource-constraint`, a verification is answered failed.
const MAX_REMOTE_LINKS: usize = 1000;
/// Incoming s2s connections per shard at once (authenticated or not); past it a new one is
/// closed at once.
pub(super) const MAX_INCOMING: usize = 500;

/// Why federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum S2sSetupError {
    /// The certificate or key could not be loaded.
    #[error("s2s certificate: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// rustls refused the certificate or key.
    #[error("s2s TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// `cafile` could not be read.
    #[error("s2s.cafile: {0}")]
    Trust(#[from] crate::s2s::TrustError),
    /// No randomness for the dialback secret.
    #[error("s2s secret: {0}")]
    Random(getrandom::Error),
    /// The resolver thread.
    #[error("{0}")]
    Dns(#[from] super::s2s_dns::DnsError),
}

/// What every shard shares: the outgoing streams' configuration, the resolver, static addresses.
pub(crate) struct S2sShared {
    pub(super) out: Arc<S2sConfig>,
    /// `out` with ALPN `xmpp-server` for direct TLS (XEP-0368).
    pub(super) out_direct: Arc<S2sConfig>,
    pub(super) dns: Dns,
    pub(super) address: BTreeMap<String, StaticAddress>,
    pub(super) limits: table::Limits,
}

/// An s2s listener ready to accept.
pub(crate) struct S2sListener {
    /// Address to bind (every shard binds it with SO_REUSEPORT).
    pub addr: std::net::SocketAddr,
    /// Its streams' configuration.
    pub cfg: Arc<S2sConfig>,
}

/// Builds the shared outgoing configuration and one per `[[listen.s2s]]`.
pub(crate) fn setup(config: &Config) -> Result<(Arc<S2sShared>, Vec<S2sListener>), S2sSetupError> {
    let s = &config.s2s;
    let (cert, key) = match (&s.certfile, &s.keyfile) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        // The c2s certificate: the first listener's, or the generated one.
        _ => match config
            .listen
            .c2s
            .iter()
            .find_map(|l| l.certfile.clone().zip(l.keyfile.clone()))
        {
            Some(pair) => pair,
            None => crate::tls::ensure_self_signed(&config.general)?,
        },
    };
    let served = crate::tls::ServedCert::open(&cert, &key)?;
    let mut trust = Trust::webpki_roots();
    if let Some(ca) = &s.cafile {
        trust.add_pem_file(ca)?;
    }
    let mut base = S2sConfig::new(config.general.hosts.iter().map(|h| h.to_string()).collect())
        .map_err(S2sSetupError::Random)?;
    if let Some(secret) = &s.secret {
        // Any length in, 32 bytes out: the same on every shard and every restart.
        use sha2::Digest;
        base.dialback_secret = sha2::Sha256::digest(secret.as_bytes()).into();
    }
    base.trust = Arc::new(trust);
    base.dialback = s.dialback;
    base.sasl_external = s.sasl_external;
    base.tls_client = Some(crate::s2s::client_tls_config(served.clone())?);
    let mut out = base.clone();
    out.auth_timeout = s.connect_timeout;
    // The remote rarely writes on our outgoing stream: idleness is judged on what we send
    // (the table's idle_timeout), not on input.
    out.idle_timeout = Duration::ZERO;
    let listeners = config
        .listen
        .s2s
        .iter()
        .map(|l| listener(&base, l, &served))
        .collect::<Result<_, _>>()?;
    let mut out_direct = out.clone();
    if let Some(client) = &out.tls_client {
        let mut client = (**client).clone();
        client.alpn_protocols = vec![crate::s2s::ALPN_XMPP_SERVER.to_vec()];
        out_direct.tls_client = Some(Arc::new(client));
    }
    let shared = S2sShared {
        out: Arc::new(out),
        out_direct: Arc::new(out_direct),
        dns: Dns::start(&s.nameservers)?,
        address: s.address.clone(),
        limits: table::Limits {
            max_queue: s.max_queue,
            max_queue_bytes: s.max_queue_bytes,
            max_queue_bytes_total: s.max_queue_bytes_total,
            connect_timeout: s.connect_timeout,
            idle_timeout: s.idle_timeout,
            send_timeout: s.send_timeout,
            max_links: MAX_REMOTE_LINKS,
        },
    };
    Ok((Arc::new(shared), listeners))
}

fn listener(
    base: &S2sConfig,
    l: &S2sListenerConfig,
    served: &Arc<crate::tls::ServedCert>,
) -> Result<S2sListener, S2sSetupError> {
    let mut cfg = base.clone();
    cfg.direct_tls = l.tls == S2sTls::Tls;
    cfg.tls_required = l.tls != S2sTls::Starttls;
    cfg.tls_server = Some(crate::s2s::server_tls_config(
        served.clone(),
        cfg.direct_tls,
    )?);
    cfg.limits = crate::xml::Limits {
        max_stanza_bytes: l.max_stanza_size,
        max_depth: l.max_depth,
        max_attrs: l.max_attrs,
    };
    cfg.idle_timeout = l.idle_timeout;
    Ok(S2sListener {
        addr: std::net::SocketAddr::new(l.ip_address, l.port),
        cfg: Arc::new(cfg),
    })
}

/// `cfg` with the domains of the services registered on `shard` (MUC, pubsub, upload) and of the
/// configured external components among its hosts: remote servers may address them, and we answer
/// dialback for them.
pub(crate) fn with_services(cfg: &Arc<S2sConfig>, shard: &Shard) -> Arc<S2sConfig> {
    let components = shard
        .ext
        .get::<crate::component::Routes>()
        .map(crate::component::Routes::configured_domains)
        .unwrap_or_default();
    let mut extra: Vec<String> = shard
        .local_routes
        .iter()
        .filter(|d| shard.service(d).is_some())
        .cloned()
        .chain(components)
        .filter(|d| !cfg.hosts.contains(d))
        .collect();
    if extra.is_empty() {
        return cfg.clone();
    }
    extra.sort();
    extra.dedup();
    let mut with = (**cfg).clone();
    with.hosts.extend(extra);
    Arc::new(with)
}

/// A dialback verification an incoming stream asked for, on its way to the outgoing stream
/// towards the remote's authoritative server.
#[derive(Debug)]
pub(crate) struct Verify {
    /// Our domain (the `to` of the `<db:result/>`).
    pub local: String,
    /// The remote domain claimed.
    pub remote: String,
    /// The incoming stream's id.
    pub id: String,
    /// The key it sent.
    pub key: String,
    /// The incoming connection to answer.
    pub answer_to: SessionRef,
}

/// The outgoing stream task of a pair: its generation (a newer task replaces an older one) and
/// what wakes it.
pub(super) struct OutTask {
    pub(super) gen: u64,
    pub(super) signal: Signal,
    /// Close the stream (idle, stalled or shutdown).
    pub(super) close: Cell<bool>,
}

/// Counters of how streams authenticated (for operators and the wire tests).
struct AuthCounters {
    in_dialback: prometheus_client::metrics::counter::Counter,
    in_external: prometheus_client::metrics::counter::Counter,
    out_dialback: prometheus_client::metrics::counter::Counter,
    out_external: prometheus_client::metrics::counter::Counter,
    out_failed: prometheus_client::metrics::counter::Counter,
    out_stalled: prometheus_client::metrics::counter::Counter,
}

/// One shard's federation state.
pub(crate) struct S2sRt {
    pub(super) shared: Arc<S2sShared>,
    ctx: Weak<ShardCtx>,
    pub(super) table: RefCell<OutTable<Acc, Verify>>,
    pub(super) tasks: RefCell<HashMap<Pair, Rc<OutTask>>>,
    next_gen: Cell<u64>,
    /// Set at shutdown: streams opened afterwards close at once, closed ones do not reopen.
    pub(super) closing: Cell<bool>,
    counters: AuthCounters,
}

/// How `S2sRt` is found from a `&mut Shard` (mesh tasks carrying verifications).
#[derive(Clone)]
pub(super) struct S2sExt(pub(super) Rc<S2sRt>);

impl S2sRt {
    /// Installs federation on this shard: the remote handler, the verification entry point and
    /// the periodic table tick. Returns the tick task.
    pub(crate) fn install(shared: Arc<S2sShared>, ctx: &Rc<ShardCtx>) -> glommio::Task<()> {
        let counters = {
            let shard = ctx.shard.borrow();
            let m = &shard.metrics;
            AuthCounters {
                in_dialback: m.counter(
                    "petrel_s2s_in_dialback",
                    "Incoming s2s domains authenticated by dialback",
                ),
                in_external: m.counter(
                    "petrel_s2s_in_sasl_external",
                    "Incoming s2s domains authenticated by SASL EXTERNAL",
                ),
                out_dialback: m.counter(
                    "petrel_s2s_out_dialback",
                    "Outgoing s2s streams authenticated by dialback",
                ),
                out_external: m.counter(
                    "petrel_s2s_out_sasl_external",
                    "Outgoing s2s streams authenticated by SASL EXTERNAL",
                ),
                out_failed: m.counter("petrel_s2s_out_failed", "Outgoing s2s streams that failed"),
                out_stalled: m.counter(
                    "petrel_s2s_out_stalled",
                    "Outgoing s2s streams closed because the remote read nothing for send_timeout",
                ),
            }
        };
        let limits = shared.limits;
        let rt = Rc::new(S2sRt {
            shared,
            ctx: Rc::downgrade(ctx),
            table: RefCell::new(OutTable::new(limits)),
            tasks: RefCell::default(),
            next_gen: Cell::new(0),
            closing: Cell::new(false),
            counters,
        });
        {
            let mut shard = ctx.shard.borrow_mut();
            let handler = rt.clone();
            shard.set_remote_handler(Rc::new(move |shard, acc| handler.push(shard, acc)));
            shard.ext.insert(S2sExt(rt.clone()));
        }
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(TICK).await;
                rt.tick();
                ctx.flush();
            }
        })
    }

    /// The shard context (alive while any of its tasks runs).
    pub(super) fn ctx(&self) -> Option<Rc<ShardCtx>> {
        self.ctx.upgrade()
    }

    /// A stanza for a remote domain, on its home shard.
    fn push(self: &Rc<Self>, shard: &mut Shard, acc: Acc) {
        let pair = Pair::new(acc.from.domain(), acc.to.domain());
        let len = acc.stanza.bytes().len();
        let pushed = self
            .table
            .borrow_mut()
            .push(&pair, acc, len, Instant::now());
        match pushed {
            Ok(q) => self.started(pair, q),
            Err(Refused { item, cond }) => shard.bounce(&item, cond),
        }
    }

    /// A verification for the outgoing stream (`local` -> `remote`), on the remote's home shard.
    fn verify(self: &Rc<Self>, shard: &mut Shard, v: Verify) {
        let pair = Pair::new(&v.local, &v.remote);
        let pushed = self
            .table
            .borrow_mut()
            .push_verify(&pair, v, Instant::now());
        match pushed {
            Ok(q) => self.started(pair, q),
            Err(Refused { item, .. }) => answer(shard, item, None),
        }
    }

    /// Opens a stream for `pair` when the table asks, or wakes the one there is.
    fn started(self: &Rc<Self>, pair: Pair, q: Queued) {
        let task = self.tasks.borrow().get(&pair).cloned();
        match task {
            Some(t) if !q.open => t.signal.wake(),
            // A new pair, or one whose task is gone (ended between a close and this stanza).
            _ => self.spawn(pair),
        }
    }

    /// Closes every outgoing stream (server shutdown); streams opened afterwards close at once.
    pub(crate) fn close_all(&self) {
        self.closing.set(true);
        for t in self.tasks.borrow().values() {
            t.close.set(true);
            t.signal.wake();
        }
    }

    /// True while stanzas wait for an outgoing stream that is ready or being set up (not failed).
    pub(crate) fn waiting(&self) -> bool {
        self.table
            .borrow()
            .list()
            .iter()
            .any(|(_, state, n)| *n > 0 && !matches!(state, State::Failed { .. }))
    }

    /// Outgoing stream tasks still running.
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().len()
    }

    fn spawn(self: &Rc<Self>, pair: Pair) {
        let gen = self.next_gen.get() + 1;
        self.next_gen.set(gen);
        let task = Rc::new(OutTask {
            gen,
            signal: Signal::default(),
            close: Cell::new(self.closing.get()),
        });
        self.tasks.borrow_mut().insert(pair.clone(), task.clone());
        glommio::spawn_local(super::s2s_out::run(self.clone(), pair, task)).detach();
    }

    /// True while `task` is the current task of `pair` and the pair has not failed.
    pub(super) fn owns(&self, pair: &Pair, task: &OutTask) -> bool {
        let current = self
            .tasks
            .borrow()
            .get(pair)
            .is_some_and(|t| t.gen == task.gen);
        current
            && !matches!(
                self.table.borrow().state(pair),
                Some(State::Failed { .. }) | None
            )
    }

    /// The task of `pair` ends.
    pub(super) fn task_ended(&self, pair: &Pair, task: &OutTask) {
        let mut tasks = self.tasks.borrow_mut();
        if tasks.get(pair).is_some_and(|t| t.gen == task.gen) {
            tasks.remove(pair);
        }
    }

    /// The stream of `pair` failed: what waited is answered.
    pub(super) fn fail(&self, pair: &Pair, cond: StanzaErrorCondition) {
        self.counters.out_failed.inc();
        let failed = self.table.borrow_mut().failed(pair, cond, Instant::now());
        self.answer_failed(vec![failed]);
    }

    /// The stream of `pair` closed without failing: true when a new stream is to be opened (see
    /// [`OutTable::closed`]); a stream that took nothing fails what waits.
    pub(super) fn closed(&self, pair: &Pair) -> bool {
        let closed = self.table.borrow_mut().closed(pair, Instant::now());
        match closed {
            table::Closed::Again => true,
            table::Closed::Forgotten => false,
            table::Closed::Failed(f) => {
                self.counters.out_failed.inc();
                self.answer_failed(vec![f]);
                false
            }
        }
    }

    /// A stream authenticated with `method`.
    pub(super) fn authenticated(&self, incoming: bool, method: AuthMethod) {
        let c = &self.counters;
        match (incoming, method) {
            (true, AuthMethod::Dialback) => c.in_dialback.inc(),
            (true, AuthMethod::SaslExternal) => c.in_external.inc(),
            (false, AuthMethod::Dialback) => c.out_dialback.inc(),
            (false, AuthMethod::SaslExternal) => c.out_external.inc(),
        };
    }

    fn answer_failed(&self, failed: Vec<Failed<Acc, Verify>>) {
        let Some(ctx) = self.ctx() else { return };
        {
            let mut shard = ctx.shard.borrow_mut();
            for f in failed {
                tracing::info!(local = f.pair.local, remote = f.pair.remote, cond = ?f.cond, bounced = f.stanzas.len(), "s2s: outgoing stream failed");
                for acc in f.stanzas {
                    shard.bounce(&acc, f.cond);
                }
                for v in f.verifies {
                    answer(&mut shard, v, None);
                }
            }
            shard.drain_to_route();
        }
        ctx.flush();
    }

    fn tick(&self) {
        let tick = self.table.borrow_mut().tick(Instant::now());
        for pair in &tick.stalled {
            self.counters.out_stalled.inc();
            tracing::warn!(
                local = pair.local,
                remote = pair.remote,
                send_timeout = ?self.shared.limits.send_timeout,
                "s2s: the remote read nothing while stanzas waited; closing the stream, a new one takes what its socket never took"
            );
        }
        // A stalled stream closes as an idle one does: `</stream:stream>` after what is queued, the
        // socket dropped once it takes nothing for CLOSE_STALL, what it never took put back first.
        for pair in tick.idle.iter().chain(&tick.stalled) {
            if let Some(t) = self.tasks.borrow().get(pair) {
                t.close.set(true);
                t.signal.wake();
            }
        }
        for f in &tick.timed_out {
            self.counters.out_failed.inc();
            // The task sees the failure and ends.
            if let Some(t) = self.tasks.borrow().get(&f.pair) {
                t.signal.wake();
            }
        }
        if !tick.timed_out.is_empty() {
            self.answer_failed(tick.timed_out);
        }
    }
}

/// Answers a verification to its incoming connection, wherever it lives (`None`: the remote's
/// authoritative server could not be asked).
pub(super) fn answer(shard: &mut Shard, v: Verify, valid: Option<bool>) {
    shard.send_to_session(
        v.answer_to,
        ConnMsg::DialbackVerified {
            remote: v.remote,
            local: v.local,
            valid,
        },
    );
}

/// Runs on the home shard of `v.remote` (a mesh task): to the outgoing stream towards it; answered
/// as failed when federation is not running there.
pub(super) fn verify_on_home(shard: &mut Shard, v: Verify) {
    match shard.ext.get::<S2sExt>().cloned() {
        Some(S2sExt(rt)) => rt.verify(shard, v),
        None => answer(shard, v, None),
    }
}
