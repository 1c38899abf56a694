//! Placement, the registry and `R` records, on one shard without a connection.

use std::cell::RefCell;

use super::*;
use crate::cluster::members::Change;
use crate::cluster::stanzas::tests::{chat, output, shard_and_link};
use crate::cluster::wire::Incarnation;

/// A room whose rendezvous node among `a` and `b` is `node`.
fn room_of(node: &str) -> String {
    (0..)
        .map(|i| format!("r{i}@conference.localhost"))
        .find(|k| rendezvous(k, ["a", "b"]) == Some(node))
        .unwrap()
}

fn b() -> Incarnation {
    Incarnation {
        node: "b".into(),
        id: 2,
    }
}

/// Node `a` with member `b` at slot 0, and what the MUC-like callbacks were told.
fn node_a() -> (Shard, LinkRc, Rc<RefCell<Vec<String>>>) {
    let (mut shard, link) = shard_and_link("a");
    link.borrow_mut()
        .table
        .apply(&Change::Joined { slot: 0, who: b() });
    let told = Rc::new(RefCell::new(Vec::new()));
    let (t1, t2, t3) = (told.clone(), told.clone(), told.clone());
    let callbacks = Callbacks {
        evict: Rc::new(move |_, k| t1.borrow_mut().push(format!("evict {k}"))),
        lost: Rc::new(move |_, ks| t2.borrow_mut().push(format!("lost {ks:?}"))),
        left: Rc::new(move |_, at| t3.borrow_mut().push(format!("left {}", at.0))),
    };
    register(&mut shard, "conference.localhost", callbacks);
    (shard, link, told)
}

#[test]
fn an_unknown_object_goes_to_its_rendezvous_node_which_serves_it() {
    let (mut shard, link, _) = node_a();
    // b's to serve: published to b's shard 0, numbered, a copy kept.
    let theirs = room_of("b");
    assert!(place(&mut shard, &theirs, chat(&theirs, "hi")).is_none());
    let out = output(&link);
    assert!(
        out.contains("PUB petrel.t.n.b.0 petrel.t.r.a.1.0.0.0.1 "),
        "{out}"
    );
    assert!(
        out.contains(&format!("R\n{theirs}\nalice@localhost/a\n")),
        "{out}"
    );
    assert_eq!(link.borrow().unacked_len, 1);
    // Ours: served here. Sent here by another node: served here whatever the rendezvous says.
    let ours = room_of("a");
    assert!(place(&mut shard, &ours, chat(&ours, "hi")).is_some());
    let mut acc = chat(&theirs, "hi");
    acc.put(FROM_NODE, ());
    assert!(place(&mut shard, &theirs, acc).is_some());
    assert!(output(&link).is_empty());
}

#[test]
fn the_registry_follows_announcements_conflicts_and_deaths() {
    let (mut shard, link, told) = node_a();
    // A room of a's rendezvous lives on b (b created it when a was not a member yet): the
    // registry sends its stanzas there.
    let key = room_of("a");
    let owned = |key: &str, since| Record::Owned {
        from: b(),
        key: key.to_owned(),
        shard: 1,
        since,
        info: format!("{key} on b"),
    };
    apply(&mut shard, 0, owned(&key, 1));
    assert!(place(&mut shard, &key, chat(&key, "hi")).is_none());
    assert!(output(&link).contains("PUB petrel.t.n.b.0 "));
    // Disowned: unknown again, so a's to serve.
    let gone = Record::Disowned {
        from: b(),
        key: key.clone(),
    };
    apply(&mut shard, 0, gone);
    assert!(place(&mut shard, &key, chat(&key, "hi")).is_some());

    // Two copies: a announced its own (live since now); b's announcement crosses it. The
    // older copy stays, whichever node the rendezvous prefers; the other gives way.
    for (key, b_since, a_wins) in [(room_of("b"), u64::MAX, true), (room_of("a"), 1, false)] {
        told.borrow_mut().clear();
        assert!(announce(&mut shard, &key));
        assert!(output(&link).contains(&format!("O\na\n1\n{key}\n0\n")));
        apply(&mut shard, 0, owned(&key, b_since));
        let served_here = place(&mut shard, &key, chat(&key, "hi")).is_some();
        assert_eq!(served_here, a_wins, "{key}");
        let evicted = vec![format!("evict {key}")];
        assert_eq!(*told.borrow() == evicted, !a_wins, "{:?}", told.borrow());
    }
    // What the service says of an object living here goes out when it changes, not again.
    let mine = room_of("b");
    describe(&mut shard, &mine, "Our\nRoom");
    let out = output(&link);
    assert!(
        out.contains(&format!("{mine}\n0\n")) && out.contains("\nOur Room\n"),
        "{out}"
    );
    describe(&mut shard, &mine, "Our\nRoom");
    assert!(output(&link).is_empty());
    // What b says of its objects is known here.
    assert_eq!(
        listed_elsewhere(&shard, "conference.localhost"),
        [(room_of("a"), format!("{} on b", room_of("a")))]
    );

    // Sync answers name the objects living here.
    let mut batch = Vec::new();
    owned_records(&shard, &link.borrow().node.me.clone(), &mut batch);
    let recs = Record::decode_all(&batch).unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");

    // A copy made here while the registry already placed an older one on b gives way.
    let late = room_of("a");
    apply(&mut shard, 0, owned(&late, 1));
    assert!(!announce(&mut shard, &late));
    assert!(!output(&link).contains(&format!("O\na\n1\n{late}\n")));
    assert!(place(&mut shard, &late, chat(&late, "hi")).is_none());

    // Of two copies live since the same instant, the preferred node's stays.
    for k in [room_of("a"), room_of("b")] {
        assert_eq!(stays(&k, (5, "a"), (5, "b")), prefers(&k, "a", "b"));
        assert!(stays(&k, (4, "a"), (5, "b")) && !stays(&k, (5, "a"), (4, "b")));
    }

    // b dies: its objects leave the registry, the module hears which, and of the death.
    told.borrow_mut().clear();
    let lost = room_of("a");
    link.borrow_mut()
        .table
        .apply(&Change::Died { slot: 0, who: b() });
    purge(&mut shard, 0);
    assert_eq!(
        *told.borrow(),
        [
            format!("lost [{lost:?}]"),
            format!("left {}", origin_of(0).0)
        ]
    );
    assert!(place(&mut shard, &lost, chat(&lost, "hi")).is_some());
}

#[test]
fn a_stanza_from_another_node_reaches_the_service_marked_with_its_sender() {
    let (mut shard, link, _) = node_a();
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    shard.register_route(
        "conference.localhost",
        Rc::new(move |_, acc: Acc| {
            *g.borrow_mut() = Some((acc.get(FROM_NODE).is_some(), acc.origin_shard));
        }),
    );
    let rec = Record::ToObject {
        key: "r@conference.localhost".into(),
        from: crate::jid::Jid::parse("bob@localhost/b").unwrap(),
        to: crate::jid::Jid::parse("r@conference.localhost/bob").unwrap(),
        reroutes: 0,
        stanza: b"<presence/>".to_vec(),
    };
    let msg = crate::cluster::nats::Msg {
        subject: "petrel.t.n.a.0".into(),
        sid: crate::cluster::sid::STANZAS,
        reply: Some("petrel.t.r.b.2.1.0.0.7".into()),
        status: None,
        payload: rec.encode(),
    };
    crate::cluster::link::on_msg(&link, &mut shard, msg);
    assert_eq!(*got.borrow(), Some((true, origin_of(0))));
    // Its route ended (the handler dropped it): acknowledged to b's inbox.
    shard.take_outgoing();
    let out = output(&link);
    assert!(out.contains("PUB petrel.t.r.b.2.1.0.0.7 "), "{out}");
}

#[test]
fn rendezvous_agrees_and_moves_only_what_it_must() {
    let nodes = ["n1", "n2", "n3"];
    let keys: Vec<String> = (0..300).map(|i| format!("r{i}@conference.x")).collect();
    let mut per = HashMap::<&str, usize>::default();
    for k in &keys {
        let a = rendezvous(k, nodes).unwrap();
        // Order of the candidates does not matter.
        assert_eq!(rendezvous(k, nodes.iter().rev().copied()), Some(a));
        *per.entry(a).or_default() += 1;
        // A node leaving moves only its own keys.
        let without_n3 = rendezvous(k, ["n1", "n2"]).unwrap();
        if a != "n3" {
            assert_eq!(without_n3, a, "{k}");
        }
        // `prefers` orders nodes as rendezvous picks.
        for n in nodes {
            if n != a {
                assert!(prefers(k, a, n) && !prefers(k, n, a));
            }
        }
    }
    // Spread over every node (300 keys: each gets some).
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|&c| c > 50), "{per:?}");
    assert_eq!(rendezvous("k", std::iter::empty()), None);
}

#[test]
fn weights_are_fixed_across_builds() {
    // `printf 'n1\0room@conference.localhost' | sha256sum`, first 8 bytes: the same on every
    // node whatever its platform; a change here would split a mixed-version cluster.
    assert_eq!(
        weight("n1", "room@conference.localhost"),
        0xdea2_ab53_beaa_db27
    );
    assert_ne!(weight("n1", "a@x"), weight("n2", "a@x"));
}
