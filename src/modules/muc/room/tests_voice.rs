//! Voice requests (§7.13) and their approval (§8.6).

use std::time::Duration;

use super::tests::*;
use super::voice::{NS_MUC_REQUEST, REQUEST_INTERVAL};
use super::*;
use crate::xml::Element;
use crate::xmpp::form;

/// A moderated room: alice owns it, bob is a member (participant), carol a visitor.
fn moderated() -> Room {
    let mut room = room_with(&[("muc#roomconfig_moderatedroom", "1")]);
    feed(
        &mut room,
        ALICE,
        &format!(
            "<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'>\
             <item jid='bob@localhost' affiliation='member'/></query></iq>"
        ),
    );
    feed(&mut room, BOB, &join_xml("bob"));
    feed(&mut room, CAROL, &join_xml("carol"));
    room
}

fn request(role: &str) -> String {
    format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{NS_MUC_REQUEST}</value></field>\
         <field var='muc#role' type='list-single'><value>{role}</value></field></x></message>"
    )
}

fn answer(nick: &str, allow: &str) -> String {
    format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{NS_MUC_REQUEST}</value></field>\
         <field var='muc#role'><value>participant</value></field>\
         <field var='muc#jid'><value>{CAROL}</value></field>\
         <field var='muc#roomnick'><value>{nick}</value></field>\
         <field var='muc#request_allow'><value>{allow}</value></field></x></message>"
    )
}

/// The value of the form field `var` in a message's data form.
fn value(m: &Element, var: &str) -> Option<String> {
    let x = m.get_child("x", form::NS)?;
    let f = x.child_elements().find(|f| f.attr("var") == Some(var))?;
    f.get_child("value", form::NS).map(Element::text)
}

fn role_of(out: &[RoomOut], to: &str, nick: &str) -> Option<String> {
    sent_to(out, to)
        .into_iter()
        .find(|p| p.name == "presence" && p.attr("from") == Some(&*format!("{ROOM}/{nick}")))
        .and_then(|p| item(&p).attr("role").map(str::to_owned))
}

#[test]
fn a_visitors_request_reaches_the_moderators_as_a_form() {
    let mut room = moderated();
    let out = feed(&mut room, CAROL, &request("participant"));
    assert!(sent_to(&out, BOB).is_empty(), "bob is no moderator");
    assert!(sent_to(&out, CAROL).is_empty(), "no answer to the visitor");
    let got = sent_to(&out, ALICE);
    assert_eq!(got.len(), 1, "{out:?}");
    let m = &got[0];
    assert_eq!(m.attr("from"), Some(ROOM));
    let x = m.get_child("x", form::NS).expect("a form");
    assert_eq!(x.attr("type"), Some("form"));
    let order: Vec<&str> = x
        .child_elements()
        .take(3)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(order, ["title", "instructions", "field"]);
    assert_eq!(value(m, "FORM_TYPE").as_deref(), Some(NS_MUC_REQUEST));
    assert_eq!(value(m, "muc#role").as_deref(), Some("participant"));
    assert_eq!(value(m, "muc#jid").as_deref(), Some(CAROL));
    assert_eq!(value(m, "muc#roomnick").as_deref(), Some("carol"));
    assert_eq!(value(m, "muc#request_allow").as_deref(), Some("false"));
}

#[test]
fn a_visitor_who_keeps_asking_is_told_to_wait() {
    let mut room = moderated();
    assert_eq!(
        sent_to(&feed(&mut room, CAROL, &request("participant")), ALICE).len(),
        1
    );
    let out = feed(&mut room, CAROL, &request("participant"));
    assert_eq!(only_error(&out, CAROL), "resource-constraint");
    let later = t0() + REQUEST_INTERVAL + Duration::from_secs(1);
    let out = feed_at(&mut room, CAROL, &request("participant"), later);
    assert_eq!(sent_to(&out, ALICE).len(), 1);
}

#[test]
fn an_approval_gives_voice_and_the_visitor_may_speak() {
    let mut room = moderated();
    feed(&mut room, CAROL, &request("participant"));
    let out = feed(&mut room, ALICE, &answer("carol", "true"));
    for who in [ALICE, BOB, CAROL] {
        assert_eq!(
            role_of(&out, who, "carol").as_deref(),
            Some("participant"),
            "{who}"
        );
    }
    let actor = sent_to(&out, CAROL)
        .into_iter()
        .find(|p| p.name == "presence")
        .and_then(|p| {
            item(&p)
                .get_child("actor", super::types::NS_MUC_USER)
                .cloned()
        });
    assert_eq!(
        actor
            .and_then(|a| a.attr("nick").map(str::to_owned))
            .as_deref(),
        Some("alice")
    );
    let gc = format!("<message type='groupchat' to='{ROOM}'><body>thanks</body></message>");
    assert_eq!(broadcasts(&feed(&mut room, CAROL, &gc)).len(), 1);
    // A participant asking again changes nothing and bothers nobody.
    assert!(feed(&mut room, CAROL, &request("participant")).is_empty());
}

#[test]
fn refusals_and_denials() {
    let mut room = moderated();
    // A denial, or an answer by a non-moderator, gives nothing.
    assert!(feed(&mut room, ALICE, &answer("carol", "false")).is_empty());
    assert_eq!(
        only_error(&feed(&mut room, BOB, &answer("carol", "true")), BOB),
        "forbidden"
    );
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &answer("carol", "true")), CAROL),
        "forbidden"
    );
    // An answer about someone gone, or not a boolean.
    assert!(feed(&mut room, ALICE, &answer("dave", "true")).is_empty());
    assert_eq!(
        only_error(&feed(&mut room, ALICE, &answer("carol", "maybe")), ALICE),
        "bad-request"
    );
    // Only voice can be asked for, and only from inside the room.
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &request("moderator")), CAROL),
        "bad-request"
    );
    let dave = "dave@localhost/d";
    assert_eq!(
        only_error(&feed(&mut room, dave, &request("participant")), dave),
        "not-acceptable"
    );
    // Carol is still a visitor.
    let gc = format!("<message type='groupchat' to='{ROOM}'><body>x</body></message>");
    assert_eq!(only_error(&feed(&mut room, CAROL, &gc), CAROL), "forbidden");
    // A form of another type is not a request.
    let other = format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>urn:other</value></field></x></message>"
    );
    assert_eq!(
        only_error(&feed(&mut room, CAROL, &other), CAROL),
        "service-unavailable"
    );
}

#[test]
fn rooms_advertise_voice_requests() {
    let room = moderated();
    let info = room.disco_info();
    assert!(info
        .child_elements()
        .any(|f| f.name == "feature" && f.attr("var") == Some(NS_MUC_REQUEST)));
}

/// §8.6 with §15: the approval's `muc#roomnick` names the visitor after preparation, as a
/// private message's `to` does (fullwidth letters are the ASCII nick).
#[test]
fn an_approval_names_the_visitor_by_prepared_nick() {
    let mut room = moderated();
    feed(&mut room, CAROL, &request("participant"));
    let wide = "\u{ff43}\u{ff41}\u{ff52}\u{ff4f}\u{ff4c}";
    let out = feed(&mut room, ALICE, &answer(wide, "true"));
    assert_eq!(
        role_of(&out, CAROL, "carol").as_deref(),
        Some("participant")
    );
}

/// The approval names who asked (`muc#jid`): the same nick held by someone else since gets
/// nothing; a malformed one is refused.
#[test]
fn an_approval_goes_only_to_who_asked() {
    let mut room = moderated();
    feed(&mut room, CAROL, &request("participant"));
    let other = answer("carol", "true").replace(CAROL, "dave@localhost/d");
    assert!(feed(&mut room, ALICE, &other).is_empty());
    let bare = answer("carol", "true").replace(CAROL, "carol@localhost");
    assert_eq!(
        role_of(&feed(&mut room, ALICE, &bare), CAROL, "carol").as_deref(),
        Some("participant")
    );
    let bad = answer("carol", "true").replace(CAROL, "a@b@c");
    assert_eq!(
        only_error(&feed(&mut room, ALICE, &bad), ALICE),
        "jid-malformed"
    );
}

/// Leaving and joining again does not start the wait between requests over.
#[test]
fn rejoining_does_not_reset_the_wait() {
    let mut room = moderated();
    assert_eq!(
        sent_to(&feed(&mut room, CAROL, &request("participant")), ALICE).len(),
        1
    );
    feed(
        &mut room,
        CAROL,
        &format!("<presence type='unavailable' to='{ROOM}/carol'/>"),
    );
    feed(&mut room, CAROL, &join_xml("carol"));
    let out = feed(&mut room, CAROL, &request("participant"));
    assert_eq!(only_error(&out, CAROL), "resource-constraint");
}
