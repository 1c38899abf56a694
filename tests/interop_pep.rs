//! PEP (XEP-0163) interop with slixmpp's xep_0163, xep_0060, xep_0084, xep_0402 and xep_0115
//! plugins: tests/interop/pep.py publishes an avatar, an OMEMO device list and a bookmark between
//! alice (two clients), her contact bob (caps with `+notify`) and carol (no subscription), checks
//! who is notified and who may read, the refused publishes, and after a restart that the persistent
//! items are still there; at 1 and 2 shards (alice and bob homed on different shards).
//!
//! The venv and script runner are tests/common/venv.rs.

mod common;

use std::time::Duration;

use common::venv::{run_labelled, server_args};
use common::Server;
use petrel::shard::home_shard_of;

/// What a phase must finish within (each has its own 60 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

/// Modules the script needs besides the default test config's ping and disco; items up to 16 KiB
/// (the script's huge item is 20 000 bytes).
const MODULES: &str = "[modules.roster]\n[modules.presence]\n[modules.caps]\n\
                       [modules.pep]\nmax_item_bytes = 16384\n";

/// alice, bob and carol by name: at 2 shards alice and bob have different home shards.
fn pick_users(shards: usize) -> [String; 3] {
    let home = |u: &str| home_shard_of(&format!("{u}@localhost"), shards);
    let names: Vec<String> = (0..64).map(|i| format!("u{i}")).collect();
    let a = &names[0];
    let Some(b) = names
        .iter()
        .skip(1)
        .find(|n| shards == 1 || home(n) != home(a))
    else {
        panic!("no user of u1..u63 homed off {a}'s shard at {shards} shards");
    };
    let c = names.iter().skip(1).find(|n| *n != b).unwrap_or(b);
    [a.clone(), b.clone(), c.clone()]
}

/// Runs one phase of pep.py; panics with its output on failure.
fn phase(server: &Server, users: &[String; 3], phase: &str) {
    let mut args = server_args(server);
    args.extend([
        "--users".into(),
        users.join(","),
        "--phase".into(),
        phase.into(),
        "--timeout".into(),
        "60".into(),
    ]);
    let out = run_labelled(&format!("pep.py {phase}"), "pep.py", &args, SCRIPT_DEADLINE);
    assert!(out.contains(&format!("OK: {phase}")), "{out}");
    println!("{out}");
}

fn check(shards: usize) {
    let users = pick_users(shards);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut server = Server::start_with(shards, &refs, "", MODULES);
    phase(&server, &users, "main");
    let status = server.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "petrel did not stop cleanly (shards={shards}): {status:?}"
    );
    server.spawn(shards);
    phase(&server, &users, "after-restart");
}

#[test]
fn slixmpp_pep_one_shard() {
    check(1);
}

#[test]
fn slixmpp_pep_two_shards() {
    check(2);
}
