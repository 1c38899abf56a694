//! The archive on a cluster of shards: both sides archived under one id, the recipient's stanza id,
//! forged ids removed, preferences, room messages.

use crate::modules::testing::{World, HOST};
use crate::shard::ConnMsg;
use crate::store::MamFilter;
use crate::xml::Stanza;

use super::ns;
use super::prefs::{Mode, Prefs, PrefsTable};

fn world(shards: usize) -> World {
    World::new(shards, "[modules.presence]\n[modules.mam]\n[modules.muc]\n")
}

/// Registers `users` (a recipient's archive is kept only for an account).
fn accounts(w: &World, users: &[&str]) {
    for u in users {
        let jid =
            crate::jid::BareJid::parse(&format!("{u}@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
        w.store()
            .add_user(&jid, &crate::auth::ScramSecrets::derive("pw", 4096))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn delivered(mb: &crate::shard::Mailbox) -> Vec<Stanza> {
    let mut out = Vec::new();
    while let Some(m) = mb.pop() {
        if let ConnMsg::Deliver(acc) = m {
            out.push(acc.into_stanza());
        }
    }
    out
}

fn stanza_ids(s: &Stanza) -> Vec<(String, String)> {
    let Ok(t) = s.tree() else { return Vec::new() };
    t.child_elements()
        .filter(|c| c.name == "stanza-id" && c.ns == ns::SID)
        .map(|c| {
            (
                c.attr("by").unwrap_or_default().to_owned(),
                c.attr("id").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn both_sides_are_archived_under_the_id_the_recipient_sees() {
    let mut w = world(2);
    accounts(&w, &["alice", "bob"]);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    delivered(&alice.mb);
    delivered(&bob.mb);
    w.send(
        &mut alice,
        &format!("<message to='bob@{HOST}' type='chat' id='m1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@{HOST}' id='forged'/></message>"),
    );
    let got = delivered(&bob.mb);
    assert_eq!(got.len(), 1, "{got:?}");
    let ids = stanza_ids(&got[0]);
    assert_eq!(
        ids.len(),
        1,
        "the forged id is gone, ours is there: {ids:?}"
    );
    assert_eq!(ids[0].0, format!("bob@{HOST}"));
    let id: i64 = ids[0].1.parse().unwrap_or_else(|e| panic!("{e}"));
    let all = MamFilter::default();
    let bobs = w
        .store()
        .mam_query(&format!("bob@{HOST}"), &all, 10, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let alices = w
        .store()
        .mam_query(&format!("alice@{HOST}"), &all, 10, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bobs.len(), 1);
    assert_eq!(alices.len(), 1);
    assert_eq!(bobs[0].id, id);
    assert_eq!(alices[0].id, id);
    assert!(alices[0].outgoing && !bobs[0].outgoing);
    assert_eq!(bobs[0].with_bare, format!("alice@{HOST}"));
    assert_eq!(bobs[0].with_res, "a");
    // Not archived: no body.
    w.send(&mut alice, &format!("<message to='bob@{HOST}' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    let got = delivered(&bob.mb);
    assert!(stanza_ids(&got[0]).is_empty());
    assert_eq!(
        w.store()
            .mam_count(&format!("bob@{HOST}"), &all)
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
}

#[test]
fn never_is_respected_on_every_shard() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    delivered(&alice.mb);
    delivered(&bob.mb);
    for shard in &mut w.cluster.shards {
        if let Some(t) = shard.ext.get_mut::<PrefsTable>() {
            t.put(
                format!("bob@{HOST}"),
                Prefs {
                    mode: Mode::Never,
                    always: vec![],
                    never: vec![],
                },
            );
        }
    }
    w.send(
        &mut alice,
        &format!("<message to='bob@{HOST}' type='chat'><body>x</body></message>"),
    );
    let got = delivered(&bob.mb);
    assert!(stanza_ids(&got[0]).is_empty(), "{got:?}");
    let all = MamFilter::default();
    assert_eq!(
        w.store()
            .mam_count(&format!("bob@{HOST}"), &all)
            .unwrap_or_else(|e| panic!("{e}")),
        0
    );
    assert_eq!(
        w.store()
            .mam_count(&format!("alice@{HOST}"), &all)
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
}

#[test]
fn room_messages_are_archived_under_the_room() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let room = format!("r@conference.{HOST}");
    w.send(
        &mut alice,
        &format!("<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    w.send(&mut alice, &format!("<iq type='set' id='c' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    delivered(&alice.mb);
    w.send(
        &mut alice,
        &format!("<message to='{room}' type='groupchat' id='g1'><body>to all</body></message>"),
    );
    let got = delivered(&alice.mb);
    let g = got
        .iter()
        .find(|s| s.id().as_deref() == Some("g1"))
        .unwrap_or_else(|| panic!("{got:?}"));
    let ids = stanza_ids(g);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].0, room);
    let rows = w
        .store()
        .mam_query(&room, &MamFilter::default(), 10, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id.to_string(), ids[0].1);
    assert_eq!(rows[0].with_res, "al");
    // The sender's groupchat is not also archived as a 1:1 message of alice's.
    assert_eq!(
        w.store()
            .mam_count(&format!("alice@{HOST}"), &MamFilter::default())
            .unwrap_or_else(|e| panic!("{e}")),
        0
    );
}

#[test]
fn retention_trims_by_count_and_age() {
    use crate::store::ArchivedMessage;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = crate::store::Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let now = crate::store::unix_now() * 1_000_000;
    let day = 86_400_000_000_i64;
    let rows: Vec<ArchivedMessage> = (0..10)
        .map(|i| ArchivedMessage {
            owner: "a@x".into(),
            id: i + 1,
            with_bare: "b@x".into(),
            with_res: String::new(),
            outgoing: false,
            // Two are ten days old, the rest from today.
            ts: if i < 2 { now - 10 * day } else { now - i },
            stanza: b"<message/>".to_vec(),
            keep: crate::store::Keep::Always,
        })
        .collect();
    store.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
    let t: toml::Table =
        toml::from_str("max_messages = 5\nmax_age_days = 7").unwrap_or_else(|e| panic!("{e}"));
    let opts = super::MamOptions::from_table(&t).unwrap_or_else(|e| panic!("{e}"));
    let task = super::retention(&opts).unwrap_or_else(|| panic!("limits set: a task"));
    (task.run)(&store);
    let left = store
        .mam_query("a@x", &MamFilter::default(), 100, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        left.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 10]
    );
    assert!(super::retention(&super::MamOptions::default()).is_none());
}

#[test]
fn room_archives_are_queried_by_occupants_and_members_only_in_closed_rooms() {
    let mut w = world(2);
    let room = format!("q@conference.{HOST}");
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    w.send(
        &mut alice,
        &format!("<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    w.send(&mut alice, &format!("<iq type='set' id='c' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>"));
    delivered(&alice.mb);
    for i in 0..3 {
        w.send(&mut alice, &format!("<message to='{room}' type='groupchat' id='g{i}'><body>to all {i}</body><x xmlns='http://jabber.org/protocol/muc#user'><invite to='x@y'/></x></message>"));
    }
    let got = delivered(&alice.mb);
    assert!(
        got.iter()
            .all(|s| !String::from_utf8_lossy(s.bytes()).contains("invite")),
        "a client's muc#user payload is not relayed: {got:?}"
    );
    w.send(&mut alice, &format!("<iq type='set' id='q' to='{room}'><query xmlns='urn:xmpp:mam:2' queryid='z'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>"));
    let got = delivered(&alice.mb);
    assert_eq!(got.len(), 3, "two results then the fin: {got:?}");
    let first = String::from_utf8_lossy(got[0].bytes()).into_owned();
    assert!(
        first.contains(&format!("from='{room}'")) && first.contains("to all 1"),
        "{first}"
    );
    assert!(!first.contains("invite"), "{first}");
    assert_eq!(got[2].type_().as_deref(), Some("result"));
    // Not an occupant or member of a members-only room: refused.
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    delivered(&bob.mb);
    w.send(
        &mut bob,
        &format!("<iq type='set' id='q' to='{room}'><query xmlns='urn:xmpp:mam:2'/></iq>"),
    );
    let got = delivered(&bob.mb);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        crate::modules::testing::error_condition(&got[0]).as_deref(),
        Some("forbidden")
    );
}

/// A message to a name nobody registered is bounced and archived for its sender only: an archive
/// for that name would grow unasked and be read by whoever registered it later.
#[test]
fn a_name_nobody_registered_gets_no_archive() {
    let mut w = world(2);
    accounts(&w, &["alice"]);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    delivered(&alice.mb);
    w.send(
        &mut alice,
        &format!("<message to='nobody@{HOST}' type='chat' id='n1'><body>hi</body></message>"),
    );
    let all = MamFilter::default();
    let query = |owner: &str| {
        w.store()
            .mam_query(&format!("{owner}@{HOST}"), &all, 10, false)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(query("nobody").is_empty(), "{:?}", query("nobody"));
    let sent = query("alice");
    assert_eq!(sent.len(), 1, "the sender's copy is kept");
    assert_eq!(sent[0].with_bare, format!("nobody@{HOST}"));
}

#[test]
fn offline_messages_are_archived_and_stamped_once() {
    let mut w = World::new(1, "[modules.presence]\n[modules.offline]\n[modules.mam]\n");
    accounts(&w, &["alice", "bob"]);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    delivered(&alice.mb);
    w.send(
        &mut alice,
        &format!("<message to='bob@{HOST}' type='chat' id='o1'><body>while away</body></message>"),
    );
    let bob = w.connect(0, &format!("bob@{HOST}/b"), Some(0));
    let got = delivered(&bob.mb);
    let m = got
        .iter()
        .find(|s| s.id().as_deref() == Some("o1"))
        .unwrap_or_else(|| panic!("offline message not delivered: {got:?}"));
    let ids = stanza_ids(m);
    assert_eq!(ids.len(), 1, "one stanza id: {ids:?}");
    let rows = w
        .store()
        .mam_query(&format!("bob@{HOST}"), &MamFilter::default(), 10, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id.to_string(), ids[0].1);
}

#[test]
fn private_messages_in_a_room_stay_out_of_the_room_archive() {
    let mut w = world(1);
    let room = format!("pm@conference.{HOST}");
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(0, &format!("bob@{HOST}/b"), Some(0));
    w.send(
        &mut alice,
        &format!("<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    w.send(&mut alice, &format!("<iq type='set' id='c' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    w.send(
        &mut bob,
        &format!("<presence to='{room}/bo'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    delivered(&alice.mb);
    delivered(&bob.mb);
    w.send(
        &mut alice,
        &format!("<message to='{room}/bo' type='chat' id='pm1'><body>psst</body></message>"),
    );
    let got = delivered(&bob.mb);
    assert!(
        got.iter().any(|s| s.id().as_deref() == Some("pm1")),
        "{got:?}"
    );
    let n = w
        .store()
        .mam_count(&room, &MamFilter::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 0, "a private message is not the room's");
}
