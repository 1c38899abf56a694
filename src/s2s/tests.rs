//! Sans-IO tests: an `S2sOut` connected to an `S2sIn` in memory (TLS on both sides), and scripted
//! peers sending raw XML; fake clock, no sockets.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use super::*;
use crate::xml::Limits;
use crate::xmpp::StreamErrorCondition;

mod bad_input;
mod flows;

/// The originating server's domain in every test.
const A: &str = "a.example";
/// The receiving server's domain in every test.
const B: &str = "b.example";

/// A certificate and key for one domain, and the CA that signed it (if any).
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Test PKI: self-signed identities for A and B, CA-signed ones, and the CA (key generation is
/// the slow part: once per test binary).
struct Pki {
    self_signed: [Identity; 2],
    ca_signed: [Identity; 2],
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let self_signed = |domain: &str| {
            let ck = rcgen::generate_simple_self_signed(vec![domain.to_string()]).unwrap();
            Identity {
                chain: vec![ck.cert.der().clone()],
                key: PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
            }
        };
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "petrel test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_signed = |domain: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            Identity {
                chain: vec![cert.der().clone(), ca.der().clone()],
                key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            }
        };
        Pki {
            self_signed: [self_signed(A), self_signed(B)],
            ca_signed: [ca_signed(A), ca_signed(B)],
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
        }
    })
}

/// Which certificates the test servers use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Certs {
    SelfSigned,
    CaSigned,
}

/// The configuration of the server serving `domain`; both servers trust the test CA only.
fn config(domain: &str, certs: Certs) -> S2sConfig {
    let p = pki();
    let set = match certs {
        Certs::SelfSigned => &p.self_signed,
        Certs::CaSigned => &p.ca_signed,
    };
    let id = &set[usize::from(domain == B)];
    let key = || PrivateKeyDer::Pkcs8(id.key.clone_key());
    let mut trust = Trust::empty();
    trust.add_der(&p.ca_der).unwrap();
    let mut cfg = S2sConfig::new(vec![domain.to_string()]).unwrap();
    let served = crate::tls::ServedCert::new(id.chain.clone(), key()).unwrap();
    cfg.tls_server = Some(server_tls_config(served.clone(), false).unwrap());
    cfg.tls_client = Some(client_tls_config(served).unwrap());
    cfg.trust = Arc::new(trust);
    cfg.limits = Limits::default();
    // One secret per domain, the same for each of its streams (as on every shard).
    cfg.dialback_secret = [1 + u8::from(domain == B); 32];
    cfg
}

fn peer() -> SocketAddr {
    "192.0.2.9:5269".parse().unwrap()
}

/// A new outgoing stream from `from` (served with `cfg`) to `to`.
fn out_stream(cfg: S2sConfig, from: &str, to: &str) -> S2sOut {
    S2sOut::new(Arc::new(cfg), from.into(), to.into(), Instant::now())
}

/// An outgoing stream of one server connected in memory to an incoming stream of another.
struct Pair {
    out: S2sOut,
    inn: S2sIn,
    now: Instant,
    out_events: Vec<S2sOutEvent>,
    in_events: Vec<S2sInEvent>,
    /// Deliver the bytes one per `handle_input` call (restartability at any split).
    bytewise: bool,
    /// Bytes `out.take_transmit` handed out so far (what a driver's socket would count).
    out_handed: u64,
}

impl Pair {
    /// `from`'s server connecting to `to`'s server.
    fn new(from_cfg: S2sConfig, to_cfg: S2sConfig, from: &str, to: &str) -> Pair {
        Pair::connect(out_stream(from_cfg, from, to), to_cfg, false)
    }

    /// `out` connected to a new incoming stream of `to_cfg`'s server, pumped until quiet.
    fn connect(out: S2sOut, to_cfg: S2sConfig, bytewise: bool) -> Pair {
        let inn = S2sIn::new(Arc::new(to_cfg), peer(), Instant::now());
        Pair::connect_to(out, inn, bytewise)
    }

    /// `out` connected to the incoming stream `inn`, pumped until quiet.
    fn connect_to(mut out: S2sOut, mut inn: S2sIn, bytewise: bool) -> Pair {
        let now = Instant::now();
        inn.set_wall_clock(UnixTime::now());
        out.set_wall_clock(UnixTime::now());
        let mut p = Pair {
            out,
            inn,
            now,
            out_events: Vec::new(),
            in_events: Vec::new(),
            bytewise,
            out_handed: 0,
        };
        p.pump();
        p
    }

    /// Moves bytes both ways until both sides are quiet; collects events.
    fn pump(&mut self) {
        let step = |bytes: &[u8], bytewise: bool| -> Vec<Vec<u8>> {
            match bytewise {
                true => bytes.iter().map(|b| vec![*b]).collect(),
                false => vec![bytes.to_vec()],
            }
        };
        for _ in 0..100 {
            let mut a = Vec::new();
            self.out.take_transmit(&mut a);
            self.out_handed += a.len() as u64;
            for chunk in step(&a, self.bytewise) {
                self.inn.handle_input(&chunk, self.now);
            }
            let mut b = Vec::new();
            self.inn.take_transmit(&mut b);
            for chunk in step(&b, self.bytewise) {
                self.out.handle_input(&chunk, self.now);
            }
            while let Some(ev) = self.out.poll_event() {
                self.out_events.push(ev);
            }
            while let Some(ev) = self.inn.poll_event() {
                self.in_events.push(ev);
            }
            if a.is_empty() && b.is_empty() {
                return;
            }
        }
        panic!("the streams never went quiet");
    }

    /// The first pending `VerifyRequest` of the incoming side.
    fn take_verify_request(&mut self) -> (String, String, String, String) {
        let pos = self
            .in_events
            .iter()
            .position(|e| matches!(e, S2sInEvent::VerifyRequest { .. }))
            .unwrap_or_else(|| panic!("no VerifyRequest in {:?}", self.in_events));
        match self.in_events.remove(pos) {
            S2sInEvent::VerifyRequest {
                remote,
                local,
                stream_id,
                key,
            } => (remote, local, stream_id, key),
            _ => unreachable!(),
        }
    }
}

/// How the outgoing side ended up, its only event: `Ok` when ready, `Err` when closed.
fn outcome(p: &Pair) -> Result<AuthMethod, S2sOutFailure> {
    match &p.out_events[..] {
        [S2sOutEvent::Ready { method }] => Ok(*method),
        [S2sOutEvent::Closed { reason }] => Err(reason.clone()),
        other => panic!("not one outcome: {other:?}"),
    }
}

/// A scripted peer writing raw plaintext XML to an `S2sIn` and reading its answers.
struct RawIn {
    inn: S2sIn,
    now: Instant,
}

impl RawIn {
    fn new(cfg: S2sConfig) -> RawIn {
        let now = Instant::now();
        RawIn {
            inn: S2sIn::new(Arc::new(cfg), peer(), now),
            now,
        }
    }

    /// Sends `xml`, returns what the stream wrote back.
    fn send(&mut self, xml: &str) -> String {
        self.inn.handle_input(xml.as_bytes(), self.now);
        self.recv()
    }

    fn recv(&mut self) -> String {
        let mut out = Vec::new();
        self.inn.take_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn events(&mut self) -> Vec<S2sInEvent> {
        std::iter::from_fn(|| self.inn.poll_event()).collect()
    }

    /// Opens a stream from A to B, returning B's header and features.
    fn open(&mut self) -> String {
        self.send(&header(A, B))
    }

    fn stream_id(&self) -> String {
        self.inn.stream_id().to_string()
    }
}

/// A stream header from `from` to `to` with the dialback prefix.
fn header(from: &str, to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    )
}

/// The stream error an `S2sIn` closed with.
fn in_closed_with(events: &[S2sInEvent]) -> Option<StreamErrorCondition> {
    events.iter().find_map(|e| match e {
        S2sInEvent::Closed {
            reason: CloseReason::StreamError(c),
        } => Some(*c),
        _ => None,
    })
}

/// A plaintext-allowed configuration (no TLS at all) for scripted peers.
fn plain_config(domain: &str) -> S2sConfig {
    let mut cfg = S2sConfig::new(vec![domain.to_string()]).unwrap();
    cfg.tls_required = false;
    cfg.trust = Arc::new(Trust::empty());
    cfg
}

#[test]
fn dialback_key_matches_xep_0185_example() {
    // XEP-0185 §3's inputs; the value computed independently (Python's hmac and hashlib).
    let key = dialback_key(
        b"s3cr3tf0rd14lb4ck",
        "domain2.tld",
        "domain1.tld",
        "D60000229F",
    );
    assert_eq!(
        key,
        "5e598fae34b90be084fb6a4a8a543ceb33549140bac9d829ef8d734d900616e4"
    );
    let secret = b"s3cr3tf0rd14lb4ck".as_slice();
    let right = (secret, "domain2.tld", "domain1.tld", "D60000229F");
    let wrong = [
        (secret, "domain1.tld", "domain2.tld", "D60000229F"),
        (
            b"other".as_slice(),
            "domain2.tld",
            "domain1.tld",
            "D60000229F",
        ),
        (secret, "domain2.tld", "domain1.tld", "D60000229E"),
    ];
    assert!(key_matches(right.0, right.1, right.2, right.3, &key));
    assert!(!key_matches(right.0, right.1, right.2, right.3, ""));
    for (s, r, o, id) in wrong {
        assert!(!key_matches(s, r, o, id, &key), "{r} {o} {id}");
    }
}

#[test]
fn stanza_error_names_round_trip() {
    use crate::xmpp::StanzaErrorCondition as C;
    for c in [
        C::BadRequest,
        C::ItemNotFound,
        C::RemoteServerNotFound,
        C::UnexpectedRequest,
    ] {
        assert_eq!(C::from_name(c.as_str()), Some(c));
    }
    assert_eq!(C::from_name("nope"), None);
}

#[test]
fn trust_validates_chain_name_and_anchor() {
    let p = pki();
    let mut trust = Trust::empty();
    let now = rustls::pki_types::UnixTime::now();
    let ca_a = &p.ca_signed[0].chain;
    assert!(
        !trust.validates(ca_a, A, now, CertUsage::Server),
        "no anchor"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &p.ca_pem).unwrap();
    trust.add_pem_file(&file).unwrap();
    assert_eq!(trust.len(), 1);
    assert!(trust.validates(ca_a, A, now, CertUsage::Server));
    assert!(trust.validates(ca_a, A, now, CertUsage::Client));
    assert!(
        !trust.validates(ca_a, B, now, CertUsage::Server),
        "wrong name"
    );
    assert!(!trust.validates(&p.self_signed[0].chain, A, now, CertUsage::Server));
    assert!(!trust.validates(&[], A, now, CertUsage::Server));
    assert!(Trust::webpki_roots().len() > 50);
    assert!(trust.add_pem_file(&dir.path().join("missing.pem")).is_err());
}

#[test]
fn debug_never_prints_the_dialback_secret() {
    let mut cfg = plain_config(A);
    cfg.dialback_secret = [0xab; 32];
    let shown = format!("{cfg:?}");
    assert!(shown.contains("<hidden>"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
    assert!(!shown.to_ascii_lowercase().contains("abab"), "{shown}");
}
