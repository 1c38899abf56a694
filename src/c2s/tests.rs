//! Sans-IO tests: a scripted client (optionally over an in-memory rustls client) against `C2s`, fake clock.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use super::*;
use crate::auth::ScramSecrets;
use crate::xml::{Limits, StanzaKind, StanzaType};
use crate::xmpp::ns;
use crate::xmpp::StreamErrorCondition;

const HOST: &str = "example.com";
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const ITERATIONS: u32 = 4096;

/// Self-signed certificate shared by every test (key generation is the slow part).
struct Pki {
    server: Arc<ServerConfig>,
    /// The pair `server` serves.
    served: Arc<crate::tls::ServedCert>,
    roots: RootCertStore,
    /// The certificate's `tls-server-end-point` hash.
    end_point: crate::auth::EndPointHash,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let served = crate::tls::ServedCert::new(vec![cert.clone()], key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(served.clone());
        let end_point = crate::tls::server_end_point(&cert).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        Pki {
            server: Arc::new(server),
            served,
            roots,
            end_point,
        }
    })
}

fn client_config(tls12_only: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki().roots.clone())
        .with_no_client_auth();
    Arc::new(cfg)
}

fn config(mode: TlsMode) -> C2sConfig {
    C2sConfig {
        post_auth_features: Vec::new(),
        bind2_features: Vec::new(),
        hosts: vec![HOST.to_string(), "other.org".to_string()],
        tls_mode: mode,
        tls: Some(pki().server.clone()),
        tls_cert: Some(pki().served.clone()),
        allow_plaintext_on_loopback: false,
        sasl2: true,
        transport_secure: false,
        limits: Limits::default(),
        outbound_queue_bytes: 8 * 1024,
        auth_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(600),
        ping_interval: Duration::ZERO,
        ping_timeout: Duration::from_secs(32),
        register: false,
        sm: None,
    }
}

const REMOTE: &str = "192.0.2.7:40000";
const LOOPBACK: &str = "127.0.0.1:40000";

/// A scripted client with a fake clock.
struct Client {
    c2s: C2s,
    now: Instant,
    start: Instant,
    tls: Option<ClientConnection>,
    /// SCRAM-PLUS binds to `tls-server-end-point`, not `tls-exporter`.
    bind_end_point: bool,
    /// Feed input one byte per `handle_input` call.
    byte_at_a_time: bool,
    /// Everything the server wrote (decrypted), for whole-session assertions.
    transcript: String,
    /// Bytes taken with `take_transmit` so far (what a driver counts its writes against).
    taken: u64,
}

impl Client {
    fn new(cfg: C2sConfig, addr: &str) -> Client {
        let now = Instant::now();
        let peer = PeerInfo {
            addr: addr.parse::<SocketAddr>().unwrap(),
        };
        Client {
            c2s: C2s::new(Arc::new(cfg), peer, now),
            now,
            start: now,
            tls: None,
            bind_end_point: false,
            byte_at_a_time: false,
            transcript: String::new(),
            taken: 0,
        }
    }

    fn input(&mut self, bytes: &[u8]) {
        if self.byte_at_a_time {
            for b in bytes {
                self.c2s.handle_input(std::slice::from_ref(b), self.now);
            }
        } else {
            self.c2s.handle_input(bytes, self.now);
        }
    }

    /// Sends XML (encrypted when TLS is up).
    fn send(&mut self, xml: &str) {
        match &mut self.tls {
            None => self.input(xml.as_bytes()),
            Some(tls) => {
                tls.writer().write_all(xml.as_bytes()).unwrap();
                let mut wire = Vec::new();
                while tls.wants_write() {
                    tls.write_tls(&mut wire).unwrap();
                }
                self.input(&wire);
            }
        }
    }

    /// Takes what the server wrote, decrypting under TLS.
    fn recv(&mut self) -> String {
        let mut wire = Vec::new();
        self.c2s.take_transmit(&mut wire);
        self.taken += wire.len() as u64;
        // All of it, but routed stanzas waiting for the client's XEP-0198 acks.
        let waiting = if self.c2s.is_closed() {
            0
        } else {
            self.c2s.routed.bytes()
        };
        assert_eq!(self.c2s.pending_transmit(), waiting);
        let text = match &mut self.tls {
            None => String::from_utf8(wire).unwrap(),
            Some(tls) => {
                let mut rd = &wire[..];
                let mut plain = Vec::new();
                while !rd.is_empty() {
                    tls.read_tls(&mut rd).unwrap();
                    tls.process_new_packets().unwrap();
                    let _ = tls.reader().read_to_end(&mut plain);
                }
                String::from_utf8(plain).unwrap()
            }
        };
        self.transcript.push_str(&text);
        text
    }

    fn events(&mut self) -> Vec<C2sEvent> {
        std::iter::from_fn(|| self.c2s.poll_event()).collect()
    }

    /// Replaces the transport with a TLS client and runs the handshake in memory.
    fn handshake(&mut self, cfg: Arc<ClientConfig>) {
        let name = ServerName::try_from(HOST).unwrap();
        let mut tls = ClientConnection::new(cfg, name).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                self.input(&wire);
            }
            let mut back = Vec::new();
            self.c2s.take_transmit(&mut back);
            self.taken += back.len() as u64;
            let mut rd = &back[..];
            while !rd.is_empty() {
                tls.read_tls(&mut rd).unwrap();
                tls.process_new_packets().unwrap();
            }
            if !tls.is_handshaking() && !tls.wants_write() && back.is_empty() {
                break;
            }
        }
        assert!(!tls.is_handshaking());
        self.tls = Some(tls);
    }

    fn exporter(&self) -> [u8; 32] {
        let tls = self.tls.as_ref().unwrap();
        tls.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap()
    }

    /// Opens a stream and returns the header + features.
    fn open(&mut self) -> String {
        self.send(HEADER);
        let out = self.recv();
        assert!(out.contains("<stream:features>"), "{out}");
        out
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// The text between `<tag ...>` and `</tag>` in `s`.
fn element_text<'a>(s: &'a str, tag: &str) -> &'a str {
    let open = s
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {s}"));
    let body = open + s[open..].find('>').unwrap() + 1;
    let end = body + s[body..].find(&format!("</{tag}>")).unwrap();
    &s[body..end]
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A SCRAM-SHA-256(-PLUS) client exchange; returns the server's reply to the final message.
fn scram_sha256(
    c: &mut Client,
    user: &str,
    password: &str,
    secrets: Option<&ScramSecrets>,
    plus: bool,
) -> String {
    scram_exchange(c, user, password, secrets, plus, None, None)
}

/// [`scram_sha256`] in RFC 6120 framing (`sasl2: None`), or in SASL2 framing (XEP-0388) with
/// `Some(inline)` elements after the initial response (a `<user-agent/>`, a `<bind/>`...); the
/// client's final message goes in `response_ns`'s framing when given (a client mixing SASL2 and
/// RFC 6120 elements).
fn scram_exchange(
    c: &mut Client,
    user: &str,
    password: &str,
    secrets: Option<&ScramSecrets>,
    plus: bool,
    sasl2: Option<&str>,
    response_ns: Option<&str>,
) -> String {
    // -PLUS binds to the exporter unless the client chose the certificate.
    let exporter = !c.bind_end_point;
    let (mech, gs2) = if plus && exporter {
        ("SCRAM-SHA-256-PLUS", "p=tls-exporter,,")
    } else if plus {
        ("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,")
    } else {
        ("SCRAM-SHA-256", "n,,")
    };
    let cnonce = "fyko+d2lbbFgONRv9qkxdawL";
    let first_bare = format!("n={user},r={cnonce}");
    let first = B64.encode(format!("{gs2}{first_bare}"));
    let (ns, success_data) = match sasl2 {
        None => {
            c.send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{first}</auth>"
            ));
            ("urn:ietf:params:xml:ns:xmpp-sasl", "success")
        }
        Some(inline) => {
            c.send(&format!(
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='{mech}'>\
                 <initial-response>{first}</initial-response>{inline}</authenticate>"
            ));
            ("urn:xmpp:sasl:2", "additional-data")
        }
    };
    assert!(c.recv().is_empty(), "the server waits for the secrets");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::NeedSecrets { username }] if username == user),
        "{ev:?}"
    );
    c.c2s.provide_secrets(secrets.cloned());
    let out = c.recv();
    assert!(
        out.starts_with(&format!("<challenge xmlns='{ns}'>")),
        "{out}"
    );
    let server_first =
        String::from_utf8(B64.decode(element_text(&out, "challenge")).unwrap()).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0u32;
    for part in server_first.split(',') {
        match part.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = B64.decode(v).unwrap(),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    assert!(nonce.starts_with(cnonce));
    let mut cbind = gs2.as_bytes().to_vec();
    if plus && exporter {
        cbind.extend_from_slice(&c.exporter());
    } else if plus {
        cbind.extend_from_slice(pki().end_point.as_bytes());
    }
    let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let client_key = hmac256(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let signature = hmac256(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let final_msg = B64.encode(format!("{without_proof},p={}", B64.encode(proof)));
    let response_ns = response_ns.unwrap_or(ns);
    c.send(&format!(
        "<response xmlns='{response_ns}'>{final_msg}</response>"
    ));
    let out = c.recv();
    if out.contains("<success") {
        let server_key = hmac256(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            B64.encode(hmac256(&server_key, auth_message.as_bytes()))
        );
        let got = String::from_utf8(B64.decode(element_text(&out, success_data)).unwrap()).unwrap();
        assert_eq!(got, expected, "server signature");
    }
    out
}

fn secrets(password: &str) -> ScramSecrets {
    ScramSecrets::derive(password, ITERATIONS)
}

/// Binds `resource` (or a generated one), answering the BindRequest with success.
fn bind(c: &mut Client, resource: Option<&str>) -> FullJid {
    let body = resource.map_or(String::new(), |r| format!("<resource>{r}</resource>"));
    c.send(&format!(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{body}</bind></iq>"
    ));
    assert!(c.recv().is_empty());
    let ev = c.events();
    let [C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    let jid = jid.clone();
    c.c2s.bind_result(Ok(jid.clone()));
    let out = c.recv();
    assert_eq!(
        out,
        format!(
            "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{}</jid></bind></iq>",
            jid.as_str()
        )
    );
    assert_eq!(c.c2s.jid(), Some(&jid));
    jid
}

/// Full plaintext SCRAM-SHA-256 login up to a bound session.
fn login(c: &mut Client, resource: Option<&str>) -> FullJid {
    let features = c.open();
    assert!(
        features.contains("<mechanism>SCRAM-SHA-256</mechanism>"),
        "{features}"
    );
    let out = scram_sha256(c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(out.contains("<success"), "{out}");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Authenticated { jid }] if jid.as_str() == "alice@example.com"),
        "{ev:?}"
    );
    let features = c.open();
    assert!(features.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    assert!(features
        .contains("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"));
    assert!(!features.contains("mechanism"));
    bind(c, resource)
}

/// TLS handshake (direct TLS), SCRAM-SHA-256-PLUS login and bind.
fn login_direct_tls(c: &mut Client, resource: Option<&str>) -> FullJid {
    c.handshake(client_config(false));
    c.open();
    let out = scram_sha256(c, "alice", "s3cret", Some(&secrets("s3cret")), true);
    assert!(out.contains("<success"), "{out}");
    c.events();
    c.open();
    bind(c, resource)
}

fn closed_with(c: &mut Client) -> Option<CloseReason> {
    c.events().into_iter().find_map(|e| match e {
        C2sEvent::Closed { reason } => Some(reason),
        _ => None,
    })
}

fn stream_error(cond: &str) -> String {
    format!("<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
}

// ---- stream header ----

#[test]
fn header_and_features_plaintext() {
    let mut c = Client::new(config(TlsMode::Starttls), REMOTE);
    let out = c.open();
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client'"),
        "{out}"
    );
    assert!(out.contains(&format!("id='{}'", c.c2s.stream_id())));
    assert!(
        out.contains("from='example.com'")
            && out.contains("version='1.0'")
            && out.contains("xml:lang='en'")
    );
    assert!(
        out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "{out}"
    );
    assert!(out.contains(
        "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
    ));
    assert!(!out.contains("PLAIN") && !out.contains("-PLUS"), "{out}");
}

#[test]
fn starttls_required_withholds_sasl() {
    let mut c = Client::new(config(TlsMode::StarttlsRequired), REMOTE);
    let out = c.open();
    assert!(
        out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
    );
    assert!(!out.contains("mechanisms"), "{out}");
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biws</auth>");
    assert!(c.recv().contains("<encryption-required/>"));
    assert!(c.events().is_empty());
}

#[test]
fn host_unknown_sends_header_then_error() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='nope.net' version='1.0'>");
    let out = c.recv();
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream"),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(
            "{}</stream:error></stream:stream>",
            stream_error("host-unknown")
        )),
        "{out}"
    );
    // The answer names none of the domains served here.
    assert!(!out.contains(HOST) && !out.contains("other.org"), "{out}");
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(StreamErrorCondition::HostUnknown))
    );
    assert!(c.c2s.is_closed());
}

#[test]
fn a_header_may_name_an_internationalized_host_by_its_a_labels() {
    let mut cfg = config(TlsMode::None);
    cfg.hosts.push("bücher.example".into());
    let mut c = Client::new(cfg, REMOTE);
    c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='xn--bcher-kva.example' version='1.0'>");
    let out = c.recv();
    assert!(out.contains("from='bücher.example'"), "{out}");
    assert!(!c.c2s.is_closed(), "{out}");
}

#[test]
fn a_header_names_a_host_as_a_jid_would() {
    // Case, a trailing dot (RFC 7622 §3.2) and a fullwidth full stop are the same domain.
    for to in ["EXAMPLE.com", "example.com.", "example\u{FF0E}com"] {
        let mut c = Client::new(config(TlsMode::None), REMOTE);
        c.send(&format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"));
        let out = c.recv();
        assert!(out.contains("from='example.com'"), "{to}: {out}");
        assert!(out.contains("<stream:features>"), "{to}: {out}");
        assert!(!c.c2s.is_closed(), "{to}");
    }
}

#[test]
fn missing_to_is_host_unknown() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    assert!(c.recv().contains(&stream_error("host-unknown")));
}

#[test]
fn unsupported_version() {
    for header in [
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='0.9'>",
    ] {
        let mut c = Client::new(config(TlsMode::None), REMOTE);
        c.send(header);
        let out = c.recv();
        assert!(out.starts_with("<?xml version='1.0'?><stream:stream"), "{out}");
        assert!(out.contains(&stream_error("unsupported-version")), "{out}");
        // RFC 6120 §4.7.5: the lower of the two versions, none for a header that gave none.
        let answer = &out[..out.find('>').unwrap() + 1];
        let answer = &out[answer.len()..out[answer.len()..].find('>').unwrap() + answer.len()];
        if header.contains("'0.9'") {
            assert!(answer.contains("version='0.9'"), "{answer}");
        } else {
            assert!(!answer.contains("version="), "{answer}");
        }
        assert_eq!(
            closed_with(&mut c),
            Some(CloseReason::StreamError(StreamErrorCondition::UnsupportedVersion))
        );
    }
}

#[test]
fn restricted_xml_is_a_stream_error() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    c.send("<!-- a comment -->");
    let out = c.recv();
    assert!(out.contains(&stream_error("restricted-xml")), "{out}");
    assert!(out.ends_with("</stream:stream>"));
    assert!(c.c2s.is_closed());
    // Nothing more is read after the close.
    c.send("<message/>");
    assert!(c.recv().is_empty());
}

#[test]
fn garbage_before_header_still_gets_a_header() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.send("<!DOCTYPE foo>");
    let out = c.recv();
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream"),
        "{out}"
    );
    assert!(out.contains("<stream:error>"), "{out}");
    assert!(c.c2s.is_closed());
}

// ---- SASL ----

#[test]
fn scram_sha256_login_and_bind() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let first_id = {
        c.open();
        c.c2s.stream_id().to_string()
    };
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(
        out.starts_with("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"),
        "{out}"
    );
    assert!(matches!(&c.events()[..], [C2sEvent::Authenticated { .. }]));
    c.open();
    assert_ne!(
        c.c2s.stream_id(),
        first_id,
        "a restart opens a new stream id"
    );
    let jid = bind(&mut c, Some("phone"));
    assert_eq!(jid.as_str(), "alice@example.com/phone");
    assert_eq!(
        c.c2s.next_timeout(),
        Some(c.now + Duration::from_secs(600)),
        "auth timeout cleared"
    );
}

#[test]
fn a_bind_or_session_request_without_an_id_is_a_bad_request() {
    // RFC 6120 §8.1.3: an IQ has an id; a bind without one bound a resource, answered with none.
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(out.contains("<success"), "{out}");
    c.events();
    c.open();
    c.send("<iq type='set'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    let out = c.recv();
    assert!(
        out.contains("type='error'") && out.contains("<bad-request"),
        "{out}"
    );
    assert!(c.events().is_empty(), "no bind request");
    bind(&mut c, Some("r"));
    // Bound: a session request without an id goes to the route, which answers bad-request.
    c.send("<iq type='set'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    assert_eq!(c.recv(), "", "not answered by the stream");
    let ev = c.events();
    assert!(matches!(&ev[..], [C2sEvent::Stanza(..)]), "{ev:?}");
}

#[test]
fn scram_wrong_password_fails_not_authorized() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let out = scram_sha256(&mut c, "alice", "wrong", Some(&secrets("s3cret")), false);
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    );
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::AuthFailed { jid }] if jid.as_str() == "alice@example.com"),
        "the driver is told, for login throttling: {ev:?}"
    );
    assert!(!c.c2s.is_closed(), "the client may retry");
    // The retry succeeds on the same stream.
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(out.contains("<success"), "{out}");
}

#[test]
fn unknown_user_fails_like_a_wrong_password() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    // The exchange runs to the end on fake secrets, so a probe cannot tell unknown users apart.
    let out = scram_sha256(&mut c, "bob", "s3cret", None, false);
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    );
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::AuthFailed { jid }] if jid.as_str() == "bob@example.com"),
        "{ev:?}"
    );
}

#[test]
fn five_failures_close_the_stream() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    for i in 1..=5 {
        c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>");
        let out = c.recv();
        assert!(out.contains("<invalid-mechanism/>"), "{out}");
        if i < 5 {
            assert!(!c.c2s.is_closed());
        } else {
            assert!(out.ends_with(&format!("{}<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too many authentication failures</text></stream:error></stream:stream>", stream_error("policy-violation"))), "{out}");
        }
    }
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::PolicyViolation
        ))
    );
}

#[test]
fn abort_and_bad_base64() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>!!!</auth>");
    assert!(c.recv().contains("<incorrect-encoding/>"));
    c.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_eq!(
        c.recv(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/></failure>"
    );
    c.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>");
    assert!(c.recv().contains("<malformed-request/>"));
}

#[test]
fn plain_refused_off_loopback() {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, REMOTE);
    let out = c.open();
    assert!(!out.contains("PLAIN"));
    let creds = B64.encode("\0alice\0s3cret");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    ));
    assert_eq!(
        c.recv(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>"
    );
    assert!(
        c.events().is_empty(),
        "the password never reaches the driver"
    );
}

#[test]
fn plain_refused_on_loopback_unless_configured() {
    let mut c = Client::new(config(TlsMode::None), LOOPBACK);
    assert!(!c.open().contains("PLAIN"));
}

#[test]
fn plain_allowed_on_loopback_when_configured_also_through_a_dual_stack_listener() {
    // A listener on `::` sees 127.0.0.1 as ::ffff:127.0.0.1.
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg.clone(), "[::ffff:127.0.0.1]:40000");
    assert!(c.open().contains("<mechanism>PLAIN</mechanism>"));
    let mut c = Client::new(cfg, "[::ffff:192.0.2.7]:40000");
    assert!(!c.open().contains("PLAIN"));
}

#[test]
fn plain_allowed_on_loopback_when_configured() {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, LOOPBACK);
    let out = c.open();
    assert!(out.contains("<mechanism>PLAIN</mechanism>"), "{out}");
    let creds = B64.encode("\0alice\0s3cret");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    ));
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::VerifyPlain { username, password }] if username == "alice" && password == "s3cret"),
        "{ev:?}"
    );
    c.c2s.plain_verified(false);
    assert!(c.recv().contains("<not-authorized/>"));
    assert!(
        matches!(&c.events()[..], [C2sEvent::AuthFailed { jid }] if jid.as_str() == "alice@example.com")
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    ));
    assert!(matches!(&c.events()[..], [C2sEvent::VerifyPlain { .. }]));
    c.c2s.plain_verified(true);
    assert_eq!(
        c.recv(),
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    );
    assert!(
        matches!(&c.events()[..], [C2sEvent::Authenticated { jid }] if jid.as_str() == "alice@example.com")
    );
}

#[test]
fn store_unavailable_is_a_temporary_failure_that_can_be_retried() {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, LOOPBACK);
    c.open();
    let creds = B64.encode("\0alice\0s3cret");
    let auth =
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>");
    // More store outages than the failure limit: none of them counts against the client.
    for _ in 0..=super::stream::MAX_SASL_FAILURES {
        c.send(&auth);
        assert!(matches!(&c.events()[..], [C2sEvent::VerifyPlain { .. }]));
        c.c2s.auth_unavailable();
        let out = c.recv();
        assert!(out.contains("<temporary-auth-failure/>"), "{out}");
        assert!(!c.c2s.is_closed());
    }
    c.send(&auth);
    assert!(matches!(&c.events()[..], [C2sEvent::VerifyPlain { .. }]));
    c.c2s.plain_verified(true);
    assert!(c.recv().contains("<success"));
}

#[test]
fn stanza_before_auth_is_not_authorized() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    c.send("<message to='bob@example.com'><body>hi</body></message>");
    let out = c.recv();
    assert!(out.contains(&stream_error("not-authorized")), "{out}");
    let ev = c.events();
    assert!(ev.iter().all(|e| !matches!(e, C2sEvent::Stanza(..))));
}

#[test]
fn restart_pipelined_with_the_final_sasl_message() {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, LOOPBACK);
    c.open();
    let creds = B64.encode("\0alice\0s3cret");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>{HEADER}"
    ));
    assert!(matches!(&c.events()[..], [C2sEvent::VerifyPlain { .. }]));
    c.c2s.plain_verified(true);
    let out = c.recv();
    assert!(out.starts_with("<success"), "{out}");
    assert!(
        out.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"),
        "the held header was parsed: {out}"
    );
}

// ---- STARTTLS and TLS ----

#[test]
fn starttls_then_scram_plus_login() {
    let mut c = Client::new(config(TlsMode::StarttlsRequired), REMOTE);
    c.open();
    // Trailing whitespace is not pipelined data.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n");
    assert_eq!(
        c.recv(),
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    c.handshake(client_config(false));
    let out = c.open();
    assert!(!out.contains("starttls"), "{out}");
    assert!(
        out.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"),
        "{out}"
    );
    assert!(
        out.contains("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/><channel-binding type='tls-server-end-point'/></sasl-channel-binding>"),
        "XEP-0440 beside the -PLUS mechanisms: {out}"
    );
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), true);
    assert!(out.contains("<success"), "{out}");
    c.events();
    c.open();
    bind(&mut c, Some("tls"));
    // A second <starttls/> is refused and closes the stream.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c
        .recv()
        .contains("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"));
    assert_eq!(closed_with(&mut c), Some(CloseReason::StarttlsFailure));
}

#[test]
fn scram_plus_binds_to_the_server_end_point() {
    let mut c = Client::new(config(TlsMode::Starttls), REMOTE);
    c.open();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c.recv().contains("<proceed"));
    c.handshake(client_config(false));
    c.open();
    // XEP-0440 §4: the type every client can compute, beside the exporter.
    c.bind_end_point = true;
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), true);
    assert!(out.contains("<success"), "{out}");
}

#[test]
fn tls12_offers_no_plus() {
    let mut c = Client::new(config(TlsMode::Starttls), REMOTE);
    c.open();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c.recv().contains("<proceed"));
    c.handshake(client_config(true));
    let out = c.open();
    assert!(!out.contains("-PLUS") && !out.contains("sasl-cb"), "{out}");
    assert!(out.contains("<mechanism>PLAIN</mechanism>"), "{out}");
    c.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>=</auth>",
    );
    assert!(c.recv().contains("<invalid-mechanism/>"));
}

#[test]
fn pipelined_plaintext_after_starttls_is_refused() {
    let mut c = Client::new(config(TlsMode::Starttls), REMOTE);
    c.open();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
    let out = c.recv();
    assert!(!out.contains("<proceed"), "{out}");
    assert!(out.contains(&stream_error("policy-violation")), "{out}");
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::PolicyViolation
        ))
    );
}

#[test]
fn starttls_not_offered_fails() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    assert!(!c.open().contains("starttls"));
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(
        c.recv(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
    );
    assert_eq!(closed_with(&mut c), Some(CloseReason::StarttlsFailure));
}

#[test]
fn direct_tls_login() {
    let mut c = Client::new(config(TlsMode::DirectTls), REMOTE);
    c.handshake(client_config(false));
    let out = c.open();
    assert!(
        !out.contains("starttls") && out.contains("SCRAM-SHA-256-PLUS"),
        "{out}"
    );
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), true);
    assert!(out.contains("<success"), "{out}");
    c.events();
    c.open();
    bind(&mut c, None);
    // Server close over TLS: stream error then close_notify.
    c.c2s
        .close(Some(StreamErrorCondition::SystemShutdown), None);
    let out = c.recv();
    assert!(
        out.ends_with(&format!(
            "{}</stream:error></stream:stream>",
            stream_error("system-shutdown")
        )),
        "{out}"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        c.tls.as_mut().unwrap().reader().read(&mut buf).unwrap(),
        0,
        "close_notify received"
    );
}

/// A TLS stream quiet for `TLS_IDLE_RELEASE` gives back rustls' read buffer at that timeout, not
/// before, and goes on working after it.
#[test]
fn quiet_tls_stream_gives_back_its_read_buffer() {
    use super::stream::TLS_IDLE_RELEASE;
    let mut c = Client::new(config(TlsMode::DirectTls), REMOTE);
    let jid = login_direct_tls(&mut c, None);
    let due = c.now + TLS_IDLE_RELEASE;
    assert_eq!(
        c.c2s.next_timeout(),
        Some(due),
        "the release is the first timeout"
    );
    c.advance(TLS_IDLE_RELEASE - Duration::from_millis(1));
    c.c2s.handle_timeout(c.now);
    assert!(c.c2s.tls_read_buffer, "not released before it is due");
    c.advance(Duration::from_millis(1));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.tls_read_buffer);
    assert!(
        !c.c2s.transport.release_idle(),
        "the buffer is already released"
    );
    assert!(
        c.c2s.next_timeout() > Some(due),
        "{:?}",
        c.c2s.next_timeout()
    );
    assert!(!c.c2s.is_closed());
    // The next records are read into a fresh buffer.
    c.send("<message to='bob@example.com'><body>after</body></message>");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Stanza(s, _)] if s.from().as_deref() == Some(jid.as_str())),
        "{ev:?}"
    );
    assert!(c.c2s.tls_read_buffer);
    assert_eq!(c.c2s.next_timeout(), Some(c.now + TLS_IDLE_RELEASE));
}

#[test]
fn garbage_instead_of_tls_closes() {
    let mut c = Client::new(config(TlsMode::DirectTls), REMOTE);
    c.send(HEADER);
    assert!(c.c2s.is_closed());
    assert_eq!(closed_with(&mut c), Some(CloseReason::Tls));
    let mut wire = Vec::new();
    c.c2s.take_transmit(&mut wire);
    assert!(!wire.starts_with(b"<"), "no XML in clear on a TLS port");
}

// ---- binding ----

#[test]
fn bind_without_resource_generates_one() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let jid = login(&mut c, None);
    let res = jid.resource();
    assert!(res.len() >= 16, "{res}");
    assert!(res.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn bind_refused_then_retried() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    c.events();
    c.open();
    c.send("<iq type='set' id='x'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
    assert!(matches!(&c.events()[..], [C2sEvent::BindRequest { .. }]));
    c.c2s.bind_result(Err(BindError::Conflict));
    assert_eq!(
        c.recv(),
        "<iq type='error' id='x'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    );
    assert_eq!(c.c2s.jid(), None);
    bind(&mut c, Some("r2"));
}

#[test]
fn bad_resource_is_bad_request() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    c.events();
    c.open();
    let long = "r".repeat(1100);
    c.send(&format!("<iq type='set' id='x'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{long}</resource></bind></iq>"));
    assert!(c
        .recv()
        .contains("<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"));
    assert!(c.events().is_empty());
    // A bind is a set (RFC 6120 §7.6.1).
    c.send("<iq type='get' id='g'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
    assert!(c
        .recv()
        .contains("<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"));
    assert!(c.events().is_empty());
}

#[test]
fn before_bind_rules() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    c.events();
    c.open();
    // An IQ to the server itself: refused, the stream stays (RFC 6120 §7.1).
    c.send("<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert!(c.recv().contains("<service-unavailable"));
    assert!(!c.c2s.is_closed());
    // A message to someone else: not-authorized stream error.
    c.send("<message to='bob@example.com'><body>x</body></message>");
    assert!(c.recv().contains(&stream_error("not-authorized")));
    assert!(c
        .events()
        .iter()
        .all(|e| !matches!(e, C2sEvent::Stanza(..))));
}

#[test]
fn legacy_session_gets_empty_result() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    assert_eq!(c.recv(), "<iq type='result' id='s1'/>");
    assert!(c.events().is_empty());
}

// ---- bound session ----

#[test]
fn spoofed_from_is_replaced() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let jid = login(&mut c, Some("r"));
    c.send("<message from='mallory@evil.com/x' to='bob@example.com' type='chat'><body>hi</body></message>  <presence/>");
    let ev = c.events();
    let stanzas = stanzas_of(&ev);
    assert_eq!(stanzas.len(), 2, "{ev:?}");
    assert_eq!(stanzas[0].from().as_deref(), Some(jid.as_str()));
    assert_eq!(stanzas[0].to().as_deref(), Some("bob@example.com"));
    assert!(!String::from_utf8_lossy(stanzas[0].bytes()).contains("mallory"));
    assert_eq!(stanzas[1].from().as_deref(), Some(jid.as_str()));
}

/// The stanzas among `ev`, in order.
fn stanzas_of(ev: &[C2sEvent]) -> Vec<&Stanza> {
    ev.iter()
        .filter_map(|e| match e {
            C2sEvent::Stanza(s, _) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn non_stanza_elements_pass_or_fail() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Stanza(s, _)] if s.name() == "enable" && s.from().is_none()),
        "{ev:?}"
    );
    c.send("<foo/>");
    assert!(c.recv().contains(&stream_error("unsupported-stanza-type")));
}

/// Stanzas written with a prefix bound to `jabber:client` are stanzas (RFC 6120 §4.8.3): routed
/// as the unprefixed ones, with `from` stamped; a prefix bound to another namespace is not.
#[test]
fn prefixed_stanzas_in_the_content_namespace_are_stanzas() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let jid = login(&mut c, Some("r"));
    c.send(
        "<c:message xmlns:c='jabber:client' to='bob@example.com' type='chat' id='m1' \
         from='mallory@example.com'><c:body>prefixed</c:body></c:message>\
         <c:iq xmlns:c='jabber:client' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></c:iq>",
    );
    let ev = c.events();
    let stanzas = stanzas_of(&ev);
    assert_eq!(stanzas.len(), 2, "{ev:?}");
    let (m, iq) = (stanzas[0], stanzas[1]);
    assert_eq!(m.kind(), StanzaKind::Message);
    assert_eq!(m.ty(), StanzaType::Chat);
    assert_eq!(m.from().as_deref(), Some(jid.as_str()));
    assert_eq!(m.to().as_deref(), Some("bob@example.com"));
    let body = m.tree().expect("tree");
    let body = body.get_child("body", ns::CLIENT).expect("body");
    assert_eq!(body.text(), "prefixed");
    assert_eq!(iq.kind(), StanzaKind::Iq);
    assert_eq!(iq.id().as_deref(), Some("i1"));
    // Bound to another namespace: not a stanza (the route refuses it as any foreign element).
    c.send("<s:message xmlns:s='jabber:server' to='bob@example.com'/>");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Stanza(s, None)] if s.kind() == StanzaKind::Other),
        "{ev:?}"
    );
}

#[test]
fn client_close_is_answered() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    c.send(" \n </stream:stream>");
    assert_eq!(c.recv(), "</stream:stream>");
    assert_eq!(closed_with(&mut c), Some(CloseReason::ClientClosed));
    assert!(c.c2s.is_closed());
    assert_eq!(c.c2s.next_timeout(), None);
}

#[test]
fn one_byte_at_a_time() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.byte_at_a_time = true;
    let jid = login(&mut c, None);
    c.send("<message to='bob@example.com' from='x@y/z'><body>a&amp;b</body></message>");
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Stanza(s, _)] if s.from().as_deref() == Some(jid.as_str())),
        "{ev:?}"
    );
}

#[test]
fn one_byte_at_a_time_over_tls() {
    let mut c = Client::new(config(TlsMode::Starttls), REMOTE);
    c.byte_at_a_time = true;
    c.open();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c.recv().contains("<proceed"));
    c.handshake(client_config(false));
    let out = scram_sha256_after_open(&mut c);
    assert!(out.contains("<success"), "{out}");
}

fn scram_sha256_after_open(c: &mut Client) -> String {
    c.open();
    scram_sha256(c, "alice", "s3cret", Some(&secrets("s3cret")), true)
}

// ---- outbound bound and timeouts ----

#[test]
fn slow_reader_is_closed() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    let stanza = format!(
        "<message to='alice@example.com/r'><body>{}</body></message>",
        "x".repeat(1000)
    );
    let mut delivered = 0;
    while c.c2s.deliver(stanza.as_bytes()).is_ok() {
        delivered += 1;
        assert!(delivered < 100, "the bound was never hit");
    }
    assert_eq!(delivered, 8 * 1024 / stanza.len());
    assert!(c.c2s.is_closed());
    let out = c.recv();
    assert!(out.ends_with("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>slow reader</text></stream:error></stream:stream>"), "{out}");
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::PolicyViolation
        ))
    );
    assert_eq!(c.c2s.deliver(b"<message/>"), Err(Overflow));
}

/// A routed chat message with `body`, as the route hands it to the recipient's stream.
fn routed(body: &str) -> crate::hooks::Acc {
    crate::testing::routed_chat(body)
}

#[test]
fn slow_reader_cut_off_writes_the_error_next_and_hands_back_every_unwritten_stanza() {
    // Bound 8 KiB; each stanza ~1.1 KiB.
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    let pad = "x".repeat(1000);
    let mut accepted = 0;
    let mut refused = Vec::new();
    // The driver takes a first chunk, then the client stops reading.
    for i in 0..3 {
        c.c2s.deliver_routed(routed(&format!("{i}:{pad}"))).unwrap();
        accepted += 1;
    }
    let first = c.recv();
    for i in 3..100 {
        match c.c2s.deliver_routed(routed(&format!("{i}:{pad}"))) {
            Ok(()) => accepted += 1,
            Err(acc) => refused.push(acc),
        }
    }
    assert!(c.c2s.is_closed());
    // After the cut-off the stream takes nothing more, and hands it back.
    assert_eq!(refused.len(), 100 - accepted);
    // The stream error comes right away: nothing queued is written before it.
    let rest = c.recv();
    assert!(
        rest.starts_with("<stream:error><policy-violation"),
        "{rest}"
    );
    assert!(rest.ends_with("</stream:stream>"));
    let unsent = c.c2s.take_unsent();
    let wire = first.matches("<message").count();
    assert_eq!(wire, 3);
    assert_eq!(unsent.len(), accepted - wire);
    // Every stanza is on the wire, or handed back, once and in order.
    let mut seen: Vec<usize> = (0..wire).collect();
    for acc in unsent.iter().chain(&refused) {
        let text = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
        let n = text
            .split("<body>")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        seen.push(n.parse().unwrap());
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::PolicyViolation
        ))
    );
}

#[test]
fn routed_stanzas_are_handed_out_a_chunk_at_a_time() {
    let mut cfg = config(TlsMode::None);
    cfg.outbound_queue_bytes = 1 << 20;
    let mut c = Client::new(cfg, REMOTE);
    login(&mut c, Some("r"));
    let pad = "y".repeat(1000);
    for i in 0..200 {
        c.c2s.deliver_routed(routed(&format!("{i}:{pad}"))).unwrap();
    }
    let mut wire = Vec::new();
    c.c2s.take_transmit(&mut wire);
    assert!(
        wire.len() >= 64 * 1024 && wire.len() < 64 * 1024 + 2048,
        "{}",
        wire.len()
    );
    assert!(c.c2s.pending_transmit() > 0);
    // A peer that goes away leaves the rest for the session manager.
    c.c2s.peer_closed();
    let on_wire = String::from_utf8(wire)
        .unwrap()
        .matches("</message>")
        .count();
    assert_eq!(c.c2s.take_unsent().len() + on_wire, 200);
}

#[test]
fn taking_output_makes_room() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    let stanza = vec![b'x'; 3000];
    for _ in 0..10 {
        c.c2s.deliver(&stanza).unwrap();
        c.c2s.deliver(&stanza).unwrap();
        assert_eq!(c.c2s.pending_transmit(), 6000);
        assert_eq!(c.recv().len(), 6000);
    }
    assert!(!c.c2s.is_closed());
}

#[test]
fn auth_timeout() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    assert_eq!(
        c.c2s.next_timeout(),
        Some(c.start + Duration::from_secs(30))
    );
    c.open();
    c.advance(Duration::from_secs(29));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.is_closed());
    c.send(" ");
    c.advance(Duration::from_secs(1));
    c.c2s.handle_timeout(c.now);
    assert!(c.c2s.is_closed(), "input does not extend the auth timeout");
    assert!(c.recv().contains(&stream_error("connection-timeout")));
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::ConnectionTimeout
        ))
    );
}

#[test]
fn idle_timeout() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    c.advance(Duration::from_secs(500));
    c.send(" ");
    assert_eq!(c.c2s.next_timeout(), Some(c.now + Duration::from_secs(600)));
    c.advance(Duration::from_secs(599));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.is_closed(), "whitespace keepalive counted as input");
    c.advance(Duration::from_secs(1));
    c.c2s.handle_timeout(c.now);
    assert!(c.recv().contains(&stream_error("connection-timeout")));
    assert!(c.c2s.is_closed());
}

#[test]
fn input_while_waiting_is_bounded() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let first = B64.encode("n,,n=alice,r=abc");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
    ));
    assert!(matches!(&c.events()[..], [C2sEvent::NeedSecrets { .. }]));
    let junk = " ".repeat(1024);
    for _ in 0..200 {
        c.send(&junk);
        if c.c2s.is_closed() {
            break;
        }
    }
    assert!(c.c2s.is_closed());
    assert!(c.recv().contains(&stream_error("policy-violation")));
}

#[test]
fn server_close_and_peer_gone() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    c.c2s
        .close(Some(StreamErrorCondition::Conflict), Some("replaced"));
    let out = c.recv();
    assert!(
        out.contains(&stream_error("conflict")) && out.contains(">replaced</text>"),
        "{out}"
    );
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(StreamErrorCondition::Conflict))
    );
    c.c2s.close(None, None);
    c.c2s.peer_closed();
    assert!(c.events().is_empty(), "Closed is emitted once");

    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    c.c2s.peer_closed();
    assert_eq!(closed_with(&mut c), Some(CloseReason::Disconnected));
}

#[test]
fn idle_session_is_small() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    // Inline size only: heap parts (scanner buffers, JID) are measured by the integrator's bench.
    let size = std::mem::size_of::<C2s>();
    eprintln!("size_of::<C2s>() = {size}");
    assert!(size <= 1024, "{size}");
}

#[test]
fn stanzas_pipelined_after_bind_wait_for_the_result() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    c.events();
    c.open();
    c.send(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>\
         <presence/><message to='bob@example.com'><body>1</body></message>",
    );
    let ev = c.events();
    let [C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    let jid = jid.clone();
    c.c2s.bind_result(Ok(jid.clone()));
    assert!(c.recv().contains("<jid>alice@example.com/r</jid>"));
    let names: Vec<String> = c
        .events()
        .iter()
        .map(|e| match e {
            C2sEvent::Stanza(s, _) => {
                assert_eq!(s.from().as_deref(), Some(jid.as_str()));
                s.name().to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["presence", "message"]);
}

/// Pings and pre-auth registration (im-misc).
mod misc;
/// Routed stanzas kept until the socket took them (no message lost).
mod on_wire;

#[path = "tests/sasl2.rs"]
mod sasl2;
/// XEP-0198 stream management (xep198).
mod sm;

#[test]
fn run_time_domains_are_served_until_removed() {
    let mut cfg = config(TlsMode::None);
    cfg.hosts = vec!["other.org".to_string()];
    let dynamic = crate::shard::DynamicHosts::new("other.org");
    let client = || {
        let mut c = Client::new(cfg.clone(), LOOPBACK);
        c.c2s.set_dynamic_hosts(dynamic.clone());
        c
    };
    // Not served yet.
    let mut c = client();
    c.send(HEADER);
    c.recv();
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(StreamErrorCondition::HostUnknown))
    );
    // Added: a stream to it reaches a session.
    dynamic.insert(HOST);
    let mut c = client();
    assert_eq!(login(&mut c, Some("r")).as_str(), "alice@example.com/r");
    // Removed between authentication and bind: no session starts.
    let mut c = client();
    c.open();
    let out = scram_sha256(&mut c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(out.contains("<success"), "{out}");
    c.open();
    dynamic.remove(HOST);
    c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    let out = c.recv();
    assert!(out.contains(&stream_error("host-gone")), "{out}");
    assert!(!c
        .events()
        .iter()
        .any(|e| matches!(e, C2sEvent::BindRequest { .. })));
    assert!(c.c2s.is_closed());
}
