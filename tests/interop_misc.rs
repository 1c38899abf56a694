//! Interop with slixmpp for disco#info, ping both ways, software version and in-band registration
//! (tests/interop/misc.py does the client side), at 1 and 2 shards.

mod common;

use std::time::Duration;

use common::Server;

fn run(shards: usize) {
    let server = Server::start_config(shards, &["alice"], |port, data| {
        Server::config_text(port, data, "", "[modules.version]\n[modules.register]\n").replace(
            "[modules.ping]",
            "[modules.ping]\nping_interval = 1\nping_timeout = 3",
        )
    });
    let mut args = common::venv::server_args(&server);
    args.extend([
        "--user".into(),
        "alice".into(),
        "--new-user".into(),
        format!("newbie{shards}"),
    ]);
    let out = common::venv::run_script("misc.py", &args, Duration::from_secs(60));
    assert!(out.contains("OK: register"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_misc_one_shard() {
    run(1);
}

#[test]
fn slixmpp_misc_two_shards() {
    run(2);
}
