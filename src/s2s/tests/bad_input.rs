//! Scripted peers sending what an `S2sIn` must refuse, and the authoritative answers.

use super::*;

/// Authenticates A to B by dialback on a plaintext stream (TLS optional).
fn authenticated() -> RawIn {
    let mut c = RawIn::new(plain_config(B));
    let features = c.open();
    assert!(
        features.contains("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"),
        "{features}"
    );
    assert!(!features.contains("starttls"), "{features}");
    assert!(c
        .send("<db:result from='a.example' to='b.example'>k</db:result>")
        .is_empty());
    let events = c.events();
    assert!(matches!(&events[..], [S2sInEvent::VerifyRequest { key, .. }] if key == "k"));
    c.inn.dialback_verified(A, B, true);
    assert_eq!(
        c.recv(),
        "<db:result from='b.example' to='a.example' type='valid'/>"
    );
    c.events();
    c
}

/// RFC 6120 §4.7.5: the answer's `version` is the lower of the peer's and 1.0, and absent when
/// the peer gave none.
#[test]
fn the_answer_header_carries_the_lower_version() {
    for (theirs, ours) in [
        (Some("0.9"), Some("0.9")),
        (None, None),
        (Some("1.0"), Some("1.0")),
        (Some("1.5"), Some("1.0")),
        (Some("x'y"), None),
    ] {
        let mut c = RawIn::new(plain_config(B));
        let header = match theirs {
            Some(v) => header(A, B).replace(" version='1.0'>", &format!(" version=\"{v}\">")),
            None => header(A, B).replace(" version='1.0'>", ">"),
        };
        let out = c.send(&header);
        // Past our XML declaration, up to the end of our stream header.
        let answer = &out[out.find("<stream:stream").unwrap_or(0)..];
        let answer = &answer[..answer.find('>').map_or(answer.len(), |i| i + 1)];
        match ours {
            Some(v) => assert!(
                answer.contains(&format!(" version='{v}'")),
                "{theirs:?}: {out}"
            ),
            None => assert!(!answer.contains("version="), "{theirs:?}: {out}"),
        }
    }
}

#[test]
fn stanza_before_authentication_is_not_authorized() {
    let mut c = RawIn::new(plain_config(B));
    c.open();
    let out = c.send("<message from='x@a.example' to='y@b.example'/>");
    assert!(
        out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::NotAuthorized)
    );
}

#[test]
fn plaintext_stanza_and_dialback_when_tls_is_required() {
    let mut c = RawIn::new(config(B, Certs::SelfSigned));
    let features = c.open();
    assert!(
        features
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{features}"
    );
    assert!(
        !features.contains("urn:xmpp:features:dialback"),
        "no dialback before TLS: {features}"
    );
    // XEP-0220 §2.4: dialback before TLS is a policy violation, the stream stays.
    let out = c.send("<db:result from='a.example' to='b.example'>k</db:result>");
    assert!(
        out.starts_with("<db:result from='b.example' to='a.example' type='error'>"),
        "{out}"
    );
    assert!(
        out.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
        "{out}"
    );
    assert!(c.events().is_empty());
    let out = c.send("<message from='x@a.example' to='y@b.example'/>");
    assert!(out.contains("<not-authorized xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::NotAuthorized)
    );
}

#[test]
fn stanza_from_a_domain_not_authenticated_is_invalid_from() {
    let mut c = authenticated();
    assert!(c
        .send("<message from='x@a.example/r' to='y@b.example'/>")
        .is_empty());
    assert!(matches!(&c.events()[..], [S2sInEvent::Stanza { .. }]));
    let out = c.send("<message from='x@evil.example' to='y@b.example'/>");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::InvalidFrom)
    );
}

/// A remote room's occupant with an emoji nickname, or a remote client's emoji resource (both
/// taken by Prosody): passed on, not improper-addressing, which would close the stream for
/// everyone behind it.
#[test]
fn emoji_resources_from_a_peer_are_addresses() {
    let mut c = authenticated();
    for stanza in [
        "<presence from='room@a.example/Anna \u{1f338}' to='y@b.example/r'/>",
        "<message from='x@a.example/phone \u{1f4f1}' to='y@b.example' type='chat'/>",
    ] {
        assert!(c.send(stanza).is_empty(), "{stanza}");
        assert!(
            matches!(&c.events()[..], [S2sInEvent::Stanza { .. }]),
            "{stanza}"
        );
    }
}

#[test]
fn stanza_to_an_unknown_host_is_host_unknown() {
    let mut c = authenticated();
    let out = c.send("<presence from='x@a.example' to='y@elsewhere.example'/>");
    assert!(out.contains("<host-unknown xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::HostUnknown)
    );
}

#[test]
fn stanza_without_to_is_improper_addressing() {
    let mut c = authenticated();
    let out = c.send("<iq type='get' id='1' from='a.example'/>");
    assert!(out.contains("<improper-addressing xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::ImproperAddressing)
    );
}

#[test]
fn header_to_an_unknown_host_is_host_unknown() {
    let mut c = RawIn::new(plain_config(B));
    let out = c.send(&header(A, "nowhere.example"));
    assert!(out.contains("<host-unknown xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::HostUnknown)
    );
}

#[test]
fn db_verify_is_answered_with_our_secret() {
    let cfg = plain_config(B);
    let secret = cfg.dialback_secret;
    let mut c = RawIn::new(cfg);
    c.open();
    // We (B) are the authoritative server: A received a stream from us with id 'sid'.
    let good = dialback_key(&secret, A, B, "sid");
    let out = c.send(&format!(
        "<db:verify from='a.example' to='b.example' id='sid'>{good}</db:verify>"
    ));
    assert_eq!(
        out,
        "<db:verify from='b.example' to='a.example' id='sid' type='valid'/>"
    );
    let out = c.send("<db:verify from='a.example' to='b.example' id='sid'>0123</db:verify>");
    assert_eq!(
        out,
        "<db:verify from='b.example' to='a.example' id='sid' type='invalid'/>"
    );
    // The key is bound to the stream id and the receiving domain.
    let out = c.send(&format!(
        "<db:verify from='c.example' to='b.example' id='sid'>{good}</db:verify>"
    ));
    assert!(out.ends_with("type='invalid'/>"), "{out}");
    let out = c.send(&format!(
        "<db:verify from='a.example' to='nowhere.example' id='sid'>{good}</db:verify>"
    ));
    assert!(
        out.contains("type='error'><error type='cancel'><item-not-found"),
        "{out}"
    );
    assert!(c.events().is_empty());
    assert!(!c.inn.is_closed());
}

#[test]
fn dialback_request_to_an_unknown_domain_is_item_not_found() {
    let mut c = RawIn::new(plain_config(B));
    c.open();
    let out = c.send("<db:result from='a.example' to='nowhere.example'>k</db:result>");
    assert!(
        out.contains("type='error'><error type='cancel'><item-not-found"),
        "{out}"
    );
    assert!(c.events().is_empty());
}

#[test]
fn invalid_dialback_keeps_the_stream_for_other_domains() {
    let mut c = authenticated();
    c.send("<db:result from='c.example' to='b.example'>k</db:result>");
    assert!(
        matches!(&c.events()[..], [S2sInEvent::VerifyRequest { remote, .. }] if remote == "c.example")
    );
    c.inn.dialback_verified("c.example", B, false);
    assert_eq!(
        c.recv(),
        "<db:result from='b.example' to='c.example' type='invalid'/>"
    );
    assert!(c
        .send("<message from='a.example' to='b.example'/>")
        .is_empty());
    assert!(matches!(&c.events()[..], [S2sInEvent::Stanza { .. }]));
    let out = c.send("<message from='c.example' to='b.example'/>");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
}

#[test]
fn piggybacked_domains_are_bounded() {
    let mut c = authenticated();
    let mut refused = 0;
    for i in 0..incoming::MAX_PENDING + 2 {
        let out = c.send(&format!(
            "<db:result from='d{i}.example' to='b.example'>k</db:result>"
        ));
        if out.contains("<resource-constraint") {
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    assert_eq!(c.events().len(), incoming::MAX_PENDING);
}

#[test]
fn not_well_formed_xml_closes_the_stream() {
    let mut c = authenticated();
    let out = c.send("<message from='a.example' to='b.example'><a></b></message>");
    assert!(out.contains("<not-well-formed xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::NotWellFormed)
    );
}

#[test]
fn oversized_stanza_is_a_policy_violation() {
    let mut cfg = plain_config(B);
    cfg.limits.max_stanza_bytes = 1024;
    let mut c = RawIn::new(cfg);
    c.open();
    c.send("<db:result from='a.example' to='b.example'>k</db:result>");
    c.inn.dialback_verified(A, B, true);
    c.recv();
    let body = "x".repeat(2000);
    let out = c.send(&format!(
        "<message from='a.example' to='b.example'><body>{body}</body></message>"
    ));
    assert!(out.contains("<policy-violation xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn restricted_xml_is_refused() {
    let mut c = authenticated();
    let out = c.send("<!-- hi -->");
    assert!(out.contains("<restricted-xml xmlns"), "{out}");
}

#[test]
fn stream_id_changes_and_timeout_closes() {
    let mut c = RawIn::new(plain_config(B));
    let out = c.open();
    assert!(out.contains(&format!("id='{}'", c.stream_id())), "{out}");
    let deadline = c.inn.next_timeout().unwrap();
    c.inn.handle_timeout(deadline);
    assert!(c.recv().contains("<connection-timeout xmlns"));
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::ConnectionTimeout)
    );
}

#[test]
fn sasl_external_is_refused_without_a_valid_certificate() {
    let mut c = authenticated();
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>";
    for _ in 0..2 {
        let out = c.send(auth);
        assert_eq!(
            out,
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"
        );
    }
    let out = c.send(auth);
    assert!(out.contains("<policy-violation xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

/// A plaintext-allowed configuration serving `domain`, opened by a peer claiming `from`.
fn opened_from(from: &str) -> (RawIn, String) {
    let mut c = RawIn::new(plain_config(B));
    let out = c.send(&header(from, B));
    (c, out)
}

#[test]
fn a_domain_nameprep_changes_is_refused_everywhere() {
    // `straße.example` (its own DNS name, UTS 46 non-transitional) must not become
    // `strasse.example` between authentication and routing.
    let (mut c, _) = opened_from("a.example");
    let out = c.send("<db:result from='straße.example' to='b.example'>k</db:result>");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::InvalidFrom)
    );
    let (mut c, out) = opened_from("straße.example");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::InvalidFrom)
    );
    let (mut c, _) = opened_from("a.example");
    let out = c.send("<db:verify from='straße.example' to='b.example' id='i'>k</db:verify>");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    assert!(in_closed_with(&c.events()).is_some());
    // `@` and `/` are no domain either.
    let (mut c, _) = opened_from("a.example");
    let out = c.send("<db:result from='admin@a.example' to='b.example'>k</db:result>");
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    // A prepared IDN is accepted, in any ASCII case.
    let (mut c, _) = opened_from("a.example");
    c.send("<db:result from='STRASSE.example' to='B.example'>k</db:result>");
    assert!(matches!(&c.events()[..],
        [S2sInEvent::VerifyRequest { remote, local, .. }] if remote == "strasse.example" && local == B));
}

#[test]
fn stanza_from_an_unprepared_form_of_another_domain_is_invalid_from() {
    // `strasse.example` authenticated: a stanza from `STRASSE.example` is its own, but one from
    // `straße.example` (routed as `strasse.example` too) must not be checked as another name.
    let mut c = RawIn::new(plain_config(B));
    c.open();
    c.send("<db:result from='strasse.example' to='b.example'>k</db:result>");
    c.events();
    c.inn.dialback_verified("strasse.example", B, true);
    c.recv();
    c.events();
    c.send("<message from='x@STRASSE.example' to='y@B.example'/>");
    match &c.events()[..] {
        [S2sInEvent::Stanza { from, to, .. }] => {
            assert_eq!(
                (from.as_str(), to.as_str()),
                ("x@strasse.example", "y@b.example")
            )
        }
        e => panic!("{e:?}"),
    }
    // Unparsable addresses are refused, not passed on for the driver to drop: improper-addressing
    // (RFC 6120 §4.9.3.10: not an address at all), not invalid-from (an address the stream was not
    // authenticated for).
    let out = c.send("<message from='x@@strasse.example' to='y@b.example'/>");
    assert!(out.contains("<improper-addressing xmlns"), "{out}");
}

#[test]
fn a_remote_stream_error_is_answered_by_closing_only() {
    // RFC 6120 §4.9.1.1: the stream is over; an error of ours in answer tells nobody anything.
    let mut c = RawIn::new(plain_config(B));
    c.open();
    let out = c.send(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    assert!(!out.contains("<stream:error"), "{out}");
    assert!(out.contains("</stream:stream>"), "{out}");
    assert!(c
        .events()
        .iter()
        .any(|e| matches!(e, S2sInEvent::Closed { .. })));
}

#[test]
fn dialback_failures_are_bounded() {
    let mut c = RawIn::new(plain_config(B));
    c.open();
    for i in 0..incoming::MAX_DIALBACK_FAILURES {
        assert!(in_closed_with(&c.events()).is_none(), "closed after {i}");
        let out = c.send(&format!(
            "<db:result from='d{i}.example' to='nowhere.example'>k</db:result>"
        ));
        assert!(out.contains("<item-not-found"), "{out}");
    }
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::PolicyViolation)
    );
    // Invalid keys count too.
    let mut c = RawIn::new(plain_config(B));
    c.open();
    for i in 0..incoming::MAX_DIALBACK_FAILURES {
        assert!(!c.inn.is_closed(), "closed after {i}");
        let d = format!("d{i}.example");
        c.send(&format!(
            "<db:result from='{d}' to='b.example'>k</db:result>"
        ));
        c.inn.dialback_verified(&d, B, false);
    }
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn plaintext_dialback_request_does_not_authenticate_after_starttls() {
    // TLS optional: a `<db:result/>` sent in plaintext, then STARTTLS; the answer arriving
    // afterwards must not authenticate the TLS stream.
    let mut cfg = config(B, Certs::SelfSigned);
    cfg.tls_required = false;
    let mut c = RawIn::new(cfg);
    c.open();
    c.send("<db:result from='a.example' to='b.example'>k</db:result>");
    assert!(matches!(
        &c.events()[..],
        [S2sInEvent::VerifyRequest { .. }]
    ));
    let out = c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(out.contains("<proceed"), "{out}");
    c.inn.dialback_verified(A, B, true);
    assert!(c.events().is_empty());
    assert_eq!(c.inn.authenticated().count(), 0);
}

#[test]
fn unread_answers_stop_reading() {
    // A peer flooding `<db:verify/>` without reading: the driver is told to stop reading.
    let mut cfg = plain_config(B);
    cfg.outbound_queue_bytes = 1000;
    let mut c = RawIn::new(cfg);
    c.open();
    let verify = "<db:verify from='a.example' to='b.example' id='i'>k</db:verify>";
    let mut sent = 0;
    while c.inn.may_read() {
        c.inn.handle_input(verify.as_bytes(), c.now);
        sent += 1;
        assert!(sent < 1000, "never stopped reading");
    }
    assert!(c.inn.pending_transmit() < 1000 + 2 * verify.len());
    assert!(!c.inn.is_closed());
    c.recv();
    assert!(c.inn.may_read());
}

#[test]
fn incoming_stanzas_read_as_jabber_client() {
    let mut c = authenticated();
    c.send(
        "<message from='x@a.example/r' to='y@b.example' type='chat'><body>hi</body></message>\
         <message xmlns='jabber:server' from='x@a.example/r' to='y@b.example'><body>yo</body></message>",
    );
    let events = c.events();
    assert_eq!(events.len(), 2, "{events:?}");
    for (e, text) in events.iter().zip(["hi", "yo"]) {
        let S2sInEvent::Stanza { stanza: s, .. } = e else {
            panic!("{e:?}")
        };
        let tree = s.tree().unwrap();
        let body = tree.get_child("body", crate::xmpp::ns::CLIENT);
        assert_eq!(body.map(|b| b.text()), Some(text.to_string()), "{tree:?}");
    }
}

#[test]
fn a_client_stanza_on_a_server_stream_is_unsupported() {
    let mut c = authenticated();
    let out = c.send(
        "<message xmlns='jabber:client' from='x@a.example/r' to='y@b.example'><body>hi</body></message>",
    );
    assert!(out.contains("<unsupported-stanza-type xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::UnsupportedStanzaType)
    );
}

#[test]
fn a_remote_claiming_one_of_our_domains_is_invalid_from() {
    // In the header.
    let mut c = RawIn::new(plain_config(B));
    let out = c.send(&header(B, B));
    assert!(out.contains("<invalid-from xmlns"), "{out}");
    assert_eq!(
        in_closed_with(&c.events()),
        Some(StreamErrorCondition::InvalidFrom)
    );
    // In a dialback request (any case), also for a second domain of ours.
    for claimed in ["B.example", "svc.b.example"] {
        let mut cfg = plain_config(B);
        cfg.hosts.push("svc.b.example".into());
        let mut c = RawIn::new(cfg);
        c.open();
        let out = c.send(&format!(
            "<db:result from='{claimed}' to='b.example'>k</db:result>"
        ));
        assert!(out.contains("<invalid-from xmlns"), "{out}");
        let events = c.events();
        assert!(!events
            .iter()
            .any(|e| matches!(e, S2sInEvent::VerifyRequest { .. })));
        assert_eq!(
            in_closed_with(&events),
            Some(StreamErrorCondition::InvalidFrom)
        );
    }
}
