//! Interop with slixmpp's own XEP-0198 plugin (tests/interop/sm.py does the client side), at 1 and
//! 2 shards: enable with resumption, acks both ways, resume after killing the TCP connection
//! (several rounds: the new connection lands on any shard), exactly the missed messages once.

mod common;

use std::time::Duration;

use common::{Server, PASSWORD};

fn run(shards: usize) {
    let server = Server::start_with(
        shards,
        &["alice", "bob"],
        "",
        "[modules.stream_management]\nresume_timeout = 60\nack_freq = 4\n",
    );
    let args: Vec<String> = vec![
        "--port".into(),
        server.port.to_string(),
        "--cert".into(),
        server.cert_path().display().to_string(),
        "--password".into(),
        PASSWORD.into(),
        "--timeout".into(),
        "50".into(),
        "--rounds".into(),
        "4".into(),
    ];
    let out = common::venv::run_script("sm.py", &args, Duration::from_secs(70));
    assert!(out.contains("ALL OK"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_stream_management_one_shard() {
    run(1);
}

#[test]
fn slixmpp_stream_management_two_shards() {
    run(2);
}
