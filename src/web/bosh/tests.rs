//! Unit tests of the BOSH core: parsing, the rid window, hold and wait, inactivity, restarts,
//! terminate, and the glue to a real (sans-IO) `C2s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::c2s::{C2s, C2sConfig, C2sEvent, PeerInfo, TlsMode};
use crate::xml::{Limits, Stanza};

const NS: &str = "xmlns='http://jabber.org/protocol/httpbind'";
const XBOSH: &str = "xmlns:xmpp='urn:xmpp:xbosh'";

fn req(xml: &str) -> Request {
    parse(xml.as_bytes(), &BodyLimits::default()).expect("valid body")
}

fn creation(rid: u64) -> Request {
    creation_with(rid, "")
}

/// [`creation`] with more attributes (`ack='1'`: the client will acknowledge, §9.2).
fn creation_with(rid: u64, extra: &str) -> Request {
    req(&format!(
        "<body {NS} {XBOSH} rid='{rid}' to='example.org' wait='60' hold='1' ver='1.6' {extra} \
         xml:lang='en' xmpp:version='1.0'/>"
    ))
}

/// An empty request acknowledging responses up to rid `ack`.
fn acking(rid: u64, ack: u64) -> Request {
    req(&format!("<body {NS} rid='{rid}' sid='0.x' ack='{ack}'/>"))
}

fn plain(rid: u64, children: &str) -> Request {
    req(&format!(
        "<body {NS} rid='{rid}' sid='0.x'>{children}</body>"
    ))
}

fn body_str(a: &Action) -> String {
    match a {
        Action::Respond { body, .. } => String::from_utf8(body.clone()).unwrap(),
        other => panic!("not a response: {other:?}"),
    }
}

/// The fake C2s's first output (header and features), answering the creation request.
const FIRST: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='example.org' \
     version='1.0'><stream:features><mechanisms/></stream:features>";

/// A session plus a fake C2s: output given to it is scripted by the test.
struct Fixture {
    s: BoshSession,
    now: Instant,
    fed: Vec<Vec<u8>>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(BoshConfig::default())
    }

    fn with(cfg: BoshConfig) -> Fixture {
        Fixture::created(cfg, creation(10))
    }

    /// A session whose client acknowledges responses (§9.2).
    fn acking() -> Fixture {
        Fixture::created(BoshConfig::default(), creation_with(10, "ack='1'"))
    }

    /// A session whose creation request is `first` (rid 10).
    fn created(cfg: BoshConfig, first: Request) -> Fixture {
        let now = Instant::now();
        let s = BoshSession::create(Arc::new(cfg), "0.x".into(), RequestId(1), first, now)
            .expect("creates");
        let mut f = Fixture {
            s,
            now,
            fed: Vec::new(),
        };
        let out = f.drain();
        assert!(out.is_empty(), "creation is held: {out:?}");
        assert!(String::from_utf8_lossy(&f.fed[0]).starts_with("<stream:stream to='example.org'"));
        f.output(FIRST);
        let out = f.drain();
        assert_eq!(out.len(), 1);
        let b = body_str(&out[0]);
        assert!(b.contains("sid='0.x'") && b.contains("authid='abc'"), "{b}");
        assert!(b.contains("<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms/></stream:features></body>"));
        assert!(
            b.contains("xmpp:version='1.0'") && b.contains("requests='2'"),
            "{b}"
        );
        f
    }

    /// Actions, with FeedC2s recorded (and no output from the fake C2s).
    fn drain(&mut self) -> Vec<Action> {
        let mut v = Vec::new();
        while let Some(a) = self.s.poll_action() {
            match a {
                Action::FeedC2s(b) => self.fed.push(b),
                a => v.push(a),
            }
        }
        v
    }

    fn send(&mut self, id: u64, r: Request) -> Vec<Action> {
        self.s.handle_request(RequestId(id), r, self.now);
        self.drain()
    }

    fn output(&mut self, s: &str) {
        self.s.c2s_output(s.as_bytes(), self.now);
    }
}

fn responded(a: &[Action]) -> Vec<u64> {
    a.iter()
        .filter_map(|a| match a {
            Action::Respond { request_id, .. } => Some(request_id.0),
            _ => None,
        })
        .collect()
}

// ---- parsing ----

#[test]
fn parses_attributes_and_children() {
    let r = req(&format!(
        "<?xml version='1.0'?><body {NS} {XBOSH} rid='42' sid='s' xmpp:restart='true' ack='41' \
         pause='30' type='terminate'> <message to='a@b'><body>hi &amp; bye</body></message>\
         <presence/></body>"
    ));
    assert_eq!(r.rid, 42);
    assert_eq!(r.sid.as_deref(), Some("s"));
    assert!(r.restart && r.terminate);
    assert_eq!((r.ack, r.pause), (Some(41), Some(30)));
    assert_eq!(r.children, 2);
    assert_eq!(
        r.payload,
        b" <message to='a@b'><body>hi &amp; bye</body></message><presence/>"
    );
    let c = creation(7);
    assert_eq!(c.to.as_deref(), Some("example.org"));
    assert_eq!((c.wait, c.hold), (Some(60), Some(1)));
    assert_eq!(c.xmpp_version.as_deref(), Some("1.0"));
    assert_eq!(c.lang.as_deref(), Some("en"));
}

#[test]
fn refuses_bad_bodies() {
    let l = BodyLimits::default();
    let bad = |s: &str| parse(s.as_bytes(), &l).unwrap_err();
    assert_eq!(bad("<body rid='1'/>"), BodyError::NotBody);
    assert_eq!(bad(&format!("<body {NS}/>")), BodyError::Attr("rid"));
    assert_eq!(
        bad(&format!("<body {NS} rid='x'/>")),
        BodyError::Attr("rid")
    );
    assert!(matches!(
        bad(&format!("<body {NS} rid='1'><a>")),
        BodyError::Xml(_)
    ));
    assert!(matches!(
        bad(&format!("<body {NS} rid='1'>text</body>")),
        BodyError::Xml(_)
    ));
    assert!(matches!(
        bad(&format!("<body {NS} rid='1'/><x/>")),
        BodyError::Xml(_)
    ));
    assert!(matches!(bad("<!DOCTYPE x><body/>"), BodyError::Xml(_)));
    assert_eq!(bad("<body").condition(), Condition::BadRequest);
    let small = BodyLimits {
        max_body_bytes: 400,
        max_children: 2,
        stanza: Limits {
            max_stanza_bytes: 100,
            ..Limits::default()
        },
    };
    let e = parse(&[b' '; 401], &small).unwrap_err();
    assert_eq!(e, BodyError::TooLarge(400));
    assert_eq!(e.condition(), Condition::PolicyViolation);
    let three = format!("<body {NS} rid='1'><a/><b/><c/></body>");
    assert_eq!(
        parse(three.as_bytes(), &small),
        Err(BodyError::TooManyChildren(2))
    );
    let big = format!("<body {NS} rid='1'><a>{}</a></body>", "x".repeat(130));
    assert_eq!(
        parse(big.as_bytes(), &small).unwrap_err().condition(),
        Condition::PolicyViolation
    );
}

/// The sid of a body that does not parse, read off its start tag; nothing a sid never holds.
#[test]
fn a_broken_body_still_names_its_sid() {
    let sid = new_sid(1).unwrap();
    let broken = format!("<body {NS} rid='7' sid='{sid}'><message><body></message></body>");
    assert!(parse(broken.as_bytes(), &BodyLimits::default()).is_err());
    assert_eq!(sid_of(broken.as_bytes()).as_deref(), Some(sid.as_str()));
    assert_eq!(
        sid_of(b"<?xml version='1.0'?><body rid='1' sid = \"1.ab-c_d\"><a>").as_deref(),
        Some("1.ab-c_d")
    );
    assert_eq!(sid_of(b"<body rid='1'><x sid='1.a'/></body>"), None);
    assert_eq!(sid_of(b"<body rid='1' xsid='1.a'/>"), None);
    assert_eq!(sid_of(b"<body rid='1' sid='1.a&amp;'/>"), None);
    assert_eq!(sid_of(b"<body rid='1' sid='1.a"), None);
    assert_eq!(sid_of(b"<body rid='1' sid=1.a/>"), None);
    assert_eq!(sid_of(b"<body rid='1' sid=''/>"), None);
    assert_eq!(sid_of(b"<body sid"), None);
}

#[test]
fn sids_name_their_shard() {
    let sid = new_sid(3).unwrap();
    assert_eq!(sid_shard(&sid), Some(3));
    assert_ne!(sid, new_sid(3).unwrap());
    assert_eq!(sid_shard("nope"), None);
}

// ---- creation ----

#[test]
fn creation_needs_to_and_clamps() {
    let cfg = Arc::new(BoshConfig {
        max_wait: Duration::from_secs(20),
        max_hold: 2,
        ..BoshConfig::default()
    });
    let no_to = req(&format!("<body {NS} rid='1' ver='1.6'/>"));
    let err = BoshSession::create(cfg.clone(), "s".into(), RequestId(1), no_to, Instant::now());
    let Err(a) = err else { panic!("created") };
    assert!(body_str(&a).contains("condition='improper-addressing'"));
    let greedy = req(&format!(
        "<body {NS} rid='1' to='d' wait='600' hold='9' ver='1.6'/>"
    ));
    let mut s = BoshSession::create(cfg, "s".into(), RequestId(1), greedy, Instant::now()).unwrap();
    s.c2s_output(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features/>", Instant::now());
    let b = std::iter::from_fn(|| s.poll_action())
        .find(|a| matches!(a, Action::Respond { .. }))
        .map(|a| body_str(&a))
        .unwrap();
    assert!(
        b.contains("wait='20'") && b.contains("hold='2'") && b.contains("requests='3'"),
        "{b}"
    );
}

// ---- rid order and window ----

#[test]
fn out_of_order_requests_are_processed_in_rid_order() {
    let mut f = Fixture::new();
    // rid 12 arrives before 11: it waits for the gap.
    let a = f.send(3, plain(12, "<presence/>"));
    assert!(a.is_empty() && f.fed.len() == 1);
    let a = f.send(2, plain(11, "<message/>"));
    assert_eq!(f.fed[1], b"<message/>");
    assert_eq!(f.fed[2], b"<presence/>");
    // Two held with hold=1: the older (rid 11) answered empty.
    assert_eq!(responded(&a), vec![2]);
    assert_eq!(
        body_str(&a[0]),
        format!("<body {NS} xmlns:stream='http://etherx.jabber.org/streams'/>")
    );
}

#[test]
fn rid_outside_the_window_terminates() {
    let mut f = Fixture::new();
    // Answered up to 10, requests=2: 12 is the last rid allowed.
    let a = f.send(2, plain(13, ""));
    assert_eq!(responded(&a), vec![2]);
    assert!(body_str(&a[0]).contains("type='terminate' condition='item-not-found'"));
    assert!(matches!(a.last(), Some(Action::Terminate)));
    assert!(f.s.is_terminated());
    let a = f.send(3, plain(11, ""));
    assert!(body_str(&a[0]).contains("item-not-found"));
}

#[test]
fn repeated_rid_replays_its_response() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    f.output("<message from='a@b'><body>1</body></message>");
    let a = f.drain();
    let first = body_str(&a[0]);
    assert!(
        first.contains("<message xmlns='jabber:client' from='a@b'>"),
        "{first}"
    );
    // The response to rid 11 was lost: the client asks again and gets the same bytes.
    let a = f.send(3, plain(11, ""));
    assert_eq!(responded(&a), vec![3]);
    assert_eq!(body_str(&a[0]), first);
    // Nothing was fed twice.
    assert_eq!(f.fed.len(), 1);
    // The creation response (rid 10) is still there too; anything older is gone.
    let a = f.send(4, plain(10, ""));
    assert!(body_str(&a[0]).contains("sid='0.x'"));
    let a = f.send(5, plain(9, ""));
    assert!(body_str(&a[0]).contains("item-not-found"));
    assert!(f.s.is_terminated());
}

#[test]
fn repeated_held_rid_moves_to_the_new_connection() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    let a = f.send(3, plain(11, ""));
    assert_eq!(responded(&a), vec![2]);
    // §14.3: the superseded connection gets a recoverable error, not an empty body.
    assert!(
        body_str(&a[0]).contains("type='error'"),
        "{}",
        body_str(&a[0])
    );
    f.output("<presence/>");
    let a = f.drain();
    assert_eq!(responded(&a), vec![3]);
}

// ---- hold and wait ----

#[test]
fn hold_answers_the_oldest_and_output_goes_to_a_held_request() {
    let mut f = Fixture::new();
    assert!(f.send(2, plain(11, "")).is_empty());
    let a = f.send(3, plain(12, "<presence/>"));
    assert_eq!(responded(&a), vec![2]);
    f.output("<presence from='x@y'/><message from='x@y'/>");
    let a = f.drain();
    assert_eq!(responded(&a), vec![3]);
    let b = body_str(&a[0]);
    assert!(b.contains("<presence xmlns='jabber:client' from='x@y'/><message xmlns='jabber:client' from='x@y'/>"), "{b}");
    // Output with nobody held waits for the next request.
    f.output("<message from='z@y'/>");
    assert!(f.drain().is_empty());
    assert_eq!(
        f.s.queued_bytes(),
        "<message xmlns='jabber:client' from='z@y'/>".len()
    );
    let a = f.send(4, plain(13, ""));
    assert!(body_str(&a[0]).contains("z@y"));
}

/// The length of [`FIRST`], all of it in the creation response.
const FIRST_OUTPUT: u64 = FIRST.len() as u64;

#[test]
fn a_response_is_delivered_once_its_rid_leaves_the_window() {
    let mut f = Fixture::new();
    // The creation response (rid 10) carried the features: not known to be received yet.
    assert_eq!(f.s.delivered(), 0);
    f.send(2, plain(11, ""));
    assert_eq!(f.s.delivered(), 0, "rid 11 may come while 10 is on its way");
    let m1 = "<message id='1'/>";
    f.output(m1);
    assert_eq!(responded(&f.drain()), vec![2]);
    f.send(3, plain(12, ""));
    assert_eq!(
        f.s.delivered(),
        FIRST_OUTPUT,
        "rid 12: 10 left the window of 2"
    );
    // An element cut by a read is not in any response yet: it does not count when one goes.
    f.output("<message id='2'");
    f.s.handle_timeout(f.now + Duration::from_secs(60));
    assert_eq!(
        responded(&f.drain()),
        vec![3],
        "12 answered empty at its wait"
    );
    f.send(4, plain(13, ""));
    let after_m1 = FIRST_OUTPUT + m1.len() as u64;
    assert_eq!(
        f.s.delivered(),
        after_m1,
        "rid 13: 11 (with m1) left the window"
    );
    f.output("/>");
    assert_eq!(responded(&f.drain()), vec![4]);
    f.send(5, plain(14, ""));
    assert_eq!(
        f.s.delivered(),
        after_m1,
        "12 was empty, 13 still in the window"
    );
    f.send(6, plain(15, ""));
    assert_eq!(f.s.delivered(), after_m1 + "<message id='2'/>".len() as u64);
}

#[test]
fn an_acknowledging_client_confirms_what_it_received() {
    let mut f = Fixture::acking();
    f.send(2, acking(11, 10));
    assert_eq!(f.s.delivered(), FIRST_OUTPUT, "ack='10'");
    f.output("<message id='1'/>");
    assert_eq!(responded(&f.drain()), vec![2]);
    // 11 answered, but the client says it has only up to 10.
    f.send(3, acking(12, 10));
    assert_eq!(f.s.delivered(), FIRST_OUTPUT);
    f.output("<message id='2'/>");
    assert_eq!(responded(&f.drain()), vec![3]);
    // No `ack`: every response before this request arrived (§9.2).
    f.send(4, plain(13, ""));
    assert_eq!(
        f.s.delivered(),
        FIRST_OUTPUT + 2 * "<message id='1'/>".len() as u64
    );
}

#[test]
fn an_unacknowledged_response_can_be_asked_for_again() {
    let mut f = Fixture::acking();
    f.send(2, acking(11, 10));
    f.output("<message id='lost'/>");
    let a = f.drain();
    let lost = body_str(&a[0]);
    // Three more answered, the client still without 11 (a window of 2 would have let it go).
    for i in 0..3u64 {
        f.send(3 + i, acking(12 + i, 10));
        f.output("<message/>");
        assert_eq!(responded(&f.drain()), vec![3 + i]);
    }
    let a = f.send(9, req(&format!("<body {NS} rid='11' sid='0.x'/>")));
    assert_eq!(body_str(&a[0]), lost, "replayed");
    assert!(!f.s.is_terminated());
    // Acknowledged, it goes: asked for again, the session ends.
    f.send(10, req(&format!("<body {NS} rid='15' sid='0.x'/>")));
    f.output("<message/>");
    f.drain();
    let a = f.send(11, req(&format!("<body {NS} rid='11' sid='0.x'/>")));
    assert!(body_str(&a[0]).contains("item-not-found"), "{:?}", a[0]);
}

#[test]
fn a_response_missing_for_a_while_is_reported() {
    let mut f = Fixture::acking();
    f.send(2, acking(11, 10));
    f.output("<message id='lost'/>");
    let lost = body_str(&f.drain()[0]);
    // Half a second after it went, an `ack` without it is no news: it may be on its way.
    f.now += Duration::from_millis(500);
    f.send(3, acking(12, 10));
    assert!(f.drain().is_empty(), "12 is held");
    f.now += Duration::from_secs(60);
    f.s.handle_timeout(f.now);
    assert_eq!(responded(&f.drain()), vec![3], "12 answered at its wait");
    // A minute on, still not acknowledged: the next request is answered at once, with a report.
    f.now += Duration::from_millis(500);
    let a = f.send(4, acking(13, 10));
    assert_eq!(responded(&a), vec![4], "answered at once");
    let b = body_str(&a[0]);
    assert!(
        b.contains("report='11'") && b.contains("time='61000'"),
        "{b}"
    );
    // Told once: the next lagging `ack` is held as usual.
    assert!(f.send(5, acking(14, 10)).is_empty());
    let a = f.send(6, req(&format!("<body {NS} rid='11' sid='0.x'/>")));
    assert_eq!(body_str(&a[0]), lost);
}

#[test]
fn a_client_whose_ack_stays_behind_keeps_a_bounded_window() {
    let mut f = Fixture::acking();
    let m = "<message/>".len() as u64;
    // Every request acknowledges only the creation response; each is answered with a message.
    for i in 0..12u64 {
        let rid = 11 + i;
        f.send(2 + i, acking(rid, 10));
        // Responses 8 (4 x requests) or more behind count whatever the `ack` says.
        let behind = (rid - 8).saturating_sub(10);
        assert_eq!(f.s.delivered(), FIRST_OUTPUT + behind * m, "rid {rid}");
        f.output("<message/>");
        assert_eq!(responded(&f.drain()), vec![2 + i]);
    }
    assert!(!f.s.is_terminated());
    // Replays stay bounded the same way: rid 12 is no longer kept, rid 15 is.
    let a = f.send(20, acking(15, 10));
    assert!(body_str(&a[0]).contains("<message"), "{:?}", a[0]);
    let a = f.send(21, acking(12, 10));
    assert!(body_str(&a[0]).contains("item-not-found"), "{:?}", a[0]);
}

#[test]
fn what_a_session_never_answered_is_not_delivered() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    f.output("<message id='1'/>");
    assert_eq!(responded(&f.drain()), vec![2]);
    // Nobody held: this one waits in the queue, and the client never comes back.
    f.output("<message id='2'/>");
    assert!(f.drain().is_empty());
    f.s.handle_timeout(f.now + Duration::from_secs(30));
    assert!(f.s.is_terminated());
    assert_eq!(f.s.delivered(), 0, "neither 10, nor 11, nor the queue");
}

#[test]
fn a_terminate_answer_is_empty_and_the_queue_is_not_delivered() {
    // §13: the client's terminate is answered with an empty body (StanzaJS threw on stanzas in
    // it); what waited in the queue goes back to the session manager, not to the client.
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    f.output("<message id='1'/>");
    f.drain();
    f.output("<message id='2'/>");
    let r = req(&format!("<body {NS} rid='12' sid='0.x' type='terminate'/>"));
    let a = f.send(3, r);
    let b = body_str(&a[0]);
    assert!(
        b.contains("type='terminate'") && !b.contains("<message"),
        "{b}"
    );
    assert!(f.s.delivered() < FIRST_OUTPUT + 2 * "<message id='1'/>".len() as u64);
}

#[test]
fn wait_answers_a_held_request_empty() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    let due = f.s.next_timeout().unwrap();
    assert_eq!(due, f.now + Duration::from_secs(60));
    f.s.handle_timeout(due - Duration::from_millis(1));
    assert!(f.drain().is_empty());
    f.s.handle_timeout(due);
    let a = f.drain();
    assert_eq!(responded(&a), vec![2]);
    assert!(!f.s.is_terminated());
}

#[test]
fn inactivity_ends_the_session() {
    let mut f = Fixture::new();
    // Nothing held after the creation response: the inactivity clock runs.
    let due = f.s.next_timeout().unwrap();
    assert_eq!(due, f.now + Duration::from_secs(30));
    f.s.handle_timeout(due);
    assert_eq!(f.drain(), vec![Action::Terminate]);
    assert!(f.s.next_timeout().is_none());
}

#[test]
fn a_gap_that_never_fills_does_not_keep_the_session() {
    let mut f = Fixture::new();
    // rid 11 never comes: 12 waits, nothing is held, the inactivity clock runs.
    assert!(f.send(2, plain(12, "")).is_empty());
    let due = f.s.next_timeout().unwrap();
    assert_eq!(due, f.now + Duration::from_secs(30));
    f.s.handle_timeout(due);
    let a = f.drain();
    assert_eq!(responded(&a), vec![2]);
    assert!(body_str(&a[0]).contains("type='terminate'"));
    assert!(f.s.is_terminated());
}

#[test]
fn a_replay_restarts_the_inactivity_clock() {
    let mut f = Fixture::new();
    f.now += Duration::from_secs(20);
    let a = f.send(2, plain(10, ""));
    assert!(body_str(&a[0]).contains("sid='0.x'"));
    assert_eq!(f.s.next_timeout(), Some(f.now + Duration::from_secs(30)));
}

#[test]
fn pause_answers_everything_and_stretches_inactivity() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    let a = f.send(
        3,
        req(&format!("<body {NS} rid='12' sid='0.x' pause='90'/>")),
    );
    assert_eq!(responded(&a), vec![3, 2]);
    assert_eq!(f.s.next_timeout(), Some(f.now + Duration::from_secs(90)));
}

#[test]
fn a_pause_request_delivers_its_stanzas() {
    let mut f = Fixture::new();
    let a = f.send(
        2,
        req(&format!(
            "<body {NS} rid='11' sid='0.x' pause='60'><message to='b@example.org'><body>x</body></message></body>"
        )),
    );
    assert_eq!(responded(&a), vec![2]);
    assert_eq!(
        f.fed
            .last()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        Some("<message to='b@example.org'><body>x</body></message>".to_owned())
    );
}

// ---- restart, terminate, stream end ----

#[test]
fn restart_feeds_a_new_header_and_drops_the_servers() {
    let mut f = Fixture::new();
    f.send(
        2,
        plain(11, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
    );
    f.output("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert!(body_str(&f.drain()[0]).contains("<success"));
    let r = req(&format!(
        "<body {NS} {XBOSH} rid='12' sid='0.x' xmpp:restart='true'/>"
    ));
    assert!(f.send(3, r).is_empty());
    assert!(String::from_utf8_lossy(f.fed.last().unwrap())
        .starts_with("<stream:stream to='example.org'"));
    f.output("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='def'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
    let a = f.drain();
    let b = body_str(&a[0]);
    assert!(
        !b.contains("stream:stream")
            && b.contains("<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind"),
        "{b}"
    );
}

#[test]
fn terminate_delivers_its_stanzas_first() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    let r = req(&format!(
        "<body {NS} rid='12' sid='0.x' type='terminate'><presence type='unavailable'/></body>"
    ));
    let a = f.send(3, r);
    assert_eq!(
        f.fed.last().unwrap(),
        b"<presence type='unavailable'/></stream:stream>"
    );
    assert_eq!(responded(&a), vec![3, 2]);
    assert!(body_str(&a[0]).contains("type='terminate'"));
    assert!(matches!(a.last(), Some(Action::Terminate)));
}

#[test]
fn stream_error_becomes_remote_stream_error() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    f.output("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>");
    let a = f.drain();
    let b = body_str(&a[0]);
    assert!(
        b.contains("condition='remote-stream-error'")
            && b.contains(
                "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict"
            ),
        "{b}"
    );
    assert!(matches!(a.last(), Some(Action::Terminate)));
}

#[test]
fn a_close_with_nobody_held_waits_for_the_next_request() {
    let mut f = Fixture::new();
    f.output("<message/></stream:stream>");
    assert!(f.drain().is_empty());
    let a = f.send(2, plain(11, ""));
    let b = body_str(&a[0]);
    assert!(
        b.contains("type='terminate'") && b.contains("<message xmlns='jabber:client'/>"),
        "{b}"
    );
    assert!(matches!(a.last(), Some(Action::Terminate)));
}

// ---- with a real C2s ----

fn c2s_config() -> C2sConfig {
    C2sConfig {
        post_auth_features: Vec::new(),
        bind2_features: Vec::new(),
        hosts: vec!["example.org".to_string()],
        tls_mode: TlsMode::None,
        tls: None,
        tls_cert: None,
        allow_plaintext_on_loopback: true,
        sasl2: true,
        transport_secure: false,
        limits: Limits::default(),
        outbound_queue_bytes: 64 * 1024,
        auth_timeout: Duration::from_secs(30),
        idle_timeout: Duration::ZERO,
        ping_interval: Duration::ZERO,
        ping_timeout: Duration::from_secs(32),
        register: false,
        sm: None,
    }
}

/// Carries out actions the way a driver does; the C2s's PLAIN checks all succeed.
fn run(s: &mut BoshSession, c2s: &mut C2s, now: Instant) -> Vec<Action> {
    let mut v = Vec::new();
    while let Some(a) = s.poll_action() {
        match a {
            Action::FeedC2s(b) => {
                c2s.handle_input(&b, now);
                while let Some(ev) = c2s.poll_event() {
                    match ev {
                        C2sEvent::VerifyPlain { .. } => c2s.plain_verified(true),
                        C2sEvent::BindRequest { jid } => c2s.bind_result(Ok(jid)),
                        C2sEvent::Closed { .. } => s.c2s_closed(now),
                        _ => {}
                    }
                }
                let mut out = Vec::new();
                c2s.take_transmit(&mut out);
                s.c2s_output(&out, now);
            }
            a => v.push(a),
        }
    }
    v
}

#[test]
fn drives_a_c2s_through_sasl_restart_and_bind() {
    let now = Instant::now();
    let peer = PeerInfo {
        addr: "127.0.0.1:5000".parse().unwrap(),
    };
    let mut c2s = C2s::new(Arc::new(c2s_config()), peer, now);
    let cfg = Arc::new(BoshConfig::default());
    let mut s = BoshSession::create(cfg, "0.s".into(), RequestId(1), creation(100), now).unwrap();
    let a = run(&mut s, &mut c2s, now);
    let b = body_str(&a[0]);
    assert!(b.contains(&format!("authid='{}'", c2s.stream_id())), "{b}");
    assert!(b.contains("<mechanism>PLAIN</mechanism>"), "{b}");
    // "\0alice\0secret"
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>";
    s.handle_request(RequestId(2), plain(101, auth), now);
    let a = run(&mut s, &mut c2s, now);
    assert_eq!(responded(&a), vec![2]);
    assert!(body_str(&a[0]).contains("<success"), "{}", body_str(&a[0]));
    let r = req(&format!(
        "<body {NS} {XBOSH} rid='102' sid='0.s' xmpp:restart='true'/>"
    ));
    s.handle_request(RequestId(3), r, now);
    let a = run(&mut s, &mut c2s, now);
    let b = body_str(&a[0]);
    assert!(
        b.contains("<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind"),
        "{b}"
    );
    let bind = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>";
    s.handle_request(RequestId(4), plain(103, bind), now);
    let a = run(&mut s, &mut c2s, now);
    let b = body_str(&a[0]);
    assert!(b.contains("<jid>alice@example.org/r</jid>"), "{b}");
    assert!(c2s.jid().is_some());
    // A routed stanza reaches a held request.
    s.handle_request(RequestId(5), plain(104, ""), now);
    assert!(run(&mut s, &mut c2s, now).is_empty());
    c2s.deliver(
        b"<message from='bob@example.org/x' to='alice@example.org/r'><body>hi</body></message>",
    )
    .unwrap();
    let mut out = Vec::new();
    c2s.take_transmit(&mut out);
    s.c2s_output(&out, now);
    let a = run(&mut s, &mut c2s, now);
    assert_eq!(responded(&a), vec![5]);
    assert!(body_str(&a[0]).contains("<body>hi</body>"));
    // Terminate closes the C2s.
    let r = req(&format!(
        "<body {NS} rid='105' sid='0.s' type='terminate'/>"
    ));
    s.handle_request(RequestId(6), r, now);
    let a = run(&mut s, &mut c2s, now);
    assert!(matches!(a.last(), Some(Action::Terminate)));
    assert!(c2s.is_closed());
}

#[test]
fn legacy_clients_get_http_error_codes() {
    let now = Instant::now();
    let legacy = req(&format!("<body {NS} rid='1' to='example.org'/>"));
    let cfg = Arc::new(BoshConfig::default());
    let mut s = BoshSession::create(cfg, "0.l".into(), RequestId(1), legacy, now).unwrap();
    s.handle_request(RequestId(2), plain(50, ""), now);
    let a: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    let status = a.iter().find_map(|a| match a {
        Action::Respond {
            request_id: RequestId(2),
            status,
            ..
        } => Some(*status),
        _ => None,
    });
    assert_eq!(status, Some(404));
    assert_eq!(Condition::ItemNotFound.status(false), 200);
    assert_eq!(Condition::BadRequest.status(true), 400);
}

#[test]
fn a_restart_is_found_in_the_output_itself() {
    let mut f = Fixture::new();
    f.send(2, plain(11, ""));
    // The old stream's last element and the new stream's header in one read.
    f.output("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='n2'><stream:features/>");
    let a = f.drain();
    let b = body_str(&a[0]);
    assert!(
        b.contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"),
        "{b}"
    );
    assert!(!f.s.is_terminated());
}

#[test]
fn a_polling_client_still_gets_features_with_its_session() {
    let now = Instant::now();
    let r = req(&format!(
        "<body {NS} rid='1' to='example.org' hold='0' ver='1.6'/>"
    ));
    let cfg = Arc::new(BoshConfig::default());
    let mut s = BoshSession::create(cfg, "0.p".into(), RequestId(1), r, now).unwrap();
    let a: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(matches!(&a[..], [Action::FeedC2s(_)]), "{a:?}");
    s.c2s_output(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='i'><stream:features/>", now);
    let a: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    let b = body_str(&a[0]);
    assert!(
        b.contains("hold='0'") && b.contains("<stream:features"),
        "{b}"
    );
    // Later requests of a polling client are answered at once.
    s.handle_request(RequestId(2), plain(2, ""), now);
    let a: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert_eq!(responded(&a), vec![2]);
}

// ---- every request is answered exactly once ----

mod answered_once {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A request: rid relative to the next expected one (may repeat or skip), and its kind.
        Request(i8, u8),
        /// Output from the C2s: one of a few pieces.
        Output(u8),
        /// Time passes (seconds).
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-3i8..4, 0u8..6).prop_map(|(r, k)| Op::Request(r, k)),
            2 => (0u8..5).prop_map(Op::Output),
            1 => (0u8..90).prop_map(Op::Advance),
        ]
    }

    const OUTPUT: [&str; 5] = [
        "<message from='a@b'><body>x</body></message>",
        "<presence/>",
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='r'><stream:features/>",
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
        "</stream:stream>",
    ];

    fn request(rid: u64, kind: u8) -> Request {
        let extra = match kind {
            0 | 1 => "",
            2 => " type='terminate'",
            3 => " xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'",
            4 => " pause='20'",
            _ => "",
        };
        let children = if kind == 1 || kind == 5 {
            "<presence/>"
        } else {
            ""
        };
        req(&format!(
            "<body {NS} rid='{rid}' sid='0.f'{extra}>{children}</body>"
        ))
    }

    proptest! {
        #[test]
        fn every_request_gets_one_response(ops in proptest::collection::vec(op(), 0..40)) {
            let mut now = Instant::now();
            let cfg = Arc::new(BoshConfig::default());
            let mut s = BoshSession::create(cfg, "0.f".into(), RequestId(0), creation(100), now)
                .expect("creates");
            let mut open = std::collections::HashSet::from([0u64]);
            let mut next_id = 1;
            let mut next_rid = 101u64;
            let check = |s: &mut BoshSession, open: &mut std::collections::HashSet<u64>| {
                while let Some(a) = s.poll_action() {
                    if let Action::Respond { request_id, body, .. } = a {
                        prop_assert!(open.remove(&request_id.0), "answered twice or unknown: {request_id:?}");
                        prop_assert!(Stanza::parse(body).is_ok(), "a response is not one element");
                    }
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Request(off, kind) => {
                        let rid = next_rid.saturating_add_signed(off as i64).max(1);
                        if rid == next_rid {
                            next_rid += 1;
                        }
                        open.insert(next_id);
                        s.handle_request(RequestId(next_id), request(rid, kind), now);
                        next_id += 1;
                    }
                    Op::Output(i) => s.c2s_output(OUTPUT[i as usize].as_bytes(), now),
                    Op::Advance(secs) => {
                        now += Duration::from_secs(secs as u64);
                        s.handle_timeout(now);
                    }
                }
                check(&mut s, &mut open)?;
            }
            // Without more requests every held one times out and the session ends.
            while let Some(t) = s.next_timeout() {
                now = now.max(t);
                s.handle_timeout(now);
                check(&mut s, &mut open)?;
            }
            prop_assert!(s.is_terminated());
            prop_assert!(open.is_empty(), "never answered: {open:?}");
        }
    }
}

#[test]
fn a_stream_error_waiting_for_a_request_is_not_replaced_by_the_close() {
    let mut f = Fixture::new();
    // No request held when the error and, in a later take, the end tag arrive.
    f.output(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    f.output("</stream:stream>");
    let a = f.send(2, plain(11, ""));
    let b = body_str(&a[0]);
    assert!(
        b.contains("condition='remote-stream-error'") && b.contains("<conflict"),
        "{b}"
    );
}

#[test]
fn the_session_speaks_the_lower_version() {
    use super::wire::session_version;
    assert_eq!(session_version(Some("1.6")), "1.6");
    assert_eq!(session_version(Some("1.11")), "1.11");
    assert_eq!(session_version(Some("1.20")), "1.11");
    assert_eq!(session_version(Some("2.0")), "1.11");
    assert_eq!(session_version(Some("x")), "1.11");
    assert_eq!(session_version(None), "1.11");
}
