//! Group chat (XEP-0045) client steps shared by the MUC tests (one server, and a cluster).

use super::Client;
use petrel::xml::Stanza;

/// The muc#user namespace.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// True when the stanza's muc#user `x` carries status `code`.
pub fn has_status(s: &Stanza, code: &str) -> bool {
    s.tree().ok().is_some_and(|t| {
        t.get_child("x", MUC_USER).is_some_and(|x| {
            x.child_elements()
                .any(|c| c.name == "status" && c.attr("code") == Some(code))
        })
    })
}

/// The stanza's bytes as text (assertion messages).
pub fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// Joins `room` as `nick` and waits for the self-presence (status 110); panics on an error.
pub fn join(c: &mut Client, room: &str, nick: &str, history: &str) -> Vec<Stanza> {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>"
    ));
    let mut seen = Vec::new();
    loop {
        let s = c.next_stanza();
        if s.from().as_deref() == Some(&format!("{room}/{nick}")) && s.name() == "presence" {
            assert_ne!(
                s.type_().as_deref(),
                Some("error"),
                "join refused: {}",
                text(&s)
            );
            if has_status(&s, "110") {
                seen.push(s);
                return seen;
            }
        }
        seen.push(s);
    }
}

/// Creates an instant room owned by `c` (as `nick`), with `fields` submitted in the form.
pub fn create(c: &mut Client, room: &str, nick: &str, fields: &str) {
    let got = join(c, room, nick, "");
    assert!(
        got.iter().any(|s| has_status(s, "201")),
        "not created: {got:?}"
    );
    c.send(&format!(
        "<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{fields}</x></query></iq>"
    ));
    let r = c.expect("config result", |s| s.id().as_deref() == Some("cfg"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
}

/// One room configuration field of the owner's form.
pub fn field(var: &str, value: &str) -> String {
    format!("<field var='muc#roomconfig_{var}'><value>{value}</value></field>")
}

/// Sends a groupchat message with `id` and `body` to `room`.
pub fn groupchat(c: &mut Client, room: &str, id: &str, body: &str) {
    c.send(&format!(
        "<message type='groupchat' to='{room}' id='{id}'><body>{body}</body></message>"
    ));
}

/// Waits for the groupchat message `id` and returns it.
pub fn expect_groupchat(c: &mut Client, id: &str) -> Stanza {
    c.expect("groupchat", |s| {
        s.name() == "message"
            && s.id().as_deref() == Some(id)
            && s.type_().as_deref() == Some("groupchat")
    })
}

/// The configuration of the persistent room the tests keep: persistent, public, "Kept Room".
pub fn kept_room_fields() -> String {
    format!(
        "{}{}{}",
        field("persistentroom", "1"),
        field("roomname", "Kept Room"),
        field("publicroom", "1")
    )
}
