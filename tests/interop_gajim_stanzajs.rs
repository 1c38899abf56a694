//! Two more client stacks nobody here wrote: nbxmpp (Gajim's XMPP library, Debian's
//! python3-nbxmpp) and StanzaJS (npm's `stanza`, on Node), driven by tests/clients/nbxmpp_*.py and
//! tests/web/stanza_*.mjs against a petrel at two shards with the modules a Gajim or StanzaJS user
//! meets: login (SCRAM over STARTTLS, WebSocket or BOSH), stream management and resumption, roster,
//! presence, carbons, MAM, MUC (creation, configuration, moderation, invitations, room archive),
//! PEP, blocking, bookmarks, vCard and avatars, upload, and nbxmpp and StanzaJS talking to each
//! other. Each script prints `OK`/`FAIL` per check and `# N ok, M failed`, and exits 0 only when
//! every expected check ran and passed.
//!
//! nbxmpp needs Debian's python3-nbxmpp, python3-gi and gir1.2-soup-3.0 (for /usr/bin/python3);
//! StanzaJS needs node >= 20.10 and `npm ci --prefix tests/web`. Missing either skips loudly, and
//! fails when `PETREL_REQUIRE_PEERS` (nbxmpp) or `PETREL_REQUIRE_BROWSER` (StanzaJS) is set, as
//! .ci/run sets them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{free_port, web, Server, PASSWORD};

/// The server and its HTTP port (WebSocket, BOSH, upload).
struct Target {
    server: Server,
    http: u16,
}

fn target() -> Target {
    let http = free_port();
    let server = Server::start_config(2, &["alice", "bob", "carol", "dave"], |port, data| {
        format!(
            r#"[general]
hosts = ["localhost"]
data_dir = "{data}"

[auth]
scram_iterations = 4096
[auth.throttle]
enabled = false

[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true

[[listen.http]]
port = {http}
ip_address = "127.0.0.1"
tls = "none"
handlers = ["websocket", "bosh", "upload"]

{modules}[modules.ping]
[modules.disco]
[modules.caps]
[modules.muc]
[modules.pep]
[modules.avatar]
[modules.bookmarks]
[modules.pubsub]
[modules.http_upload]
base_url = "http://127.0.0.1:{http}/upload"
"#,
            data = data.display(),
            modules = web::MODULES,
        )
    });
    Target { server, http }
}

impl Target {
    /// The flags every script takes, logging in as `users` (name:password, in order).
    fn args(&self, users: &[&str], extra: &[&str]) -> Vec<String> {
        let accounts: Vec<String> = users.iter().map(|u| format!("{u}:{PASSWORD}")).collect();
        let mut args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &self.server.port.to_string(),
            "--http-port",
            &self.http.to_string(),
            "--domain",
            "localhost",
            "--timeout",
            "120",
            "--accounts",
            &accounts.join(","),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// Whether Debian's nbxmpp (with GLib's introspection and libsoup 3) imports in /usr/bin/python3;
/// when it does not, the test is skipped (or fails under `PETREL_REQUIRE_PEERS`).
fn nbxmpp_installed() -> bool {
    let found = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Soup', '3.0'); import nbxmpp.client",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PETREL_REQUIRE_PEERS").is_none(),
            "python3-nbxmpp (with python3-gi, gir1.2-soup-3.0) is not installed \
             (PETREL_REQUIRE_PEERS is set)"
        );
        eprintln!("python3-nbxmpp is not installed: skipped");
    }
    found
}

/// Asserts a script's output ends with every check passed.
fn passed(label: &str, out: &str) {
    println!("{label}:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("# ") && l.ends_with(" ok, 0 failed")),
        "{label}: no `# N ok, 0 failed` line:\n{out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("FAIL")),
        "{label}:\n{out}"
    );
}

/// Runs tests/clients/SCRIPT with /usr/bin/python3 and `args`.
fn nbxmpp(script: &str, args: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(path).args(args).env("PYTHONUNBUFFERED", "1");
    let out = common::venv::run_command(script, &mut cmd, Duration::from_secs(180));
    passed(&format!("{script} {args:?}"), &out);
}

/// Runs `script` over TCP (STARTTLS) and over WebSocket as `users`.
fn nbxmpp_both_ways(script: &str, users: &[&str]) {
    if !nbxmpp_installed() {
        return;
    }
    let t = target();
    nbxmpp(script, &t.args(users, &[]));
    nbxmpp(script, &t.args(users, &["--ws"]));
}

#[test]
fn nbxmpp_login_chat_roster_carbons_mam_muc_pep() {
    nbxmpp_both_ways("nbxmpp_basic.py", &["alice", "bob"]);
}

#[test]
fn nbxmpp_stream_resumption() {
    nbxmpp_both_ways("nbxmpp_resume.py", &["alice", "bob"]);
}

#[test]
fn nbxmpp_what_gajim_does_around_login() {
    nbxmpp_both_ways("nbxmpp_gajim_login.py", &["alice"]);
}

#[test]
fn nbxmpp_gajim_group_chat_flows() {
    nbxmpp_both_ways("nbxmpp_muc.py", &["alice", "bob", "carol"]);
}

/// Runs tests/web/SCRIPT with node, over WebSocket and, if `bosh`, over BOSH too.
fn stanzajs(test: &str, script: &str, users: &[&str], bosh: bool) {
    let Some(tools) = web::tools(test, false) else {
        return;
    };
    let t = target();
    let mut runs = vec![t.args(users, &[])];
    if bosh {
        runs.push(t.args(users, &["--bosh"]));
    }
    for args in runs {
        let out = tools.run(script, &args, Duration::from_secs(180));
        passed(&format!("{script} {args:?}"), &out);
    }
}

#[test]
fn stanzajs_login_chat_roster_carbons_mam_muc_pep() {
    stanzajs(
        "interop_gajim_stanzajs::stanzajs_login_chat_roster_carbons_mam_muc_pep",
        "stanza_basic.mjs",
        &["carol", "dave"],
        true,
    );
}

#[test]
fn stanzajs_disco_upload_blocking_bookmarks_vcard_paging() {
    stanzajs(
        "interop_gajim_stanzajs::stanzajs_disco_upload_blocking_bookmarks_vcard_paging",
        "stanza_extras.mjs",
        &["dave"],
        true,
    );
}

#[test]
fn stanzajs_stream_resumption() {
    stanzajs(
        "interop_gajim_stanzajs::stanzajs_stream_resumption",
        "stanza_resume.mjs",
        &["carol", "dave"],
        false,
    );
}

#[test]
fn nbxmpp_and_stanzajs_talk_to_each_other() {
    // nbxmpp (alice, over TCP then WebSocket) and a StanzaJS echo bot (carol, over WebSocket then
    // BOSH) that nbxmpp_cross.py starts: chat both ways, and group chat in a room StanzaJS made.
    let Some(tools) = web::tools(
        "interop_gajim_stanzajs::nbxmpp_and_stanzajs_talk_to_each_other",
        false,
    ) else {
        return;
    };
    if !nbxmpp_installed() {
        return;
    }
    let t = target();
    let echo = web::web_dir().join("stanza_echo.mjs").display().to_string();
    let node = tools.node_path().display().to_string();
    let common = ["--echo-script", echo.as_str(), "--node", node.as_str()];
    nbxmpp("nbxmpp_cross.py", &t.args(&["alice", "carol"], &common));
    let mut over_web = common.to_vec();
    over_web.extend(["--ws", "--echo-bosh"]);
    nbxmpp("nbxmpp_cross.py", &t.args(&["alice", "carol"], &over_web));
}
