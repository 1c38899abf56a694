use super::super::query::test_row;
use crate::modules::testing::{error_condition, User, World, HOST};
use crate::shard::ConnMsg;
use crate::xml::{Element, Stanza};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";

fn world(shards: usize) -> World {
    World::new(shards, "[modules.mam]\nmax_page = 100\n")
}

/// `n` rows in alice's archive, ids 101.., with bob.
fn fill(w: &World, n: i64) {
    let rows: Vec<_> = (1..=n)
        .map(|i| {
            let stanza = format!("<message from='bob@{HOST}/b' to='alice@{HOST}' type='chat'><body>m{i}</body></message>");
            let owner = format!("alice@{HOST}");
            test_row(&owner, 100 + i, &format!("bob@{HOST}/b"), 1_600_000_000_000_000 + i, &stanza)
        })
        .collect();
    w.store()
        .mam_append(&rows)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Sends `xml` and returns every stanza delivered to `user` since, in order.
fn exchange(w: &mut World, user: &mut User, xml: &str) -> Vec<Element> {
    w.send(user, xml);
    let mut out = Vec::new();
    while let Some(msg) = user.mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            out.push(acc.into_stanza().tree().unwrap_or_else(|e| panic!("{e}")));
        }
    }
    out
}

fn cond(el: &Element) -> Option<String> {
    error_condition(&Stanza::from_element(el))
}

#[test]
fn query_pages_results_then_fin() {
    for shards in [1, 2] {
        let mut w = world(shards);
        fill(&w, 7);
        let mut alice = w.connect(shards - 1, &format!("alice@{HOST}/a"), None);
        let got = exchange(
            &mut w,
            &mut alice,
            &format!("<iq type='set' id='q1'><query xmlns='{MAM}' queryid='f27'><set xmlns='{RSM}'><max>5</max></set></query></iq>"),
        );
        assert_eq!(got.len(), 6, "{got:?}");
        for (n, m) in got[..5].iter().enumerate() {
            assert_eq!(m.name, "message");
            assert_eq!(m.attr("to"), Some(format!("alice@{HOST}/a").as_str()));
            assert_eq!(m.attr("from"), Some(format!("alice@{HOST}").as_str()));
            let r = m
                .get_child("result", MAM)
                .unwrap_or_else(|| panic!("no result"));
            assert_eq!(r.attr("queryid"), Some("f27"));
            assert_eq!(r.attr("id"), Some((101 + n).to_string().as_str()));
            let body = r
                .get_child("forwarded", "urn:xmpp:forward:0")
                .and_then(|f| f.get_child("message", "jabber:client"))
                .and_then(|m| m.get_child("body", "jabber:client"))
                .map(|b| b.text());
            assert_eq!(body, Some(format!("m{}", n + 1)));
        }
        let iq = &got[5];
        assert_eq!(
            (iq.attr("type"), iq.attr("id")),
            (Some("result"), Some("q1"))
        );
        let fin = iq.get_child("fin", MAM).unwrap_or_else(|| panic!("no fin"));
        assert_eq!(fin.attr("complete"), None);
        let set = fin
            .get_child("set", RSM)
            .unwrap_or_else(|| panic!("no set"));
        assert_eq!(
            set.get_child("last", RSM).map(|l| l.text()).as_deref(),
            Some("105")
        );
        assert_eq!(
            set.get_child("count", RSM).map(|l| l.text()).as_deref(),
            Some("7")
        );
        // The next page completes.
        let got = exchange(
            &mut w,
            &mut alice,
            &format!("<iq type='set' id='q2'><query xmlns='{MAM}'><set xmlns='{RSM}'><max>5</max><after>105</after></set></query></iq>"),
        );
        assert_eq!(got.len(), 3);
        let fin = got[2]
            .get_child("fin", MAM)
            .unwrap_or_else(|| panic!("no fin"));
        assert_eq!(fin.attr("complete"), Some("true"));
    }
}

/// A page asked past `max_page` (100 here) is cut to it and says it is not the last (XEP-0313
/// §4.3.1); the client pages on to the rest.
#[test]
fn a_page_past_the_limit_is_cut_to_it() {
    let mut w = world(2);
    fill(&w, 130);
    let mut alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    let got = exchange(
        &mut w,
        &mut alice,
        &format!("<iq type='set' id='p'><query xmlns='{MAM}'><set xmlns='{RSM}'><max>2000</max><before/></set></query></iq>"),
    );
    assert_eq!(got.len(), 101, "100 results and the fin");
    let fin = got[100]
        .get_child("fin", MAM)
        .unwrap_or_else(|| panic!("no fin: {:?}", got[100]));
    assert_eq!(fin.attr("complete"), None, "30 older messages remain");
    let first = fin
        .get_child("set", RSM)
        .and_then(|s| s.get_child("first", RSM))
        .map(|f| f.text());
    assert_eq!(first.as_deref(), Some("131"));
    let got = exchange(
        &mut w,
        &mut alice,
        &format!("<iq type='set' id='p2'><query xmlns='{MAM}'><set xmlns='{RSM}'><max>2000</max><before>131</before></set></query></iq>"),
    );
    assert_eq!(got.len(), 31);
    let fin = got[30]
        .get_child("fin", MAM)
        .unwrap_or_else(|| panic!("no fin"));
    assert_eq!(fin.attr("complete"), Some("true"));
}

#[test]
fn errors_form_metadata_and_other_archives() {
    let mut w = world(2);
    fill(&w, 3);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), None);
    let q =
        |inner: &str| format!("<iq type='set' id='e'><query xmlns='{MAM}'>{inner}</query></iq>");
    let cases = [
        (q(&format!("<set xmlns='{RSM}'><after>999</after></set>")), "item-not-found"),
        (q("<x xmlns='jabber:x:data' type='submit'><field var='with'><value>a@b@c</value></field></x>"), "bad-request"),
        (format!("<iq type='set' id='e' to='bob@{HOST}'><query xmlns='{MAM}'/></iq>"), "forbidden"),
        // RFC 6121 §8.5.1: no such account.
        (format!("<iq type='set' id='e' to='nobody@{HOST}'><query xmlns='{MAM}'/></iq>"), "service-unavailable"),
    ];
    let bob = crate::jid::BareJid::parse(&format!("bob@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
    w.store()
        .add_user(&bob, &crate::auth::ScramSecrets::derive("pw", 4096))
        .unwrap_or_else(|e| panic!("{e}"));
    for (xml, want) in cases {
        let got = exchange(&mut w, &mut alice, &xml);
        assert_eq!(got.len(), 1, "{xml}");
        assert_eq!(cond(&got[0]).as_deref(), Some(want), "{xml}");
    }
    let form = exchange(
        &mut w,
        &mut alice,
        &format!("<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"),
    );
    let x = form[0]
        .get_child("query", MAM)
        .and_then(|q| q.get_child("x", "jabber:x:data"));
    assert_eq!(x.and_then(|x| x.attr("type")), Some("form"));
    let meta = exchange(
        &mut w,
        &mut alice,
        &format!("<iq type='get' id='m'><metadata xmlns='{MAM}'/></iq>"),
    );
    let m = meta[0]
        .get_child("metadata", MAM)
        .unwrap_or_else(|| panic!("no metadata"));
    assert_eq!(
        m.get_child("start", MAM).and_then(|s| s.attr("id")),
        Some("101")
    );
    assert_eq!(
        m.get_child("end", MAM).and_then(|s| s.attr("id")),
        Some("103")
    );
    assert_eq!(
        m.get_child("end", MAM).and_then(|s| s.attr("timestamp")),
        Some("2020-09-13T12:26:40.000003Z")
    );
}

#[test]
fn prefs_round_trip_and_reach_every_shard() {
    let mut w = world(2);
    let mut alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    let get = format!("<iq type='get' id='g'><prefs xmlns='{MAM}'/></iq>");
    let got = exchange(&mut w, &mut alice, &get);
    let p = got[0]
        .get_child("prefs", MAM)
        .unwrap_or_else(|| panic!("no prefs"));
    assert_eq!(p.attr("default"), Some("always"));
    let set = format!("<iq type='set' id='s'><prefs xmlns='{MAM}' default='roster'><always><jid>carol@{HOST}</jid></always><never><jid>eve@{HOST}</jid></never></prefs></iq>");
    let got = exchange(&mut w, &mut alice, &set);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attr("type"), Some("result"));
    let echo = got[0]
        .get_child("prefs", MAM)
        .unwrap_or_else(|| panic!("no echo"));
    assert_eq!(echo.attr("default"), Some("roster"));
    let got = exchange(&mut w, &mut alice, &get);
    let p = got[0]
        .get_child("prefs", MAM)
        .unwrap_or_else(|| panic!("no prefs"));
    assert_eq!(p, echo);
    let never = p
        .get_child("never", MAM)
        .and_then(|n| n.get_child("jid", MAM))
        .map(|j| j.text());
    assert_eq!(never, Some(format!("eve@{HOST}")));
    // Stored, and replicated on the other shard too.
    let stored = w
        .store()
        .mam_prefs(&format!("alice@{HOST}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.map(|s| s.mode).as_deref(), Some("roster"));
    for shard in &w.cluster.shards {
        let t = shard
            .ext
            .get::<super::super::prefs::PrefsTable>()
            .unwrap_or_else(|| panic!("no table"));
        assert_eq!(
            t.get(&format!("alice@{HOST}")).never,
            vec![format!("eve@{HOST}")]
        );
    }
    let bad = exchange(
        &mut w,
        &mut alice,
        &format!("<iq type='set' id='b'><prefs xmlns='{MAM}'/></iq>"),
    );
    assert_eq!(cond(&bad[0]).as_deref(), Some("bad-request"));
}

/// Whether a message is archived is decided on its sender's shard: the answer to new preferences
/// waits until every shard has them (a contact's message sent once the owner saw the answer was
/// archived under the old ones).
#[test]
fn the_answer_to_new_prefs_comes_once_every_shard_has_them() {
    let mut w = world(2);
    let alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    let mut sess = alice.sess;
    let set = format!("<iq type='set' id='s'><prefs xmlns='{MAM}' default='never'/></iq>");
    let s = Stanza::parse(set.into_bytes()).unwrap_or_else(|e| panic!("{e}"));
    crate::c2s::route::user_send(&mut w.cluster.shards[1], &mut sess, s);
    let owner = format!("alice@{HOST}");
    let mut answered = false;
    crate::shard::cluster::Rings::default().run_stepwise(&mut w.cluster, |c| {
        while let Some(msg) = alice.mb.pop() {
            let ConnMsg::Deliver(acc) = msg else { continue };
            if acc.stanza.id().as_deref() == Some("s") {
                answered = true;
                for shard in &c.shards {
                    let t = shard
                        .ext
                        .get::<super::super::prefs::PrefsTable>()
                        .unwrap_or_else(|| panic!("no table"));
                    assert_eq!(
                        t.get(&owner).mode,
                        super::super::prefs::Mode::Never,
                        "shard {} had the old preferences when the answer came",
                        shard.id.0
                    );
                }
            }
        }
    });
    assert!(answered, "no answer");
}

#[test]
fn room_archives_answer_from_the_room() {
    use crate::hooks::{Acc, Effects, HookCtx};
    use crate::jid::Jid;
    use crate::local::IqReply;
    use crate::shard::{Extensions, ShardId};

    let mut w = world(1);
    let service = format!("conference.{HOST}");
    let room = format!("hall@{service}");
    let stanza = format!("<message from='{room}/romeo' type='groupchat'><body>hi</body></message>");
    let row = test_row(
        &room,
        900,
        &format!("{room}/romeo"),
        1_600_000_000_000_000,
        &stanza,
    );
    w.store()
        .mam_append(&[row])
        .unwrap_or_else(|e| panic!("{e}"));
    let jid = |s: &str| Jid::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let xml = format!("<iq type='set' id='r1' to='{room}'><query xmlns='{MAM}' queryid='x'><x xmlns='jabber:x:data'><field var='with'><value>{room}/romeo</value></field></x></query></iq>");
    let stanza = Stanza::parse(xml.into_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let payload = stanza
        .tree()
        .ok()
        .and_then(|t| t.get_child("query", MAM).cloned())
        .unwrap_or_else(|| panic!("no query"));
    let requester = format!("juliet@{HOST}/balcony");
    let acc = Acc::new(stanza, jid(&requester), jid(&room), ShardId(0));
    let (mut fx, mut ext) = (Effects::default(), Extensions::default());
    let mut ctx = HookCtx::new(ShardId(0), &mut fx, &mut ext);
    // The handler the MUC service finds for the room's domain.
    super::register_rooms(
        &mut w.cluster.shards[0],
        std::slice::from_ref(&service),
        &super::MamOptions::default(),
    );
    let handler = w.cluster.shards[0]
        .iq
        .account(&service, MAM)
        .unwrap_or_else(|| panic!("no room handler"));
    assert!(matches!(
        handler(&acc, &payload, &mut ctx),
        IqReply::NoReply
    ));
    let jobs = fx.take_jobs();
    assert_eq!(jobs.len(), 1);
    let done = jobs
        .into_iter()
        .map(|j| (j.run)(w.store()))
        .next()
        .unwrap_or_else(|| panic!("no job"));
    assert_eq!(done.route.len(), 2);
    let msg = &done.route[0];
    assert_eq!(
        (msg.from.as_str(), msg.to.as_str()),
        (room.as_str(), requester.as_str())
    );
    let el = msg.stanza.tree().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(el.attr("from"), Some(room.as_str()));
    assert_eq!(
        el.get_child("result", MAM).and_then(|r| r.attr("id")),
        Some("900")
    );
    let iq = done.route[1]
        .stanza
        .tree()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (iq.attr("type"), iq.attr("from")),
        (Some("result"), Some(room.as_str()))
    );
    let complete = iq.get_child("fin", MAM).and_then(|f| f.attr("complete"));
    assert_eq!(complete, Some("true"));
}
