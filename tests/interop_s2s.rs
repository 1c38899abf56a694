//! Federation with Prosody (Debian's 0.12 package) and ejabberd: petrel serves `petrel.example`, a
//! Prosody the test starts serves `prosody.example`, both on private loopback ports, and both resolve each
//! other through a DNS server the test runs (SRV `_xmpp-server._tcp` records; petrel through
//! `[s2s] nameservers`, Prosody through lua-unbound's `forward`). slixmpp clients on each server
//! (tests/interop/s2s.py) chat both ways, subscribe to each other's presence and send IQs across.
//!
//! - self-signed certificates on both sides: the streams authenticate with dialback (XEP-0220);
//! - certificates from a test CA both trust, Prosody with `s2s_secure_auth`: SASL EXTERNAL both
//!   ways, no dialback possible;
//! - ejabberd 23.01 (Debian's package) serving `ejabberd.example`: dialback both ways.
//!
//! With dialback, the peer's user also joins a room on petrel's MUC service and chats there.
//!
//! Skipped when Prosody or ejabberd is not installed, unless PETREL_REQUIRE_PEERS is set (.ci/run
//! sets it).

mod common;

use std::time::Duration;

use common::peers::{self as prosody, CertFiles, Dns, Ejabberd, Prosody, ProsodyOptions, TestCa};
use common::venv::run_script;
use common::{free_port, Server, PASSWORD};

const PETREL: &str = "petrel.example";
const PROSODY: &str = "prosody.example";
const EJABBERD: &str = "ejabberd.example";

/// How the two servers trust each other.
enum Trust {
    /// Self-signed certificates: dialback.
    SelfSigned,
    /// A test CA: SASL EXTERNAL.
    TestCa,
}

fn petrel_config(port: u16, data: &std::path::Path, s2s_port: u16, dns: u16, tls: &str) -> String {
    format!(
        r#"[general]
hosts = ["{PETREL}"]
data_dir = "{data}"
loglevel = "info"

[auth]
scram_iterations = 4096

[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls = "starttls"

[[listen.s2s]]
port = {s2s_port}
ip_address = "127.0.0.1"

[s2s]
nameservers = ["127.0.0.1:{dns}"]
connect_timeout = 10
{tls}

[modules.ping]
[modules.disco]
[modules.version]
[modules.roster]
[modules.presence]
[modules.muc]
"#,
        data = data.display()
    )
}

/// petrel's MUC service, where the peer's user joins a room alice creates (the service is an s2s
/// domain of its own: the DNS names it too).
const ROOM: &str = "lounge@conference.petrel.example";
const MUC: &str = "conference.petrel.example";

/// Runs tests/interop/s2s.py between alice on petrel and `remote` (a full JID on the peer's c2s
/// port `peer_port`), with the room step when `room`; on failure prints `peer_log()` before
/// panicking.
fn across(
    server: &Server,
    remote: &str,
    peer_port: u16,
    room: bool,
    peer_log: impl Fn() -> String,
) -> String {
    let mut args: Vec<String> = [
        "--a",
        &format!("alice@{PETREL}/py"),
        "--a-port",
        &server.port.to_string(),
        "--a-cert",
        &server.cert_path().display().to_string(),
        "--b",
        remote,
        "--b-port",
        &peer_port.to_string(),
        "--b-cert",
        "none",
        "--password",
        PASSWORD,
        "--timeout",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if room {
        args.extend(["--room".to_owned(), ROOM.to_owned()]);
    }
    let out = std::panic::catch_unwind(|| run_script("s2s.py", &args, Duration::from_secs(150)));
    match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("--- peer log (tail)\n{}", peer_log());
            std::panic::resume_unwind(e);
        }
    }
}

fn federate(shards: usize, trust: Trust) {
    if !prosody::prosody_available() {
        eprintln!("prosody not installed: skipped");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let s2s_port = free_port();
    let prosody_s2s = free_port();
    let (petrel_cert, prosody_cert, ca): (Option<CertFiles>, CertFiles, Option<TestCa>) =
        match trust {
            Trust::SelfSigned => (None, prosody::self_signed(certs.path(), PROSODY), None),
            Trust::TestCa => {
                let ca = TestCa::new(certs.path());
                let p = ca.issue(certs.path(), PETREL);
                let q = ca.issue(certs.path(), PROSODY);
                (Some(p), q, Some(ca))
            }
        };
    // Prosody's s2s port is only known once it runs: the DNS needs both first, so both ports
    // are picked here and Prosody is told its own.
    let mut records = Dns::s2s_records(PETREL, s2s_port);
    records.extend(Dns::s2s_records(MUC, s2s_port));
    records.extend(Dns::s2s_records(PROSODY, prosody_s2s));
    let dns = Dns::start(&records);
    let peer = Prosody::start_on(
        &ProsodyOptions {
            domain: PROSODY,
            cert: &prosody_cert,
            cafile: ca.as_ref().map(|c| c.ca_file.as_path()),
            secure_auth: ca.is_some(),
            dns_port: dns.port,
            users: &[("bob", PASSWORD)],
        },
        prosody_s2s,
    );
    let tls = match (&petrel_cert, &ca) {
        (Some(c), Some(ca)) => format!(
            "certfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\n",
            c.cert.display().to_string(),
            c.key.display().to_string(),
            ca.ca_file.display().to_string()
        ),
        _ => String::new(),
    };
    let server = Server::start_config(shards, &[&format!("alice@{PETREL}")], |port, data| {
        petrel_config(port, data, s2s_port, dns.port, &tls)
    });
    // The room step needs Prosody to accept petrel's certificate for the MUC domain too: with
    // the test CA (SASL EXTERNAL required) that certificate names petrel.example only.
    let room = matches!(trust, Trust::SelfSigned);
    let out = across(
        &server,
        &format!("bob@{PROSODY}/py"),
        peer.c2s_port,
        room,
        || peer.log_tail(80),
    );
    println!("{out}");
    assert!(out.contains("OK: s2s"), "{out}");
    let log = peer.log();
    match trust {
        Trust::SelfSigned => {
            // Prosody could not validate petrel's certificate, so its streams used dialback.
            assert!(
                !log.contains("SASL EXTERNAL with petrel.example succeeded"),
                "unexpected SASL EXTERNAL with a self-signed certificate"
            );
        }
        Trust::TestCa => {
            // Prosody authenticated to petrel, and petrel to Prosody, with the certificates.
            assert!(
                log.contains(&format!("SASL EXTERNAL with {PETREL} succeeded")),
                "Prosody's stream to petrel did not use SASL EXTERNAL:\n{}",
                peer.log_tail(60)
            );
            assert!(
                log.contains(&format!("Accepting SASL EXTERNAL identity from {PETREL}")),
                "petrel's stream to Prosody did not use SASL EXTERNAL:\n{}",
                peer.log_tail(60)
            );
        }
    }
}

/// ejabberd 23.01 (Debian's package, run by loadtest/peers/ejabberd.sh): self-signed certificates,
/// STARTTLS and dialback both ways.
#[test]
fn ejabberd_dialback_two_shards() {
    if !prosody::ejabberd_available() {
        eprintln!("ejabberd not installed: skipped");
        return;
    }
    let s2s_port = free_port();
    let ejabberd_s2s = free_port();
    // ejabberd looks the SRV record up in the test DNS but the target's address up through the
    // system resolver, which does not know petrel.example: its SRV target is the address itself.
    let mut records: Vec<String> = [PETREL, MUC]
        .iter()
        .map(|d| format!("_xmpp-server._tcp.{d}. 60 IN SRV 0 5 {s2s_port} 127.0.0.1."))
        .collect();
    records.extend(Dns::s2s_records(EJABBERD, ejabberd_s2s));
    let dns = Dns::start(&records);
    let peer = Ejabberd::start(EJABBERD, ejabberd_s2s, dns.port, &[("bob", PASSWORD)]);
    let server = Server::start_config(2, &[&format!("alice@{PETREL}")], |port, data| {
        petrel_config(port, data, s2s_port, dns.port, "")
    });
    let out = across(
        &server,
        &format!("bob@{EJABBERD}/py"),
        peer.c2s_port,
        true,
        || peer.log_tail(),
    );
    println!("{out}");
    assert!(out.contains("OK: s2s"), "{out}");
}

#[test]
fn prosody_dialback_two_shards() {
    federate(2, Trust::SelfSigned);
}

#[test]
fn prosody_dialback_one_shard() {
    federate(1, Trust::SelfSigned);
}

#[test]
fn prosody_sasl_external_two_shards() {
    federate(2, Trust::TestCa);
}
