//! Shared helpers for the room tests, and tests of persistence, disco and shutdown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::types::{NS_DATA, NS_MUC_OWNER, NS_MUC_USER};
use super::*;
use crate::xml::Element;
use crate::xmpp::ns;

pub(super) const ROOM: &str = "r@conference.localhost";
pub(super) const ALICE: &str = "alice@localhost/a";
pub(super) const BOB: &str = "bob@localhost/b";
pub(super) const CAROL: &str = "carol@localhost/c";

/// A fixed clock.
pub(super) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(super) fn full(s: &str) -> FullJid {
    FullJid::parse(s).expect("test JIDs are valid")
}

pub(super) fn stanza(xml: &str) -> Stanza {
    Stanza::parse(xml.as_bytes().to_vec()).expect("test stanzas are well-formed")
}

/// Feeds `xml` from `from` (on shard 0) at `now`.
pub(super) fn feed_at(room: &mut Room, from: &str, xml: &str, now: SystemTime) -> Vec<RoomOut> {
    room.handle(&full(from), ShardId(0), &stanza(xml), now)
}

/// Feeds `xml` from `from` at [`t0`].
pub(super) fn feed(room: &mut Room, from: &str, xml: &str) -> Vec<RoomOut> {
    feed_at(room, from, xml, t0())
}

/// The `Send`s as (recipient, element).
pub(super) fn sends(out: &[RoomOut]) -> Vec<(String, Element)> {
    out.iter()
        .filter_map(|o| match o {
            RoomOut::Send { to, stanza } => Some((
                to.as_str().to_owned(),
                stanza.tree().expect("room output parses"),
            )),
            _ => None,
        })
        .collect()
}

/// The elements sent to `to`, in order.
pub(super) fn sent_to(out: &[RoomOut], to: &str) -> Vec<Element> {
    sends(out)
        .into_iter()
        .filter(|(t, _)| t == to)
        .map(|(_, e)| e)
        .collect()
}

/// The `Broadcast`s as (element, every recipient).
pub(super) fn broadcasts(out: &[RoomOut]) -> Vec<(Element, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            RoomOut::Broadcast { stanza, to, .. } => Some((
                stanza.tree().expect("room output parses"),
                to.iter()
                    .flat_map(|(_, js)| js.iter().map(|j| j.as_str().to_owned()))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

/// The stanza error condition of an error reply.
pub(super) fn error_of(el: &Element) -> Option<String> {
    if el.attr("type") != Some("error") {
        return None;
    }
    let e = el.get_child("error", ns::CLIENT)?;
    e.child_elements()
        .find(|c| c.ns == ns::STANZAS)
        .map(|c| c.name.clone())
}

/// The only element sent to `to`, which must be an error: its condition.
pub(super) fn only_error(out: &[RoomOut], to: &str) -> String {
    let s = sends(out);
    assert_eq!(s.len(), 1, "expected one reply, got {s:?}");
    assert_eq!(s[0].0, to);
    error_of(&s[0].1).unwrap_or_else(|| panic!("not an error: {:?}", s[0].1))
}

/// Status codes in a stanza's `<x xmlns='muc#user'/>`.
pub(super) fn codes(el: &Element) -> Vec<u16> {
    el.get_child("x", NS_MUC_USER)
        .map(|x| {
            x.child_elements()
                .filter(|c| c.name == "status")
                .filter_map(|c| c.attr("code").and_then(|v| v.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `<item/>` of a stanza's `<x xmlns='muc#user'/>`.
pub(super) fn item(el: &Element) -> Element {
    el.get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("item", NS_MUC_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no muc#user item in {el:?}"))
}

pub(super) fn has_out(out: &[RoomOut], f: fn(&RoomOut) -> bool) -> bool {
    out.iter().any(f)
}

pub(super) fn is_save(o: &RoomOut) -> bool {
    matches!(o, RoomOut::Save)
}

pub(super) fn is_destroyed(o: &RoomOut) -> bool {
    matches!(o, RoomOut::Destroyed)
}

pub(super) fn join_xml(nick: &str) -> String {
    format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

/// Submits a config form with `fields` (var, value) as `from`.
pub(super) fn configure(room: &mut Room, from: &str, fields: &[(&str, &str)]) -> Vec<RoomOut> {
    let mut f = String::from(
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>",
    );
    for (var, v) in fields {
        f.push_str(&format!("<field var='{var}'><value>{v}</value></field>"));
    }
    feed(
        room,
        from,
        &format!(
            "<iq type='set' id='c1' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>\
             <x xmlns='{NS_DATA}' type='submit'>{f}</x></query></iq>"
        ),
    )
}

/// A room created by alice (joined as `alice`), configured with `fields`, unlocked.
pub(super) fn room_with(fields: &[(&str, &str)]) -> Room {
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        RoomLimits::default(),
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    let out = configure(&mut room, ALICE, fields);
    assert_eq!(sent_to(&out, ALICE)[0].attr("type"), Some("result"));
    assert!(!room.is_locked());
    room
}

/// An open room with alice (owner) and bob (participant) in it.
pub(super) fn room_alice_bob() -> Room {
    let mut room = room_with(&[]);
    feed(&mut room, BOB, &join_xml("bob"));
    room
}

#[test]
fn saved_state_restores_unlocked_with_affiliations_and_subject() {
    let mut room = room_with(&[
        ("muc#roomconfig_persistentroom", "1"),
        ("muc#roomconfig_roomname", "Tea"),
    ]);
    feed(&mut room, BOB, &join_xml("bob"));
    let out = feed(
        &mut room,
        ALICE,
        &format!("<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='carol@localhost' affiliation='member'><reason>friend</reason></item></query></iq>"),
    );
    assert!(has_out(&out, is_save));
    let out = feed(
        &mut room,
        ALICE,
        &format!("<message type='groupchat' to='{ROOM}'><subject>Cake</subject></message>"),
    );
    assert!(has_out(&out, is_save));
    let saved = room.saved();
    let back = Room::restore(room.jid().clone(), saved.clone(), RoomLimits::default());
    assert_eq!(back.saved(), saved);
    assert!(!back.is_locked());
    assert_eq!(back.occupants(), 0);
    assert!(back.is_persistent());
    assert_eq!(back.name(), Some("Tea"));
    assert_eq!(
        back.affiliation(&BareJid::parse("carol@localhost").expect("valid")),
        Affiliation::Member
    );
    assert_eq!(back.affiliation(&full(ALICE).bare()), Affiliation::Owner);
    assert_eq!(
        saved.subject.map(|s| (s.text, s.nick)),
        Some(("Cake".into(), "alice".into()))
    );
    let reason = saved
        .affiliations
        .iter()
        .find(|a| a.jid == "carol@localhost")
        .and_then(|a| a.reason.clone());
    assert_eq!(reason.as_deref(), Some("friend"));
}

#[test]
fn restore_caps_settings_by_current_limits() {
    let room = room_with(&[
        ("muc#roomconfig_maxusers", "500"),
        ("muc#maxhistoryfetch", "40"),
    ]);
    let small = RoomLimits {
        max_occupants: 10,
        max_history: 5,
        ..RoomLimits::default()
    };
    let back = Room::restore(room.jid().clone(), room.saved(), small);
    assert_eq!(back.config().max_users, 10);
    assert_eq!(back.config().history_length, 5);
}

#[test]
fn persistent_room_stays_when_empty_and_temporary_goes() {
    let mut room = room_with(&[("muc#roomconfig_persistentroom", "1")]);
    let out = feed(
        &mut room,
        ALICE,
        &format!("<presence type='unavailable' to='{ROOM}/alice'/>"),
    );
    assert!(!has_out(&out, is_destroyed));
    assert_eq!(room.occupants(), 0);
    let mut temp = room_with(&[]);
    let out = feed(
        &mut temp,
        ALICE,
        &format!("<presence type='unavailable' to='{ROOM}/alice'/>"),
    );
    assert!(has_out(&out, is_destroyed));
}

#[test]
fn disco_info_reflects_configuration() {
    let mut room = room_with(&[
        ("muc#roomconfig_roomname", "Tea"),
        ("muc#roomconfig_publicroom", "0"),
        ("muc#roomconfig_membersonly", "1"),
        ("muc#roomconfig_whois", "anyone"),
        ("muc#roomconfig_passwordprotectedroom", "1"),
        ("muc#roomconfig_roomsecret", "pw"),
    ]);
    let out = feed(
        &mut room,
        BOB,
        &format!(
            "<iq type='get' id='d' to='{ROOM}'><query xmlns='{}'/></iq>",
            ns::DISCO_INFO
        ),
    );
    let r = sent_to(&out, BOB);
    assert_eq!(r[0].attr("type"), Some("result"));
    assert_eq!(r[0].attr("id"), Some("d"));
    let q = r[0].get_child("query", ns::DISCO_INFO).expect("query");
    let id = q.get_child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.attr("category"), id.attr("type"), id.attr("name")),
        (Some("conference"), Some("text"), Some("Tea"))
    );
    let feats: Vec<&str> = q
        .child_elements()
        .filter(|c| c.name == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [
        "http://jabber.org/protocol/muc",
        "muc_hidden",
        "muc_temporary",
        "muc_membersonly",
        "muc_unmoderated",
        "muc_nonanonymous",
        "muc_passwordprotected",
    ] {
        assert!(feats.contains(&f), "missing {f} in {feats:?}");
    }
    for f in [
        "muc_public",
        "muc_open",
        "muc_semianonymous",
        "muc_unsecured",
        "muc_persistent",
    ] {
        assert!(!feats.contains(&f), "unexpected {f}");
    }
    let form = q.get_child("x", NS_DATA).expect("roominfo form");
    let occ = form
        .child_elements()
        .find(|f| f.attr("var") == Some("muc#roominfo_occupants"))
        .expect("occupants field");
    assert_eq!(
        occ.get_child("value", NS_DATA)
            .map(Element::text)
            .as_deref(),
        Some("1")
    );
}

#[test]
fn disco_items_lists_occupants_only_when_non_anonymous() {
    let mut room = room_alice_bob();
    let get = format!(
        "<iq type='get' id='i' to='{ROOM}'><query xmlns='{}'/></iq>",
        ns::DISCO_ITEMS
    );
    let out = feed(&mut room, CAROL, &get);
    let q = sent_to(&out, CAROL)[0]
        .get_child("query", ns::DISCO_ITEMS)
        .cloned()
        .expect("query");
    assert_eq!(q.child_elements().count(), 0);
    configure(&mut room, ALICE, &[("muc#roomconfig_whois", "anyone")]);
    let out = feed(&mut room, CAROL, &get);
    let q = sent_to(&out, CAROL)[0]
        .get_child("query", ns::DISCO_ITEMS)
        .cloned()
        .expect("query");
    let jids: Vec<&str> = q.child_elements().filter_map(|i| i.attr("jid")).collect();
    assert_eq!(jids, [format!("{ROOM}/alice"), format!("{ROOM}/bob")]);
}

#[test]
fn unknown_iq_is_service_unavailable_and_errors_are_never_answered() {
    let mut room = room_alice_bob();
    let out = feed(
        &mut room,
        BOB,
        &format!("<iq type='get' id='v' to='{ROOM}'><query xmlns='jabber:iq:version'/></iq>"),
    );
    assert_eq!(only_error(&out, BOB), "service-unavailable");
    let out = feed(
        &mut room,
        CAROL,
        &format!("<message type='error' to='{ROOM}'><body>x</body></message>"),
    );
    assert!(out.is_empty());
    let out = feed(
        &mut room,
        CAROL,
        &format!("<iq type='error' id='e' to='{ROOM}'/>"),
    );
    assert!(out.is_empty());
    let out = feed(
        &mut room,
        CAROL,
        &format!("<message type='error' to='{ROOM}/bob'><body>x</body></message>"),
    );
    assert!(out.is_empty());
    let out = feed(
        &mut room,
        CAROL,
        &format!("<message to='{ROOM}'><body>hi</body></message>"),
    );
    assert_eq!(only_error(&out, CAROL), "service-unavailable");
}

#[test]
fn shutdown_tells_everyone_332() {
    let mut room = room_alice_bob();
    let out = room.shutdown(t0());
    for who in [ALICE, BOB] {
        let p = sent_to(&out, who);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].attr("type"), Some("unavailable"));
        let c = codes(&p[0]);
        assert!(c.contains(&332) && c.contains(&110), "{c:?}");
    }
    assert_eq!(room.occupants(), 0);
}
