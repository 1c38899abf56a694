//! A scripted driver for `C2s` with TLS off: it answers every event the way `rt::conn` does, from
//! fixed data (one account, `alice@example.com` with password `s3cret`), and checks the stream's
//! promises after each read.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use petrel::auth::ScramSecrets;
use petrel::c2s::{
    BindError, C2s, C2sConfig, C2sEvent, PeerInfo, ResumeError, SmConfig, SmState, TlsMode,
};
use petrel::hooks::Acc;
use petrel::jid::{FullJid, Jid};
use petrel::shard::ShardId;
use petrel::xml::{Limits, Scanner, Stanza};
use petrel::xmpp::ns;

use crate::Rng;

/// The served domain.
pub const HOST: &str = "example.com";
/// The one account's localpart.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "s3cret";
/// What every stream the server writes starts with (`features::write_header`).
const SERVER_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'";

/// The client's stream header.
pub const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// Small bounds so the fuzzer reaches them: SM buffer, outbound queue, held input.
pub fn config() -> Arc<C2sConfig> {
    static CFG: OnceLock<Arc<C2sConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        Arc::new(C2sConfig {
            hosts: vec![HOST.to_string(), "other.org".to_string()],
            tls_mode: TlsMode::None,
            tls: None,
            tls_cert: None,
            allow_plaintext_on_loopback: true,
            sasl2: true,
            transport_secure: false,
            limits: Limits {
                max_stanza_bytes: 2048,
                max_depth: 8,
                max_attrs: 8,
            },
            outbound_queue_bytes: 4096,
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(10),
            register: true,
            sm: Some(sm_config()),
            post_auth_features: b"<sm xmlns='urn:xmpp:sm:3'/>".to_vec(),
            bind2_features: b"<feature var='urn:xmpp:csi:0'/>".to_vec(),
        })
    })
    .clone()
}

fn sm_config() -> SmConfig {
    SmConfig {
        buffer_max: 8,
        ack_freq: 3,
        resume_timeout: Duration::from_secs(60),
        id_prefix: None,
    }
}

/// Alice's secrets, derived once (PBKDF2 per run would dominate the time).
fn secrets() -> &'static ScramSecrets {
    static S: OnceLock<ScramSecrets> = OnceLock::new();
    S.get_or_init(|| ScramSecrets::derive(PASSWORD, 4096))
}

/// A stanza from the route, delivered to the client when the driver decides so.
fn routed() -> Stanza {
    static S: OnceLock<Stanza> = OnceLock::new();
    S.get_or_init(|| {
        Stanza::parse(
            b"<message from='bob@example.com/x' to='alice@example.com/r' type='chat'><body>hi</body></message>"
                .to_vec(),
        )
        .expect("fixed stanza parses")
    })
    .clone()
}

/// The `<auth/>` element of a PLAIN login as alice.
pub fn plain_auth() -> String {
    let creds = B64.encode(format!("\0{USER}\0{PASSWORD}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")
}

/// One `C2s` and everything the driver knows about it.
pub struct Driver {
    /// The stream under test.
    pub c2s: C2s,
    now: Instant,
    rng: Rng,
    /// Everything the server wrote.
    pub transcript: Vec<u8>,
    /// The `Closed` event came.
    pub closed: bool,
    /// The full JID bound, once `bind_result(Ok)` was given.
    pub bound: Option<FullJid>,
    /// The client sent the right password (PLAIN) at some point.
    authenticated: bool,
    /// During the scripted login every answer is the cooperative one.
    scripted: bool,
}

impl Driver {
    /// A fresh stream from a loopback peer; `seed` drives the driver's choices.
    pub fn new(seed: u8) -> Driver {
        let now = Instant::now();
        let peer = PeerInfo {
            // Loopback, so PLAIN is offered without TLS.
            addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        };
        Driver {
            c2s: C2s::new(config(), peer, now),
            now,
            rng: Rng::new(seed),
            transcript: Vec::new(),
            closed: false,
            bound: None,
            authenticated: false,
            scripted: false,
        }
    }

    /// Logs in as alice with PLAIN and binds resource `r` (stream management enabled too when
    /// `sm`), answering as a healthy server would; panics if the stream does not get there.
    pub fn login(&mut self, sm: bool) {
        self.scripted = true;
        let bind = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                    <resource>r</resource></bind></iq>";
        let enable = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>";
        let mut steps = vec![
            HEADER.to_string(),
            plain_auth(),
            HEADER.to_string(),
            bind.to_string(),
        ];
        if sm {
            steps.push(enable.to_string());
        }
        for step in steps {
            self.c2s.handle_input(step.as_bytes(), self.now);
            self.settle();
        }
        self.scripted = false;
        assert!(
            !self.closed && self.bound.is_some(),
            "scripted login failed: {}",
            String::from_utf8_lossy(&self.transcript)
        );
        assert_eq!(self.c2s.sm().is_some(), sm);
    }

    /// One read from the client, then the driver's answers, timers and output.
    pub fn input(&mut self, bytes: &[u8]) {
        self.c2s.handle_input(bytes, self.now);
        self.settle();
        // Now and then time passes: pings, the idle and auth timeouts.
        if self.rng.next() % 16 == 0 {
            self.now += Duration::from_secs(u64::from(self.rng.next() % 80));
            if self.c2s.next_timeout().is_some_and(|t| t <= self.now) {
                self.c2s.handle_timeout(self.now);
                self.settle();
            }
        }
    }

    /// Answers events until there are none; collects the output.
    pub fn settle(&mut self) {
        while let Some(ev) = self.c2s.poll_event() {
            self.answer(ev);
        }
        self.c2s.take_transmit(&mut self.transcript);
    }

    fn answer(&mut self, ev: C2sEvent) {
        assert!(!self.closed, "event after Closed: {ev:?}");
        match ev {
            C2sEvent::NeedSecrets { username } => match self.choice(8) {
                0 => self.c2s.auth_unavailable(),
                _ => self
                    .c2s
                    .provide_secrets((username == USER).then(|| secrets().clone())),
            },
            C2sEvent::VerifyPlain { username, password } => {
                let ok = username == USER && password == PASSWORD;
                self.authenticated |= ok;
                if self.choice(8) == 0 {
                    self.c2s.auth_unavailable()
                } else {
                    self.c2s.plain_verified(ok)
                }
            }
            C2sEvent::Authenticated { jid } => {
                // The security promise: only the right password authenticates, only as its owner.
                // (SCRAM cannot succeed here: the fuzzer cannot compute proofs for a random nonce.)
                assert!(self.authenticated, "authenticated without the password");
                assert_eq!(jid.as_str(), "alice@example.com");
            }
            C2sEvent::BindRequest { jid } => {
                assert_eq!(jid.bare().as_str(), "alice@example.com");
                let r = match self.choice(8) {
                    0 => Err(BindError::Conflict),
                    1 => Err(BindError::ResourceConstraint),
                    _ => Ok(jid.clone()),
                };
                if r.is_ok() {
                    self.bound = Some(jid);
                }
                self.c2s.bind_result(r);
            }
            C2sEvent::SmEnabled { .. } => {}
            // A Bind 2 bind is told to the modules (with its requests, maybe none) right after
            // the session is bound.
            C2sEvent::Bind2Enable { .. } => {
                assert!(self.bound.is_some(), "Bind 2 requests before binding");
            }
            C2sEvent::ResumeRequest { jid, previd, h } => {
                assert_eq!(jid.as_str(), "alice@example.com");
                match self.choice(4) {
                    0 => {
                        let full = jid.with_resource("resumed").expect("valid resource");
                        let mut sm = SmState::new(sm_config(), Some(previd));
                        // A detached session with two stanzas in flight, acked up to `h` when it fits.
                        for _ in 0..2 {
                            let _ = sm.outbound(petrel::c2s::Unacked::Local(
                                b"<iq type='get' id='p'/>".to_vec(),
                            ));
                        }
                        let _ = sm.ack(h);
                        self.bound = Some(full.clone());
                        self.c2s.resumed(full, Box::new(sm));
                    }
                    1 => self
                        .c2s
                        .resume_failed(ResumeError::HandledCountTooHigh { h, sent: 0 }),
                    _ => self.c2s.resume_failed(ResumeError::ItemNotFound),
                }
            }
            C2sEvent::Stanza(s, seq) => {
                let bound = self.bound.as_ref().expect("stanza from an unbound stream");
                if s.kind() != petrel::xml::StanzaKind::Other {
                    // RFC 6120 §8.1.2.1: the server stamps `from` with the session's full JID.
                    assert_eq!(s.from().as_deref(), Some(bound.as_str()));
                } else {
                    assert!(seq.is_none(), "XEP-0198 counts stanzas only");
                }
                // The route handles the stanza now or later (XEP-0198 acks wait for it); a driver
                // never reports one twice, but in any order.
                if let Some(seq) = seq {
                    if self.rng.next() % 4 != 0 {
                        self.c2s.sm_handled(&[seq], std::time::Instant::now());
                    }
                }
                // The route answers some stanzas with a stanza for the client.
                if self.rng.next() % 2 == 0 {
                    self.deliver();
                }
            }
            C2sEvent::PreAuthIq(iq) => {
                assert!(self.bound.is_none());
                let id = iq.id().map(|i| i.into_owned()).unwrap_or_default();
                let mut reply = Vec::new();
                reply.extend_from_slice(b"<iq type='result' id='");
                petrel::xml::escape::escape_attr_into(&id, &mut reply);
                reply.extend_from_slice(b"'/>");
                self.c2s.preauth_reply(&reply);
            }
            C2sEvent::Closed { .. } => self.closed = true,
            // The real driver tells the login throttle; nothing to answer.
            C2sEvent::AuthFailed { .. } => assert!(self.bound.is_none()),
        }
    }

    /// A driver decision out of `n` (0 is the unusual answer); always `n - 1` while scripted.
    fn choice(&mut self, n: u32) -> u32 {
        if self.scripted {
            n - 1
        } else {
            self.rng.next() % n
        }
    }

    /// A stanza from the route for the bound client (counted by stream management when on).
    fn deliver(&mut self) {
        let stanza = routed();
        let from = Jid::parse("bob@example.com/x").expect("valid JID");
        let to = Jid::parse("alice@example.com/r").expect("valid JID");
        let acc = Acc::new(stanza, from, to, ShardId(0));
        // Err: the stream is closing (slow reader, SM buffer full); the route would re-route it.
        let _ = self.c2s.deliver_routed(acc);
    }

    /// A clean close by the client, then the end checks: the output is well-formed XML streams
    /// (one per restart, each starting with the server's header).
    pub fn finish(mut self) {
        if !self.closed {
            self.c2s.peer_closed();
            self.settle();
        }
        assert!(self.closed, "peer_closed emits Closed");
        assert!(self.c2s.poll_event().is_none());
        check_output(&self.transcript);
    }
}

/// Every stream in the server's output scans without error (escaping holds whatever the input).
fn check_output(out: &[u8]) {
    let starts: Vec<usize> = memchr::memmem::find_iter(out, SERVER_HEADER).collect();
    assert!(
        starts.first().is_none_or(|&s| s == 0),
        "output before the header"
    );
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(out.len());
        let mut sc = Scanner::new(
            Limits {
                max_stanza_bytes: 1 << 20,
                max_depth: 64,
                max_attrs: 64,
            },
            ns::CLIENT,
        );
        sc.feed(&out[s..end]);
        loop {
            match sc.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!(
                    "server output is not well-formed ({e}): {}",
                    String::from_utf8_lossy(&out[s..end])
                ),
            }
        }
    }
}
