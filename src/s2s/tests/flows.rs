//! Whole negotiations between an `S2sOut` and an `S2sIn`: dialback with the authoritative
//! verification over a second pair, SASL EXTERNAL with CA-signed certificates, failures.

use super::*;

const MESSAGE: &str = "<message from='alice@a.example/r' to='bob@b.example' type='chat'>\
                       <body>hi</body></message>";

/// A (self-signed) connects to B; B asks A over its own stream B -> A whether the key is A's.
/// Returns the authenticated pair A -> B (or the one refused when `tamper`) and B -> A.
fn dialback(tamper: bool) -> (Pair, Pair) {
    let mut ab = Pair::new(
        config(A, Certs::SelfSigned),
        config(B, Certs::SelfSigned),
        A,
        B,
    );
    assert!(!ab.out.is_ready());
    let (remote, local, stream_id, key) = ab.take_verify_request();
    assert_eq!((remote.as_str(), local.as_str()), (A, B));
    assert_eq!(stream_id, ab.inn.stream_id());
    // B's outgoing stream to A's authoritative server (A's incoming side answers db:verify).
    let mut ba = Pair::new(
        config(B, Certs::SelfSigned),
        config(A, Certs::SelfSigned),
        B,
        A,
    );
    let key = if tamper { format!("{key}0") } else { key };
    ba.out.request_verify(&stream_id, &key, ba.now).unwrap();
    ba.pump();
    let valid = ba
        .out_events
        .iter()
        .find_map(|e| match e {
            S2sOutEvent::Verified { id, valid } if *id == stream_id => Some(*valid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Verified in {:?}", ba.out_events));
    assert_eq!(valid, !tamper);
    ab.inn.dialback_verified(&remote, &local, valid);
    ab.pump();
    (ab, ba)
}

#[test]
fn dialback_with_self_signed_certificates_then_stanzas_flow() {
    let (mut ab, _ba) = dialback(false);
    assert_eq!(outcome(&ab), Ok(AuthMethod::Dialback));
    assert!(matches!(
        &ab.in_events[..],
        [S2sInEvent::Authenticated { remote, local, method: AuthMethod::Dialback }]
            if remote == A && local == B
    ));
    assert_eq!(ab.inn.authenticated().collect::<Vec<_>>(), [(A, B)]);
    ab.in_events.clear();
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.pump();
    assert_eq!(ab.in_events.len(), 2, "{:?}", ab.in_events);
    match &ab.in_events[0] {
        S2sInEvent::Stanza {
            stanza: s,
            from,
            to,
        } => {
            assert_eq!((from.domain(), to.domain()), (A, B));
            assert_eq!(s.bytes(), MESSAGE.as_bytes());
            assert_eq!(s.kind(), crate::xml::StanzaKind::Message);
        }
        e => panic!("{e:?}"),
    }
    // A clean close reaches the other side.
    ab.out.close(None);
    ab.pump();
    assert!(ab.inn.is_closed());
    assert!(matches!(
        ab.in_events.last(),
        Some(S2sInEvent::Closed {
            reason: CloseReason::PeerClosed
        })
    ));
}

#[test]
fn dialback_with_a_wrong_key_is_refused_and_no_stanza_passes() {
    let (mut ab, _ba) = dialback(true);
    assert_eq!(outcome(&ab), Err(S2sOutFailure::DialbackRefused));
    assert!(ab.inn.authenticated().next().is_none());
    assert!(ab.out.push_stanza(MESSAGE.as_bytes()).is_err());
    assert!(!ab.in_events.iter().any(|e| matches!(
        e,
        S2sInEvent::Stanza { .. } | S2sInEvent::Authenticated { .. }
    )));
}

#[test]
fn verify_is_sent_before_the_stream_itself_is_authenticated() {
    // B's stream to A: request_verify before anything was exchanged is queued until the
    // features, and answered although B is not (yet) authenticated to A.
    let mut out = out_stream(config(B, Certs::SelfSigned), B, A);
    let key = dialback_key(&config(A, Certs::SelfSigned).dialback_secret, B, A, "sid");
    out.request_verify("sid", &key, Instant::now()).unwrap();
    let ba = Pair::connect(out, config(A, Certs::SelfSigned), false);
    assert!(
        ba.out_events
            .iter()
            .any(|e| matches!(e, S2sOutEvent::Verified { id, valid: true } if id == "sid")),
        "{:?}",
        ba.out_events
    );
    assert!(!ba.out.is_ready(), "B's own dialback is still pending");
}

#[test]
fn sasl_external_with_ca_signed_certificates_needs_no_dialback() {
    let mut ab = Pair::new(config(A, Certs::CaSigned), config(B, Certs::CaSigned), A, B);
    assert_eq!(outcome(&ab), Ok(AuthMethod::SaslExternal));
    assert!(matches!(
        &ab.in_events[..],
        [S2sInEvent::Authenticated { remote, local, method: AuthMethod::SaslExternal }]
            if remote == A && local == B
    ));
    ab.in_events.clear();
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.pump();
    assert!(matches!(&ab.in_events[..], [S2sInEvent::Stanza { .. }]));
}

#[test]
fn ca_signed_but_sasl_external_off_falls_back_to_dialback() {
    let mut from = config(A, Certs::CaSigned);
    from.sasl_external = false;
    let mut ab = Pair::new(from, config(B, Certs::CaSigned), A, B);
    assert!(ab.out_events.is_empty(), "{:?}", ab.out_events);
    let (remote, local, _, _) = ab.take_verify_request();
    ab.inn.dialback_verified(&remote, &local, true);
    ab.pump();
    assert_eq!(outcome(&ab), Ok(AuthMethod::Dialback));
}

#[test]
fn invalid_certificate_without_dialback_fails() {
    let mut from = config(A, Certs::SelfSigned);
    from.dialback = false;
    let ab = Pair::new(from, config(B, Certs::SelfSigned), A, B);
    assert_eq!(outcome(&ab), Err(S2sOutFailure::CertificateInvalid));
}

#[test]
fn tls_required_but_not_offered_fails_the_outgoing_stream() {
    let mut to = config(B, Certs::SelfSigned);
    to.tls_server = None;
    to.tls_required = false;
    let ab = Pair::new(config(A, Certs::SelfSigned), to, A, B);
    assert_eq!(outcome(&ab), Err(S2sOutFailure::TlsRequiredButNotOffered));
    assert_eq!(
        S2sOutFailure::TlsRequiredButNotOffered.bounce_condition(),
        crate::xmpp::StanzaErrorCondition::RemoteServerNotFound
    );
}

#[test]
fn dialback_error_answer_is_reported() {
    let mut ab = Pair::new(
        config(A, Certs::SelfSigned),
        config(B, Certs::SelfSigned),
        A,
        B,
    );
    let (remote, local, _, _) = ab.take_verify_request();
    ab.inn.dialback_failed(&remote, &local);
    ab.pump();
    assert_eq!(
        outcome(&ab),
        Err(S2sOutFailure::DialbackError(Some(
            crate::xmpp::StanzaErrorCondition::RemoteServerNotFound
        )))
    );
}

#[test]
fn authentication_timeout_fails_the_outgoing_stream() {
    let mut ab = Pair::new(
        config(A, Certs::SelfSigned),
        config(B, Certs::SelfSigned),
        A,
        B,
    );
    let deadline = ab.out.next_timeout().unwrap();
    ab.out.handle_timeout(deadline - Duration::from_secs(1));
    assert!(!ab.out.is_closed());
    ab.out.handle_timeout(deadline);
    ab.pump();
    assert_eq!(outcome(&ab), Err(S2sOutFailure::Timeout));
    assert_eq!(
        S2sOutFailure::Timeout.bounce_condition(),
        crate::xmpp::StanzaErrorCondition::RemoteServerTimeout
    );
}

#[test]
fn sasl_external_over_direct_tls_split_into_single_bytes() {
    let now = Instant::now();
    let out = S2sOut::new_direct_tls(
        Arc::new(config(A, Certs::CaSigned)),
        A.into(),
        B.into(),
        now,
    );
    let mut to = config(B, Certs::CaSigned);
    to.direct_tls = true;
    let mut ab = Pair::connect(out, to, true);
    assert_eq!(outcome(&ab), Ok(AuthMethod::SaslExternal));
    ab.in_events.clear();
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.pump();
    assert!(matches!(&ab.in_events[..], [S2sInEvent::Stanza { .. }]));
}

#[test]
fn dialback_over_starttls_split_into_single_bytes() {
    let out = out_stream(config(A, Certs::SelfSigned), A, B);
    let mut ab = Pair::connect(out, config(B, Certs::SelfSigned), true);
    let (remote, local, stream_id, key) = ab.take_verify_request();
    let secret = config(A, Certs::SelfSigned).dialback_secret;
    assert!(key_matches(&secret, B, A, &stream_id, &key));
    ab.inn.dialback_verified(&remote, &local, true);
    ab.pump();
    assert!(ab.out.is_ready());
}

#[test]
fn outbound_queue_is_bounded() {
    let mut from = config(A, Certs::CaSigned);
    from.outbound_queue_bytes = 2 * MESSAGE.len();
    let mut ab = Pair::new(from, config(B, Certs::CaSigned), A, B);
    assert!(ab.out.is_ready());
    assert_eq!(ab.out.room(), 2 * MESSAGE.len());
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    assert_eq!(ab.out.room(), MESSAGE.len());
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    assert_eq!(ab.out.room(), 0);
    assert_eq!(ab.out.push_stanza(MESSAGE.as_bytes()), Err(PushError::Full));
    ab.pump();
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
}

#[test]
fn unanswered_verifies_fail_when_the_stream_closes() {
    let mut out = out_stream(config(B, Certs::SelfSigned), B, A);
    out.request_verify("s1", "k1", Instant::now()).unwrap();
    out.request_verify("s2", "k2", Instant::now()).unwrap();
    out.peer_closed();
    let events: Vec<_> = std::iter::from_fn(|| out.poll_event()).collect();
    assert!(
        matches!(
            &events[..],
            [
                S2sOutEvent::VerifyFailed { id: a },
                S2sOutEvent::VerifyFailed { id: b },
                S2sOutEvent::Closed { reason: S2sOutFailure::Io },
            ] if a == "s1" && b == "s2"
        ),
        "{events:?}"
    );
    assert_eq!(
        out.request_verify("s3", "k3", Instant::now()),
        Err(PushError::NotReady)
    );
}

#[test]
fn certificate_for_another_domain_gets_no_sasl_external() {
    // A's CA-signed certificate, but the stream claims c.example: B offers no EXTERNAL, so the
    // originating side falls back to dialback for c.example.
    let mut from = config(A, Certs::CaSigned);
    from.hosts = vec!["c.example".into()];
    let mut ab = Pair::new(from, config(B, Certs::CaSigned), "c.example", B);
    assert!(ab.out_events.is_empty(), "{:?}", ab.out_events);
    let (remote, local, _, _) = ab.take_verify_request();
    assert_eq!((remote.as_str(), local.as_str()), ("c.example", B));
}

/// The remote's stream header, from `from` to `to`, with the stream id `id`.
fn remote_header(from: &str, to: &str, id: &str) -> String {
    header(from, to).replace(" version='1.0'>", &format!(" id='{id}' version='1.0'>"))
}

/// Feeds `out` a `valid` answer from `from` to its verify `s1`; its events, none `Verified`.
fn answer_valid(out: &mut S2sOut, from: &str) -> Vec<S2sOutEvent> {
    let answer = format!("<db:verify from='{from}' to='b.example' type='valid' id='s1'/>");
    out.handle_input(answer.as_bytes(), Instant::now());
    let events: Vec<_> = std::iter::from_fn(|| out.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, S2sOutEvent::Verified { .. })),
        "{events:?}"
    );
    events
}

#[test]
fn verify_answer_before_tls_is_refused() {
    // TLS required: a plaintext answer injected after the remote's header must not count.
    let mut out = out_stream(config(B, Certs::SelfSigned), B, A);
    out.request_verify("s1", "k1", Instant::now()).unwrap();
    out.handle_input(remote_header(A, B, "x").as_bytes(), Instant::now());
    let events = answer_valid(&mut out, A);
    assert!(matches!(
        events.last(),
        Some(S2sOutEvent::Closed {
            reason: S2sOutFailure::StreamError(StreamErrorCondition::NotAuthorized)
        })
    ));
}

#[test]
fn verify_answer_from_another_domain_is_refused() {
    let mut out = out_stream(plain_config(B), B, A);
    out.request_verify("s1", "k1", Instant::now()).unwrap();
    let now = Instant::now();
    out.handle_input(remote_header(A, B, "x").as_bytes(), now);
    out.handle_input(b"<stream:features/>", now);
    let mut sent = Vec::new();
    out.take_transmit(&mut sent);
    let sent = String::from_utf8(sent).unwrap();
    assert!(
        sent.contains("<db:verify from='b.example' to='a.example' id='s1'>"),
        "{sent}"
    );
    let events = answer_valid(&mut out, "evil.example");
    assert!(matches!(
        events.last(),
        Some(S2sOutEvent::Closed {
            reason: S2sOutFailure::StreamError(StreamErrorCondition::InvalidFrom)
        })
    ));
}

#[test]
fn certificates_are_checked_at_the_drivers_wall_clock() {
    // The core reads no clock: left at the epoch, the CA-signed certificates are not valid yet,
    // so SASL EXTERNAL is not used and dialback is.
    let now = Instant::now();
    let mut ab = Pair {
        out: out_stream(config(A, Certs::CaSigned), A, B),
        inn: S2sIn::new(Arc::new(config(B, Certs::CaSigned)), peer(), now),
        now,
        out_events: Vec::new(),
        in_events: Vec::new(),
        bytewise: false,
        out_handed: 0,
    };
    ab.pump();
    assert!(ab.out_events.is_empty(), "{:?}", ab.out_events);
    ab.take_verify_request();
}

#[test]
fn a_verify_unanswered_on_a_ready_stream_fails_at_its_deadline() {
    let mut ab = Pair::new(config(A, Certs::CaSigned), config(B, Certs::CaSigned), A, B);
    assert!(ab.out.is_ready());
    ab.out_events.clear();
    let t0 = ab.now;
    ab.out.request_verify("s1", "k1", t0).unwrap();
    let later = t0 + Duration::from_secs(5);
    ab.out.request_verify("s2", "k2", later).unwrap();
    // The remote never answers (nothing is pumped): the first deadline is the next timeout.
    let deadline = ab.out.next_timeout().unwrap();
    assert_eq!(deadline, t0 + ab.out.cfg.auth_timeout);
    ab.out.handle_timeout(deadline - Duration::from_millis(1));
    assert!(ab.out.poll_event().is_none());
    ab.out.handle_timeout(deadline);
    let events: Vec<_> = std::iter::from_fn(|| ab.out.poll_event()).collect();
    assert!(
        matches!(&events[..], [S2sOutEvent::VerifyFailed { id }] if id == "s1"),
        "{events:?}"
    );
    assert_eq!(ab.out.next_timeout(), Some(later + ab.out.cfg.auth_timeout));
    // The stream itself stays.
    assert!(ab.out.is_ready());
}

/// A stanza pushed to an outgoing stream counts as sent only once the socket took the end of the
/// TLS record holding its last byte: the driver puts the others back for the pair's next stream.
#[test]
fn a_pushed_stanza_is_sent_when_the_socket_took_its_whole_record() {
    let mut ab = Pair::new(config(A, Certs::CaSigned), config(B, Certs::CaSigned), A, B);
    assert_eq!(outcome(&ab), Ok(AuthMethod::SaslExternal));
    let before = ab.out_handed;
    assert_eq!(ab.out.wire_written(before), 0, "nothing pushed yet");
    for _ in 0..3 {
        ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    }
    assert_eq!(ab.out.unwritten(), 3);
    let mut wire = Vec::new();
    ab.out.take_transmit(&mut wire);
    let end = before + wire.len() as u64;
    // One record holds all three: one byte short of its end, none reached the remote.
    assert_eq!(ab.out.wire_written(end - 1), 0);
    assert_eq!(ab.out.unwritten(), 3);
    assert_eq!(ab.out.wire_written(end), 3);
    assert_eq!(ab.out.unwritten(), 0);
    // A stanza pushed right before a close is encoded by the close (close_notify after it): it is
    // placed in what the next take hands out, before the close_notify.
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.out.close(None);
    let mut last = Vec::new();
    ab.out.take_transmit(&mut last);
    let done = end + last.len() as u64;
    assert_eq!(ab.out.unwritten(), 1);
    // The record holding the stanza ends before the close_notify (and the closing tag's record).
    assert_eq!(ab.out.wire_written(done - 1), 1);
    assert_eq!(ab.out.unwritten(), 0);
}

/// A domain removed at run time while a remote's stream is authenticated to it: the stanzas to
/// it are refused one by one (the driver bounces them), the stream stays.
#[test]
fn a_stanza_to_a_domain_removed_at_run_time_is_refused_alone() {
    let served = crate::shard::DynamicHosts::new("other.example");
    served.insert(B);
    let mut b_cfg = config(B, Certs::SelfSigned);
    b_cfg.hosts = vec!["other.example".into()];
    let mut inn = S2sIn::new(Arc::new(b_cfg), peer(), Instant::now());
    inn.set_dynamic_hosts(served.clone());
    let out = out_stream(config(A, Certs::SelfSigned), A, B);
    let mut ab = Pair::connect_to(out, inn, false);
    let (remote, local, stream_id, key) = ab.take_verify_request();
    let mut ba = Pair::new(
        config(B, Certs::SelfSigned),
        config(A, Certs::SelfSigned),
        B,
        A,
    );
    ba.out.request_verify(&stream_id, &key, ba.now).unwrap();
    ba.pump();
    assert!(ba
        .out_events
        .iter()
        .any(|e| matches!(e, S2sOutEvent::Verified { valid: true, .. })));
    ab.inn.dialback_verified(&remote, &local, true);
    ab.pump();
    assert_eq!(outcome(&ab), Ok(AuthMethod::Dialback));
    ab.in_events.clear();
    served.remove(B);
    ab.out.push_stanza(MESSAGE.as_bytes()).unwrap();
    ab.pump();
    assert!(
        matches!(&ab.in_events[..], [S2sInEvent::Unserved { from, to, .. }]
            if from.domain() == A && to.domain() == B),
        "{:?}",
        ab.in_events
    );
    assert!(!ab.inn.is_closed());
}
