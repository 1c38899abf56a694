//! History replayed to newcomers, then the subject.

use std::time::Duration;

use super::tests::*;
use super::*;
use crate::xml::Element;
use crate::xmpp::ns;

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
