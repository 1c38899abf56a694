//! XMPP over WebSocket (RFC 7395) at `/ws-xmpp` of a `[[listen.http]]` listener, over real
//! sockets: a whole session against a TCP client, and every kind of bad input the issue names.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use common::{Server, PASSWORD};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Message, WebSocket};

use common::ws::{connect, login, open, recv, recv_until, send, Ws, FRAMING};

/// A server with an HTTP listener on its own port; returns (server, http port).
fn start(shards: usize, users: &[&str]) -> (Server, u16) {
    Server::start_http(shards, users, "max_stanza_size = 8192", "")
}

/// A server with an HTTP listener configured by `settings` (which sets
/// `allow_plaintext_on_loopback` itself).
fn start_listener(shards: usize, users: &[&str], settings: &str) -> (Server, u16) {
    Server::start_http_listener(
        shards,
        users,
        &format!("max_stanza_size = 8192\n{settings}"),
        "",
    )
}

/// The close frame after the stream error, with its code.
fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(c))) => return c.code,
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

fn session_with_tcp_client(shards: usize) {
    let (server, http) = start(shards, &["alice", "bob"]);
    let mut bob = server.login("bob", "tcp", Some(0));
    let mut alice = login(http, "alice", "web");
    send(&mut alice, "<presence xmlns='jabber:client'/>");
    send(
        &mut alice,
        "<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m1'><body>over websocket</body></message>",
    );
    let got = bob.expect("alice's message", |s| s.name() == "message");
    assert_eq!(got.from().unwrap(), "alice@localhost/web");
    assert!(String::from_utf8_lossy(got.bytes()).contains("over websocket"));
    bob.send("<message to='alice@localhost/web' type='chat' id='r1'><body>back over tcp</body></message>");
    let reply = recv_until(&mut alice, "back over tcp");
    // Every element declares its namespace (RFC 7395 §3.3.3).
    assert!(
        reply.starts_with("<message xmlns='jabber:client'"),
        "{reply}"
    );
    assert!(reply.contains("from='bob@localhost/tcp'"), "{reply}");
    // <close/> is answered with <close/>, then the WebSocket close.
    send(&mut alice, &format!("<close xmlns='{FRAMING}'/>"));
    let closed = recv_until(&mut alice, "<close ");
    assert!(closed.contains(FRAMING));
    assert_eq!(close_code(&mut alice), CloseCode::Normal);
}

#[test]
fn websocket_session_one_shard() {
    session_with_tcp_client(1);
}

#[test]
fn websocket_session_two_shards() {
    session_with_tcp_client(2);
}

#[test]
fn wrong_subprotocol_is_refused() {
    let (_server, http) = start(1, &[]);
    match connect(http, "chat").map_err(|e| *e) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a WebSocket without the xmpp subprotocol was accepted"),
    }
    // Not a WebSocket request at all, and an unknown path.
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /ws-xmpp HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(resp.contains("HTTP/1.1 404"), "{resp}");
}

#[test]
fn binary_frames_close_the_stream() {
    let (server, http) = start(1, &["alice"]);
    let mut ws = connect(http, "xmpp").unwrap();
    open(&mut ws);
    ws.send(Message::binary(b"<presence/>".to_vec())).unwrap();
    let err = recv(&mut ws);
    assert!(err.contains("<bad-format"), "{err}");
    assert!(recv(&mut ws).starts_with("<close "));
    assert_eq!(close_code(&mut ws), CloseCode::Unsupported);
    // Nothing else is disturbed.
    let mut c = server.login("alice", "after", None);
    c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
    c.expect("ping result", |s| s.id().as_deref() == Some("p"));
}

#[test]
fn invalid_utf8_closes_the_stream() {
    let (_server, http) = start(1, &[]);
    let mut ws = connect(http, "xmpp").unwrap();
    open(&mut ws);
    let frame = Frame::message(
        b"<presence>\xff\xfe</presence>".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    ws.send(Message::Frame(frame)).unwrap();
    let err = recv(&mut ws);
    assert!(err.contains("<unsupported-encoding"), "{err}");
    assert!(recv(&mut ws).starts_with("<close "));
    assert_eq!(close_code(&mut ws), CloseCode::Invalid);
}

#[test]
fn oversized_messages_close_the_stream() {
    let (_server, http) = start(1, &[]);
    let mut ws = connect(http, "xmpp").unwrap();
    open(&mut ws);
    let big = format!(
        "<message xmlns='jabber:client'><body>{}</body></message>",
        "x".repeat(64 * 1024)
    );
    ws.send(Message::text(big)).unwrap();
    let err = recv(&mut ws);
    assert!(err.contains("<policy-violation"), "{err}");
    assert!(recv(&mut ws).starts_with("<close "));
    assert_eq!(close_code(&mut ws), CloseCode::Size);
}

#[test]
fn not_well_formed_xml_gets_a_stream_error() {
    let (_server, http) = start(1, &[]);
    let mut ws = connect(http, "xmpp").unwrap();
    open(&mut ws);
    send(&mut ws, "<message xmlns='jabber:client'><body></message>");
    let err = recv(&mut ws);
    assert!(err.starts_with("<stream:error xmlns:stream="), "{err}");
    assert!(err.contains("<not-well-formed"), "{err}");
    assert!(recv(&mut ws).starts_with("<close "));
}

type Wss = WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A WebSocket over TLS (wss://) to `http`, trusting the server's generated certificate.
fn connect_tls(server: &Server, http: u16) -> Wss {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(common::tls_client_config(&server.cert_path()), name)
        .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", http)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!("wss://localhost:{http}/ws-xmpp")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (ws, _) = tungstenite::client(req, rustls::StreamOwned::new(tls, sock))
        .unwrap_or_else(|e| panic!("wss handshake: {e}"));
    ws
}

#[test]
fn tls_below_http_allows_plain_and_plaintext_http_does_not() {
    // Plain HTTP without allow_plaintext_on_loopback: no PLAIN (secure by default).
    let (_server, http) = start_listener(1, &[], "allow_plaintext_on_loopback = false\n");
    let mut ws = connect(http, "xmpp").unwrap();
    let features = open(&mut ws);
    assert!(!features.contains(">PLAIN<"), "{features}");
    assert!(features.contains(">SCRAM-SHA-256<"), "{features}");

    // HTTPS (wss://) with the generated certificate: PLAIN is offered, a session works.
    let (server, https) = start_listener(
        1,
        &["alice", "bob"],
        "tls = \"tls\"\nallow_plaintext_on_loopback = false\n",
    );
    let mut bob = server.login("bob", "tcp", Some(0));
    let mut ws = connect_tls(&server, https);
    ws.send(Message::text(format!(
        "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
    )))
    .unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let Message::Text(t) = ws.read().unwrap() {
            texts.push(t.to_string());
        }
    }
    assert!(
        texts[1].contains("<mechanism>PLAIN</mechanism>"),
        "{texts:?}"
    );
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PASSWORD}"));
    for step in [
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"),
        format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"),
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>".into(),
        "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>over wss</body></message>".into(),
    ] {
        ws.send(Message::text(step)).unwrap();
    }
    let got = bob.expect("alice's message over wss", |s| s.name() == "message");
    assert!(String::from_utf8_lossy(got.bytes()).contains("over wss"));
}

/// A client that sends pings and never reads stops being read once the pongs it is owed pass the
/// output bound (RFC 6455 §5.5.3 lets them wait): its pongs do not pile up in the server (they
/// grew its memory without bound).
#[test]
fn a_ping_flood_from_a_client_that_never_reads_is_not_read_either() {
    use std::io::{ErrorKind, Write};
    use std::time::Instant;
    let (_server, http) = start(1, &[]);
    let mut ws = connect(http, "xmpp").unwrap();
    open(&mut ws);
    let sock = ws.get_mut();
    // A receive buffer of a few KiB: the server's pongs back up at once.
    socket2::SockRef::from(&*sock)
        .set_recv_buffer_size(4096)
        .unwrap();
    sock.set_nonblocking(true).unwrap();
    // Masked pings with a 125-byte payload (the largest a control frame may carry).
    let mut frame = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
    frame.extend((0..125).map(|i| (i as u8) ^ [1, 2, 3, 4][i % 4]));
    let chunk: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 512)
        .collect();
    let (mut sent, mut stalled_since) = (0usize, Instant::now());
    let limit = 48 << 20;
    while sent < limit && stalled_since.elapsed() < Duration::from_secs(3) {
        // Whole frames only: a short write goes on where it stopped.
        match sock.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => {
                sent += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            // Cut off as a slow reader (policy-violation): bounded too.
            Err(_) => break,
        }
    }
    // The socket buffers of both sides hold a few MiB; the server's own bound a few hundred KiB.
    assert!(
        sent < 24 << 20,
        "the server went on reading pings it owed {} MiB of pongs for",
        sent >> 20
    );
}

/// What a plain HTTP request to `/ws-xmpp` is told: RFC 9110's required headers with a 426
/// (`Upgrade`) and a 405 (`Allow`), and RFC 9112's 400 for an HTTP/1.1 request without `Host`.
#[test]
fn refusals_carry_the_headers_http_requires() {
    use std::io::{Read, Write};
    let (_server, http) = start(1, &[]);
    let ask = |head: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.to_ascii_lowercase()
    };
    let r = ask("GET /ws-xmpp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("http/1.1 426"), "{r}");
    assert!(r.contains("\r\nupgrade: websocket\r\n"), "{r}");
    let r = ask("POST /ws-xmpp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("http/1.1 405"), "{r}");
    assert!(r.contains("\r\nallow: get\r\n"), "{r}");
    let r = ask("GET /http-bind HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("http/1.1 405"), "{r}");
    assert!(r.contains("\r\nallow: post, options\r\n"), "{r}");
    let r = ask("GET /ws-xmpp HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("http/1.1 400"), "no Host: {r}");
}
