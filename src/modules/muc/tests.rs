//! The service on a cluster of shards (no sockets): routing to rooms' home shards, creation and
//! quota, fan-out over the mesh, the public room list, session end. The room's own protocol is
//! tested in `room/`.

use crate::c2s::route::{unbind, user_receive};
use crate::modules::testing::{error_condition, User, World, HOST};
use crate::shard::{home_shard_of, ConnMsg, ShardMsg};
use crate::xml::Stanza;

const SERVICE: &str = "conference.example.com";

fn world(shards: usize, extra: &str) -> World {
    World::new(
        shards,
        &format!("[modules.presence]\n[modules.disco]\n[modules.muc]\n{extra}"),
    )
}

/// A bound, available user on shard `on` with its own presence echo read.
fn connect(w: &mut World, on: usize, jid: &str) -> User {
    let u = w.connect(on, jid, Some(0));
    received(w, &u);
    u
}

/// What reached `user`, through the receive hooks of its shard (as its connection would).
fn received(w: &mut World, user: &User) -> Vec<Stanza> {
    let mut out = Vec::new();
    while let Some(msg) = user.mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            if let Some(acc) = user_receive(&mut w.cluster.shards[user.on], acc) {
                out.push(acc.into_stanza());
            }
        }
    }
    w.cluster.pump();
    out
}

fn has_status(s: &Stanza, code: &str) -> bool {
    s.tree().ok().is_some_and(|t| {
        t.get_child("x", super::room::types::NS_MUC_USER)
            .is_some_and(|x| {
                x.child_elements()
                    .any(|c| c.name == "status" && c.attr("code") == Some(code))
            })
    })
}

/// A room name whose home shard is `shard` (of `shards`).
fn room_on(shard: usize, shards: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}@{SERVICE}"))
        .find(|r| home_shard_of(r, shards).index() == shard)
        .unwrap_or_else(|| unreachable!("the search is unbounded"))
}

/// `user` creates `room` as an instant room (joins as `nick`, accepts the default configuration).
fn create(w: &mut World, user: &mut User, room: &str, nick: &str) {
    w.send(
        user,
        &format!(
            "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    );
    let got = received(w, user);
    assert!(
        got.iter()
            .any(|s| has_status(s, "110") && has_status(s, "201")),
        "no 201 self-presence: {got:?}"
    );
    w.send(
        user,
        &format!("<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"),
    );
    let got = received(w, user);
    assert!(
        got.iter()
            .any(|s| s.type_().as_deref() == Some("result") && s.id().as_deref() == Some("cfg")),
        "instant room not accepted: {got:?}"
    );
}

fn join(w: &mut World, user: &mut User, room: &str, nick: &str) -> Vec<Stanza> {
    w.send(
        user,
        &format!(
            "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    );
    received(w, user)
}

#[test]
fn service_is_listed_and_answers_disco() {
    let mut w = world(2, "");
    let mut u = connect(&mut w, 1, &format!("u@{HOST}/r"));
    let items = w.iq(&mut u, &format!("<iq type='get' id='i' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
    let t = items.tree().unwrap_or_else(|e| panic!("{e}"));
    let q = t
        .get_child("query", crate::xmpp::ns::DISCO_ITEMS)
        .unwrap_or_else(|| panic!("{t:?}"));
    assert!(
        q.child_elements().any(|i| i.attr("jid") == Some(SERVICE)),
        "{t:?}"
    );
    let info = w.iq(&mut u, &format!("<iq type='get' id='i' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    let text = String::from_utf8_lossy(info.bytes()).into_owned();
    assert!(
        text.contains("category='conference'") || text.contains("category=\"conference\""),
        "{text}"
    );
    assert!(text.contains(super::room::types::NS_MUC), "{text}");
    // XEP-0199 §4.2: the service answers a ping (it was service-unavailable).
    assert!(text.contains("urn:xmpp:ping"), "{text}");
    let pong = w.iq(
        &mut u,
        &format!("<iq type='get' id='p' to='{SERVICE}'><ping xmlns='urn:xmpp:ping'/></iq>"),
    );
    assert_eq!(
        pong.ty(),
        crate::xml::StanzaType::Result,
        "{:?}",
        pong.tree()
    );
}

#[test]
fn unknown_room_answers_item_not_found() {
    let mut w = world(2, "");
    let mut u = connect(&mut w, 0, &format!("u@{HOST}/r"));
    let room = room_on(1, 2, "none");
    w.send(
        &mut u,
        &format!("<message type='groupchat' to='{room}'><body>x</body></message>"),
    );
    let got = received(&mut w, &u);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_condition(&got[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn occupants_on_both_shards_get_groupchat_with_one_mesh_message_per_shard() {
    let mut w = world(2, "");
    let room = room_on(0, 2, "fan");
    let mut owner = connect(&mut w, 0, &format!("owner@{HOST}/r"));
    create(&mut w, &mut owner, &room, "own");
    let mut others: Vec<User> = (0..3)
        .map(|i| connect(&mut w, 1, &format!("p{i}@{HOST}/r")))
        .collect();
    for (i, u) in others.iter_mut().enumerate() {
        let got = join(&mut w, u, &room, &format!("n{i}"));
        assert!(got.iter().any(|s| has_status(s, "110")), "{got:?}");
    }
    received(&mut w, &owner);
    for u in &others {
        received(&mut w, u);
    }
    // The owner's message: routed on shard 0, the room is homed there, three occupants on shard 1.
    let s = Stanza::parse(
        format!("<message type='groupchat' id='m1' to='{room}'><body>hi</body></message>")
            .into_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    crate::c2s::route::user_send(&mut w.cluster.shards[0], &mut owner.sess, s);
    let out = w.cluster.shards[0].take_outgoing();
    let multicasts: Vec<_> = out
        .iter()
        .filter(|(to, m)| to.index() == 1 && matches!(m, ShardMsg::Multicast(..)))
        .collect();
    assert_eq!(multicasts.len(), 1, "{out:?}");
    assert_eq!(out.len(), 1, "{out:?}");
    for (to, msg) in out {
        w.cluster.shards[to.index()].handle_msg(msg);
    }
    w.cluster.pump();
    for (i, u) in others.iter().enumerate() {
        let got = received(&mut w, u);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[0].to().as_deref(),
            Some(format!("p{i}@{HOST}/r").as_str())
        );
        assert_eq!(
            got[0].from().as_deref(),
            Some(format!("{room}/own").as_str())
        );
        assert_eq!(got[0].id().as_deref(), Some("m1"));
    }
    let mine = received(&mut w, &owner);
    assert_eq!(mine.len(), 1, "the sender gets its reflection: {mine:?}");
}

#[test]
fn quota_limits_rooms_per_user_and_frees_on_destroy() {
    let mut w = world(2, "max_rooms_per_user = 1");
    let mut u = connect(&mut w, 0, &format!("u@{HOST}/r"));
    let (a, b) = (room_on(0, 2, "qa"), room_on(1, 2, "qb"));
    create(&mut w, &mut u, &a, "me");
    let got = join(&mut w, &mut u, &b, "me");
    assert!(
        got.iter()
            .any(|s| error_condition(s).as_deref() == Some("not-allowed")),
        "{got:?}"
    );
    // Leaving the temporary room destroys it and frees the quota.
    w.send(
        &mut u,
        &format!("<presence type='unavailable' to='{a}/me'/>"),
    );
    received(&mut w, &u);
    create(&mut w, &mut u, &b, "me");
}

#[test]
fn a_session_that_ends_without_leaving_leaves_its_rooms() {
    let mut w = world(2, "");
    let room = room_on(1, 2, "gone");
    let mut owner = connect(&mut w, 1, &format!("owner@{HOST}/r"));
    create(&mut w, &mut owner, &room, "own");
    // No initial presence: the presence module has nothing to broadcast for it when it ends.
    let mut p = w.connect(0, &format!("p@{HOST}/r"), None);
    join(&mut w, &mut p, &room, "p");
    received(&mut w, &owner);
    unbind(&mut w.cluster.shards[0], &p.sess);
    w.cluster.pump();
    let got = received(&mut w, &owner);
    assert!(
        got.iter()
            .any(|s| s.type_().as_deref() == Some("unavailable")
                && s.from().as_deref() == Some(format!("{room}/p").as_str())),
        "{got:?}"
    );
}

#[test]
fn public_rooms_of_every_shard_are_listed() {
    let mut w = world(2, "");
    let mut u = connect(&mut w, 0, &format!("u@{HOST}/r"));
    let rooms = [room_on(0, 2, "pub"), room_on(1, 2, "pub")];
    for r in &rooms {
        create(&mut w, &mut u, r, "me");
        w.send(
            &mut u,
            &format!("<iq type='set' id='c' to='{r}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_publicroom'><value>1</value></field></x></query></iq>"),
        );
        received(&mut w, &u);
    }
    let items = w.iq(&mut u, &format!("<iq type='get' id='i' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
    let t = items.tree().unwrap_or_else(|e| panic!("{e}"));
    let q = t
        .get_child("query", crate::xmpp::ns::DISCO_ITEMS)
        .unwrap_or_else(|| panic!("{t:?}"));
    let listed: Vec<&str> = q.child_elements().filter_map(|i| i.attr("jid")).collect();
    for r in &rooms {
        assert!(listed.contains(&r.as_str()), "{r} not in {listed:?}");
    }
}

#[test]
fn every_occupant_gets_every_message_whatever_the_shards() {
    let mut w = world(2, "");
    let room = room_on(1, 2, "all");
    let n = 6;
    let mut users: Vec<User> = (0..n)
        .map(|i| connect(&mut w, i % 2, &format!("u{i}@{HOST}/r")))
        .collect();
    create(&mut w, &mut users[0], &room, "n0");
    for (i, u) in users.iter_mut().enumerate().skip(1) {
        join(&mut w, u, &room, &format!("n{i}"));
    }
    for u in &users {
        received(&mut w, u);
    }
    for (i, u) in users.iter_mut().enumerate() {
        w.send(
            u,
            &format!("<message type='groupchat' id='m{i}' to='{room}'><body>b</body></message>"),
        );
    }
    for (j, u) in users.iter().enumerate() {
        let got = received(&mut w, u);
        let mut ids: Vec<String> = got
            .iter()
            .filter_map(|s| s.id().map(|i| i.into_owned()))
            .collect();
        ids.sort();
        let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        assert_eq!(ids, want, "user {j}: {got:?}");
    }
}

#[test]
fn a_change_the_store_cannot_keep_is_answered_wait_not_result() {
    for shards in [1, 2] {
        let mut w = world(shards, "");
        let mut alice = connect(&mut w, 0, &format!("alice@{HOST}/a"));
        let room = room_on(shards - 1, shards, "kept");
        create(&mut w, &mut alice, &room, "al");
        let mut ask = |w: &mut World, id: &str, query: &str| -> Stanza {
            w.send(
                &mut alice,
                &format!("<iq type='set' id='{id}' to='{room}'>{query}</iq>"),
            );
            received(w, &alice)
                .into_iter()
                .find(|s| s.name() == "iq" && s.id().as_deref() == Some(id))
                .unwrap_or_else(|| panic!("no answer to {id}"))
        };
        let persistent = "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>";
        let r = ask(&mut w, "persist", persistent);
        assert_eq!(r.type_().as_deref(), Some("result"));
        w.break_table("muc_rooms");
        let member = "<query xmlns='http://jabber.org/protocol/muc#admin'>\
             <item jid='carol@example.com' affiliation='member'/></query>";
        let r = ask(&mut w, "member", member);
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("internal-server-error")
        );
        let t = r.tree().unwrap_or_else(|e| panic!("{e}"));
        let e = t.get_child("error", crate::xmpp::ns::CLIENT);
        assert_eq!(e.and_then(|e| e.attr("type")), Some("wait"));
    }
}
