//! Entering (creation, errors, presence order, history, subject), updates, nick changes, leaving.

use std::time::Duration;

use super::tests::*;
use super::*;
use crate::xml::Element;
use crate::xmpp::ns;

#[test]
fn owner_creates_a_locked_room_then_instant_config_unlocks_it() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    let out = feed(&mut room, ALICE, &join_xml("alice"));
    let got = sent_to(&out, ALICE);
    assert_eq!(got.len(), 2, "own presence then subject: {got:?}");
    assert_eq!(got[0].name, "presence");
    assert_eq!(got[0].attr("from"), Some(&*format!("{ROOM}/alice")));
    let c = codes(&got[0]);
    assert!(c.contains(&110) && c.contains(&201), "{c:?}");
    let it = item(&got[0]);
    assert_eq!(
        (it.attr("affiliation"), it.attr("role")),
        (Some("owner"), Some("moderator"))
    );
    assert!(got[1].get_child("subject", ns::CLIENT).is_some());
    assert!(room.is_locked());
    // Locked: nobody else gets in.
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(only_error(&out, BOB), "item-not-found");
    // Instant room: empty submit.
    let out = feed(&mut room, ALICE, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    assert!(!room.is_locked());
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert!(sent_to(&out, BOB).iter().all(|e| error_of(e).is_none()));
    assert_eq!(room.occupants(), 2);
}

#[test]
fn creation_without_muc_x_is_an_instant_room() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    feed(&mut room, ALICE, &format!("<presence to='{ROOM}/alice'/>"));
    assert!(!room.is_locked());
    let out = feed(&mut room, BOB, &format!("<presence to='{ROOM}/bob'/>"));
    assert!(error_of(&sent_to(&out, BOB)[0]).is_none());
}

#[test]
fn joiner_gets_others_then_itself_and_others_get_the_joiner() {
    let mut room = room_with(&[]);
    let out = feed(&mut room, BOB, &format!("<presence to='{ROOM}/bob'><show>away</show><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    let to_bob = sent_to(&out, BOB);
    assert_eq!(to_bob[0].attr("from"), Some(&*format!("{ROOM}/alice")));
    // Semi-anonymous: a participant does not see alice's real JID.
    assert_eq!(item(&to_bob[0]).attr("jid"), None);
    assert_eq!(to_bob[1].attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(codes(&to_bob[1]), [110]);
    assert_eq!(item(&to_bob[1]).attr("role"), Some("participant"));
    assert_eq!(item(&to_bob[1]).attr("affiliation"), Some("none"));
    assert!(to_bob
        .last()
        .and_then(|m| m.get_child("subject", ns::CLIENT))
        .is_some());
    let to_alice = sent_to(&out, ALICE);
    assert_eq!(to_alice.len(), 1);
    assert_eq!(to_alice[0].attr("from"), Some(&*format!("{ROOM}/bob")));
    // The moderator sees bob's real JID, and bob's show travels.
    assert_eq!(item(&to_alice[0]).attr("jid"), Some(BOB));
    assert_eq!(
        to_alice[0]
            .get_child("show", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("away")
    );
    assert!(codes(&to_alice[0]).is_empty());
}

#[test]
fn non_anonymous_room_shows_jids_to_all_and_says_100() {
    let mut room = room_with(&[("muc#roomconfig_whois", "anyone")]);
    let out = feed(&mut room, BOB, &join_xml("bob"));
    let to_bob = sent_to(&out, BOB);
    assert_eq!(item(&to_bob[0]).attr("jid"), Some(ALICE));
    let c = codes(&to_bob[1]);
    assert!(c.contains(&100) && c.contains(&110), "{c:?}");
}

#[test]
fn entry_errors() {
    // Nick conflict.
    let mut room = room_alice_bob();
    let out = feed(&mut room, CAROL, &join_xml("bob"));
    assert_eq!(only_error(&out, CAROL), "conflict");
    let e = &sent_to(&out, CAROL)[0];
    assert_eq!(e.name, "presence");
    assert_eq!(e.attr("from"), Some(&*format!("{ROOM}/bob")));
    // Missing nickname / invalid nickname.
    let out = feed(
        &mut room,
        CAROL,
        &format!("<presence to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    assert_eq!(only_error(&out, CAROL), "jid-malformed");
    let out = feed(&mut room, CAROL, &format!("<presence to='{ROOM}/'/>"));
    assert_eq!(only_error(&out, CAROL), "jid-malformed");
    assert_eq!(room.occupants(), 2);
}

#[test]
fn members_only_refuses_non_members() {
    let mut room = room_with(&[("muc#roomconfig_membersonly", "1")]);
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(only_error(&out, BOB), "registration-required");
    feed(&mut room, ALICE, &format!("<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='member'/></query></iq>"));
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert!(error_of(&sent_to(&out, BOB)[0]).is_none());
}

#[test]
fn banned_user_is_forbidden() {
    let mut room = room_with(&[]);
    feed(&mut room, ALICE, &format!("<iq type='set' id='b' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='outcast'/></query></iq>"));
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(only_error(&out, BOB), "forbidden");
}

#[test]
fn password_is_required() {
    let mut room = room_with(&[
        ("muc#roomconfig_passwordprotectedroom", "1"),
        ("muc#roomconfig_roomsecret", "s3cret"),
    ]);
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(only_error(&out, BOB), "not-authorized");
    let wrong = format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'><password>nope</password></x></presence>");
    assert_eq!(
        only_error(&feed(&mut room, BOB, &wrong), BOB),
        "not-authorized"
    );
    let right = wrong.replace("nope", "s3cret");
    let out = feed(&mut room, BOB, &right);
    assert!(error_of(&sent_to(&out, BOB)[0]).is_none());
    assert_eq!(room.occupants(), 2);
}

#[test]
fn full_room_is_service_unavailable_but_admins_pass() {
    let mut room = room_with(&[("muc#roomconfig_maxusers", "2")]);
    feed(&mut room, BOB, &join_xml("bob"));
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    assert_eq!(only_error(&out, CAROL), "service-unavailable");
    feed(&mut room, ALICE, &format!("<iq type='set' id='a' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='carol@localhost' affiliation='admin'/></query></iq>"));
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    assert!(error_of(&sent_to(&out, CAROL)[0]).is_none());
}

#[test]
fn service_limit_caps_max_users() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits {
            max_occupants: 2,
            ..RoomLimits::default()
        },
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    configure(&mut room, ALICE, &[("muc#roomconfig_maxusers", "100")]);
    assert_eq!(room.config().max_users, 2);
    feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &join_xml("carol")), CAROL),
        "service-unavailable"
    );
}

/// Three groupchat messages from alice at t0, t0+10s, t0+20s.
fn room_with_history() -> Room {
    let mut room = room_with(&[]);
    for i in 0..3u64 {
        feed_at(
            &mut room,
            ALICE,
            &format!(
                "<message type='groupchat' id='m{i}' to='{ROOM}'><body>msg{i}</body></message>"
            ),
            t0() + Duration::from_secs(10 * i),
        );
    }
    room
}

fn bodies(els: &[Element]) -> Vec<String> {
    els.iter()
        .filter_map(|e| e.get_child("body", ns::CLIENT))
        .map(Element::text)
        .collect()
}

#[test]
fn history_then_subject_after_joining() {
    let mut room = room_with_history();
    feed(
        &mut room,
        ALICE,
        &format!("<message type='groupchat' to='{ROOM}'><subject>Topic</subject></message>"),
    );
    let out = feed_at(
        &mut room,
        BOB,
        &join_xml("bob"),
        t0() + Duration::from_secs(30),
    );
    let to_bob = sent_to(&out, BOB);
    assert_eq!(bodies(&to_bob), ["msg0", "msg1", "msg2"]);
    let first = to_bob
        .iter()
        .find(|e| e.get_child("body", ns::CLIENT).is_some())
        .expect("history");
    assert_eq!(first.attr("from"), Some(&*format!("{ROOM}/alice")));
    assert_eq!(first.attr("to"), Some(BOB));
    let delay = first.get_child("delay", "urn:xmpp:delay").expect("delay");
    assert_eq!(delay.attr("from"), Some(ROOM));
    assert_eq!(delay.attr("stamp"), Some("2023-11-14T22:13:20Z"));
    let last = to_bob.last().expect("subject");
    assert_eq!(
        last.get_child("subject", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("Topic")
    );
    assert_eq!(last.attr("from"), Some(&*format!("{ROOM}/alice")));
}

#[test]
fn history_request_limits() {
    let later = t0() + Duration::from_secs(30);
    let ask = |h: &str| {
        format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'>{h}</x></presence>")
    };
    let cases = [
        ("<history maxstanzas='2'/>", vec!["msg1", "msg2"]),
        ("<history maxstanzas='0'/>", vec![]),
        ("<history seconds='15'/>", vec!["msg2"]),
        (
            "<history since='2023-11-14T22:13:25Z'/>",
            vec!["msg1", "msg2"],
        ),
        ("<history maxchars='0'/>", vec![]),
    ];
    for (h, want) in cases {
        let mut room = room_with_history();
        let out = feed_at(&mut room, BOB, &ask(h), later);
        assert_eq!(bodies(&sent_to(&out, BOB)), want, "{h}");
    }
}

#[test]
fn history_length_is_capped_by_limits() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits {
            max_history: 2,
            ..RoomLimits::default()
        },
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    configure(&mut room, ALICE, &[("muc#maxhistoryfetch", "10")]);
    assert_eq!(room.config().history_length, 2);
    for i in 0..4 {
        feed(
            &mut room,
            ALICE,
            &format!("<message type='groupchat' to='{ROOM}'><body>msg{i}</body></message>"),
        );
    }
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(bodies(&sent_to(&out, BOB)), ["msg2", "msg3"]);
}

#[test]
fn presence_update_is_broadcast() {
    let mut room = room_alice_bob();
    let out = feed(
        &mut room,
        BOB,
        &format!("<presence to='{ROOM}/bob'><show>dnd</show></presence>"),
    );
    for who in [ALICE, BOB] {
        let p = sent_to(&out, who);
        assert_eq!(p.len(), 1, "{who}");
        assert_eq!(
            p[0].get_child("show", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("dnd")
        );
    }
    assert_eq!(codes(&sent_to(&out, BOB)[0]), [110]);
}

#[test]
fn leaving_tells_everyone_including_self() {
    let mut room = room_alice_bob();
    let out = feed(
        &mut room,
        BOB,
        &format!("<presence type='unavailable' to='{ROOM}/bob'><status>bye</status></presence>"),
    );
    let a = sent_to(&out, ALICE);
    assert_eq!(a[0].attr("type"), Some("unavailable"));
    assert_eq!(item(&a[0]).attr("role"), Some("none"));
    assert_eq!(
        a[0].get_child("status", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("bye")
    );
    let b = sent_to(&out, BOB);
    assert_eq!(b[0].attr("type"), Some("unavailable"));
    assert_eq!(codes(&b[0]), [110]);
    assert_eq!(room.occupants(), 1);
    assert!(!has_out(&out, is_destroyed));
}

#[test]
fn session_end_is_a_leave() {
    let mut room = room_alice_bob();
    let out = room.session_ended(&full(BOB), t0());
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("unavailable"));
    assert_eq!(room.occupants(), 1);
    let out = room.session_ended(&full(ALICE), t0());
    assert!(has_out(&out, is_destroyed));
    assert!(room.session_ended(&full(CAROL), t0()).is_empty());
}

#[test]
fn nick_change_says_303_then_new_presence() {
    let mut room = room_alice_bob();
    let out = feed(&mut room, BOB, &format!("<presence to='{ROOM}/robert'/>"));
    for who in [ALICE, BOB] {
        let p = sent_to(&out, who);
        assert_eq!(p.len(), 2, "{who}: {p:?}");
        assert_eq!(p[0].attr("type"), Some("unavailable"));
        assert_eq!(p[0].attr("from"), Some(&*format!("{ROOM}/bob")));
        assert!(codes(&p[0]).contains(&303));
        assert_eq!(item(&p[0]).attr("nick"), Some("robert"));
        assert_eq!(p[1].attr("type"), None);
        assert_eq!(p[1].attr("from"), Some(&*format!("{ROOM}/robert")));
    }
    assert!(codes(&sent_to(&out, BOB)[1]).contains(&110));
    // The old nick is free, the new one taken.
    let out = feed(&mut room, CAROL, &join_xml("robert"));
    assert_eq!(only_error(&out, CAROL), "conflict");
    let out = feed(&mut room, BOB, &format!("<presence to='{ROOM}/alice'/>"));
    assert_eq!(only_error(&out, BOB), "conflict");
    assert_eq!(room.occupants(), 2);
}

#[test]
fn rejoin_from_same_session_resends_state() {
    let mut room = room_alice_bob();
    let out = feed(&mut room, BOB, &join_xml("bob"));
    let b = sent_to(&out, BOB);
    assert_eq!(b.len(), 3, "alice, self, subject: {b:?}");
    assert!(codes(&b[1]).contains(&110));
    assert_eq!(room.occupants(), 2);
}

#[test]
fn sessions_of_one_user_share_a_nickname() {
    const BOB2: &str = "bob@localhost/other";
    let mut room = room_alice_bob();
    let out = feed(&mut room, BOB2, &join_xml("bob"));
    let b2 = sent_to(&out, BOB2);
    assert_eq!(b2.len(), 3, "alice, self, subject: {b2:?}");
    assert_eq!(item(&b2[1]).attr("jid"), Some(BOB2));
    assert!(codes(&b2[1]).contains(&110));
    assert!(sent_to(&out, ALICE).is_empty(), "nobody new for the others");
    assert_eq!(room.occupants(), 2);
    // Both sessions get groupchat and private messages.
    let out = feed(
        &mut room,
        ALICE,
        &format!("<message type='groupchat' to='{ROOM}'><body>hi</body></message>"),
    );
    let mut to = broadcasts(&out)[0].1.clone();
    to.sort();
    assert_eq!(to, [ALICE, BOB, BOB2]);
    let out = feed(
        &mut room,
        ALICE,
        &format!("<message type='chat' to='{ROOM}/bob'><body>psst</body></message>"),
    );
    assert_eq!(
        (sent_to(&out, BOB).len(), sent_to(&out, BOB2).len()),
        (1, 1)
    );
    // Another user still conflicts; one session may not rename the shared nickname.
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &join_xml("bob")), CAROL),
        "conflict"
    );
    assert_eq!(
        only_error(
            &feed(&mut room, BOB2, &format!("<presence to='{ROOM}/rob'/>")),
            BOB2
        ),
        "not-acceptable"
    );
    // The first session leaves alone; the nickname stays with the other.
    let out = feed(
        &mut room,
        BOB,
        &format!("<presence type='unavailable' to='{ROOM}/bob'/>"),
    );
    assert!(sent_to(&out, ALICE).is_empty());
    let gone = sent_to(&out, BOB);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].attr("type"), Some("unavailable"));
    assert!(codes(&gone[0]).contains(&110));
    assert_eq!(room.occupants(), 2);
    let out = feed(
        &mut room,
        ALICE,
        &format!("<message type='chat' to='{ROOM}/bob'><body>psst</body></message>"),
    );
    assert_eq!(
        (sent_to(&out, BOB).len(), sent_to(&out, BOB2).len()),
        (0, 1)
    );
    let out = room.session_ended(&full(BOB2), t0());
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("unavailable"));
    assert_eq!(room.occupants(), 1);
}

#[test]
fn refused_creation_leaves_no_room() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    let out = feed(&mut room, ALICE, &format!("<presence to='{ROOM}'/>"));
    assert_eq!(
        error_of(&sent_to(&out, ALICE)[0]).as_deref(),
        Some("jid-malformed")
    );
    assert!(has_out(&out, is_destroyed));
}

#[test]
fn permanent_error_from_an_occupant_removes_it_with_333() {
    let mut room = room_alice_bob();
    let wait = format!("<message type='error' to='{ROOM}'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>");
    assert!(feed(&mut room, BOB, &wait).is_empty());
    assert_eq!(room.occupants(), 2);
    let cancel = wait.replace("'wait'", "'cancel'");
    let out = feed(&mut room, BOB, &cancel);
    let p = &sent_to(&out, ALICE)[0];
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(codes(p).contains(&333));
    assert_eq!(room.occupants(), 1);
    // Errors never get error replies.
    assert!(sent_to(&out, BOB).iter().all(|e| error_of(e).is_none()));
    let perr = format!("<presence type='error' to='{ROOM}/alice'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>");
    let out = feed(&mut room, ALICE, &perr);
    assert!(has_out(&out, is_destroyed));
}

#[test]
fn nick_prepared_by_the_service_says_210() {
    let mut room = room_with(&[]);
    // Resourceprep (NFKC) turns the fullwidth letters into "bob".
    let out = feed(&mut room, BOB, &join_xml("\u{ff42}\u{ff4f}\u{ff42}"));
    let own = sent_to(&out, BOB)
        .into_iter()
        .find(|p| codes(p).contains(&110))
        .expect("own presence");
    assert_eq!(own.attr("from"), Some(&*format!("{ROOM}/bob")));
    assert!(codes(&own).contains(&210));
}
