//! Presence updates, leaving, nickname changes, shared nicknames, removal on errors.

use super::tests::*;
use super::*;
use crate::xml::Element;
use crate::xmpp::ns;

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
    assert!(room.has_session(&full(BOB)));
    let out = room.session_ended(&full(BOB), t0());
    assert!(!room.has_session(&full(BOB)));
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
fn a_bounce_to_a_room_jid_with_nick_removes_the_occupant_and_a_private_ones_reaches_its_sender() {
    // RFC 6120 §8.3.1: an error goes back to the `from` it bounces, here `room/alice` (the
    // groupchat or private message came from her). It was dropped: the bouncing occupant stayed
    // (a ghost, when its server was gone) and alice never learned her private message failed.
    let mut room = room_alice_bob();
    let pm = format!("<message type='chat' id='pm1' to='{ROOM}/bob'><body>hi</body></message>");
    assert!(!sent_to(&feed(&mut room, ALICE, &pm), BOB).is_empty());
    let pm_bounce = format!(
        "<message type='error' id='pm1' to='{ROOM}/alice'><body>hi</body>\
         <x xmlns='http://jabber.org/protocol/muc#user'/>\
         <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    );
    let out = feed(&mut room, BOB, &pm_bounce);
    let to_alice = sent_to(&out, ALICE);
    let relayed = to_alice
        .iter()
        .find(|m| m.name == "message")
        .expect("the private message's error reaches alice");
    assert_eq!(relayed.attr("type"), Some("error"));
    assert_eq!(relayed.attr("from"), Some(&*format!("{ROOM}/bob")));
    assert!(to_alice
        .iter()
        .any(|p| p.name == "presence" && codes(p).contains(&333)));
    assert_eq!(room.occupants(), 1);
    // A bounce as servers build it (no payload) answers a private message by its id alone.
    let mut room = room_alice_bob();
    let pm = format!("<message type='chat' id='pm2' to='{ROOM}/bob'><body>hi</body></message>");
    assert!(!sent_to(&feed(&mut room, ALICE, &pm), BOB).is_empty());
    let bare_bounce = format!(
        "<message type='error' id='pm2' to='{ROOM}/alice'>\
         <error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    );
    let out = feed(&mut room, BOB, &bare_bounce);
    assert!(
        sent_to(&out, ALICE)
            .iter()
            .any(|m| m.name == "message" && m.attr("id") == Some("pm2")),
        "{out:?}"
    );
    // A temporary error to room/nick (a groupchat's bounce, no private marker): nothing happens.
    let mut room = room_alice_bob();
    let wait = format!("<message type='error' to='{ROOM}/alice'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>");
    assert!(feed(&mut room, BOB, &wait).is_empty());
    assert_eq!(room.occupants(), 2);
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

#[test]
fn a_rejoin_with_a_new_status_is_shown_to_the_others() {
    let mut room = room_alice_bob();
    let rejoin = |show: &str| {
        format!(
            "<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/><show>{show}</show></presence>"
        )
    };
    let out = feed(&mut room, BOB, &rejoin("away"));
    let seen = sent_to(&out, ALICE);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0]
            .get_child("show", crate::xmpp::ns::CLIENT)
            .map(|e| e.text())
            .as_deref(),
        Some("away")
    );
    // The same again changes nothing for the others.
    assert!(sent_to(&feed(&mut room, BOB, &rejoin("away")), ALICE).is_empty());
}
