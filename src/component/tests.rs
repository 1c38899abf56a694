//! The component stream without sockets: bytes in, bytes and events out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::xml::Limits;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' to='echo.localhost'>";

fn cfg() -> Arc<ComponentConfig> {
    cfg_ping(Duration::from_secs(60))
}

fn cfg_ping(ping_interval: Duration) -> Arc<ComponentConfig> {
    let mut secrets = HashMap::default();
    secrets.insert("echo.localhost".to_owned(), "s3cret".to_owned());
    Arc::new(ComponentConfig {
        secrets,
        limits: Limits::default(),
        outbound_queue_bytes: 4096,
        auth_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(600),
        ping_interval,
        ping_timeout: Duration::from_secs(30),
        server: "localhost".to_owned(),
    })
}

fn out(c: &mut Component) -> String {
    let mut v = Vec::new();
    c.take_transmit(&mut v);
    String::from_utf8(v).unwrap()
}

fn events(c: &mut Component) -> Vec<ComponentEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn closed_with(c: &mut Component, cond: StreamErrorCondition) {
    let ev = events(c);
    assert!(
        matches!(ev.last(), Some(ComponentEvent::Closed { reason: CloseReason::StreamError(x) }) if *x == cond),
        "{ev:?}"
    );
    assert!(c.is_closed());
}

/// A stream past its header, with the server's answer read.
fn opened(now: Instant) -> Component {
    opened_with(cfg(), now)
}

fn opened_with(cfg: Arc<ComponentConfig>, now: Instant) -> Component {
    let mut c = Component::new(cfg, now);
    c.handle_input(HEADER.as_bytes(), now);
    let header = out(&mut c);
    assert!(
        header.contains("xmlns='jabber:component:accept'"),
        "{header}"
    );
    assert!(header.contains("from='echo.localhost'"), "{header}");
    assert!(
        header.contains(&format!("id='{}'", c.stream_id())),
        "{header}"
    );
    c
}

/// A stream whose handshake and route claim succeeded.
fn ready(now: Instant) -> Component {
    ready_with(cfg(), now)
}

fn ready_with(cfg: Arc<ComponentConfig>, now: Instant) -> Component {
    let mut c = opened_with(cfg, now);
    let hs = handshake_digest(c.stream_id(), "s3cret");
    c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
    let ev = events(&mut c);
    assert!(
        matches!(&ev[..], [ComponentEvent::Authenticated { domain }] if domain == "echo.localhost"),
        "{ev:?}"
    );
    assert_eq!(out(&mut c), "");
    c.route_result(Ok(()));
    assert_eq!(out(&mut c), "<handshake/>");
    assert!(c.is_ready());
    c
}

#[test]
fn digest_is_hex_sha1_of_id_and_secret() {
    // SHA-1("3BF96D32secret"), computed independently (Python's hashlib).
    assert_eq!(
        handshake_digest("3BF96D32", "secret"),
        "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
    );
    assert!(stream::handshake_matches(
        "id",
        "pw",
        &handshake_digest("id", "pw").to_ascii_uppercase()
    ));
    assert!(!stream::handshake_matches("id", "pw", "00"));
    assert!(!stream::handshake_matches("id", "pw", ""));
}

#[test]
fn handshake_success_then_stanzas() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(
        b"<message from='echo.localhost' to='alice@localhost' xmlns='jabber:component:accept'><body>hi</body></message>",
        now,
    );
    let ev = events(&mut c);
    let [ComponentEvent::Stanza(s)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(s.to().as_deref(), Some("alice@localhost"));
    // Rewritten to read as a client stanza: no component namespace left.
    assert!(!String::from_utf8_lossy(s.bytes()).contains("component"));
    assert_eq!(s.tree().unwrap().ns, crate::xmpp::ns::CLIENT);
    c.deliver(b"<message to='echo.localhost'/>").unwrap();
    assert_eq!(out(&mut c), "<message to='echo.localhost'/>");
}

#[test]
fn jids_at_the_domain_may_send() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(
        b"<presence from='bot@echo.localhost/r' to='alice@localhost'/><iq type='get' id='1' from='echo.localhost/x' to='localhost'/>",
        now,
    );
    assert_eq!(events(&mut c).len(), 2);
    assert!(!c.is_closed());
}

#[test]
fn unknown_domain_is_host_unknown() {
    let now = Instant::now();
    let mut c = Component::new(cfg(), now);
    c.handle_input(
        HEADER
            .replace("echo.localhost", "other.localhost")
            .as_bytes(),
        now,
    );
    let o = out(&mut c);
    assert!(o.contains("<host-unknown"), "{o}");
    assert!(o.ends_with("</stream:stream>"), "{o}");
    closed_with(&mut c, StreamErrorCondition::HostUnknown);
}

/// The header's `to` names the domain as a JID would (RFC 7622 §3.2): any case, a trailing dot,
/// an A-label of an internationalized domain all name the configured one.
#[test]
fn header_to_is_prepared_as_a_domain() {
    let now = Instant::now();
    let mut secrets = HashMap::default();
    secrets.insert("ëcho.localhost".to_owned(), "s3cret".to_owned());
    let idn = Arc::new(ComponentConfig {
        secrets,
        ..(*cfg()).clone()
    });
    let cases = [
        (cfg(), "echo.localhost.", "echo.localhost"),
        (cfg(), "ECHO.Localhost", "echo.localhost"),
        (idn.clone(), "ËCHO.localhost", "ëcho.localhost"),
        (idn.clone(), "xn--cho-ima.localhost", "ëcho.localhost"),
    ];
    for (cfg, to, domain) in cases {
        let mut c = Component::new(cfg, now);
        c.handle_input(HEADER.replace("echo.localhost", to).as_bytes(), now);
        let header = out(&mut c);
        assert!(
            header.contains(&format!("from='{domain}'")),
            "{to}: {header}"
        );
        assert_eq!(c.domain(), Some(domain), "{to}");
        let hs = handshake_digest(c.stream_id(), "s3cret");
        c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [ComponentEvent::Authenticated { domain: d }] if d == domain),
            "{to}: {ev:?}"
        );
    }
}

#[test]
fn missing_to_is_host_unknown() {
    let now = Instant::now();
    let mut c = Component::new(cfg(), now);
    c.handle_input(HEADER.replace(" to='echo.localhost'", "").as_bytes(), now);
    closed_with(&mut c, StreamErrorCondition::HostUnknown);
}

#[test]
fn client_namespace_is_refused() {
    let now = Instant::now();
    let mut c = Component::new(cfg(), now);
    c.handle_input(
        HEADER
            .replace("jabber:component:accept", "jabber:client")
            .as_bytes(),
        now,
    );
    assert!(out(&mut c).contains("<invalid-namespace"));
    assert!(c.is_closed());
}

#[test]
fn wrong_secret_is_not_authorized() {
    let now = Instant::now();
    let mut c = opened(now);
    let hs = handshake_digest(c.stream_id(), "wrong");
    c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
    // The driver learns of it (to count it against the address); the answer waits.
    let ev = events(&mut c);
    assert!(
        matches!(&ev[..], [ComponentEvent::HandshakeFailed { domain }] if domain == "echo.localhost"),
        "{ev:?}"
    );
    assert_eq!(out(&mut c), "");
    assert!(!c.is_closed());
    // Another guess meanwhile is not read.
    let right = handshake_digest(c.stream_id(), "s3cret");
    c.handle_input(format!("<handshake>{right}</handshake>").as_bytes(), now);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.next_timeout(), Some(now + HANDSHAKE_FAIL_DELAY));
    c.handle_timeout(now + HANDSHAKE_FAIL_DELAY - Duration::from_millis(1));
    assert!(!c.is_closed());
    c.handle_timeout(now + HANDSHAKE_FAIL_DELAY);
    assert!(out(&mut c).contains("<not-authorized"));
    closed_with(&mut c, StreamErrorCondition::NotAuthorized);

    // A banned address is told at once.
    let mut c = opened(now);
    c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
    events(&mut c);
    c.banned(Duration::from_secs(60));
    let text = out(&mut c);
    assert!(text.contains("<policy-violation"), "{text}");
    assert!(text.contains("retry in 60 s"), "{text}");
    closed_with(&mut c, StreamErrorCondition::PolicyViolation);
}

#[test]
fn stanza_before_handshake_is_not_authorized() {
    let now = Instant::now();
    let mut c = opened(now);
    c.handle_input(
        b"<message from='echo.localhost' to='alice@localhost'/>",
        now,
    );
    closed_with(&mut c, StreamErrorCondition::NotAuthorized);
}

#[test]
fn input_waits_for_the_route_claim() {
    let now = Instant::now();
    let mut c = opened(now);
    let hs = handshake_digest(c.stream_id(), "s3cret");
    c.handle_input(
        format!("<handshake>{hs}</handshake><message from='echo.localhost' to='a@localhost'/>")
            .as_bytes(),
        now,
    );
    c.handle_input(b"<message from='echo.localhost' to='b@localhost'/>", now);
    assert!(matches!(
        &events(&mut c)[..],
        [ComponentEvent::Authenticated { .. }]
    ));
    c.route_result(Ok(()));
    assert_eq!(out(&mut c), "<handshake/>");
    let tos: Vec<String> = events(&mut c)
        .into_iter()
        .map(|e| match e {
            ComponentEvent::Stanza(s) => s.to().unwrap().into_owned(),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(tos, ["a@localhost", "b@localhost"]);
}

#[test]
fn route_conflict_closes_with_conflict() {
    let now = Instant::now();
    let mut c = opened(now);
    let hs = handshake_digest(c.stream_id(), "s3cret");
    c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
    events(&mut c);
    c.route_result(Err(RouteConflict));
    assert!(out(&mut c).contains("<conflict"));
    closed_with(&mut c, StreamErrorCondition::Conflict);
}

#[test]
fn spoofed_from_is_invalid_from() {
    for from in ["alice@localhost", "echo.localhost.evil", "", "@@"] {
        let now = Instant::now();
        let mut c = ready(now);
        c.handle_input(
            format!("<message from='{from}' to='alice@localhost'/>").as_bytes(),
            now,
        );
        closed_with(&mut c, StreamErrorCondition::InvalidFrom);
    }
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(b"<message to='alice@localhost'/>", now);
    closed_with(&mut c, StreamErrorCondition::InvalidFrom);
}

#[test]
fn missing_to_is_improper_addressing() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(b"<message from='echo.localhost'/>", now);
    assert!(out(&mut c).contains("<improper-addressing"));
    closed_with(&mut c, StreamErrorCondition::ImproperAddressing);
}

#[test]
fn restricted_xml_and_size_limits() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(b"<!-- no comments --><message/>", now);
    closed_with(&mut c, StreamErrorCondition::RestrictedXml);

    let mut c = ready(now);
    let big = format!(
        "<message from='echo.localhost' to='a@localhost'><body>{}</body></message>",
        "x".repeat(70_000)
    );
    c.handle_input(big.as_bytes(), now);
    closed_with(&mut c, StreamErrorCondition::PolicyViolation);
}

#[test]
fn unknown_element_is_unsupported_stanza_type() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(b"<foo from='echo.localhost' to='a@localhost'/>", now);
    closed_with(&mut c, StreamErrorCondition::UnsupportedStanzaType);
}

#[test]
fn slow_reader_is_policy_violation() {
    let now = Instant::now();
    let mut c = ready(now);
    let st = vec![b'x'; 3000];
    c.deliver(&st).unwrap();
    assert_eq!(c.room(), 4096 - 3000);
    assert_eq!(c.deliver(&st), Err(Overflow));
    closed_with(&mut c, StreamErrorCondition::PolicyViolation);
}

#[test]
fn timeouts() {
    let now = Instant::now();
    let mut c = opened(now);
    assert_eq!(c.next_timeout(), Some(now + Duration::from_secs(30)));
    c.handle_timeout(now + Duration::from_secs(31));
    closed_with(&mut c, StreamErrorCondition::ConnectionTimeout);

    let mut c = ready_with(cfg_ping(Duration::ZERO), now);
    assert_eq!(c.next_timeout(), Some(now + Duration::from_secs(600)));
    c.handle_timeout(now + Duration::from_secs(599));
    assert!(!c.is_closed());
    c.handle_timeout(now + Duration::from_secs(601));
    closed_with(&mut c, StreamErrorCondition::ConnectionTimeout);
}

#[test]
fn an_idle_component_is_pinged_and_cut_when_silent() {
    let s = Duration::from_secs;
    let now = Instant::now();
    let mut c = ready(now);
    // No input for ping_interval: a ping goes, from the server to the component's domain.
    assert_eq!(c.next_timeout(), Some(now + s(60)));
    c.handle_timeout(now + s(60));
    let ping = out(&mut c);
    assert!(ping.contains("<ping xmlns='urn:xmpp:ping'/>"), "{ping}");
    assert!(
        ping.contains("from='localhost' to='echo.localhost'"),
        "{ping}"
    );
    assert!(!c.is_closed());
    // Its answer keeps the stream (and is routed nowhere); the next ping is due an interval later.
    let id = "petrel-component-ping";
    c.handle_input(
        format!("<iq type='result' id='{id}' from='echo.localhost' to='localhost'/>").as_bytes(),
        now + s(61),
    );
    assert!(events(&mut c).is_empty());
    assert_eq!(c.next_timeout(), Some(now + s(121)));
    // A receive-only component that answers every ping outlives the idle timeout.
    let mut t = now + s(61);
    for _ in 0..20 {
        t += s(60);
        c.handle_timeout(t);
        assert!(out(&mut c).contains("urn:xmpp:ping"));
        c.handle_input(
            format!("<iq type='error' id='{id}' from='echo.localhost' to='localhost'/>").as_bytes(),
            t + s(1),
        );
        t += s(1);
    }
    assert!(!c.is_closed());
    assert!(events(&mut c).is_empty());
    // A dead peer: no input within ping_timeout after the ping.
    c.handle_timeout(t + s(60));
    assert!(out(&mut c).contains("urn:xmpp:ping"));
    assert_eq!(c.next_timeout(), Some(t + s(90)));
    c.handle_timeout(t + s(89));
    assert!(!c.is_closed());
    c.handle_timeout(t + s(90));
    closed_with(&mut c, StreamErrorCondition::ConnectionTimeout);
}

#[test]
fn peer_close_and_eof() {
    let now = Instant::now();
    let mut c = ready(now);
    c.handle_input(b"</stream:stream>", now);
    assert_eq!(out(&mut c), "</stream:stream>");
    assert!(matches!(
        &events(&mut c)[..],
        [ComponentEvent::Closed {
            reason: CloseReason::PeerClosed
        }]
    ));
    let mut c = ready(now);
    c.peer_closed();
    assert!(matches!(
        &events(&mut c)[..],
        [ComponentEvent::Closed {
            reason: CloseReason::Disconnected
        }]
    ));
}

#[test]
fn stanzas_held_during_the_claim_fit_with_the_handshake() {
    let now = Instant::now();
    let mut c = opened(now);
    let hs = handshake_digest(c.stream_id(), "s3cret");
    c.handle_input(format!("<handshake>{hs}</handshake>").as_bytes(), now);
    events(&mut c);
    // What a driver holds meanwhile: stanzas filling claim_room exactly.
    let room = c.claim_room();
    assert!(room < c.output_bound());
    let stanza = |n: usize| {
        let head = "<message to='bot@echo.localhost'><body>";
        let tail = "</body></message>";
        format!("{head}{}{tail}", "x".repeat(n - head.len() - tail.len()))
    };
    let held = [stanza(1000), stanza(1000), stanza(room - 2000)];
    c.route_result(Ok(()));
    for s in &held {
        assert!(c.deliver(s.as_bytes()).is_ok());
    }
    assert!(
        !c.is_closed(),
        "the last held stanza was cut as a slow reader"
    );
    assert_eq!(out(&mut c).len(), c.output_bound());
}

#[test]
fn debug_output_hides_secrets() {
    let text = format!("{:?}", cfg());
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("echo.localhost"), "{text}");
    let secret = crate::config::ComponentSecret {
        password: "s3cret".to_owned(),
    };
    let text = format!("{secret:?}");
    assert!(!text.contains("s3cret"), "{text}");
}

/// `deliver` says where each stanza ends in the bytes `take_transmit` hands out, counted from the
/// stream's first byte and across calls: what the driver compares with what its socket took.
#[test]
fn delivered_stanzas_are_placed_in_the_bytes_handed_out() {
    let now = Instant::now();
    let mut c = ready(now);
    let first = b"<message to='bot@echo.localhost'><body>1</body></message>";
    let second = b"<message to='bot@echo.localhost'><body>22</body></message>";
    let end1 = c.deliver(first).unwrap();
    let mut a = Vec::new();
    c.take_transmit(&mut a);
    assert!(a.ends_with(first));
    // What earlier calls handed (the handshake answer): before this call's bytes.
    let before = end1 - a.len() as u64;
    assert!(before > 0);
    let end2 = c.deliver(second).unwrap();
    let mut b = Vec::new();
    c.take_transmit(&mut b);
    assert!(b.ends_with(second));
    assert_eq!(end2, before + (a.len() + b.len()) as u64);
}
