//! The JavaScript clients of tests/web/ (converse.js in headless Chromium, @xmpp/client and
//! StanzaJS on Node):
//! finding node, Chromium and the npm packages, and running a script with node.
//!
//! When something is missing a test skips with a loud message, unless `PETREL_REQUIRE_BROWSER` is
//! set (`.ci/run` sets it): then it fails, so CI can never skip silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Set (to anything non-empty) to make a missing node, Chromium or npm package a failure.
pub const REQUIRE: &str = "PETREL_REQUIRE_BROWSER";

/// The npm packages the scripts import (installed by `npm ci` in tests/web).
const PACKAGES: [&str; 4] = ["converse.js", "playwright-core", "@xmpp/client", "stanza"];

/// What a test found; `None` from [`tools`] means "skip".
pub struct Tools {
    node: PathBuf,
    node_major: u32,
    /// The Chromium binary (only looked up for tests that need a browser).
    pub chromium: Option<PathBuf>,
}

/// tests/web, where package.json and the scripts are.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// An executable named `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `node`'s path and major version, if it runs.
fn find_node() -> Option<(PathBuf, u32)> {
    let node = on_path("node")?;
    let out = Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout);
    // "v20.19.2"
    let major = version.trim().trim_start_matches('v').split('.').next()?;
    Some((node, major.parse().ok()?))
}

/// Chromium: `PETREL_CHROMIUM`, else Debian's `chromium` (or `chromium-browser`) on PATH.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PETREL_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    on_path("chromium").or_else(|| on_path("chromium-browser"))
}

/// Node (and Chromium if `browser`) and the npm packages, or `None` after a loud skip message
/// naming `test` and what is missing; panics instead when [`REQUIRE`] is set.
pub fn tools(test: &str, browser: bool) -> Option<Tools> {
    let mut missing = Vec::new();
    let node = find_node();
    match &node {
        None => missing.push("node (Node.js >= 20.10 on PATH)".to_string()),
        Some((_, major)) if *major < 20 => {
            missing.push(format!("node >= 20.10 (found major version {major})"))
        }
        Some(_) => {}
    }
    let chromium = if browser { find_chromium() } else { None };
    if browser && chromium.is_none() {
        missing.push("chromium (apt-get install --no-install-recommends chromium)".into());
    }
    for pkg in PACKAGES {
        if !web_dir()
            .join("node_modules")
            .join(pkg)
            .join("package.json")
            .is_file()
        {
            missing.push(format!("npm package {pkg} (npm ci --prefix tests/web)"));
        }
    }
    if missing.is_empty() {
        // `missing` would name node otherwise.
        let (node, node_major) = node.expect("node was found");
        return Some(Tools {
            node,
            node_major,
            chromium,
        });
    }
    let what = missing.join(", ");
    if std::env::var_os(REQUIRE).is_some_and(|v| !v.is_empty()) {
        panic!("{test}: missing {what}, and {REQUIRE} is set: this test must run");
    }
    // Straight to the process's stderr: libtest captures eprintln! of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {test}: missing {what}.\n\
         !!! Nothing was tested. Set {REQUIRE}=1 to make this a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

impl Tools {
    /// The `node` binary (for scripts that start node themselves).
    pub fn node_path(&self) -> &Path {
        &self.node
    }

    /// A `node` command running `tests/web/<script>`.
    pub fn node(&self, script: &str) -> Command {
        let mut cmd = Command::new(&self.node);
        // @xmpp/client uses the global WebSocket, which Node has by default from 22 on.
        if self.node_major < 22 {
            cmd.arg("--experimental-websocket");
        }
        cmd.arg(web_dir().join(script)).current_dir(web_dir());
        cmd
    }

    /// Runs `tests/web/<script>` with `args`; returns its output, panics with it on failure or
    /// after `deadline`.
    pub fn run(&self, script: &str, args: &[String], deadline: Duration) -> String {
        let mut cmd = self.node(script);
        cmd.args(args);
        super::venv::run_command(script, &mut cmd, deadline)
    }
}

/// A text no earlier run can have left in an archive or a cache: `what` with the pid and time.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{what} #{}-{nanos}", std::process::id())
}

/// The modules of a server the web clients log in to: what a real deployment runs (converse.js
/// waits for its roster before it opens a chat, and asks for carbons, vCards, MAM, ...).
pub const MODULES: &str = "[modules.roster]\n[modules.presence]\n[modules.offline]\n\
    [modules.carbons]\n[modules.vcard]\n[modules.private]\n[modules.blocking]\n[modules.csi]\n\
    [modules.stream_management]\n[modules.mam]\n[modules.version]\n[modules.time]\n[modules.last]\n";

/// Starts tests/interop/replier.py as `jid` (resource `py`) over c2s: it answers `reply` to the
/// first chat message `expect` from `sender`. Returns once it is logged in with presence sent.
pub fn start_replier(
    server: &super::Server,
    user: &str,
    sender: &str,
    expect: &str,
    reply: &str,
) -> super::venv::Background {
    let mut args = super::venv::server_args(server);
    args.extend(
        [
            "--jid",
            &format!("{user}@localhost/py"),
            "--sender",
            sender,
            "--expect",
            expect,
            "--reply",
            reply,
            "--timeout",
            "300",
        ]
        .map(String::from),
    );
    let mut peer = super::venv::Background::spawn("replier.py", &args);
    peer.wait_line("READY ", Duration::from_secs(120));
    peer
}

/// The arguments converse.mjs and xmpp_client.mjs share: the password of the user they log in as,
/// the peer they write to, what they send and the answer they wait for.
pub fn chat_args(peer: &str, message: &str, reply: &str) -> Vec<String> {
    [
        "--password",
        super::PASSWORD,
        "--peer",
        peer,
        "--message",
        message,
        "--reply",
        reply,
    ]
    .map(String::from)
    .to_vec()
}
