//! Interop with slixmpp, a real Python XMPP client library: STARTTLS verified against the server's
//! self-signed certificate, SCRAM, bind, presence, chat between two clients, XEP-0199 ping and
//! XEP-0030 disco#info, at 1 and 2 shards (tests/interop/chat.py does the client side).
//!
//! The first run creates a virtualenv with slixmpp in `target/interop-venv` (needs `python3 -m venv`
//! and PyPI); later runs reuse it.

mod common;

use std::time::Duration;

use common::venv::{run_script, server_args};
use common::Server;

/// What the script must finish within (it has its own 20 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(45);

/// Runs the chat script against `server` with `pairs` pairs of users; panics with its output on failure.
fn run_chat(server: &Server, pairs: usize) -> String {
    let mut args = server_args(server);
    args.extend([
        "--pairs".into(),
        pairs.to_string(),
        "--timeout".into(),
        "20".into(),
    ]);
    run_script("chat.py", &args, SCRIPT_DEADLINE)
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
    let out = run_chat(&server, pairs);
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
    let out = run_chat(&server, pairs);
    assert!(out.contains("OK: 4 pairs"), "{out}");
    println!("{out}");
}
