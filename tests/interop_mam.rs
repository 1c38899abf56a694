//! Message Archive Management (XEP-0313) interop with slixmpp's xep_0313/xep_0441/xep_0359 plugins:
//! tests/interop/mam.py archives a 120-message conversation on both sides, queries it by `with`
//! and by time range, pages it forwards and backwards, matches live stanza ids to archive ids,
//! checks preferences and refused queries, at 1 and 2 shards (the same script passes against
//! Prosody 0.12 without `--strict`: tests/interop/prosody_mam.sh).
//!
//! Each test is [`check`] with a store config snippet: the PostgreSQL run passes a `[store]` table
//! naming a database of its own (tests/common/pg.rs; skipped with a note when `PETREL_TEST_PG` is
//! unset outside CI); another backend is one more such function.

mod common;

use std::time::Duration;

use common::pg::TestDatabase;
use common::venv::{run_script, server_args};
use common::Server;
use petrel::shard::home_shard_of;

/// What the script must finish within (it has its own 120 s timeout inside).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);

/// Modules the script needs besides the default test config's ping and disco; `[modules.mam]` with
/// its defaults (always archive, pages of 50, at most 250).
const MODULES: &str = "[modules.roster]\n[modules.presence]\n[modules.mam]\n";

/// The script's three users (sender, recipient, third party) by name. At 2+ shards the sender and
/// recipient have different home shards (every archive write and stanza id crosses shards) and the
/// third shares the sender's (one same-shard pair too).
fn pick_users(shards: usize) -> [String; 3] {
    let home = |u: &str| home_shard_of(&format!("{u}@localhost"), shards);
    let names: Vec<String> = (0..64).map(|i| format!("u{i}")).collect();
    let a = &names[0];
    let b = names
        .iter()
        .skip(1)
        .find(|n| shards == 1 || home(n) != home(a));
    let c = names
        .iter()
        .skip(1)
        .find(|n| Some(*n) != b && home(n) == home(a));
    match (b, c) {
        (Some(b), Some(c)) => [a.clone(), b.clone(), c.clone()],
        _ => panic!("no spread of u0..u63 over {shards} shards: {b:?} {c:?}"),
    }
}

/// Runs mam.py (strict: petrel's answers where the XEP leaves a choice) against a server with
/// `store` appended to its config.
fn check(shards: usize, store: &str) {
    let users = pick_users(shards);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let server = Server::start_with(shards, &refs, "", &format!("{MODULES}{store}"));
    let mut args = server_args(&server);
    args.extend([
        "--users".into(),
        users.join(","),
        "--strict".into(),
        "--timeout".into(),
        "120".into(),
    ]);
    let out = run_script("mam.py", &args, SCRIPT_DEADLINE);
    assert!(out.contains("OK: mam with 120 messages"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_mam_one_shard() {
    check(1, "");
}

#[test]
fn slixmpp_mam_two_shards() {
    check(2, "");
}

#[test]
fn slixmpp_mam_postgres_two_shards() {
    // Dropped (the database deleted) after check() has stopped its server.
    let Some(db) = TestDatabase::create() else {
        return;
    };
    check(
        2,
        &format!(
            "[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 3\n",
            db.url
        ),
    );
}
