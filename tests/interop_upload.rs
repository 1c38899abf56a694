//! Interop with slixmpp's xep_0363: `upload_file` against petrel's upload service and HTTP
//! listener, the file downloaded back byte-identical (tests/interop/upload.py), at 1 and 2 shards.

mod common;

use std::time::Duration;

use common::{free_port, Server};

const MAX: u64 = 1024 * 1024;

fn run(shards: usize) {
    let http = free_port();
    let server = Server::start_upload(shards, &["alice"], http, &format!("max_file_size = {MAX}"));
    let mut args = common::venv::server_args(&server);
    args.extend(["--max".into(), MAX.to_string()]);
    let out = common::venv::run_script("upload.py", &args, Duration::from_secs(60));
    assert!(out.contains("OK: upload_file"), "{out}");
    println!("{out}");
}

#[test]
fn slixmpp_upload_one_shard() {
    run(1);
}

#[test]
fn slixmpp_upload_two_shards() {
    run(2);
}
