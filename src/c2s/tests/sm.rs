//! XEP-0198 on the sans-IO stream: feature, enable, counters both ways, acks, buffer bound,
//! handled-count-too-high, resumption answers.

use super::*;
use crate::c2s::{ResumeError, SmConfig, SmState};
use crate::hooks::Acc;
use crate::jid::Jid;
use crate::shard::ShardId;
use crate::xml::Stanza;

fn sm_config(buffer_max: usize, ack_freq: u32) -> C2sConfig {
    C2sConfig {
        sm: Some(SmConfig {
            buffer_max,
            ack_freq,
            resume_timeout: Duration::from_secs(300),
            id_prefix: None,
        }),
        ..config(TlsMode::None)
    }
}

pub(super) fn acc(body: &str) -> Acc {
    let s = Stanza::parse(
        format!("<message from='bob@example.com/x' to='alice@example.com/r' type='chat'><body>{body}</body></message>")
            .into_bytes(),
    )
    .unwrap();
    let from = Jid::parse("bob@example.com/x").unwrap();
    let to = Jid::parse("alice@example.com/r").unwrap();
    Acc::new(s, from, to, ShardId(0))
}

fn enable(c: &mut Client, resume: bool) -> Option<String> {
    let attr = if resume { " resume='true'" } else { "" };
    c.send(&format!("<enable xmlns='urn:xmpp:sm:3'{attr}/>"));
    let out = c.recv();
    assert!(out.starts_with("<enabled xmlns='urn:xmpp:sm:3'"), "{out}");
    let ev = c.events();
    let [C2sEvent::SmEnabled { id }] = &ev[..] else {
        panic!("{ev:?}")
    };
    if resume {
        let id = id.clone().unwrap();
        assert!(
            out.contains(&format!("id='{id}' resume='true' max='300'")),
            "{out}"
        );
        assert!(id.len() >= 32, "unguessable id: {id}");
    } else {
        assert!(id.is_none());
        assert_eq!(out, "<enabled xmlns='urn:xmpp:sm:3'/>");
    }
    id.clone()
}

/// Authenticates without binding.
fn auth_only(c: &mut Client) -> String {
    c.open();
    let out = scram_sha256(c, "alice", "s3cret", Some(&secrets("s3cret")), false);
    assert!(out.contains("<success"), "{out}");
    c.events();
    c.open()
}

#[test]
fn enable_before_bind_fails_and_the_stream_goes_on() {
    let mut c = Client::new(sm_config(10, 5), REMOTE);
    auth_only(&mut c);
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert_eq!(
        c.recv(),
        "<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    );
    assert!(c.events().is_empty());
    bind(&mut c, Some("r"));
    enable(&mut c, true);
    // Twice: refused.
    c.send("<enable xmlns='urn:xmpp:sm:3'/>");
    assert!(c.recv().contains("<unexpected-request"));
    assert!(!c.c2s.is_closed());
}

#[test]
fn inbound_count_covers_every_stanza_including_the_streams_own() {
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    // Before enable nothing counts.
    c.send("<message to='bob@example.com'><body>early</body></message>");
    c.events();
    enable(&mut c, false);
    c.send("<message to='bob@example.com'><body>1</body></message>");
    c.send("<presence/>");
    c.send("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    let out = c.recv();
    assert_eq!(out, "<iq type='result' id='s'/>");
    // The message and the presence went to the route with their numbers; the session IQ was
    // handled by the stream itself.
    let seqs: Vec<Option<u32>> = c
        .events()
        .into_iter()
        .filter_map(|e| match e {
            C2sEvent::Stanza(_, seq) => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![Some(1), Some(2)]);
    // The ack waits until the route handled them, in any order.
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(c.recv(), "");
    c.c2s.sm_handled(&[2], Instant::now());
    assert_eq!(c.recv(), "");
    c.c2s.sm_handled(&[1], Instant::now());
    assert_eq!(c.recv(), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    // Nothing pending: answered at once.
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(c.recv(), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    // The session result the stream wrote itself is a stanza the client counts.
    assert_eq!(
        c.c2s.sm().map(|s| (s.h_out(), s.unacked_len())),
        Some((1, 1))
    );
}

#[test]
fn an_ack_that_does_not_come_is_answered_with_what_is_handled_then_given_up() {
    use crate::c2s::sm_xep198::{ACK_GIVE_UP, ACK_WAIT};
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    let start = Instant::now();
    for i in 0..3 {
        c.send(&format!(
            "<message to='bob@example.com'><body>{i}</body></message>"
        ));
    }
    c.events();
    c.c2s.sm_handled(&[1, 3], start);
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(c.recv(), "");
    let due = c.c2s.next_timeout().unwrap();
    assert!(due <= Instant::now() + ACK_WAIT);
    // After ACK_WAIT: the h handled so far (stanza 2 is still out).
    c.c2s.handle_timeout(Instant::now() + ACK_WAIT);
    assert_eq!(c.recv(), "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    assert_eq!(c.c2s.sm().unwrap().h_handled(), 1);
    // After ACK_GIVE_UP the missing acknowledgement is taken as lost: h moves on.
    c.c2s
        .handle_timeout(Instant::now() + ACK_GIVE_UP + Duration::from_secs(1));
    assert_eq!(c.c2s.sm().unwrap().h_handled(), 3);
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(c.recv(), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
}

#[test]
fn acks_trim_the_buffer_and_h_too_high_closes() {
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    for i in 0..3 {
        c.c2s.deliver_routed(acc(&format!("m{i}"))).unwrap();
    }
    let out = c.recv();
    assert_eq!(out.matches("<message").count(), 3, "{out}");
    c.send("<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_eq!(c.c2s.sm().map(|s| s.unacked_len()), Some(1));
    c.send("<a xmlns='urn:xmpp:sm:3' h='4'/>");
    let out = c.recv();
    assert!(
        out.contains("<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><handled-count-too-high xmlns='urn:xmpp:sm:3' h='4' send-count='3'/>"),
        "{out}"
    );
    assert!(out.ends_with("</stream:stream>"));
    assert_eq!(
        closed_with(&mut c),
        Some(CloseReason::StreamError(
            StreamErrorCondition::UndefinedCondition
        ))
    );
    // What was not acknowledged is still there for the driver to re-route.
    let mut sm = c.c2s.take_sm().unwrap();
    assert_eq!(sm.take_unacked().len(), 1);
}

#[test]
fn server_requests_acks_every_ack_freq_stanzas() {
    let mut c = Client::new(sm_config(100, 2), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    c.c2s.deliver_routed(acc("a")).unwrap();
    assert!(!c.recv().contains("<r xmlns"));
    c.c2s.deliver_routed(acc("b")).unwrap();
    assert!(c.recv().ends_with("</message><r xmlns='urn:xmpp:sm:3'/>"));
}

#[test]
fn a_full_buffer_holds_the_rest_until_the_client_acknowledges() {
    // A burst of answers larger than the buffer (a client that sent many requests at once) used
    // to close the stream before any of them was written; now the window fills, an ack is asked
    // for, and the client's `<a/>` lets the rest out.
    let mut c = Client::new(sm_config(2, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    for body in ["a", "b", "c", "d", "e"] {
        c.c2s.deliver_routed(acc(body)).unwrap();
    }
    let out = c.recv();
    assert_eq!(out.matches("<message").count(), 2, "{out}");
    assert!(out.contains("<r xmlns='urn:xmpp:sm:3'/>"), "{out}");
    assert!(!out.contains("<body>c</body>"), "{out}");
    c.send("<a xmlns='urn:xmpp:sm:3' h='1'/>");
    let out = c.recv();
    assert_eq!(out.matches("<message").count(), 1, "{out}");
    assert!(out.contains("<body>c</body>"), "{out}");
    // Still full: asked again, once.
    assert_eq!(out.matches("<r xmlns").count(), 1, "{out}");
    c.send("<a xmlns='urn:xmpp:sm:3' h='3'/>");
    let out = c.recv();
    assert!(
        out.contains("<body>d</body>") && out.contains("<body>e</body>"),
        "{out}"
    );
    assert!(!out.contains("stream:error"), "{out}");
    assert_eq!(c.c2s.sm().unwrap().h_out(), 5);
}

#[test]
fn what_waits_for_acknowledgements_is_bounded_by_the_outbound_queue() {
    let mut cfg = sm_config(2, 100);
    cfg.outbound_queue_bytes = 2048;
    let mut c = Client::new(cfg, REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    c.c2s.deliver_routed(acc("a")).unwrap();
    c.c2s.deliver_routed(acc("b")).unwrap();
    assert_eq!(c.recv().matches("<message").count(), 2);
    // The client acknowledges nothing: the rest waits, up to the queue's bytes.
    let mut taken = 0;
    let back = loop {
        match c.c2s.deliver_routed(acc(&format!("w{taken}"))) {
            Ok(()) => taken += 1,
            Err(back) => break back,
        }
        assert!(taken < 100, "unbounded");
    };
    assert!(taken > 2, "{taken}");
    assert!(String::from_utf8_lossy(back.stanza.bytes()).contains(&format!("w{taken}")));
    let out = c.recv();
    assert!(out.contains(&stream_error("policy-violation")), "{out}");
    // The written ones stay unacknowledged (resumption), the waiting ones go back to the driver.
    assert_eq!(c.c2s.take_unsent().len(), taken);
    assert_eq!(c.c2s.take_sm().unwrap().take_unacked().len(), 2);
}

#[test]
fn resume_is_answered_by_the_driver_and_replays_the_buffer() {
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    auth_only(&mut c);
    c.send("<resume xmlns='urn:xmpp:sm:3' previd='OLD' h='1'/>");
    assert!(c.recv().is_empty());
    let ev = c.events();
    assert!(
        matches!(&ev[..], [C2sEvent::ResumeRequest { jid, previd, h: 1 }]
            if jid.as_str() == "alice@example.com" && previd == "OLD"),
        "{ev:?}"
    );
    // Input waits meanwhile.
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert!(c.recv().is_empty());
    let mut sm = SmState::with_counters(SmConfig::default(), Some("OLD".into()), 7, 0);
    for b in ["x", "y", "z"] {
        sm.outbound(crate::c2s::Unacked::Routed(acc(b))).unwrap();
    }
    sm.ack(1).unwrap();
    let jid = FullJid::parse("alice@example.com/r").unwrap();
    c.c2s.resumed(jid.clone(), Box::new(sm));
    let out = c.recv();
    assert!(
        out.starts_with("<resumed xmlns='urn:xmpp:sm:3' previd='OLD' h='7'/>"),
        "{out}"
    );
    let y = out.find("<body>y</body>").unwrap();
    let z = out.find("<body>z</body>").unwrap();
    assert!(y < z && !out.contains("<body>x</body>"), "{out}");
    // The held <r/> is answered after the replay, with the old session's count.
    assert!(out.ends_with("<a xmlns='urn:xmpp:sm:3' h='7'/>"), "{out}");
    assert_eq!(c.c2s.jid(), Some(&jid));
    // Resuming again on a resumed stream is refused.
    c.send("<resume xmlns='urn:xmpp:sm:3' previd='OLD' h='3'/>");
    assert!(c.recv().contains("<unexpected-request"));
}

#[test]
fn failed_resume_leaves_the_stream_ready_to_bind() {
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    auth_only(&mut c);
    c.send("<resume xmlns='urn:xmpp:sm:3' previd='NOPE' h='0'/>");
    c.events();
    c.c2s.resume_failed(ResumeError::ItemNotFound);
    assert_eq!(
        c.recv(),
        "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    );
    bind(&mut c, Some("again"));
    c.send("<resume xmlns='urn:xmpp:sm:3' h='0'/>");
    assert!(c.recv().contains("<unexpected-request"));
}

#[test]
fn the_last_ack_goes_before_the_stream_error_and_the_closing_tag() {
    for server_closes in [true, false] {
        let mut c = Client::new(sm_config(10, 100), REMOTE);
        login(&mut c, Some("r"));
        enable(&mut c, false);
        c.send("<message to='bob@example.com'><body>1</body></message>");
        c.send("<message to='bob@example.com'><body>2</body></message>");
        c.events();
        c.c2s.sm_handled(&[1], Instant::now());
        if server_closes {
            c.c2s
                .close(Some(StreamErrorCondition::PolicyViolation), None);
            let out = c.recv();
            assert!(
                out.starts_with("<a xmlns='urn:xmpp:sm:3' h='1'/><stream:error><policy-violation"),
                "{out}"
            );
        } else {
            c.send("</stream:stream>");
            assert_eq!(c.recv(), "<a xmlns='urn:xmpp:sm:3' h='1'/></stream:stream>");
        }
    }
    // Without stream management: no <a/>.
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    c.c2s
        .close(Some(StreamErrorCondition::SystemShutdown), None);
    assert!(c.recv().starts_with("<stream:error><system-shutdown"));
}

#[test]
fn a_shutdown_close_waits_for_the_stanzas_on_their_way_then_acks_them() {
    use crate::c2s::sm_xep198::CLOSE_ACK_WAIT;
    let start = Instant::now();
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    for i in 0..3 {
        c.send(&format!(
            "<message to='bob@example.com'><body>{i}</body></message>"
        ));
    }
    c.events();
    c.c2s.sm_handled(&[2], start);
    c.c2s
        .close_when_handled(StreamErrorCondition::SystemShutdown, start);
    // Routed stanzas still go out meanwhile; input is not taken (the client sends it again).
    c.c2s.deliver_routed(acc("late")).unwrap();
    assert!(c.recv().contains("<body>late</body>"));
    c.send("<message to='bob@example.com'><body>not taken</body></message>");
    assert!(c.events().is_empty());
    assert!(c.c2s.next_timeout().unwrap() <= start + CLOSE_ACK_WAIT);
    c.c2s.sm_handled(&[1], start);
    assert_eq!(c.recv(), "");
    c.c2s.sm_handled(&[3], start);
    let out = c.recv();
    assert!(
        out.starts_with("<a xmlns='urn:xmpp:sm:3' h='3'/><stream:error><system-shutdown"),
        "{out}"
    );
    assert!(matches!(
        &c.events()[..],
        [C2sEvent::Closed {
            reason: CloseReason::StreamError(StreamErrorCondition::SystemShutdown)
        }]
    ));

    // A stanza whose acknowledgement never comes: closed when the wait is over, with what is
    // handled.
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    c.send("<message to='bob@example.com'><body>lost</body></message>");
    c.events();
    c.c2s
        .close_when_handled(StreamErrorCondition::SystemShutdown, start);
    c.c2s.handle_timeout(start + CLOSE_ACK_WAIT);
    assert!(c
        .recv()
        .starts_with("<a xmlns='urn:xmpp:sm:3' h='0'/><stream:error><system-shutdown"));
    // Nothing on its way: closed at once.
    let mut c = Client::new(sm_config(10, 100), REMOTE);
    login(&mut c, Some("r"));
    enable(&mut c, false);
    c.c2s
        .close_when_handled(StreamErrorCondition::SystemShutdown, start);
    assert!(c
        .recv()
        .starts_with("<a xmlns='urn:xmpp:sm:3' h='0'/><stream:error>"));
}
