//! The slixmpp virtualenv and a runner for interop scripts (same venv as tests/interop.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The slixmpp release the scripts are written against.
pub const SLIXMPP: &str = "slixmpp==1.10.0";
/// The reference Prometheus text-format parser, for the `/metrics` test.
pub const PROMETHEUS_CLIENT: &str = "prometheus-client==0.26.0";

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

/// The venv's python with slixmpp importable, creating `target/interop-venv` on first use.
pub fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = manifest_dir().join("target/interop-venv");
        let python = venv.join("bin/python");
        let version = SLIXMPP.split("==").nth(1).unwrap_or_default();
        let check = format!(
            "import slixmpp, prometheus_client, sys; sys.exit(slixmpp.__version__ != '{version}')"
        );
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
            PROMETHEUS_CLIENT,
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

/// Runs `tests/interop/<script>` with `args`; returns its output, panics with it on failure or
/// after `deadline`.
pub fn run_script(script: &str, args: &[String], deadline: Duration) -> String {
    run_labelled(script, script, args, deadline)
}

/// As [`run_script`], naming the run `label` in its panics (e.g. `offline.py send` for one phase).
pub fn run_labelled(label: &str, script: &str, args: &[String], deadline: Duration) -> String {
    let path = manifest_dir().join("tests/interop").join(script);
    let mut child = Command::new(venv_python())
        .arg(&path)
        .args(args)
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
        if start.elapsed() > deadline {
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
        Some(st) => panic!("{label} exited with {st}:\n{text}"),
        None => panic!("{label} did not finish within {deadline:?}:\n{text}"),
    }
}

/// The arguments every interop script takes to reach `server`: `--port`, `--cert`, `--password`.
pub fn server_args(server: &super::Server) -> Vec<String> {
    vec![
        "--port".into(),
        server.port.to_string(),
        "--cert".into(),
        server.cert_path().display().to_string(),
        "--password".into(),
        super::PASSWORD.into(),
    ]
}
