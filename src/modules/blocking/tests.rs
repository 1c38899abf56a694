use std::rc::Rc;

use super::*;
use crate::auth::ScramSecrets;
use crate::c2s::route::{unbind, user_receive, user_send, Session};
use crate::shard::cluster::Cluster;
use crate::shard::{ConnMsg, Mailbox};

fn full(s: &str) -> FullJid {
    FullJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn bare(s: &str) -> BareJid {
    BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn stanza(s: &str) -> Stanza {
    Stanza::parse(s.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The block list limit of these tests.
const MAX: usize = 3;

/// `n` shards with mod_blocking; `setup` runs on the store before the shards preload.
fn cluster(n: usize, setup: impl FnOnce(&Store)) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    for u in ["alice@localhost", "bob@localhost", "carol@localhost"] {
        store
            .add_user(&bare(u), &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    setup(&store);
    let mut c = Cluster::new(n, &["localhost"]);
    for s in c.shards.iter_mut() {
        preload(s, &store);
        register(s, &["localhost".to_string()], &Options { max_items: MAX });
    }
    c.store = Some(store);
    (c, dir)
}

/// Step 7 for everything waiting in `mb`: what the client reads.
fn drain(c: &mut Cluster, shard: usize, mb: &Rc<Mailbox>) -> Vec<Element> {
    let mut out = Vec::new();
    while let Some(msg) = mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            if let Some(acc) = user_receive(&mut c.shards[shard], acc) {
                out.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
            }
        }
        c.pump();
    }
    out
}

fn send(c: &mut Cluster, on: usize, sess: &mut Session, s: &str) {
    user_send(&mut c.shards[on], sess, stanza(s));
    c.pump();
}

fn error_conds(el: &Element) -> Vec<(String, String)> {
    el.get_child("error", ns::CLIENT)
        .map(|e| {
            e.child_elements()
                .map(|c| (c.name.clone(), c.ns.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn body(el: &Element) -> Option<String> {
    el.get_child("body", ns::CLIENT).map(|b| b.text())
}

struct Peer {
    on: usize,
    sess: Session,
    mb: Rc<Mailbox>,
}

fn login(c: &mut Cluster, on: usize, jid: &str) -> Peer {
    let (sess, mb) = c.connect(on, &full(jid), Some(0));
    let mut p = Peer { on, sess, mb };
    let _ = drain(c, on, &p.mb);
    p.on = on;
    p
}

fn read(c: &mut Cluster, p: &Peer) -> Vec<Element> {
    drain(c, p.on, &p.mb)
}

fn block_iq(jids: &[&str]) -> String {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    format!("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>{items}</block></iq>")
}

#[test]
fn block_stops_messages_both_ways_across_shards() {
    for n in [1, 2, 3] {
        let (mut c, _dir) = cluster(n, |_| {});
        let mut alice = login(&mut c, 0, "alice@localhost/a");
        let mut alice2 = login(&mut c, n - 1, "alice@localhost/a2");
        let mut bob = login(&mut c, (1).min(n - 1), "bob@localhost/b");

        send(
            &mut c,
            bob.on,
            &mut bob.sess,
            "<message to='alice@localhost/a' type='chat'><body>before</body></message>",
        );
        assert_eq!(
            read(&mut c, &alice)
                .iter()
                .filter_map(body)
                .collect::<Vec<_>>(),
            ["before"]
        );

        send(
            &mut c,
            alice.on,
            &mut alice.sess,
            &block_iq(&["bob@localhost"]),
        );
        let got = read(&mut c, &alice);
        assert!(
            got.iter()
                .any(|e| e.attr("id") == Some("b1") && e.attr("type") == Some("result")),
            "n={n}: {got:?}"
        );
        // Pushes to every resource.
        for p in [&alice, &alice2] {
            let got = if p.sess.jid == alice.sess.jid {
                got.clone()
            } else {
                read(&mut c, p)
            };
            let push = got
                .iter()
                .find(|e| e.attr("type") == Some("set"))
                .and_then(|e| e.get_child("block", NS))
                .unwrap_or_else(|| panic!("n={n}: no push to {}", p.sess.jid));
            assert_eq!(
                push.child_elements()
                    .filter_map(|i| i.attr("jid"))
                    .collect::<Vec<_>>(),
                ["bob@localhost"]
            );
        }

        // Incoming from the blocked JID, to the bare JID and to each full JID: service-unavailable.
        for to in ["alice@localhost", "alice@localhost/a", "alice@localhost/a2"] {
            send(
                &mut c,
                bob.on,
                &mut bob.sess,
                &format!("<message to='{to}' type='chat' id='m'><body>blocked</body></message>"),
            );
            // Alice's connections run step 7 (where the filter is), then Bob reads.
            for p in [&alice, &alice2] {
                assert!(
                    read(&mut c, p).is_empty(),
                    "n={n}: blocked stanza delivered"
                );
            }
            let back = read(&mut c, &bob);
            // One error: a full JID's from its session, the bare JID's from the home shard
            // (which stops it before it reaches any session or offline storage).
            assert_eq!(back.len(), 1, "n={n} to={to}: {back:?}");
            for b in &back {
                assert_eq!(
                    error_conds(b),
                    [("service-unavailable".to_string(), ns::STANZAS.to_string())]
                );
            }
        }
        send(
            &mut c,
            bob.on,
            &mut bob.sess,
            "<iq type='get' to='alice@localhost/a2' id='q'><query xmlns='jabber:iq:version'/></iq>",
        );
        assert!(read(&mut c, &alice2).is_empty());
        let back = read(&mut c, &bob);
        assert_eq!(back.len(), 1);
        assert_eq!(error_conds(&back[0])[0].0, "service-unavailable");
        send(
            &mut c,
            bob.on,
            &mut bob.sess,
            "<presence to='alice@localhost/a'/>",
        );
        assert!(
            read(&mut c, &alice).is_empty(),
            "blocked presence delivered"
        );
        assert!(
            read(&mut c, &bob).is_empty(),
            "presence is dropped, not answered"
        );

        // Outgoing to the blocked JID: not-acceptable + blocked.
        send(
            &mut c,
            alice2.on,
            &mut alice2.sess,
            "<message to='bob@localhost' type='chat' id='o'><body>out</body></message>",
        );
        let back = read(&mut c, &alice2);
        assert_eq!(back.len(), 1, "n={n}: {back:?}");
        assert_eq!(
            error_conds(&back[0]),
            [
                ("not-acceptable".to_string(), ns::STANZAS.to_string()),
                ("blocked".to_string(), NS_ERRORS.to_string())
            ]
        );
        assert!(read(&mut c, &bob).is_empty());

        // Carol is not blocked.
        let mut carol = login(&mut c, 0, "carol@localhost/c");
        send(
            &mut c,
            carol.on,
            &mut carol.sess,
            "<message to='alice@localhost' type='chat'><body>hi</body></message>",
        );
        assert_eq!(
            read(&mut c, &alice)
                .iter()
                .filter_map(body)
                .collect::<Vec<_>>(),
            ["hi"]
        );

        // Unblock all: messages flow again.
        send(
            &mut c,
            alice.on,
            &mut alice.sess,
            "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>",
        );
        let _ = read(&mut c, &alice);
        let _ = read(&mut c, &alice2);
        send(
            &mut c,
            bob.on,
            &mut bob.sess,
            "<message to='alice@localhost/a2' type='chat'><body>again</body></message>",
        );
        assert_eq!(
            read(&mut c, &alice2)
                .iter()
                .filter_map(body)
                .collect::<Vec<_>>(),
            ["again"],
            "n={n}"
        );
    }
}

#[test]
fn stored_list_is_on_the_session_shard_from_bind_and_get_returns_it() {
    for n in [1, 2] {
        let (mut c, _dir) = cluster(n, |store| {
            let change = BlockChange::Block(vec!["bob@localhost".into(), "evil.org".into()]);
            store
                .blocklist_update(&bare("alice@localhost"), &change, 1000)
                .unwrap_or_else(|e| panic!("{e}"));
        });
        let on = n - 1;
        let mut alice = login(&mut c, on, "alice@localhost/a");
        let st = c.shards[on]
            .ext
            .get::<ConnLists>()
            .unwrap_or_else(|| panic!("no state"));
        let entry = st
            .users
            .get(&bare("alice@localhost"))
            .unwrap_or_else(|| panic!("no list after bind"));
        assert!(entry
            .list
            .blocks(&Jid::parse("bob@localhost/x").unwrap_or_else(|e| panic!("{e}"))));
        send(
            &mut c,
            alice.on,
            &mut alice.sess,
            "<iq type='get' id='g'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
        );
        let got = read(&mut c, &alice);
        let list = got[0]
            .get_child("blocklist", NS)
            .unwrap_or_else(|| panic!("{got:?}"));
        let items: Vec<_> = list
            .child_elements()
            .filter_map(|i| i.attr("jid"))
            .collect();
        assert_eq!(items, ["bob@localhost", "evil.org"]);
        // Leaving drops the copy.
        unbind(&mut c.shards[on], &alice.sess);
        c.pump();
        let st = c.shards[on]
            .ext
            .get::<ConnLists>()
            .unwrap_or_else(|| panic!("no state"));
        assert!(st.users.is_empty(), "list kept after the last session left");
    }
}

#[test]
fn missing_list_holds_full_jid_stanzas_and_loads_it() {
    let (mut c, _dir) = cluster(1, |store| {
        let change = BlockChange::Block(vec!["bob@localhost".into()]);
        store
            .blocklist_update(&bare("alice@localhost"), &change, 1000)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let alice = login(&mut c, 0, "alice@localhost/a");
    let mut bob = login(&mut c, 0, "bob@localhost/b");
    let mut carol = login(&mut c, 0, "carol@localhost/c");
    // As if the install task had not arrived yet.
    c.shards[0].ext.get_or_default::<ConnLists>().users.clear();
    user_send(
        &mut c.shards[0],
        &mut carol.sess,
        stanza("<message to='alice@localhost/a' type='chat'><body>c1</body></message>"),
    );
    user_send(
        &mut c.shards[0],
        &mut bob.sess,
        stanza("<message to='alice@localhost/a' type='chat' id='x'><body>b1</body></message>"),
    );
    user_send(
        &mut c.shards[0],
        &mut carol.sess,
        stanza("<message to='alice@localhost/a' type='chat'><body>c2</body></message>"),
    );
    // Step 7 before the store job ran: nothing gets through yet.
    let mut early = Vec::new();
    while let Some(ConnMsg::Deliver(acc)) = alice.mb.pop() {
        early.extend(user_receive(&mut c.shards[0], acc));
    }
    assert!(early.is_empty(), "delivered without a list");
    c.pump();
    let got = read(&mut c, &alice);
    assert_eq!(
        got.iter().filter_map(body).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    let back = read(&mut c, &bob);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(error_conds(&back[0])[0].0, "service-unavailable");
}

/// A block that would take the list past `max_items` is refused whole (`policy-violation`) and
/// changes nothing; blocks within the limit go on working.
#[test]
fn a_block_past_the_limit_is_refused_whole() {
    let (mut c, _dir) = cluster(2, |_| {});
    let mut alice = login(&mut c, 1, "alice@localhost/a");
    let stored = |c: &Cluster| {
        c.store
            .as_ref()
            .and_then(|s| s.blocklist_get(&bare("alice@localhost")).ok())
            .map(|l| l.items.len())
    };
    send(&mut c, 1, &mut alice.sess, &block_iq(&["x@a", "y@a"]));
    let got = read(&mut c, &alice);
    assert!(got.iter().all(|e| error_conds(e).is_empty()), "{got:?}");
    send(&mut c, 1, &mut alice.sess, &block_iq(&["z@a", "w@a"]));
    let got = read(&mut c, &alice);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        error_conds(&got[0]).first().map(|x| x.0.as_str()),
        Some("policy-violation")
    );
    assert_eq!(stored(&c), Some(2));
    send(&mut c, 1, &mut alice.sess, &block_iq(&["z@a", "x@a"]));
    let got = read(&mut c, &alice);
    assert!(got.iter().all(|e| error_conds(e).is_empty()), "{got:?}");
    assert_eq!(stored(&c), Some(MAX));
}

#[test]
fn bad_requests() {
    let (mut c, _dir) = cluster(2, |_| {});
    let mut alice = login(&mut c, 0, "alice@localhost/a");
    let cases = [
        ("<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block></iq>", "jid-malformed"),
        ("<iq type='set' id='2'><block xmlns='urn:xmpp:blocking'/></iq>", "bad-request"),
        ("<iq type='set' id='3'><block xmlns='urn:xmpp:blocking'><item/></block></iq>", "bad-request"),
        ("<iq type='get' id='4' to='bob@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>", "not-allowed"),
        ("<iq type='set' id='5'><blocklist xmlns='urn:xmpp:blocking'/></iq>", "bad-request"),
    ];
    for (req, cond) in cases {
        send(&mut c, 0, &mut alice.sess, req);
        let got = read(&mut c, &alice);
        assert_eq!(got.len(), 1, "{req}: {got:?}");
        assert_eq!(
            error_conds(&got[0]).first().map(|x| x.0.as_str()),
            Some(cond),
            "{req}"
        );
    }
    let stored = c
        .store
        .as_ref()
        .map(|s| s.blocklist_get(&bare("alice@localhost")));
    assert!(matches!(stored, Some(Ok(ref l)) if l.items.is_empty() && l.version == 0));
}

#[test]
fn replaced_session_keeps_the_list_for_its_successor() {
    let (mut c, _dir) = cluster(1, |store| {
        let change = BlockChange::Block(vec!["bob@localhost".into()]);
        store
            .blocklist_update(&bare("alice@localhost"), &change, 1000)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let _old = login(&mut c, 0, "alice@localhost/a");
    // Same full JID again on the same shard: the old session is replaced (conflict).
    let new = login(&mut c, 0, "alice@localhost/a");
    let st = c.shards[0]
        .ext
        .get::<ConnLists>()
        .unwrap_or_else(|| panic!("no state"));
    let entry = st
        .users
        .get(&bare("alice@localhost"))
        .unwrap_or_else(|| panic!("successor lost the list"));
    assert_eq!(entry.sessions.len(), 1);
    let mut bob = login(&mut c, 0, "bob@localhost/b");
    send(
        &mut c,
        0,
        &mut bob.sess,
        "<message to='alice@localhost' type='chat' id='x'><body>no</body></message>",
    );
    assert!(read(&mut c, &new).is_empty());
    let back = read(&mut c, &bob);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(error_conds(&back[0])[0].0, "service-unavailable");
}

/// The answer to an unblock reaches the user only once the home shard filters with the new list:
/// a contact the user tells at once is not refused by the old one (its IQs to the user's bare JID
/// are filtered there). The result used to leave the requester's shard before the list reached home.
#[test]
fn the_answer_to_a_change_never_overtakes_the_new_list() {
    let (mut c, _dir) = cluster(2, |store| {
        let change = BlockChange::Block(vec!["bob@localhost".into()]);
        store
            .blocklist_update(&bare("alice@localhost"), &change, 1000)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let alice_bare = bare("alice@localhost");
    let home = home_shard(&alice_bare, 2).index();
    // Alice's connection is on the other shard: the one the store answers on.
    let alice = login(&mut c, 1 - home, "alice@localhost/a");
    let mut sess = alice.sess;
    user_send(
        &mut c.shards[alice.on],
        &mut sess,
        stanza("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>"),
    );
    let bob = Jid::parse("bob@localhost").unwrap_or_else(|e| panic!("{e}"));
    let mut answered = false;
    // Oldest message of the first busy ring: the home shard's work waits its turn.
    crate::shard::cluster::Rings::default().run_stepwise(&mut c, |c| {
        while let Some(msg) = alice.mb.pop() {
            let ConnMsg::Deliver(acc) = msg else { continue };
            if acc.stanza.id().as_deref() == Some("u1") {
                answered = true;
                let lists = c.shards[home].ext.get_or_default::<HomeLists>();
                assert!(
                    !lists.get(&alice_bare).blocks(&bob),
                    "the answer came before the home shard had the new list"
                );
            }
        }
    });
    assert!(answered, "no answer to the unblock");
}
