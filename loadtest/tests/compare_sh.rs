//! Integration: `compare.sh` reports a target whose server cannot start instead of showing an
//! earlier run's figures, and charts the targets that ran.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_petrel-load");

/// A fresh results directory for one test.
fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petrel-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create results dir");
    dir
}

/// Run compare.sh on the relay alone, bound to `port`, results in `out`.
fn compare(port: u16, out: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compare.sh");
    Command::new("bash")
        .arg(script)
        .env("PETREL_LOAD", BIN)
        .env("TARGETS", "relay")
        .env("RELAY_PORT", port.to_string())
        .env("OUT", out)
        .env("USERS", "10")
        .env("WINDOW", "2")
        .env("DURATION", "0.5")
        .env("GRACE", "5")
        .output()
        .expect("run compare.sh")
}

#[test]
fn taken_port_is_reported_not_filled_from_an_earlier_run() {
    let out = out_dir("taken");
    // An earlier run's results, which the old script printed as this run's.
    std::fs::write(out.join("relay.txt"), "what rate/s\nmessage 999999 1us\n")
        .expect("write stale txt");
    std::fs::write(out.join("relay.json"), r#"{"msgs_per_s": 999999.0}"#).expect("stale json");
    std::fs::write(out.join("relay.rc"), "0\n").expect("stale rc");
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();

    let r = compare(port, &out);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "relay      FAILED TO START: port {port} is already in use"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("999999"), "stale figures shown: {stdout}");
    assert!(!stdout.contains("reaches"), "{stdout}");
    assert!(!out.join("relay.json").exists());
    drop(holder);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_started_target_gets_its_row_and_charts() {
    let out = out_dir("ok");
    // A port nobody holds: bind, read, release.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let r = compare(port, &out);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("relay") && l.contains(" message ")),
        "{stdout}"
    );
    for svg in ["relay.svg", "compare.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).expect("chart written");
        assert!(text.contains("<svg"), "{svg}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
