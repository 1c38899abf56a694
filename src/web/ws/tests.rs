//! The WebSocket link without sockets: a tungstenite client context on one side, a real `C2s`
//! on the other, bytes passed by hand, split at every point.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message;

use super::framing::NS_FRAMING;
use super::{MemIo, WsLink};
use crate::c2s::{C2s, C2sConfig, PeerInfo, TlsMode};
use crate::xml::Limits;

fn config(transport_secure: bool) -> Arc<C2sConfig> {
    Arc::new(C2sConfig {
        post_auth_features: Vec::new(),
        bind2_features: Vec::new(),
        hosts: vec!["example.com".into()],
        tls_mode: TlsMode::None,
        tls: None,
        tls_cert: None,
        allow_plaintext_on_loopback: false,
        sasl2: true,
        transport_secure,
        limits: Limits::default(),
        outbound_queue_bytes: 64 * 1024,
        auth_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(600),
        ping_interval: Duration::ZERO,
        ping_timeout: Duration::from_secs(32),
        register: false,
        sm: None,
    })
}

/// A client context and the server's link and c2s.
struct Pair {
    client: WebSocketContext,
    cio: MemIo,
    link: WsLink,
    c2s: C2s,
    now: Instant,
    /// Bytes the link gave so far (what a driver counts its writes against).
    given: u64,
}

impl Pair {
    fn new(transport_secure: bool) -> Pair {
        let now = Instant::now();
        let peer = PeerInfo {
            addr: "192.0.2.7:4000".parse().unwrap(),
        };
        Pair {
            client: WebSocketContext::new(Role::Client, None),
            cio: MemIo::default(),
            link: WsLink::new(8192, &[]),
            c2s: C2s::new(config(transport_secure), peer, now),
            now,
            given: 0,
        }
    }

    /// Sends `msg` from the client, the frame's bytes handed over `split` bytes at a time.
    fn send(&mut self, msg: Message, split: usize) {
        self.client.write(&mut self.cio, msg).unwrap();
        self.client.flush(&mut self.cio).unwrap();
        let wire = std::mem::take(&mut self.cio.output);
        for chunk in wire.chunks(split.max(1)) {
            self.link.input(chunk, &mut self.c2s, self.now);
        }
    }

    /// Every message the server sent since the last call (close frames as "CLOSE <code>").
    fn recv(&mut self) -> Vec<String> {
        let mut wire = Vec::new();
        self.link.output(&mut self.c2s, &mut wire);
        self.given += wire.len() as u64;
        self.cio.input.extend_from_slice(&wire);
        let mut out = Vec::new();
        loop {
            match self.client.read(&mut self.cio) {
                Ok(Message::Text(t)) => out.push(t.to_string()),
                Ok(Message::Close(c)) => {
                    out.push(format!("CLOSE {}", c.map_or(0, |c| u16::from(c.code))))
                }
                Ok(_) => {}
                Err(_) => return out,
            }
        }
    }
}

fn open() -> Message {
    Message::text(format!(
        "<open xmlns='{NS_FRAMING}' to='example.com' version='1.0'/>"
    ))
}

#[test]
fn open_gets_open_and_features_however_the_bytes_are_split() {
    for split in [1, 2, 3, 7, 1000] {
        let mut p = Pair::new(false);
        p.send(open(), split);
        let got = p.recv();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(&format!("<open xmlns='{NS_FRAMING}'")),
            "{got:?}"
        );
        assert!(got[0].contains("from='example.com'"));
        assert!(
            got[1].starts_with("<stream:features xmlns:stream="),
            "{got:?}"
        );
        // Not loopback, no TLS below: PLAIN is withheld (secure by default).
        assert!(!got[1].contains(">PLAIN<"), "{got:?}");
    }
}

#[test]
fn tls_below_http_allows_plain() {
    let mut p = Pair::new(true);
    p.send(open(), 1000);
    let got = p.recv();
    assert!(got[1].contains("<mechanism>PLAIN</mechanism>"), "{got:?}");
}

#[test]
fn close_is_answered_with_close_then_the_close_frame() {
    let mut p = Pair::new(false);
    p.send(open(), 1000);
    p.recv();
    p.send(
        Message::text(format!("<close xmlns='{NS_FRAMING}'/>")),
        1000,
    );
    assert_eq!(p.recv(), closed_normally());
}

#[test]
fn ping_gets_pong_and_no_stanza() {
    let mut p = Pair::new(false);
    p.send(open(), 1000);
    p.recv();
    p.send(Message::Ping(b"hi".to_vec().into()), 1);
    assert!(p.recv().is_empty(), "a pong is no text message");
    assert!(!p.c2s.is_closed());
}

#[test]
fn a_stanza_before_open_is_a_stream_error() {
    let mut p = Pair::new(false);
    p.send(Message::text("<message xmlns='jabber:client'/>"), 1000);
    let got = p.recv();
    assert!(
        got.iter().any(|m| m.starts_with("<stream:error")),
        "{got:?}"
    );
    assert!(got.last().unwrap().starts_with("CLOSE"), "{got:?}");
    assert!(p.c2s.is_closed());
}

/// `<open/>` outside the framing namespace (another one, or none) is a stream in the wrong
/// namespace: `invalid-namespace` (RFC 7395 §3.3.1, RFC 6120 §4.9.3.10), then the close.
#[test]
fn open_in_another_namespace_is_invalid_namespace() {
    for open in [
        "<open xmlns='urn:foo' to='example.com' version='1.0'/>".to_owned(),
        "<open to='example.com' version='1.0'/>".to_owned(),
        "<open xmlns='urn:a&amp;b' to='example.com' version='1.0'/>".to_owned(),
    ] {
        let mut p = Pair::new(false);
        p.send(Message::text(open.clone()), 1000);
        let got = p.recv();
        assert!(
            got.iter().any(|m| m.contains("<invalid-namespace")),
            "{open}: {got:?}"
        );
        assert!(got.last().unwrap().starts_with("CLOSE"), "{open}: {got:?}");
        assert!(p.c2s.is_closed());
    }
}

#[test]
fn close_then_close_frame_in_one_read_is_answered_in_order() {
    // Browsers (Strophe) send <close/> and close the WebSocket at once: both arrive in one read.
    let mut p = Pair::new(false);
    p.send(open(), 1000);
    p.recv();
    p.client
        .write(
            &mut p.cio,
            Message::text(format!("<close xmlns='{NS_FRAMING}'/>")),
        )
        .unwrap();
    let _ = p.client.close(&mut p.cio, None);
    let wire = std::mem::take(&mut p.cio.output);
    p.link.input(&wire, &mut p.c2s, p.now);
    assert_eq!(p.recv(), closed_normally());
}

/// What the client sees of a stream closed cleanly: `<close/>`, then a normal close frame.
fn closed_normally() -> Vec<String> {
    vec![
        format!("<close xmlns='{NS_FRAMING}'/>"),
        format!("CLOSE {}", u16::from(CloseCode::Normal)),
    ]
}

/// A stanza is on its way once the socket took its whole frame: a frame cut short (the client
/// stopped reading) leaves its stanza, and those after it, to be handed back; nothing the client
/// got whole comes back.
#[test]
fn a_stanza_counts_as_written_with_its_whole_frame() {
    let mut p = Pair::new(false);
    p.send(open(), 1000);
    p.recv();
    for i in 0..5 {
        p.c2s
            .deliver_routed(crate::testing::routed_chat(&i.to_string()))
            .unwrap();
    }
    let start = p.given;
    let mut wire = Vec::new();
    p.link.output(&mut p.c2s, &mut wire);
    // Server frames are unmasked; these are short (7-bit lengths).
    let mut ends = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = usize::from(wire[at + 1] & 0x7f);
        assert!(len < 126);
        at += 2 + len;
        ends.push(start + at as u64);
    }
    assert_eq!(ends.len(), 5);
    // Frames 0 and 1 whole, frame 2 but its last byte.
    p.link.written(&mut p.c2s, ends[2] - 1);
    p.c2s.peer_closed();
    let back: Vec<String> = p
        .c2s
        .take_unwritten()
        .iter()
        .map(|acc| String::from_utf8_lossy(acc.stanza.bytes()).into_owned())
        .collect();
    assert_eq!(back.len(), 3, "{back:?}");
    for (i, text) in back.iter().enumerate() {
        assert!(text.contains(&format!("<body>{}</body>", i + 2)), "{text}");
    }
}
