//! A real browser against petrel: converse.js (the npm package, tests/web/) in headless Chromium,
//! driven by playwright-core (tests/web/converse.mjs). alice logs in through converse's login form,
//! starts a chat with bob through its "Start a new chat" modal and types a message; bob (slixmpp,
//! tests/interop/replier.py) receives it and answers; the answer must show in the page's DOM.
//! A screenshot of the conversation is saved as `target/browser-<transport>.png`.
//!
//! Needs node >= 20.10, Chromium and `npm ci --prefix tests/web`; skips loudly without them unless
//! `PETREL_REQUIRE_BROWSER` is set (tests/common/web.rs).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::web::{self, chat_args, start_replier, unique};
use common::Server;

/// How converse.js reaches petrel.
#[derive(Clone, Copy)]
enum Transport {
    /// RFC 7395 at `/ws-xmpp` (converse's `websocket_url`).
    WebSocket,
    /// XEP-0124/XEP-0206 at `/http-bind` (converse's `bosh_service_url`).
    Bosh,
}

impl Transport {
    /// The name converse.mjs takes and the screenshot is named after.
    fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Bosh => "bosh",
        }
    }

    /// The `[[listen.http]]` handlers: only this transport's, so the page cannot use the other.
    fn handlers(self) -> &'static str {
        match self {
            Transport::WebSocket => "handlers = [\"websocket\"]",
            Transport::Bosh => "handlers = [\"bosh\"]",
        }
    }

    fn url(self, http: u16) -> String {
        match self {
            Transport::WebSocket => format!("ws://127.0.0.1:{http}/ws-xmpp"),
            Transport::Bosh => format!("http://127.0.0.1:{http}/http-bind"),
        }
    }
}

/// What converse.mjs may take per step (it has its own per-step limit of `STEP_SECS`), and the
/// whole run: generous, for a 2-core CI machine that is also building.
const STEP_SECS: u64 = 90;
const RUN_DEADLINE: Duration = Duration::from_secs(420);

fn converse_chat(transport: Transport) {
    let name = transport.name();
    let Some(tools) = web::tools(&format!("browser::converse_{name}"), true) else {
        return;
    };
    let (server, http) =
        Server::start_http(1, &["alice", "bob"], transport.handlers(), web::MODULES);
    let message = unique(&format!("hello bob, alice in Chromium over {name}"));
    let reply = unique("hi alice, bob on slixmpp here");
    let bob = start_replier(&server, "bob", "alice@localhost", &message, &reply);

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/browser-{name}.png"));
    let _ = std::fs::remove_file(&shot);
    // tools(_, true) returns None unless it found Chromium.
    let chromium = tools
        .chromium
        .as_ref()
        .expect("tools(.., true) found Chromium");
    let mut args = chat_args("bob@localhost", &message, &reply);
    args.extend(
        [
            "--transport",
            name,
            "--url",
            &transport.url(http),
            "--jid",
            "alice@localhost",
            "--screenshot",
            &shot.display().to_string(),
            "--chromium",
            &chromium.display().to_string(),
            "--timeout",
            &STEP_SECS.to_string(),
        ]
        .map(String::from),
    );
    let out = tools.run("converse.mjs", &args, RUN_DEADLINE);
    println!("{out}");

    // bob got alice's message from converse's resource, and answered it.
    let bob_out = bob.finish(Duration::from_secs(60));
    println!("bob:\n{bob_out}");
    assert!(
        bob_out.contains("GOT alice@localhost/converse.js-")
            && bob_out.contains(&format!(" {message}\n")),
        "bob did not get the message from converse.js:\n{bob_out}"
    );
    assert!(bob_out.contains("OK: replied"), "{bob_out}");

    // The page showed both messages, in order, the answer as bob's.
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("converse.mjs printed no {prefix:?}:\n{out}"))
            .to_string()
    };
    assert!(
        out.contains(&format!("OK: {name}: logged in as alice@localhost")),
        "{out}"
    );
    let shown: Vec<String> = serde_json::from_str(&line("DOM-MESSAGES: ")).unwrap();
    assert_eq!(shown, [message.clone(), reply.clone()], "{out}");
    assert!(
        line("REPLY-FROM: ").starts_with("bob@localhost/py (bob@localhost)"),
        "{out}"
    );

    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
    drop(server);
}

#[test]
fn converse_websocket() {
    converse_chat(Transport::WebSocket);
}

/// The server config names only the `bosh` handler, so the page can only use BOSH.
#[test]
fn converse_bosh() {
    converse_chat(Transport::Bosh);
}
