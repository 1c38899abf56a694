//! Personal eventing (XEP-0163) over real sockets at 1 and 2 shards: a publish notifies the owner's
//! other resource, items are read back, a node survives a restart, publishing to someone else's
//! PEP service and a huge item are refused, the presence and open access models; contacts
//! advertising `+notify` in their caps get notifications (needs the caps module).

mod common;

use common::{error_condition, subscribe_one_way, Client, Server};
use petrel::xml::Stanza;

const PS: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

fn start(shards: usize) -> Server {
    Server::start_with(
        shards,
        &["alice", "bob", "carol"],
        "",
        "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.pep]\nmax_item_bytes = 4096\n",
    )
}

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// Asserts `r` is an error with condition `cond` and pubsub condition `app`.
fn refused(r: &Stanza, cond: &str, app: Option<&str>) {
    assert_eq!(error_condition(r).as_deref(), Some(cond), "{}", text(r));
    if app.is_some() {
        assert_eq!(app_error(r).as_deref(), app, "{}", text(r));
    }
}

/// Publishes `secret` to the presence-model node `urn:x:presence` and `public` to the open node
/// `urn:x:open`.
fn publish_both(alice: &mut Client, secret: &str, public: &str) {
    let r = publish(
        alice,
        "p1",
        None,
        "urn:x:presence",
        &format!("<x xmlns='urn:x:presence'>{secret}</x>"),
        "",
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = publish(
        alice,
        "p2",
        None,
        "urn:x:open",
        &format!("<x xmlns='urn:x:open'>{public}</x>"),
        open_options(),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
}

fn app_error(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", "jabber:client")?;
    let app = e.child_elements().find(|c| c.ns == ERRORS)?;
    Some(app.name.clone())
}

fn open_options() -> &'static str {
    "<publish-options><x xmlns='jabber:x:data' type='submit'>\
     <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
     <field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
}

/// Sends an IQ and returns its answer.
fn iq(c: &mut Client, id: &str, xml: &str) -> Stanza {
    c.send(xml);
    c.expect(id, |s| s.id().as_deref() == Some(id))
}

fn publish(
    c: &mut Client,
    id: &str,
    to: Option<&str>,
    node: &str,
    payload: &str,
    opts: &str,
) -> Stanza {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    iq(
        c,
        id,
        &format!("<iq type='set' id='{id}'{to}><pubsub xmlns='{PS}'><publish node='{node}'><item id='current'>{payload}</item></publish>{opts}</pubsub></iq>"),
    )
}

fn items(c: &mut Client, id: &str, owner: &str, node: &str) -> Stanza {
    iq(
        c,
        id,
        &format!("<iq type='get' id='{id}' to='{owner}'><pubsub xmlns='{PS}'><items node='{node}'/></pubsub></iq>"),
    )
}

fn is_event(s: &Stanza, node: &str) -> bool {
    s.name() == "message"
        && s.tree().ok().is_some_and(|t| {
            t.get_child("event", EVENT)
                .and_then(|e| e.get_child("items", EVENT))
                .is_some_and(|i| i.attr("node") == Some(node))
        })
}

#[test]
fn owner_publishes_other_resource_is_notified_and_the_node_survives_a_restart() {
    for shards in [1, 2] {
        let mut server = start(shards);
        let mut phone = server.login("alice", "phone", Some(0));
        let mut pc = server.login("alice", "pc", Some(0));
        let r = publish(&mut phone, "p1", None, "urn:xmpp:avatar:metadata", "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='3' type='image/png'/></metadata>", "");
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let n = pc.expect("notification", |s| is_event(s, "urn:xmpp:avatar:metadata"));
        assert!(text(&n).contains("<info id='abc'"), "{}", text(&n));
        assert_eq!(n.from().as_deref(), Some("alice@localhost"));

        // Publishing to someone else's PEP service is refused.
        let r = publish(
            &mut phone,
            "p2",
            Some("bob@localhost"),
            "urn:n",
            "<x xmlns='urn:n'/>",
            "",
        );
        refused(&r, "forbidden", None);
        // So is an item past max_item_bytes.
        let big = format!("<x xmlns='urn:n'>{}</x>", "z".repeat(8000));
        let r = publish(&mut phone, "p3", None, "urn:n", &big, "");
        refused(&r, "not-acceptable", Some("payload-too-big"));

        drop(phone);
        drop(pc);
        server.stop();
        server.spawn(shards);
        // After the restart: the item is read back, and a resource coming online gets it.
        let mut c = server.login("alice", "tablet", None);
        let r = items(&mut c, "i1", "alice@localhost", "urn:xmpp:avatar:metadata");
        assert!(
            text(&r).contains("<info id='abc'"),
            "{shards}: {}",
            text(&r)
        );
        c.send("<presence/>");
        let n = c.expect("last item", |s| is_event(s, "urn:xmpp:avatar:metadata"));
        assert!(text(&n).contains("<item id='current'"), "{}", text(&n));
    }
}

#[test]
fn presence_node_refused_to_a_stranger_open_node_readable() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        publish_both(&mut alice, "secret", "public");
        let r = items(&mut carol, "i1", "alice@localhost", "urn:x:presence");
        refused(&r, "not-authorized", Some("presence-subscription-required"));
        let r = items(&mut carol, "i2", "alice@localhost", "urn:x:open");
        assert!(text(&r).contains("public"), "{}", text(&r));
        // The account advertises PEP to its owner.
        let r = iq(
            &mut alice,
            "d1",
            "<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        );
        assert!(
            text(&r).contains("<identity category='pubsub' type='pep'/>"),
            "{}",
            text(&r)
        );
    }
}

#[test]
fn nodes_are_listed_and_described_to_whoever_may_read_them() {
    // XEP-0163 §6.2: a contact's disco#items lists the nodes its access lets it read (it was
    // refused outright); XEP-0060 §5.3: disco#info of a node (it was item-not-found, even for the
    // owner and an existing node).
    let items_q = "<query xmlns='http://jabber.org/protocol/disco#items'/>";
    let info_q = |node: &str| {
        format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/>")
    };
    let ask = |c: &mut Client, id: &str, q: &str| {
        iq(
            c,
            id,
            &format!("<iq type='get' id='{id}' to='alice@localhost'>{q}</iq>"),
        )
    };
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
        publish_both(&mut alice, "secret", "public");
        let listed = |r: &Stanza| {
            let t = r.tree().unwrap();
            let q = t.get_child("query", "http://jabber.org/protocol/disco#items");
            let mut nodes: Vec<String> = q
                .map(|q| {
                    q.child_elements()
                        .filter_map(|i| i.attr("node").map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            nodes.sort();
            nodes
        };
        let both = vec!["urn:x:open".to_string(), "urn:x:presence".to_string()];
        assert_eq!(
            listed(&ask(&mut alice, "o", items_q)),
            both,
            "shards={shards}"
        );
        assert_eq!(
            listed(&ask(&mut bob, "b", items_q)),
            both,
            "shards={shards}"
        );
        let r = ask(&mut carol, "c", items_q);
        assert_eq!(listed(&r), vec!["urn:x:open".to_string()], "{}", text(&r));

        for (who, c) in [("owner", &mut alice), ("contact", &mut bob)] {
            let r = ask(c, "ni", &info_q("urn:x:presence"));
            assert!(
                text(&r).contains("<identity category='pubsub' type='leaf'/>"),
                "{who}: {}",
                text(&r)
            );
            let r = ask(c, "nm", &info_q("urn:x:missing"));
            refused(&r, "item-not-found", None);
        }
        // The stranger may read the open node only.
        let r = ask(&mut carol, "so", &info_q("urn:x:open"));
        assert!(text(&r).contains("type='leaf'"), "{}", text(&r));
        let r = ask(&mut carol, "sp", &info_q("urn:x:presence"));
        assert_eq!(r.type_().as_deref(), Some("error"), "{}", text(&r));
        assert!(!text(&r).contains("leaf"), "{}", text(&r));
    }
}

/// The caps of a test client wanting notifications of `urn:x:presence` and `urn:x:open` (plus one
/// feature of its own, so that each client has its own `ver` and is asked for it).
mod caps {
    use base64::Engine;
    use sha1::Digest;

    pub const NODE: &str = "https://petrel.im/test-client";

    fn features(own: &str) -> Vec<String> {
        let mut f: Vec<String> = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "urn:x:open+notify",
            "urn:x:presence+notify",
            own,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        f.sort();
        f
    }

    /// XEP-0115 §5.1 over identity client/pc and the features.
    pub fn ver(own: &str) -> String {
        let mut s = String::from("client/pc//test<");
        for f in features(own) {
            s.push_str(&f);
            s.push('<');
        }
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
    }

    /// The `<c/>` for a presence.
    pub fn element(own: &str) -> String {
        format!(
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{NODE}' ver='{}'/>",
            ver(own)
        )
    }

    /// The answer to the server's disco#info query `id` about `node`.
    pub fn info(own: &str, id: &str, to: &str, node: &str) -> String {
        let f: String = features(own)
            .iter()
            .map(|f| format!("<feature var='{f}'/>"))
            .collect();
        format!(
            "<iq type='result' id='{id}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'>\
             <identity category='client' type='pc' name='test'/>{f}</query></iq>"
        )
    }
}

/// Sends `presence` (carrying the caps of `own`) and answers the server's caps query.
fn advertise(c: &mut Client, own: &str, to: Option<&str>) {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!("<presence{to}>{}</presence>", caps::element(own)));
    let q = c.expect("caps query", |s| {
        s.name() == "iq" && s.type_().as_deref() == Some("get") && text(s).contains("disco#info")
    });
    let t = q.tree().unwrap();
    let node = t
        .child_elements()
        .next()
        .and_then(|q| q.attr("node"))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(node, format!("{}#{}", caps::NODE, caps::ver(own)));
    let id = q.id().unwrap_or_default().to_string();
    let from = q.from().unwrap_or_default().to_string();
    c.send(&caps::info(own, &id, &from, &node));
}

/// Waits for notifications (or last items) of every node in `nodes`.
fn expect_events(c: &mut Client, nodes: &[&str]) -> Vec<Stanza> {
    let mut got: Vec<Stanza> = Vec::new();
    while !nodes.iter().all(|n| got.iter().any(|s| is_event(s, n))) {
        let s = c.next_stanza();
        if nodes.iter().any(|n| is_event(&s, n)) {
            got.push(s);
        }
    }
    got
}

fn subscribe_both(a: &mut Client, an: &str, b: &mut Client, bn: &str) {
    subscribe_one_way(a, an, b, bn);
    subscribe_one_way(b, bn, a, an);
}

#[test]
fn contacts_advertising_notify_are_notified_strangers_only_of_open_nodes() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        subscribe_both(&mut alice, "alice", &mut bob, "bob");
        advertise(&mut bob, "urn:x:bob", None);
        // Carol is no contact: her directed presence reaches alice.
        let mut carol = server.login("carol", "c", None);
        advertise(&mut carol, "urn:x:carol", Some("alice@localhost"));
        publish_both(&mut alice, "for contacts", "for all");
        // Whether the caps were known when alice published (a notification) or learned after (the
        // last item), bob gets both nodes' items.
        let got = expect_events(&mut bob, &["urn:x:presence", "urn:x:open"]);
        assert!(
            got.iter().any(|s| text(s).contains("for contacts")),
            "{got:?}"
        );
        expect_events(&mut carol, &["urn:x:open"]);
        // A later item on the open node comes after anything sent to carol before it.
        let r = publish(
            &mut alice,
            "p3",
            None,
            "urn:x:open",
            "<x xmlns='urn:x:open'>final</x>",
            "",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        carol.expect("final", |s| {
            is_event(s, "urn:x:open") && text(s).contains("final")
        });
        assert!(
            !String::from_utf8_lossy(&carol.raw).contains("for contacts"),
            "{shards}: a stranger got an item of a presence-model node"
        );
        // Bob is told of the new item too.
        bob.expect("final", |s| {
            is_event(s, "urn:x:open") && text(s).contains("final")
        });
    }
}

/// The versions of the roster pushes `c` received so far, in order (petrel's push ids are
/// `push-VER-…`).
fn push_versions(c: &Client) -> Vec<u64> {
    let raw = String::from_utf8_lossy(&c.raw);
    raw.match_indices("id='push-")
        .filter_map(|(at, m)| {
            let rest = &raw[at + m.len()..];
            rest[..rest.find('-')?].parse().ok()
        })
        .collect()
}

#[test]
fn crossing_subscriptions_at_two_shards_leave_every_contact_notified() {
    // Alice and her contacts ask each other at once and approve at once, at two shards: the
    // changes to alice's roster made for her approvals and for theirs run on different shards'
    // requests, and their pushes must still reach her home shard (PEP's view of who may see her
    // presence-model node) and her client in the store's order. Before the fix a stale `to` push
    // could come last (the loadtest smoke's pep step: a few of 20 contacts never notified).
    const N: usize = 8;
    let names: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
    let mut users: Vec<&str> = names.iter().map(String::as_str).collect();
    users.push("alice");
    let server = Server::start_with(
        2,
        &users,
        "",
        "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.pep]\n",
    );
    let mut alice = server.login("alice", "a", None);
    iq(
        &mut alice,
        "r0",
        "<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>",
    );
    alice.send("<presence/>");
    let mut contacts: Vec<Client> = names
        .iter()
        .map(|n| {
            let mut c = server.login(n, "c", None);
            advertise(&mut c, &format!("urn:x:{n}"), None);
            c
        })
        .collect();
    for (n, c) in names.iter().zip(&mut contacts) {
        alice.send(&format!("<presence to='{n}@localhost' type='subscribe'/>"));
        c.send("<presence to='alice@localhost' type='subscribe'/>");
    }
    for c in &mut contacts {
        c.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
    }
    for _ in 0..N {
        alice.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
    }
    // Both sides approve together.
    for (n, c) in names.iter().zip(&mut contacts) {
        c.send("<presence to='alice@localhost' type='subscribed'/>");
        alice.send(&format!("<presence to='{n}@localhost' type='subscribed'/>"));
    }
    // Until the store says `both` for every contact.
    for i in 1.. {
        let id = format!("r{i}");
        let r = iq(
            &mut alice,
            &id,
            &format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"),
        );
        if text(&r).matches("subscription='both'").count() == N {
            break;
        }
        assert!(i < 200, "subscriptions not made: {}", text(&r));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = publish(
        &mut alice,
        "p1",
        None,
        "urn:x:presence",
        "<x xmlns='urn:x:presence'>to all</x>",
        "",
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    for (n, c) in names.iter().zip(&mut contacts) {
        let got = expect_events(c, &["urn:x:presence"]);
        assert!(text(&got[0]).contains("to all"), "{n}: {}", text(&got[0]));
    }
    alice.sync();
    let v = push_versions(&alice);
    assert!(v.len() >= 2 * N, "{v:?}");
    assert!(
        v.windows(2).all(|w| w[0] < w[1]),
        "pushes out of order: {v:?}"
    );
}

/// XEP-0060 §6.4: `<default/>` in the plain pubsub namespace asks for the default subscription
/// options, which PEP does not have (§6.4.3: `retrieve-default-sub` unsupported); the owner
/// namespace's `<default/>` is the default node configuration.
#[test]
fn the_plain_default_is_unsupported_the_owner_default_is_the_node_configuration() {
    let server = start(1);
    let mut alice = server.login("alice", "a", Some(0));
    let r = iq(
        &mut alice,
        "d1",
        &format!("<iq type='get' id='d1'><pubsub xmlns='{PS}'><default/></pubsub></iq>"),
    );
    refused(&r, "feature-not-implemented", Some("unsupported"));
    assert!(
        text(&r).contains("feature='retrieve-default-sub'"),
        "{}",
        text(&r)
    );
    let r = iq(
        &mut alice,
        "d2",
        &format!("<iq type='get' id='d2'><pubsub xmlns='{PS}#owner'><default/></pubsub></iq>"),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    assert!(text(&r).contains("pubsub#node_config"), "{}", text(&r));
}

#[test]
fn an_items_subid_must_be_the_requesters() {
    let server = start(2);
    let mut alice = server.login("alice", "a", Some(0));
    let mut bob = server.login("bob", "b", Some(0));
    publish_both(&mut alice, "s", "p");
    let sub = iq(
        &mut bob,
        "s1",
        &format!("<iq type='set' id='s1' to='alice@localhost'><pubsub xmlns='{PS}'><subscribe node='urn:x:open' jid='bob@localhost/b'/></pubsub></iq>"),
    );
    assert_eq!(sub.type_().as_deref(), Some("result"), "{}", text(&sub));
    let t = sub.tree().unwrap();
    let subid = t
        .get_child("pubsub", PS)
        .and_then(|p| p.get_child("subscription", PS))
        .and_then(|s| s.attr("subid"))
        .unwrap_or_else(|| panic!("no subid: {}", text(&sub)))
        .to_owned();
    let get = |c: &mut Client, id: &str, subid: &str| {
        iq(
            c,
            id,
            &format!("<iq type='get' id='{id}' to='alice@localhost'><pubsub xmlns='{PS}'><items node='urn:x:open' subid='{subid}'/></pubsub></iq>"),
        )
    };
    // XEP-0060 §6.5.9.2: a subid that is not the requester's is refused, never ignored.
    refused(
        &get(&mut bob, "i1", "bogus"),
        "not-acceptable",
        Some("invalid-subid"),
    );
    let r = get(&mut bob, "i2", &subid);
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let mut carol = server.login("carol", "c", Some(0));
    refused(
        &get(&mut carol, "i3", &subid),
        "not-acceptable",
        Some("invalid-subid"),
    );
}

/// XEP-0163 §4.3.3 and XEP-0191: a contact the owner blocked gets no notification (the full-JID
/// copies skipped the route's block filter); §4.3.2: a subscriber of the bare JID whose resource
/// is notified through its caps gets one copy, not a second one at the bare JID.
#[test]
fn a_blocked_contact_is_not_notified_and_a_bare_subscriber_once() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.blocking]\n[modules.pep]\n",
        );
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        subscribe_both(&mut alice, "alice", &mut bob, "bob");
        advertise(&mut bob, "urn:x:bob", None);
        let note = |alice: &mut Client, id: &str, body: &str| {
            let payload = format!("<x xmlns='urn:x:presence'>{body}</x>");
            let r = publish(alice, id, None, "urn:x:presence", &payload, "");
            assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        };
        note(&mut alice, "n1", "before the block");
        bob.expect("first", |s| text(s).contains("before the block"));

        let r = iq(
            &mut alice,
            "blk",
            "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        note(&mut alice, "n2", "while blocked");
        // (After the unblock bob may get the node's current item, this one: look before.)
        let quiet = bob.read_until_quiet(std::time::Duration::from_millis(500));
        let seen = String::from_utf8_lossy(&quiet).into_owned();
        assert!(!seen.contains("while blocked"), "shards={shards}: {seen}");
        let r = iq(
            &mut alice,
            "unb",
            "<iq type='set' id='unb'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        // Bob subscribes his bare JID too: his caps already bring him the notifications.
        let r = iq(
            &mut bob,
            "sub",
            &format!("<iq type='set' id='sub' to='alice@localhost'><pubsub xmlns='{PS}'><subscribe node='urn:x:presence' jid='bob@localhost'/></pubsub></iq>"),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        note(&mut alice, "n3", "after the block");
        note(&mut alice, "n4", "the last one");
        // The same path carries all of them, in order: by the last, any earlier copy is in.
        bob.expect("last", |s| text(s).contains("the last one"));
        let seen = String::from_utf8_lossy(&bob.raw).into_owned();
        assert_eq!(
            seen.matches("after the block").count(),
            1,
            "shards={shards}: {seen}"
        );
        // XEP-0060 §6.2.3.3: unsubscribing someone else is forbidden.
        let r = iq(
            &mut bob,
            "uns",
            &format!("<iq type='set' id='uns' to='alice@localhost'><pubsub xmlns='{PS}'><unsubscribe node='urn:x:presence' jid='carol@localhost/m'/></pubsub></iq>"),
        );
        refused(&r, "forbidden", None);
    }
}

/// XEP-0163 §7.1: a roster change that loses a subscriber its access to a node cancels its
/// subscription (it stayed listed, and came back to life when access did).
#[test]
fn a_contact_removed_from_the_roster_loses_its_subscriptions() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        subscribe_both(&mut alice, "alice", &mut bob, "bob");
        let r = publish(
            &mut alice,
            "p1",
            None,
            "urn:x:presence",
            "<x xmlns='urn:x:presence'>one</x>",
            "",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let r = iq(
            &mut bob,
            "sub",
            &format!("<iq type='set' id='sub' to='alice@localhost'><pubsub xmlns='{PS}'><subscribe node='urn:x:presence' jid='bob@localhost'/></pubsub></iq>"),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let subscribers = |alice: &mut Client, id: &str| {
            let r = iq(
                alice,
                id,
                &format!("<iq type='get' id='{id}'><pubsub xmlns='{PS}#owner'><subscriptions node='urn:x:presence'/></pubsub></iq>"),
            );
            assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
            text(&r)
        };
        assert!(subscribers(&mut alice, "l1").contains("jid='bob@localhost'"));
        let r = iq(
            &mut alice,
            "rm",
            "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        // The roster push reaches the PEP service on alice's home shard right after: asked until
        // it shows.
        let mut list = subscribers(&mut alice, "l2");
        for i in 0..50 {
            if !list.contains("bob@localhost") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            list = subscribers(&mut alice, &format!("l3-{i}"));
        }
        assert!(!list.contains("bob@localhost"), "shards={shards}: {list}");
    }
}

#[test]
fn a_remote_contact_gets_an_offline_owners_last_items_once_its_caps_are_learned() {
    // XEP-0163 §4.3.2: a contact coming online gets the last items it wants, the owner offline
    // or not. A remote contact's caps were learned only on the way to a local session, so with
    // the owner offline its `ver` was never asked about and nothing came (unless a local client
    // happened to share the `ver`). A component plays the remote server.
    const REMOTE: &str = "remote.localhost";
    for shards in [1, 2] {
        let port = common::free_port();
        let modules = format!(
            "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.pep]\n{}",
            common::component::config(port, &[REMOTE])
        );
        let server = Server::start_with(shards, &["alice"], "", &modules);
        let mut remote = common::component::Component::connect(port, REMOTE);
        let mut alice = server.login("alice", "a", Some(0));
        remote
            .send("<presence type='subscribe' from='bob@remote.localhost' to='alice@localhost'/>");
        alice.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
        alice.send("<presence type='subscribed' to='bob@remote.localhost'/>");
        let r = publish(
            &mut alice,
            "p1",
            None,
            "urn:x:presence",
            "<x xmlns='urn:x:presence'>while away</x>",
            "",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        alice.send("</stream:stream>");
        alice.read_to_close();

        let own = &format!("remote-{shards}");
        remote.send(&format!(
            "<presence from='bob@remote.localhost/r' to='alice@localhost'>{}</presence>",
            caps::element(own)
        ));
        let query = loop {
            let s = remote.next();
            if s.name() == "iq" && s.type_().as_deref() == Some("get") {
                break s;
            }
        };
        assert_eq!(query.to().as_deref(), Some("bob@remote.localhost/r"));
        let node = query
            .tree()
            .ok()
            .and_then(|t| {
                t.get_child("query", "http://jabber.org/protocol/disco#info")
                    .and_then(|q| q.attr("node").map(str::to_owned))
            })
            .unwrap_or_default();
        let id = query.id().unwrap_or_default().into_owned();
        let to = query.from().unwrap_or_default().into_owned();
        remote.send(&caps::info(own, &id, &to, &node).replacen(
            "<iq ",
            "<iq from='bob@remote.localhost/r' ",
            1,
        ));
        let event = loop {
            let s = remote.next();
            if is_event(&s, "urn:x:presence") {
                break s;
            }
        };
        assert!(text(&event).contains("while away"), "{}", text(&event));
        assert_eq!(event.to().as_deref(), Some("bob@remote.localhost/r"));
    }
}

#[test]
fn a_deleted_accounts_subscriptions_and_affiliations_on_a_contacts_nodes_go_with_it() {
    // Bob subscribes to alice's open node and is on her whitelist node's member list, then
    // deletes his account (XEP-0077) and the name is registered again: its next owner must get
    // none of alice's events and may not read the whitelist node. At two shards alice is offline
    // meanwhile (only the store holds bob's place); at one she stays online (it is in memory).
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.pep]\n[modules.register]\n",
        );
        let mut alice = server.login("alice", "a", Some(0));
        let whitelist = open_options().replace(">open<", ">whitelist<");
        for (id, node, opts) in [
            ("p1", "urn:x:open", open_options()),
            ("p2", "urn:x:w", whitelist.as_str()),
        ] {
            let payload = format!("<x xmlns='{node}'>one</x>");
            let r = publish(&mut alice, id, None, node, &payload, opts);
            assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        }
        let r = iq(
            &mut alice,
            "aff",
            &format!("<iq type='set' id='aff'><pubsub xmlns='{PS}#owner'><affiliations node='urn:x:w'><affiliation jid='bob@localhost' affiliation='member'/></affiliations></pubsub></iq>"),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let mut bob = server.login("bob", "b", Some(0));
        let r = iq(
            &mut bob,
            "sub",
            &format!("<iq type='set' id='sub' to='alice@localhost'><pubsub xmlns='{PS}'><subscribe node='urn:x:open' jid='bob@localhost'/></pubsub></iq>"),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let r = items(&mut bob, "w1", "alice@localhost", "urn:x:w");
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        if shards == 2 {
            drop(alice);
            // Alice's state leaves memory with her last session; a ping to her own server
            // answered means the close went through.
            let mut probe = server.login("bob", "probe", None);
            let r = iq(
                &mut probe,
                "ping",
                "<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            );
            assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
            drop(probe);
        }
        bob.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>");
        let r = bob.expect("removal", |s| s.id().as_deref() == Some("rm"));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let mut c = server.connect();
        c.open("localhost");
        c.next_stanza();
        c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>bob</username><password>another password</password></query></iq>");
        let r = c.expect("registration", |s| s.id().as_deref() == Some("reg"));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let mut next = server.connect();
        next.login_plain("bob", "localhost", "another password", "n");
        next.send("<presence/>");
        let mut alice = server.login("alice", "a2", Some(0));
        let r = publish(
            &mut alice,
            "p3",
            None,
            "urn:x:open",
            "<x xmlns='urn:x:open'>two</x>",
            "",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        // Whatever reaches the next owner up to each answer: an event from alice would come
        // ahead of them (her home shard sends both to the same session).
        let mut got = Vec::new();
        let mut answer = |c: &mut Client, id: &str, node: &str| {
            c.send(&format!("<iq type='get' id='{id}' to='alice@localhost'><pubsub xmlns='{PS}'><items node='{node}'/></pubsub></iq>"));
            loop {
                let s = c.next_stanza();
                if s.id().as_deref() == Some(id) {
                    return s;
                }
                got.push(s);
            }
        };
        let r = answer(&mut next, "w2", "urn:x:w");
        refused(&r, "not-allowed", Some("closed-node"));
        let r = answer(&mut next, "o1", "urn:x:open");
        assert!(text(&r).contains(">two<"), "{}", text(&r));
        assert!(
            !got.iter().any(|s| is_event(s, "urn:x:open")),
            "shards={shards}: {:?}",
            got.iter().map(text).collect::<Vec<_>>()
        );
    }
}

/// XEP-0060 §4.5 (`roster` access model): a contact in an allowed roster group reads the node,
/// also after a restart. The owner's PEP state was loaded with its roster's rows but without
/// their groups, so from a restart on every such contact got `not-in-roster-group`.
#[test]
fn a_roster_group_node_stays_readable_to_the_group_after_a_restart() {
    for shards in [1, 2] {
        let mut server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        common::subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
        let r = iq(
            &mut alice,
            "g1",
            "<iq type='set' id='g1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>friends</group></item></query></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let options = "<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>roster</value></field>\
             <field var='pubsub#roster_groups_allowed'><value>friends</value></field></x></publish-options>";
        let r = publish(
            &mut alice,
            "p1",
            None,
            "urn:x:friends",
            "<x xmlns='urn:x:friends'>for friends</x>",
            options,
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        let r = items(&mut bob, "i1", "alice@localhost", "urn:x:friends");
        assert!(text(&r).contains("for friends"), "{shards}: {}", text(&r));
        drop(alice);
        drop(bob);
        server.stop();
        server.spawn(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let r = items(&mut bob, "i2", "alice@localhost", "urn:x:friends");
        assert!(
            text(&r).contains("for friends"),
            "shards={shards}, after the restart: {}",
            text(&r)
        );
        // Still refused to a contact outside the group.
        let mut carol = server.login("carol", "c", Some(0));
        let r = items(&mut carol, "i3", "alice@localhost", "urn:x:friends");
        assert_eq!(r.type_().as_deref(), Some("error"), "{}", text(&r));
    }
}
