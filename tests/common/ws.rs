//! A blocking XMPP-over-WebSocket client (RFC 7395) for the tests of `/ws-xmpp`.

use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::PASSWORD;

/// The RFC 7395 framing namespace.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// A client's WebSocket.
pub type Ws = WebSocket<TcpStream>;

pub fn connect(http: u16, protocol: &str) -> Result<Ws, Box<tungstenite::Error>> {
    let mut req = format!("ws://127.0.0.1:{http}/ws-xmpp")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let sock = TcpStream::connect(("127.0.0.1", http)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, resp) = tungstenite::client(req, sock).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Box::new(e),
        tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
    })?;
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "xmpp"
    );
    Ok(ws)
}

pub fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

/// The next text message (pings are answered by tungstenite).
pub fn recv(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t.to_string(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

pub fn recv_until(ws: &mut Ws, what: &str) -> String {
    for _ in 0..20 {
        let m = recv(ws);
        if m.contains(what) {
            return m;
        }
    }
    panic!("no message with {what}");
}

pub fn open(ws: &mut Ws) -> String {
    send(
        ws,
        &format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"),
    );
    let opened = recv(ws);
    assert!(
        opened.starts_with("<open ") && opened.contains(FRAMING),
        "{opened}"
    );
    assert!(opened.contains("from='localhost'") && opened.contains("version='1.0'"));
    let features = recv(ws);
    assert!(
        features.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'"),
        "{features}"
    );
    features
}

/// Opens, authenticates with PLAIN, restarts and binds `resource`.
pub fn login(http: u16, user: &str, resource: &str) -> Ws {
    let mut ws = connect(http, "xmpp").unwrap();
    let features = open(&mut ws);
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    send(
        &mut ws,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"),
    );
    assert!(recv(&mut ws).starts_with("<success"));
    let features = open(&mut ws);
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    send(
        &mut ws,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ),
    );
    let bound = recv_until(&mut ws, "id='b1'");
    assert!(
        bound.contains(&format!("{user}@localhost/{resource}")),
        "{bound}"
    );
    ws
}
