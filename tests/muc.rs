//! Group chat (XEP-0045) over real sockets at 1 and 2 shards: fan-out to occupants on every shard,
//! the configured limits, bad input answered with the XEP's errors while other rooms go on, a
//! session that drops without leaving, and a persistent room across a restart.

mod common;

use common::muc::{
    create, expect_groupchat, field, groupchat, has_status, join, kept_room_fields, text,
};
use common::{body, error_condition, Client, Server};

const SERVICE: &str = "conference.localhost";

fn muc_config(extra: &str) -> String {
    format!("[modules.presence]\n[modules.muc]\n{extra}\n")
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

fn start(shards: usize, n: usize, extra: &str) -> Server {
    let names = users(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    Server::start_with(shards, &refs, "", &muc_config(extra))
}

/// Joins and expects the presence error `cond`.
fn join_refused(c: &mut Client, room: &str, nick: &str, extra: &str, cond: &str) {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>{extra}</x></presence>"
    ));
    let s = c.expect("join error", |s| {
        s.name() == "presence" && s.type_().as_deref() == Some("error")
    });
    assert_eq!(error_condition(&s).as_deref(), Some(cond), "{}", text(&s));
}

/// Users `u0`.. `u{n-1}` logged in; `u0` creates `room` (as `n0`), the others join (`n1`...).
fn occupied(server: &Server, n: usize, room: &str) -> Vec<Client> {
    let mut clients: Vec<Client> = (0..n)
        .map(|i| server.login(&format!("u{i}"), "r", Some(0)))
        .collect();
    create(&mut clients[0], room, "n0", "");
    for (i, c) in clients.iter_mut().enumerate().skip(1) {
        join(c, room, &format!("n{i}"), "");
    }
    clients
}

fn fan_out(shards: usize) {
    let n = 6;
    let server = start(shards, n, "");
    let room = format!("fan@{SERVICE}");
    let mut clients = occupied(&server, n, &room);
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            groupchat(
                c,
                &room,
                &format!("m{round}-{i}"),
                &format!("hello {round} from {i}"),
            );
        }
        // Senders on different shards race each other: collect the round in any order.
        for c in clients.iter_mut() {
            let me = c.jid.clone();
            let mut got = vec![false; n];
            while got.iter().any(|g| !g) {
                let m = c.expect("groupchat", |s| {
                    s.name() == "message"
                        && s.type_().as_deref() == Some("groupchat")
                        && body(s).is_some()
                });
                let id = m.id().unwrap_or_default().into_owned();
                let i: usize = id
                    .strip_prefix(&format!("m{round}-"))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected {}", text(&m)));
                assert!(!got[i], "duplicate {}", text(&m));
                got[i] = true;
                assert_eq!(m.from().as_deref(), Some(format!("{room}/n{i}").as_str()));
                assert_eq!(m.to().as_deref(), Some(me.as_str()));
                let want = format!("hello {round} from {i}");
                assert_eq!(body(&m).as_deref(), Some(want.as_str()));
            }
        }
    }
}

#[test]
fn groupchat_reaches_every_occupant_one_shard() {
    fan_out(1);
}

#[test]
fn groupchat_reaches_every_occupant_two_shards() {
    fan_out(2);
}

fn bad_input(shards: usize) {
    let server = start(
        shards,
        6,
        "max_occupants = 3\nmax_history = 2\nmax_stanza_bytes = 2000",
    );
    let room = format!("bad@{SERVICE}");
    let other = format!("calm@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    let mut p1 = server.login("u1", "r", Some(0));
    let mut p2 = server.login("u2", "r", Some(0));
    let mut outsider = server.login("u3", "r", Some(0));
    let mut late = server.login("u4", "r", Some(0));
    create(&mut owner, &room, "owner", "");
    create(&mut outsider, &other, "calm", "");
    join(&mut p1, &room, "p1", "");

    // Unknown room.
    groupchat(&mut outsider, &format!("nosuch@{SERVICE}"), "x1", "hi");
    let e = outsider.expect("error", |s| s.id().as_deref() == Some("x1"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("item-not-found"),
        "{}",
        text(&e)
    );

    // Groupchat from a non-occupant.
    groupchat(&mut outsider, &room, "x2", "intrude");
    let e = outsider.expect("error", |s| s.id().as_deref() == Some("x2"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("not-acceptable"),
        "{}",
        text(&e)
    );

    // Nick taken.
    join_refused(&mut p2, &room, "p1", "", "conflict");

    // A forged sender: the room stamps the occupant's own nick whatever `from` says.
    p1.send(&format!(
        "<message type='groupchat' to='{room}' from='{room}/owner' id='x3'><body>forged</body></message>"
    ));
    let m = expect_groupchat(&mut owner, "x3");
    assert_eq!(
        m.from().as_deref(),
        Some(format!("{room}/p1").as_str()),
        "{}",
        text(&m)
    );

    // An admin IQ from a participant.
    p1.send(&format!(
        "<iq type='set' id='x4' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='owner' role='none'/></query></iq>"
    ));
    let e = p1.expect("error", |s| s.id().as_deref() == Some("x4"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("forbidden"),
        "{}",
        text(&e)
    );

    // Oversized groupchat: refused, the connection stays.
    let big = "y".repeat(3000);
    groupchat(&mut p1, &room, "x5", &big);
    let e = p1.expect("error", |s| s.id().as_deref() == Some("x5"));
    assert!(
        matches!(
            error_condition(&e).as_deref(),
            Some("policy-violation") | Some("not-acceptable")
        ),
        "{}",
        text(&e)
    );

    // Full room (max_occupants = 3).
    join(&mut p2, &room, "p2", "");
    join_refused(&mut late, &room, "late", "", "service-unavailable");

    // History is capped at max_history = 2.
    for i in 0..4 {
        groupchat(&mut owner, &room, &format!("h{i}"), &format!("history {i}"));
        expect_groupchat(&mut owner, &format!("h{i}"));
    }
    p2.send(&format!("<presence type='unavailable' to='{room}/p2'/>"));
    p2.expect("left", |s| {
        s.type_().as_deref() == Some("unavailable") && has_status(s, "110")
    });
    join(&mut late, &room, "late", "");
    // History follows the self-presence; the subject comes last (XEP-0045 §7.2.15).
    let mut history = Vec::new();
    loop {
        let s = late.next_stanza();
        let is_subject = s
            .tree()
            .ok()
            .is_some_and(|t| t.get_child("subject", petrel::xmpp::ns::CLIENT).is_some());
        if is_subject {
            break;
        }
        if let Some(b) = body(&s).filter(|b| b.starts_with("history")) {
            history.push(b);
        }
    }
    assert_eq!(
        history,
        vec!["history 2".to_owned(), "history 3".to_owned()]
    );

    // The other room was never disturbed.
    groupchat(&mut outsider, &other, "ok", "still here");
    let m = expect_groupchat(&mut outsider, "ok");
    assert_eq!(body(&m).as_deref(), Some("still here"));
}

#[test]
fn bad_input_is_answered_and_other_rooms_go_on_one_shard() {
    bad_input(1);
}

#[test]
fn bad_input_is_answered_and_other_rooms_go_on_two_shards() {
    bad_input(2);
}

#[test]
fn a_dropped_connection_leaves_its_rooms() {
    let server = start(2, 4, "");
    let room = format!("drop@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    create(&mut owner, &room, "owner", "");
    let mut others: Vec<Client> = (1..4)
        .map(|i| server.login(&format!("u{i}"), "r", None))
        .collect();
    for (i, c) in others.iter_mut().enumerate() {
        join(c, &room, &format!("p{i}"), "");
    }
    // No initial presence, no unavailable: the TCP connection just goes.
    drop(others.pop());
    let s = owner.expect("p2 leaves", |s| {
        s.name() == "presence"
            && s.type_().as_deref() == Some("unavailable")
            && s.from().as_deref() == Some(format!("{room}/p2").as_str())
    });
    assert!(!has_status(&s, "110"));
    // The room still works for the rest.
    groupchat(&mut others[0], &room, "after", "still");
    expect_groupchat(&mut owner, "after");
}

#[test]
fn a_persistent_room_survives_a_restart() {
    let mut server = start(2, 2, "");
    let room = format!("keep@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    create(&mut owner, &room, "owner", &kept_room_fields());
    drop(owner);
    server.stop();
    server.spawn(2);
    let mut c = server.login("u1", "r", Some(0));
    c.send(&format!("<iq type='get' id='d' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    let r = c.expect("disco", |s| s.id().as_deref() == Some("d"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    assert!(text(&r).contains("Kept Room"), "{}", text(&r));
    assert!(text(&r).contains("muc_persistent"), "{}", text(&r));
    c.send(&format!("<iq type='get' id='l' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
    let r = c.expect("items", |s| s.id().as_deref() == Some("l"));
    assert!(text(&r).contains(&room), "{}", text(&r));
    // The owner is still the owner: it may read the configuration form.
    let mut owner = server.login("u0", "r", Some(0));
    owner.send(&format!("<iq type='get' id='f' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"));
    let r = owner.expect("form", |s| s.id().as_deref() == Some("f"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
}

/// The XEP-0421 occupant id of the groupchat `id` from `from` as `c` receives it.
fn occupant_id_of(c: &mut Client, id: &str) -> String {
    let m = c.expect("groupchat", |s| {
        s.name() == "message" && s.id().as_deref() == Some(id)
    });
    let t = m.tree().unwrap();
    let ids: Vec<&str> = t
        .child_elements()
        .filter(|e| e.name == "occupant-id" && e.ns == "urn:xmpp:occupant-id:0")
        .filter_map(|e| e.attr("id"))
        .collect();
    assert_eq!(ids.len(), 1, "{}", text(&m));
    ids[0].to_owned()
}

#[test]
fn occupant_ids_are_stable_across_restarts() {
    let mut server = start(2, 2, "");
    let room = format!("ids@{SERVICE}");
    let round = |server: &Server| {
        let mut a = server.login("u0", "r", Some(0));
        let mut b = server.login("u1", "r", Some(0));
        create(&mut a, &room, "a", "");
        join(&mut b, &room, "b", "");
        a.send(&format!("<iq type='get' id='d' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
        let r = a.expect("disco", |s| s.id().as_deref() == Some("d"));
        assert!(text(&r).contains("urn:xmpp:occupant-id:0"), "{}", text(&r));
        // A forged id is replaced by the room's.
        b.send(&format!(
            "<message type='groupchat' id='g' to='{room}'><body>hi</body>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>"
        ));
        let seen = occupant_id_of(&mut a, "g");
        assert_eq!(occupant_id_of(&mut b, "g"), seen);
        assert_ne!(seen, "forged");
        seen
    };
    let before = round(&server);
    server.stop();
    server.spawn(2);
    assert_eq!(
        round(&server),
        before,
        "the same user keeps its id in the room"
    );
}

#[test]
fn rooms_advertise_the_archive_they_keep() {
    let disco = |modules: &str| {
        let server = Server::start_with(1, &["u0"], "", modules);
        let mut c = server.login("u0", "r", Some(0));
        let room = format!("arch@{SERVICE}");
        create(&mut c, &room, "a", "");
        c.send(&format!("<iq type='get' id='d' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
        text(&c.expect("disco", |s| s.id().as_deref() == Some("d")))
    };
    // XEP-0313 §7, XEP-0359 §3.5: with the archive, a room says so; clients ignore it otherwise.
    let with = disco("[modules.presence]\n[modules.muc]\n[modules.mam]\n");
    assert!(
        with.contains("urn:xmpp:mam:2'")
            && with.contains("urn:xmpp:mam:2#extended")
            && with.contains("urn:xmpp:sid:0"),
        "{with}"
    );
    let without = disco(&muc_config(""));
    assert!(!without.contains("urn:xmpp:mam:2"), "{without}");
}

/// Sends the archive query `query` (to `to`, or to the own account when empty) as IQ `q` and
/// returns what came before its answer, in order (the answer itself is not included).
fn archive_page(c: &mut Client, to: &str, query: &str) -> Vec<petrel::xml::Stanza> {
    let to = if to.is_empty() {
        String::new()
    } else {
        format!(" to='{to}'")
    };
    c.send(&format!("<iq type='set' id='q'{to}>{query}</iq>"));
    let mut before = Vec::new();
    loop {
        let s = c.next_stanza();
        if s.id().as_deref() == Some("q") {
            return before;
        }
        before.push(s);
    }
}

#[test]
fn a_private_message_in_a_room_is_in_the_recipients_archive() {
    let server = Server::start_with(
        1,
        &["u0", "u1"],
        "",
        "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
    );
    let mut a = server.login("u0", "r", Some(0));
    let mut b = server.login("u1", "r", Some(0));
    let room = format!("pm@{SERVICE}");
    create(&mut a, &room, "a", "");
    join(&mut b, &room, "b", "");
    b.send(&format!(
        "<message type='chat' id='pm1' to='{room}/a'><body>just for you</body></message>"
    ));
    let got = a.expect("pm", |s| s.id().as_deref() == Some("pm1"));
    // XEP-0313 §6.1.1: the recipient's archive keeps it, and says so on the copy delivered.
    assert!(
        text(&got).contains("<stanza-id xmlns='urn:xmpp:sid:0' by='u0@localhost'"),
        "{}",
        text(&got)
    );
    let page = archive_page(&mut a, "", "<query xmlns='urn:xmpp:mam:2' queryid='x'/>");
    let found = page.iter().any(|s| text(s).contains("just for you"));
    assert!(found, "the private message is not in u0's archive");
}

/// XEP-0313 §4.2: the IQ result ends a query after its last result message. A room on another
/// shard than the querier's home sent its results to the new session's full JID through the
/// "where does it live" path and the IQ through the home shard, which overtook them (clients drop
/// results of a closed query: the history was lost).
#[test]
fn a_room_archive_query_ends_after_its_results() {
    let server = Server::start_with(
        2,
        &["u0"],
        "",
        "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
    );
    let mut owner = server.login("u0", "owner", Some(0));
    let rooms: Vec<String> = (0..8).map(|i| format!("order{i}@{SERVICE}")).collect();
    for room in &rooms {
        create(&mut owner, room, "o", "");
        for j in 0..10 {
            owner.send(&format!(
                "<message to='{room}' type='groupchat' id='g{j}'><body>m{j}</body></message>"
            ));
            owner.expect("echo", |s| s.id().as_deref() == Some(&format!("g{j}")));
        }
    }
    for (i, room) in rooms.iter().enumerate() {
        // A fresh session each time: no shard knows where it lives yet.
        let mut c = server.login("u0", &format!("q{i}"), None);
        let page = archive_page(
            &mut c,
            room,
            "<query xmlns='urn:xmpp:mam:2' queryid='o'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set></query>",
        );
        let results = page
            .iter()
            .filter(|s| text(s).contains("<result xmlns='urn:xmpp:mam:2' queryid='o'"))
            .count();
        assert_eq!(results, 10, "{room}: the IQ result came before its results");
    }
}

/// XEP-0313 §6.1.2: a room's archive keeps its subject changes.
#[test]
fn a_subject_change_is_in_the_room_archive() {
    let server = Server::start_with(
        1,
        &["u0"],
        "",
        "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
    );
    let mut c = server.login("u0", "r", Some(0));
    let room = format!("topic@{SERVICE}");
    create(&mut c, &room, "o", "");
    c.send(&format!(
        "<message to='{room}' type='groupchat' id='s1'><subject>new topic</subject></message>"
    ));
    c.expect("the change", |s| s.id().as_deref() == Some("s1"));
    let page = archive_page(&mut c, &room, "<query xmlns='urn:xmpp:mam:2' queryid='t'/>");
    let found = page
        .iter()
        .any(|s| text(s).contains("<subject>new topic</subject>"));
    assert!(found, "the subject change is not in the room's archive");
}

/// XEP-0313 §6.1.2: a room's archive gives each message's real JID (`<x muc#user><item jid/></x>`)
/// to whoever may see it at the time of the query: anyone in a non-anonymous room, moderators
/// in a semi-anonymous one. A room made semi-anonymous still gave everyone the JIDs of what was
/// said before, and moderators of a semi-anonymous room got none.
#[test]
fn a_rooms_archive_shows_real_jids_to_who_may_see_them_now() {
    let server = Server::start_with(
        1,
        &["u0", "u1"],
        "",
        "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
    );
    let mut o = server.login("u0", "r", Some(0));
    let mut m = server.login("u1", "r", Some(0));
    // Whether the owner (a moderator) and the participant see the sender's real JID.
    let shown = |o: &mut Client, m: &mut Client, room: &str| {
        [o, m].map(|c| {
            let page = archive_page(c, room, "<query xmlns='urn:xmpp:mam:2' queryid='w'/>");
            let result = page
                .iter()
                .map(text)
                .find(|t| t.contains("<result xmlns='urn:xmpp:mam:2'") && t.contains("who am i"))
                .unwrap_or_else(|| panic!("{room}: not archived"));
            result.contains("jid='u1@localhost/r'")
        })
    };
    for (room, whois, want) in [
        ("open", "anyone", [true, true]),
        ("semi", "moderators", [true, false]),
    ] {
        let room = format!("{room}@{SERVICE}");
        create(&mut o, &room, "o", &field("whois", whois));
        join(&mut m, &room, "m", "");
        m.send(&format!(
            "<message to='{room}' type='groupchat' id='w'><body>who am i</body></message>"
        ));
        m.expect("echo", |s| s.id().as_deref() == Some("w"));
        assert_eq!(shown(&mut o, &mut m, &room), want, "{room}");
    }
    // The open room becomes semi-anonymous: what was said before is no longer the participant's
    // to see.
    let room = format!("open@{SERVICE}");
    o.send(&format!(
        "<iq type='set' id='anon' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{}</x></query></iq>",
        field("whois", "moderators")
    ));
    let r = o.expect("config result", |s| s.id().as_deref() == Some("anon"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    assert_eq!(shown(&mut o, &mut m, &room), [true, false]);
}

/// XEP-0359 §6: the history a joining occupant gets carries the stanza ids the room's archive gave
/// the messages, so a client matches it against the archive instead of showing both.
#[test]
fn history_on_joining_carries_the_archive_s_stanza_ids() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["u0", "u1"],
            "",
            "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
        );
        let mut a = server.login("u0", "r", Some(0));
        let room = format!("hist@{SERVICE}");
        create(&mut a, &room, "a", "");
        a.send(&format!(
            "<message to='{room}' type='groupchat' id='h1'><body>before you came</body></message>"
        ));
        let live = a.expect("echo", |s| s.id().as_deref() == Some("h1"));
        let sid = |s: &petrel::xml::Stanza| {
            let t = s.tree().unwrap();
            t.get_child("stanza-id", "urn:xmpp:sid:0")
                .filter(|e| e.attr("by") == Some(room.as_str()))
                .and_then(|e| e.attr("id").map(str::to_owned))
        };
        let want = sid(&live).unwrap_or_else(|| panic!("no room stanza id: {}", text(&live)));
        let mut b = server.login("u1", "r", Some(0));
        join(&mut b, &room, "b", "");
        // History follows the self-presence (§7.2.15).
        let old = b.expect("history", |s| text(s).contains("before you came"));
        assert_eq!(
            sid(&old).as_deref(),
            Some(want.as_str()),
            "shards={shards}: {}",
            text(&old)
        );
    }
}

/// A private message to a nick two sessions of one user share reaches both (§7.2.9), as one
/// message: one row in the recipient's archive, one stanza id on both copies (each session had
/// its own row and id, and a client syncing the archive showed it twice).
#[test]
fn a_private_message_to_a_shared_nick_is_archived_once() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["u0", "u1"],
            "",
            "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
        );
        let mut a1 = server.login("u0", "one", Some(0));
        let mut a2 = server.login("u0", "two", Some(0));
        let mut b = server.login("u1", "r", Some(0));
        let room = format!("shared@{SERVICE}");
        create(&mut a1, &room, "a", "");
        join(&mut a2, &room, "a", "");
        join(&mut b, &room, "b", "");
        b.send(&format!(
            "<message type='chat' id='pm2' to='{room}/a'><body>to both of you</body></message>"
        ));
        let ids: Vec<String> = [&mut a1, &mut a2]
            .into_iter()
            .map(|c| {
                let got = c.expect("pm", |s| s.id().as_deref() == Some("pm2"));
                let t = got.tree().unwrap();
                let sids: Vec<String> = t
                    .child_elements()
                    .filter(|e| e.name == "stanza-id" && e.attr("by") == Some("u0@localhost"))
                    .filter_map(|e| e.attr("id").map(str::to_owned))
                    .collect();
                assert_eq!(sids.len(), 1, "{}", text(&got));
                sids[0].clone()
            })
            .collect();
        assert_eq!(ids[0], ids[1], "shards={shards}");
        let page = archive_page(&mut a1, "", "<query xmlns='urn:xmpp:mam:2' queryid='x'/>");
        let rows = page
            .iter()
            .filter(|s| text(s).contains("to both of you"))
            .count();
        assert_eq!(rows, 1, "shards={shards}");
    }
}

/// A vCard request to an occupant (XEP-0045 §7.7, the avatars clients show beside nicks) goes to
/// the occupant's account, whose server answers from the stored vCard; the occupant's client is
/// not asked (clients rarely answer, and occupants' avatars were missing).
#[test]
fn a_vcard_request_to_an_occupant_is_answered_by_its_account() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["u0", "u1"],
            "",
            "[modules.presence]\n[modules.muc]\n[modules.vcard]\n",
        );
        let mut a = server.login("u0", "r", Some(0));
        let mut b = server.login("u1", "r", Some(0));
        a.send(
            "<iq type='set' id='vs'><vCard xmlns='vcard-temp'><NICKNAME>Alice of u0</NICKNAME></vCard></iq>",
        );
        a.expect("vcard set", |s| s.id().as_deref() == Some("vs"));
        let room = format!("cards@{SERVICE}");
        create(&mut a, &room, "a", "");
        join(&mut b, &room, "b", "");
        b.send(&format!(
            "<iq type='get' id='vq' to='{room}/a'><vCard xmlns='vcard-temp'/></iq>"
        ));
        let r = b.expect("vcard", |s| s.id().as_deref() == Some("vq"));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        assert_eq!(r.from().as_deref(), Some(format!("{room}/a").as_str()));
        assert!(
            text(&r).contains("Alice of u0"),
            "shards={shards}: {}",
            text(&r)
        );
        // u0's client was not asked (a request to it would have left before the answer).
        let seen =
            String::from_utf8_lossy(&a.read_until_quiet(std::time::Duration::from_millis(300)))
                .into_owned();
        assert!(!seen.contains("vcard-temp"), "{seen}");
    }
}

#[test]
fn a_new_room_never_shows_an_earlier_rooms_archive() {
    // A temporary room's archive outlived a restart, and a destroyed room's last rows could be
    // written after its archive was deleted: the next room created under the name (by anyone)
    // showed them in its archive.
    let mut server = Server::start_with(
        2,
        &["u0", "u1"],
        "",
        "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
    );
    let room = format!("again@{SERVICE}");
    let mut first = server.login("u0", "r", Some(0));
    create(&mut first, &room, "first", "");
    for j in 0..10 {
        first.send(&format!(
            "<message to='{room}' type='groupchat' id='g{j}'><body>secret {j}</body></message>"
        ));
        first.expect("echo", |s| s.id().as_deref() == Some(&format!("g{j}")));
    }
    // The temporary room is gone with the restart; its archive must be too.
    server.stop();
    server.spawn(2);
    let mut second = server.login("u1", "r", Some(0));
    create(&mut second, &room, "second", "");
    // The archive's results that come from an earlier room.
    let earlier = |c: &mut Client| -> Vec<String> {
        let query = "<query xmlns='urn:xmpp:mam:2' queryid='n'/>";
        let page = archive_page(c, &room, query);
        page.iter()
            .map(text)
            .filter(|t| t.contains("secret"))
            .collect()
    };
    let old = earlier(&mut second);
    assert!(old.is_empty(), "the new room shows the old one's: {old:?}");
    // Destroyed while talking, created again at once: the same.
    for j in 0..30 {
        second.send(&format!(
            "<message to='{room}' type='groupchat' id='h{j}'><body>secret too {j}</body></message>"
        ));
    }
    second.send(&format!(
        "<iq type='set' id='x' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>"
    ));
    second.expect("destroyed", |s| s.id().as_deref() == Some("x"));
    let mut third = server.login("u0", "t", Some(0));
    create(&mut third, &room, "third", "");
    let old = earlier(&mut third);
    assert!(old.is_empty(), "the new room shows the old one's: {old:?}");
}

/// The `<stanza-id by='room'/>` of a message as a client sees it.
fn room_stanza_id(m: &petrel::xml::Stanza, room: &str) -> Option<String> {
    let t = m.tree().ok()?;
    let sid = t
        .child_elements()
        .find(|e| e.name == "stanza-id" && e.attr("by") == Some(room))?;
    sid.attr("id").map(str::to_owned)
}

/// A persistent room's history (XEP-0045 §7.2.15) lives in memory and was empty after a restart;
/// it is refilled from the room's archive, as Prosody's mod_muc_mam does: the newest messages
/// with a body, as many as the room keeps, with the stanza ids the archive gave them, and without
/// the real JIDs the archive's copies carry.
#[test]
fn a_persistent_rooms_history_survives_a_restart() {
    for shards in [1, 2] {
        let mut server = Server::start_with(
            shards,
            &["u0", "u1"],
            "",
            "[modules.presence]\n[modules.muc]\n[modules.mam]\n",
        );
        let room = format!("hist@{SERVICE}");
        let mut owner = server.login("u0", "r", Some(0));
        let fields = format!(
            "{}{}{}",
            kept_room_fields(),
            field("historylength", "3"),
            field("whois", "anyone")
        );
        create(&mut owner, &room, "owner", &fields);
        let mut ids = Vec::new();
        for j in 0..5 {
            groupchat(&mut owner, &room, &format!("g{j}"), &format!("said {j}"));
            let echo = expect_groupchat(&mut owner, &format!("g{j}"));
            ids.push(room_stanza_id(&echo, &room).expect("the archive's id"));
        }
        // Archived (a storage hint) but no history: it must not push a message out.
        owner.send(&format!(
            "<message type='groupchat' to='{room}' id='s'><active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>"
        ));
        expect_groupchat(&mut owner, "s");
        drop(owner);
        server.stop();
        server.spawn(shards);
        let mut c = server.login("u1", "r", Some(0));
        join(&mut c, &room, "reader", "");
        let mut history = Vec::new();
        loop {
            let s = c.next_stanza();
            if s.name() != "message" {
                continue;
            }
            let t = text(&s);
            // The subject (empty here) ends the history.
            if t.contains("<subject") {
                break;
            }
            history.push(s);
        }
        let bodies: Vec<String> = history.iter().filter_map(body).collect();
        assert_eq!(bodies, ["said 2", "said 3", "said 4"], "shards={shards}");
        for (m, id) in history.iter().zip(&ids[2..]) {
            let t = text(m);
            assert_eq!(
                m.from().as_deref(),
                Some(format!("{room}/owner").as_str()),
                "{t}"
            );
            assert!(t.contains("urn:xmpp:delay"), "{t}");
            assert_eq!(
                room_stanza_id(m, &room).as_deref(),
                Some(id.as_str()),
                "{t}"
            );
            assert!(
                !t.contains("u0@localhost"),
                "a real JID in the history: {t}"
            );
        }
    }
}

/// XEP-0045 §7.2.5 at shutdown: every occupant is told the room is gone (status 332) before its
/// stream closes, wherever its session lives. Occupants on another shard than the room's often
/// missed it: their shard closed their streams before the room's goodbye crossed over.
#[test]
fn every_occupant_hears_the_rooms_go_at_shutdown() {
    let n = 8;
    let mut server = start(2, n, "");
    let room = format!("bye@{SERVICE}");
    let mut clients = occupied(&server, n, &room);
    server.stop();
    for (i, c) in clients.iter_mut().enumerate() {
        let seen = c.read_to_close();
        let told = seen.contains(&format!("from='{room}/n{i}'"))
            && (seen.contains("code='332'") || seen.contains("code=\"332\""));
        assert!(told, "u{i} was not told: {seen}");
        assert_eq!(
            seen.matches("code='332'").count(),
            1,
            "u{i} was told more than once: {seen}"
        );
        assert!(seen.contains("system-shutdown"), "{seen}");
    }
}

/// A deleted account's rooms count against no one's quota: whoever registered the name again
/// could create no room (`not-allowed`), also after a restart.
#[test]
fn a_deleted_accounts_rooms_count_against_no_one() {
    let modules = format!(
        "{}[modules.register]\n",
        muc_config("max_rooms_per_user = 1\n")
    );
    let mut server = Server::start_with(2, &["u0"], "", &modules);
    let mut old = server.login("u0", "r", Some(0));
    create(&mut old, &format!("q1@{SERVICE}"), "o", &kept_room_fields());
    join_refused(&mut old, &format!("q2@{SERVICE}"), "o", "", "not-allowed");
    old.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    let r = old.expect("removal", |s| s.id().as_deref() == Some("rm"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let mut c = server.connect();
    c.open("localhost");
    c.next_stanza();
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>u0</username><password>another password</password></query></iq>");
    let r = c.expect("registration", |s| s.id().as_deref() == Some("reg"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    for round in 0..2 {
        let mut new = server.connect();
        new.login_plain("u0", "localhost", "another password", "n");
        create(&mut new, &format!("q{}@{SERVICE}", 3 + round), "n", "");
        drop(new);
        if round == 0 {
            server.stop();
            server.spawn(2);
        }
    }
}

/// Nicknames and resources with emoji (characters Unicode 3.2 did not have) are what people
/// choose: a room takes them, a session binds them, and messages reach both, at 1 and 2 shards.
/// A variation selector is prepared away (RFC 6122's table B.1), so the occupant is known by the
/// prepared nickname.
fn emoji_nicknames_and_resources(shards: usize) {
    let server = start(shards, 2, "");
    let room = format!("emoji@{SERVICE}");
    let mut anna = server.login("u0", "phone 📱", Some(0));
    let mut bob = server.login("u1", "r", Some(0));
    create(&mut anna, &room, "Anna 🌸", "");
    bob.send(&format!(
        "<presence to='{room}/Bob ❤\u{fe0f}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let me = format!("{room}/Bob ❤");
    let own = bob.expect("own presence", |s| {
        s.name() == "presence" && s.from().as_deref() == Some(me.as_str())
    });
    assert!(has_status(&own, "110"), "{}", text(&own));
    anna.expect("bob joined", |s| {
        s.name() == "presence" && s.from().as_deref() == Some(me.as_str())
    });
    groupchat(&mut bob, &room, "g1", "hi 🌸");
    let got = expect_groupchat(&mut anna, "g1");
    assert_eq!(got.from().as_deref(), Some(me.as_str()));
    assert_eq!(body(&got).as_deref(), Some("hi 🌸"));
    // A private message to the full JID with the emoji resource.
    bob.send("<message to='u0@localhost/phone 📱' type='chat' id='p1'><body>psst</body></message>");
    let got = anna.expect("private message", |s| {
        s.name() == "message" && s.id().as_deref() == Some("p1")
    });
    assert_eq!(got.from().as_deref(), Some("u1@localhost/r"));
    assert_eq!(got.to().as_deref(), Some("u0@localhost/phone 📱"));
}

#[test]
fn emoji_nicknames_and_resources_one_shard() {
    emoji_nicknames_and_resources(1);
}

#[test]
fn emoji_nicknames_and_resources_two_shards() {
    emoji_nicknames_and_resources(2);
}

/// Reads `c`'s stanzas up to the groupchat message `id`; returns those before it.
fn until_groupchat(c: &mut Client, id: &str) -> Vec<petrel::xml::Stanza> {
    let mut before = Vec::new();
    loop {
        let s = c.next_stanza();
        if s.name() == "message"
            && s.id().as_deref() == Some(id)
            && s.type_().as_deref() == Some("groupchat")
        {
            return before;
        }
        before.push(s);
    }
}

/// RFC 6120 §8.3: an error to `room/nick` goes back to that occupant only when it answers a
/// private message the occupant sent its sender. A visitor's made-up error with an empty
/// `<x muc#user/>` reached bob, body and all, past `allowpm = none`.
#[test]
fn a_made_up_error_carries_no_private_message() {
    let server = start(2, 3, "");
    let room = format!("fakeerr@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    let mut bob = server.login("u1", "r", Some(0));
    let mut visitor = server.login("u2", "r", Some(0));
    let fields = format!(
        "{}{}",
        field("allowpm", "none"),
        field("moderatedroom", "1")
    );
    create(&mut owner, &room, "o", &fields);
    join(&mut bob, &room, "bob", "");
    join(&mut visitor, &room, "v", "");
    visitor.send(&format!(
        "<message to='{room}/bob' type='error' id='n2'><body>spam</body>\
         <x xmlns='http://jabber.org/protocol/muc#user'/>\
         <error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    // The room answers the ping after the error: the owner's message comes later still.
    visitor.send(&format!(
        "<iq type='get' id='ping' to='{room}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    visitor.expect("ping", |s| s.id().as_deref() == Some("ping"));
    groupchat(&mut owner, &room, "sync", "after");
    let before = until_groupchat(&mut bob, "sync");
    assert!(
        !before.iter().any(|s| text(s).contains("spam")),
        "{:?}",
        before.iter().map(text).collect::<Vec<_>>()
    );
}

/// RFC 6120 §8.2.3: every request forwarded to an occupant is answered. Past the room's 256
/// pending requests the oldest was forgotten unanswered; it is now answered `resource-constraint`
/// (the others `service-unavailable` when the occupant that never answered leaves).
#[test]
fn every_request_forwarded_to_an_occupant_is_answered() {
    let server = start(2, 2, "");
    let room = format!("fwd@{SERVICE}");
    let mut asker = server.login("u0", "r", Some(0));
    let mut mute = server.login("u1", "r", Some(0));
    create(&mut asker, &room, "asker", "");
    join(&mut mute, &room, "mute", "");
    let n = 300;
    for i in 0..n {
        asker.send(&format!(
            "<iq type='get' to='{room}/mute' id='f{i}'><query xmlns='jabber:iq:version'/></iq>"
        ));
    }
    let answer = |asker: &mut Client, i: usize| {
        let id = format!("f{i}");
        let e = asker.expect("an answer", |s| s.id().as_deref() == Some(id.as_str()));
        assert_eq!(e.type_().as_deref(), Some("error"), "{}", text(&e));
        error_condition(&e).unwrap_or_default()
    };
    for i in 0..n - 256 {
        assert_eq!(answer(&mut asker, i), "resource-constraint");
    }
    mute.send(&format!("<presence type='unavailable' to='{room}/mute'/>"));
    for i in n - 256..n {
        assert_eq!(answer(&mut asker, i), "service-unavailable");
    }
}

/// Sends a `muc#admin` set of `items` to `room` as IQ `id` and returns its answer.
fn admin_set(c: &mut Client, room: &str, id: &str, items: &str) -> petrel::xml::Stanza {
    c.send(&format!(
        "<iq type='set' id='{id}' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query></iq>"
    ));
    c.expect("admin answer", |s| s.id().as_deref() == Some(id))
}

/// XEP-0045 §8.4: a moderator may not revoke voice from an occupant whose affiliation is at or
/// above its own (it could from a fellow member); §8.2: kicking is barred only for a higher one.
#[test]
fn a_member_moderator_silences_no_fellow_member_but_may_kick_one() {
    let server = start(2, 3, "");
    let room = format!("voice@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    let mut bob = server.login("u1", "r", Some(0));
    let mut carol = server.login("u2", "r", Some(0));
    create(&mut owner, &room, "o", "");
    join(&mut bob, &room, "bob", "");
    join(&mut carol, &room, "carol", "");
    let members = "<item affiliation='member' jid='u1@localhost'/>\
                   <item affiliation='member' jid='u2@localhost'/>";
    let r = admin_set(&mut owner, &room, "m", members);
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = admin_set(
        &mut owner,
        &room,
        "mod",
        "<item role='moderator' nick='bob'/>",
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = admin_set(&mut bob, &room, "v", "<item role='visitor' nick='carol'/>");
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-allowed"),
        "{}",
        text(&r)
    );
    let r = admin_set(&mut bob, &room, "k", "<item role='none' nick='carol'/>");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
}

/// XEP-0045 §9.1: a room admin may not ban an owner, and a service administrator (`admins`) is
/// one in every room; it was banned, the room's stored list being read. Nor may an owner take
/// the service administrator's ownership away (§10.4: `not-authorized`): in a members-only room
/// setting it to `none` removed it from the room.
#[test]
fn no_room_takes_a_service_administrator_s_ownership() {
    let server = start(2, 3, "admins = [\"u2@localhost\"]");
    let room = format!("sysop@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    let mut admin = server.login("u1", "r", Some(0));
    let mut sysop = server.login("u2", "r", Some(0));
    create(&mut owner, &room, "o", &field("membersonly", "1"));
    let r = admin_set(
        &mut owner,
        &room,
        "a",
        "<item affiliation='admin' jid='u1@localhost'/>",
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    join(&mut admin, &room, "admin", "");
    join(&mut sysop, &room, "sysop", "");
    let ban = "<item affiliation='outcast' jid='u2@localhost'/>";
    let r = admin_set(&mut admin, &room, "b", ban);
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-allowed"),
        "{}",
        text(&r)
    );
    let none = "<item affiliation='none' jid='u2@localhost'/>";
    let r = admin_set(&mut owner, &room, "n", none);
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-authorized"),
        "{}",
        text(&r)
    );
    // Listed as an owner of the room too, then left out of the form's owner list: it stays.
    let own = "<item affiliation='owner' jid='u2@localhost'/>";
    let r = admin_set(&mut owner, &room, "o", own);
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    owner.send(&format!(
        "<iq type='set' id='cfg2' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_roomowners'><value>u0@localhost</value></field></x></query></iq>"
    ));
    let r = owner.expect("config result", |s| s.id().as_deref() == Some("cfg2"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    // Still in: the owner's message reaches it.
    groupchat(&mut owner, &room, "still", "here?");
    let before = until_groupchat(&mut sysop, "still");
    assert!(
        !before
            .iter()
            .any(|s| s.type_().as_deref() == Some("unavailable")),
        "{:?}",
        before.iter().map(text).collect::<Vec<_>>()
    );
}

/// XEP-0045 §7.14 (status 332): the goodbye at shutdown carries the occupant's own affiliation;
/// it said `none` for everyone, owners and members too.
#[test]
fn the_shutdown_goodbye_carries_each_occupant_s_affiliation() {
    let mut server = start(2, 3, "");
    let room = format!("aff@{SERVICE}");
    let mut clients = occupied(&server, 3, &room);
    let r = admin_set(
        &mut clients[0],
        &room,
        "m",
        "<item affiliation='member' jid='u1@localhost'/>",
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    // The member's own presence with its new affiliation reached it before the stop.
    clients[1].expect("own presence", |s| {
        s.name() == "presence" && has_status(s, "110") && text(s).contains("affiliation='member'")
    });
    server.stop();
    for (c, want) in clients.iter_mut().zip(["owner", "member", "none"]) {
        let seen = c.read_to_close();
        let at = seen
            .find("code='332'")
            .unwrap_or_else(|| panic!("no 332: {seen}"));
        let start = seen[..at].rfind("<presence").unwrap_or(0);
        let goodbye = &seen[start..at];
        assert!(
            goodbye.contains(&format!("affiliation='{want}'")),
            "{want}: {goodbye}"
        );
    }
}

/// XEP-0045 §10.2.1: a configuration change that only makes the room non-anonymous (or
/// semi-anonymous) is told with its own code (172, 173) alone; it came with 104 too, which is for
/// any other change.
#[test]
fn a_privacy_change_alone_says_only_its_code() {
    let server = start(2, 2, "");
    let room = format!("priv@{SERVICE}");
    let mut owner = server.login("u0", "r", Some(0));
    let mut other = server.login("u1", "r", Some(0));
    create(&mut owner, &room, "o", "");
    join(&mut other, &room, "p", "");
    let configure = |c: &mut Client, id: &str, fields: &str| {
        c.send(&format!(
            "<iq type='set' id='{id}' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{fields}</x></query></iq>"
        ));
        let r = c.expect("config result", |s| s.id().as_deref() == Some(id));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    };
    let notice = |c: &mut Client| {
        let m = c.expect("notice", |s| {
            s.name() == "message"
                && s.from().as_deref() == Some(room.as_str())
                && text(s).contains(common::muc::MUC_USER)
        });
        ["104", "172", "173"]
            .into_iter()
            .filter(|code| has_status(&m, code))
            .collect::<Vec<_>>()
    };
    configure(&mut owner, "c1", &field("whois", "anyone"));
    assert_eq!(notice(&mut other), ["172"]);
    configure(
        &mut owner,
        "c2",
        &format!(
            "{}{}",
            field("whois", "moderators"),
            field("roomname", "Quiet")
        ),
    );
    assert_eq!(notice(&mut other), ["104", "173"]);
}
