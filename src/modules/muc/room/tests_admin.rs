//! `muc#admin`: kicks, voice, bans, memberships, admins, owners, lists, the permission matrix.

use super::tests::*;
use super::types::NS_MUC_ADMIN;
use super::*;
use crate::xml::Element;

pub(super) fn admin_set(room: &mut Room, from: &str, items: &str) -> Vec<RoomOut> {
    feed(
        room,
        from,
        &format!(
            "<iq type='set' id='a1' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{items}</query></iq>"
        ),
    )
}

pub(super) fn admin_get(room: &mut Room, from: &str, item: &str) -> Vec<RoomOut> {
    feed(
        room,
        from,
        &format!(
            "<iq type='get' id='a2' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{item}</query></iq>"
        ),
    )
}

/// The reply to the requester (its first stanza).
pub(super) fn reply(out: &[RoomOut], to: &str) -> Element {
    sent_to(out, to)
        .into_iter()
        .find(|e| e.name == "iq")
        .expect("an iq reply")
}

pub(super) fn reply_error(out: &[RoomOut], to: &str) -> Option<String> {
    error_of(&reply(out, to))
}

/// alice (owner), bob (participant), carol (participant).
pub(super) fn room3() -> Room {
    let mut room = room_alice_bob();
    feed(&mut room, CAROL, &join_xml("carol"));
    room
}

#[test]
fn kick_tells_everyone_307_with_actor_and_reason() {
    let mut room = room3();
    let out = admin_set(
        &mut room,
        ALICE,
        "<item nick='bob' role='none'><reason>spam</reason></item>",
    );
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    for who in [ALICE, BOB, CAROL] {
        let p: Vec<Element> = sent_to(&out, who)
            .into_iter()
            .filter(|e| e.name == "presence")
            .collect();
        assert_eq!(p.len(), 1, "{who}");
        assert_eq!(p[0].attr("type"), Some("unavailable"));
        assert!(codes(&p[0]).contains(&307));
        let it = item(&p[0]);
        assert_eq!(it.attr("role"), Some("none"));
        assert_eq!(
            it.get_child("reason", super::types::NS_MUC_USER)
                .map(Element::text)
                .as_deref(),
            Some("spam")
        );
        assert_eq!(
            it.get_child("actor", super::types::NS_MUC_USER)
                .and_then(|a| a.attr("nick")),
            Some("alice")
        );
    }
    assert!(codes(&sent_to(&out, BOB)[0]).contains(&110));
    assert_eq!(room.occupants(), 2);
}

#[test]
fn role_change_permissions() {
    let mut room = room3();
    // A participant may not kick.
    assert_eq!(
        reply_error(
            &admin_set(&mut room, BOB, "<item nick='carol' role='none'/>"),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    // Nobody kicks an owner; a moderator does not kick itself.
    admin_set(&mut room, ALICE, "<item nick='bob' role='moderator'/>");
    assert_eq!(
        reply_error(
            &admin_set(&mut room, BOB, "<item nick='alice' role='none'/>"),
            BOB
        )
        .as_deref(),
        Some("not-allowed")
    );
    assert_eq!(
        reply_error(
            &admin_set(&mut room, ALICE, "<item nick='alice' role='none'/>"),
            ALICE
        )
        .as_deref(),
        Some("conflict")
    );
    // A non-admin moderator may not make moderators nor demote one.
    assert_eq!(
        reply_error(
            &admin_set(&mut room, BOB, "<item nick='carol' role='moderator'/>"),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    // Unknown nick, bad role, empty item.
    assert_eq!(
        reply_error(
            &admin_set(&mut room, ALICE, "<item nick='zed' role='none'/>"),
            ALICE
        )
        .as_deref(),
        Some("item-not-found")
    );
    assert_eq!(
        reply_error(
            &admin_set(&mut room, ALICE, "<item nick='bob' role='king'/>"),
            ALICE
        )
        .as_deref(),
        Some("bad-request")
    );
    assert_eq!(
        reply_error(&admin_set(&mut room, ALICE, "<item nick='bob'/>"), ALICE).as_deref(),
        Some("bad-request")
    );
    assert_eq!(room.occupants(), 3);
}

#[test]
fn voice_is_revoked_and_granted() {
    let mut room = room3();
    let out = admin_set(&mut room, ALICE, "<item nick='bob' role='visitor'/>");
    assert_eq!(item(&sent_to(&out, CAROL)[0]).attr("role"), Some("visitor"));
    let gc = format!("<message type='groupchat' to='{ROOM}'><body>x</body></message>");
    assert_eq!(only_error(&feed(&mut room, BOB, &gc), BOB), "forbidden");
    admin_set(&mut room, ALICE, "<item nick='bob' role='participant'/>");
    assert_eq!(broadcasts(&feed(&mut room, BOB, &gc)).len(), 1);
}

#[test]
fn role_list() {
    let mut room = room3();
    let out = admin_get(&mut room, ALICE, "<item role='participant'/>");
    let q = reply(&out, ALICE)
        .get_child("query", NS_MUC_ADMIN)
        .cloned()
        .expect("query");
    let nicks: Vec<&str> = q.child_elements().filter_map(|i| i.attr("nick")).collect();
    assert_eq!(nicks, ["bob", "carol"]);
    assert_eq!(
        reply_error(
            &admin_get(&mut room, BOB, "<item role='participant'/>"),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
}

#[test]
fn moderated_room_default_roles() {
    let mut room = room_with(&[("muc#roomconfig_moderatedroom", "1")]);
    admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='member'/>",
    );
    let out = feed(&mut room, BOB, &join_xml("bob"));
    let own = |out: &[RoomOut], who: &str| {
        sent_to(out, who)
            .into_iter()
            .find(|p| codes(p).contains(&110))
            .expect("own presence")
    };
    assert_eq!(item(&own(&out, BOB)).attr("role"), Some("participant"));
    let out = feed(&mut room, CAROL, &join_xml("carol"));
    assert_eq!(item(&own(&out, CAROL)).attr("role"), Some("visitor"));
    // Membership gives a visitor its voice.
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='carol@localhost' affiliation='member'/>",
    );
    assert_eq!(
        item(&sent_to(&out, CAROL)[0]).attr("role"),
        Some("participant")
    );
}

#[test]
fn error_replies_keep_id_payload_and_come_from_the_room() {
    let mut room = room3();
    let out = admin_set(&mut room, BOB, "<item nick='carol' role='none'/>");
    let e = reply(&out, BOB);
    assert_eq!(e.attr("id"), Some("a1"));
    assert_eq!(e.attr("from"), Some(ROOM));
    assert_eq!(e.attr("to"), Some(BOB));
    assert!(e.get_child("query", NS_MUC_ADMIN).is_some(), "payload kept");
    let err = e
        .get_child("error", crate::xmpp::ns::CLIENT)
        .expect("error");
    assert_eq!(err.attr("type"), Some("auth"));
}

#[test]
fn owner_manages_lists_while_the_room_is_locked() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    assert!(room.is_locked());
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='admin'/>",
    );
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    // Still locked for everyone but owners.
    assert_eq!(
        only_error(&feed(&mut room, BOB, &join_xml("bob")), BOB),
        "item-not-found"
    );
}

#[test]
fn rules_the_prober_found_broken() {
    let mut room = room3();
    let err = |out: Vec<RoomOut>, who: &str| reply_error(&out, who);
    // §8.2, §8.4: bob, a moderator by role only, may not kick or silence carol, a member.
    admin_set(&mut room, ALICE, "<item nick='bob' role='moderator'/>");
    admin_set(
        &mut room,
        ALICE,
        "<item jid='carol@localhost' affiliation='member'/>",
    );
    for role in ["none", "visitor"] {
        let out = admin_set(
            &mut room,
            BOB,
            &format!("<item nick='carol' role='{role}'/>"),
        );
        assert_eq!(err(out, BOB).as_deref(), Some("not-allowed"), "{role}");
    }
    // §17.4: an item with both an affiliation and a role.
    let both = "<item nick='carol' affiliation='none' role='visitor'/>";
    assert_eq!(
        err(admin_set(&mut room, ALICE, both), ALICE).as_deref(),
        Some("bad-request")
    );
    // §9.1: an owner may not ban himself, even with another owner left.
    admin_set(
        &mut room,
        ALICE,
        "<item jid='dave@localhost' affiliation='owner'/>",
    );
    let ban = "<item jid='alice@localhost' affiliation='outcast'/>";
    assert_eq!(
        err(admin_set(&mut room, ALICE, ban), ALICE).as_deref(),
        Some("conflict")
    );
    assert_eq!(room.occupants(), 3);
}

#[test]
fn invisible_nicknames_are_refused() {
    let mut room = room_with(&[]);
    for nick in [
        " ", "  ", "\u{a0}", "\u{2003}", "\u{3000}", "\u{200b}", " \u{a0} ",
    ] {
        let out = feed(&mut room, BOB, &join_xml(nick));
        assert_eq!(only_error(&out, BOB), "jid-malformed", "{nick:?}");
    }
    assert_eq!(room.occupants(), 1);
    // A nickname with something visible in it is fine.
    let out = feed(&mut room, BOB, &join_xml(" b "));
    assert!(sent_to(&out, BOB).iter().any(|e| codes(e).contains(&110)));
}

#[test]
fn disco_nodes_and_a_blank_room_password() {
    let mut room = room_alice_bob();
    let disco = |room: &mut Room, ns: &str, node: &str| {
        let out = feed(
            room,
            BOB,
            &format!("<iq type='get' id='d' to='{ROOM}'><query xmlns='{ns}' node='{node}'/></iq>"),
        );
        reply(&out, BOB)
    };
    let info = "http://jabber.org/protocol/disco#info";
    // §7.12: no registered nickname: an empty answer for the node, not the room's identity.
    let r = disco(&mut room, info, "x-roomuser-item");
    assert_eq!(r.attr("type"), Some("result"));
    let q = r.get_child("query", info).expect("query");
    assert_eq!(q.attr("node"), Some("x-roomuser-item"));
    assert_eq!(q.child_elements().count(), 0);
    assert_eq!(
        error_of(&disco(&mut room, info, "bogus")).as_deref(),
        Some("item-not-found")
    );
    let items = "http://jabber.org/protocol/disco#items";
    assert_eq!(
        error_of(&disco(&mut room, items, "bogus")).as_deref(),
        Some("item-not-found")
    );
    // §10.1.3: password protection without a password is refused, and changes nothing.
    let out = configure(
        &mut room,
        ALICE,
        &[("muc#roomconfig_passwordprotectedroom", "1")],
    );
    assert_eq!(
        error_of(&sent_to(&out, ALICE)[0]).as_deref(),
        Some("not-acceptable")
    );
    assert!(room
        .disco_info()
        .child_elements()
        .any(|f| f.attr("var") == Some("muc_unsecured")));
}

#[test]
fn owner_and_admin_lists_are_the_owners_in_a_semi_anonymous_room() {
    let mut room = room3();
    admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='admin'/>",
    );
    for aff in ["owner", "admin"] {
        let out = admin_get(&mut room, BOB, &format!("<item affiliation='{aff}'/>"));
        assert_eq!(
            reply_error(&out, BOB).as_deref(),
            Some("forbidden"),
            "{aff}"
        );
        let out = admin_get(&mut room, ALICE, &format!("<item affiliation='{aff}'/>"));
        assert_eq!(reply(&out, ALICE).attr("type"), Some("result"), "{aff}");
    }
    // An admin still reads the member list, and in a non-anonymous room the others too.
    let out = admin_get(&mut room, BOB, "<item affiliation='member'/>");
    assert_eq!(reply(&out, BOB).attr("type"), Some("result"));
    configure(&mut room, ALICE, &[("muc#roomconfig_whois", "anyone")]);
    let out = admin_get(&mut room, BOB, "<item affiliation='owner'/>");
    assert_eq!(reply(&out, BOB).attr("type"), Some("result"));
}

/// XEP-0045 §15: an item's `nick` names the occupant after preparation (RFC 7622 §3.4), as a
/// private message's `to` does: a combining accent names the precomposed nick, fullwidth letters
/// the ASCII one, for a role and for an affiliation.
#[test]
fn items_name_occupants_by_prepared_nick() {
    let mut room = room_with(&[]);
    feed(&mut room, BOB, &join_xml("Jos\u{e9}"));
    feed(&mut room, CAROL, &join_xml("carol"));
    let out = admin_set(
        &mut room,
        ALICE,
        "<item nick='Jose\u{301}' role='visitor'/>",
    );
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    assert_eq!(item(&sent_to(&out, BOB)[0]).attr("role"), Some("visitor"));
    let wide = "\u{ff43}\u{ff41}\u{ff52}\u{ff4f}\u{ff4c}";
    let out = admin_set(
        &mut room,
        ALICE,
        &format!("<item nick='{wide}' affiliation='member'/>"),
    );
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    assert_eq!(room.affiliation(&full(CAROL).bare()), Affiliation::Member);
    let out = admin_set(&mut room, ALICE, "<item nick='Jose\u{301}' role='none'/>");
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    assert_eq!(room.occupants(), 2);
    // Still no one by another name.
    let out = admin_set(&mut room, ALICE, "<item nick='dave' role='none'/>");
    assert_eq!(reply_error(&out, ALICE).as_deref(), Some("item-not-found"));
}
