//! Server-to-client pings and registration before authentication, on the fake clock.

use super::*;

fn ping_config(interval: u64, timeout: u64) -> C2sConfig {
    C2sConfig {
        ping_interval: Duration::from_secs(interval),
        ping_timeout: Duration::from_secs(timeout),
        ..config(TlsMode::None)
    }
}

/// The id of the ping in `out`.
fn ping_id(out: &str) -> String {
    assert!(out.contains("<ping xmlns='urn:xmpp:ping'/>"), "{out}");
    let at = out.find("id='").unwrap() + 4;
    out[at..at + out[at..].find('\'').unwrap()].to_string()
}

#[test]
fn idle_client_is_pinged_and_its_answer_consumed() {
    let mut c = Client::new(ping_config(60, 10), REMOTE);
    let jid = login(&mut c, Some("r"));
    assert_eq!(c.c2s.next_timeout(), Some(c.now + Duration::from_secs(60)));
    c.advance(Duration::from_secs(59));
    c.c2s.handle_timeout(c.now);
    assert!(c.recv().is_empty(), "not idle long enough");
    c.advance(Duration::from_secs(1));
    c.c2s.handle_timeout(c.now);
    let out = c.recv();
    assert!(out.starts_with("<iq type='get' id='ping-"), "{out}");
    assert!(
        out.contains(&format!("from='example.com' to='{jid}'")),
        "{out}"
    );
    let id = ping_id(&out);
    assert_eq!(c.c2s.next_timeout(), Some(c.now + Duration::from_secs(10)));
    c.advance(Duration::from_secs(3));
    c.send(&format!("<iq type='result' id='{id}' to='example.com'/>"));
    assert!(c.events().is_empty(), "the answer is consumed, not routed");
    // Answered: the next ping is an interval after that input.
    assert_eq!(c.c2s.next_timeout(), Some(c.now + Duration::from_secs(60)));
    c.advance(Duration::from_secs(10));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.is_closed());
    // Other IQ results still reach the route.
    c.send("<iq type='result' id='other'/>");
    assert!(matches!(&c.events()[..], [C2sEvent::Stanza(..)]));
}

#[test]
fn dead_peer_is_closed_after_ping_timeout() {
    let mut c = Client::new(ping_config(30, 5), REMOTE);
    login(&mut c, Some("r"));
    c.advance(Duration::from_secs(30));
    c.c2s.handle_timeout(c.now);
    ping_id(&c.recv());
    c.advance(Duration::from_secs(4));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.is_closed());
    c.advance(Duration::from_secs(1));
    c.c2s.handle_timeout(c.now);
    assert!(c.recv().contains(&stream_error("connection-timeout")));
    assert!(c.c2s.is_closed());
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::ConnectionTimeout
        ))
    );
}

#[test]
fn any_input_answers_a_ping() {
    let mut c = Client::new(ping_config(30, 5), REMOTE);
    login(&mut c, Some("r"));
    c.advance(Duration::from_secs(30));
    c.c2s.handle_timeout(c.now);
    ping_id(&c.recv());
    c.advance(Duration::from_secs(2));
    c.send(" ");
    c.advance(Duration::from_secs(3));
    c.c2s.handle_timeout(c.now);
    assert!(!c.c2s.is_closed(), "whitespace proves the peer alive");
    assert!(c.recv().is_empty());
}

#[test]
fn no_pings_before_bind_or_when_off() {
    let mut c = Client::new(ping_config(30, 5), REMOTE);
    c.open();
    // Only the auth timeout is pending before binding.
    assert_eq!(
        c.c2s.next_timeout(),
        Some(c.start + Duration::from_secs(30))
    );
    let mut off = Client::new(ping_config(0, 5), REMOTE);
    login(&mut off, Some("r"));
    assert_eq!(
        off.c2s.next_timeout(),
        Some(off.now + Duration::from_secs(600))
    );
}

fn register_config(allow_loopback: bool) -> C2sConfig {
    C2sConfig {
        register: true,
        allow_plaintext_on_loopback: allow_loopback,
        transport_secure: false,
        ..config(TlsMode::Starttls)
    }
}

const REGISTER_SET: &str = "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>\
     <username>bob</username><password>long enough</password></query></iq>";

#[test]
fn registration_before_auth_goes_to_the_driver() {
    let mut c = Client::new(register_config(true), LOOPBACK);
    let features = c.open();
    assert!(
        features.contains("<register xmlns='http://jabber.org/features/iq-register'/>"),
        "{features}"
    );
    c.send(REGISTER_SET);
    assert!(c.recv().is_empty());
    let ev = c.events();
    let [C2sEvent::PreAuthIq(s)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(s.id().as_deref(), Some("reg1"));
    // Input waits for the answer.
    c.send("<iq type='get' id='reg2'><query xmlns='jabber:iq:register'/></iq>");
    assert!(c.events().is_empty());
    c.c2s.preauth_reply(b"<iq type='result' id='reg1'/>");
    assert_eq!(c.recv(), "<iq type='result' id='reg1'/>");
    assert!(
        matches!(&c.events()[..], [C2sEvent::PreAuthIq(s)] if s.id().as_deref() == Some("reg2"))
    );
}

#[test]
fn registration_needs_tls_off_loopback() {
    let mut c = Client::new(register_config(true), REMOTE);
    let features = c.open();
    assert!(!features.contains("iq-register"), "{features}");
    c.send(REGISTER_SET);
    let out = c.recv();
    assert!(
        out.contains("<iq type='error' id='reg1'>") && out.contains("<policy-violation"),
        "{out}"
    );
    assert!(c.events().is_empty(), "the password never left the c2s");
    assert!(!c.c2s.is_closed());
    // After STARTTLS it is offered and accepted.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c.recv().contains("<proceed"));
    c.handshake(client_config(false));
    let features = c.open();
    assert!(features.contains("iq-register"), "{features}");
    c.send(REGISTER_SET);
    assert!(matches!(&c.events()[..], [C2sEvent::PreAuthIq(_)]));
}

#[test]
fn registration_off_keeps_pre_auth_strict() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let features = c.open();
    assert!(!features.contains("iq-register"));
    c.send(REGISTER_SET);
    assert!(c.recv().contains(&stream_error("not-authorized")));
    assert!(c.c2s.is_closed());
    // On: other stanzas before auth are still refused.
    let mut c = Client::new(register_config(true), LOOPBACK);
    c.open();
    c.send("<message to='x@example.com'><body>hi</body></message>");
    assert!(c.recv().contains(&stream_error("not-authorized")));
}

#[test]
fn a_stream_without_to_or_that_starts_with_junk_names_none_of_our_domains() {
    // The error still opens our stream (RFC 6120 §4.9.1.2) but without `from`: it named the
    // first configured host, which a prober should not learn.
    for first in [
        HEADER.replace(" to='example.com'", ""),
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_owned(),
    ] {
        let mut c = Client::new(config(TlsMode::None), REMOTE);
        c.send(&first);
        let out = c.recv();
        assert!(out.contains("<stream:error>"), "{out}");
        assert!(!out.contains("example.com"), "{out}");
    }
}
