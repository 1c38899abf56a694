//! External component interop with slixmpp's `ComponentXMPP` (tests/interop/component.py, echo
//! mode): the component connects to `[[listen.component]]`, users log in over STARTTLS and send it a
//! message each; it answers every one, and every user gets its answer. At 1 and 2 shards; at 2 the
//! users have different home shards and their connections are spread over both shards by the
//! kernel, so messages reach the component from its own shard and over the mesh.
//!
//! The venv and script runner are tests/common/venv.rs.

mod common;

use std::time::Duration;

use common::component::{self, SECRET};
use common::venv::{run_script, server_args};
use common::{free_port, Server};
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
    let server = Server::start_with(shards, &USERS, "", &component::config(port, &[DOMAIN]));
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
    ]);
    let out = run_script("component.py", &args, Duration::from_secs(60));
    assert!(out.contains("OK: component"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_component_one_shard() {
    check(1);
}

#[test]
fn slixmpp_component_two_shards() {
    check(2);
}
