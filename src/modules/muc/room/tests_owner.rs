//! `muc#owner`: the configuration form, its effects, cancel and destroy.

use super::tests::*;
use super::types::{NS_DATA, NS_MUC_OWNER, NS_MUC_USER};
use super::*;
use crate::xml::Element;

fn form_values(x: &Element) -> Vec<(String, String)> {
    x.child_elements()
        .filter(|f| f.name == "field")
        .map(|f| {
            let v = f
                .get_child("value", NS_DATA)
                .map(Element::text)
                .unwrap_or_default();
            (f.attr("var").unwrap_or_default().to_owned(), v)
        })
        .collect()
}

#[test]
fn owner_gets_the_form_others_are_forbidden() {
    let mut room = room_alice_bob();
    configure(&mut room, ALICE, &[("muc#roomconfig_roomname", "Tea")]);
    let get = format!("<iq type='get' id='f' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>");
    let out = feed(&mut room, ALICE, &get);
    let r = &sent_to(&out, ALICE)[0];
    assert_eq!(r.attr("type"), Some("result"));
    let x = r
        .get_child("query", NS_MUC_OWNER)
        .and_then(|q| q.get_child("x", NS_DATA))
        .cloned()
        .expect("form");
    assert_eq!(x.attr("type"), Some("form"));
    let v = form_values(&x);
    for (var, want) in [
        ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
        ("muc#roomconfig_roomname", "Tea"),
        ("muc#roomconfig_persistentroom", "0"),
        ("muc#roomconfig_whois", "moderators"),
        ("muc#roomconfig_roomowners", "alice@localhost"),
        ("muc#maxhistoryfetch", "20"),
    ] {
        assert!(
            v.contains(&(var.to_owned(), want.to_owned())),
            "{var}={want} not in {v:?}"
        );
    }
    assert_eq!(only_error(&feed(&mut room, BOB, &get), BOB), "forbidden");
    assert_eq!(
        error_of(&sent_to(&configure(&mut room, BOB, &[]), BOB)[0]).as_deref(),
        Some("forbidden")
    );
}

#[test]
fn submitted_settings_apply_and_say_104() {
    let mut room = room_alice_bob();
    let out = configure(
        &mut room,
        ALICE,
        &[
            ("muc#roomconfig_roomname", "Tea"),
            ("muc#roomconfig_roomdesc", "Hot"),
            ("muc#roomconfig_publicroom", "0"),
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_moderatedroom", "1"),
            ("muc#roomconfig_allowinvites", "1"),
            ("muc#roomconfig_changesubject", "1"),
            ("muc#roomconfig_allowpm", "participants"),
        ],
    );
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    let b = broadcasts(&out);
    assert_eq!(b.len(), 1);
    assert_eq!(codes(&b[0].0), [104]);
    assert_eq!(b[0].0.attr("from"), Some(ROOM));
    assert!(has_out(&out, is_save));
    let c = room.config();
    assert_eq!((c.name.as_str(), c.description.as_str()), ("Tea", "Hot"));
    assert!(
        !room.is_public()
            && room.is_persistent()
            && c.moderated
            && c.allow_invites
            && c.change_subject
    );
    assert_eq!(c.allow_pm, AllowPm::Participants);
    // Bad values are refused and change nothing.
    let out = configure(
        &mut room,
        ALICE,
        &[
            ("muc#roomconfig_whois", "everybody"),
            ("muc#roomconfig_roomname", "X"),
        ],
    );
    assert_eq!(
        error_of(&sent_to(&out, ALICE)[0]).as_deref(),
        Some("not-acceptable")
    );
    assert_eq!(room.name(), Some("Tea"));
}

#[test]
fn whois_switch_says_172_then_173() {
    let mut room = room_alice_bob();
    let out = configure(&mut room, ALICE, &[("muc#roomconfig_whois", "anyone")]);
    // §10.2.1: a privacy change alone says only its own code.
    assert_eq!(codes(&broadcasts(&out)[0].0), [172]);
    let out = configure(&mut room, ALICE, &[("muc#roomconfig_whois", "moderators")]);
    assert_eq!(codes(&broadcasts(&out)[0].0), [173]);
}

#[test]
fn becoming_members_only_removes_non_members_with_322() {
    let mut room = room_alice_bob();
    let out = configure(&mut room, ALICE, &[("muc#roomconfig_membersonly", "1")]);
    let p = sent_to(&out, BOB);
    let gone = p
        .iter()
        .find(|e| e.name == "presence")
        .expect("presence to bob");
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert!(codes(gone).contains(&322));
    assert_eq!(room.occupants(), 1);
}

#[test]
fn owner_and_admin_lists_in_the_form() {
    let mut room = room_alice_bob();
    let out = configure(
        &mut room,
        ALICE,
        &[("muc#roomconfig_roomadmins", "bob@localhost")],
    );
    assert_eq!(room.affiliation(&full(BOB).bare()), Affiliation::Admin);
    assert_eq!(
        item(
            &sent_to(&out, BOB)
                .into_iter()
                .find(|e| e.name == "presence")
                .expect("presence")
        )
        .attr("role"),
        Some("moderator")
    );
}

#[test]
fn cancelling_the_initial_configuration_destroys_the_room() {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    let out = feed(&mut room, ALICE, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='cancel'/></query></iq>"));
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    assert!(has_out(&out, is_destroyed));
    // Once configured, cancel changes nothing.
    let mut room = room_alice_bob();
    let out = feed(&mut room, ALICE, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='cancel'/></query></iq>"));
    assert!(!has_out(&out, is_destroyed));
    assert_eq!(room.occupants(), 2);
}

#[test]
fn destroy_tells_everyone_and_ends_the_room() {
    let mut room = room_alice_bob();
    let d = format!("<iq type='set' id='d' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'><destroy jid='new@conference.localhost'><reason>moved</reason></destroy></query></iq>");
    assert_eq!(only_error(&feed(&mut room, BOB, &d), BOB), "forbidden");
    let out = feed(&mut room, ALICE, &d);
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    let p = sent_to(&out, BOB);
    assert_eq!(p[0].attr("type"), Some("unavailable"));
    let de = p[0]
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("destroy", NS_MUC_USER))
        .cloned()
        .expect("destroy");
    assert_eq!(de.attr("jid"), Some("new@conference.localhost"));
    assert_eq!(
        de.get_child("reason", NS_MUC_USER)
            .map(Element::text)
            .as_deref(),
        Some("moved")
    );
    assert!(has_out(&out, is_destroyed));
    assert_eq!(room.occupants(), 0);
}

#[test]
fn making_an_empty_persistent_room_temporary_destroys_it() {
    let mut room = room_with(&[("muc#roomconfig_persistentroom", "1")]);
    feed(
        &mut room,
        ALICE,
        &format!("<presence type='unavailable' to='{ROOM}/alice'/>"),
    );
    // The owner configures from outside the room.
    let out = configure(&mut room, ALICE, &[("muc#roomconfig_persistentroom", "0")]);
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    assert!(has_out(&out, is_save));
    assert!(has_out(&out, is_destroyed));
}
