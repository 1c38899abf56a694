//! SASL2 (XEP-0388) and Bind 2 (XEP-0386) on the sans-IO stream: the feature, SCRAM in SASL2
//! framing, success without a restart, binding and stream management inside the authentication,
//! failures in SASL2 framing, and what is refused.

use super::*;
use crate::c2s::{ResumeError, SmConfig, SmState};

const UA: &str = "<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'>\
                  <software>Test</software></user-agent>";

/// alice (password `s3cret`) logs in with SCRAM-SHA-256 in SASL2 framing, sending `password`.
fn sasl2_scram(c: &mut Client, password: &str, inline: &str) -> String {
    scram_exchange(
        c,
        "alice",
        password,
        Some(&secrets("s3cret")),
        false,
        Some(inline),
        None,
    )
}

fn sm_config() -> C2sConfig {
    C2sConfig {
        sm: Some(SmConfig::default()),
        post_auth_features: b"<sm xmlns='urn:xmpp:sm:3'/>".to_vec(),
        ..config(TlsMode::None)
    }
}

#[test]
fn the_feature_lists_the_same_mechanisms_and_bind2_with_sm_inline() {
    let mut c = Client::new(sm_config(), REMOTE);
    let out = c.open();
    assert!(
        out.contains(
            "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256</mechanism>\
             <mechanism>SCRAM-SHA-1</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline>\
             <feature var='urn:xmpp:sm:3'/></inline></bind><sm xmlns='urn:xmpp:sm:3'/></inline>\
             </authentication>"
        ),
        "{out}"
    );
    // Without stream management configured, Bind 2 has no inline feature to offer.
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    let out = c.open();
    assert!(
        out.contains("<inline><bind xmlns='urn:xmpp:bind:0'></bind></inline>"),
        "{out}"
    );
    // No mechanism allowed (STARTTLS required first): no SASL2 either (XEP-0388 §2.1).
    let mut c = Client::new(config(TlsMode::StarttlsRequired), REMOTE);
    let out = c.open();
    assert!(!out.contains("urn:xmpp:sasl:2"), "{out}");
}

#[test]
fn scram_with_bind2_and_sm_binds_before_success_without_a_restart() {
    let mut c = Client::new(sm_config(), REMOTE);
    c.open();
    let stream_id = c.c2s.stream_id().to_string();
    let inline = format!(
        "{UA}<bind xmlns='urn:xmpp:bind:0'><tag>Test</tag>\
         <enable xmlns='urn:xmpp:sm:3' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/></bind>"
    );
    let out = sasl2_scram(&mut c, "s3cret", &inline);
    assert!(out.is_empty(), "success waits for the bind: {out}");
    let ev = c.events();
    let [C2sEvent::Authenticated { jid: bare }, C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(bare.as_str(), "alice@example.com");
    assert!(
        jid.as_str().starts_with("alice@example.com/Test/") && jid.resource().len() == 21,
        "{jid}"
    );
    // Stanzas pipelined behind the authentication wait for the bind.
    c.send("<message to='bob@example.com'><body>early</body></message>");
    assert!(c.events().is_empty());
    let jid = jid.clone();
    c.c2s.bind_result(Ok(jid.clone()));
    let out = c.recv();
    assert!(
        out.starts_with("<success xmlns='urn:xmpp:sasl:2'><additional-data>"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "<authorization-identifier>{jid}</authorization-identifier>\
             <bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='"
        )),
        "{out}"
    );
    assert!(
        out.contains("resume='true'") && out.ends_with("/></bound></success><stream:features/>"),
        "nothing left to negotiate after a bound success: {out}"
    );
    assert_eq!(c.c2s.jid(), Some(&jid));
    assert_eq!(c.c2s.stream_id(), stream_id, "no stream restart");
    assert!(c.c2s.sm().is_some());
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::SmEnabled { id: Some(_) }, C2sEvent::Bind2Enable { requests }, C2sEvent::Stanza(s, Some(1))]
            if s.from().as_deref() == Some(jid.as_str()) && requests.len() == 1 && requests[0].name == "inactive"),
        "SM on, the modules' requests, then the pipelined stanza counted as the first: {ev:?}"
    );
    // The same installation logging in again gets the same resource (its old session replaced).
    let mut c2 = Client::new(sm_config(), REMOTE);
    c2.open();
    sasl2_scram(&mut c2, "s3cret", &inline);
    let ev = c2.events();
    assert!(
        matches!(&ev[..], [_, C2sEvent::BindRequest { jid: again }] if *again == jid),
        "{ev:?}"
    );
}

#[test]
fn without_bind2_success_names_the_bare_jid_and_the_bind_features_follow() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let out = sasl2_scram(&mut c, "s3cret", UA);
    assert!(
        out.contains(
            "<authorization-identifier>alice@example.com</authorization-identifier></success>\
             <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        ),
        "{out}"
    );
    assert!(matches!(&c.events()[..], [C2sEvent::Authenticated { .. }]));
    // RFC 6120 binding on the same stream, no new header.
    bind(&mut c, Some("desk"));
}

#[test]
fn a_refused_bind_still_authenticates_and_offers_rfc6120_binding() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let inline = "<bind xmlns='urn:xmpp:bind:0'/>";
    sasl2_scram(&mut c, "s3cret", inline);
    let ev = c.events();
    let [_, C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(jid.resource().len(), 16, "no tag: a generated resource");
    c.c2s.bind_result(Err(BindError::ResourceConstraint));
    let out = c.recv();
    assert!(
        out.contains(
            "<authorization-identifier>alice@example.com</authorization-identifier>\
             <failed xmlns='urn:xmpp:bind:0'><error type='wait'><resource-constraint"
        ) && out.contains("</failed></success><stream:features><bind"),
        "{out}"
    );
    assert_eq!(c.c2s.jid(), None);
    bind(&mut c, None);
}

#[test]
fn failures_use_sasl2_framing_and_leave_the_stream_open() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let out = sasl2_scram(&mut c, "wrong", UA);
    assert_eq!(
        out,
        "<failure xmlns='urn:xmpp:sasl:2'><not-authorized \
         xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>"
    );
    assert!(matches!(&c.events()[..], [C2sEvent::AuthFailed { .. }]));
    // A response with no exchange running, an unknown mechanism, PLAIN off loopback without TLS.
    c.send("<response xmlns='urn:xmpp:sasl:2'>AAAA</response>");
    assert!(c.recv().contains("<malformed-request"));
    c.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='X-NOPE'/>");
    assert!(c.recv().contains("<invalid-mechanism"));
    c.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>AGEAYg==</initial-response></authenticate>");
    let out = c.recv();
    assert!(
        out.starts_with("<failure xmlns='urn:xmpp:sasl:2'><encryption-required"),
        "{out}"
    );
    // The fifth failure closes the stream (RFC 6120 §6.4.5 applies to SASL2 too).
    c.send("<abort xmlns='urn:xmpp:sasl:2'/>");
    let out = c.recv();
    assert!(
        out.contains("<aborted") && out.contains(&stream_error("policy-violation")),
        "{out}"
    );
}

#[test]
fn plain_on_loopback_and_a_second_authenticate_is_a_stream_error() {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, LOOPBACK);
    c.open();
    let creds = B64.encode("\0alice\0s3cret");
    c.send(&format!(
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>\
         <initial-response>{creds}</initial-response><bind xmlns='urn:xmpp:bind:0'><tag>cli</tag></bind>\
         </authenticate>"
    ));
    assert!(
        matches!(&c.events()[..], [C2sEvent::VerifyPlain { username, .. }] if username == "alice")
    );
    c.c2s.plain_verified(true);
    let ev = c.events();
    let [_, C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    c.c2s.bind_result(Ok(jid.clone()));
    let out = c.recv();
    assert!(
        out.starts_with(
            "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@example.com/cli/"
        ) && out.ends_with("<bound xmlns='urn:xmpp:bind:0'></bound></success><stream:features/>"),
        "PLAIN has no additional data: {out}"
    );
    c.send(&format!(
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{creds}</initial-response></authenticate>"
    ));
    assert!(c.recv().contains(&stream_error("policy-violation")));
}

/// alice authenticates with `<resume previd='OLD' h='1'/>` and a Bind 2 request inline; the
/// stream waits for the driver's answer to the resumption.
fn authenticate_with_resume(c: &mut Client) {
    c.open();
    let inline = "<resume xmlns='urn:xmpp:sm:3' previd='OLD' h='1'/>\
                  <bind xmlns='urn:xmpp:bind:0'><tag>T</tag></bind>";
    assert!(sasl2_scram(c, "s3cret", inline).is_empty());
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::Authenticated { .. }, C2sEvent::ResumeRequest { jid, previd, h: 1 }]
            if jid.as_str() == "alice@example.com" && previd == "OLD"),
        "resumption first, no bind: {ev:?}"
    );
}

#[test]
fn inline_resumption_answers_inside_success_and_replays() {
    let mut c = Client::new(sm_config(), REMOTE);
    authenticate_with_resume(&mut c);
    let mut sm = SmState::with_counters(SmConfig::default(), Some("OLD".into()), 7, 0);
    for b in ["x", "y", "z"] {
        sm.outbound(crate::c2s::Unacked::Routed(super::sm::acc(b)))
            .unwrap();
    }
    sm.ack(1).unwrap();
    let jid = FullJid::parse("alice@example.com/r").unwrap();
    c.c2s.resumed(jid.clone(), Box::new(sm));
    let out = c.recv();
    assert!(
        out.starts_with("<success xmlns='urn:xmpp:sasl:2'><additional-data>")
            && out.contains(
                "<authorization-identifier>alice@example.com/r</authorization-identifier>\
                 <resumed xmlns='urn:xmpp:sm:3' previd='OLD' h='7'/></success><stream:features/>"
            ),
        "{out}"
    );
    let (y, z) = (out.find("<body>y</body>"), out.find("<body>z</body>"));
    assert!(
        y < z && y.is_some() && !out.contains("<body>x</body>"),
        "{out}"
    );
    assert!(
        !out.contains("<bound"),
        "the bind request is ignored: {out}"
    );
    assert!(c.events().is_empty());
    assert_eq!(c.c2s.jid(), Some(&jid));
}

#[test]
fn failed_inline_resumption_goes_into_success_and_the_bind_runs() {
    let mut c = Client::new(sm_config(), REMOTE);
    authenticate_with_resume(&mut c);
    c.c2s.resume_failed(ResumeError::ItemNotFound);
    assert!(c.recv().is_empty(), "success waits for the bind");
    let ev = c.events();
    let [C2sEvent::BindRequest { jid }] = &ev[..] else {
        panic!("{ev:?}")
    };
    let jid = jid.clone();
    c.c2s.bind_result(Ok(jid.clone()));
    let out = c.recv();
    assert!(
        out.contains(&format!(
            "<authorization-identifier>{jid}</authorization-identifier><failed xmlns='urn:xmpp:sm:3'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>\
             <bound xmlns='urn:xmpp:bind:0'></bound></success><stream:features/>"
        )),
        "{out}"
    );
    assert!(c.c2s.sm().is_none(), "no <enable/> was asked for");
}

#[test]
fn channel_binding_works_in_sasl2_framing() {
    let mut c = Client::new(config(TlsMode::StarttlsRequired), REMOTE);
    c.open();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(c.recv().contains("<proceed"));
    c.handshake(client_config(false));
    let out = c.open();
    assert!(
        out.contains("<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256-PLUS"),
        "{out}"
    );
    let out = scram_exchange(
        &mut c,
        "alice",
        "s3cret",
        Some(&secrets("s3cret")),
        true,
        Some(UA),
        None,
    );
    assert!(
        out.contains("<authorization-identifier>alice@example.com</authorization-identifier>"),
        "tls-exporter binding checked, signature verified by the helper: {out}"
    );
}

#[test]
fn a_listener_without_sasl2_offers_and_takes_only_rfc6120_sasl() {
    let mut c = Client::new(
        C2sConfig {
            sasl2: false,
            ..sm_config()
        },
        REMOTE,
    );
    let out = c.open();
    assert!(
        out.contains("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>")
            && !out.contains("urn:xmpp:sasl:2")
            && !out.contains("urn:xmpp:bind:0"),
        "{out}"
    );
    c.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'/>");
    assert!(c.recv().contains(&stream_error("not-authorized")));
}

/// SASL2 PLAIN on a stream whose header says `from`, with `authzid`; the answer's first bytes.
fn sasl2_plain_from(from: &str, authzid: &str) -> String {
    let mut cfg = config(TlsMode::None);
    cfg.allow_plaintext_on_loopback = true;
    let mut c = Client::new(cfg, LOOPBACK);
    c.send(&HEADER.replace(" version='1.0'>", &format!(" from='{from}' version='1.0'>")));
    assert!(c.recv().contains("<stream:features>"));
    let creds = B64.encode(format!("{authzid}\0alice\0s3cret"));
    c.send(&format!(
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>\
         <initial-response>{creds}</initial-response></authenticate>"
    ));
    assert!(matches!(&c.events()[..], [C2sEvent::VerifyPlain { .. }]));
    c.c2s.plain_verified(true);
    c.recv()
}

#[test]
fn an_authorization_identity_must_match_the_streams_from() {
    // XEP-0388 §2.3: "If the stream's from attribute (if present) does not match the non-empty
    // authorization string, the server MUST fail the authentication."
    let out = sasl2_plain_from("bob@example.com", "alice@example.com");
    assert!(
        out.starts_with("<failure xmlns='urn:xmpp:sasl:2'><invalid-authzid "),
        "{out}"
    );
    let out = sasl2_plain_from("alice@example.com", "alice@example.com");
    assert!(
        out.starts_with("<success xmlns='urn:xmpp:sasl:2'>"),
        "{out}"
    );
    // Without an authorization identity the rule does not apply.
    let out = sasl2_plain_from("bob@example.com", "");
    assert!(
        out.starts_with("<success xmlns='urn:xmpp:sasl:2'>"),
        "{out}"
    );
}

#[test]
fn an_exchange_begun_in_sasl2_cannot_be_answered_in_rfc6120_framing() {
    // The right proof, in the wrong framing: it was accepted with an RFC 6120 <success/> and a
    // restart, and the Bind 2 request was dropped.
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let bind = "<bind xmlns='urn:xmpp:bind:0'><tag>t</tag></bind>";
    let rfc6120 = Some("urn:ietf:params:xml:ns:xmpp-sasl");
    let s = secrets("s3cret");
    let out = scram_exchange(
        &mut c,
        "alice",
        "s3cret",
        Some(&s),
        false,
        Some(bind),
        rfc6120,
    );
    assert!(out.contains("<malformed-request"), "{out}");
    assert!(!out.contains("success"), "{out}");
    // The same exchange in SASL2 framing throughout succeeds.
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    c.open();
    let out = scram_exchange(&mut c, "alice", "s3cret", Some(&s), false, Some(""), None);
    assert!(
        out.starts_with("<success xmlns='urn:xmpp:sasl:2'>"),
        "{out}"
    );
}
