//! Interop with slixmpp's own XEP-0280 (carbons) and XEP-0352 (CSI) plugins
//! (tests/interop/csi_carbons.py does the client side), at 1 and 2 shards: carbons between
//! resources of one user wherever the kernel put them, private messages not copied, CSI holding
//! presence back while inactive and flushing it on active.

mod common;

use std::time::Duration;

use common::Server;

fn run(shards: usize) {
    let server = Server::start_with(
        shards,
        &["alice", "bob", "carol"],
        "",
        "[modules.csi]\n[modules.carbons]\n",
    );
    let mut args = common::venv::server_args(&server);
    args.extend(["--timeout".into(), "50".into()]);
    let out = common::venv::run_script("csi_carbons.py", &args, Duration::from_secs(70));
    assert!(
        out.contains("OK: carbons") && out.contains("OK: csi"),
        "{out}"
    );
    assert!(out.contains("ALL OK"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_carbons_and_csi_one_shard() {
    run(1);
}

#[test]
fn slixmpp_carbons_and_csi_two_shards() {
    run(2);
}
