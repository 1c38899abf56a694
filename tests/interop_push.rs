//! Push notifications (XEP-0357) to an app server that is slixmpp's `ComponentXMPP`
//! (tests/interop/component.py in serve mode, answering every IQ with a result): alice's phone
//! (a resumable session) loses its connection, bob writes to her, and the component receives the
//! publish with the summary form; a second message after its answer is counted in the next one.
//! At 2 shards.

mod common;

use std::time::Duration;

use common::component;
use common::{free_port, Server};

const APP: &str = "apppush.localhost";

#[test]
fn slixmpp_component_app_server_gets_the_publishes_of_a_dropped_phone() {
    let port = free_port();
    let server = Server::start_with(
        2,
        &["alice", "bob"],
        "",
        &format!(
            "[modules.presence]\n[modules.offline]\n[modules.stream_management]\nresume_timeout = 300\n[modules.push]\n{}",
            component::config(port, &[APP])
        ),
    );
    let mut comp = component::spawn_slixmpp(port, APP);
    let mut bob = server.login("bob", "b", Some(0));
    let mut phone = server.login("alice", "phone", Some(0));
    phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    phone.expect("enabled", |s| s.name() == "enabled");
    phone.send(&format!(
        "<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='phone-1'/></iq>"
    ));
    let r = phone.expect("enable result", |s| s.id().as_deref() == Some("e1"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    // The phone loses its connection: the session waits for a resumption.
    let _ = phone.sock.shutdown(std::net::Shutdown::Both);
    drop(phone);

    for (n, body) in [(1, "alpha"), (2, "bravo")] {
        bob.chat("alice@localhost", body);
        let line = comp.wait_line("STANZA", Duration::from_secs(30));
        for want in [
            "from=\"alice@localhost\"",
            "node=\"phone-1\"",
            "urn:xmpp:push:summary",
            "bob@localhost/b",
        ] {
            assert!(line.contains(want), "{want} missing: {line}");
        }
        assert!(
            line.contains(&format!("<value>{n}</value>")),
            "count {n}: {line}"
        );
        println!("{line}");
        // No body unless alice asked for it.
        assert!(!line.contains(body), "{line}");
    }
}
