//! Entity capabilities (XEP-0115) over real sockets at 1 and 2 shards: the server asks a client's
//! disco#info once per `ver`, does not ask again when the `ver` is known or failed to verify, and
//! advertises its own caps in the stream features, with a `ver` that verifies against its
//! disco#info.

mod common;

use base64::Engine;
use common::{Client, Server, PASSWORD};
use petrel::xml::{Element, Stanza};
use petrel::xmpp::ns;
use sha1::Digest;

const CAPS: &str = "http://jabber.org/protocol/caps";
const NODE: &str = "http://code.google.com/p/exodus";

/// XEP-0115 §5.2: the disco#info of Exodus 0.9.1 and its `ver`.
const EXODUS: &str = "<identity category='client' name='Exodus 0.9.1' type='pc'/>\
<feature var='http://jabber.org/protocol/caps'/>\
<feature var='http://jabber.org/protocol/disco#info'/>\
<feature var='http://jabber.org/protocol/disco#items'/>\
<feature var='http://jabber.org/protocol/muc'/>";
const EXODUS_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

fn start(shards: usize, caps_options: &str) -> Server {
    Server::start_with(
        shards,
        &["a", "b0", "b1", "b2", "b3", "c0", "c1"],
        "",
        &format!("[modules.presence]\n[modules.caps]\n{caps_options}\n"),
    )
}

fn presence(ver: &str) -> String {
    format!("<presence><c xmlns='{CAPS}' hash='sha-1' node='{NODE}' ver='{ver}'/></presence>")
}

/// Sends a presence with `ver` and waits for the server's query about it; returns its id.
fn asked_about(c: &mut Client, ver: &str) -> String {
    c.send(&presence(ver));
    let (id, node) = next_query(c);
    assert_eq!(node, format!("{NODE}#{ver}"));
    id
}

/// The next disco#info query from the server: (id, node).
fn next_query(c: &mut Client) -> (String, String) {
    let s = c.expect("a disco#info query", |s| {
        s.name() == "iq"
            && s.type_().as_deref() == Some("get")
            && s.tree()
                .is_ok_and(|t| t.get_child("query", ns::DISCO_INFO).is_some())
    });
    assert_eq!(s.from().as_deref(), Some("localhost"));
    let t = s.tree().unwrap();
    let node = t.get_child("query", ns::DISCO_INFO).unwrap().attr("node");
    (
        s.id().unwrap().into_owned(),
        node.unwrap_or_default().to_owned(),
    )
}

/// Answers the query `id` about `ver` with `body`.
fn answer(c: &mut Client, id: &str, ver: &str, body: &str) {
    c.send(&format!(
        "<iq type='result' to='localhost' id='{id}'><query xmlns='{}' node='{NODE}#{ver}'>{body}</query></iq>",
        ns::DISCO_INFO
    ));
}

/// A made-up `ver` (never verifies) whose home shard is that of `like`: claims about both travel
/// the same rings in order, so a query about `like` would come before one about it.
fn ver_like(like: &str, shards: usize, tag: &str) -> String {
    let home = petrel::shard::home_shard_of(like, shards);
    (0..)
        .map(|i| format!("{tag}{i}AAAAAAAAAAAAAAAAAAAA="))
        .find(|v| petrel::shard::home_shard_of(v, shards) == home)
        .unwrap()
}

/// Sends `ver` (known or failed) then a fresh `ver` with the same home; the first query that comes
/// must be about the fresh one. Answers it with an error.
fn not_asked_about(c: &mut Client, ver: &str, shards: usize, tag: &str) {
    let fresh = ver_like(ver, shards, tag);
    c.send(&presence(ver));
    c.send(&presence(&fresh));
    let (id, node) = next_query(c);
    assert_eq!(node, format!("{NODE}#{fresh}"), "asked again about {ver}");
    c.send(&format!("<iq type='error' to='localhost' id='{id}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"));
}

fn asked_once_per_ver(shards: usize) {
    let server = start(shards, "");
    let mut a = server.login("a", "r", None);
    let id = asked_about(&mut a, EXODUS_VER);
    answer(&mut a, &id, EXODUS_VER, EXODUS);
    a.sync();
    // Four more clients (at two shards, some on the other shard) with the same ver.
    for i in 0..4 {
        let mut b = server.login(&format!("b{i}"), "r", None);
        not_asked_about(&mut b, EXODUS_VER, shards, &format!("b{i}x"));
    }
}

#[test]
fn a_ver_is_asked_once_one_shard() {
    asked_once_per_ver(1);
}

#[test]
fn a_ver_is_asked_once_two_shards() {
    asked_once_per_ver(2);
}

const BOGUS: &str = "Zm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2U=";

/// A client of `user` claims `BOGUS` and answers the query with Exodus's features, which do not
/// hash to it.
fn answer_wrongly(server: &Server, user: &str) -> Client {
    let mut a = server.login(user, "r", None);
    let id = asked_about(&mut a, BOGUS);
    answer(&mut a, &id, BOGUS, EXODUS);
    a.sync();
    a
}

fn unverified_not_cached(shards: usize) {
    let server = start(shards, "");
    let bogus = BOGUS;
    let _a = answer_wrongly(&server, "a");
    // The same account is not asked again; other accounts are (one client answering wrongly must
    // not keep everyone else's caps unknown), until three accounts failed it.
    let mut a2 = server.login("a", "r2", None);
    not_asked_about(&mut a2, bogus, shards, "a2y");
    let _c = answer_wrongly(&server, "c0");
    let _d = answer_wrongly(&server, "c1");
    for i in 0..2 {
        let mut b = server.login(&format!("b{i}"), "r", None);
        not_asked_about(&mut b, bogus, shards, &format!("b{i}y"));
    }
    // A ver that verifies is still learned afterwards.
    let mut b = server.login("b3", "r", None);
    asked_about(&mut b, EXODUS_VER);
}

/// Not cached: once `retry_after` has passed, the next client with that ver is asked (a cached
/// ver would not be).
#[test]
fn an_unverified_ver_is_asked_again_after_retry_after() {
    let server = start(2, "retry_after = 1");
    let _a = answer_wrongly(&server, "a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut b = server.login("b0", "r", None);
    asked_about(&mut b, BOGUS);
}

#[test]
fn an_unverified_ver_is_not_cached_nor_asked_again_one_shard() {
    unverified_not_cached(1);
}

#[test]
fn an_unverified_ver_is_not_cached_nor_asked_again_two_shards() {
    unverified_not_cached(2);
}

/// sha-1 `ver` of a disco#info query (identities and features; the server has no forms).
fn ver_of(query: &Element) -> String {
    let mut ids: Vec<(String, String, String, String)> = query
        .child_elements()
        .filter(|e| e.name == "identity")
        .map(|e| {
            let a = |n: &str| e.attr(n).unwrap_or_default().to_owned();
            (a("category"), a("type"), a("xml:lang"), a("name"))
        })
        .collect();
    ids.sort();
    let mut features: Vec<&str> = query
        .child_elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var"))
        .collect();
    features.sort_unstable();
    let mut s = String::new();
    for (c, t, l, n) in ids {
        s.push_str(&format!("{c}/{t}/{l}/{n}<"));
    }
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

fn disco_info(c: &mut Client, node: Option<&str>) -> Stanza {
    let id = format!("d{}", common::rand_u64());
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    c.send(&format!(
        "<iq type='get' to='localhost' id='{id}'><query xmlns='{}'{node}/></iq>",
        ns::DISCO_INFO
    ));
    c.expect("disco#info answer", |s| {
        s.id().as_deref() == Some(id.as_str())
    })
}

#[test]
fn the_server_caps_are_in_the_stream_features_and_verify() {
    let server = start(1, "");
    let mut c = server.connect();
    let features = c.auth_plain("a", "localhost", PASSWORD);
    assert_eq!(features.name(), "stream:features");
    let tree = features.tree().unwrap();
    let caps = tree
        .get_child("c", CAPS)
        .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(features.bytes())));
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    assert_eq!(caps.attr("node"), Some("https://petrel.im"));
    let ver = caps.attr("ver").unwrap().to_owned();
    c.bind("r");
    let info = disco_info(&mut c, None);
    let query = info.tree().unwrap();
    let query = query.get_child("query", ns::DISCO_INFO).unwrap().clone();
    assert_eq!(ver_of(&query), ver);
    let node = format!("https://petrel.im#{ver}");
    let by_node = disco_info(&mut c, Some(&node));
    assert_eq!(by_node.type_().as_deref(), Some("result"));
    let by_node = by_node.tree().unwrap();
    let by_node = by_node.get_child("query", ns::DISCO_INFO).unwrap();
    assert_eq!(by_node.attr("node"), Some(node.as_str()));
    assert_eq!(ver_of(by_node), ver);
    let other = disco_info(&mut c, Some("https://petrel.im#nope"));
    assert_eq!(
        common::error_condition(&other).as_deref(),
        Some("item-not-found")
    );
}
