//! Groupchat, subject, private messages, self-ping and invitations.

use std::sync::Arc;

use super::tests::*;
use super::types::NS_MUC_USER;
use super::*;
use crate::xml::Element;
use crate::xmpp::ns;

fn groupchat(body: &str) -> String {
    format!("<message type='groupchat' id='g1' to='{ROOM}'><body>{body}</body></message>")
}

#[test]
fn groupchat_is_reflected_to_everyone_with_the_same_bytes() {
    let mut room = room_alice_bob();
    let out = feed(&mut room, BOB, &groupchat("hello"));
    assert_eq!(out.len(), 1);
    let b = broadcasts(&out);
    let (m, to) = &b[0];
    assert_eq!(m.attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(m.attr("to"), None);
    assert_eq!(m.attr("id"), Some("g1"));
    assert_eq!(
        m.get_child("body", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("hello")
    );
    let mut to = to.clone();
    to.sort();
    assert_eq!(to, [ALICE, BOB]);
}

#[test]
fn broadcast_lists_are_grouped_by_shard_and_cached() {
    let mut room = room_with(&[]);
    room.handle(&full(BOB), ShardId(3), &stanza(&join_xml("bob")), t0());
    room.handle(&full(CAROL), ShardId(3), &stanza(&join_xml("carol")), t0());
    let lists = |out: &[RoomOut]| match &out[0] {
        RoomOut::Broadcast { to, .. } => to.clone(),
        other => panic!("not a broadcast: {other:?}"),
    };
    let a = lists(&feed(&mut room, ALICE, &groupchat("1")));
    let b = lists(&feed(&mut room, ALICE, &groupchat("2")));
    assert!(Arc::ptr_eq(&a, &b), "unchanged occupancy reuses the lists");
    let shards: Vec<(u16, usize)> = a.iter().map(|(s, js)| (s.0, js.len())).collect();
    assert_eq!(shards, [(0, 1), (3, 2)]);
    feed(
        &mut room,
        CAROL,
        &format!("<presence type='unavailable' to='{ROOM}/carol'/>"),
    );
    let c = lists(&feed(&mut room, ALICE, &groupchat("3")));
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.iter().map(|(_, js)| js.len()).sum::<usize>(), 2);
}

#[test]
fn groupchat_refusals() {
    let mut room = room_alice_bob();
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &groupchat("x")), CAROL),
        "not-acceptable"
    );
    // Too big for the service's limit.
    let limits = RoomLimits {
        max_stanza_bytes: 200,
        ..RoomLimits::default()
    };
    let mut small = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        limits,
    );
    feed(&mut small, ALICE, &format!("<presence to='{ROOM}/alice'/>"));
    let out = feed(&mut small, ALICE, &groupchat(&"a".repeat(200)));
    assert_eq!(only_error(&out, ALICE), "policy-violation");
    assert!(
        sends(&out)[0].1.get_child("body", ns::CLIENT).is_none(),
        "the big payload is not echoed"
    );
    let pm = format!(
        "<message type='chat' to='{ROOM}/alice'><body>{}</body></message>",
        "a".repeat(200)
    );
    assert_eq!(
        only_error(&feed(&mut small, ALICE, &pm), ALICE),
        "policy-violation"
    );
    assert_eq!(
        broadcasts(&feed(&mut small, ALICE, &groupchat("ok"))).len(),
        1
    );
    // A visitor in a moderated room.
    configure(&mut room, ALICE, &[("muc#roomconfig_moderatedroom", "1")]);
    feed(&mut room, CAROL, &join_xml("carol"));
    let out = feed(&mut room, CAROL, &groupchat("x"));
    assert_eq!(only_error(&out, CAROL), "forbidden");
}

#[test]
fn subject_changes_need_permission_and_are_remembered() {
    let mut room = room_alice_bob();
    let subj = format!("<message type='groupchat' to='{ROOM}'><subject>New</subject></message>");
    assert_eq!(only_error(&feed(&mut room, BOB, &subj), BOB), "forbidden");
    let out = feed(&mut room, ALICE, &subj);
    let b = broadcasts(&out);
    assert_eq!(
        b[0].0
            .get_child("subject", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("New")
    );
    assert!(!has_out(&out, is_save), "temporary rooms are not stored");
    configure(
        &mut room,
        ALICE,
        &[
            ("muc#roomconfig_changesubject", "1"),
            ("muc#roomconfig_persistentroom", "1"),
        ],
    );
    let out = feed(&mut room, BOB, &subj.replace("New", "Bob's"));
    assert_eq!(broadcasts(&out).len(), 1);
    assert!(has_out(&out, is_save));
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    let last = sent_to(&out, CAROL).pop().expect("subject");
    assert_eq!(
        last.get_child("subject", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("Bob's")
    );
    assert_eq!(last.attr("from"), Some(&*format!("{ROOM}/bob")));
}

fn pm(nick: &str) -> String {
    format!("<message type='chat' id='p' to='{ROOM}/{nick}'><body>psst</body></message>")
}

#[test]
fn private_messages_go_to_the_real_jid() {
    let mut room = room_alice_bob();
    let out = feed(&mut room, BOB, &pm("alice"));
    let got = sent_to(&out, ALICE);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(got[0].attr("to"), Some(ALICE));
    assert_eq!(got[0].attr("id"), Some("p"));
    assert!(got[0].get_child("x", NS_MUC_USER).is_some());
    assert_eq!(
        only_error(&feed(&mut room, BOB, &pm("nobody")), BOB),
        "item-not-found"
    );
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &pm("alice")), CAROL),
        "not-acceptable"
    );
    let gc = format!("<message type='groupchat' to='{ROOM}/alice'><body>x</body></message>");
    assert_eq!(only_error(&feed(&mut room, BOB, &gc), BOB), "bad-request");
}

#[test]
fn allow_pm_is_honoured() {
    let mut room = room_alice_bob();
    configure(
        &mut room,
        ALICE,
        &[("muc#roomconfig_allowpm", "moderators")],
    );
    assert_eq!(
        only_error(&feed(&mut room, BOB, &pm("alice")), BOB),
        "forbidden"
    );
    assert_eq!(sent_to(&feed(&mut room, ALICE, &pm("bob")), BOB).len(), 1);
    configure(&mut room, ALICE, &[("muc#roomconfig_allowpm", "none")]);
    assert_eq!(
        only_error(&feed(&mut room, ALICE, &pm("bob")), ALICE),
        "forbidden"
    );
}

fn ping(nick: &str) -> String {
    format!("<iq type='get' id='sp' to='{ROOM}/{nick}'><ping xmlns='urn:xmpp:ping'/></iq>")
}

#[test]
fn self_ping() {
    let mut room = room_alice_bob();
    let r = sent_to(&feed(&mut room, BOB, &ping("bob")), BOB);
    assert_eq!(
        (r[0].attr("type"), r[0].attr("id")),
        (Some("result"), Some("sp"))
    );
    assert_eq!(r[0].attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &ping("bob")), CAROL),
        "not-acceptable"
    );
    // §6.6: a non-occupant's disco request to an occupant is a bad request.
    for q in ["info", "items"] {
        let disco = format!(
            "<iq type='get' id='d' to='{ROOM}/bob'><query xmlns='http://jabber.org/protocol/disco#{q}'/></iq>"
        );
        assert_eq!(
            only_error(&feed(&mut room, CAROL, &disco), CAROL),
            "bad-request"
        );
    }
    // A ping to another occupant is forwarded (below).
    assert_eq!(
        sent_to(&feed(&mut room, BOB, &ping("alice")), ALICE).len(),
        1
    );
    assert_eq!(
        only_error(&feed(&mut room, BOB, &ping("zed")), BOB),
        "item-not-found"
    );
}

fn invite(to: &str) -> String {
    format!("<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'><invite to='{to}'><reason>join us</reason></invite></x></message>")
}

#[test]
fn mediated_invitation_and_decline() {
    let mut room = room_with(&[
        ("muc#roomconfig_passwordprotectedroom", "1"),
        ("muc#roomconfig_roomsecret", "pw"),
    ]);
    let out = feed(&mut room, ALICE, &invite("carol@localhost"));
    let m = sent_to(&out, "carol@localhost");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].attr("from"), Some(ROOM));
    let x = m[0].get_child("x", NS_MUC_USER).expect("x");
    let inv = x.get_child("invite", NS_MUC_USER).expect("invite");
    assert_eq!(inv.attr("from"), Some(ALICE));
    assert_eq!(
        inv.get_child("reason", NS_MUC_USER)
            .map(Element::text)
            .as_deref(),
        Some("join us")
    );
    assert_eq!(
        x.get_child("password", NS_MUC_USER)
            .map(Element::text)
            .as_deref(),
        Some("pw")
    );
    // Non-occupants may not invite.
    assert_eq!(
        only_error(&feed(&mut room, BOB, &invite("carol@localhost")), BOB),
        "not-acceptable"
    );
    // Carol declines.
    let dec = format!("<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'><decline to='{ALICE}'><reason>busy</reason></decline></x></message>");
    let out = feed(&mut room, CAROL, &dec);
    let d = sent_to(&out, ALICE);
    let dx = d[0]
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("decline", NS_MUC_USER))
        .cloned()
        .expect("decline");
    assert_eq!(dx.attr("from"), Some("carol@localhost"));
}

#[test]
fn members_only_invitations() {
    let mut room = room_with(&[("muc#roomconfig_membersonly", "1")]);
    feed(&mut room, ALICE, &format!("<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='member'/></query></iq>"));
    feed(&mut room, BOB, &join_xml("bob"));
    // A member may not invite unless allowinvites.
    assert_eq!(
        only_error(&feed(&mut room, BOB, &invite("carol@localhost")), BOB),
        "forbidden"
    );
    // The owner's invitation makes carol a member.
    let out = feed(&mut room, ALICE, &invite("carol@localhost"));
    assert_eq!(sent_to(&out, "carol@localhost").len(), 1);
    assert_eq!(
        room.affiliation(&BareJid::parse("carol@localhost").expect("valid")),
        Affiliation::Member
    );
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    assert!(error_of(&sent_to(&out, CAROL)[0]).is_none());
    // With allowinvites, members invite too, and the invitee may enter (§7.8.2: the owner let
    // members invite; an invitation to a door that stays shut would be no invitation).
    configure(&mut room, ALICE, &[("muc#roomconfig_allowinvites", "1")]);
    let out = feed(&mut room, BOB, &invite("dave@localhost"));
    assert_eq!(sent_to(&out, "dave@localhost").len(), 1);
    assert_eq!(
        room.affiliation(&BareJid::parse("dave@localhost").expect("valid")),
        Affiliation::Member
    );
    let out = feed(&mut room, "dave@localhost/d", &join_xml("dave"));
    assert!(error_of(&sent_to(&out, "dave@localhost/d")[0]).is_none());
}

#[test]
fn iqs_between_occupants_are_forwarded_and_answered_back() {
    let mut room = room_alice_bob();
    let req =
        format!("<iq type='get' id='v1' to='{ROOM}/alice'><query xmlns='jabber:iq:version'/></iq>");
    let out = feed(&mut room, BOB, &req);
    let fwd = sent_to(&out, ALICE);
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].attr("from"), Some(&*format!("{ROOM}/bob")));
    let fid = fwd[0].attr("id").expect("id").to_owned();
    assert_ne!(fid, "v1", "the requester's id is not exposed");
    assert!(fwd[0].get_child("query", "jabber:iq:version").is_some());
    // A stranger's answer under that id is dropped.
    let forged = format!("<iq type='result' id='{fid}' to='{ROOM}/bob'/>");
    assert!(feed(&mut room, CAROL, &forged).is_empty());
    let answer = format!("<iq type='result' id='{fid}' to='{ROOM}/bob'><query xmlns='jabber:iq:version'><name>x</name></query></iq>");
    let out = feed(&mut room, ALICE, &answer);
    let back = sent_to(&out, BOB);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attr("id"), Some("v1"));
    assert_eq!(back[0].attr("type"), Some("result"));
    assert_eq!(back[0].attr("from"), Some(&*format!("{ROOM}/alice")));
    assert!(back[0].get_child("query", "jabber:iq:version").is_some());
    // Answered once only.
    assert!(feed(&mut room, ALICE, &answer).is_empty());
}

/// The `<occupant-id/>` ids in `el` (XEP-0421).
fn occupant_ids(el: &Element) -> Vec<String> {
    el.child_elements()
        .filter(|c| c.name == "occupant-id" && c.ns == occupant_id::NS_OCCUPANT_ID)
        .filter_map(|c| c.attr("id").map(str::to_owned))
        .collect()
}

#[test]
fn occupant_ids_mark_every_presence_and_message_and_replace_forged_ones() {
    let ids = occupant_id::OccupantIds::new([9; 32]);
    let room_jid = BareJid::parse(ROOM).expect("valid");
    let bob_id = ids.id(&room_jid, &full(BOB).bare());
    let mut room = Room::new(room_jid.clone(), full(ALICE).bare(), RoomLimits::default())
        .with_occupant_ids(Some(ids.clone()));
    feed(&mut room, ALICE, &join_xml("alice"));
    configure(&mut room, ALICE, &[]);
    // A forged id in the join presence is replaced by the room's.
    let join = format!(
        "<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></presence>"
    );
    let out = feed(&mut room, BOB, &join);
    let seen = sent_to(&out, ALICE);
    assert_eq!(occupant_ids(&seen[0]), std::slice::from_ref(&bob_id));
    let own = sent_to(&out, BOB)
        .into_iter()
        .find(|e| codes(e).contains(&110))
        .expect("self-presence");
    assert_eq!(occupant_ids(&own), std::slice::from_ref(&bob_id));
    // Groupchat, plain and with a forged id: the room's id, once.
    for extra in [
        "",
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/>",
    ] {
        let m = format!("<message type='groupchat' to='{ROOM}'><body>hi</body>{extra}</message>");
        let b = broadcasts(&feed(&mut room, BOB, &m));
        assert_eq!(
            occupant_ids(&b[0].0),
            std::slice::from_ref(&bob_id),
            "{extra}"
        );
    }
    // The history a newcomer gets carries it too.
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    let history: Vec<Element> = sent_to(&out, CAROL)
        .into_iter()
        .filter(|e| e.name == "message" && e.get_child("body", ns::CLIENT).is_some())
        .collect();
    assert_eq!(history.len(), 2);
    assert!(history
        .iter()
        .all(|m| occupant_ids(m) == std::slice::from_ref(&bob_id)));
    // Private messages too.
    let pm = format!(
        "<message type='chat' to='{ROOM}/alice'><body>p</body>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>"
    );
    let got = sent_to(&feed(&mut room, BOB, &pm), ALICE);
    assert_eq!(occupant_ids(&got[0]), std::slice::from_ref(&bob_id));
    // Leaving, and the id is the same when bob comes back under another nickname.
    let out = feed(
        &mut room,
        BOB,
        &format!("<presence type='unavailable' to='{ROOM}/bob'/>"),
    );
    assert_eq!(
        occupant_ids(&sent_to(&out, ALICE)[0]),
        std::slice::from_ref(&bob_id)
    );
    let out = feed(&mut room, BOB, &join_xml("robert"));
    assert_eq!(
        occupant_ids(&sent_to(&out, ALICE)[0]),
        std::slice::from_ref(&bob_id)
    );
    // Advertised (§3); a room without ids neither advertises nor adds them.
    let has = |r: &Room| {
        r.disco_info()
            .child_elements()
            .any(|f| f.attr("var") == Some(occupant_id::NS_OCCUPANT_ID))
    };
    assert!(has(&room));
    let mut plain = room_alice_bob();
    assert!(!has(&plain));
    let m = format!(
        "<message type='groupchat' to='{ROOM}'><body>x</body>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>"
    );
    assert!(occupant_ids(&broadcasts(&feed(&mut plain, BOB, &m))[0].0).is_empty());
}

#[test]
fn one_message_carries_a_bounded_number_of_invitations() {
    let mut room = room_alice_bob();
    let many: String = (0..21)
        .map(|i| format!("<invite to='u{i}@localhost'/>"))
        .collect();
    let m = format!("<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'>{many}</x></message>");
    assert_eq!(
        only_error(&feed(&mut room, ALICE, &m), ALICE),
        "policy-violation"
    );
    let declines: String = (0..21).map(|_| "<decline to='bob@localhost'/>").collect();
    let m = format!("<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'>{declines}</x></message>");
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &m), CAROL),
        "policy-violation"
    );
}

#[test]
fn a_request_to_an_occupant_that_leaves_is_answered_for_it() {
    for leave in [
        format!("<presence type='unavailable' to='{ROOM}/alice'/>"),
        String::new(), // kicked instead
    ] {
        let mut room = room_alice_bob();
        feed(&mut room, CAROL, &join_xml("carol"));
        let req = format!(
            "<iq type='get' id='v9' to='{ROOM}/bob'><query xmlns='jabber:iq:version'/></iq>"
        );
        assert_eq!(sent_to(&feed(&mut room, CAROL, &req), BOB).len(), 1);
        let out = if leave.is_empty() {
            feed(
                &mut room,
                ALICE,
                &format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'/></query></iq>"),
            )
        } else {
            let leave = leave.replace("/alice", "/bob");
            feed(&mut room, BOB, &leave)
        };
        let back: Vec<Element> = sent_to(&out, CAROL)
            .into_iter()
            .filter(|e| e.name == "iq")
            .collect();
        assert_eq!(back.len(), 1, "{leave}: {back:?}");
        assert_eq!(back[0].attr("id"), Some("v9"));
        assert_eq!(back[0].attr("from"), Some(&*format!("{ROOM}/bob")));
        assert_eq!(error_of(&back[0]).as_deref(), Some("service-unavailable"));
    }
}
