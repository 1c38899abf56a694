//! The publish-subscribe service (XEP-0060) at pubsub.localhost over real sockets at 1 and 2
//! shards: create and configure, subscribers (on any shard) notified of publishes with payloads
//! and of retractions, items by max and id, the whitelist and authorize access models with the
//! owner managing affiliations and approving subscriptions, deletion notified, a persistent node
//! across a restart, and the XEP's errors for bad input and limits.

mod common;

use common::{app_error_condition, error_condition, Client, Server};
use petrel::xml::Stanza;

const SERVICE: &str = "pubsub.localhost";
const PS: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

fn start(shards: usize) -> Server {
    start_on(shards, "")
}

/// A server with the pubsub service and `store` (a `[store]` table, or nothing: SQLite).
fn start_on(shards: usize, store: &str) -> Server {
    Server::start_with(
        shards,
        &["alice", "bob", "carol"],
        "",
        &format!("[modules.presence]\n[modules.pubsub]\nmax_item_bytes = 4096\nmax_nodes_per_user = 6\nmax_subscriptions_per_node = 2\n{store}"),
    )
}

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// Asserts `r` is an error with condition `cond` and pubsub condition `app`.
fn refused(r: &Stanza, cond: &str, app: Option<&str>) {
    assert_eq!(error_condition(r).as_deref(), Some(cond), "{}", text(r));
    assert_eq!(
        app_error_condition(r, ERRORS).as_deref(),
        app,
        "{}",
        text(r)
    );
}

fn ok(r: &Stanza) {
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(r));
}

/// Sends an IQ to the service with `body` inside `<pubsub xmlns=ns>` and returns the answer.
fn iq(c: &mut Client, id: &str, ty: &str, ns: &str, body: &str) -> Stanza {
    c.send(&format!(
        "<iq type='{ty}' id='{id}' to='{SERVICE}'><pubsub xmlns='{ns}'>{body}</pubsub></iq>"
    ));
    c.expect(id, |s| s.id().as_deref() == Some(id))
}

/// A `pubsub#node_config` submit form with `fields`.
fn config(fields: &[(&str, &str)]) -> String {
    let f: String = fields
        .iter()
        .map(|(v, x)| format!("<field var='pubsub#{v}'><value>{x}</value></field>"))
        .collect();
    format!("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PS}#node_config</value></field>{f}</x>")
}

fn create(c: &mut Client, id: &str, node: &str, fields: &[(&str, &str)]) -> Stanza {
    iq(
        c,
        id,
        "set",
        PS,
        &format!(
            "<create node='{node}'/><configure>{}</configure>",
            config(fields)
        ),
    )
}

fn publish(c: &mut Client, id: &str, node: &str, item: &str, payload: &str) -> Stanza {
    iq(
        c,
        id,
        "set",
        PS,
        &format!("<publish node='{node}'><item id='{item}'>{payload}</item></publish>"),
    )
}

fn subscribe(c: &mut Client, id: &str, node: &str, jid: &str) -> Stanza {
    iq(
        c,
        id,
        "set",
        PS,
        &format!("<subscribe node='{node}' jid='{jid}'/>"),
    )
}

fn items(c: &mut Client, id: &str, node: &str, inner: &str, attrs: &str) -> Stanza {
    iq(
        c,
        id,
        "get",
        PS,
        &format!("<items node='{node}'{attrs}>{inner}</items>"),
    )
}

fn event(s: &Stanza, child: &str, node: &str) -> bool {
    s.name() == "message"
        && s.from().as_deref() == Some(SERVICE)
        && s.tree().ok().is_some_and(|t| {
            t.get_child("event", EVENT)
                .and_then(|e| e.get_child(child, EVENT))
                .is_some_and(|i| i.attr("node") == Some(node))
        })
}

#[test]
fn create_configure_subscribe_publish_retract_and_items() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        let node = format!("news{shards}");
        ok(&create(
            &mut alice,
            "c1",
            &node,
            &[
                ("title", "The News"),
                ("max_items", "5"),
                ("notify_retract", "1"),
            ],
        ));
        let r = iq(
            &mut alice,
            "g1",
            "get",
            OWNER,
            &format!("<configure node='{node}'/>"),
        );
        ok(&r);
        assert!(text(&r).contains("The News"), "{}", text(&r));
        // Two subscribers, each on whatever shard their connection landed.
        for (c, jid) in [
            (&mut bob, "bob@localhost/b"),
            (&mut carol, "carol@localhost/c"),
        ] {
            let r = subscribe(c, "s1", &node, jid);
            ok(&r);
            assert!(
                text(&r).contains("subscription='subscribed'"),
                "{}",
                text(&r)
            );
        }
        for i in 1..=3 {
            let r = publish(
                &mut alice,
                &format!("p{i}"),
                &node,
                &format!("i{i}"),
                &format!("<entry xmlns='urn:x:news'>story {i}</entry>"),
            );
            ok(&r);
            for c in [&mut bob, &mut carol] {
                let n = c.expect("notification", |s| event(s, "items", &node));
                assert!(
                    text(&n).contains(&format!("story {i}</entry>")),
                    "{}",
                    text(&n)
                );
            }
        }
        // Two subscriptions are as many as a node takes here.
        refused(
            &subscribe(&mut alice, "s2", &node, "alice@localhost/a"),
            "not-allowed",
            Some("too-many-subscriptions"),
        );
        // Items: the newest two, then one by id.
        let r = items(&mut bob, "i1", &node, "", " max_items='2'");
        let t = text(&r);
        assert!(
            t.contains("story 2") && t.contains("story 3") && !t.contains("story 1"),
            "{t}"
        );
        let r = items(&mut carol, "i2", &node, "<item id='i1'/>", "");
        let t = text(&r);
        assert!(t.contains("story 1") && !t.contains("story 2"), "{t}");
        // §7.1.2.3: the publisher, as in the notifications.
        assert!(t.contains("publisher='alice@localhost'"), "{t}");
        // Retraction is notified.
        ok(&iq(
            &mut alice,
            "r1",
            "set",
            PS,
            &format!("<retract node='{node}'><item id='i2'/></retract>"),
        ));
        let n = bob.expect("retract", |s| event(s, "items", &node));
        assert!(text(&n).contains("<retract id='i2'/>"), "{}", text(&n));
        // A subscriber may not publish to a publishers-only node.
        refused(
            &publish(&mut bob, "p9", &node, "x", "<x xmlns='urn:x'/>"),
            "forbidden",
            None,
        );
        // Subscribers may publish once the owner says so.
        let form = config(&[("publish_model", "subscribers")]);
        ok(&iq(
            &mut alice,
            "g2",
            "set",
            OWNER,
            &format!("<configure node='{node}'>{form}</configure>"),
        ));
        ok(&publish(
            &mut bob,
            "p10",
            &node,
            "b1",
            "<entry xmlns='urn:x:news'>by bob</entry>",
        ));
        // (carol's retract notification comes first.)
        let n = carol.expect("bob's item", |s| {
            event(s, "items", &node) && text(s).contains("<item ")
        });
        assert!(
            text(&n).contains("by bob") && text(&n).contains("publisher='bob@localhost'"),
            "{}",
            text(&n)
        );
        // An instant node, the default configuration, the service's disco.
        let r = iq(&mut alice, "c2", "set", PS, "<create/>");
        ok(&r);
        assert!(text(&r).contains("<create node='"), "{}", text(&r));
        let r = iq(&mut alice, "d1", "get", OWNER, "<default/>");
        assert!(text(&r).contains("pubsub#access_model"), "{}", text(&r));
        alice.send(&format!("<iq type='get' id='d2' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
        let r = alice.expect("info", |s| s.id().as_deref() == Some("d2"));
        assert!(
            text(&r).contains("category='pubsub'") && text(&r).contains("type='service'"),
            "{}",
            text(&r)
        );
        alice.send(&format!("<iq type='get' id='d3' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
        let r = alice.expect("items", |s| s.id().as_deref() == Some("d3"));
        assert!(text(&r).contains(&format!("node='{node}'")), "{}", text(&r));
        // A node's disco#info and disco#items (its item ids).
        alice.send(&format!("<iq type='get' id='d5' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"));
        let r = alice.expect("node info", |s| s.id().as_deref() == Some("d5"));
        assert!(
            text(&r).contains("type='leaf'") && text(&r).contains("The News"),
            "{}",
            text(&r)
        );
        // §5.4: the node's metadata form.
        assert!(
            text(&r).contains("<value>http://jabber.org/protocol/pubsub#meta-data</value>"),
            "{}",
            text(&r)
        );
        alice.send(&format!("<iq type='get' id='d6' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items' node='{node}'/></iq>"));
        let r = alice.expect("node items", |s| s.id().as_deref() == Some("d6"));
        assert!(
            text(&r).contains("name='i3'") && !text(&r).contains("name='i2'"),
            "{}",
            text(&r)
        );
        // The server lists the service.
        alice.send("<iq type='get' id='d4' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
        let r = alice.expect("server items", |s| s.id().as_deref() == Some("d4"));
        assert!(text(&r).contains(SERVICE), "{}", text(&r));
        // Purging is notified and empties the node.
        ok(&iq(
            &mut alice,
            "pg",
            "set",
            OWNER,
            &format!("<purge node='{node}'/>"),
        ));
        carol.expect("purge", |s| event(s, "purge", &node));
        let r = items(&mut carol, "i5", &node, "", "");
        assert!(!text(&r).contains("<item "), "{}", text(&r));
    }
}

#[test]
fn whitelist_authorize_affiliations_and_delete() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let node = "closed";
        ok(&create(
            &mut alice,
            "c1",
            node,
            &[("access_model", "whitelist")],
        ));
        refused(
            &subscribe(&mut bob, "s1", node, "bob@localhost/b"),
            "not-allowed",
            Some("closed-node"),
        );
        refused(
            &items(&mut bob, "i1", node, "", ""),
            "not-allowed",
            Some("closed-node"),
        );
        // The owner makes bob a member: now he may subscribe.
        ok(&iq(
            &mut alice,
            "a1",
            "set",
            OWNER,
            &format!("<affiliations node='{node}'><affiliation jid='bob@localhost' affiliation='member'/></affiliations>"),
        ));
        let r = iq(
            &mut alice,
            "a2",
            "get",
            OWNER,
            &format!("<affiliations node='{node}'/>"),
        );
        assert!(
            text(&r).contains("jid='bob@localhost' affiliation='member'")
                || text(&r).contains("affiliation='member' jid='bob@localhost'"),
            "{}",
            text(&r)
        );
        ok(&subscribe(&mut bob, "s2", node, "bob@localhost/b"));
        // His own subscriptions and affiliations, across nodes.
        let r = iq(&mut bob, "m1", "get", PS, "<subscriptions/>");
        assert!(text(&r).contains(&format!("node='{node}'")), "{}", text(&r));
        let r = iq(&mut bob, "m2", "get", PS, "<affiliations/>");
        assert!(text(&r).contains("affiliation='member'"), "{}", text(&r));

        // Authorize: pending until the owner approves through the §8.6 form.
        let auth = "moderated";
        ok(&create(
            &mut alice,
            "c2",
            auth,
            &[("access_model", "authorize")],
        ));
        let r = subscribe(&mut bob, "s3", auth, "bob@localhost/b");
        assert!(text(&r).contains("subscription='pending'"), "{}", text(&r));
        refused(
            &items(&mut bob, "i2", auth, "", ""),
            "not-authorized",
            Some("not-subscribed"),
        );
        let form = alice.expect("authorization form", |s| {
            s.name() == "message" && text(s).contains("pubsub#subscribe_authorization")
        });
        assert!(text(&form).contains("bob@localhost/b"), "{}", text(&form));
        alice.send(&format!(
            "<message to='{SERVICE}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{PS}#subscribe_authorization</value></field>\
             <field var='pubsub#node'><value>{auth}</value></field>\
             <field var='pubsub#subscriber_jid'><value>bob@localhost/b</value></field>\
             <field var='pubsub#allow'><value>true</value></field></x></message>"
        ));
        let n = bob.expect("approved", |s| event(s, "subscription", auth));
        assert!(
            text(&n).contains("subscription='subscribed'"),
            "{}",
            text(&n)
        );
        ok(&publish(
            &mut alice,
            "p1",
            auth,
            "x1",
            "<x xmlns='urn:x'>approved</x>",
        ));
        bob.expect("notification", |s| event(s, "items", auth));
        ok(&items(&mut bob, "i3", auth, "", ""));

        // Off the whitelist again: bob's subscription goes, and he is told.
        ok(&iq(
            &mut alice,
            "a3",
            "set",
            OWNER,
            &format!("<affiliations node='{node}'><affiliation jid='bob@localhost' affiliation='none'/></affiliations>"),
        ));
        let n = bob.expect("unsubscribed", |s| event(s, "subscription", node));
        assert!(text(&n).contains("subscription='none'"), "{}", text(&n));
        // A removed subscription names no subid (XEP-0060 §8.8.4).
        assert!(!text(&n).contains("subid"), "{}", text(&n));
        // Unsubscribing again: not subscribed, a `cancel` error (XEP-0060 §6.2.3.2).
        let r = iq(
            &mut bob,
            "u9",
            "set",
            PS,
            &format!("<unsubscribe node='{node}' jid='bob@localhost/b'/>"),
        );
        refused(&r, "unexpected-request", Some("not-subscribed"));
        assert!(text(&r).contains("<error type='cancel'>"), "{}", text(&r));
        let r = iq(
            &mut alice,
            "a4",
            "get",
            OWNER,
            &format!("<subscriptions node='{node}'/>"),
        );
        assert!(!text(&r).contains("bob@localhost"), "{}", text(&r));

        // Banned from a node he is subscribed to: the subscription goes, and he is told
        // (XEP-0060 §8.8.4).
        let open = "ban-me";
        ok(&create(&mut alice, "c9", open, &[]));
        ok(&subscribe(&mut bob, "s9", open, "bob@localhost/b"));
        ok(&iq(
            &mut alice,
            "a5",
            "set",
            OWNER,
            &format!("<affiliations node='{open}'><affiliation jid='bob@localhost' affiliation='outcast'/></affiliations>"),
        ));
        let n = bob.expect("banned", |s| event(s, "subscription", open));
        assert!(text(&n).contains("subscription='none'"), "{}", text(&n));

        // Deleting notifies the subscribers; the node is gone.
        ok(&iq(
            &mut alice,
            "del",
            "set",
            OWNER,
            &format!("<delete node='{auth}'/>"),
        ));
        bob.expect("deleted", |s| event(s, "delete", auth));
        refused(
            &items(&mut alice, "i4", auth, "", ""),
            "item-not-found",
            None,
        );
    }
}

#[test]
fn bad_input_and_limits_get_the_xep_errors() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        refused(
            &items(&mut alice, "e1", "nope", "", ""),
            "item-not-found",
            None,
        );
        refused(
            &subscribe(&mut alice, "e2", "nope", "alice@localhost/a"),
            "item-not-found",
            None,
        );
        ok(&create(&mut alice, "c1", "n", &[]));
        refused(&create(&mut alice, "e3", "n", &[]), "conflict", None);
        // A configuration that is not a node_config form, then a bad value.
        let r = iq(
            &mut alice,
            "e4",
            "set",
            OWNER,
            "<configure node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x></configure>",
        );
        refused(&r, "bad-request", None);
        let r = iq(
            &mut alice,
            "e5",
            "set",
            OWNER,
            &format!(
                "<configure node='n'>{}</configure>",
                config(&[("access_model", "everyone")])
            ),
        );
        refused(&r, "not-acceptable", None);
        refused(
            &create(&mut alice, "e6", "m", &[("max_items", "x")]),
            "not-acceptable",
            None,
        );
        // Someone else's node: no configuring, no deleting.
        refused(
            &iq(&mut bob, "e7", "get", OWNER, "<configure node='n'/>"),
            "forbidden",
            None,
        );
        refused(
            &iq(&mut bob, "e8", "set", OWNER, "<delete node='n'/>"),
            "forbidden",
            None,
        );
        // Subscribing another JID.
        refused(
            &subscribe(&mut bob, "e9", "n", "alice@localhost/a"),
            "bad-request",
            Some("invalid-jid"),
        );
        // A huge item.
        let big = format!("<x xmlns='urn:x'>{}</x>", "z".repeat(8000));
        refused(
            &publish(&mut alice, "e10", "n", "big", &big),
            "not-acceptable",
            Some("payload-too-big"),
        );
        // Nodes per user (6): one made, five more, then refused; publishing auto-creates too.
        for i in 0..4 {
            ok(&create(
                &mut alice,
                &format!("c{i}x"),
                &format!("more{i}"),
                &[],
            ));
        }
        ok(&publish(
            &mut alice,
            "auto",
            "auto",
            "a",
            "<x xmlns='urn:x'/>",
        ));
        refused(
            &create(&mut alice, "e11", "one-too-many", &[]),
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        // Deleting one frees a place.
        ok(&iq(
            &mut alice,
            "d1",
            "set",
            OWNER,
            "<delete node='more0'/>",
        ));
        ok(&create(&mut alice, "c9", "one-more", &[]));
        // Unknown payloads in the service's namespace.
        refused(
            &iq(&mut alice, "e12", "get", PS, "<bogus/>"),
            "bad-request",
            None,
        );
    }
}

#[test]
fn a_persistent_node_with_items_survives_a_restart() {
    for shards in [1, 2] {
        restart(shards, "");
    }
}

#[test]
fn a_persistent_node_with_items_survives_a_restart_on_postgres() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let store = format!(
        "[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 3\n",
        db.url
    );
    restart(2, &store);
}

/// Nodes, items, configuration and subscriptions written before a restart are there after it.
fn restart(shards: usize, store: &str) {
    {
        let mut server = start_on(shards, store);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        ok(&create(
            &mut alice,
            "c1",
            "kept",
            &[("max_items", "10"), ("title", "Kept")],
        ));
        ok(&subscribe(&mut bob, "s1", "kept", "bob@localhost/b"));
        ok(&publish(
            &mut alice,
            "p1",
            "kept",
            "k1",
            "<x xmlns='urn:x'>first</x>",
        ));
        ok(&publish(
            &mut alice,
            "p2",
            "kept",
            "k2",
            "<x xmlns='urn:x'>second</x>",
        ));
        // A round trip through the node after the publishes: its writes are queued before this.
        ok(&items(&mut alice, "i0", "kept", "", ""));
        drop(alice);
        drop(bob);
        server.stop();
        server.spawn(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let r = items(&mut bob, "i1", "kept", "", "");
        let t = text(&r);
        assert!(t.contains("first") && t.contains("second"), "{shards}: {t}");
        // Configuration, ownership and the subscription came back too.
        let mut alice = server.login("alice", "a", Some(0));
        let r = iq(&mut alice, "g1", "get", OWNER, "<configure node='kept'/>");
        assert!(text(&r).contains("Kept"), "{}", text(&r));
        ok(&publish(
            &mut alice,
            "p3",
            "kept",
            "k3",
            "<x xmlns='urn:x'>third</x>",
        ));
        let n = bob.expect("notification", |s| event(s, "items", "kept"));
        assert!(text(&n).contains("third"), "{}", text(&n));
    }
}

/// A node that keeps no items (`max_items` 0) still notifies its subscribers, and unsubscribing
/// somebody else is `forbidden` (XEP-0060 §6.2.3.3).
#[test]
fn a_notify_only_node_notifies_and_others_cannot_unsubscribe_you() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        ok(&create(
            &mut alice,
            "c1",
            "ticks",
            &[("max_items", "0"), ("access_model", "open")],
        ));
        ok(&subscribe(&mut bob, "s1", "ticks", "bob@localhost/b"));
        ok(&publish(
            &mut alice,
            "p1",
            "ticks",
            "t1",
            "<tick xmlns='urn:x:tick'>1</tick>",
        ));
        let n = bob.expect("notification", |s| event(s, "items", "ticks"));
        assert!(text(&n).contains("<item id='t1'"), "{shards}: {}", text(&n));
        let r = iq(
            &mut carol,
            "u1",
            "set",
            PS,
            "<unsubscribe node='ticks' jid='bob@localhost/b'/>",
        );
        refused(&r, "forbidden", None);
    }
}

/// The subid of `bob`'s subscription in the answer `r` to a subscribe.
fn subid_of(r: &Stanza) -> String {
    r.tree()
        .ok()
        .and_then(|t| {
            t.get_child("pubsub", PS)
                .and_then(|p| p.get_child("subscription", PS))
                .and_then(|s| s.attr("subid").map(str::to_owned))
        })
        .unwrap_or_else(|| panic!("no subid: {}", text(r)))
}

/// XEP-0060's errors for what a prober sent: the plain `<default/>` asks for subscription options
/// (§6.4.3), subscribing again while pending (§6.1.3.7), items and no items on a transient
/// notification-only node (§7.1.3.6), a subid that is not the requester's (§6.5.9.2).
#[test]
fn default_options_pending_resubscription_transient_publishes_and_subids() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));

        // §6.4: the default subscription options are not supported; the owner's default node
        // configuration (§8.3) still is.
        let r = iq(&mut bob, "d1", "get", PS, "<default/>");
        refused(&r, "feature-not-implemented", Some("unsupported"));
        assert!(
            text(&r).contains("feature='retrieve-default-sub'"),
            "{}",
            text(&r)
        );
        let r = iq(&mut alice, "d2", "get", OWNER, "<default/>");
        ok(&r);
        assert!(text(&r).contains("pubsub#node_config"), "{}", text(&r));

        // §6.1.3.7: subscribing again while the owner has not answered.
        ok(&create(
            &mut alice,
            "c1",
            "moderated",
            &[("access_model", "authorize")],
        ));
        let r = subscribe(&mut bob, "s1", "moderated", "bob@localhost/b");
        assert!(text(&r).contains("subscription='pending'"), "{}", text(&r));
        refused(
            &subscribe(&mut bob, "s2", "moderated", "bob@localhost/b"),
            "not-authorized",
            Some("pending-subscription"),
        );

        // §7.1.3.6: a transient notification-only node takes publishes without item, and
        // notifies them as `<items node=…/>`; an item is forbidden.
        let doorbell = "doorbell";
        ok(&create(
            &mut alice,
            "c2",
            doorbell,
            &[("persist_items", "0"), ("deliver_payloads", "0")],
        ));
        let r = subscribe(&mut bob, "s3", doorbell, "bob@localhost/b");
        ok(&r);
        let mine = subid_of(&r);
        refused(
            &publish(&mut alice, "p1", doorbell, "x", "<ring xmlns='urn:x'/>"),
            "bad-request",
            Some("item-forbidden"),
        );
        ok(&iq(
            &mut alice,
            "p2",
            "set",
            PS,
            &format!("<publish node='{doorbell}'/>"),
        ));
        let n = bob.expect("transient notification", |s| event(s, "items", doorbell));
        assert!(
            text(&n).contains(&format!("<items node='{doorbell}'/>")),
            "{}",
            text(&n)
        );
        // It keeps no items: none to retrieve, retract or purge (§6.5.9.5, §7.2.3.5, §8.5.3.4).
        let unsupported = |r: &Stanza| {
            refused(r, "feature-not-implemented", Some("unsupported"));
            assert!(
                text(r).contains("feature='persistent-items'"),
                "{}",
                text(r)
            );
        };
        unsupported(&items(&mut bob, "i9", doorbell, "", ""));
        let retract = format!("<retract node='{doorbell}'><item id='x'/></retract>");
        unsupported(&iq(&mut alice, "r9", "set", PS, &retract));
        let purge = format!("<purge node='{doorbell}'/>");
        unsupported(&iq(&mut alice, "g9", "set", OWNER, &purge));
        // A persistent node wants its item, and a publish without one makes no node.
        ok(&create(&mut alice, "c3", "kept", &[]));
        for (id, node) in [("p3", "kept"), ("p4", "never-made")] {
            refused(
                &iq(
                    &mut alice,
                    id,
                    "set",
                    PS,
                    &format!("<publish node='{node}'/>"),
                ),
                "bad-request",
                Some("item-required"),
            );
        }
        refused(
            &items(&mut alice, "i0", "never-made", "", ""),
            "item-not-found",
            None,
        );

        // §6.5.9.2: a subid that is not one of the requester's subscriptions; his own works.
        refused(
            &items(&mut bob, "i1", doorbell, "", " subid='bogus'"),
            "not-acceptable",
            Some("invalid-subid"),
        );
        // With its own subid, the request is valid, and the node keeps no items.
        refused(
            &items(&mut bob, "i2", doorbell, "", &format!(" subid='{mine}'")),
            "feature-not-implemented",
            Some("unsupported"),
        );
    }
}

/// An account removed (XEP-0077 `<remove/>`) takes its service nodes and memberships along: a
/// node it alone owned is deleted (its subscribers told), and another node forgets its
/// affiliation and subscription, so whoever registers the name next inherits none of them.
#[test]
fn a_removed_account_leaves_no_node_ownership_behind() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob", "carol"],
            "",
            "[modules.presence]\n[modules.pubsub]\n[modules.register]\n",
        );
        let mut alice = server.login("alice", "a", None);
        let mut carol = server.login("carol", "c", None);
        ok(&create(&mut carol, "c1", "carols", &[]));
        ok(&subscribe(&mut alice, "s1", "carols", "alice@localhost/a"));
        ok(&create(&mut alice, "c2", "alices", &[]));
        ok(&subscribe(&mut carol, "s2", "alices", "carol@localhost/c"));
        let r = iq(
            &mut alice,
            "a1",
            "set",
            OWNER,
            "<affiliations node='alices'><affiliation jid='carol@localhost' affiliation='publisher'/></affiliations>",
        );
        ok(&r);
        carol.send(
            "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        );
        let r = carol.expect("removal", |s| s.id().as_deref() == Some("rm"));
        ok(&r);
        // carol's node is gone, and its subscriber heard.
        alice.expect("delete notification", |s| event(s, "delete", "carols"));
        refused(
            &items(&mut alice, "i1", "carols", "", ""),
            "item-not-found",
            None,
        );
        // alice's node forgot carol (asked until it shows: the removal runs on every shard).
        let lists = |alice: &mut Client, n: u32| {
            let a = iq(
                alice,
                &format!("a{n}"),
                "get",
                OWNER,
                "<affiliations node='alices'/>",
            );
            let s = iq(
                alice,
                &format!("s{n}"),
                "get",
                OWNER,
                "<subscriptions node='alices'/>",
            );
            format!("{}{}", text(&a), text(&s))
        };
        let mut seen = lists(&mut alice, 10);
        for n in 11..60 {
            if !seen.contains("carol@localhost") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            seen = lists(&mut alice, n);
        }
        assert!(!seen.contains("carol@localhost"), "{seen}");
    }
}

/// XEP-0060 §4.1: a publish-only entity publishes and retracts its own items only (it retracted
/// anyone's), and the service names the affiliation features it supports with the XEP's names
/// (§8.9: `modify-affiliations`; it said `manage-affiliations`, which no XEP defines).
#[test]
fn publish_only_retracts_its_own_items_and_the_features_have_the_xeps_names() {
    let server = start(2);
    let mut alice = server.login("alice", "a", Some(0));
    let mut carol = server.login("carol", "c", Some(0));
    ok(&create(&mut alice, "c1", "po", &[("max_items", "10")]));
    ok(&publish(
        &mut alice,
        "p1",
        "po",
        "a1",
        "<x xmlns='urn:x'>from-alice</x>",
    ));
    ok(&iq(
        &mut alice,
        "f1",
        "set",
        OWNER,
        "<affiliations node='po'><affiliation jid='carol@localhost' affiliation='publish-only'/></affiliations>",
    ));
    ok(&publish(
        &mut carol,
        "p2",
        "po",
        "c1",
        "<x xmlns='urn:x'>from-carol</x>",
    ));
    let r = iq(
        &mut carol,
        "r1",
        "set",
        PS,
        "<retract node='po'><item id='a1'/></retract>",
    );
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("forbidden"),
        "{}",
        text(&r)
    );
    ok(&iq(
        &mut carol,
        "r2",
        "set",
        PS,
        "<retract node='po'><item id='c1'/></retract>",
    ));
    let r = items(&mut alice, "i1", "po", "", "");
    assert!(
        text(&r).contains("from-alice") && !text(&r).contains("from-carol"),
        "{}",
        text(&r)
    );
    alice.send(&format!(
        "<iq type='get' id='d1' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let d = text(&alice.expect("disco", |s| s.id().as_deref() == Some("d1")));
    for f in [
        "modify-affiliations",
        "member-affiliation",
        "outcast-affiliation",
        "publisher-affiliation",
        "publish-only-affiliation",
    ] {
        assert!(d.contains(&format!("{PS}#{f}'")), "{f}: {d}");
    }
    assert!(!d.contains("manage-affiliations"), "{d}");
}
