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
                want("three", "service-unavailable"),
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

/// What the driver would write to `sess` now (through step 7 with the session, as the runtime
/// runs it: presend handlers see the receiver), pumping what that causes.
fn written(c: &mut Cluster, on: usize, sess: &Session, mb: &Rc<Mailbox>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        c.pump();
        let Some(msg) = mb.pop() else {
            return out;
        };
        if let ConnMsg::Deliver(acc) = msg {
            for acc in crate::c2s::route::user_receive_at(&mut c.shards[on], sess, acc) {
                let el = acc.stanza.tree().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(el.name, "message", "only messages reach the client");
                out.push(body(&el));
            }
        }
    }
}

/// Alice on shard 0 stores `n` messages for bob; bob binds on the last shard with an initial
/// presence, and his client reads what came (the first chunk); then alice sends two more, to his
/// bare and to his full JID. Gives what bob's client read, and the cluster.
fn backlog_then_live(shards: usize, n: usize) -> (Vec<String>, Cluster, tempfile::TempDir) {
    let (mut c, dir) = cluster(shards, 1000, &["alice@localhost", "bob@localhost"]);
    let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    for i in 0..n {
        user_send(
            &mut c.shards[0],
            &mut alice,
            chat("bob@localhost", &i.to_string(), ""),
        );
    }
    c.pump();
    let on = shards - 1;
    let (bob, bmb) = c.connect(on, &full("bob@localhost/b"), Some(1));
    // The first chunk (the rest waits until it is written).
    let mut got = Vec::new();
    while let Some(msg) = bmb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            for acc in crate::c2s::route::user_receive_at(&mut c.shards[on], &bob, acc) {
                got.push(body(&acc.stanza.tree().unwrap_or_else(|e| panic!("{e}"))));
            }
        }
    }
    for (i, to) in ["bob@localhost", "bob@localhost/b"].iter().enumerate() {
        user_send(
            &mut c.shards[0],
            &mut alice,
            chat(to, &format!("live{i}"), ""),
        );
    }
    got.extend(written(&mut c, on, &bob, &bmb));
    (got, c, dir)
}

#[test]
fn live_messages_wait_behind_the_backlog() {
    for shards in [1, 2, 3] {
        let n = 2 * CHUNK_ROWS + 5;
        let (got, c, _dir) = backlog_then_live(shards, n);
        let mut want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        want.extend(["live0".to_owned(), "live1".to_owned()]);
        assert_eq!(got, want, "shards {shards}");
        assert_eq!(
            store(&c).offline_count(&bare("bob@localhost")).ok(),
            Some(0)
        );
        let holds = c.shards[shards - 1].ext.get::<hold::Holds>();
        assert!(holds.is_some_and(|h| h.holding() == 0), "the hold ended");
    }
}

#[test]
fn with_no_backlog_nothing_waits_for_long() {
    let (got, _c, _dir) = backlog_then_live(2, 0);
    assert_eq!(got, ["live0", "live1"]);
}

#[test]
fn holding_is_bounded() {
    let (mut c, _dir) = cluster(1, 1000, &["alice@localhost", "bob@localhost"]);
    let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost", "stored", ""),
    );
    c.pump();
    let (bob, bmb) = c.connect(0, &full("bob@localhost/b"), Some(1));
    // The hold marker and the stored message, not written yet: the next fetch waits for it.
    let queued: Vec<ConnMsg> = std::iter::from_fn(|| bmb.pop()).collect();
    let mut got = Vec::new();
    for msg in queued {
        if let ConnMsg::Deliver(acc) = msg {
            if acc.get(OFFLINE_ROW).is_some() {
                // Kept back: its delivery would fetch again.
                std::mem::forget(acc);
                continue;
            }
            got.extend(crate::c2s::route::user_receive_at(
                &mut c.shards[0],
                &bob,
                acc,
            ));
        }
    }
    assert!(got.is_empty());
    for i in 0..hold::MAX_HELD {
        user_send(
            &mut c.shards[0],
            &mut alice,
            chat("bob@localhost/b", &i.to_string(), ""),
        );
    }
    assert!(
        written(&mut c, 0, &bob, &bmb).is_empty(),
        "held behind the backlog"
    );
    let last = hold::MAX_HELD.to_string();
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost/b", &last, ""),
    );
    let out = written(&mut c, 0, &bob, &bmb);
    let want: Vec<String> = (0..=hold::MAX_HELD).map(|i| i.to_string()).collect();
    assert_eq!(out, want, "past the bound, everything held goes, in order");
}

#[test]
fn a_session_closed_while_holding_has_its_live_messages_routed_again() {
    let (mut c, _dir) = cluster(2, 1000, &["alice@localhost", "bob@localhost"]);
    let (mut alice, _amb) = c.connect(0, &full("alice@localhost/a"), Some(0));
    for i in 0..3 {
        user_send(
            &mut c.shards[0],
            &mut alice,
            chat("bob@localhost", &format!("s{i}"), ""),
        );
    }
    c.pump();
    let (bob, bmb) = c.connect(1, &full("bob@localhost/b"), Some(1));
    // Through the hold marker only: the stored ones stay unwritten.
    let mut rest = Vec::new();
    while let Some(msg) = bmb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            if acc.get(OFFLINE_ROW).is_some() {
                rest.push(acc);
            } else {
                assert!(
                    crate::c2s::route::user_receive_at(&mut c.shards[1], &bob, acc)
                        .into_iter()
                        .next()
                        .is_none()
                );
            }
        }
    }
    user_send(
        &mut c.shards[0],
        &mut alice,
        chat("bob@localhost", "live", ""),
    );
    c.pump();
    while let Some(msg) = bmb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            assert!(
                crate::c2s::route::user_receive_at(&mut c.shards[1], &bob, acc)
                    .into_iter()
                    .next()
                    .is_none(),
                "held"
            );
        }
    }
    // Bob's connection closes: what its mailbox held goes back to the session manager (as the
    // runtime hands it back, `a_closed_connection_hands_its_mailbox_back`), the stored ones to
    // their rows; the live one the hold gave back is routed again, and stored.
    c.shards[1].close_conn(bob.session.conn);
    crate::c2s::route::unbind(&mut c.shards[1], &bob);
    for acc in rest {
        c.shards[1].reroute(acc);
    }
    c.pump();
    assert_eq!(
        store(&c).offline_count(&bare("bob@localhost")).ok(),
        Some(4)
    );
}
