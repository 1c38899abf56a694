//! A second JavaScript client stack against petrel's WebSocket endpoint: @xmpp/client (xmpp.js) on
//! Node (tests/web/xmpp_client.mjs) logs in as alice over `ws://.../ws-xmpp` (SCRAM, bind, stream
//! management as xmpp.js negotiates them), sends bob (slixmpp over c2s, tests/interop/replier.py) a
//! message, receives bob's answer and closes the stream and the WebSocket cleanly. Two shards, so
//! the session may sit on a different shard from bob's. xmpp.js prefers SASL2 (XEP-0388) with Bind 2
//! (XEP-0386) and stream management inline when offered: its resource is then `xmppjs/ID`, the
//! `--resource` given as the Bind 2 tag and an id petrel generated, which RFC 6120 binding (the
//! resource as asked) would not give.
//!
//! Needs node >= 20.10 and `npm ci --prefix tests/web`; skips loudly without them unless
//! `PETREL_REQUIRE_BROWSER` is set (tests/common/web.rs).

mod common;

use std::time::Duration;

use common::web::{self, chat_args, start_replier, unique};
use common::Server;

#[test]
fn xmppjs_websocket_chat() {
    let Some(tools) = web::tools("node_client::xmppjs_websocket_chat", false) else {
        return;
    };
    let (server, http) = Server::start_http(2, &["alice", "bob"], "", web::MODULES);
    let message = unique("hello bob, alice on @xmpp/client here");
    let reply = unique("hi alice, bob on slixmpp here");
    let bob = start_replier(&server, "bob", "alice@localhost", &message, &reply);

    let mut args = chat_args("bob@localhost", &message, &reply);
    args.extend(
        [
            "--service",
            &format!("ws://127.0.0.1:{http}/ws-xmpp"),
            "--domain",
            "localhost",
            "--username",
            "alice",
            "--resource",
            "xmppjs",
            "--timeout",
            "120",
        ]
        .map(String::from),
    );
    let out = tools.run("xmpp_client.mjs", &args, Duration::from_secs(180));
    println!("{out}");
    let full = out
        .split("OK: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no OK line:\n{out}"))
        .to_string();
    let id = full.strip_prefix("alice@localhost/xmppjs/").unwrap_or("");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "not bound through SASL2 + Bind 2 (tag/id): {full}\n{out}"
    );
    assert!(
        out.contains("from bob@localhost/py")
            && out.contains("stream management on (id set)")
            && out.contains("closed cleanly"),
        "{out}"
    );

    let bob_out = bob.finish(Duration::from_secs(60));
    println!("bob:\n{bob_out}");
    assert!(
        bob_out.contains(&format!("GOT {full} {message}\n")),
        "bob did not get the message from @xmpp/client:\n{bob_out}"
    );
    assert!(bob_out.contains("OK: replied"), "{bob_out}");
}
