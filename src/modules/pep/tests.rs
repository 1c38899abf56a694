//! PEP on a cluster of shards without sockets: publish, notifications to the owner's resources,
//! access models, limits, persistence, disco.

use crate::modules::caps;
use crate::modules::testing::{error_condition, error_type, User, World, HOST};
use crate::shard::ConnMsg;
use crate::xml::Stanza;

const MODULES: &str = "[modules.roster]\n[modules.presence]\n[modules.disco]\n[modules.caps]\n\
                       [modules.pep]\nmax_item_bytes = 2048\nmax_nodes_per_user = 3\n";
const PS: &str = "http://jabber.org/protocol/pubsub";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

fn world(shards: usize) -> World {
    World::new(shards, MODULES)
}

fn drain(u: &User) -> Vec<Stanza> {
    let mut out = Vec::new();
    while let Some(m) = u.mb.pop() {
        if let ConnMsg::Deliver(acc) = m {
            out.push(acc.into_stanza());
        }
    }
    out
}

/// Sends an IQ and returns its answer (other stanzas delivered meanwhile are dropped).
fn ask(w: &mut World, u: &mut User, xml: &str) -> Stanza {
    w.send(u, xml);
    drain(u)
        .into_iter()
        .find(|s| s.name() == "iq" && matches!(s.type_().as_deref(), Some("result" | "error")))
        .unwrap_or_else(|| panic!("no answer to {xml}"))
}

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// The sender's own items of `node`.
fn get_items(w: &mut World, u: &mut User, node: &str) -> Stanza {
    ask(
        w,
        u,
        &format!("<iq type='get' id='g'><pubsub xmlns='{PS}'><items node='{node}'/></pubsub></iq>"),
    )
}

fn publish(node: &str, id: &str, payload: &str, options: &str) -> String {
    format!(
        "<iq type='set' id='p1'><pubsub xmlns='{PS}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{options}</pubsub></iq>"
    )
}

/// Asserts `r` is an error with condition `cond` and, when given, pubsub condition `app`.
fn refused(r: &Stanza, cond: &str, app: Option<&str>) {
    assert_eq!(error_condition(r).as_deref(), Some(cond), "{}", text(r));
    if app.is_some() {
        assert_eq!(app_error(r).as_deref(), app, "{}", text(r));
    }
}

fn app_error(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", crate::xmpp::ns::CLIENT)?;
    let app = e.child_elements().find(|c| c.ns == ERRORS)?;
    Some(app.name.clone())
}

fn subscribe_one_way(w: &mut World, x: &mut User, xn: &str, y: &mut User, yn: &str) {
    w.send(x, &format!("<presence to='{yn}@{HOST}' type='subscribe'/>"));
    w.send(
        y,
        &format!("<presence to='{xn}@{HOST}' type='subscribed'/>"),
    );
}

fn subscribe_both(w: &mut World, a: &mut User, an: &str, b: &mut User, bn: &str) {
    subscribe_one_way(w, a, an, b, bn);
    subscribe_one_way(w, b, bn, a, an);
    drain(a);
    drain(b);
}

/// `shards` shards where alice (on the first) and bob (on the last) have a mutual subscription and
/// alice has published `text` on `urn:x:p`.
fn contacts_with_a_node(shards: usize, text: &str) -> (World, User, User) {
    let mut w = world(shards);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(shards - 1, &format!("bob@{HOST}/b"), Some(0));
    subscribe_both(&mut w, &mut alice, "alice", &mut bob, "bob");
    let item = format!("<x xmlns='urn:x:p'>{text}</x>");
    ask(&mut w, &mut alice, &publish("urn:x:p", "1", &item, ""));
    (w, alice, bob)
}

#[test]
fn publish_notifies_own_resources_and_items_are_read_back() {
    for shards in [1, 2] {
        let mut w = world(shards);
        let mut phone = w.connect(0, &format!("alice@{HOST}/phone"), Some(0));
        let mut pc = w.connect(shards - 1, &format!("alice@{HOST}/pc"), Some(0));
        drain(&phone);
        drain(&pc);
        let r = ask(
            &mut w,
            &mut phone,
            &publish(
                "urn:x:nick",
                "current",
                "<nick xmlns='urn:x:nick'>Al</nick>",
                "",
            ),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
        assert!(text(&r).contains("<item id='current'/>"), "{}", text(&r));
        let got: Vec<String> = drain(&pc).iter().map(text).collect();
        assert!(
            got.iter()
                .any(|m| m.contains("http://jabber.org/protocol/pubsub#event")
                    && m.contains("<nick xmlns='urn:x:nick'>Al</nick>")),
            "{shards}: {got:?}"
        );
        let r = ask(&mut w, &mut pc, &format!("<iq type='get' id='i'><pubsub xmlns='{PS}'><items node='urn:x:nick'/></pubsub></iq>"));
        assert!(
            text(&r).contains("<item id='current' publisher='alice@example.com'><nick xmlns='urn:x:nick'>Al</nick></item>"),
            "{}",
            text(&r)
        );
        // Stored (persist_items is on by default).
        let stored = w
            .store()
            .pubsub_load(&format!("alice@{HOST}"))
            .unwrap_or_default();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].items.len(), 1);
        // disco: the account is a PEP service and lists its node to its owner.
        let r = ask(
            &mut w,
            &mut pc,
            "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        );
        assert!(
            text(&r).contains("<identity category='pubsub' type='pep'/>"),
            "{}",
            text(&r)
        );
        assert!(text(&r).contains("http://jabber.org/protocol/pubsub#publish-options"));
        let r = ask(
            &mut w,
            &mut pc,
            "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        );
        assert!(text(&r).contains("node='urn:x:nick'"), "{}", text(&r));
    }
}

#[test]
fn refusals_carry_the_pubsub_conditions() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    // Publishing to another user's PEP service.
    let to_alice = publish("urn:n", "1", "<x xmlns='urn:n'/>", "")
        .replace("<iq ", &format!("<iq to='alice@{HOST}' "));
    let r = ask(&mut w, &mut bob, &to_alice);
    refused(&r, "forbidden", None);
    // A huge item.
    let big = format!("<x xmlns='urn:n'>{}</x>", "a".repeat(4000));
    let r = ask(&mut w, &mut alice, &publish("urn:n", "1", &big, ""));
    refused(&r, "not-acceptable", Some("payload-too-big"));
    // Presence access: bob has no subscription.
    ask(
        &mut w,
        &mut alice,
        &publish("urn:n", "1", "<x xmlns='urn:n'/>", ""),
    );
    let get = format!("<iq type='get' id='g' to='alice@{HOST}'><pubsub xmlns='{PS}'><items node='urn:n'/></pubsub></iq>");
    let r = ask(&mut w, &mut bob, &get);
    refused(&r, "not-authorized", Some("presence-subscription-required"));
    // A precondition that does not hold on the existing node.
    let opts = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
    let r = ask(
        &mut w,
        &mut alice,
        &publish("urn:n", "2", "<x xmlns='urn:n'/>", opts),
    );
    refused(&r, "conflict", Some("precondition-not-met"));
    // The same options create an open node, which bob may read.
    let r = ask(
        &mut w,
        &mut alice,
        &publish(
            "urn:open",
            "1",
            "<x xmlns='urn:open'/>",
            &opts.replace("urn:n", "urn:open"),
        ),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = ask(&mut w, &mut bob, &get.replace("urn:n", "urn:open"));
    assert!(text(&r).contains("<item id='1' publisher="), "{}", text(&r));
    // Nodes per user.
    ask(
        &mut w,
        &mut alice,
        &publish("urn:3", "1", "<x xmlns='urn:3'/>", ""),
    );
    let r = ask(
        &mut w,
        &mut alice,
        &publish("urn:4", "1", "<x xmlns='urn:4'/>", ""),
    );
    refused(&r, "not-allowed", Some("max-nodes-exceeded"));
    // Malformed: no item.
    let r = ask(
        &mut w,
        &mut alice,
        &format!(
            "<iq type='set' id='m'><pubsub xmlns='{PS}'><publish node='urn:n'/></pubsub></iq>"
        ),
    );
    refused(&r, "bad-request", Some("item-required"));
}

#[test]
fn contacts_read_under_presence_and_owner_manages_the_node() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    ask(
        &mut w,
        &mut alice,
        &publish("urn:n", "1", "<x xmlns='urn:n'/>", ""),
    );
    subscribe_both(&mut w, &mut alice, "alice", &mut bob, "bob");
    let get = format!("<iq type='get' id='g' to='alice@{HOST}'><pubsub xmlns='{PS}'><items node='urn:n'/></pubsub></iq>");
    let r = ask(&mut w, &mut bob, &get);
    assert!(text(&r).contains("<item id='1' publisher="), "{}", text(&r));
    // Retract: the owner's resource is told.
    drain(&alice);
    w.send(&mut alice, &format!("<iq type='set' id='r'><pubsub xmlns='{PS}'><retract node='urn:n' notify='true'><item id='1'/></retract></pubsub></iq>"));
    let got: Vec<String> = drain(&alice).iter().map(text).collect();
    assert!(
        got.iter().any(|m| m.contains("<retract id='1'/>")),
        "{got:?}"
    );
    assert!(got.iter().any(|m| m.contains("type='result'")), "{got:?}");
    // Configure: read the form, switch to whitelist; bob is then refused.
    let r = ask(&mut w, &mut alice, "<iq type='get' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:n'/></pubsub></iq>");
    assert!(text(&r).contains("pubsub#access_model"), "{}", text(&r));
    let r = ask(&mut w, &mut alice, "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = ask(&mut w, &mut bob, &get);
    refused(&r, "not-allowed", Some("closed-node"));
    // Delete: gone from the store too.
    let r = ask(&mut w, &mut alice, "<iq type='set' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:n'/></pubsub></iq>");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    assert!(w
        .store()
        .pubsub_load(&format!("alice@{HOST}"))
        .unwrap_or_default()
        .is_empty());
    let r = ask(&mut w, &mut bob, &get);
    refused(&r, "item-not-found", None);
}

#[test]
fn a_resource_coming_online_gets_the_last_items() {
    let mut w = world(2);
    let mut a = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    ask(
        &mut w,
        &mut a,
        &publish("urn:n", "1", "<x xmlns='urn:n'>hello</x>", ""),
    );
    let b = w.connect(1, &format!("alice@{HOST}/b"), Some(0));
    let got: Vec<String> = drain(&b).iter().map(text).collect();
    assert!(
        got.iter()
            .any(|m| m.contains("pubsub#event") && m.contains("hello")),
        "{got:?}"
    );
}

/// Sends `u`'s available presence (to `to`, or its broadcast) with caps standing for `features`
/// and answers the server's disco#info query if it asks (caps module); returns the other stanzas
/// delivered meanwhile.
fn announce(w: &mut World, u: &mut User, features: &[&str], to: Option<&str>) -> Vec<Stanza> {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    let ver = caps_ver(features);
    w.send(u, &format!("<presence{to}><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{ver}'/></presence>"));
    let mut others = Vec::new();
    for s in drain(u) {
        let query = s.tree().ok().filter(|t| {
            t.attr("type") == Some("get")
                && t.get_child("query", DISCO_INFO)
                    .is_some_and(|q| q.attr("node") == Some(&format!("n#{ver}")))
        });
        let Some(iq) = query else {
            others.push(s);
            continue;
        };
        let body: String = features
            .iter()
            .map(|f| format!("<feature var='{f}'/>"))
            .collect();
        w.send(u, &format!("<iq type='result' id='{}' to='{HOST}'><query xmlns='{DISCO_INFO}' node='n#{ver}'><identity category='client' type='pc' name='t'/>{body}</query></iq>", iq.attr("id").unwrap_or_default()));
        others.extend(drain(u));
    }
    others
}

/// The caps `ver` of a client with `features`.
fn caps_ver(features: &[&str]) -> String {
    let info = caps::CapsInfo {
        identities: vec![caps::Identity {
            category: "client".into(),
            type_: "pc".into(),
            lang: String::new(),
            name: "t".into(),
        }],
        features: features.iter().map(|f| f.to_string()).collect(),
        forms: Vec::new(),
    };
    caps::ver::ver(&info, "sha-1").unwrap_or_default()
}

fn events(u: &User, node: &str) -> Vec<String> {
    let marker = format!("<items node='{node}'>");
    drain(u)
        .iter()
        .map(text)
        .filter(|m| m.contains("pubsub#event") && m.contains(&marker))
        .collect()
}

#[test]
fn contacts_wanting_the_node_are_notified_per_access_model() {
    for shards in [1, 2] {
        let mut w = world(shards);
        let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
        let mut bob = w.connect(shards - 1, &format!("bob@{HOST}/b"), Some(0));
        let mut carol = w.connect(shards - 1, &format!("carol@{HOST}/c"), Some(0));
        subscribe_both(&mut w, &mut alice, "alice", &mut bob, "bob");
        let v1 = ["urn:x:p+notify", "urn:x:o+notify"];
        announce(&mut w, &mut bob, &v1, None);
        // Carol is no contact: her directed presence reaches alice.
        announce(&mut w, &mut carol, &v1, Some(&format!("alice@{HOST}")));
        drain(&bob);
        drain(&carol);
        ask(
            &mut w,
            &mut alice,
            &publish("urn:x:p", "1", "<x xmlns='urn:x:p'>contacts</x>", ""),
        );
        let open = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
        ask(
            &mut w,
            &mut alice,
            &publish("urn:x:o", "1", "<x xmlns='urn:x:o'>all</x>", open),
        );
        let got: Vec<String> = drain(&bob).iter().map(text).collect();
        assert!(
            got.iter().any(|m| m.contains("contacts")),
            "{shards}: {got:?}"
        );
        assert!(got.iter().any(|m| m.contains(">all<")), "{shards}: {got:?}");
        let got: Vec<String> = drain(&carol).iter().map(text).collect();
        assert!(got.iter().any(|m| m.contains(">all<")), "{shards}: {got:?}");
        assert!(
            !got.iter().any(|m| m.contains("contacts")),
            "{shards}: {got:?}"
        );
        // Caps without +notify for the node: nothing.
        announce(&mut w, &mut bob, &["urn:x:o+notify"], None);
        ask(
            &mut w,
            &mut alice,
            &publish("urn:x:p", "2", "<x xmlns='urn:x:p'>again</x>", ""),
        );
        assert!(events(&bob, "urn:x:p").is_empty());
        // Back to the first caps: changed, the last items come.
        let last: Vec<String> = announce(&mut w, &mut bob, &v1, None)
            .iter()
            .map(text)
            .filter(|m| m.contains("pubsub#event") && m.contains("<items node='urn:x:p'>"))
            .collect();
        assert!(
            last.iter().any(|m| m.contains("again")),
            "{shards}: {last:?}"
        );
        // Unavailable: no more notifications.
        w.send(
            &mut carol,
            &format!("<presence type='unavailable' to='alice@{HOST}'/>"),
        );
        drain(&carol);
        ask(
            &mut w,
            &mut alice,
            &publish("urn:x:o", "2", "<x xmlns='urn:x:o'>later</x>", ""),
        );
        assert!(events(&carol, "urn:x:o").is_empty());
        assert_eq!(events(&bob, "urn:x:o").len(), 1);
    }
}

#[test]
fn subscribing_explicitly_sends_the_last_item() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    let open = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "1", "<x xmlns='urn:x:o'>hi</x>", open),
    );
    w.send(&mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='bob@{HOST}/b'/></pubsub></iq>"));
    let got: Vec<String> = drain(&bob).iter().map(text).collect();
    assert!(
        got.iter().any(|m| m.contains("subscription='subscribed'")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.contains("pubsub#event") && m.contains(">hi<")),
        "{got:?}"
    );
    // Subscribed: later items come without caps.
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "2", "<x xmlns='urn:x:o'>next</x>", ""),
    );
    assert_eq!(events(&bob, "urn:x:o").len(), 1);
    // Someone else's JID: refused.
    let r = ask(&mut w, &mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='carol@{HOST}'/></pubsub></iq>"));
    refused(&r, "bad-request", Some("invalid-jid"));
    // A resource of bob's that is not the sender: refused too.
    let r = ask(&mut w, &mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='bob@{HOST}/other'/></pubsub></iq>"));
    refused(&r, "bad-request", Some("invalid-jid"));
}

#[test]
fn one_user_holds_a_bounded_number_of_subscriptions_per_node() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let open = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "1", "<x xmlns='urn:x:o'>hi</x>", open),
    );
    let sub = |j: &str| {
        format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='{j}'/></pubsub></iq>")
    };
    let max = super::handle::MAX_SUBS_PER_USER;
    for i in 0..=max {
        let jid = format!("bob@{HOST}/r{i}");
        let mut bob = w.connect(i % 2, &jid, Some(0));
        let r = ask(&mut w, &mut bob, &sub(&jid));
        if i < max {
            assert_eq!(r.type_().as_deref(), Some("result"), "{i}: {}", text(&r));
            // Subscribing again is no new subscription.
            let r = ask(&mut w, &mut bob, &sub(&jid));
            assert_eq!(r.type_().as_deref(), Some("result"), "{i}: {}", text(&r));
        } else {
            refused(&r, "not-allowed", Some("too-many-subscriptions"));
        }
    }
}

#[test]
fn a_contact_gaining_a_subscription_gets_the_last_items() {
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), Some(0));
    announce(&mut w, &mut bob, &["urn:x:p+notify"], None);
    // Alice sees bob's presence, bob has no subscription to alice yet.
    subscribe_one_way(&mut w, &mut alice, "alice", &mut bob, "bob");
    drain(&bob);
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:p", "1", "<x xmlns='urn:x:p'>hi</x>", ""),
    );
    assert!(events(&bob, "urn:x:p").is_empty());
    subscribe_one_way(&mut w, &mut bob, "bob", &mut alice, "alice");
    let got = events(&bob, "urn:x:p");
    assert!(got.iter().any(|m| m.contains(">hi<")), "{got:?}");
}

#[test]
fn a_deleted_account_starts_without_its_old_nodes() {
    let mut w = world(2);
    let mut a = w.connect(1, &format!("alice@{HOST}/a"), Some(0));
    ask(
        &mut w,
        &mut a,
        &publish("urn:n", "1", "<x xmlns='urn:n'>old</x>", ""),
    );
    let alice =
        crate::jid::BareJid::parse(&format!("alice@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
    w.store()
        .pubsub_load(alice.as_str())
        .map(|n| assert_eq!(n.len(), 1))
        .unwrap_or_else(|e| panic!("{e}"));
    // What an account deletion does: the rows go, the session ends.
    let sref = a.sess.session;
    crate::sm::unregister(&mut w.cluster.shards[1], a.sess.jid.clone(), sref);
    w.cluster.pump();
    w.store()
        .pubsub_node_delete(alice.as_str(), "urn:n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut a = w.connect(0, &format!("alice@{HOST}/b"), Some(0));
    let r = get_items(&mut w, &mut a, "urn:n");
    refused(&r, "item-not-found", None);
}

#[test]
fn a_contact_coming_online_gets_the_last_items_of_an_offline_owner() {
    for shards in [1, 2] {
        let (mut w, mut alice, mut bob) = contacts_with_a_node(shards, "hi");
        w.send(&mut alice, "<presence type='unavailable'/>");
        w.send(&mut bob, "<presence type='unavailable'/>");
        drain(&bob);
        // Bob's client comes back (XEP-0163 §4.3.2: his available presence reaches alice's
        // account, offline or not), with caps the server learns now, then with known ones.
        let hi = |got: Vec<Stanza>| {
            got.iter().map(text).any(|m| {
                m.contains("pubsub#event")
                    && m.contains("<items node='urn:x:p'>")
                    && m.contains(">hi<")
            })
        };
        let got = announce(&mut w, &mut bob, &["urn:x:p+notify", "urn:x:new"], None);
        assert!(hi(got), "{shards}: unknown caps");
        let mut phone = w.connect(0, &format!("bob@{HOST}/phone"), Some(0));
        drain(&phone);
        let got = announce(&mut w, &mut phone, &["urn:x:p+notify", "urn:x:new"], None);
        assert!(hi(got), "{shards}: known caps");
    }
}

#[test]
fn subscribers_who_may_no_longer_read_are_not_notified() {
    let (mut w, mut alice, mut bob) = contacts_with_a_node(2, "one");
    let r = ask(&mut w, &mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:p' jid='bob@{HOST}/b'/></pubsub></iq>"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    // Alice cancels bob's presence subscription: the presence access model shuts him out.
    w.send(
        &mut alice,
        &format!("<presence to='bob@{HOST}' type='unsubscribed'/>"),
    );
    drain(&bob);
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:p", "2", "<x xmlns='urn:x:p'>two</x>", ""),
    );
    assert!(events(&bob, "urn:x:p").is_empty());
    // An open node turned whitelist: the subscription goes.
    let open = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "1", "<x xmlns='urn:x:o'>hi</x>", open),
    );
    let r = ask(&mut w, &mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='bob@{HOST}'/></pubsub></iq>"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = ask(&mut w, &mut alice, "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:x:o'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = ask(&mut w, &mut alice, "<iq type='get' id='o'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='urn:x:o'/></pubsub></iq>");
    assert!(!text(&r).contains("bob@"), "{}", text(&r));
    drain(&bob);
    ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "2", "<x xmlns='urn:x:o'>two</x>", ""),
    );
    assert!(events(&bob, "urn:x:o").is_empty());
}

/// Ends `u`'s session (its state is dropped with the last one).
fn logout(w: &mut World, u: &User) {
    let shard = &mut w.cluster.shards[u.on];
    crate::sm::unregister(shard, u.sess.jid.clone(), u.sess.session);
    // What the hooks queued, as the shard's loop does after each event.
    shard.drain_to_route();
    w.cluster.pump();
}

/// The PEP state of the shard `user` is homed on.
fn home_of<'a>(w: &'a World, user: &str) -> &'a super::state::Home {
    let at = crate::shard::home_shard_of(user, w.cluster.shards.len());
    w.cluster.shards[at.0 as usize]
        .ext
        .get::<super::state::Home>()
        .unwrap_or_else(|| panic!("pep not started"))
}

#[test]
fn presence_to_strangers_and_made_up_accounts_is_not_recorded() {
    for shards in [1, 2] {
        let mut w = world(shards);
        let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
        let mut carol = w.connect(shards - 1, &format!("carol@{HOST}/c"), Some(0));
        ask(
            &mut w,
            &mut alice,
            &publish("urn:x:p", "1", "<x xmlns='urn:x:p'>hi</x>", ""),
        );
        w.send(&mut alice, "<presence type='unavailable'/>");
        logout(&mut w, &alice);
        for i in 0..50 {
            w.send(&mut carol, &format!("<presence to='rand{i}@{HOST}'/>"));
        }
        // Alice exists, has nodes and is offline, but carol is no contact of hers.
        w.send(&mut carol, &format!("<presence to='alice@{HOST}'/>"));
        for i in 0..50 {
            let user = format!("rand{i}@{HOST}");
            let home = home_of(&w, &user);
            assert!(!home.presences.contains_key(&user), "{shards}: {user}");
            assert!(home.loaded(&user).is_none(), "{shards}: {user}");
        }
        let alice_bare = format!("alice@{HOST}");
        assert!(
            !home_of(&w, &alice_bare).presences.contains_key(&alice_bare),
            "{shards}"
        );
    }
}

#[test]
fn last_items_owed_during_a_load_reach_every_resource() {
    let (mut w, mut alice, mut bob) = contacts_with_a_node(1, "hi");
    let features = ["urn:x:p+notify"];
    announce(&mut w, &mut bob, &features, None);
    // Alice goes offline (her state is dropped); more of bob's resources come online than
    // requests may wait for a load, all before the load of alice's state completes.
    w.send(&mut alice, "<presence type='unavailable'/>");
    logout(&mut w, &alice);
    let ver = caps_ver(&features);
    let mut resources: Vec<User> = (0..100)
        .map(|i| w.connect(0, &format!("bob@{HOST}/r{i}"), None))
        .collect();
    for r in &mut resources {
        drain(r);
        let p = format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{ver}'/></presence>");
        let p = Stanza::parse(p.into_bytes()).unwrap_or_else(|e| panic!("{e}"));
        crate::c2s::route::user_send(&mut w.cluster.shards[0], &mut r.sess, p);
    }
    w.cluster.pump();
    for (i, r) in resources.iter().enumerate() {
        let got = events(r, "urn:x:p");
        assert_eq!(got.len(), 1, "r{i}: {got:?}");
    }
}

#[test]
fn a_deleted_account_leaves_no_state_on_its_home_shard() {
    for shards in [1, 2] {
        let (mut w, mut alice, mut bob) = contacts_with_a_node(shards, "old");
        w.send(&mut alice, "<presence type='unavailable'/>");
        logout(&mut w, &alice);
        // Bob's presence reaches offline alice: her state is loaded for it.
        w.send(&mut bob, "<presence/>");
        let user = format!("alice@{HOST}");
        assert!(home_of(&w, &user).loaded(&user).is_some(), "{shards}");
        // The deletion, run on bob's shard (as the admin API may be).
        let jid = crate::jid::BareJid::parse(&user).unwrap_or_else(|e| panic!("{e}"));
        // (Test sessions have no account row: the store's part of a removal is its PEP rows.)
        w.store()
            .pubsub_node_delete(jid.as_str(), "urn:x:p")
            .unwrap_or_else(|e| panic!("{e}"));
        crate::modules::register::account_removed(&mut w.cluster.shards[shards - 1], jid, vec![]);
        w.cluster.pump();
        let home = home_of(&w, &user);
        assert!(home.loaded(&user).is_none(), "{shards}");
        assert!(!home.presences.contains_key(&user), "{shards}");
        // Registered again, the account starts without the old node.
        let mut a = w.connect(0, &format!("alice@{HOST}/b"), Some(0));
        let r = ask(
            &mut w,
            &mut a,
            &format!(
                "<iq type='get' id='g'><pubsub xmlns='{PS}'><items node='urn:x:p'/></pubsub></iq>"
            ),
        );
        refused(&r, "item-not-found", None);
    }
}

#[test]
fn a_user_s_items_are_bounded_in_bytes() {
    let mut w = World::new(
        1,
        &MODULES.replace(
            "[modules.pep]\n",
            "[modules.pep]\nmax_bytes_per_user = 4096\n",
        ),
    );
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    // 1500 payload bytes to `node`.
    let put = |w: &mut World, u: &mut User, node: &str, id: &str| {
        let item = format!("<x xmlns='{node}'>{}</x>", "a".repeat(1500));
        ask(w, u, &publish(node, id, &item, ""))
    };
    for n in ["urn:a", "urn:b"] {
        let r = put(&mut w, &mut alice, n, "1");
        assert_eq!(r.type_().as_deref(), Some("result"), "{n}: {}", text(&r));
    }
    // A third node would take alice past 4096 bytes: refused, and the node is not created.
    let r = put(&mut w, &mut alice, "urn:c", "1");
    refused(&r, "not-acceptable", Some("payload-too-big"));
    let r = get_items(&mut w, &mut alice, "urn:c");
    refused(&r, "item-not-found", None);
    // Replacing an item (one kept per node) does not grow the total.
    let r = put(&mut w, &mut alice, "urn:a", "2");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    // Two items kept in a node: the second would go past the budget, the first stays.
    let r = ask(&mut w, &mut alice, "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:b'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items'><value>2</value></field></x></configure></pubsub></iq>");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = put(&mut w, &mut alice, "urn:b", "2");
    refused(&r, "not-acceptable", Some("payload-too-big"));
    let r = get_items(&mut w, &mut alice, "urn:b");
    assert!(text(&r).contains("<item id='1' publisher="), "{}", text(&r));
    assert!(!text(&r).contains("<item id='2' "), "{}", text(&r));
}

#[test]
fn users_with_sessions_are_never_refused_for_a_full_cache() {
    let mut w = World::new(
        1,
        &MODULES.replace("[modules.pep]\n", "[modules.pep]\ncache_users = 1\n"),
    );
    for name in ["alice", "bob", "carol"] {
        let mut u = w.connect(0, &format!("{name}@{HOST}/r"), Some(0));
        let r = ask(
            &mut w,
            &mut u,
            &publish("urn:n", "1", "<x xmlns='urn:n'/>", ""),
        );
        assert_eq!(r.type_().as_deref(), Some("result"), "{name}: {}", text(&r));
    }
}

/// Sends `xml` from `u` without routing what follows (see [`pump_slow`]).
fn send_only(w: &mut World, u: &mut User, xml: &str) {
    let s = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    crate::c2s::route::user_send(&mut w.cluster.shards[u.on], &mut u.sess, s);
}

/// Routes everything queued, as `Cluster::pump` does, the store running each job at once; but the
/// answers to the jobs queued on shard `slow` wait in `held`, in order: a shard busy elsewhere
/// whose store answers queue up while the store and the other shards go on.
fn pump_slow(w: &mut World, slow: usize, held: &mut Vec<crate::hooks::JobDone>) {
    let c = &mut w.cluster;
    let Some(store) = &c.store else {
        panic!("no store")
    };
    loop {
        let mut moved = false;
        for i in 0..c.shards.len() {
            for (to, msg) in c.shards[i].take_outgoing() {
                moved = true;
                c.shards[to.index()].handle_msg(msg);
            }
            for job in c.shards[i].take_jobs() {
                moved = true;
                let done = (job.run)(store);
                if i == slow {
                    held.push(done);
                } else {
                    c.shards[i].job_done(done);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// The `subscription` of the roster pushes among `got`, in order.
fn pushed_subscriptions(got: &[Stanza]) -> Vec<String> {
    got.iter()
        .filter_map(|s| {
            let t = s.tree().ok()?;
            let item = t
                .get_child("query", crate::xmpp::ns::ROSTER)?
                .get_child("item", crate::xmpp::ns::ROSTER)?;
            Some(item.attr("subscription").unwrap_or("none").to_owned())
        })
        .collect()
}

#[test]
fn roster_changes_reach_the_owner_in_store_order_when_her_home_shard_lags() {
    // Alice's home shard is slow to take its store answers; her session and bob (homed there too)
    // are on the other shard. Bob approves her request first (her roster says `to`, an answer that
    // waits on her home shard), then she approves his (`both`). The newer `both` must win, in her
    // client's roster and in PEP's view of who may see her presence-model nodes (loadtest smoke:
    // a few contacts of 20 never got the publisher's notifications).
    let mut w = world(2);
    let home = crate::shard::home_shard_of(&format!("alice@{HOST}"), 2).index();
    let other = 1 - home;
    let contact = ["bob", "carol", "dave", "erin", "frank", "grace"]
        .into_iter()
        .find(|n| crate::shard::home_shard_of(&format!("{n}@{HOST}"), 2).index() == other)
        .unwrap_or_else(|| panic!("none of six names homed on shard {other}"));
    let mut alice = w.connect(other, &format!("alice@{HOST}/a"), Some(0));
    let mut bob = w.connect(other, &format!("{contact}@{HOST}/b"), Some(0));
    announce(&mut w, &mut bob, &["urn:x:p+notify"], None);
    let r = ask(
        &mut w,
        &mut alice,
        &publish("urn:x:p", "1", "<x xmlns='urn:x:p'>hi</x>", ""),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    w.send(
        &mut alice,
        &format!("<presence to='{contact}@{HOST}' type='subscribe'/>"),
    );
    w.send(
        &mut bob,
        &format!("<presence to='alice@{HOST}' type='subscribe'/>"),
    );
    drain(&alice);
    drain(&bob);

    let mut held = Vec::new();
    send_only(
        &mut w,
        &mut bob,
        &format!("<presence to='alice@{HOST}' type='subscribed'/>"),
    );
    pump_slow(&mut w, home, &mut held);
    assert!(!held.is_empty(), "alice's roster change answered elsewhere");
    send_only(
        &mut w,
        &mut alice,
        &format!("<presence to='{contact}@{HOST}' type='subscribed'/>"),
    );
    pump_slow(&mut w, home, &mut held);
    for done in held {
        w.cluster.shards[home].job_done(done);
    }
    w.cluster.pump();

    let subs = pushed_subscriptions(&drain(&alice));
    drain(&bob);
    let r = ask(
        &mut w,
        &mut alice,
        &publish("urn:x:p", "2", "<x xmlns='urn:x:p'>again</x>", ""),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let got = events(&bob, "urn:x:p");
    assert!(
        got.iter().any(|m| m.contains(">again<")),
        "{got:?} (pushes {subs:?})"
    );
    assert_eq!(subs.last().map(String::as_str), Some("both"), "{subs:?}");
}

#[test]
fn a_publish_the_store_cannot_keep_is_answered_wait_not_result() {
    for shards in [1, 2] {
        let mut w = world(shards);
        let mut alice = w.connect(shards - 1, &format!("alice@{HOST}/a"), Some(0));
        let ok = ask(
            &mut w,
            &mut alice,
            &publish("kept", "i1", "<x xmlns='t'/>", ""),
        );
        assert_eq!(ok.type_().as_deref(), Some("result"), "{}", text(&ok));
        // The answer waited for the write: the item is in the store.
        let store = w
            .cluster
            .store
            .as_ref()
            .unwrap_or_else(|| panic!("no store"));
        let node = store
            .pubsub_load_node(&format!("alice@{HOST}"), "kept")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("node not stored"));
        assert_eq!(node.items.len(), 1);
        w.break_table("pubsub_item");
        let r = ask(
            &mut w,
            &mut alice,
            &publish("kept", "i2", "<x xmlns='t'/>", ""),
        );
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("internal-server-error"),
            "{}",
            text(&r)
        );
        assert_eq!(error_type(&r).as_deref(), Some("wait"), "{}", text(&r));
        // The store is back: what was refused is not served from memory either.
        w.heal_table("pubsub_item");
        let items = text(&get_items(&mut w, &mut alice, "kept"));
        assert!(items.contains("i1") && !items.contains("i2"), "{items}");
    }
}

/// XEP-0398 and XEP-0402: the answer to a vCard or private-storage set, which the server mirrors
/// into PEP on the owner's home shard, reaches the user only once the mirror is in place (a contact
/// or another resource reading PEP right after the answer found nothing, 1 in 20 to 4 in 30 runs
/// across shards).
#[test]
fn the_answer_to_a_mirrored_set_follows_the_mirror() {
    use crate::modules::pep::api::{peek_last, Peek};
    let modules = format!(
        "{MODULES}[modules.vcard]\n[modules.avatar]\n[modules.private]\n[modules.bookmarks]\n"
    );
    let mut w = World::new(2, &modules);
    let owner =
        crate::jid::BareJid::parse(&format!("alice@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
    let home = crate::shard::home_shard(&owner, 2).index();
    // The answer leaves from the connection's shard, the other one.
    let mut alice = w.connect(1 - home, &format!("alice@{HOST}/a"), Some(0));
    let vcard = "<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
                 <BINVAL>aW1hZ2U=</BINVAL></PHOTO></vCard></iq>";
    let private = "<iq type='set' id='p'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
                   <conference jid='room@conference.localhost' autojoin='true'/></storage></query></iq>";
    for (xml, node, id) in [
        (vcard, "urn:xmpp:avatar:metadata", "v"),
        (private, "urn:xmpp:bookmarks:1", "p"),
    ] {
        send_only(&mut w, &mut alice, xml);
        let mut answered = false;
        crate::shard::cluster::Rings::default().run_stepwise(&mut w.cluster, |c| {
            while let Some(msg) = alice.mb.pop() {
                let ConnMsg::Deliver(acc) = msg else { continue };
                if acc.stanza.id().as_deref() == Some(id) {
                    answered = true;
                    assert_eq!(acc.stanza.ty(), crate::xml::StanzaType::Result);
                    let mirrored = matches!(
                        peek_last(&c.shards[home], &owner, node),
                        Peek::Last(Some(_))
                    );
                    assert!(mirrored, "{node}: the answer came before the mirror");
                }
            }
        });
        assert!(answered, "no answer to {id}");
    }
}

const OPEN: &str = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
const WHITELIST: &str = "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>";

/// Alice (on shard 0) has an open node `urn:x:o` that `gone` subscribed to explicitly and a
/// whitelist node `urn:x:w` it is a member of, and a node `urn:x:b` it is banned from.
fn nodes_naming(w: &mut World, alice: &mut User, gone: &str) {
    let mut g = w.connect(
        w.cluster.shards.len() - 1,
        &format!("{gone}@{HOST}/g"),
        Some(0),
    );
    for (node, opts) in [("urn:x:o", OPEN), ("urn:x:w", WHITELIST), ("urn:x:b", OPEN)] {
        let item = format!("<x xmlns='{node}'>1</x>");
        let r = ask(w, alice, &publish(node, "1", &item, opts));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    }
    for (node, aff) in [("urn:x:w", "member"), ("urn:x:b", "outcast")] {
        let r = ask(w, alice, &format!("<iq type='set' id='a'><pubsub xmlns='{PS}#owner'><affiliations node='{node}'><affiliation jid='{gone}@{HOST}' affiliation='{aff}'/></affiliations></pubsub></iq>"));
        assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    }
    let r = ask(w, &mut g, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='{gone}@{HOST}/g'/></pubsub></iq>"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let r = read_alices(w, &mut g, "urn:x:w");
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    logout(w, &g);
}

fn read_alices(w: &mut World, u: &mut User, node: &str) -> Stanza {
    ask(
        w,
        u,
        &format!("<iq type='get' id='g' to='alice@{HOST}'><pubsub xmlns='{PS}'><items node='{node}'/></pubsub></iq>"),
    )
}

/// What alice's stored nodes say of `who` (`node:affiliation` or `node:subscription`).
fn stored_mentions(w: &World, who: &str) -> Vec<String> {
    let metas = w
        .store()
        .pubsub_metas(&format!("alice@{HOST}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for (node, meta) in metas {
        let m: crate::modules::pubsub::core::node::NodeMeta =
            serde_json::from_str(&meta).unwrap_or_else(|e| panic!("{e}"));
        for (jid, aff) in &m.affiliations {
            if jid.starts_with(who) {
                out.push(format!("{node}:{aff:?}"));
            }
        }
        for s in &m.subscriptions {
            if s.jid.starts_with(who) {
                out.push(format!("{node}:subscription"));
            }
        }
    }
    out
}

/// The next owner of the name `gone` gets no event from alice's open node and may not read her
/// whitelist node; the ban stays.
fn next_owner_inherits_nothing(w: &mut World, alice: &mut User, gone: &str, case: &str) {
    let me = format!("{gone}@{HOST}");
    assert_eq!(stored_mentions(w, &me), ["urn:x:b:Outcast"], "{case}");
    let mut g = w.connect(w.cluster.shards.len() - 1, &format!("{me}/g"), Some(0));
    let r = ask(
        w,
        alice,
        &publish("urn:x:o", "2", "<x xmlns='urn:x:o'>2</x>", ""),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{case}: {}", text(&r));
    assert!(events(&g, "urn:x:o").is_empty(), "{case}");
    let r = read_alices(w, &mut g, "urn:x:w");
    refused(&r, "not-allowed", Some("closed-node"));
    let r = read_alices(w, &mut g, "urn:x:b");
    refused(&r, "forbidden", None);
    let r = read_alices(w, &mut g, "urn:x:o");
    assert_eq!(r.type_().as_deref(), Some("result"), "{case}: {}", text(&r));
}

#[test]
fn a_deleted_accounts_place_on_contacts_nodes_goes_with_it() {
    for shards in [1, 2] {
        for alice_online in [true, false] {
            let case = format!("{shards} shards, alice online: {alice_online}");
            let mut w = world(shards);
            let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
            nodes_naming(&mut w, &mut alice, "bob");
            if !alice_online {
                // Her state leaves memory: only the store has bob's place.
                logout(&mut w, &alice);
                assert!(!home_of(&w, &format!("alice@{HOST}")).in_memory(&format!("alice@{HOST}")));
            }
            let bob = crate::jid::BareJid::parse(&format!("bob@{HOST}"))
                .unwrap_or_else(|e| panic!("{e}"));
            crate::modules::register::account_removed(
                &mut w.cluster.shards[shards - 1],
                bob,
                vec![],
            );
            w.cluster.pump();
            if !alice_online {
                alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
            }
            next_owner_inherits_nothing(&mut w, &mut alice, "bob", &case);
        }
    }
}

#[test]
fn a_deletion_during_a_load_reaches_the_state_loaded() {
    // Alice is offline; carol's request loads her state on her home shard, whose store answers
    // wait while bob's account (and before it, `extra` others) is deleted: the load read bob's
    // place before the deletion.
    let home = crate::shard::home_shard_of(&format!("alice@{HOST}"), 2).index();
    for extra in [0, 70] {
        let case = format!("{extra} other deletions");
        let mut w = world(2);
        let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
        nodes_naming(&mut w, &mut alice, "bob");
        logout(&mut w, &alice);
        let mut carol = w.connect(1 - home, &format!("carol@{HOST}/c"), Some(0));
        let mut held = Vec::new();
        send_only(&mut w, &mut carol, &format!("<iq type='get' id='g' to='alice@{HOST}'><pubsub xmlns='{PS}'><items node='urn:x:o'/></pubsub></iq>"));
        pump_slow(&mut w, home, &mut held);
        assert!(!held.is_empty(), "{case}: no load waits");
        for i in 0..extra {
            let j = crate::jid::BareJid::parse(&format!("x{i}@{HOST}"))
                .unwrap_or_else(|e| panic!("{e}"));
            crate::modules::register::account_removed(&mut w.cluster.shards[1 - home], j, vec![]);
        }
        let bob =
            crate::jid::BareJid::parse(&format!("bob@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
        crate::modules::register::account_removed(&mut w.cluster.shards[1 - home], bob, vec![]);
        pump_slow(&mut w, home, &mut held);
        for done in held {
            w.cluster.shards[home].job_done(done);
        }
        w.cluster.pump();
        let r = drain(&carol);
        assert!(
            r.iter().any(|s| text(s).contains("<item id='1'")),
            "{case}: {:?}",
            r.iter().map(text).collect::<Vec<_>>()
        );
        alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
        next_owner_inherits_nothing(&mut w, &mut alice, "bob", &case);
    }
}

#[test]
fn a_subscribe_waiting_on_a_load_when_its_account_goes_is_forgotten_too() {
    // Bob subscribes to offline alice's node (her state loads on her home shard, slowly) and his
    // account is deleted before the load is done: his waiting request runs when the state is
    // ready, before the deletion is applied to it, so it leaves nothing behind.
    let home = crate::shard::home_shard_of(&format!("alice@{HOST}"), 2).index();
    let mut w = world(2);
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let r = ask(
        &mut w,
        &mut alice,
        &publish("urn:x:o", "1", "<x xmlns='urn:x:o'>1</x>", OPEN),
    );
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    logout(&mut w, &alice);
    let mut bob = w.connect(1 - home, &format!("bob@{HOST}/g"), Some(0));
    let mut held = Vec::new();
    send_only(&mut w, &mut bob, &format!("<iq type='set' id='s' to='alice@{HOST}'><pubsub xmlns='{PS}'><subscribe node='urn:x:o' jid='bob@{HOST}/g'/></pubsub></iq>"));
    pump_slow(&mut w, home, &mut held);
    assert!(!held.is_empty(), "no load waits");
    let jid = crate::jid::BareJid::parse(&format!("bob@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
    crate::modules::register::account_removed(&mut w.cluster.shards[1 - home], jid, vec![]);
    pump_slow(&mut w, home, &mut held);
    for done in held {
        w.cluster.shards[home].job_done(done);
    }
    w.cluster.pump();
    assert!(stored_mentions(&w, &format!("bob@{HOST}")).is_empty());
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), Some(0));
    let r = ask(&mut w, &mut alice, &format!("<iq type='get' id='l'><pubsub xmlns='{PS}#owner'><subscriptions node='urn:x:o'/></pubsub></iq>"));
    assert!(!text(&r).contains("bob@"), "{}", text(&r));
}
