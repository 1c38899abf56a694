//! `petrel-load`: a thread-per-core load generator that drives any XMPP server
//! (petrel, Prosody, ejabberd) and a bare relay baseline. See loadtest/README.md.

mod across;
mod chart;
mod cli;
mod client;
mod conn;
mod core;
mod frame;
mod ledger;
mod login;
mod msg;
mod muc;
mod pep;
mod pepwire;
mod procstat;
mod relay;
mod room;
mod run;
mod scram;
mod sm;
mod soak;
mod stats;
mod tls;
mod ws;

use clap::Parser;
use cli::{parse_cpus, Args, Scenario};
use login::{Goal, LoginConfig, Mech};
use scram::ScramCache;
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit status when messages were lost.
const EXIT_LOST: u8 = 1;
/// Exit status when logins failed.
const EXIT_LOGIN: u8 = 2;
/// Exit status for bad arguments or setup errors.
const EXIT_SETUP: u8 = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("petrel-load: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// Setup failures.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Cpus(#[from] cli::CpuListError),
    #[error("cannot resolve --server {0}")]
    Resolve(String),
    #[error("unknown SASL mechanism {0}")]
    Mech(String),
    #[error("--sasl2 is for the connect and idle scenarios (Bind 2 chooses the resource)")]
    Sasl2Scenario,
    #[error("max needs an even number of users (pairs)")]
    OddUsers,
    #[error("--ring needs the max scenario, one generator core and no --server-b (a receiver credits its sender's window on its own core)")]
    RingShape,
    #[error("muc needs --rooms and --occupants above 0, --users = rooms x occupants ({0}) if given, and --msg-rate above 0 unless --closed")]
    MucShape(String),
    #[error("pep needs --contacts above 0 and --users = contacts + 1 ({0}) if given")]
    PepShape(u32),
    #[error("--server-b (two servers) takes the chat, max, connect, idle and register scenarios, without --relay")]
    AcrossScenario,
    #[error("--server-b needs an even number of users (user k of each server)")]
    AcrossOddUsers,
    #[error("--sm is not available with --relay")]
    RelaySm,
    #[error("--cpus lists {0} CPUs but --cores asks for {1}")]
    CpuCount(usize, usize),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    #[error("writing JSON: {0}")]
    Json(String),
    #[error(transparent)]
    ScramCache(#[from] scram::CacheError),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error("the chart scenario needs --chart OUT.svg and at least one JSON report")]
    ChartArgs,
}

/// Users when `--users` is not given (and the scenario is not muc).
const DEFAULT_USERS: u32 = 100;

/// The muc scenario's plan from the arguments (`None` for other scenarios).
fn muc_plan(args: &Args) -> Result<Option<muc::MucPlan>, MainError> {
    if args.scenario != Scenario::Muc {
        return Ok(None);
    }
    let layout = room::Layout {
        rooms: args.rooms,
        occupants: args.occupants,
        service: args
            .muc_service
            .clone()
            .unwrap_or_else(|| format!("conference.{}", args.domain)),
    };
    let users = layout.users().filter(|&n| n > 0);
    let bad_rate =
        !args.closed && args.msg_rate.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater);
    if users.is_none() || args.users.is_some_and(|n| Some(n) != users) || bad_rate {
        return Err(MainError::MucShape(format!(
            "{} x {}",
            args.rooms, args.occupants
        )));
    }
    Ok(Some(muc::MucPlan {
        layout,
        msg_rate: args.msg_rate,
        closed: args.closed,
        join_timeout: Duration::from_secs_f64(args.join_timeout.max(0.001)),
    }))
}

/// The pep scenario's plan from the arguments (`None` for other scenarios).
fn pep_plan(args: &Args) -> Result<Option<pep::PepPlan>, MainError> {
    if args.scenario != Scenario::Pep {
        return Ok(None);
    }
    let users = args.contacts.checked_add(1).filter(|_| args.contacts > 0);
    if users.is_none() || args.users.is_some_and(|n| Some(n) != users) {
        return Err(MainError::PepShape(args.contacts));
    }
    // Items a server kept from an earlier run carry another tag; the clock is a fine source.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000_000);
    Ok(Some(pep::PepPlan {
        contacts: args.contacts,
        pub_rate: args.pub_rate.max(0.0),
        window: args.window.max(1),
        setup_timeout: Duration::from_secs_f64(args.setup_timeout.max(0.001)),
        run,
    }))
}

/// The first address `server` (HOST:PORT) resolves to.
fn resolve(server: &str) -> Result<std::net::SocketAddr, MainError> {
    server
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| MainError::Resolve(server.to_owned()))
}

fn real_main(args: Args) -> Result<ExitCode, MainError> {
    let cpus = args.cpus.as_deref().map(parse_cpus).transpose()?;
    if args.scenario == Scenario::RelayServer {
        relay::serve(args.listen.clone(), cpus.and_then(|c| c.first().copied()))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario == Scenario::Chart {
        let out = args.chart.as_ref().ok_or(MainError::ChartArgs)?;
        if args.reports.is_empty() {
            return Err(MainError::ChartArgs);
        }
        chart::compare_chart(&args.reports, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cores = match &cpus {
        Some(c) if args.cores > 1 && args.cores != c.len() => {
            return Err(MainError::CpuCount(c.len(), args.cores))
        }
        Some(c) => c.len(),
        None => args.cores.max(1),
    };
    let addr = resolve(&args.server)?;
    let muc = muc_plan(&args)?;
    let pep = pep_plan(&args)?;
    let users = match (&muc, &pep) {
        (Some(m), _) => m.layout.users().unwrap_or(u32::MAX),
        (None, Some(p)) => p.contacts + 1,
        (None, None) => args.users.unwrap_or(DEFAULT_USERS),
    };
    if args.scenario == Scenario::Max && !users.is_multiple_of(2) {
        return Err(MainError::OddUsers);
    }
    if args.ring && (args.scenario != Scenario::Max || cores != 1 || args.server_b.is_some()) {
        return Err(MainError::RingShape);
    }
    if args.server_b.is_some() {
        let fits = matches!(
            args.scenario,
            Scenario::Chat
                | Scenario::Max
                | Scenario::Connect
                | Scenario::Idle
                | Scenario::Register
        );
        if !fits || args.relay {
            return Err(MainError::AcrossScenario);
        }
        if !users.is_multiple_of(2) {
            return Err(MainError::AcrossOddUsers);
        }
    }
    // The soak counts with XEP-0198 acks, so it always has stream management on.
    let sm = args.sm || args.scenario == Scenario::Soak;
    if sm && args.relay {
        return Err(MainError::RelaySm);
    }
    if args.sasl2 && !matches!(args.scenario, Scenario::Connect | Scenario::Idle) {
        return Err(MainError::Sasl2Scenario);
    }
    let mechs = args
        .mech
        .iter()
        .map(|m| Mech::parse(m).ok_or_else(|| MainError::Mech(m.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = if args.starttls {
        Some(tls::client_config(args.ca.as_deref(), args.insecure)?)
    } else {
        None
    };
    let scram_cache = Arc::new(match &args.scram_cache {
        Some(path) => ScramCache::load(path)?,
        None => ScramCache::default(),
    });
    let login = LoginConfig {
        domain: args.domain.clone(),
        password: args.password.clone(),
        resource: args.resource.clone(),
        starttls: args.starttls,
        mechs,
        // The pep scenario sends its own presence (with caps) after asking for the roster.
        presence: !args.no_presence && args.scenario != Scenario::Pep,
        sm,
        sasl2: args.sasl2,
        goal: if args.scenario == Scenario::Register {
            Goal::Register
        } else {
            Goal::Session
        },
        scram_cache: scram_cache.clone(),
    };
    let server_b = match (&args.server_b, &args.domain_b) {
        (Some(server), Some(domain)) => Some(core::ServerB {
            addr: resolve(server)?,
            login: LoginConfig {
                domain: domain.clone(),
                ..login.clone()
            },
            warmup_timeout: Duration::from_secs_f64(args.warmup_timeout.max(0.001)),
        }),
        _ => None,
    };
    let nodes = args
        .nodes
        .iter()
        .map(|n| resolve(n))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = core::Plan {
        scenario: args.scenario,
        addr,
        login,
        tls,
        naming: msg::Naming {
            prefix: args.prefix.clone(),
            first: args.first,
            domain: args.domain.clone(),
            domain_b: args.domain_b.clone(),
            muc: muc.as_ref().map(|m| m.layout.service.clone()),
            resource: (args.to_full_jid || args.mixed_jids).then(|| args.resource.clone()),
            mixed: args.mixed_jids,
        },
        users,
        rate: args.rate,
        concurrency: args.concurrency,
        login_timeout: Duration::from_secs_f64(args.login_timeout.max(0.001)),
        interval: Duration::from_millis(args.interval_ms.max(1)),
        burst: args.burst.max(1),
        window: args.window.max(1),
        ring: args.ring,
        payload: args.payload,
        // --source-ips N is 127.0.0.2 and the N - 1 addresses after it.
        sources: args.source_addrs.unwrap_or(cli::AddrRange {
            first: std::net::Ipv4Addr::new(127, 0, 0, 2),
            count: args.source_ips,
        }),
        relay: args.relay,
        ws_path: (args.transport == cli::Transport::Ws).then(|| args.ws_path.clone()),
        keepalive: Duration::from_secs_f64(args.keepalive.max(0.01)),
        sm: sm.then_some(args.ack_every.max(1)),
        cut: (args.cut_interval > 0.0).then(|| Duration::from_secs_f64(args.cut_interval)),
        resume_elsewhere: args.resume_elsewhere,
        cores,
        muc,
        pep,
        server_b,
        nodes,
        pair_placement: args.placement == cli::Placement::Pair,
    };
    let opts = run::RunOpts {
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
        cpus,
        server_pid: args.server_pid,
        server_b_pid: args.server_b_pid,
        progress: !args.quiet,
        server: match (&args.server_b, &args.domain_b) {
            (Some(b), Some(d)) => format!("{} ({}) and {b} ({d})", args.server, args.domain),
            _ if !args.nodes.is_empty() => format!("cluster {}", args.nodes.join(", ")),
            _ => args.server.clone(),
        },
    };
    let report = run::run(plan, &opts)?;
    if let Some(path) = &args.scram_cache {
        scram_cache.save(path)?;
    }
    print!("{}", report.table());
    if let Some(path) = &args.chart {
        let title = format!(
            "{}, {} users against {}",
            report.scenario, report.users, report.server
        );
        let run = chart::Run {
            scenario: report.scenario.clone(),
            msgs_per_s: report.msgs_per_s,
            delivery_latency_us: (&report.delivery_latency_us).into(),
            series: report.series.clone(),
        };
        chart::run_chart(&title, &run, path)?;
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| MainError::Json(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| MainError::Json(e.to_string()))?;
    }
    if let Some(f) = report.federation.as_ref().filter(|f| !f.ok) {
        eprintln!(
            "\n!!! FEDERATION FAILED: warm-up messages between {} and {} did not cross both ways (--warmup-timeout); nothing measured !!!\n",
            f.domain_a, f.domain_b
        );
        return Ok(ExitCode::from(EXIT_LOGIN));
    }
    if let Some(k) = &report.soak {
        let v = &k.verdict;
        if v.lost > 0 || v.duplicated > 0 || !k.settled {
            eprintln!(
                "\n!!! SOAK: {} acknowledged messages LOST, {} DUPLICATED{} !!!",
                v.lost,
                v.duplicated,
                if k.settled {
                    ""
                } else {
                    "; NOT SETTLED (users offline or acks missing at the end)"
                }
            );
            for l in &v.lost_sample {
                eprintln!(
                    "lost: user index {} seq {} to {}: sent at {:.3}s, acked at {:.3}s, recipient then {:?}",
                    l.from, l.seq, l.to, l.sent_s, l.acked_s, l.recipient
                );
            }
            for d in &v.duplicated_sample {
                eprintln!(
                    "duplicated: user index {} seq {} to {}: delivered {} times, first at {:.3}s, acked at {:.3}s",
                    d.from, d.seq, d.to, d.times, d.first_delivered_s, d.acked_s
                );
            }
            return Ok(ExitCode::from(EXIT_LOST));
        }
    } else if let Some(m) = report.muc.as_ref().filter(|m| m.join_failed > 0) {
        // Checked before the deliveries: messages into half-empty rooms are lost by design.
        eprintln!(
            "\n!!! {} OCCUPANTS NEVER SAW THEIR FULL ROOM (--join-timeout) !!!\n",
            m.join_failed
        );
        return Ok(ExitCode::from(EXIT_LOGIN));
    } else if let Some(v) = report.muc.as_ref().map(|m| &m.verdict).filter(|v| !v.ok()) {
        eprintln!(
            "\n!!! MUC: {} of {} occupant deliveries LOST, {} DUPLICATED, {} misrouted, {} unknown !!!\n",
            v.lost, v.expected, v.duplicated, v.misrouted, v.unknown
        );
        return Ok(ExitCode::from(EXIT_LOST));
    } else if let Some(p) = report
        .pep
        .as_ref()
        .filter(|p| p.reached < u64::from(p.contacts))
    {
        eprintln!(
            "\n!!! PEP: {} of {} contacts never got a warm-up notification (mutual subscriptions: {}; --setup-timeout) !!!\n",
            u64::from(p.contacts) - p.reached,
            p.contacts,
            p.both
        );
        return Ok(ExitCode::from(EXIT_LOGIN));
    } else if let Some(v) = report.pep.as_ref().map(|p| &p.verdict).filter(|v| !v.ok()) {
        eprintln!(
            "\n!!! PEP: {} of {} notifications LOST, {} DUPLICATED, {} unknown !!!\n",
            v.lost, v.expected, v.duplicated, v.unknown
        );
        return Ok(ExitCode::from(EXIT_LOST));
    } else if report.lost > 0 {
        eprintln!(
            "\n!!! LOST {} of {} messages (not delivered {}s after the run) !!!\n",
            report.lost, report.sent, args.grace
        );
        return Ok(ExitCode::from(EXIT_LOST));
    }
    if report.login_failed > 0 {
        eprintln!("\n!!! {} LOGINS FAILED !!!\n", report.login_failed);
        return Ok(ExitCode::from(EXIT_LOGIN));
    }
    Ok(ExitCode::SUCCESS)
}
