//! Entering (creation, errors, presence order, history, subject), updates, nick changes, leaving.

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
    // Locked: nobody else gets in, nor sees it in disco; its owner does.
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert_eq!(only_error(&out, BOB), "item-not-found");
    let disco = format!(
        "<iq type='get' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    );
    let out = feed(&mut room, BOB, &disco);
    assert_eq!(only_error(&out, BOB), "item-not-found");
    let out = feed(&mut room, ALICE, &disco);
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
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
    // §7.2.5 knows no exemption: the owner, back after leaving, gives it too.
    feed(
        &mut room,
        ALICE,
        &format!("<presence type='unavailable' to='{ROOM}/alice'/>"),
    );
    let out = feed(&mut room, ALICE, &join_xml("alice"));
    assert_eq!(only_error(&out, ALICE), "not-authorized");
    let out = feed(&mut room, ALICE, &right.replace("/bob", "/alice"));
    assert!(error_of(&sent_to(&out, ALICE)[0]).is_none());
}

#[test]
fn a_secret_alone_protects_the_room_unless_protection_is_refused() {
    // A form with the secret and no passwordprotectedroom (Prosody's form has only the secret)
    // used to be accepted and the secret dropped: the room stayed open.
    let mut room = room_with(&[("muc#roomconfig_roomsecret", "s3cret")]);
    assert_eq!(
        only_error(&feed(&mut room, BOB, &join_xml("bob")), BOB),
        "not-authorized"
    );
    // Said explicitly, no protection wins, and the secret goes.
    let mut room = room_with(&[
        ("muc#roomconfig_passwordprotectedroom", "0"),
        ("muc#roomconfig_roomsecret", "s3cret"),
    ]);
    let out = feed(&mut room, BOB, &join_xml("bob"));
    assert!(error_of(&sent_to(&out, BOB)[0]).is_none());
}

#[test]
fn full_room_is_service_unavailable_but_admins_pass() {
    let mut room = room_with(&[("muc#roomconfig_maxusers", "2")]);
    feed(&mut room, BOB, &join_xml("bob"));
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    assert_eq!(only_error(&out, CAROL), "service-unavailable");
    // §7.2.9: a temporary condition (someone may leave).
    let err = sent_to(&out, CAROL)[0].clone();
    let err = err.get_child("error", crate::xmpp::ns::CLIENT).cloned();
    assert_eq!(
        err.and_then(|e| e.attr("type").map(str::to_owned))
            .as_deref(),
        Some("wait")
    );
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

#[test]
fn a_locked_room_is_not_listed_until_configured() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    assert!(
        room.is_locked() && !room.is_public(),
        "§10.1.1: not there yet for others"
    );
    configure(&mut room, ALICE, &[]);
    assert!(room.is_public());
}
