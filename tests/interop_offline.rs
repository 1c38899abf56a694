//! Interop with slixmpp for offline messages (XEP-0160 with XEP-0203 delay) and blocking
//! (XEP-0191), at 1 and 2 shards; tests/interop/offline.py does the client side in phases.
//!
//! Uses the shared virtualenv of tests/common/venv.rs (`target/interop-venv`, created on first use).

mod common;

use std::time::{Duration, Instant};

use common::venv::{run_labelled, server_args};
use common::Server;
use petrel::jid::BareJid;
use petrel::store::Store;

/// What the script must finish within (it has its own 20 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(45);

/// Runs one phase of offline.py against `server`; panics with its output on failure.
fn phase(server: &Server, name: &str) -> String {
    let mut args = vec![name.to_string()];
    args.extend(server_args(server));
    args.extend(["--timeout".into(), "20".into()]);
    run_labelled(
        &format!("offline.py {name}"),
        "offline.py",
        &args,
        SCRIPT_DEADLINE,
    )
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
