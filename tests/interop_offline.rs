//! Interop with slixmpp for offline messages (XEP-0160 with XEP-0203 delay) and blocking
//! (XEP-0191), at 1 and 2 shards; tests/interop/offline.py does the client side in phases.
//!
//! Uses the same virtualenv as tests/interop.rs (`target/interop-venv`, created on first use).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Server, PASSWORD};
use petrel::jid::BareJid;
use petrel::store::Store;

/// The slixmpp release the script is written against (same as tests/interop.rs).
const SLIXMPP: &str = "slixmpp==1.10.0";
/// What one phase must finish within (it has its own 20 s timeout inside).
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

/// The venv's python with slixmpp importable, creating the venv on first use (as tests/interop.rs).
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
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&tmp, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(ready(&python), "{} has no slixmpp", venv.display());
        python
    })
}

/// Runs one phase of offline.py against `server`; panics with its output on failure.
fn phase(server: &Server, name: &str) -> String {
    let script = manifest_dir().join("tests/interop/offline.py");
    let mut child = Command::new(venv_python())
        .arg(&script)
        .arg(name)
        .args(["--port", &server.port.to_string(), "--cert"])
        .arg(server.cert_path())
        .args(["--password", PASSWORD, "--timeout", "20"])
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
        Some(st) => panic!("offline.py {name} exited with {st}:\n{text}"),
        None => panic!("offline.py {name} did not finish within {SCRIPT_DEADLINE:?}:\n{text}"),
    }
}

/// Waits until `n` offline messages for `user` are committed.
fn wait_stored(server: &Server, user: &str, n: u64) {
    let store = Store::open(&server.dir.path().join("data")).unwrap();
    let jid = BareJid::parse(user).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.offline_count(&jid).unwrap() != n {
        assert!(Instant::now() < deadline, "offline messages not stored");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check(shards: usize) {
    let modules = "[modules.offline]\n[modules.blocking]\n";
    let server = Server::start_with(shards, &["alice", "bob"], "", modules);
    println!("{}", phase(&server, "send"));
    wait_stored(&server, "bob@localhost", 2);
    let out = phase(&server, "receive");
    assert!(out.contains("OK: receive"), "{out}");
    println!("{out}");
    let out = phase(&server, "block");
    assert!(out.contains("OK: block"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_offline_and_blocking_one_shard() {
    check(1);
}

#[test]
fn slixmpp_offline_and_blocking_two_shards() {
    check(2);
}
