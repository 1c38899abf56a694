//! Counters and latency histograms shared between the per-core executors and
//! the reporting thread, the once-a-second progress line, and the final report.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Highest latency recorded, in microseconds (one hour); larger values saturate.
const MAX_US: u64 = 3_600_000_000;

/// A fresh latency histogram in microseconds with 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    // Bounds are constants that satisfy hdrhistogram's rules (low >= 1, high >= 2*low).
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid")
}

/// Record `us` microseconds, saturating at the histogram's top.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Counters and interval histograms of one core, written by that core only.
/// Aligned so two cores never share a cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct CoreStats {
    /// Sessions logged in.
    pub connected: AtomicU64,
    /// Logins that failed.
    pub login_failed: AtomicU64,
    /// Messages queued for sending.
    pub sent: AtomicU64,
    /// Load messages received.
    pub delivered: AtomicU64,
    /// Errors after login: stream errors, message errors, unexpected closes.
    pub errors: AtomicU64,
    /// Load messages delivered after a later message of the same sender.
    pub out_of_order: AtomicU64,
    /// Registrations that created an account.
    pub registered: AtomicU64,
    /// Registrations that found the account already there.
    pub existed: AtomicU64,
    /// Time of the last successful login, ns since run start.
    pub last_login_ns: AtomicU64,
    /// Messages the server acknowledged (XEP-0198).
    pub acked: AtomicU64,
    /// Messages sent again after a resumption or a fresh login.
    pub resent: AtomicU64,
    /// Gauge: stanzas sent and not yet acknowledged (XEP-0198 queues).
    pub unacked: AtomicU64,
    /// Gauge: sessions up (soak).
    pub online: AtomicU64,
    /// Connections lost or cut (soak).
    pub drops: AtomicU64,
    /// Sessions resumed (soak).
    pub resumed: AtomicU64,
    /// Resumptions refused, followed by a fresh login (soak).
    pub resume_failed: AtomicU64,
    /// Connection or login attempts that failed while reconnecting (soak).
    pub retries: AtomicU64,
    /// Users that logged in afresh after the sweep's clean close (soak).
    pub swept: AtomicU64,
    /// Occupants the service confirmed in their room (muc, status 110).
    pub in_room: AtomicU64,
    /// Occupants that saw all their room's occupants (muc).
    pub joined: AtomicU64,
    /// Occupants that did not before the login timeout (muc).
    pub join_failed: AtomicU64,
    /// Joins the service refused and that were tried again (muc).
    pub join_retries: AtomicU64,
    /// Server pings (XEP-0199) answered.
    pub pings: AtomicU64,
    /// Delivery latencies since the reporter last took them.
    pub lat: Mutex<Option<Histogram<u64>>>,
    /// Login latencies since the reporter last took them.
    pub login: Mutex<Option<Histogram<u64>>>,
}

impl CoreStats {
    /// Record a delivery latency.
    pub fn record_delivery(&self, us: u64) {
        self.delivered.fetch_add(1, Relaxed);
        let mut g = lock(&self.lat);
        record(g.get_or_insert_with(new_hist), us);
    }

    /// Record a login latency and its completion time.
    pub fn record_login(&self, us: u64, done_ns: u64) {
        self.connected.fetch_add(1, Relaxed);
        self.last_login_ns.fetch_max(done_ns, Relaxed);
        let mut g = lock(&self.login);
        record(g.get_or_insert_with(new_hist), us);
    }
}

/// Lock ignoring poisoning: a panicking core already aborts the run's result.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sum of all cores' counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// See [`CoreStats::connected`].
    pub connected: u64,
    /// See [`CoreStats::login_failed`].
    pub login_failed: u64,
    /// See [`CoreStats::sent`].
    pub sent: u64,
    /// See [`CoreStats::delivered`].
    pub delivered: u64,
    /// See [`CoreStats::errors`].
    pub errors: u64,
    /// See [`CoreStats::out_of_order`].
    pub out_of_order: u64,
    /// See [`CoreStats::registered`].
    pub registered: u64,
    /// See [`CoreStats::existed`].
    pub existed: u64,
    /// See [`CoreStats::acked`].
    pub acked: u64,
    /// See [`CoreStats::resent`].
    pub resent: u64,
    /// See [`CoreStats::unacked`].
    pub unacked: u64,
    /// See [`CoreStats::online`].
    pub online: u64,
    /// See [`CoreStats::drops`].
    pub drops: u64,
    /// See [`CoreStats::resumed`].
    pub resumed: u64,
    /// See [`CoreStats::resume_failed`].
    pub resume_failed: u64,
    /// See [`CoreStats::retries`].
    pub retries: u64,
    /// See [`CoreStats::swept`].
    pub swept: u64,
    /// See [`CoreStats::in_room`].
    pub in_room: u64,
    /// See [`CoreStats::joined`].
    pub joined: u64,
    /// See [`CoreStats::join_failed`].
    pub join_failed: u64,
    /// See [`CoreStats::join_retries`].
    pub join_retries: u64,
    /// See [`CoreStats::pings`].
    pub pings: u64,
}

/// Add up the cores' counters.
pub fn totals(cores: &[CoreStats]) -> Totals {
    let mut t = Totals::default();
    for c in cores {
        t.connected += c.connected.load(Relaxed);
        t.login_failed += c.login_failed.load(Relaxed);
        t.sent += c.sent.load(Relaxed);
        t.delivered += c.delivered.load(Relaxed);
        t.errors += c.errors.load(Relaxed);
        t.out_of_order += c.out_of_order.load(Relaxed);
        t.registered += c.registered.load(Relaxed);
        t.existed += c.existed.load(Relaxed);
        t.acked += c.acked.load(Relaxed);
        t.resent += c.resent.load(Relaxed);
        t.unacked += c.unacked.load(Relaxed);
        t.online += c.online.load(Relaxed);
        t.drops += c.drops.load(Relaxed);
        t.resumed += c.resumed.load(Relaxed);
        t.resume_failed += c.resume_failed.load(Relaxed);
        t.retries += c.retries.load(Relaxed);
        t.swept += c.swept.load(Relaxed);
        t.in_room += c.in_room.load(Relaxed);
        t.joined += c.joined.load(Relaxed);
        t.join_failed += c.join_failed.load(Relaxed);
        t.join_retries += c.join_retries.load(Relaxed);
        t.pings += c.pings.load(Relaxed);
    }
    t
}

/// Samples kept for the chart; when full every other one is dropped and the stride doubles, so
/// a run of any length keeps at most this many (a day at one per second fits without dropping).
const MAX_SAMPLES: usize = 86_400;

/// One second of the measured phase, for `--chart` and the JSON report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Sample {
    /// End of the interval, seconds since the measured phase began.
    pub t_s: f64,
    /// Deliveries per second over the interval.
    pub msgs_per_s: f64,
    /// Median time to delivery over the interval, microseconds (`None`: no delivery).
    pub p50_us: Option<u64>,
    /// 99th percentile over the interval, microseconds.
    pub p99_us: Option<u64>,
}

/// The measured phase's per-second samples, bounded by [`MAX_SAMPLES`].
#[derive(Debug, Default)]
pub struct Series {
    /// Kept samples, oldest first.
    pub samples: Vec<Sample>,
    /// Keep one tick of every `stride` (doubles each time the buffer fills).
    stride: u64,
    /// Ticks seen.
    seen: u64,
    /// Start of the measured phase.
    t0: Option<Instant>,
}

impl Series {
    /// Offer one interval ending now that began at `from`; kept unless the stride skips it.
    fn offer(&mut self, from: Instant, rate: f64, lat: &Histogram<u64>) {
        let t0 = *self.t0.get_or_insert(from);
        let stride = self.stride.max(1);
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(stride) {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = stride * 2;
        }
        let q = |q: f64| (!lat.is_empty()).then(|| lat.value_at_quantile(q));
        self.samples.push(Sample {
            t_s: t0.elapsed().as_secs_f64(),
            msgs_per_s: rate,
            p50_us: q(0.5),
            p99_us: q(0.99),
        });
    }
}

/// Reporter-side accumulation: takes the cores' interval histograms each tick.
pub struct Collector {
    /// All delivery latencies so far.
    pub lat: Histogram<u64>,
    /// All login latencies so far.
    pub login: Histogram<u64>,
    /// Per-second samples of the measured phase (ticks named "run").
    pub series: Series,
    last: Totals,
    last_at: Instant,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            lat: new_hist(),
            login: new_hist(),
            series: Series::default(),
            last: Totals::default(),
            last_at: Instant::now(),
        }
    }
}

impl Collector {
    /// Take the interval histograms, fold them in, and return the progress line.
    pub fn tick(&mut self, cores: &[CoreStats], phase: &str) -> String {
        let mut ilat = new_hist();
        let mut ilogin = new_hist();
        for c in cores {
            if let Some(h) = lock(&c.lat).take() {
                // Same bounds everywhere, so adding cannot fail.
                let _ = ilat.add(&h);
            }
            if let Some(h) = lock(&c.login).take() {
                let _ = ilogin.add(&h);
            }
        }
        let _ = self.lat.add(&ilat);
        let _ = self.login.add(&ilogin);
        let t = totals(cores);
        let secs = self.last_at.elapsed().as_secs_f64().max(1e-3);
        let rate = (t.delivered - self.last.delivered) as f64 / secs;
        let lrate = (t.connected - self.last.connected) as f64 / secs;
        if phase == "run" {
            self.series.offer(self.last_at, rate, &ilat);
        }
        self.last = t;
        self.last_at = Instant::now();
        let mut line = format!(
            "[{phase}] conn {} (+{:.0}/s) fail {} | sent {} dlvr {} ({:.0}/s) err {}",
            t.connected, lrate, t.login_failed, t.sent, t.delivered, rate, t.errors
        );
        if t.in_room + t.join_failed + t.join_retries > 0 {
            line.push_str(&format!(
                " | in room {} full {} failed {} retries {}",
                t.in_room, t.joined, t.join_failed, t.join_retries
            ));
        }
        if t.acked + t.unacked > 0 {
            line.push_str(&format!(" | acked {} unacked {}", t.acked, t.unacked));
        }
        if t.drops > 0 {
            line.push_str(&format!(
                " | online {} drops {} resumed {} fresh {} retries {}",
                t.online, t.drops, t.resumed, t.resume_failed, t.retries
            ));
        }
        if !ilat.is_empty() {
            line.push_str(&format!(
                " | p50 {} p99 {}",
                fmt_us(ilat.value_at_quantile(0.5)),
                fmt_us(ilat.value_at_quantile(0.99))
            ));
        } else if !ilogin.is_empty() {
            line.push_str(&format!(
                " | login p50 {} p99 {}",
                fmt_us(ilogin.value_at_quantile(0.5)),
                fmt_us(ilogin.value_at_quantile(0.99))
            ));
        }
        line
    }
}

/// Human form of a microsecond value.
pub fn fmt_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1}s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Percentiles {
    /// Summarise a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What the soak adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Connections that dropped (server killed, or cut by the client).
    pub drops: u64,
    /// Sessions resumed with XEP-0198.
    pub resumed: u64,
    /// Resumptions refused (server restarted), followed by a fresh login.
    pub resume_failed: u64,
    /// Failed connection or login attempts while the server was down.
    pub retries: u64,
    /// Every user online with nothing unacknowledged at the end (the figures are complete).
    pub settled: bool,
    /// The accounting.
    pub verdict: crate::ledger::Verdict,
}

/// What the muc scenario adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct MucReport {
    /// Rooms.
    pub rooms: u32,
    /// Occupants per room.
    pub occupants: u32,
    /// Closed loop (else `msg_rate` per occupant).
    pub closed: bool,
    /// Messages per second per occupant asked for (fixed rate).
    pub msg_rate: f64,
    /// Occupants that saw all their room's occupants before the run.
    pub joined: u64,
    /// Occupants that did not: **failure** (exit 2).
    pub join_failed: u64,
    /// Joins refused by the service (a locked room) and tried again.
    pub join_retries: u64,
    /// From the last login to every room full, seconds.
    pub join_s: f64,
    /// Groupchat messages sent per second during the measured phase.
    pub sent_per_s: f64,
    /// The exactly-K-deliveries accounting.
    pub verdict: crate::room::MucVerdict,
}

/// What a two-server (federation) run adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct FederationReport {
    /// Domain of the users on the first server.
    pub domain_a: String,
    /// Domain of the users on the second server.
    pub domain_b: String,
    /// Every core's warm-up message crossed both ways (else nothing was measured).
    pub ok: bool,
    /// Warm-up messages delivered.
    pub warmup_delivered: u64,
    /// Seconds from the last login until every core's warm-up was over.
    pub warmup_s: f64,
}

/// What the pep scenario adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct PepReport {
    /// Contacts of the publisher.
    pub contacts: u32,
    /// Items per second asked for (0: closed loop with `window` items in flight).
    pub pub_rate: f64,
    /// Items in flight in the closed loop.
    pub window: u32,
    /// Contacts with a mutual subscription in the publisher's last roster read.
    pub both: u64,
    /// Contacts that received a warm-up notification before measuring: below `contacts` exits 2.
    pub reached: u64,
    /// From the last login to the end of the warm-up, seconds.
    pub setup_s: f64,
    /// Items published per second during the measured phase.
    pub published_per_s: f64,
    /// Publishes the server confirmed (warm-up included).
    pub pub_ok: u64,
    /// Publishes the server refused.
    pub pub_err: u64,
    /// Notifications of items from an earlier run (ignored).
    pub stale: u64,
    /// Every item must reach each contact exactly once (`messages` = items, `occupants` = contacts).
    pub verdict: crate::room::MucVerdict,
}

/// The final result of a run, printed as a table and written with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Server address.
    pub server: String,
    /// Users asked for.
    pub users: u64,
    /// Sessions that logged in.
    pub connected: u64,
    /// Logins that failed.
    pub login_failed: u64,
    /// Login rate over the login phase (logins/s).
    pub logins_per_s: f64,
    /// Login latency (connect to bound session), microseconds.
    pub login_latency_us: Percentiles,
    /// Length of the measured phase, seconds.
    pub duration_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Delivered messages per second during the measured phase.
    pub msgs_per_s: f64,
    /// Time to delivery, microseconds.
    pub delivery_latency_us: Percentiles,
    /// Deliveries and time to delivery per second of the measured phase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Sample>,
    /// Errors after login.
    pub errors: u64,
    /// Messages delivered after a later message of the same sender (RFC 6120 §10.1).
    pub out_of_order: u64,
    /// Server pings (XEP-0199) answered.
    pub pings_answered: u64,
    /// Messages sent but not delivered by the end of the grace period
    /// (soak: acknowledged by the server and never delivered).
    pub lost: u64,
    /// Messages the server acknowledged (`--sm`).
    pub acked: u64,
    /// Messages sent again after a resumption or a fresh login.
    pub resent: u64,
    /// Muc only: rooms, joins and the delivery accounting (`msgs_per_s` counts occupant deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muc: Option<MucReport>,
    /// Pep only: contacts, setup and the notification accounting (`msgs_per_s` counts notifications).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pep: Option<PepReport>,
    /// Two servers only: the warm-up across them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationReport>,
    /// Soak only: connections, resumptions and the exactly-once accounting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakReport>,
    /// Registrations (register scenario): created, already existing.
    pub registered: u64,
    /// See [`Report::registered`].
    pub existed: u64,
    /// Server resident memory per session in bytes (idle with `--server-pid`).
    pub server_rss_per_session: Option<f64>,
    /// Server CPU seconds from the start to the last login (`--server-pid`): logins per server
    /// CPU-second is the per-core login rate, whatever else the machine runs.
    pub login_server_cpu_s: Option<f64>,
    /// Server CPU use over the hold period, in cores (idle with `--server-pid`).
    pub server_cpu_cores: Option<f64>,
    /// The second server's CPU use over the measured phase, in cores (`--server-b-pid`).
    pub server_b_cpu_cores: Option<f64>,
    /// This generator's own CPU use over the measured phase, in cores.
    pub load_cpu_cores: Option<f64>,
    /// Time the server's threads were runnable but waited for a CPU (held by other processes),
    /// per second of the measured phase (`--server-pid`).
    pub server_wait_cores: Option<f64>,
    /// The same for the second server (`--server-b-pid`).
    pub server_b_wait_cores: Option<f64>,
    /// The same for this generator.
    pub load_wait_cores: Option<f64>,
}

impl Report {
    /// The final table as text.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{} against {}: {} users, {} connected, {} login failures\n",
            self.scenario, self.server, self.users, self.connected, self.login_failed
        ));
        s.push_str(&format!(
            "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
            "what", "rate/s", "p50", "p90", "p99", "p99.9", "max", "errors", "lost"
        ));
        let row = |what: &str, rate: f64, p: &Percentiles, errors: u64, lost: u64| {
            format!(
                "{:<10} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
                what,
                rate,
                fmt_us(p.p50),
                fmt_us(p.p90),
                fmt_us(p.p99),
                fmt_us(p.p999),
                fmt_us(p.max),
                errors,
                lost
            )
        };
        if self.login_latency_us.count > 0 {
            s.push_str(&row(
                "login",
                self.logins_per_s,
                &self.login_latency_us,
                self.login_failed,
                0,
            ));
        }
        if self.sent > 0 || self.delivered > 0 {
            s.push_str(&row(
                "message",
                self.msgs_per_s,
                &self.delivery_latency_us,
                self.errors,
                self.lost,
            ));
        }
        if self.delivered > 0 {
            s.push_str(&format!(
                "out of order: {} (delivered after a later message of the same sender)\n",
                self.out_of_order
            ));
        }
        if self.acked > 0 || self.resent > 0 {
            s.push_str(&format!(
                "acked by the server {}, resent {}\n",
                self.acked, self.resent
            ));
        }
        if let Some(f) = &self.federation {
            s.push_str(&format!(
                "federation {} <-> {}: warm-up {} ({} delivered, {:.2}s after the last login)\n",
                f.domain_a,
                f.domain_b,
                if f.ok { "crossed both ways" } else { "FAILED" },
                f.warmup_delivered,
                f.warmup_s
            ));
        }
        if let Some(m) = &self.muc {
            let v = &m.verdict;
            s.push_str(&format!(
                "muc: {} rooms x {} occupants ({}), joined {} failed {} (refused and retried {}), rooms full {:.2}s after the last login\n\
                 muc: sent {} ({:.0}/s), {}, misrouted {}\n",
                m.rooms,
                m.occupants,
                if m.closed {
                    "closed loop".to_owned()
                } else {
                    format!("{} msg/s per occupant", m.msg_rate)
                },
                m.joined,
                m.join_failed,
                m.join_retries,
                m.join_s,
                v.messages,
                m.sent_per_s,
                v.line("occupant deliveries", self.msgs_per_s, "messages"),
                v.misrouted,
            ));
        }
        if let Some(p) = &self.pep {
            let v = &p.verdict;
            s.push_str(&format!(
                "pep: 1 publisher, {} contacts ({}), mutual subscriptions {}, reached by the warm-up {}, setup {:.2}s after the last login\n\
                 pep: published {} ({:.0}/s; confirmed {}, refused {}), {}, stale {}\n",
                p.contacts,
                if p.pub_rate > 0.0 {
                    format!("{} items/s", p.pub_rate)
                } else {
                    format!("closed loop, window {} items", p.window)
                },
                p.both,
                p.reached,
                p.setup_s,
                v.messages,
                p.published_per_s,
                p.pub_ok,
                p.pub_err,
                v.line("notifications", self.msgs_per_s, "items"),
                p.stale
            ));
        }
        if let Some(k) = &self.soak {
            let v = &k.verdict;
            s.push_str(&format!(
                "soak: {} drops, {} resumed, {} fresh logins after a failed resume, {} retries, settled {}\n\
                 soak: sent {} acked {} delivered {} (deliveries {}, {} from offline storage), bounced {}\n\
                 soak: LOST {} (acked, never delivered; recipient at the ack: {} online, {} parked, {} offline), DUPLICATED {} (sent once, delivered twice, no server killed between the first delivery and the ack)\n\
                 soak: resent {} (first copy never acked), {} of them delivered twice (allowed)\n\
                 soak: sent once, delivered twice, a server killed between the first delivery and the ack: {} (allowed: at least once across a crash)\n\
                 soak: never acked: {} delivered, {} of them twice, {} never delivered\n",
                k.drops,
                k.resumed,
                k.resume_failed,
                k.retries,
                k.settled,
                v.created,
                v.acked,
                v.delivered_unique,
                v.deliveries,
                v.from_offline,
                v.bounced,
                v.lost,
                v.lost_recipient_online,
                v.lost_recipient_parked,
                v.lost_recipient_offline,
                v.duplicated,
                v.resent,
                v.duplicated_resent,
                v.duplicated_at_kill,
                v.delivered_unacked,
                v.duplicated_unacked,
                v.unacked_undelivered
            ));
        }
        if self.registered + self.existed > 0 {
            s.push_str(&format!(
                "registered {} new, {} already existed\n",
                self.registered, self.existed
            ));
        }
        if let Some(line) = login_cpu_line(self.connected, self.login_server_cpu_s) {
            s.push_str(&line);
        }
        if let Some(rss) = self.server_rss_per_session {
            s.push_str(&format!("server RSS per session: {:.0} bytes\n", rss));
        }
        for (who, cpu, wait) in [
            ("server", self.server_cpu_cores, self.server_wait_cores),
            (
                "server B",
                self.server_b_cpu_cores,
                self.server_b_wait_cores,
            ),
            ("generator", self.load_cpu_cores, self.load_wait_cores),
        ] {
            if let Some(cpu) = cpu {
                s.push_str(&format!(
                    "{who} CPU over the measured phase: {:.1}% of one core",
                    cpu * 100.0
                ));
                if let Some(wait) = wait {
                    s.push_str(&format!(
                        " (runnable but waiting for a CPU: {:.1}%)",
                        wait * 100.0
                    ));
                }
                s.push('\n');
            }
        }
        s
    }
}

/// The per-core login rate: logins per second of server CPU time (None without a CPU figure).
fn login_cpu_line(connected: u64, cpu_s: Option<f64>) -> Option<String> {
    let cpu = cpu_s.filter(|c| *c > 0.0)?;
    Some(format!(
        "server CPU until the last login: {cpu:.2} s, {:.0} logins per server CPU-second\n",
        connected as f64 / cpu
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_rate_per_server_cpu_second() {
        assert_eq!(
            login_cpu_line(3000, Some(1.5)).as_deref(),
            Some("server CPU until the last login: 1.50 s, 2000 logins per server CPU-second\n")
        );
        // No --server-pid, or too little CPU to count (USER_HZ ticks): no line.
        assert_eq!(login_cpu_line(3000, None), None);
        assert_eq!(login_cpu_line(3000, Some(0.0)), None);
    }

    #[test]
    fn collector_folds_intervals_and_counts() {
        let cores: Vec<CoreStats> = (0..2).map(|_| CoreStats::default()).collect();
        cores[0].record_delivery(100);
        cores[1].record_delivery(300);
        cores[1].sent.fetch_add(3, Relaxed);
        let mut c = Collector::default();
        let line = c.tick(&cores, "run");
        assert!(line.contains("sent 3 dlvr 2"), "{line}");
        assert_eq!(c.lat.len(), 2);
        // Interval histograms were taken: a second tick adds nothing.
        c.tick(&cores, "run");
        assert_eq!(c.lat.len(), 2);
        let p = Percentiles::of(&c.lat);
        assert_eq!(p.p50, 100);
        assert!(p.max >= 300 && p.max < 301, "{}", p.max);
        // Both ticks were "run": two samples, the first with the two latencies.
        assert_eq!(c.series.samples.len(), 2);
        assert_eq!(c.series.samples[0].p50_us, Some(100));
        assert_eq!(c.series.samples[1].p99_us, None);
    }

    #[test]
    fn series_stays_bounded() {
        let mut s = Series::default();
        let h = new_hist();
        let now = Instant::now();
        for _ in 0..(MAX_SAMPLES * 3 + 5) {
            s.offer(now, 1.0, &h);
        }
        assert!(s.samples.len() <= MAX_SAMPLES, "{}", s.samples.len());
        assert!(s.samples.len() >= MAX_SAMPLES / 2);
        assert_eq!(s.stride, 4);
    }
}
