//! Push on socket-free shard clusters: an in-process app server (a local route) records the
//! publishes and answers them when told to.

use crate::xml::StanzaType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::iq::{parse, Command};
use super::state::{in_flight, Home};
use crate::c2s::route::unbind;
use crate::c2s::{SmConfig, SmState};
use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::modules::stream_mgmt::park::Park;
use crate::modules::testing::{error_condition, World};
use crate::xml::Stanza;
use crate::xmpp::{form, StanzaErrorCondition};

const APP: &str = "push.example.net";
const ALICE: &str = "alice@example.com";

/// The app server: publishes it got, not answered yet.
#[derive(Clone, Default)]
struct App(Rc<RefCell<Vec<Acc>>>);

impl App {
    fn install(w: &mut World) -> App {
        let app = App::default();
        for s in &mut w.cluster.shards {
            let got = app.0.clone();
            s.register_route(APP, Rc::new(move |_, acc| got.borrow_mut().push(acc)));
        }
        app
    }

    fn take(&self) -> Vec<Acc> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Answers `req` (result, or `cond` as an error) as the app server would.
    fn answer(w: &mut World, req: &Acc, cond: Option<StanzaErrorCondition>) {
        let on = req.from.domain().len() % w.cluster.shards.len();
        let shard = &mut w.cluster.shards[on];
        let reply = match cond {
            None => Some(crate::local::result_reply(req, None, shard.id)),
            Some(c) => req.error_reply(c, shard.id),
        };
        if let Some(r) = reply {
            crate::router::route(shard, r);
        }
        // What the answer's callback queued, as the shard's route loop would.
        shard.drain_to_route();
        w.cluster.pump();
    }
}

/// The summary form's fields of a publish: (var, value).
fn summary(acc: &Acc) -> Vec<(String, String)> {
    let t = acc.stanza.tree().unwrap_or_else(|e| panic!("{e}"));
    let ps = crate::modules::pubsub::core::ns::PUBSUB;
    let x = t
        .get_child("pubsub", ps)
        .and_then(|p| p.get_child("publish", ps))
        .and_then(|p| p.get_child("item", ps))
        .and_then(|i| i.get_child("notification", super::NS))
        .and_then(|n| n.get_child("x", form::NS))
        .unwrap_or_else(|| panic!("no summary in {t:?}"));
    x.child_elements()
        .map(|f| {
            let v = f.get_child("value", form::NS).map(|v| v.text());
            (
                f.attr("var").unwrap_or("").to_owned(),
                v.unwrap_or_default(),
            )
        })
        .collect()
}

fn field(acc: &Acc, var: &str) -> Option<String> {
    summary(acc)
        .into_iter()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v)
}

fn world(shards: usize, push: &str) -> (World, App) {
    let mut w = World::new(
        shards,
        &format!("[modules.offline]\n[modules.stream_management]\n[modules.push]\n{push}"),
    );
    let app = App::install(&mut w);
    (w, app)
}

fn enable(w: &mut World, on: usize, res: &str, node: &str, form: &str) -> Stanza {
    let mut u = w.connect(on, &format!("{ALICE}/{res}"), None);
    let r = w.iq(
        &mut u,
        &format!("<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{form}</enable></iq>"),
    );
    unbind(&mut w.cluster.shards[on], &u.sess);
    w.cluster.pump();
    r
}

fn chat(w: &mut World, from: &mut crate::modules::testing::User, to: &str, body: &str) {
    w.send(
        from,
        &format!("<message to='{to}' type='chat'><body>{body}</body></message>"),
    );
}

/// The element tree of `x`.
fn el(x: &str) -> crate::xml::Element {
    Stanza::parse(x.as_bytes().to_vec())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ok(s: &Stanza) {
    assert_eq!(s.type_().as_deref(), Some("result"), "{:?}", s.tree());
}

#[test]
fn requests_parse_and_bad_ones_are_bad_request() {
    let bad = Err(StanzaErrorCondition::BadRequest);
    let ns = "xmlns='urn:xmpp:push:0'";
    assert_eq!(
        parse(StanzaType::Set, &el(&format!("<enable {ns} node='n'/>"))),
        bad
    );
    assert_eq!(
        parse(StanzaType::Set, &el(&format!("<enable {ns} jid='a.b'/>"))),
        bad
    );
    assert_eq!(
        parse(
            StanzaType::Get,
            &el(&format!("<enable {ns} jid='a.b' node='n'/>"))
        ),
        bad
    );
    assert_eq!(
        parse(StanzaType::Set, &el(&format!("<disable {ns}/>"))),
        bad
    );
    assert_eq!(
        parse(
            StanzaType::Set,
            &el(&format!("<disable {ns} jid='a.b' node=''/>"))
        ),
        bad
    );
    assert_eq!(
        parse(
            StanzaType::Set,
            &el(&format!("<enable {ns} jid='a.b' node=''/>"))
        ),
        bad
    );
    assert_eq!(
        parse(
            StanzaType::Set,
            &el(&format!("<enable {ns} jid='' node='n'/>"))
        ),
        bad
    );
    // A form that is not publish-options.
    let junk = format!(
        "<enable {ns} jid='a.b' node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:junk</value></field></x></enable>"
    );
    assert_eq!(parse(StanzaType::Set, &el(&junk)), bad);
    let unnamed = format!("<enable {ns} jid='a.b' node='n'><x xmlns='jabber:x:data'><field><value>1</value></field></x></enable>");
    assert_eq!(parse(StanzaType::Set, &el(&unnamed)), bad);
    assert!(matches!(
        parse(StanzaType::Set, &el(&format!("<disable {ns} jid='a.b'/>"))),
        Ok(Command::Disable { node: None, .. })
    ));
}

#[test]
fn a_node_or_form_past_its_bound_is_not_acceptable() {
    let no = Err(StanzaErrorCondition::NotAcceptable);
    let ns = "xmlns='urn:xmpp:push:0'";
    let at = "n".repeat(super::MAX_NODE_BYTES);
    let over = format!("{at}n");
    let enable = |node: &str| format!("<enable {ns} jid='a.b' node='{node}'/>");
    assert!(parse(StanzaType::Set, &el(&enable(&at))).is_ok());
    assert_eq!(parse(StanzaType::Set, &el(&enable(&over))), no);
    assert_eq!(
        parse(
            StanzaType::Set,
            &el(&format!("<disable {ns} jid='a.b' node='{over}'/>"))
        ),
        no
    );
    let form = |filler: usize| {
        format!(
            "<enable {ns} jid='a.b' node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{}</value></field><field var='secret'><value>{}</value></field></x></enable>",
            crate::modules::pubsub::core::ns::PUBLISH_OPTIONS,
            "s".repeat(filler)
        )
    };
    assert!(parse(StanzaType::Set, &el(&form(1000))).is_ok());
    assert_eq!(
        parse(StanzaType::Set, &el(&form(super::MAX_FORM_BYTES))),
        no
    );
}

#[test]
fn offline_messages_publish_a_coalesced_summary_without_body() {
    for shards in [1, 3] {
        let (mut w, app) = world(shards, "");
        ok(&enable(&mut w, 0, "phone", "n1", ""));
        let mut bob = w.connect(shards - 1, "bob@example.com/b", Some(0));
        chat(&mut w, &mut bob, ALICE, "one");
        chat(&mut w, &mut bob, ALICE, "two");
        chat(&mut w, &mut bob, ALICE, "three");
        // One publish in flight: the next two wait, coalesced.
        let got = app.take();
        assert_eq!(got.len(), 1);
        let p = &got[0];
        assert_eq!(p.from.as_str(), ALICE);
        assert_eq!(p.to.as_str(), APP);
        assert_eq!(p.stanza.type_().as_deref(), Some("set"));
        assert_eq!(field(p, "FORM_TYPE").as_deref(), Some(super::NS_SUMMARY));
        assert_eq!(field(p, "message-count").as_deref(), Some("1"));
        assert_eq!(
            field(p, "last-message-sender").as_deref(),
            Some("bob@example.com/b")
        );
        assert_eq!(field(p, "last-message-body"), None);
        App::answer(&mut w, p, None);
        let got = app.take();
        assert_eq!(got.len(), 1, "the coalesced publish after the answer");
        assert_eq!(field(&got[0], "message-count").as_deref(), Some("3"));
        App::answer(&mut w, &got[0], None);
        assert!(app.take().is_empty());
    }
}

#[test]
fn count_restarts_when_the_user_is_back_and_disable_stops_publishes() {
    let (mut w, app) = world(2, "");
    ok(&enable(&mut w, 1, "phone", "n1", ""));
    let mut bob = w.connect(0, "bob@example.com/b", Some(0));
    chat(&mut w, &mut bob, ALICE, "one");
    let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    App::answer(&mut w, &p, None);
    let a = w.connect(1, &format!("{ALICE}/desk"), Some(0));
    unbind(&mut w.cluster.shards[1], &a.sess);
    w.cluster.pump();
    // The offline message delivered at login was not counted again, and the count restarted.
    chat(&mut w, &mut bob, ALICE, "two");
    let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    assert_eq!(field(&p, "message-count").as_deref(), Some("1"));
    App::answer(&mut w, &p, None);
    let mut u = w.connect(0, &format!("{ALICE}/x"), None);
    let r = w.iq(
        &mut u,
        &format!("<iq type='set' id='d'><disable xmlns='urn:xmpp:push:0' jid='{APP}'/></iq>"),
    );
    ok(&r);
    unbind(&mut w.cluster.shards[0], &u.sess);
    w.cluster.pump();
    chat(&mut w, &mut bob, ALICE, "three");
    assert!(app.take().is_empty());
    assert!(w.store().push_list(ALICE).unwrap_or_default().is_empty());
}

#[test]
fn an_error_answer_or_repeated_timeouts_disable_the_registration() {
    let (mut w, app) = world(2, "timeout = 5");
    ok(&enable(&mut w, 0, "phone", "n1", ""));
    ok(&enable(&mut w, 0, "phone", "n2", ""));
    let mut bob = w.connect(1, "bob@example.com/b", Some(0));
    chat(&mut w, &mut bob, ALICE, "one");
    let got = app.take();
    assert_eq!(got.len(), 2);
    let (n1, n2): (Vec<_>, Vec<_>) = got.into_iter().partition(|a| {
        let t = a.stanza.tree().unwrap_or_else(|e| panic!("{e}"));
        format!("{t:?}").contains("n1")
    });
    App::answer(&mut w, &n1[0], Some(StanzaErrorCondition::ItemNotFound));
    let left = w.store().push_list(ALICE).unwrap_or_default();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].node, "n2");
    // A temporary error (type wait) keeps n2, counted as a timeout; then it never answers: three
    // in a row disable it.
    App::answer(
        &mut w,
        &n2[0],
        Some(StanzaErrorCondition::ResourceConstraint),
    );
    let left = w.store().push_list(ALICE).unwrap_or_default();
    assert_eq!(left.len(), 1);
    let mut later = Instant::now();
    for _ in 0..super::MAX_TIMEOUTS {
        later += Duration::from_secs(10);
        for s in &mut w.cluster.shards {
            s.expire_iqs(later);
        }
        w.cluster.pump();
        let still = w.store().push_list(ALICE).unwrap_or_default().len();
        chat(&mut w, &mut bob, ALICE, "again");
        let sent = app.take();
        assert!(sent.len() <= 1);
        if still == 0 {
            assert!(sent.is_empty());
        }
    }
    assert!(w.store().push_list(ALICE).unwrap_or_default().is_empty());
    let home = crate::shard::home_shard_of(ALICE, 2).index();
    let h = w.cluster.shards[home].ext.get::<Home>();
    assert_eq!(h.map(|h| in_flight(h, ALICE)), Some(0));
}

#[test]
fn a_component_app_server_that_is_down_keeps_the_registration() {
    // The app server is a configured external component that is not connected: the server answers
    // the publishes itself with a temporary error (an outage), counted like a timeout: one does not
    // disable the registration.
    let mut w = World::new(
        2,
        "[modules.offline]\n[modules.stream_management]\n[modules.push]\ntimeout = 5",
    );
    for s in &mut w.cluster.shards {
        s.ext
            .insert(crate::component::Routes::new([APP.to_owned()]));
    }
    ok(&enable(&mut w, 0, "phone", "n1", ""));
    let mut bob = w.connect(1, "bob@example.com/b", Some(0));
    for _ in 1..super::MAX_TIMEOUTS {
        chat(&mut w, &mut bob, ALICE, "one");
        let left = w.store().push_list(ALICE).unwrap_or_default();
        assert_eq!(left.len(), 1, "disabled by the server's own error");
    }
    let home = crate::shard::home_shard_of(ALICE, 2).index();
    let h = w.cluster.shards[home].ext.get::<Home>();
    assert_eq!(h.map(|h| in_flight(h, ALICE)), Some(0));
}

#[test]
fn a_reenable_during_a_publish_outlives_the_old_publishs_error() {
    let (mut w, app) = world(2, "");
    ok(&enable(&mut w, 0, "phone", "n1", ""));
    let mut bob = w.connect(1, "bob@example.com/b", Some(0));
    chat(&mut w, &mut bob, ALICE, "one");
    let old = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    // The same service and node enabled again while that publish waits for its answer.
    ok(&enable(&mut w, 1, "tablet", "n1", ""));
    App::answer(&mut w, &old, Some(StanzaErrorCondition::ItemNotFound));
    let left = w.store().push_list(ALICE).unwrap_or_default();
    assert_eq!(
        left.len(),
        1,
        "the re-enable was disabled by the old answer"
    );
    let home = crate::shard::home_shard_of(ALICE, 2).index();
    let h = w.cluster.shards[home].ext.get::<Home>();
    assert_eq!(
        h.and_then(|h| h.registrations(ALICE)).map(<[_]>::len),
        Some(1)
    );
    // It still notifies.
    chat(&mut w, &mut bob, ALICE, "two");
    assert_eq!(app.take().len(), 1);
}

#[test]
fn bodies_follow_the_policy_and_the_users_request() {
    let ask = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{}</value></field><field var='secret'><value>s3</value></field><field var='{}'><value>true</value></field></x>",
        crate::modules::pubsub::core::ns::PUBLISH_OPTIONS,
        super::INCLUDE_BODY_FIELD
    );
    for (policy, asked, expect) in [
        ("never", true, false),
        ("on_request", false, false),
        ("on_request", true, true),
        ("always", false, true),
    ] {
        let (mut w, app) = world(1, &format!("include_body = \"{policy}\""));
        ok(&enable(
            &mut w,
            0,
            "phone",
            "n",
            if asked { &ask } else { "" },
        ));
        let mut bob = w.connect(0, "bob@example.com/b", Some(0));
        chat(&mut w, &mut bob, ALICE, "hello");
        let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
        let body = field(&p, "last-message-body");
        assert_eq!(body.is_some(), expect, "{policy} {asked}");
        if expect {
            assert_eq!(body.as_deref(), Some("hello"));
        }
        // The publish-options go along, without the server's own field.
        let t = p.stanza.tree().unwrap_or_else(|e| panic!("{e}"));
        let ps = crate::modules::pubsub::core::ns::PUBSUB;
        let opts = t
            .get_child("pubsub", ps)
            .and_then(|p| p.get_child("publish-options", ps));
        assert_eq!(opts.is_some(), asked);
        if let Some(o) = opts {
            let s = format!("{o:?}");
            assert!(
                s.contains("s3") && !s.contains(super::INCLUDE_BODY_FIELD),
                "{s}"
            );
        }
    }
}

#[test]
fn registrations_are_bounded_and_only_the_account_enables() {
    let (mut w, _app) = world(1, "max_per_user = 2");
    ok(&enable(&mut w, 0, "phone", "n1", ""));
    ok(&enable(&mut w, 0, "phone", "n2", ""));
    // The same node again replaces it.
    ok(&enable(&mut w, 0, "tablet", "n2", ""));
    let r = enable(&mut w, 0, "phone", "n3", "");
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    let mut bob = w.connect(0, "bob@example.com/b", Some(0));
    // The offline module's hold marker (stopped before the socket, see `offline::hold`).
    while bob.mb.pop().is_some() {}
    // RFC 6121 §8.5.1: an account that does not exist is service-unavailable; alice's, forbidden.
    let r = w.iq(
        &mut bob,
        &format!("<iq type='set' id='e' to='nobody@example.com'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='x'/></iq>"),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    let r = w.iq(
        &mut bob,
        &format!("<iq type='set' id='e' to='{ALICE}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='x'/></iq>"),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let mut a = w.connect(0, &format!("{ALICE}/r"), None);
    let r = w.iq(
        &mut a,
        "<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' node='x'/></iq>",
    );
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
    let mut regs = w.store().push_list(ALICE).unwrap_or_default();
    regs.sort_by(|a, b| a.node.cmp(&b.node));
    let r: Vec<_> = regs
        .iter()
        .map(|r| (r.node.as_str(), r.resource.as_str()))
        .collect();
    assert_eq!(r, vec![("n1", "phone"), ("n2", "tablet")]);
}

fn cfg() -> SmConfig {
    SmConfig {
        buffer_max: 100,
        ack_freq: 1_000,
        resume_timeout: Duration::from_secs(60),
        id_prefix: None,
    }
}

/// Binds `jid` on shard `on` and parks it as a detached resumable session.
fn detach(
    w: &mut World,
    on: usize,
    jid: &str,
) -> (Park, crate::shard::SessionRef, Rc<crate::shard::Mailbox>) {
    let jid = FullJid::parse(jid).unwrap_or_else(|e| panic!("{e}"));
    let (sess, mb) = w.cluster.connect(on, &jid, Some(0));
    let sm = Box::new(SmState::new(cfg(), Some("ID".into())));
    w.cluster.shards[on].local_unbind(&jid, sess.session.conn);
    let me = sess.session;
    (Park::detach(sess, sm, None, Instant::now()), me, mb)
}

fn feed(
    w: &mut World,
    on: usize,
    park: &mut Park,
    me: crate::shard::SessionRef,
    mb: &crate::shard::Mailbox,
) {
    while let Some(m) = mb.pop() {
        park.on_msg(&mut w.cluster.shards[on], me, m, Instant::now());
    }
    w.cluster.pump();
}

#[test]
fn a_hibernated_session_notifies_its_own_registrations_once() {
    for shards in [1, 2] {
        let (mut w, app) = world(shards, "");
        ok(&enable(&mut w, 0, "phone", "phone-node", ""));
        ok(&enable(&mut w, 0, "laptop", "laptop-node", ""));
        let on = shards - 1;
        let (mut park, me, mb) = detach(&mut w, on, &format!("{ALICE}/phone"));
        let mut bob = w.connect(0, "bob@example.com/b", Some(0));
        chat(&mut w, &mut bob, &format!("{ALICE}/phone"), "hi");
        feed(&mut w, on, &mut park, me, &mb);
        let got = app.take();
        assert_eq!(got.len(), 1, "only the phone's registration");
        let t = got[0].stanza.tree().unwrap_or_else(|e| panic!("{e}"));
        assert!(format!("{t:?}").contains("phone-node"));
        assert_eq!(field(&got[0], "message-count").as_deref(), Some("1"));
        App::answer(&mut w, &got[0], None);
        // The session times out: its buffered message goes to offline storage, not counted again.
        park.on_timeout(
            &mut w.cluster.shards[on],
            Instant::now() + Duration::from_secs(120),
        );
        w.cluster.pump();
        assert!(app.take().is_empty());
        // The next message reaches offline_message: every registration.
        chat(&mut w, &mut bob, ALICE, "again");
        let got = app.take();
        assert_eq!(got.len(), 2);
        for p in &got {
            assert_eq!(field(p, "message-count").as_deref(), Some("2"));
        }
        drop(mb);
    }
}

/// alice/phone (with a registration) on shard 0 with stream management, holding bob's message
/// written to its connection and never acknowledged; returns it with bob.
fn phone_holding_a_message(
    w: &mut World,
) -> (
    FullJid,
    crate::c2s::route::Session,
    Box<SmState>,
    crate::modules::testing::User,
) {
    ok(&enable(w, 0, "phone", "n", ""));
    let jid = FullJid::parse(&format!("{ALICE}/phone")).unwrap_or_else(|e| panic!("{e}"));
    let (sess, mb) = w.cluster.connect(0, &jid, Some(0));
    let mut bob = w.connect(0, "bob@example.com/b", Some(0));
    chat(w, &mut bob, &format!("{ALICE}/phone"), "unseen");
    let mut sm = Box::new(SmState::new(cfg(), Some("ID".into())));
    while let Some(m) = mb.pop() {
        if let crate::shard::ConnMsg::Deliver(acc) = m {
            assert!(sm.outbound(crate::c2s::Unacked::Routed(acc)).is_ok());
        }
    }
    (jid, sess, sm, bob)
}

#[test]
fn messages_unacknowledged_when_the_connection_drops_notify() {
    let (mut w, app) = world(1, "");
    let (jid, sess, mut sm, _bob) = phone_holding_a_message(&mut w);
    assert!(
        app.take().is_empty(),
        "no publish while the session is live"
    );
    w.cluster.shards[0].local_unbind(&jid, sess.session.conn);
    crate::modules::stream_mgmt::park::announce_unacked(&mut w.cluster.shards[0], &jid, &mut sm);
    w.cluster.pump();
    let got = app.take();
    assert_eq!(got.len(), 1);
    assert_eq!(field(&got[0], "message-count").as_deref(), Some("1"));
    App::answer(&mut w, &got[0], None);
    // At the session's end the message goes to offline storage, not counted again.
    let mut park = Park::detach(sess, sm, None, Instant::now());
    park.on_timeout(
        &mut w.cluster.shards[0],
        Instant::now() + Duration::from_secs(120),
    );
    w.cluster.pump();
    assert!(app.take().is_empty());
}

#[test]
fn a_resumed_session_restarts_the_count_and_counted_messages_are_not_counted_again() {
    let (mut w, app) = world(1, "");
    let (jid, sess, mut sm, mut bob) = phone_holding_a_message(&mut w);
    let park = crate::modules::stream_mgmt::park::announce_unacked;
    park(&mut w.cluster.shards[0], &jid, &mut sm);
    w.cluster.pump();
    let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    assert_eq!(field(&p, "message-count").as_deref(), Some("1"));
    App::answer(&mut w, &p, None);
    // Resumed, then gone again without acknowledging it: the message is not counted twice.
    park(&mut w.cluster.shards[0], &jid, &mut sm);
    w.cluster.pump();
    assert!(app.take().is_empty());
    // The resumption (as stream management announces it on the home shard) restarts the count.
    crate::hooks::Events::<crate::modules::stream_mgmt::Resumed>::emit(
        &mut w.cluster.shards[0],
        &crate::modules::stream_mgmt::Resumed { jid: jid.clone() },
    );
    w.cluster.shards[0].local_unbind(&jid, sess.session.conn);
    unbind(&mut w.cluster.shards[0], &sess);
    w.cluster.pump();
    chat(&mut w, &mut bob, ALICE, "later");
    let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    assert_eq!(field(&p, "message-count").as_deref(), Some("1"));
}

#[test]
fn a_deleted_account_has_no_registrations_left() {
    let (mut w, app) = world(2, "");
    let alice = crate::jid::BareJid::parse(ALICE).unwrap_or_else(|e| panic!("{e}"));
    let secrets = crate::auth::ScramSecrets::derive("pw", 16);
    w.store()
        .add_user(&alice, &secrets)
        .unwrap_or_else(|e| panic!("{e}"));
    ok(&enable(&mut w, 0, "phone", "n", ""));
    let mut bob = w.connect(0, "bob@example.com/b", Some(0));
    chat(&mut w, &mut bob, ALICE, "one");
    let p = app.take().pop().unwrap_or_else(|| panic!("no publish"));
    App::answer(&mut w, &p, None);
    // Deleted (as the register module and the admin API do it): the store forgets the
    // registrations, the event the state the home shard kept.
    let roster = w
        .store()
        .remove_user(&alice)
        .unwrap_or_else(|e| panic!("{e}"));
    crate::modules::register::account_removed(&mut w.cluster.shards[1], alice, roster);
    w.cluster.pump();
    chat(&mut w, &mut bob, ALICE, "two");
    assert!(app.take().is_empty());
}
