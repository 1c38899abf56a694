use std::rc::Rc;

use super::*;
use crate::auth::ScramSecrets;
use crate::c2s::route::{bind, user_receive, user_send, Session};
use crate::jid::FullJid;
use crate::shard::cluster::Cluster;
use crate::shard::{ConnMsg, Mailbox};

fn full(s: &str) -> FullJid {
    FullJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn bare(s: &str) -> BareJid {
    BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster of `n` shards with mod_offline and a store holding `users`.
fn cluster(n: usize, max: u32, users: &[&str]) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    for u in users {
        store
            .add_user(&bare(u), &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = Cluster::new(n, &["localhost"]);
    for s in c.shards.iter_mut() {
        start(s, &Options { max_per_user: max });
    }
    c.store = Some(store);
    (c, dir)
}

fn store(c: &Cluster) -> &Store {
    c.store.as_ref().unwrap_or_else(|| panic!("no store"))
}

fn chat(to: &str, body: &str, extra: &str) -> Stanza {
    Stanza::parse(
        format!("<message to='{to}' type='chat' id='{body}'><body>{body}</body>{extra}</message>")
            .into_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Everything in `mb`, through step 7 on `shard`: the stanzas as the client would read them.
fn drain(c: &mut Cluster, shard: usize, mb: &Rc<Mailbox>) -> Vec<Element> {
    let mut out = Vec::new();
    while let Some(msg) = mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            if let Some(acc) = user_receive(&mut c.shards[shard], acc) {
                out.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
            }
        }
    }
    c.pump();
    out
}

fn error_cond(el: &Element) -> Option<String> {
    let e = el.get_child("error", crate::xmpp::ns::CLIENT)?;
    e.child_elements().next().map(|c| c.name.clone())
}

fn body(el: &Element) -> String {
    el.get_child("body", crate::xmpp::ns::CLIENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

#[test]
fn stored_then_delivered_with_delay_in_order_once() {
    for n in [1, 2, 3] {
        let (mut c, _dir) = cluster(n, 100, &["alice@localhost", "bob@localhost"]);
        let (mut alice, amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
        for i in 0..5 {
            user_send(
                &mut c.shards[0],
                &mut alice,
                chat("bob@localhost", &format!("m{i}"), ""),
            );
        }
        c.pump();
        assert!(
            drain(&mut c, 0, &amb).is_empty(),
            "sender got an answer (n={n})"
        );
        assert_eq!(
            store(&c).offline_count(&bare("bob@localhost")).ok(),
            Some(5)
        );
        let on = n - 1;
        let (_bob, bmb) = c.connect(on, &full("bob@localhost/b"), Some(1));
        let got = drain(&mut c, on, &bmb);
        let bodies: Vec<String> = got.iter().map(body).collect();
        assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"], "n={n}");
        for m in &got {
            let d = m
                .get_child("delay", NS_DELAY)
                .unwrap_or_else(|| panic!("no delay"));
            assert_eq!(d.attr("from"), Some("localhost"));
            assert!(d
                .attr("stamp")
                .is_some_and(|s| s.ends_with('Z') && s.contains('T')));
            assert_eq!(m.attr("from"), Some("alice@localhost/a"));
        }
        assert_eq!(
            store(&c).offline_count(&bare("bob@localhost")).ok(),
            Some(0)
        );
        // A second resource coming online later gets nothing again.
        let (_b2, b2mb) = c.connect(on, &full("bob@localhost/c"), Some(1));
        assert!(drain(&mut c, on, &b2mb).is_empty());
    }
}

#[test]
fn two_resources_available_at_once_get_each_message_once() {
    for n in [1, 2] {
        let (mut c, _dir) = cluster(n, 100, &["alice@localhost", "bob@localhost"]);
        let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
        for i in 0..4 {
            user_send(
                &mut c.shards[0],
                &mut alice,
                chat("bob@localhost", &format!("m{i}"), ""),
            );
        }
        c.pump();
        // Bind two resources, then send both initial presences before anything is pumped.
        let mut sessions = Vec::new();
        for (i, res) in ["x", "y"].iter().enumerate() {
            let on = i % n;
            let jid = full(&format!("bob@localhost/{res}"));
            let (conn, mb) = c.shards[on].open_conn();
            let sref = c.shards[on].session_ref(conn);
            bind(
                &mut c.shards[on],
                jid.clone(),
                sref,
                std::time::Instant::now(),
            );
            c.pump();
            assert!(matches!(mb.pop(), Some(ConnMsg::Bound(Ok(())))));
            c.shards[on].local_bind(jid.clone(), conn);
            sessions.push((on, Session::new(jid, sref), mb));
        }
        for (on, sess, _) in sessions.iter_mut() {
            let p = Stanza::parse(b"<presence/>".to_vec()).unwrap_or_else(|e| panic!("{e}"));
            user_send(&mut c.shards[*on], sess, p);
        }
        c.pump();
        let mut all = Vec::new();
        for (on, _, mb) in &sessions {
            all.extend(drain(&mut c, *on, mb).iter().map(body));
        }
        all.sort();
        assert_eq!(all, ["m0", "m1", "m2", "m3"], "n={n}");
    }
}

#[test]
fn message_stored_while_presence_is_in_flight_is_not_lost() {
    let (mut c, _dir) = cluster(1, 100, &["alice@localhost", "bob@localhost"]);
    let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    let (mut bob, bmb) = c.connect(0, &full("bob@localhost/b"), None);
    // The store job for the message is queued, not run, when the presence queues the fetch.
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost", "racing", ""),
    );
    let p = Stanza::parse(b"<presence/>".to_vec()).unwrap_or_else(|e| panic!("{e}"));
    user_send(&mut c.shards[0], &mut bob, p);
    c.pump();
    let got = drain(&mut c, 0, &bmb);
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["racing"]);
}

#[test]
fn limit_unknown_user_and_hints_answer_the_sender() {
    for n in [1, 2] {
        let (mut c, _dir) = cluster(n, 2, &["alice@localhost", "bob@localhost"]);
        let (mut alice, amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
        let sends = [
            ("bob@localhost", "one", ""),
            ("bob@localhost", "two", ""),
            ("bob@localhost", "three", ""),
            ("nobody@localhost", "ghost", ""),
            (
                "bob@localhost",
                "nostore",
                "<no-store xmlns='urn:xmpp:hints'/>",
            ),
        ];
        for (to, b, extra) in sends {
            user_send(&mut c.shards[0], &mut alice, chat(to, b, extra));
        }
        c.pump();
        let got = drain(&mut c, 0, &amb);
        // The no-store refusal is synchronous, the others come back from the store: sort by id.
        let mut errs: Vec<(String, Option<String>)> = got
            .iter()
            .map(|e| (e.attr("id").unwrap_or_default().to_owned(), error_cond(e)))
            .collect();
        errs.sort();
        let want = |id: &str, cond: &str| (id.to_owned(), Some(cond.to_owned()));
        assert_eq!(
            errs,
            [
                want("ghost", "service-unavailable"),
                want("nostore", "service-unavailable"),
                want("three", "resource-constraint"),
            ],
            "n={n}"
        );
        assert_eq!(
            store(&c).offline_count(&bare("bob@localhost")).ok(),
            Some(2)
        );
    }
}

#[test]
fn a_store_that_fails_is_answered_wait_not_no_such_user() {
    let (mut c, dir) = cluster(1, 10, &["alice@localhost", "bob@localhost"]);
    // The store breaks under the running server (a disk, a PostgreSQL outage).
    let db = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
    db.execute_batch("DROP TABLE offline_message").unwrap();
    let (mut alice, amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost", "lost?", ""),
    );
    c.pump();
    let got = drain(&mut c, 0, &amb);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        error_cond(&got[0]).as_deref(),
        Some("internal-server-error")
    );
    let error = got[0].get_child("error", crate::xmpp::ns::CLIENT);
    assert_eq!(error.and_then(|e| e.attr("type")), Some("wait"));
}

#[test]
fn headline_groupchat_and_chat_states_are_not_stored() {
    let (mut c, _dir) = cluster(1, 10, &["alice@localhost", "bob@localhost"]);
    let (mut alice, amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    let raw = [
        "<message to='bob@localhost' type='headline'><body>h</body></message>",
        "<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message to='bob@localhost' type='chat' id='st'><store xmlns='urn:xmpp:hints'/><x xmlns='y'/></message>",
    ];
    for r in raw {
        let s = Stanza::parse(r.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
        user_send(&mut c.shards[0], &mut alice, s);
    }
    c.pump();
    assert!(drain(&mut c, 0, &amb).is_empty());
    // Only the `<store/>`-hinted one was kept.
    assert_eq!(
        store(&c).offline_count(&bare("bob@localhost")).ok(),
        Some(1)
    );
}

#[test]
fn negative_priority_resource_gets_nothing() {
    let (mut c, _dir) = cluster(1, 10, &["alice@localhost", "bob@localhost"]);
    let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost", "wait", ""),
    );
    c.pump();
    let (_neg, nmb) = c.connect(0, &full("bob@localhost/neg"), Some(-1));
    assert!(drain(&mut c, 0, &nmb).is_empty());
    assert_eq!(
        store(&c).offline_count(&bare("bob@localhost")).ok(),
        Some(1)
    );
}

#[test]
fn options() {
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Options::from_table(&t("")),
        Ok(Options { max_per_user: 1000 })
    );
    assert_eq!(
        Options::from_table(&t("max_per_user = 5")),
        Ok(Options { max_per_user: 5 })
    );
    assert!(Options::from_table(&t("max_per_user = 0")).is_err());
    assert!(Options::from_table(&t("max = 5")).is_err());
}

/// A connection that closes with stanzas still in its mailbox (routed to it, never written) hands
/// them back: with no other resource they are stored offline, in order.
#[test]
fn a_closed_connection_hands_its_mailbox_back() {
    for n in [1, 2] {
        let (mut c, _dir) = cluster(n, 100, &["alice@localhost", "bob@localhost"]);
        let (mut alice, amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
        let on = n - 1;
        let (bob, bmb) = c.connect(on, &full("bob@localhost/b"), Some(1));
        for i in 0..3 {
            user_send(
                &mut c.shards[0],
                &mut alice,
                chat("bob@localhost", &format!("m{i}"), ""),
            );
        }
        c.pump();
        assert!(bmb.bytes() > 0, "queued for bob (n={n})");
        crate::c2s::route::unbind(&mut c.shards[on], &bob);
        c.shards[on].close_conn(bob.session.conn);
        c.pump();
        assert!(
            drain(&mut c, 0, &amb).is_empty(),
            "no error for alice (n={n})"
        );
        assert_eq!(
            store(&c).offline_count(&bare("bob@localhost")).ok(),
            Some(3),
            "n={n}"
        );
        let (_b2, b2mb) = c.connect(on, &full("bob@localhost/c"), Some(1));
        let bodies: Vec<String> = drain(&mut c, on, &b2mb).iter().map(body).collect();
        assert_eq!(bodies, ["m0", "m1", "m2"], "n={n}");
    }
}
