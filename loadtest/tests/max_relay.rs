//! Integration: the `max` scenario against the built-in relay delivers every message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_petrel-load");

/// Kills the relay child even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn max_against_relay_loses_nothing() {
    let mut relay = Child(
        Command::new(BIN)
            .args(["relay-server", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relay"),
    );
    let mut line = String::new();
    let stderr = relay.0.stderr.take().expect("piped stderr");
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("relay banner");
    let addr = line
        .trim()
        .strip_prefix("relay listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_owned();

    let json = std::env::temp_dir().join(format!("petrel-load-it-{}.json", std::process::id()));
    let out = Command::new(BIN)
        .args([
            "max", "--relay", "--server", &addr, "--users", "10", "--window", "4",
        ])
        .args(["--duration", "0.3", "--grace", "5", "--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run max");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "max failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid json");
    let _ = std::fs::remove_file(&json);
    let sent = report["sent"].as_u64().expect("sent");
    let delivered = report["delivered"].as_u64().expect("delivered");
    assert_eq!(report["connected"].as_u64(), Some(10));
    assert_eq!(report["lost"].as_u64(), Some(0));
    assert!(sent >= 300, "only {sent} messages sent");
    assert_eq!(sent, delivered);
    assert_eq!(
        report["delivery_latency_us"]["count"].as_u64(),
        Some(delivered)
    );
}
