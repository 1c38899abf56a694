//! The slixmpp virtualenv and a runner for interop scripts (same venv as tests/interop.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The slixmpp release the scripts are written against.
pub const SLIXMPP: &str = "slixmpp==1.10.0";
/// The reference Prometheus text-format parser, for the `/metrics` test.
pub const PROMETHEUS_CLIENT: &str = "prometheus-client==0.26.0";
/// The HTTP client slixmpp's xep_0363 uploads with.
pub const AIOHTTP: &str = "aiohttp==3.11.18";
/// The DNS server library of tests/interop/dns.py (federation tests resolve through it).
pub const DNSLIB: &str = "dnslib==0.9.26";

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
        // aiohttp: slixmpp's HTTP upload plugin (xep_0363) needs it.
        let check = format!(
            "import slixmpp, prometheus_client, aiohttp, dnslib, sys; \
             sys.exit(slixmpp.__version__ != '{version}')"
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
            AIOHTTP,
            DNSLIB,
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
    let mut cmd = Command::new(venv_python());
    cmd.arg(script_path(script)).args(args);
    run_command(label, &mut cmd, deadline)
}

fn script_path(script: &str) -> PathBuf {
    manifest_dir().join("tests/interop").join(script)
}

/// Runs `cmd` (stdin closed, stdout and stderr captured); returns its output, panics with it
/// (naming the run `label`) on failure or after `deadline`.
pub fn run_command(label: &str, cmd: &mut Command, deadline: Duration) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {label}: {e}"));
    let status = wait_until(&mut child, deadline);
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

/// The child's exit status, or `None` (and the child killed) if it runs past `deadline`.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An interop script running in the background (e.g. a peer that answers a client under test);
/// killed when dropped.
pub struct Background {
    label: String,
    child: std::process::Child,
    /// Its stdout, line by line, from a reader thread (unbounded, but a script prints a few lines).
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    /// Starts `tests/interop/<script>` with `args`.
    pub fn spawn(script: &str, args: &[String]) -> Background {
        let mut child = Command::new(venv_python())
            .arg(script_path(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        // Both pipes were requested just above.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        Background {
            label: script.to_string(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns it; panics with the output so far
    /// if the script exits or `deadline` passes first.
    pub fn wait_line(&mut self, prefix: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => {
                    // Timed out, or the script exited (its stdout closed): stop and reap it.
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let out = self.output();
                    panic!(
                        "{}: no line {prefix:?} within {deadline:?}:\n{out}",
                        self.label
                    );
                }
            }
        }
    }

    /// Waits for the script to exit; returns its whole output, panics with it if it failed or
    /// did not exit within `deadline`.
    pub fn finish(mut self, deadline: Duration) -> String {
        let status = wait_until(&mut self.child, deadline);
        let _ = self.child.wait();
        let text = self.output();
        match status {
            Some(st) if st.success() => text,
            Some(st) => panic!("{} exited with {st}:\n{text}", self.label),
            None => panic!("{} did not finish within {deadline:?}:\n{text}", self.label),
        }
    }

    /// Everything printed so far (all of it once the process has exited and been reaped).
    fn output(&mut self) -> String {
        let exited = self.child.try_wait().ok().flatten().is_some();
        if exited {
            // The reader threads end at EOF: collect the rest of stdout, and stderr.
            self.seen.extend(self.lines.iter());
        } else {
            self.seen.extend(self.lines.try_iter());
        }
        let err = match self.stderr.take() {
            Some(h) if exited => h.join().unwrap_or_default(),
            other => {
                self.stderr = other;
                "(still running)".into()
            }
        };
        format!("--- stdout\n{}\n--- stderr\n{err}", self.seen.join("\n"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
