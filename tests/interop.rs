//! Interop with slixmpp, a real Python XMPP client library: STARTTLS verified against the server's
//! self-signed certificate, SCRAM, bind, presence, chat between two clients, XEP-0199 ping and
//! XEP-0030 disco#info, at 1 and 2 shards (tests/interop/chat.py does the client side).
//!
//! The first run creates a virtualenv with slixmpp in `target/interop-venv` (needs `python3 -m venv`
//! and PyPI); later runs reuse it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Server, PASSWORD};

/// The slixmpp release the script is written against (works with Python 3.11).
const SLIXMPP: &str = "slixmpp==1.10.0";
/// What the script must finish within (it has its own 20 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(45);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The venv's python with slixmpp importable, creating the venv on first use.
fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = manifest_dir().join("target/interop-venv");
        let python = venv.join("bin/python");
        let version = SLIXMPP.split("==").nth(1).unwrap_or_default();
        let check = format!("import slixmpp, sys; sys.exit(slixmpp.__version__ != '{version}')");
        let ready = |py: &Path| {
            Command::new(py)
                .args(["-c", &check])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if ready(&python) {
            return python;
        }
        // Build next to the final place and rename: concurrent test processes never see half a venv.
        let tmp = manifest_dir().join(format!("target/interop-venv.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("python3").args(["-m", "venv"]).arg(&tmp));
        run(Command::new(tmp.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SLIXMPP,
        ]));
        assert!(
            ready(&tmp.join("bin/python")),
            "slixmpp not importable after install"
        );
        // `bin/python` finds its packages relative to itself, so it survives the rename (the
        // scripts' shebangs, e.g. bin/pip, would not; use `bin/python -m pip` on this venv).
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&tmp, &venv).is_err() {
            // Another process won the race; use its venv.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(ready(&python), "{} has no slixmpp", venv.display());
        python
    })
}

/// Runs the chat script against `server` with `pairs` pairs of users; panics with its output on failure.
fn run_script(server: &Server, pairs: usize) -> String {
    let script = manifest_dir().join("tests/interop/chat.py");
    let mut child = Command::new(venv_python())
        .arg(&script)
        .args(["--port", &server.port.to_string(), "--cert"])
        .arg(server.cert_path())
        .args([
            "--pairs",
            &pairs.to_string(),
            "--password",
            PASSWORD,
            "--timeout",
            "20",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match status {
        Some(st) if st.success() => text,
        Some(st) => panic!("chat.py exited with {st}:\n{text}"),
        None => panic!("chat.py did not finish within {SCRIPT_DEADLINE:?}:\n{text}"),
    }
}

fn users(pairs: usize) -> Vec<String> {
    (0..2 * pairs).map(|i| format!("u{i}")).collect()
}

#[test]
fn slixmpp_one_shard() {
    let pairs = 2;
    let names = users(pairs);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = Server::start(1, &refs);
    let out = run_script(&server, pairs);
    assert!(out.contains("OK: 2 pairs"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_two_shards() {
    // Four pairs: connections spread over both shards, so some pairs talk across shards.
    let pairs = 4;
    let names = users(pairs);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = Server::start(2, &refs);
    let out = run_script(&server, pairs);
    assert!(out.contains("OK: 4 pairs"), "{out}");
    println!("{out}");
}
