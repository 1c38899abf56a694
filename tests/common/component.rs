//! A raw external component (XEP-0114) for wire tests: the config that declares it, the handshake,
//! and helpers to read and answer stanzas (reusable by any test that needs a component, e.g. a push
//! app server).

use std::net::TcpStream;

use petrel::xml::{Event, Stanza};
use petrel::xmpp::ns;

use super::Client;

/// Shared secret every test component gets.
pub const SECRET: &str = "component-secret";

/// Config text (to append at the end of a test config) for a `[[listen.component]]` on loopback
/// port `port` and one `[components."d"]` per domain of `domains`, all with [`SECRET`].
pub fn config(port: u16, domains: &[&str]) -> String {
    config_with(port, domains, "")
}

/// [`config`] with `listener` (more keys) inside the `[[listen.component]]` table.
pub fn config_with(port: u16, domains: &[&str], listener: &str) -> String {
    let mut s =
        format!("\n[[listen.component]]\nport = {port}\nip_address = \"127.0.0.1\"\n{listener}\n");
    for d in domains {
        s.push_str(&format!(
            "\n[components.\"{d}\"]\npassword = \"{SECRET}\"\n"
        ));
    }
    s
}

/// A connected component's stream.
pub struct Component {
    /// The raw stream (its scanner reads `jabber:component:accept`).
    pub client: Client,
    /// The component's domain.
    pub domain: String,
}

/// Connects to `port` and sends the stream header for `domain`; returns the stream and the server's
/// header event (`None` when the server closed without one).
pub fn open(port: u16, domain: &str) -> (Client, Option<Event>) {
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut client = Client::from_stream_ns(sock, ns::COMPONENT_ACCEPT);
    client.send(&format!(
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ));
    let header = client.next_event();
    (client, header)
}

/// The stream id of a server header.
pub fn stream_id(header: &Option<Event>) -> String {
    match header {
        Some(Event::StreamOpen(h)) => h.id.clone().expect("server header has an id"),
        other => panic!("expected a stream header, got {other:?}"),
    }
}

/// Sends the handshake for `secret` on a stream opened with [`open`].
pub fn send_handshake(client: &mut Client, id: &str, secret: &str) {
    let digest = petrel::component::handshake_digest(id, secret);
    client.send(&format!("<handshake>{digest}</handshake>"));
}

impl Component {
    /// Connects as `domain` with [`SECRET`] and waits for `<handshake/>`.
    pub fn connect(port: u16, domain: &str) -> Component {
        let (mut client, header) = open(port, domain);
        let id = stream_id(&header);
        send_handshake(&mut client, &id, SECRET);
        let hs = client.next_stanza();
        assert_eq!(
            hs.name(),
            "handshake",
            "handshake answer: {}",
            String::from_utf8_lossy(&client.raw)
        );
        Component {
            client,
            domain: domain.to_owned(),
        }
    }

    /// The next stanza sent to the component.
    pub fn next(&mut self) -> Stanza {
        self.client.next_stanza()
    }

    /// Sends raw XML.
    pub fn send(&mut self, xml: &str) {
        self.client.send(xml);
    }

    /// Answers a message with a chat message whose body is `body`, from the address it was sent to.
    pub fn reply(&mut self, to_msg: &Stanza, body: &str) {
        let from = to_msg.to().unwrap_or_default().into_owned();
        let to = to_msg
            .from()
            .expect("routed stanzas carry from")
            .into_owned();
        self.send(&format!(
            "<message from='{from}' to='{to}' type='chat'><body>{body}</body></message>"
        ));
    }
}

/// Body text of a stanza read on a component stream.
pub fn body(s: &Stanza) -> Option<String> {
    s.tree()
        .ok()?
        .get_child("body", ns::COMPONENT_ACCEPT)
        .map(|b| b.text())
}

/// slixmpp's `ComponentXMPP` (tests/interop/component.py in serve mode) connected as `domain` with
/// [`SECRET`] on component port `port`: it prints a line `STANZA <xml>` per stanza it receives
/// (read them with `wait_line("STANZA", ..)`) and answers IQ gets and sets with an empty result.
/// Returns once its handshake was accepted; killed when dropped.
pub fn spawn_slixmpp(port: u16, domain: &str) -> super::venv::Background {
    let args: Vec<String> = [
        "--mode",
        "serve",
        "--component-port",
        &port.to_string(),
        "--domain",
        domain,
        "--secret",
        SECRET,
        "--timeout",
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut bg = super::venv::Background::spawn("component.py", &args);
    bg.wait_line("READY", std::time::Duration::from_secs(30));
    bg
}
