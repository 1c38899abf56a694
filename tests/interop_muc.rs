//! Multi-User Chat (XEP-0045) interop with slixmpp's xep_0045 plugin at `conference.localhost`:
//! tests/interop/muc.py runs a room's life (create and configure, disco, joins, groupchat, subject,
//! private messages, self-ping, invitations, nick conflict, history, voice request, kick, ban,
//! destroy) at 1 and 2 shards; tests/interop/muc_persist.py checks a persistent room across a restart.
//!
//! The venv and script runner are tests/common/venv.rs.

mod common;

use std::time::Duration;

use common::venv::{run_labelled, run_script, server_args};
use common::Server;

/// What a script must finish within (each has its own 60 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

/// Modules the scripts need besides the default test config's ping and disco.
const MODULES: &str = "[modules.roster]\n[modules.presence]\n[modules.muc]\n";

/// `u0`..`u{n-1}`.
fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

fn start(shards: usize, n: usize) -> Server {
    let names = users(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    Server::start_with(shards, &refs, "", MODULES)
}

fn check(shards: usize, occupants: usize) {
    // One more user than occupants: the outsider who is invited and joins later.
    let server = start(shards, occupants + 1);
    let mut args = server_args(&server);
    args.extend([
        "--occupants".into(),
        occupants.to_string(),
        "--timeout".into(),
        "60".into(),
    ]);
    let out = run_script("muc.py", &args, SCRIPT_DEADLINE);
    assert!(out.contains("OK: muc with"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_muc_one_shard() {
    check(1, 4);
}

#[test]
fn slixmpp_muc_two_shards() {
    // Six occupants (seven connections): the kernel spreads them over both shards, so the room
    // has occupants on a shard other than its own.
    check(2, 6);
}

/// Runs one phase of muc_persist.py; panics with its output on failure.
fn persist_phase(server: &Server, phase: &str) -> String {
    let mut args = server_args(server);
    args.extend([
        "--phase".into(),
        phase.into(),
        "--timeout".into(),
        "60".into(),
    ]);
    let out = run_labelled(
        &format!("muc_persist.py {phase}"),
        "muc_persist.py",
        &args,
        SCRIPT_DEADLINE,
    );
    assert!(out.contains(&format!("OK: {phase}")), "{out}");
    out
}

#[test]
fn slixmpp_muc_persistent_room_survives_restart() {
    for shards in [1, 2] {
        let mut server = start(shards, 3);
        println!("{}", persist_phase(&server, "before-restart"));
        let status = server.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "petrel did not stop cleanly (shards={shards}): {status:?}"
        );
        server.spawn(shards);
        println!("{}", persist_phase(&server, "after-restart"));
    }
}
