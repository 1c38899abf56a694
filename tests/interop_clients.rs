//! Interop with XMPP clients from Debian's packages, nobody here wrote: xmppc (libstrophe),
//! sendxmpp (Perl, Net::XMPP), go-sendxmpp (go-xmpp), mcabber (loudmouth) and aioxmpp. Each
//! `tests/clients/*_check.*` script drives its client against a running petrel (two shards,
//! STARTTLS and direct TLS listeners, the example configuration's modules) and a second user
//! played by `tests/clients/xmpp_peer.py`: log in (SCRAM or PLAIN as the client picks, over
//! STARTTLS and direct TLS), send and receive, roster, MUC, MAM, vCard, bookmarks, upload... as
//! far as the client goes; it prints PASS/FAIL per check and exits 0 only when all passed.
//!
//! A client that is not installed skips its test, unless PETREL_REQUIRE_PEERS is set (.ci/run
//! sets it and installs them).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, Server, PASSWORD};

/// The server the scripts talk to, with its direct TLS port.
struct Target {
    server: Server,
    direct_tls: u16,
}

fn target() -> Target {
    let (tls, http) = (free_port(), free_port());
    let server = Server::start_config(2, &["alice", "bob"], |port, data| {
        format!(
            r#"[general]
hosts = ["localhost"]
data_dir = "{data}"
loglevel = "info"

[auth]
scram_iterations = 4096
[auth.throttle]
enabled = false

[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true

[[listen.c2s]]
port = {tls}
ip_address = "127.0.0.1"
tls = "tls"

[[listen.http]]
port = {http}
ip_address = "127.0.0.1"
tls = "none"
handlers = ["upload"]

[modules.roster]
[modules.presence]
[modules.caps]
[modules.offline]
[modules.blocking]
[modules.private]
[modules.vcard]
[modules.ping]
[modules.version]
[modules.time]
[modules.last]
[modules.register]
[modules.csi]
[modules.carbons]
[modules.stream_management]
[modules.muc]
[modules.mam]
[modules.pep]
[modules.avatar]
[modules.bookmarks]
[modules.http_upload]
base_url = "http://localhost:{http}/upload"
[modules.disco]
"#,
            data = data.display()
        )
    });
    Target {
        server,
        direct_tls: tls,
    }
}

/// Whether `program` is on the PATH; when it is not, the test is skipped (or fails, in CI).
fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PETREL_REQUIRE_PEERS").is_none(),
            "{program} is not installed (PETREL_REQUIRE_PEERS is set)"
        );
        eprintln!("{program} is not installed: skipped");
    }
    found
}

/// Runs `tests/clients/SCRIPT` with `program` (bash or python3) and `args`; asserts it passed.
fn run(program: &str, script: &str, args: &[String]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let started = Instant::now();
    let out = Command::new(program)
        .arg(&path)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{script} ({:?}):\n{text}", started.elapsed());
    assert!(out.status.success(), "{script} failed:\n{text}");
    assert!(!text.contains("FAIL"), "{script}:\n{text}");
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "{script} hung for {:?}",
        started.elapsed()
    );
}

/// Runs `script` with `program` against a fresh server when every one of `needs` is installed;
/// `args(server, direct TLS port)` are its arguments before the users (alice and bob).
fn check(
    needs: &[&str],
    program: &str,
    script: &str,
    args: impl FnOnce(&Server, u16) -> Vec<String>,
) {
    if !needs.iter().all(|p| installed(p)) {
        return;
    }
    let t = target();
    let mut all = args(&t.server, t.direct_tls);
    let (u1, u2) = ("alice@localhost", "bob@localhost");
    let users = [u1, PASSWORD, u2, PASSWORD].map(str::to_owned);
    // xmppc takes its trust anchor last.
    let tail = (script == "xmppc_check.sh").then(|| all.pop()).flatten();
    all.extend(users);
    all.extend(tail);
    run(program, script, &all);
}

#[test]
fn xmppc_libstrophe() {
    check(&["xmppc", "gcc"], "bash", "xmppc_check.sh", |s, _| {
        let ca = s.cert_path().display().to_string();
        vec!["127.0.0.1".into(), s.port.to_string(), ca]
    });
}

#[test]
fn sendxmpp_net_xmpp() {
    check(&["sendxmpp"], "bash", "sendxmpp_check.sh", |s, tls| {
        vec!["localhost".into(), s.port.to_string(), tls.to_string()]
    });
}

#[test]
fn go_sendxmpp_go_xmpp() {
    check(
        &["go-sendxmpp"],
        "bash",
        "go_sendxmpp_check.sh",
        |s, tls| vec!["127.0.0.1".into(), s.port.to_string(), tls.to_string()],
    );
}

#[test]
fn mcabber_loudmouth() {
    check(&["mcabber", "tmux"], "bash", "mcabber_check.sh", |s, _| {
        vec!["127.0.0.1".into(), s.port.to_string()]
    });
}

#[test]
fn aioxmpp() {
    // Debian's python3-aioxmpp, for the system python (not the slixmpp venv).
    let have = Command::new("/usr/bin/python3")
        .args(["-c", "import aioxmpp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("PETREL_REQUIRE_PEERS").is_none(),
            "python3-aioxmpp is not installed (PETREL_REQUIRE_PEERS is set)"
        );
        eprintln!("python3-aioxmpp is not installed: skipped");
        return;
    }
    check(&[], "/usr/bin/python3", "aioxmpp_check.py", |s, tls| {
        vec!["127.0.0.1".into(), s.port.to_string(), tls.to_string()]
    });
}
