//! The main thread's side of a run: start one executor per core, step the
//! phases, print progress each second, build the report.

use crate::cli::Scenario;
use crate::core::{phase, run_core, Plan, Shared};
use crate::ledger::Ledger;
use crate::procstat;
use crate::room::Tally;
use crate::stats::{
    totals, Collector, CoreStats, FederationReport, MucReport, PepReport, Percentiles, Report,
    SoakReport, Totals,
};
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Run-level options that are not per-core.
pub struct RunOpts {
    /// Measured phase.
    pub duration: Duration,
    /// Wait for in-flight messages after it (soak: the limit of each settling stage).
    pub grace: Duration,
    /// Pin executors to these CPUs (else unpinned, `plan.cores` of them).
    pub cpus: Option<Vec<usize>>,
    /// Server PID for RSS/CPU figures.
    pub server_pid: Option<u32>,
    /// The second server's PID, for its CPU figure.
    pub server_b_pid: Option<u32>,
    /// Print progress lines.
    pub progress: bool,
    /// Server address as given.
    pub server: String,
}

/// Errors starting the executors.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// glommio refused to build an executor.
    #[error("starting executor: {0}")]
    Executor(String),
    /// An executor thread panicked.
    #[error("executor {0} panicked")]
    Panicked(usize),
}

/// Execute the plan and return the report.
pub fn run(plan: Plan, opts: &RunOpts) -> Result<Report, RunError> {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared {
        cores: (0..plan.cores).map(|_| CoreStats::default()).collect(),
        phase: Default::default(),
        ready: Default::default(),
        epoch: Instant::now(),
        rooms_open: crate::muc::open_flags(plan.muc.as_ref()),
        pep: Default::default(),
        warm: Default::default(),
    });
    let rss_before = opts.server_pid.and_then(procstat::settled_rss_bytes);
    let login_cpu_before = opts.server_pid.and_then(procstat::cpu_seconds);
    let mut handles = Vec::new();
    let ring_depth = petrel::rt::ring_depth(None, plan.cores);
    for c in 0..plan.cores {
        let users: Vec<u32> = (0..plan.users).filter(|&u| plan.core_of(u) == c).collect();
        let placement = match &opts.cpus {
            Some(cpus) => Placement::Fixed(cpus[c]),
            None => Placement::Unbound,
        };
        let (p, s) = (plan.clone(), shared.clone());
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("load{c}"))
            // Deep rings, as petrel's: with thousands of sockets per executor, shallow ones cost
            // the generator a search of the kernel's poll table at every turn (see petrel's rt).
            .ring_depth(ring_depth)
            .spawn(move || run_core(p, s, c, users))
            .map_err(|e| RunError::Executor(e.to_string()))?;
        handles.push(h);
    }

    let mut col = Collector::default();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let tick = |col: &mut Collector, name: &str, next: &mut Instant| {
        if Instant::now() >= *next {
            let mut line = col.tick(&shared.cores, name);
            if plan.pep.is_some() {
                let p = &shared.pep;
                line.push_str(&format!(
                    " | pep both {} reached {} published ok {} refused {}",
                    p.both.load(Relaxed),
                    p.reached.load(Relaxed),
                    p.pub_ok.load(Relaxed),
                    p.pub_err.load(Relaxed)
                ));
            }
            if opts.progress {
                eprintln!("{line}");
            }
            *next += Duration::from_secs(1);
        }
    };
    // Login phase.
    while shared.ready.load(Relaxed) < plan.cores {
        std::thread::sleep(Duration::from_millis(10));
        tick(&mut col, "login", &mut next_tick);
    }
    let login_secs = shared
        .cores
        .iter()
        .map(|c| c.last_login_ns.load(Relaxed))
        .max()
        .unwrap_or(0) as f64
        / 1e9;
    let login_cpu_after = opts.server_pid.and_then(procstat::cpu_seconds);
    // Muc: the cores were ready once their rooms were full; pep: once setup and warm-up were over.
    let join_secs = (shared.epoch.elapsed().as_secs_f64() - login_secs).max(0.0);
    let timed = matches!(
        plan.scenario,
        Scenario::Chat
            | Scenario::Max
            | Scenario::Idle
            | Scenario::Soak
            | Scenario::Muc
            | Scenario::Pep
    );
    // Two servers whose warm-up did not cross: nothing to measure.
    let federation_ok = shared.warm.failed.load(Relaxed) == 0;
    let timed = timed && federation_ok;
    let rss_logged_in = opts.server_pid.and_then(procstat::rss_bytes);
    let cpu_before = opts.server_pid.and_then(procstat::cpu_seconds);
    let cpu_b_before = opts.server_b_pid.and_then(procstat::cpu_seconds);
    let load_before = procstat::cpu_seconds(std::process::id());
    let wait_before = opts.server_pid.and_then(procstat::runq_wait_seconds);
    let wait_b_before = opts.server_b_pid.and_then(procstat::runq_wait_seconds);
    let load_wait_before = procstat::runq_wait_seconds(std::process::id());

    // Measured phase.
    let run_start = Instant::now();
    let t0 = totals(&shared.cores);
    let (delivered_start, sent_start) = (t0.delivered, t0.sent);
    let next = if federation_ok {
        phase::RUN
    } else {
        phase::DRAIN
    };
    shared.phase.store(next, Relaxed);
    if timed {
        while run_start.elapsed() < opts.duration {
            std::thread::sleep(Duration::from_millis(10));
            tick(&mut col, "run", &mut next_tick);
        }
        // The last (partial) second as a sample too: a run shorter than a second still has one.
        col.tick(&shared.cores, "run");
    }
    let run_secs = run_start.elapsed().as_secs_f64();
    // Idle: the sessions' memory once they have been idle for the run (what a server releases
    // from quiet connections, e.g. TLS read buffers, is released by then); others: after login.
    let rss_after = if plan.scenario == Scenario::Idle {
        opts.server_pid.and_then(procstat::rss_bytes)
    } else {
        rss_logged_in
    };
    let t1 = totals(&shared.cores);
    let (delivered_end, sent_end) = (t1.delivered, t1.sent);
    let cpu_after = opts.server_pid.and_then(procstat::cpu_seconds);
    let cpu_b_after = opts.server_b_pid.and_then(procstat::cpu_seconds);
    let load_after = procstat::cpu_seconds(std::process::id());
    let wait_after = opts.server_pid.and_then(procstat::runq_wait_seconds);
    let wait_b_after = opts.server_b_pid.and_then(procstat::runq_wait_seconds);
    let load_wait_after = procstat::runq_wait_seconds(std::process::id());
    // CPU seconds between two samples per second of the measured phase.
    let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if run_secs > 0.0 => Some((b - a) / run_secs),
        _ => None,
    };

    // Drain: stop sending, wait for what is in flight.
    shared.phase.store(phase::DRAIN, Relaxed);
    let mut settled = false;
    if plan.scenario == Scenario::Soak {
        // Everyone back online with nothing unacknowledged and deliveries quiet; then every user
        // logs in afresh (fetching what offline storage still holds) and the same again.
        let users = u64::from(plan.users);
        settled = settle(&shared, opts.grace, users, |_| true, &mut |n| {
            tick(&mut col, n, &mut next_tick)
        });
        shared.phase.store(phase::SWEEP, Relaxed);
        settled &= settle(&shared, opts.grace, users, |t| t.swept >= users, &mut |n| {
            tick(&mut col, n, &mut next_tick)
        });
    } else {
        let drain_start = Instant::now();
        while drain_start.elapsed() < opts.grace {
            let t = totals(&shared.cores);
            if t.delivered >= t.sent * plan.fanout() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            tick(&mut col, "drain", &mut next_tick);
        }
    }
    shared.phase.store(phase::DONE, Relaxed);
    let mut ledger: Option<Ledger> = None;
    let mut tally: Option<Tally> = None;
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().map_err(|_| RunError::Panicked(i))?;
        if let Some(l) = r.ledger {
            ledger.get_or_insert_with(Ledger::default).merge(l);
        }
        if let Some(t) = r.tally {
            tally.get_or_insert_with(Tally::default).merge(t);
        }
    }
    col.tick(&shared.cores, "done");

    let t = totals(&shared.cores);
    let verdict = ledger.map(|l| l.verdict());
    let per_s = |n: u64| {
        if run_secs > 0.0 {
            n as f64 / run_secs
        } else {
            0.0
        }
    };
    let muc = plan.muc.as_ref().map(|m| MucReport {
        rooms: m.layout.rooms,
        occupants: m.layout.occupants,
        closed: m.closed,
        msg_rate: m.msg_rate,
        joined: t.joined,
        join_failed: t.join_failed,
        join_retries: t.join_retries,
        join_s: join_secs,
        sent_per_s: per_s(sent_end - sent_start),
        verdict: tally
            .clone()
            .unwrap_or_default()
            .verdict(m.layout.occupants),
    });
    let pep = plan.pep.as_ref().map(|p| {
        let sh = &shared.pep;
        PepReport {
            contacts: p.contacts,
            pub_rate: p.pub_rate,
            window: p.window,
            both: sh.both.load(Relaxed),
            reached: sh.reached.load(Relaxed),
            setup_s: join_secs,
            published_per_s: per_s(sent_end - sent_start),
            pub_ok: sh.pub_ok.load(Relaxed),
            pub_err: sh.pub_err.load(Relaxed),
            stale: sh.stale.load(Relaxed),
            verdict: tally.clone().unwrap_or_default().verdict(p.contacts),
        }
    });
    let sessions = t.connected.max(1) as f64;
    Ok(Report {
        scenario: format!("{:?}", plan.scenario).to_lowercase(),
        server: opts.server.clone(),
        users: u64::from(plan.users),
        connected: t.connected,
        login_failed: t.login_failed,
        logins_per_s: if login_secs > 0.0 {
            t.connected as f64 / login_secs
        } else {
            0.0
        },
        login_latency_us: Percentiles::of(&col.login),
        duration_s: if timed { run_secs } else { 0.0 },
        sent: t.sent,
        delivered: t.delivered,
        msgs_per_s: if timed && run_secs > 0.0 {
            (delivered_end - delivered_start) as f64 / run_secs
        } else {
            0.0
        },
        delivery_latency_us: Percentiles::of(&col.lat),
        series: std::mem::take(&mut col.series.samples),
        errors: t.errors,
        pings_answered: t.pings,
        lost: match (&verdict, &muc) {
            (Some(v), _) => v.lost,
            (None, Some(m)) => m.verdict.lost,
            (None, None) => match &pep {
                Some(p) => p.verdict.lost,
                None => t.sent.saturating_sub(t.delivered),
            },
        },
        muc,
        pep,
        federation: plan.server_b.as_ref().map(|b| FederationReport {
            domain_a: plan.login.domain.clone(),
            domain_b: b.login.domain.clone(),
            ok: federation_ok,
            warmup_delivered: shared.warm.delivered.load(Relaxed),
            warmup_s: join_secs,
        }),
        acked: t.acked,
        resent: t.resent,
        out_of_order: t.out_of_order,
        soak: verdict.map(|verdict| SoakReport {
            drops: t.drops,
            resumed: t.resumed,
            resume_failed: t.resume_failed,
            retries: t.retries,
            settled,
            verdict,
        }),
        registered: t.registered,
        existed: t.existed,
        server_rss_per_session: match (rss_before, rss_after) {
            (Some(a), Some(b)) => Some((b as f64 - a as f64) / sessions),
            _ => None,
        },
        login_server_cpu_s: login_cpu_before.zip(login_cpu_after).map(|(a, b)| b - a),
        server_cpu_cores: cores(cpu_before, cpu_after),
        server_b_cpu_cores: cores(cpu_b_before, cpu_b_after),
        load_cpu_cores: if timed {
            cores(load_before, load_after)
        } else {
            None
        },
        server_wait_cores: cores(wait_before, wait_after),
        server_b_wait_cores: cores(wait_b_before, wait_b_after),
        load_wait_cores: if timed {
            cores(load_wait_before, load_wait_after)
        } else {
            None
        },
    })
}

/// Deliveries must be quiet this long (with everyone online and acked) before the soak counts.
const QUIET: Duration = Duration::from_secs(2);

/// Soak: wait (at most `limit`) until all `users` are online, nothing is
/// unacknowledged, `more` holds and no delivery happened for [`QUIET`].
fn settle(
    shared: &Shared,
    limit: Duration,
    users: u64,
    more: impl Fn(&Totals) -> bool,
    tick: &mut dyn FnMut(&str),
) -> bool {
    let start = Instant::now();
    let mut last = totals(&shared.cores).delivered;
    let mut quiet_since = Instant::now();
    while start.elapsed() < limit {
        let t = totals(&shared.cores);
        if t.delivered != last {
            last = t.delivered;
            quiet_since = Instant::now();
        }
        let up = t.online >= users && t.unacked == 0 && more(&t);
        if up && quiet_since.elapsed() >= QUIET {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        tick(if shared.phase.load(Relaxed) == phase::SWEEP {
            "sweep"
        } else {
            "settle"
        });
    }
    false
}
