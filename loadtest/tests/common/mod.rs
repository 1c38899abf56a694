//! Shared by the fake-server integration tests: the stream header they answer
//! with, a base64 decoder for SASL PLAIN, and a runner for the built binary.

#![allow(dead_code)] // each test file uses its own part

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_petrel-load");

/// The fake server's stream header.
pub const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'>";

/// Decode standard base64 (padding ignored).
pub fn decode_b64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let Some(v) = A.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Run petrel-load with `args` plus `--quiet --json`; exit code and the JSON report.
pub fn run(args: &[&str]) -> (i32, serde_json::Value) {
    // Tests run in parallel in one process: number the report files.
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "petrel-load-fake-{}-{}.json",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let out = Command::new(BIN)
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run petrel-load");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "no report: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&json);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&text).expect("json"),
    )
}
