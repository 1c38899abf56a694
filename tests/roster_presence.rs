//! Roster and presence over the wire (RFC 6121), at `--shards 1` and `--shards 2`.

mod common;

use common::{error_condition, Server};
use petrel::xml::Stanza;
use petrel::xmpp::ns;

const MODULES: &str = "[modules.roster]\n[modules.presence]\n";

/// A client that keeps the stanzas it skipped, so expectations do not depend on the order in
/// which independent stanzas (a push and a result, say) arrive.
struct Client {
    c: common::Client,
    held: Vec<Stanza>,
}

impl Client {
    fn login(server: &Server, user: &str, resource: &str, presence: Option<i8>) -> Client {
        Client {
            c: server.login(user, resource, presence),
            held: Vec::new(),
        }
    }

    fn send(&mut self, s: &str) {
        self.c.send(s);
    }

    fn sync(&mut self) {
        self.c.sync();
    }

    /// The first held or next stanza satisfying `pred`; others are held.
    fn expect(&mut self, what: &str, pred: impl Fn(&Stanza) -> bool) -> Stanza {
        if let Some(i) = self.held.iter().position(&pred) {
            return self.held.remove(i);
        }
        loop {
            let s = self
                .c
                .try_next_stanza()
                .unwrap_or_else(|| panic!("EOF waiting for {what}"));
            if pred(&s) {
                return s;
            }
            self.held.push(s);
        }
    }

    /// True if a stanza satisfying `pred` was received and skipped so far.
    fn held_any(&self, pred: impl Fn(&Stanza) -> bool) -> bool {
        self.held.iter().any(pred)
    }
}

fn server(shards: usize) -> Server {
    Server::start_with(shards, &["alice", "bob", "carol"], "", MODULES)
}

fn ty(s: &Stanza) -> String {
    s.type_().map(|t| t.into_owned()).unwrap_or_default()
}

fn is_presence(s: &Stanza, type_: &str, from: &str) -> bool {
    s.name() == "presence" && ty(s) == type_ && s.from().as_deref() == Some(from)
}

/// The `<item/>` of a roster push.
fn push_item(s: &Stanza) -> Option<petrel::xml::Element> {
    if s.name() != "iq" || ty(s) != "set" {
        return None;
    }
    let t = s.tree().ok()?;
    let item = t
        .get_child("query", ns::ROSTER)?
        .child_elements()
        .next()
        .cloned();
    item
}

fn expect_push(c: &mut Client, jid: &str, subscription: &str) -> petrel::xml::Element {
    let s = c.expect(&format!("push {jid} {subscription}"), |s| {
        push_item(s).is_some_and(|i| {
            i.attr("jid") == Some(jid) && i.attr("subscription") == Some(subscription)
        })
    });
    // Acknowledge the push like a client does (RFC 6121 §2.1.6).
    let id = s.id().map(|i| i.into_owned()).unwrap_or_default();
    c.send(&format!("<iq type='result' id='{id}'/>"));
    push_item(&s).unwrap_or_else(|| unreachable!())
}

/// Bob subscribes to alice's presence, alice (resource `a`, available) approves, and bob gets it.
fn bob_follows_alice(a: &mut Client, b: &mut Client) {
    b.send("<presence to='alice@localhost' type='subscribe'/>");
    a.expect("subscribe", |s| {
        is_presence(s, "subscribe", "bob@localhost")
    });
    a.send("<presence to='bob@localhost' type='subscribed'/>");
    b.expect("alice's presence", |s| {
        is_presence(s, "", "alice@localhost/a")
    });
}

fn roster_get(c: &mut Client, ver: Option<&str>) -> Stanza {
    let v = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    let id = format!("get{}", common::rand_u64());
    c.send(&format!(
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'{v}/></iq>"
    ));
    c.expect("roster result", |s| s.id().as_deref() == Some(id.as_str()))
}

fn roster_set(c: &mut Client, item: &str) -> Stanza {
    let id = format!("set{}", common::rand_u64());
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>"
    ));
    c.expect("roster set result", |s| {
        s.id().as_deref() == Some(id.as_str())
    })
}

#[test]
fn roster_add_push_remove_and_versioning() {
    for shards in [1, 2] {
        let server = server(shards);
        let mut a1 = Client::login(&server, "alice", "one", None);
        let mut a2 = Client::login(&server, "alice", "two", None);
        roster_get(&mut a1, None);
        let r = roster_get(&mut a2, None);
        let ver0 = r.tree().ok().and_then(|t| {
            t.get_child("query", ns::ROSTER)
                .and_then(|q| q.attr("ver").map(str::to_owned))
        });
        assert!(ver0.is_some(), "shards={shards}: roster result carries ver");

        let r = roster_set(
            &mut a1,
            "<item jid='bob@localhost' name='Bob'><group>Friends</group></item>",
        );
        assert_eq!(ty(&r), "result", "shards={shards}");
        for c in [&mut a1, &mut a2] {
            let item = expect_push(c, "bob@localhost", "none");
            assert_eq!(item.attr("name"), Some("Bob"));
            assert_eq!(
                item.get_child("group", ns::ROSTER)
                    .map(|g| g.text())
                    .as_deref(),
                Some("Friends")
            );
        }
        let r = roster_get(&mut a2, None);
        let t = r.tree().unwrap();
        let q = t.get_child("query", ns::ROSTER).unwrap();
        let ver1 = q.attr("ver").unwrap().to_owned();
        assert_ne!(Some(ver1.clone()), ver0);
        assert_eq!(q.child_elements().count(), 1);
        // Unchanged since ver1: an empty result.
        let r = roster_get(&mut a2, Some(&ver1));
        assert!(
            r.tree().unwrap().get_child("query", ns::ROSTER).is_none(),
            "shards={shards}"
        );

        let r = roster_set(&mut a2, "<item jid='bob@localhost' subscription='remove'/>");
        assert_eq!(ty(&r), "result");
        expect_push(&mut a1, "bob@localhost", "remove");
        expect_push(&mut a2, "bob@localhost", "remove");
        let r = roster_get(&mut a1, None);
        assert_eq!(
            r.tree()
                .unwrap()
                .get_child("query", ns::ROSTER)
                .unwrap()
                .child_elements()
                .count(),
            0
        );

        // Bad input: RFC errors, nothing stored.
        for (item, cond) in [
            ("<item jid='a@@b'/>", "jid-malformed"),
            (
                "<item jid='x@localhost'/><item jid='y@localhost'/>",
                "bad-request",
            ),
            (
                "<item jid='bob@localhost' subscription='remove'/>",
                "item-not-found",
            ),
        ] {
            let r = roster_set(&mut a1, item);
            assert_eq!(error_condition(&r).as_deref(), Some(cond), "{item}");
        }
        let r = roster_get(&mut a1, None);
        assert_eq!(
            r.tree()
                .unwrap()
                .get_child("query", ns::ROSTER)
                .unwrap()
                .child_elements()
                .count(),
            0
        );
    }
}

/// Both directions of the handshake; presence arrives after approval; login broadcast, probe
/// answers, logout by `</stream>` and by a TCP drop.
#[test]
fn subscription_handshake_broadcast_probe_logout() {
    for shards in [1, 2] {
        let server = server(shards);
        let mut a = Client::login(&server, "alice", "a", Some(0));
        let mut b = Client::login(&server, "bob", "b", Some(0));
        roster_get(&mut a, None);
        roster_get(&mut b, None);

        a.send("<presence to='bob@localhost' type='subscribe'/>");
        let item = expect_push(&mut a, "bob@localhost", "none");
        assert_eq!(item.attr("ask"), Some("subscribe"));
        b.expect("subscribe", |s| {
            is_presence(s, "subscribe", "alice@localhost")
        });
        b.send("<presence to='alice@localhost' type='subscribed'/>");
        expect_push(&mut b, "alice@localhost", "from");
        a.expect("subscribed", |s| {
            is_presence(s, "subscribed", "bob@localhost")
        });
        // Only after the approval does bob's presence arrive.
        assert!(
            !a.held_any(|s| is_presence(s, "", "bob@localhost/b")),
            "shards={shards}"
        );
        a.expect("bob's presence", |s| is_presence(s, "", "bob@localhost/b"));
        expect_push(&mut a, "bob@localhost", "to");

        b.send("<presence to='alice@localhost' type='subscribe'/>");
        a.expect("subscribe", |s| {
            is_presence(s, "subscribe", "bob@localhost")
        });
        a.send("<presence to='bob@localhost' type='subscribed'/>");
        b.expect("subscribed", |s| {
            is_presence(s, "subscribed", "alice@localhost")
        });
        assert!(
            !b.held_any(|s| is_presence(s, "", "alice@localhost/a")),
            "shards={shards}"
        );
        b.expect("alice's presence", |s| {
            is_presence(s, "", "alice@localhost/a")
        });
        expect_push(&mut b, "alice@localhost", "both");

        // Logout with </stream>: alice sees bob go.
        b.send("</stream:stream>");
        a.expect("bob unavailable", |s| {
            is_presence(s, "unavailable", "bob@localhost/b")
        });
        // Login again: alice sees bob come; bob's probe brings alice's presence.
        let mut b = Client::login(&server, "bob", "b2", Some(3));
        a.expect("bob available", |s| is_presence(s, "", "bob@localhost/b2"));
        b.expect("alice via probe", |s| {
            is_presence(s, "", "alice@localhost/a")
        });
        // A status change reaches the contact.
        a.send("<presence><show>away</show><status>lunch</status></presence>");
        let p = b.expect("alice away", |s| is_presence(s, "", "alice@localhost/a"));
        assert!(String::from_utf8_lossy(p.bytes()).contains("lunch"));
        // TCP drop without </stream>.
        b.c.sock.shutdown(std::net::Shutdown::Both).unwrap();
        drop(b);
        a.expect("bob dropped", |s| {
            is_presence(s, "unavailable", "bob@localhost/b2")
        });
    }
}

#[test]
fn pending_request_waits_for_login_and_bad_presence() {
    for shards in [1, 2] {
        let server = server(shards);
        let mut a = Client::login(&server, "alice", "a", Some(0));
        a.send("<presence to='carol@localhost' type='subscribe'><status>it is alice</status></presence>");
        a.sync();
        let mut c = Client::login(&server, "carol", "c", Some(0));
        let s = c.expect("stored request", |s| {
            is_presence(s, "subscribe", "alice@localhost")
        });
        assert!(String::from_utf8_lossy(s.bytes()).contains("it is alice"));
        // Unknown presence type (directed, broadcast, empty) and subscription to oneself:
        // bad-request.
        for (xml, id) in [
            (
                "<presence to='carol@localhost' type='bogus' id='x1'/>",
                "x1",
            ),
            ("<presence type='bogus' id='x3'/>", "x3"),
            ("<presence type='' id='x4'/>", "x4"),
            (
                "<presence to='alice@localhost' type='subscribe' id='x2'/>",
                "x2",
            ),
        ] {
            a.send(xml);
            let e = a.expect("error", |s| s.id().as_deref() == Some(id));
            assert_eq!(ty(&e), "error");
            assert_eq!(error_condition(&e).as_deref(), Some("bad-request"), "{xml}");
        }
    }
}

#[test]
fn directed_presence_of_a_session_that_was_never_available_ends_too() {
    // RFC 6121 §4.6.3: an entity that got directed presence hears when the session ends, even
    // if the session never sent initial presence (it had no unavailable broadcast to ride on).
    for shards in [1, 2] {
        let server = server(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let mut alice = server.login("alice", "quiet", None);
        alice.send("<presence to='bob@localhost/b'/>");
        bob.expect("directed presence", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/quiet")
        });
        alice.send("</stream:stream>");
        let _ = alice.read_to_close();
        let gone = bob.expect("unavailable", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/quiet")
        });
        assert_eq!(
            gone.type_().as_deref(),
            Some("unavailable"),
            "shards={shards}"
        );
    }
}

#[test]
fn an_invalid_priority_is_refused() {
    // RFC 6121 §4.7.2.3: an integer in -128..=127. Contacts saw the value as sent while routing
    // took it for 0.
    let server = server(2);
    let mut alice = server.login("alice", "a", None);
    for (id, p) in [
        ("p1", "<priority>200</priority>"),
        ("p2", "<priority>-129</priority>"),
        ("p3", "<priority>high</priority>"),
        ("p4", "<priority>1</priority><priority>2</priority>"),
    ] {
        alice.send(&format!("<presence id='{id}'>{p}</presence>"));
        let e = alice.expect("error", |s| s.id().as_deref() == Some(id));
        assert_eq!(ty(&e), "error");
        assert_eq!(error_condition(&e).as_deref(), Some("bad-request"), "{p}");
    }
    alice.send("<presence id='ok'><priority> -128 </priority></presence>");
    let own = alice.expect("own presence", |s| s.name() == "presence");
    assert_eq!(own.id().as_deref(), Some("ok"));
    assert_eq!(ty(&own), "");
}

/// RFC 6121 §2.3.2: every successful roster set is pushed to the interested resources, the one
/// that made it included, also a set that changes nothing (it got only the result before; Prosody
/// and ejabberd push it too), with the version it leaves.
#[test]
fn a_roster_set_that_changes_nothing_is_pushed_too() {
    let server = server(2);
    let mut a = Client::login(&server, "alice", "a", Some(0));
    let mut a2 = Client::login(&server, "alice", "a2", Some(0));
    roster_get(&mut a, None);
    roster_get(&mut a2, None);
    let item = "<item jid='zed@localhost' name='Z'/>";
    roster_set(&mut a, item);
    let first = expect_push(&mut a, "zed@localhost", "none");
    assert_eq!(first.attr("name"), Some("Z"));
    expect_push(&mut a2, "zed@localhost", "none");
    let ver = roster_get(&mut a, None)
        .tree()
        .unwrap()
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.attr("ver").map(str::to_owned))
        .expect("a version");
    roster_set(&mut a, item);
    for c in [&mut a, &mut a2] {
        let s = c.expect("push of the unchanged item", |s| {
            push_item(s).is_some_and(|i| i.attr("jid") == Some("zed@localhost"))
        });
        let q = s.tree().unwrap();
        let q = q.get_child("query", ns::ROSTER).unwrap();
        assert_eq!(q.attr("ver"), Some(ver.as_str()), "the version it leaves");
    }
}

/// RFC 6120 §10.1: what a client sends reaches a contact in the order sent, its presence
/// broadcast included. A status change followed at once by a message (one write) must reach the
/// contact as presence, then message, every time; so must the initial presence of a new session
/// and its first message. The broadcast's copies come from a store job that reads the roster, so
/// the client's next message used to overtake them.
#[test]
fn a_presence_broadcast_is_not_overtaken_by_the_next_message() {
    for shards in [1, 2] {
        let server = server(shards);
        let mut a = Client::login(&server, "alice", "a", Some(0));
        let mut b = Client::login(&server, "bob", "b", Some(0));
        bob_follows_alice(&mut a, &mut b);
        // Several resources of bob, so that at two shards some sit on alice's shard, some not.
        let mut others: Vec<Client> = (0..3)
            .map(|i| Client::login(&server, "bob", &format!("o{i}"), Some(0)))
            .collect();
        for c in others.iter_mut() {
            c.expect("alice's presence", |s| {
                is_presence(s, "", "alice@localhost/a")
            });
            c.sync();
        }
        b.sync();
        b.held.clear();
        const ROUNDS: usize = 10;
        let mut batch = String::new();
        for i in 0..ROUNDS {
            batch.push_str(&format!(
                "<presence><status>s{i}</status></presence>\
                 <message to='bob@localhost' type='chat'><body>m{i}</body></message>"
            ));
        }
        a.send(&batch);
        // A new session: its initial presence and first message, in one write.
        let mut a2 = server.connect();
        a2.login_plain("alice", "localhost", common::PASSWORD, "a2");
        a2.send(
            "<presence/><message to='bob@localhost/b' type='chat'><body>first</body></message>",
        );
        for (who, c) in std::iter::once(("b", &mut b)).chain(
            others
                .iter_mut()
                .enumerate()
                .map(|(i, c)| (["o0", "o1", "o2"][i], c)),
        ) {
            let mut seen: Vec<String> = Vec::new();
            let wanted = if who == "b" {
                2 * ROUNDS + 2
            } else {
                2 * ROUNDS + 1
            };
            while seen.len() < wanted {
                let s = c.c.next_stanza();
                let text = String::from_utf8_lossy(s.bytes()).into_owned();
                let from = s.from().unwrap_or_default().into_owned();
                let tag = if s.name() == "presence" && from == "alice@localhost/a" {
                    match text.find("<status>s") {
                        Some(at) => {
                            let rest = &text[at + 9..];
                            format!("s{}", &rest[..rest.find('<').unwrap()])
                        }
                        None => continue,
                    }
                } else if s.name() == "presence" && from == "alice@localhost/a2" {
                    "p2".to_string()
                } else if s.name() == "message" && text.contains("<body>first<") {
                    "first".to_string()
                } else if let Some(at) = text.find("<body>m").filter(|_| s.name() == "message") {
                    // (Other messages: the harness's home-sync headlines of the other logins.)
                    let rest = &text[at + 7..];
                    format!("m{}", &rest[..rest.find('<').unwrap()])
                } else {
                    continue;
                };
                seen.push(tag);
            }
            let pos = |t: &str| seen.iter().position(|s| s == t);
            for i in 0..ROUNDS {
                let (p, m) = (pos(&format!("s{i}")), pos(&format!("m{i}")));
                assert!(
                    p.is_some() && m.is_some() && p < m,
                    "shards={shards} {who}: status s{i} after its message: {seen:?}"
                );
            }
            if who == "b" {
                assert!(
                    pos("p2") < pos("first"),
                    "shards={shards}: initial presence after the first message: {seen:?}"
                );
            }
        }
    }
}

/// RFC 6121 §4.3.2: a probe of a contact with no available resource is answered `unavailable`,
/// which SHOULD say when that began (XEP-0203 delay) and MAY carry the last unavailable presence
/// (here its status). With `mod_last` recording logouts.
#[test]
fn a_probe_of_an_absent_contact_says_since_when() {
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            "[modules.roster]\n[modules.presence]\n[modules.last]\n",
        );
        let mut a = Client::login(&server, "alice", "a", Some(0));
        let mut b = Client::login(&server, "bob", "b", Some(0));
        bob_follows_alice(&mut a, &mut b);
        a.send("<presence type='unavailable'><status>gone fishing</status></presence>");
        a.send("</stream:stream>");
        let _ = a.c.read_to_close();
        b.expect("alice unavailable", |s| {
            is_presence(s, "unavailable", "alice@localhost/a")
        });
        // The logout is recorded by a store job: ask until the answer carries it.
        let mut answer = String::new();
        // (Probes count against the presence flood limit: few, spaced.)
        for _ in 0..10 {
            b.send("<presence to='alice@localhost' type='probe'/>");
            let p = b.expect("probe answer", |s| {
                is_presence(s, "unavailable", "alice@localhost")
            });
            answer = String::from_utf8_lossy(p.bytes()).into_owned();
            if answer.contains("urn:xmpp:delay") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        assert!(
            answer.contains("<status>gone fishing</status>"),
            "shards={shards}: {answer}"
        );
        let tree = petrel::xml::Stanza::parse(answer.clone().into_bytes())
            .unwrap()
            .tree()
            .unwrap();
        let delay = tree
            .get_child("delay", "urn:xmpp:delay")
            .unwrap_or_else(|| panic!("shards={shards}: no delay: {answer}"));
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").unwrap_or_default();
        let year = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952
            + 1970;
        assert!(
            stamp.ends_with('Z') && stamp.contains('T'),
            "shards={shards}: {stamp}"
        );
        assert!(
            stamp.starts_with(&year.to_string()) || stamp.starts_with(&(year - 1).to_string()),
            "shards={shards}: {stamp}"
        );
        // With the module off, nothing records logouts: the record left from before is stale
        // and not told.
        drop(b);
        let mut server = server;
        server.stop();
        let config = std::fs::read_to_string(&server.config).unwrap();
        std::fs::write(&server.config, config.replace("[modules.last]\n", "")).unwrap();
        server.spawn(shards);
        let mut a = Client::login(&server, "alice", "a", Some(0));
        a.send("<presence type='unavailable'><status>later</status></presence>");
        a.send("</stream:stream>");
        let _ = a.c.read_to_close();
        let mut b = Client::login(&server, "bob", "b", None);
        b.send("<presence to='alice@localhost' type='probe'/>");
        let p = b.expect("probe answer", |s| {
            is_presence(s, "unavailable", "alice@localhost")
        });
        let text = String::from_utf8_lossy(p.bytes()).into_owned();
        assert!(
            !text.contains("urn:xmpp:delay") && !text.contains("gone fishing"),
            "shards={shards}: a stale record told: {text}"
        );
    }
}

/// RFC 6120 §4.4: what a client sent before its closing tag is handled. A presence broadcast holds
/// the client's input until its copies are routed; a stream closed in the same write used to drop
/// the stanzas waiting behind the presence (no error, nothing stored).
#[test]
fn stanzas_between_a_presence_and_the_closing_tag_are_delivered() {
    for shards in [1, 2] {
        let server = server(shards);
        let mut a = Client::login(&server, "alice", "a", Some(0));
        let mut b = Client::login(&server, "bob", "b", Some(0));
        bob_follows_alice(&mut a, &mut b);
        a.send(
            "<presence><status>bye</status></presence>\
             <message to='bob@localhost/b' type='chat'><body>last0</body></message>\
             <message to='bob@localhost/b' type='chat'><body>last1</body></message>\
             </stream:stream>",
        );
        for body in ["last0", "last1"] {
            b.expect(body, |s| {
                s.name() == "message" && String::from_utf8_lossy(s.bytes()).contains(body)
            });
        }
    }
}
