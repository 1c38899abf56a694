//! External component interop with slixmpp's `ComponentXMPP` (tests/interop/component.py, echo
//! mode): the component connects to `[[listen.component]]`, users log in over STARTTLS and send it a
//! message each; it answers every one, and every user gets its answer. At 1 and 2 shards; at 2 the
//! users have different home shards and the script adds sessions until they live on both shards
//! (the kernel picks a connection's shard; the admin API tells which), so messages reach the
//! component from its own shard and over the mesh.
//!
//! The venv and script runner are tests/common/venv.rs.

mod common;

use std::time::Duration;

use common::component::{self, SECRET};
use common::free_port;
use common::venv::{run_script, server_args};
use petrel::shard::home_shard_of;

const DOMAIN: &str = "echo.localhost";
/// Users of the test: at 2 shards, at least one homed on each shard.
const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];

fn check(shards: usize) {
    let homes: std::collections::BTreeSet<u16> = USERS
        .iter()
        .map(|u| home_shard_of(&format!("{u}@localhost"), shards).0)
        .collect();
    assert_eq!(homes.len(), shards, "the users cover every shard");
    let port = free_port();
    let (server, http) =
        common::admin::start(shards, &USERS, true, &component::config(port, &[DOMAIN]));
    let mut args = server_args(&server);
    args.extend([
        "--mode".into(),
        "echo".into(),
        "--component-port".into(),
        port.to_string(),
        "--domain".into(),
        DOMAIN.into(),
        "--secret".into(),
        SECRET.into(),
        "--users".into(),
        USERS.join(","),
        // The script adds sessions until they live on every shard (the admin API tells where).
        "--admin-port".into(),
        http.to_string(),
        "--token".into(),
        common::admin::TOKEN.into(),
        "--shards".into(),
        shards.to_string(),
    ]);
    let out = run_script("component.py", &args, Duration::from_secs(60));
    assert!(out.contains("OK: component"), "{out}");
    println!("{out}");
}

/// The serve mode other tests use (e.g. a push app server): the component reports what it receives
/// and answers IQs.
#[test]
fn slixmpp_component_serve_mode() {
    let port = free_port();
    let server = common::Server::start_with(2, &["alice"], "", &component::config(port, &[DOMAIN]));
    let mut comp = component::spawn_slixmpp(port, DOMAIN);
    let mut alice = server.login("alice", "a", None);
    alice.chat(&format!("bot@{DOMAIN}"), "served");
    let line = comp.wait_line("STANZA", Duration::from_secs(30));
    assert!(
        line.contains("served") && line.contains("alice@localhost/a"),
        "{line}"
    );
    alice.send(&format!(
        "<iq type='get' to='{DOMAIN}' id='q1'><query xmlns='jabber:iq:version'/></iq>"
    ));
    let r = alice.expect("the component's IQ result", |s| {
        s.id().as_deref() == Some("q1")
    });
    assert_eq!(r.type_().as_deref(), Some("result"));
    assert_eq!(r.from().as_deref(), Some(DOMAIN));
}

#[test]
fn slixmpp_component_one_shard() {
    check(1);
}

#[test]
fn slixmpp_component_two_shards() {
    check(2);
}
