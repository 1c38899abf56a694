//! Roster and presence interop with slixmpp (tests/interop/roster.py does the client side): roster
//! add/push/remove, the subscription handshake both ways, presence broadcast on login and logout,
//! with two clients, at 1 and 2 shards.
//!
//! The venv and script runner are tests/common/venv.rs.

mod common;

use std::time::Duration;

use common::venv::{run_script, server_args};
use common::Server;

/// What the script must finish within (it has its own 40 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the roster script against `server`; panics with its output on failure.
fn run_roster(server: &Server) -> String {
    let mut args = server_args(server);
    args.extend(["--timeout".into(), "40".into()]);
    run_script("roster.py", &args, SCRIPT_DEADLINE)
}

fn check(shards: usize) {
    let server = Server::start_with(
        shards,
        &["u0", "u1"],
        "",
        "[modules.roster]\n[modules.presence]\n",
    );
    let out = run_roster(&server);
    assert!(out.contains("OK: roster add/push/remove"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_roster_presence_one_shard() {
    check(1);
}

#[test]
fn slixmpp_roster_presence_two_shards() {
    check(2);
}
