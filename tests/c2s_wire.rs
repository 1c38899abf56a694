//! The c2s core over real TCP against the real binary: STARTTLS + SCRAM (with and without channel
//! binding), PLAIN policy, restricted XML and limits, byte-at-a-time input, conflicts, slow readers,
//! malformed streams, graceful shutdown, keepalives and the idle timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use sha2::{Digest, Sha256};

use common::{body, error_condition, rss_kib, Client, Server, PASSWORD};
use petrel::xml::{Event, Limits, Scanner, Stanza};
use petrel::xmpp::ns;

// ---------------------------------------------------------------------------------------------
// A raw XMPP client over plaintext or TLS (the harness `Client` is plaintext only).
// ---------------------------------------------------------------------------------------------

/// The socket, before or after STARTTLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

/// How a SASL exchange ended when it did not succeed.
#[derive(Debug, PartialEq, Eq)]
struct SaslFailed(String);

/// A blocking client that can negotiate STARTTLS and SCRAM itself.
struct Wire {
    io: Option<Io>,
    scanner: Scanner,
    /// Every plaintext byte received.
    raw: Vec<u8>,
    /// Write one byte per `write` call (TCP_NODELAY is on: one segment, or one TLS record, each).
    bytewise: bool,
    jid: String,
}

/// Streams open with this header (the domain varies).
fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
}

impl Wire {
    fn connect(port: u16) -> Wire {
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Wire {
            io: Some(Io::Plain(sock)),
            scanner: client_scanner(),
            raw: Vec::new(),
            bytewise: false,
            jid: String::new(),
        }
    }

    fn io(&mut self) -> &mut Io {
        // Only `starttls` takes it out, and puts the TLS stream back before returning.
        self.io.as_mut().expect("socket present")
    }

    fn send_bytes(&mut self, b: &[u8]) {
        if self.bytewise {
            for byte in b {
                let io = self.io();
                io.write_all(std::slice::from_ref(byte)).unwrap();
                io.flush().unwrap();
            }
        } else {
            let io = self.io();
            io.write_all(b).unwrap();
            io.flush().unwrap();
        }
    }

    fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes());
    }

    /// Reads more bytes; false on EOF (or reset, or a TLS stream cut without close_notify).
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.io().read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                self.scanner.feed(&buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                false
            }
            Err(e) => panic!("read failed (timeout?): {e}; got so far: {}", self.text()),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.scanner.next_event() {
                Ok(Some(Event::Whitespace)) => continue,
                Ok(Some(ev)) => return Some(ev),
                Ok(None) => {
                    if !self.fill() {
                        return None;
                    }
                }
                Err(e) => panic!("server sent bad XML: {e}: {}", self.text()),
            }
        }
    }

    fn next_stanza(&mut self) -> Stanza {
        loop {
            match self.next_event() {
                Some(Event::Stanza(s)) => return s,
                Some(_) => continue,
                None => panic!("EOF while waiting for a stanza; got: {}", self.text()),
            }
        }
    }

    fn expect(&mut self, what: &str, pred: impl Fn(&Stanza) -> bool) -> Stanza {
        loop {
            let s = self.next_stanza();
            if pred(&s) {
                return s;
            }
            eprintln!(
                "(skipping while waiting for {what}: {})",
                String::from_utf8_lossy(s.bytes())
            );
        }
    }

    fn read_to_close(&mut self) -> String {
        while self.fill() {}
        self.text()
    }

    /// Sends a stream header and returns the features that follow.
    fn open(&mut self, domain: &str) -> Stanza {
        self.send(&header(domain));
        let f = self.next_stanza();
        assert_eq!(
            f.name(),
            "stream:features",
            "{}",
            String::from_utf8_lossy(f.bytes())
        );
        f
    }

    /// STARTTLS on an open stream, trusting only `cert`; returns the features of the new stream.
    fn starttls(&mut self, cert: &Path, domain: &str) -> Stanza {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let p = self.next_stanza();
        assert_eq!(
            p.name(),
            "proceed",
            "{}",
            String::from_utf8_lossy(p.bytes())
        );
        let Some(Io::Plain(sock)) = self.io.take() else {
            panic!("STARTTLS twice");
        };
        let conn =
            ClientConnection::new(tls_config(cert), ServerName::try_from("localhost").unwrap())
                .unwrap();
        self.io = Some(Io::Tls(Box::new(StreamOwned::new(conn, sock))));
        self.scanner = client_scanner();
        self.open(domain)
    }

    /// A direct TLS connection (XEP-0368) offering ALPN `xmpp-client`.
    fn connect_direct_tls(port: u16, cert: &Path) -> Wire {
        let mut w = Wire::connect(port);
        let Some(Io::Plain(sock)) = w.io.take() else {
            unreachable!("a new Wire is plaintext");
        };
        let mut config = (*tls_config(cert)).clone();
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        let conn =
            ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
                .unwrap();
        w.io = Some(Io::Tls(Box::new(StreamOwned::new(conn, sock))));
        w
    }

    /// The ALPN protocol the server chose.
    fn alpn(&self) -> Option<Vec<u8>> {
        match self.io.as_ref() {
            Some(Io::Tls(s)) => s.conn.alpn_protocol().map(<[u8]>::to_vec),
            _ => None,
        }
    }

    /// The DER of the certificate the server presented.
    fn peer_cert(&self) -> Vec<u8> {
        let Some(Io::Tls(s)) = self.io.as_ref() else {
            panic!("no TLS");
        };
        let chain = s.conn.peer_certificates().expect("handshake done");
        chain[0].to_vec()
    }

    /// RFC 9266 tls-exporter channel binding data of the TLS session.
    fn tls_exporter(&mut self) -> [u8; 32] {
        let Some(Io::Tls(s)) = self.io.as_ref() else {
            panic!("no TLS");
        };
        let mut out = [0u8; 32];
        s.conn
            .export_keying_material(&mut out[..], b"EXPORTER-Channel-Binding", None)
            .unwrap();
        out
    }

    /// A SCRAM-SHA-256 exchange (RFC 5802/7677); `cb` chooses the GS2 flag / channel binding.
    /// On success the server signature is checked and the stream restarted.
    fn scram(&mut self, user: &str, password: &str, cb: ChannelBinding) -> Result<(), SaslFailed> {
        let (mech, gs2, cb_data): (&str, &str, Vec<u8>) = match cb {
            ChannelBinding::None => ("SCRAM-SHA-256", "n,,", Vec::new()),
            ChannelBinding::ClientOnly => ("SCRAM-SHA-256", "y,,", Vec::new()),
            ChannelBinding::Exporter { tamper } => {
                let mut data = self.tls_exporter().to_vec();
                if tamper {
                    data[0] ^= 1;
                }
                ("SCRAM-SHA-256-PLUS", "p=tls-exporter,,", data)
            }
            ChannelBinding::EndPoint => {
                let data = Sha256::digest(self.peer_cert()).to_vec();
                ("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,", data)
            }
        };
        let cnonce = format!("{:016x}{:016x}", common::rand_u64(), common::rand_u64());
        let client_first_bare = format!("n={user},r={cnonce}");
        let first = format!("{gs2}{client_first_bare}");
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(&first)
        ));
        let ch = self.next_stanza();
        if ch.name() == "failure" {
            return Err(SaslFailed(failure_condition(&ch)));
        }
        assert_eq!(
            ch.name(),
            "challenge",
            "{}",
            String::from_utf8_lossy(ch.bytes())
        );
        let server_first =
            String::from_utf8(B64.decode(ch.tree().unwrap().text()).unwrap()).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0u32;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = v,
                Some(("s", v)) => salt = B64.decode(v).unwrap(),
                Some(("i", v)) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        assert!(
            nonce.starts_with(&cnonce) && nonce.len() > cnonce.len(),
            "server nonce {nonce}"
        );
        assert!(iterations >= 4096, "{server_first}");
        let mut cbind_input = gs2.as_bytes().to_vec();
        cbind_input.extend_from_slice(&cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind_input));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let client_sig = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_sig)
            .map(|(k, s)| k ^ s)
            .collect();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(format!("{without_proof},p={}", B64.encode(proof)))
        ));
        let r = self.next_stanza();
        if r.name() == "failure" {
            return Err(SaslFailed(failure_condition(&r)));
        }
        assert_eq!(
            r.name(),
            "success",
            "{}",
            String::from_utf8_lossy(r.bytes())
        );
        let server_final =
            String::from_utf8(B64.decode(r.tree().unwrap().text()).unwrap()).unwrap();
        let server_key = hmac_sha256(&salted, b"Server Key");
        let want = format!(
            "v={}",
            B64.encode(hmac_sha256(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(server_final, want, "server signature");
        // SASL success restarts the stream.
        self.scanner = client_scanner();
        Ok(())
    }

    /// PLAIN; the failure condition on refusal.
    fn plain(&mut self, user: &str, password: &str) -> Result<(), SaslFailed> {
        let token = B64.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        let r = self.next_stanza();
        if r.name() == "failure" {
            return Err(SaslFailed(failure_condition(&r)));
        }
        assert_eq!(
            r.name(),
            "success",
            "{}",
            String::from_utf8_lossy(r.bytes())
        );
        self.scanner = client_scanner();
        Ok(())
    }

    /// Binds `resource` on a freshly restarted, authenticated stream.
    fn bind(&mut self, domain: &str, resource: &str) {
        let f = self.open(domain);
        assert!(f.tree().unwrap().get_child("bind", ns::BIND).is_some());
        self.send(&format!(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        let r = self.expect("bind result", |s| s.id().as_deref() == Some("b1"));
        assert_eq!(
            r.type_().as_deref(),
            Some("result"),
            "{}",
            String::from_utf8_lossy(r.bytes())
        );
        self.jid = r
            .tree()
            .unwrap()
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .unwrap();
    }
}

/// Which SCRAM variant to run.
#[derive(Clone, Copy)]
enum ChannelBinding {
    /// `n,,`: the client does not support channel binding.
    None,
    /// `y,,`: the client supports it but thinks the server does not.
    ClientOnly,
    /// SCRAM-SHA-256-PLUS with tls-exporter; `tamper` flips a bit of the binding data.
    Exporter { tamper: bool },
    /// SCRAM-SHA-256-PLUS with tls-server-end-point (RFC 5929): the SHA-256 of the certificate
    /// the server presented on this connection (ECDSA P-256 with SHA-256, as rcgen makes them).
    EndPoint,
}

fn client_scanner() -> Scanner {
    Scanner::new(
        Limits {
            max_stanza_bytes: 1 << 20,
            ..Limits::default()
        },
        ns::CLIENT,
    )
}

fn tls_config(cert: &Path) -> Arc<ClientConfig> {
    common::tls_client_config(cert)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The condition element of a SASL `<failure/>`.
fn failure_condition(s: &Stanza) -> String {
    let t = s.tree().unwrap();
    let cond = t
        .child_elements()
        .find(|c| c.ns == ns::SASL)
        .map(|c| c.name.clone());
    cond.unwrap_or_default()
}

/// The SASL mechanisms a features element offers.
fn mechanisms(features: &Stanza) -> Vec<String> {
    let t = features.tree().unwrap();
    let Some(m) = t.get_child("mechanisms", ns::SASL) else {
        return Vec::new();
    };
    let names = m.child_elements().map(|c| c.text()).collect();
    names
}

fn offers_starttls(features: &Stanza) -> bool {
    features
        .tree()
        .unwrap()
        .get_child("starttls", ns::TLS)
        .is_some()
}

/// `text` ends the stream with `<stream:error><cond/>...` and `</stream:stream>`.
fn assert_stream_error(text: &str, cond: &str, case: &str) {
    let el = format!("<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert!(text.contains(&el), "{case}: expected {cond}, got: {text}");
    assert!(
        text.ends_with("</stream:stream>"),
        "{case}: stream not closed: {text}"
    );
    // Exactly one stream error, and it is the last thing before the close.
    assert_eq!(text.matches("<stream:error>").count(), 1, "{case}: {text}");
}

// ---------------------------------------------------------------------------------------------
// TLS and SASL
// ---------------------------------------------------------------------------------------------

#[test]
fn starttls_scram_sha256_bind_and_chat() {
    let server = Server::start(1, &["alice", "bob"]);
    let mut a = Wire::connect(server.port);
    let f = a.open("localhost");
    assert!(offers_starttls(&f));
    let f = a.starttls(&server.cert_path(), "localhost");
    assert!(!offers_starttls(&f), "STARTTLS offered again under TLS");
    let mechs = mechanisms(&f);
    for m in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN"] {
        assert!(
            mechs.iter().any(|x| x == m),
            "{m} not offered under TLS: {mechs:?}"
        );
    }
    a.scram("alice", PASSWORD, ChannelBinding::None).unwrap();
    a.bind("localhost", "tls");
    assert_eq!(a.jid, "alice@localhost/tls");
    a.send("<presence/>");
    let mut b = server.login("bob", "b", Some(0));
    b.sync();
    a.send("<message to='bob@localhost' type='chat'><body>over tls</body></message>");
    let m = b.expect("message", |s| s.name() == "message");
    assert_eq!(m.from().as_deref(), Some("alice@localhost/tls"));
    assert_eq!(body(&m).as_deref(), Some("over tls"));
    b.chat("alice@localhost/tls", "back");
    let m = a.expect("message", |s| s.name() == "message");
    assert_eq!(body(&m).as_deref(), Some("back"));
    // A clean close is answered with a close and TLS close_notify (read_to_close sees EOF).
    a.send("</stream:stream>");
    let text = a.read_to_close();
    assert!(text.ends_with("</stream:stream>"), "{text}");
}

#[test]
fn scram_plus_with_tls_exporter_and_binding_checks() {
    let server = Server::start(1, &["alice"]);
    let cert = server.cert_path();
    // The binding matches: success.
    let mut a = Wire::connect(server.port);
    a.open("localhost");
    a.starttls(&cert, "localhost");
    a.scram(
        "alice",
        PASSWORD,
        ChannelBinding::Exporter { tamper: false },
    )
    .unwrap();
    a.bind("localhost", "plus");
    // A different binding (what a TLS man in the middle would present): refused.
    let mut m = Wire::connect(server.port);
    m.open("localhost");
    m.starttls(&cert, "localhost");
    let e = m.scram("alice", PASSWORD, ChannelBinding::Exporter { tamper: true });
    assert_eq!(e, Err(SaslFailed("not-authorized".into())));
    // `y` while the server offered -PLUS: a downgrade, refused (RFC 5802 §6).
    let mut y = Wire::connect(server.port);
    y.open("localhost");
    y.starttls(&cert, "localhost");
    let e = y.scram("alice", PASSWORD, ChannelBinding::ClientOnly);
    assert!(e.is_err(), "y flag accepted although -PLUS was offered");
}

#[test]
fn direct_tls_listener_xep0368() {
    let tls_port = common::free_port();
    let extra =
        format!("[[listen.c2s]]\nport = {tls_port}\nip_address = \"127.0.0.1\"\ntls = \"tls\"\n");
    let server = Server::start_with(1, &["alice"], "", &extra);
    let mut c = Wire::connect_direct_tls(tls_port, &server.cert_path());
    let f = c.open("localhost");
    assert_eq!(c.alpn().as_deref(), Some(&b"xmpp-client"[..]));
    assert!(!offers_starttls(&f), "STARTTLS offered on a TLS stream");
    assert!(mechanisms(&f).iter().any(|m| m == "SCRAM-SHA-256-PLUS"));
    c.scram(
        "alice",
        PASSWORD,
        ChannelBinding::Exporter { tamper: false },
    )
    .unwrap();
    c.bind("localhost", "direct");
    assert_eq!(c.jid, "alice@localhost/direct");
    // Plaintext XML on the direct TLS port is not a TLS handshake: the connection just closes.
    let mut p = Client::connect(tls_port);
    p.open("localhost");
    let text = p.read_to_close();
    assert!(!text.contains("<stream:features"), "{text}");
}

#[test]
fn plain_refused_on_plaintext_when_loopback_plaintext_disabled() {
    let server = Server::start_config(1, &["alice"], |port, data| {
        Server::config_text(port, data, "", "").replace(
            "allow_plaintext_on_loopback = true",
            "allow_plaintext_on_loopback = false",
        )
    });
    let mut c = Wire::connect(server.port);
    let f = c.open("localhost");
    let mechs = mechanisms(&f);
    assert!(
        !mechs.iter().any(|m| m == "PLAIN"),
        "PLAIN offered on plaintext: {mechs:?}"
    );
    let e = c.plain("alice", PASSWORD).unwrap_err();
    assert!(
        e.0 == "encryption-required" || e.0 == "invalid-mechanism",
        "unexpected failure {e:?}"
    );
    // Under TLS the same listener offers and accepts PLAIN.
    let mut t = Wire::connect(server.port);
    t.open("localhost");
    let f = t.starttls(&server.cert_path(), "localhost");
    assert!(mechanisms(&f).iter().any(|m| m == "PLAIN"));
    t.plain("alice", PASSWORD).unwrap();
    t.bind("localhost", "r");
    assert_eq!(t.jid, "alice@localhost/r");
}

#[test]
fn plain_allowed_on_loopback_when_enabled() {
    let server = Server::start(1, &["alice"]);
    let mut c = Wire::connect(server.port);
    let f = c.open("localhost");
    assert!(mechanisms(&f).iter().any(|m| m == "PLAIN"), "{}", c.text());
    c.plain("alice", PASSWORD).unwrap();
    c.bind("localhost", "plain");
    assert_eq!(c.jid, "alice@localhost/plain");
}

#[test]
fn wrong_password_and_unknown_user_are_not_authorized() {
    let server = Server::start(1, &["alice"]);
    let mut c = Wire::connect(server.port);
    c.open("localhost");
    assert_eq!(
        c.plain("alice", "wrong"),
        Err(SaslFailed("not-authorized".into()))
    );
    assert_eq!(
        c.scram("alice", "wrong", ChannelBinding::None),
        Err(SaslFailed("not-authorized".into()))
    );
    assert_eq!(
        c.scram("nobody", PASSWORD, ChannelBinding::None),
        Err(SaslFailed("not-authorized".into()))
    );
    assert_eq!(
        c.plain("nobody", PASSWORD),
        Err(SaslFailed("not-authorized".into()))
    );
    // The stream survives failed attempts (fewer than the limit): the right password works.
    c.scram("alice", PASSWORD, ChannelBinding::None).unwrap();
    c.bind("localhost", "after-failures");
}

// ---------------------------------------------------------------------------------------------
// Restricted XML and limits
// ---------------------------------------------------------------------------------------------

/// Where a bad input is sent.
#[derive(Clone, Copy, Debug)]
enum At {
    /// As the first bytes of the connection.
    Start,
    /// After the stream header (and the features answer).
    AfterHeader,
    /// On a bound session.
    Bound,
}

fn bad_input_closes(server: &Server, at: At, input: &[u8], cond: &str, case: &str) {
    let mut c = match at {
        At::Start => Client::connect(server.port),
        At::AfterHeader => {
            let mut c = Client::connect(server.port);
            c.open("localhost");
            assert_eq!(c.next_stanza().name(), "stream:features");
            c
        }
        At::Bound => server.login("alice", case, None),
    };
    c.send_bytes(input);
    let text = c.read_to_close();
    assert_stream_error(&text, cond, case);
}

#[test]
fn restricted_xml_violations_close_with_the_right_condition() {
    let server = Server::start(1, &["alice"]);
    let hdr = header("localhost");
    let cases: Vec<(&str, At, Vec<u8>, &str)> = vec![
        (
            "dtd",
            At::Start,
            b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>".to_vec(),
            "restricted-xml",
        ),
        ("dtd-after-header", At::AfterHeader, b"<!DOCTYPE foo>".to_vec(), "restricted-xml"),
        ("comment", At::AfterHeader, b"<!-- hello -->".to_vec(), "restricted-xml"),
        ("comment-in-stanza", At::Bound, b"<message><!-- x --></message>".to_vec(), "restricted-xml"),
        ("pi", At::Bound, b"<?php echo 1; ?>".to_vec(), "restricted-xml"),
        ("pi-in-stanza", At::Bound, b"<message><?pi x?></message>".to_vec(), "restricted-xml"),
        (
            "undefined-entity",
            At::Bound,
            b"<message to='alice@localhost'><body>&nbsp;</body></message>".to_vec(),
            "restricted-xml",
        ),
        (
            "unbound-prefix",
            At::Bound,
            b"<message><foo:bar/></message>".to_vec(),
            "not-well-formed",
        ),
        (
            "mismatched-end-tag",
            At::Bound,
            b"<message><body>x</message>".to_vec(),
            "not-well-formed",
        ),
        (
            "invalid-utf8",
            At::Bound,
            b"<message><body>\xff\xfe\xc3\x28</body></message>".to_vec(),
            "unsupported-encoding",
        ),
        (
            "invalid-utf8-in-header",
            At::Start,
            b"<?xml version='1.0'?><stream:stream to='local\xc0\xafhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".to_vec(),
            "unsupported-encoding",
        ),
        (
            "wrong-stream-namespace",
            At::Start,
            b"<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://example.com/streams' version='1.0'>".to_vec(),
            "invalid-namespace",
        ),
        (
            "wrong-default-namespace",
            At::Start,
            b"<stream:stream to='localhost' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".to_vec(),
            "invalid-namespace",
        ),
        ("unknown-host", At::Start, header("nope.example").into_bytes(), "host-unknown"),
        (
            "deep-nesting",
            At::Bound,
            format!("<message>{}{}</message>", "<a>".repeat(40), "</a>".repeat(40)).into_bytes(),
            "policy-violation",
        ),
        (
            "too-many-attributes",
            At::Bound,
            format!(
                "<message {}/>",
                (0..100).map(|i| format!("a{i}='x'")).collect::<Vec<_>>().join(" ")
            )
            .into_bytes(),
            "policy-violation",
        ),
        (
            "stanza-before-header",
            At::Start,
            b"<message/>".to_vec(),
            "not-well-formed",
        ),
        (
            "text-between-stanzas",
            At::Bound,
            b"hello".to_vec(),
            "not-well-formed",
        ),
        (
            "old-version",
            At::Start,
            hdr.replace("version='1.0'>", "version='0.9'>").into_bytes(),
            "unsupported-version",
        ),
    ];
    for (case, at, input, cond) in cases {
        bad_input_closes(&server, at, &input, cond, case);
    }
    // The server is still fine after all of that.
    let mut ok = server.login("alice", "survivor", Some(0));
    ok.sync();
}

#[test]
fn oversized_stanza_is_policy_violation() {
    let server = Server::start_with(1, &["alice"], "max_stanza_size = 4096", "");
    // A 10 KB message from a bound client.
    let big = format!(
        "<message to='alice@localhost'><body>{}</body></message>",
        "x".repeat(10 * 1024)
    );
    bad_input_closes(
        &server,
        At::Bound,
        big.as_bytes(),
        "policy-violation",
        "bound 10 KB",
    );
    // Before authentication too (one stanza of 10 KB, and a giant unfinished start tag).
    bad_input_closes(
        &server,
        At::AfterHeader,
        big.as_bytes(),
        "policy-violation",
        "pre-auth 10 KB",
    );
    let tag = format!("<message to='{}", "y".repeat(10 * 1024));
    bad_input_closes(
        &server,
        At::Bound,
        tag.as_bytes(),
        "policy-violation",
        "open tag 10 KB",
    );
    // Just under the bound is fine.
    let mut c = server.login("alice", "ok", Some(0));
    let fits = format!(
        "<message to='alice@localhost/ok'><body>{}</body></message>",
        "z".repeat(3900)
    );
    c.send(&fits);
    let m = c.expect("own message", |s| s.name() == "message");
    assert_eq!(body(&m).map(|b| b.len()), Some(3900));
}

// ---------------------------------------------------------------------------------------------
// Input framing
// ---------------------------------------------------------------------------------------------

#[test]
fn one_byte_per_write_login_and_message() {
    let server = Server::start(2, &["alice", "bob"]);
    let mut b = server.login("bob", "b", Some(0));
    b.sync();
    // Plaintext SCRAM and then, separately, STARTTLS + SCRAM-PLUS (1-byte TLS records).
    for tls in [false, true] {
        let mut a = Wire::connect(server.port);
        a.bytewise = true;
        a.open("localhost");
        if tls {
            a.starttls(&server.cert_path(), "localhost");
            a.scram(
                "alice",
                PASSWORD,
                ChannelBinding::Exporter { tamper: false },
            )
            .unwrap();
        } else {
            a.scram("alice", PASSWORD, ChannelBinding::None).unwrap();
        }
        let res = format!("bytes{tls}");
        a.bind("localhost", &res);
        a.send("<presence/>");
        let text = format!("one &amp; byte \u{e9}\u{1f600} tls={tls}");
        a.send(&format!(
            "<message to='bob@localhost' type='chat'><body>{text}</body></message>"
        ));
        let m = b.expect("message", |s| s.name() == "message");
        assert_eq!(
            m.from().as_deref(),
            Some(format!("alice@localhost/{res}").as_str())
        );
        assert_eq!(
            body(&m).as_deref(),
            Some(text.replace("&amp;", "&").as_str())
        );
    }
}

#[test]
fn same_full_jid_conflict_on_four_shards() {
    let server = Server::start(4, &["alice", "bob"]);
    // Connections land on shards by the kernel's choice: repeat to cover several shard pairs.
    for i in 0..6 {
        let res = format!("same{i}");
        let mut first = server.login("alice", &res, Some(0));
        let mut second = server.login("alice", &res, Some(0));
        let text = first.read_to_close();
        assert_stream_error(&text, "conflict", &res);
        let mut b = server.login("bob", &format!("b{i}"), None);
        b.chat(&format!("alice@localhost/{res}"), "to-new");
        let m = second.expect("message", |s| s.name() == "message");
        assert_eq!(body(&m).as_deref(), Some("to-new"));
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[test]
fn slow_reader_is_closed_memory_stays_bounded_and_sender_is_told() {
    let server = Server::start_with(1, &["alice", "slow"], "outbound_queue_bytes = 65536", "");
    let mut slow = server.login("slow", "s", Some(0));
    slow.sync();
    let mut a = server.login("alice", "a", Some(0));
    a.sync();
    let rss_before = rss_kib(server.pid());

    // ~16 MB of messages (twice the RSS bound below, so buffering the flood would fail the test);
    // a writer thread sends while this thread drains alice's side, so the sender itself is never a
    // slow reader.
    const N: usize = 16_000;
    let payload = "p".repeat(1000);
    let mut writer = a.sock.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let m = format!("<message to='slow@localhost' type='chat' id='f{i}'><body>{payload}</body></message>");
            writer.write_all(m.as_bytes()).unwrap();
        }
    });
    // Bounces come back for what could not be delivered; collect them by id.
    let mut bounced = std::collections::HashSet::new();
    let mut rss_peak = rss_before;
    a.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    loop {
        rss_peak = rss_peak.max(rss_kib(server.pid()));
        // None: nothing more within the read timeout.
        let Some(s) = a.try_next_stanza() else {
            break;
        };
        if s.type_().as_deref() == Some("error") {
            let cond = error_condition(&s).unwrap_or_default();
            assert!(
                [
                    "service-unavailable",
                    "resource-constraint",
                    "recipient-unavailable"
                ]
                .contains(&cond.as_str()),
                "unexpected bounce {cond}: {}",
                String::from_utf8_lossy(s.bytes())
            );
            bounced.insert(s.id().unwrap().into_owned());
        }
        if bounced.len() == N {
            break;
        }
    }
    sender.join().unwrap();
    let rss_after = rss_kib(server.pid());

    // The slow reader now reads: its stream ended with policy-violation (or was cut while flushing).
    slow.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let text = slow.read_to_close();
    let delivered: std::collections::HashSet<String> = text
        .match_indices("<message ")
        .filter_map(|(i, _)| {
            let rest = &text[i..];
            let id = rest.split("id='").nth(1)?.split('\'').next()?;
            Some(id.to_string())
        })
        .collect();
    let closed_with_error =
        text.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    eprintln!(
        "slow reader: {} delivered, {} bounced, policy-violation seen: {closed_with_error}, \
         RSS before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} KiB",
        delivered.len(),
        bounced.len()
    );
    assert!(
        closed_with_error || !text.ends_with("</message>") || delivered.len() < N,
        "slow reader was not cut off"
    );
    assert!(
        delivered.len() < N,
        "everything was delivered: the bound did not apply"
    );
    assert!(
        !bounced.is_empty(),
        "the sender heard nothing about undelivered messages"
    );
    // Never silence: every message was either written to the slow reader's socket or bounced.
    let missing: Vec<usize> = (0..N)
        .filter(|i| {
            let id = format!("f{i}");
            !delivered.contains(&id) && !bounced.contains(&id)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages lost silently, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Memory: the server did not buffer the flood (measured peaks: 2 to 6 MB over the start, from
    // allocator and socket buffers; holding the flood would take 16 MB).
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(
        growth < 8 * 1024,
        "RSS grew by {growth} KiB during a 16 MB flood"
    );
}

#[test]
fn malformed_streams_do_not_take_the_shard_down() {
    let server = Server::start(1, &["alice", "bob"]);
    let garbage: Vec<Vec<u8>> = vec![
        b"\xff\xfe\xfd\x00\x01garbage".to_vec(),
        (0..=255u8).cycle().take(70_000).collect(),
        // A TLS ClientHello where XML is expected.
        vec![
            0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
        ],
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        format!(
            "{}<message><body>\u{0}</body></message>",
            header("localhost")
        )
        .into_bytes(),
        // A UTF-16 surrogate encoded as UTF-8 (invalid UTF-8).
        [
            header("localhost").as_bytes(),
            b"<message><body>\xed\xa0\x80</body></message>",
        ]
        .concat(),
        format!("{}<<<<>>>>", header("localhost")).into_bytes(),
        header("localhost").into_bytes()[..40].to_vec(),
    ];
    for (i, g) in garbage.iter().enumerate() {
        let mut c = Client::connect(server.port);
        c.send_bytes(g);
        // Half of them: wait for the server to close; the other half: hang up right away.
        if i % 2 == 0 {
            let text = c.read_to_close();
            assert!(text.contains("<stream:error>"), "case {i}: {text}");
        }
    }
    // STARTTLS then garbage instead of a handshake.
    let mut t = Client::connect(server.port);
    t.open("localhost");
    t.next_stanza();
    t.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    let p = t.next_stanza();
    assert_eq!(p.name(), "proceed");
    t.send_bytes(b"this is not TLS at all\r\n\r\n");
    t.read_to_close();
    // The (only) shard still serves.
    let mut a = server.login("alice", "a", Some(0));
    let mut b = server.login("bob", "b", Some(0));
    b.sync();
    a.chat("bob@localhost", "still here");
    let m = b.expect("message", |s| s.name() == "message");
    assert_eq!(body(&m).as_deref(), Some("still here"));
}

#[test]
fn sigterm_sends_system_shutdown_and_exits_zero() {
    let mut server = Server::start(2, &["alice", "bob"]);
    let mut a = server.login("alice", "a", Some(0));
    let mut b = server.login("bob", "b", Some(0));
    a.sync();
    b.sync();
    // One TLS client too: the shutdown must go through TLS (and close_notify).
    let mut t = Wire::connect(server.port);
    t.open("localhost");
    t.starttls(&server.cert_path(), "localhost");
    t.scram("alice", PASSWORD, ChannelBinding::None).unwrap();
    t.bind("localhost", "tls");
    let status = server.stop().expect("server was running");
    assert!(status.success(), "exit status {status}");
    for (name, text) in [
        ("a", a.read_to_close()),
        ("b", b.read_to_close()),
        ("tls", t.read_to_close()),
    ] {
        assert_stream_error(&text, "system-shutdown", name);
    }
}

#[test]
fn whitespace_after_auth_then_a_restart_with_a_declaration() {
    // go-xmpp (go-sendxmpp) ends `<auth/>` with a newline and restarts with an XML declaration:
    // the newline is the old stream's, the restart was refused with restricted-xml.
    let server = Server::start(2, &["alice"]);
    let mut c = server.connect();
    c.open("localhost");
    let features = c.next_stanza();
    assert_eq!(features.name(), "stream:features");
    let token = B64.encode("\0alice\0".to_owned() + PASSWORD);
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>\n"
    ));
    let r = c.next_stanza();
    assert_eq!(
        r.name(),
        "success",
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    c.restart();
    c.send("\n");
    c.open("localhost");
    let features = c.next_stanza();
    let text = String::from_utf8_lossy(features.bytes()).into_owned();
    assert!(text.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{text}");
    c.bind("r");
    c.sync();
}

#[test]
fn scram_shows_an_unknown_account_the_iteration_count_of_real_ones() {
    // RFC 5802 §9: the server-first message must not tell who has an account. The fake salt
    // came with the default 10 000 iterations while accounts had the configured 4 096.
    let server = Server::start(1, &["alice"]);
    let iterations = |user: &str| {
        let mut c = server.connect();
        c.open("localhost");
        c.next_stanza();
        let first = B64.encode(format!("n,,n={user},r=abcdefgh"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ));
        let ch = c.next_stanza();
        let text = ch.tree().unwrap().text();
        let server_first = String::from_utf8(B64.decode(text.trim()).unwrap()).unwrap();
        server_first
            .split(',')
            .find_map(|kv| kv.strip_prefix("i="))
            .unwrap_or_else(|| panic!("{server_first}"))
            .to_owned()
    };
    assert_eq!(iterations("alice"), "4096");
    assert_eq!(iterations("nobody"), "4096");
}

#[test]
fn one_server_per_data_directory_and_no_account_deleted_under_it() {
    // A second server on the same data directory would share the store but not the sessions; an
    // account deleted behind the running server's back kept its session (and its contacts).
    let server = Server::start(1, &["alice"]);
    let mut alice = server.login("alice", "a", Some(0));
    let text = std::fs::read_to_string(&server.config).unwrap();
    let other = server.dir.path().join("other.toml");
    let port = common::free_port();
    std::fs::write(
        &other,
        text.replace(
            &format!("port = {}", server.port),
            &format!("port = {port}"),
        ),
    )
    .unwrap();
    let out = common::petrel()
        .args(["serve", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("another petrel server (pid"), "{err}");
    let out = common::petrel()
        .args(["user", "del", "alice@localhost", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("petrel ctl user del alice@localhost"), "{err}");
    // Nothing happened to alice.
    alice.sync();
}

#[test]
fn sighup_is_survived_and_sigterm_still_stops_gracefully() {
    // logrotate's postrotate and systemd's ExecReload send SIGHUP: its default action killed the
    // process with no word to anyone.
    let mut server = Server::start(2, &["alice"]);
    let mut a = server.login("alice", "a", Some(0));
    a.sync();
    // SAFETY: kill(2) on the pid of the child this test started and still owns.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    a.sync();
    let status = server.stop().expect("server was running");
    assert!(status.success(), "exit status {status}");
    assert_stream_error(&a.read_to_close(), "system-shutdown", "a");
}

/// A certificate and key for `localhost` written to `cert` and `key` (PEM); returns the DER.
fn write_pair(cert: &Path, key: &Path) -> Vec<u8> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(key, ck.key_pair.serialize_pem()).unwrap();
    std::fs::write(cert, ck.cert.pem()).unwrap();
    ck.cert.der().to_vec()
}

/// Sends SIGHUP and waits until the server logged `line` once more than before (the reload
/// runs on a shard's next tick).
fn hangup_and_wait_for(server: &Server, log: &Path, line: &str) {
    let before = std::fs::read_to_string(log).unwrap().matches(line).count();
    // SAFETY: kill(2) on the pid of the child this test started and still owns.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(log).unwrap().matches(line).count() == before {
        assert!(Instant::now() < deadline, "no {line:?} in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_serves_a_renewed_certificate_and_keeps_it_when_the_new_files_are_bad() {
    // Certificates are renewed every 60-90 days; a restart to serve the new one would close every
    // session. SIGHUP reads the files again: new connections on every shard get the new pair
    // (and SASL binds to it), open ones go on, and a bad pair leaves the old one in place.
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    let first = write_pair(&cert, &key);
    let listener = format!(
        "certfile = \"{}\"\nkeyfile = \"{}\"",
        cert.display(),
        key.display()
    );
    let mut server = Server::start_with(2, &["alice", "bob"], &listener, "");
    server.stop();
    let log = files.path().join("server.log");
    server.spawn_logging_to(2, &log);
    let trust_first = files.path().join("first.pem");
    std::fs::copy(&cert, &trust_first).unwrap();

    let mut old = Wire::connect(server.port);
    old.open("localhost");
    old.starttls(&trust_first, "localhost");
    assert_eq!(old.peer_cert(), first);
    old.scram("alice", PASSWORD, ChannelBinding::EndPoint)
        .unwrap();
    old.bind("localhost", "old");
    // Through TLS before the reload, authenticated after it: SCRAM-PLUS binds to the certificate
    // this connection was given (RFC 5929), not the one served since.
    let mut between = Wire::connect(server.port);
    between.open("localhost");
    between.starttls(&trust_first, "localhost");

    let renewed = write_pair(&cert, &key);
    hangup_and_wait_for(&server, &log, "SIGHUP: new certificate served");
    assert_eq!(between.peer_cert(), first);
    between
        .scram("bob", PASSWORD, ChannelBinding::EndPoint)
        .unwrap();
    // Every shard's listener serves the renewed pair (connections spread over both).
    for i in 0..6 {
        let mut new = Wire::connect(server.port);
        new.open("localhost");
        new.starttls(&cert, "localhost");
        assert_eq!(new.peer_cert(), renewed, "connection {i}");
        // tls-server-end-point follows the certificate.
        new.scram("bob", PASSWORD, ChannelBinding::EndPoint)
            .unwrap();
        new.bind("localhost", &format!("new{i}"));
    }
    // The connection made before the reload goes on with its own certificate.
    old.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    old.expect("ping result", |s| s.attr("id").as_deref() == Some("p1"));

    // A key that does not match the certificate: the renewed pair stays.
    let other = files.path().join("other-cert.pem");
    write_pair(&other, &key);
    hangup_and_wait_for(&server, &log, "SIGHUP: certificate not reloaded");
    let mut after = Wire::connect(server.port);
    after.open("localhost");
    after.starttls(&cert, "localhost");
    assert_eq!(after.peer_cert(), renewed);
    after
        .scram("alice", PASSWORD, ChannelBinding::EndPoint)
        .unwrap();
    let status = server.stop().expect("server was running");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn whitespace_keepalives_then_idle_timeout() {
    let server = Server::start_with(1, &["alice"], "idle_timeout = 2", "");
    let mut c = server.login("alice", "idle", Some(0));
    // Keepalives (single spaces and newlines between stanzas) for longer than the idle timeout.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        c.send(" ");
        std::thread::sleep(Duration::from_millis(500));
        c.send("\n");
    }
    c.sync();
    // Now silence: closed with connection-timeout after about 2 s.
    let silent = Instant::now();
    c.sock
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let text = c.read_to_close();
    let took = silent.elapsed();
    assert_stream_error(&text, "connection-timeout", "idle");
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "closed too late: {took:?}");
}
