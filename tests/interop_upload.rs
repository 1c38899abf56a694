//! Interop with slixmpp's xep_0363: `upload_file` against petrel's upload service and HTTP
//! listener, the file downloaded back byte-identical (tests/interop/upload.py), at 1 and 2 shards.

mod common;

use std::time::Duration;

use common::{free_port, Server};

const MAX: u64 = 1024 * 1024;

fn run(shards: usize) {
    let http = free_port();
    let server = Server::start_config(shards, &["alice"], |port, data| {
        let mut t = Server::config_text(
            port,
            data,
            "",
            &format!(
                "[modules.http_upload]\nbase_url = \"http://127.0.0.1:{http}/upload\"\n\
                 max_file_size = {MAX}\n"
            ),
        );
        t.push_str(&format!(
            "\n[[listen.http]]\nport = {http}\nip_address = \"127.0.0.1\"\nhandlers = [\"upload\"]\n"
        ));
        t
    });
    let mut args = common::venv::server_args(&server);
    args.extend([
        "--user".into(),
        "alice".into(),
        "--max".into(),
        MAX.to_string(),
    ]);
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
