//! Roster and presence interop with slixmpp (tests/interop/roster.py does the client side): roster
//! add/push/remove, the subscription handshake both ways, presence broadcast on login and logout,
//! with two clients, at 1 and 2 shards.
//!
//! The venv helpers are the same as tests/interop.rs (copied, not shared, to keep this branch's
//! edits to files it owns; the integrator may move them into tests/common/).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Server, PASSWORD};

/// The slixmpp release the script is written against (works with Python 3.11).
const SLIXMPP: &str = "slixmpp==1.10.0";
/// What the script must finish within (it has its own 40 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

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

/// Runs the roster script against `server`; panics with its output on failure.
fn run_script(server: &Server) -> String {
    let script = manifest_dir().join("tests/interop/roster.py");
    let mut child = Command::new(venv_python())
        .arg(&script)
        .args(["--port", &server.port.to_string(), "--cert"])
        .arg(server.cert_path())
        .args(["--password", PASSWORD, "--timeout", "40"])
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
        Some(st) => panic!("roster.py exited with {st}:\n{text}"),
        None => panic!("roster.py did not finish within {SCRIPT_DEADLINE:?}:\n{text}"),
    }
}

fn check(shards: usize) {
    let server = Server::start_with(
        shards,
        &["u0", "u1"],
        "",
        "[modules.roster]\n[modules.presence]\n",
    );
    let out = run_script(&server);
    assert!(out.contains("OK: roster add/push/remove"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_roster_presence_one_shard() {
    check(1);
}

#[test]
fn slixmpp_roster_presence_two_shards() {
    check(2);
}
