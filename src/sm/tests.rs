//! The location cache (`sm::locations`): sans-IO, then across shards whose rings deliver in
//! orders the tests choose (the `Cluster` harness delivers at once; here each ordered pair of
//! shards is a FIFO ring the test drains).

use std::rc::Rc;

use super::locations::{Locations, Step, Then, ASK_AGAIN_AFTER, MAX_ENTRIES, MAX_HELD};
use crate::c2s::route::{unbind, user_send, Session};
use crate::hooks::Acc;
use crate::jid::{FullJid, Jid};
use crate::shard::cluster::{Cluster, Rings};
use crate::shard::{home_shard_of, ConnId, ConnMsg, Mailbox, SessionRef, ShardId};
use crate::testing::Rng;
use crate::xml::Stanza;

const HOST: &str = "example.com";

fn chat(to: &str, body: &str) -> Acc {
    let s = Stanza::parse(
        format!(
            "<message from='a@example.com/r' to='{to}' type='chat'><body>{body}</body></message>"
        )
        .into_bytes(),
    )
    .expect("a well-formed stanza");
    let from = Jid::parse("a@example.com/r").expect("a valid JID");
    let to = Jid::parse(to).expect("a valid JID");
    Acc::new(s, from, to, ShardId(0))
}

fn body(acc: &Acc) -> String {
    let b = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
    let start = b.find("<body>").map(|i| i + 6).unwrap_or(0);
    let end = b.find("</body>").unwrap_or(b.len());
    b[start..end].to_owned()
}

fn at(shard: u16, conn: u64) -> SessionRef {
    SessionRef {
        shard: ShardId(shard),
        conn: ConnId(conn),
    }
}

const BOB: &str = "bob@example.com/r";

fn bob() -> FullJid {
    FullJid::parse(BOB).expect("a valid JID")
}

/// The question a stanza sent home carries (panics when it went another way or asks nothing).
fn asks(step: Step, here: ShardId) -> u32 {
    match step {
        Step::Home(acc) => {
            let ask = acc.locate_for.expect("a question");
            assert_eq!(ask.by, here);
            ask.id
        }
        other => panic!("{other:?}"),
    }
}

/// True when the stanza went home without a question.
fn plain_home(step: &Step) -> bool {
    matches!(step, Step::Home(acc) if acc.locate_for.is_none())
}

#[test]
fn the_first_stanza_asks_the_next_wait_and_follow_the_answer() {
    let mut l = Locations::default();
    let here = ShardId(0);
    let q = asks(l.route(chat(BOB, "1"), here), here);
    for i in 2..=4 {
        assert!(matches!(
            l.route(chat(BOB, &i.to_string()), here),
            Step::Held
        ));
    }
    let (then, held) = l.located(&bob(), q, Some(at(2, 7)));
    assert_eq!(then, Then::Direct(at(2, 7)));
    let bodies: Vec<String> = held.iter().map(body).collect();
    assert_eq!(bodies, ["2", "3", "4"]);
    match l.route(chat(BOB, "5"), here) {
        Step::Direct(s, acc) => {
            assert_eq!(s, at(2, 7));
            assert_eq!(acc.locate_for, None);
        }
        other => panic!("{other:?}"),
    }
    // Another session is forgotten without effect.
    assert_eq!(l.forget(&bob(), at(2, 8)), 0);
    assert!(matches!(l.route(chat(BOB, "6"), here), Step::Direct(..)));
    // This one: later stanzas wait for the drain's answer, then go through the home shard.
    let drain = l.forget(&bob(), at(2, 7));
    assert_ne!(drain, 0);
    assert!(matches!(l.route(chat(BOB, "7"), here), Step::Held));
    let (then, held) = l.located(&bob(), drain, None);
    assert_eq!(then, Then::Home);
    assert_eq!(held.iter().map(body).collect::<Vec<_>>(), ["7"]);
    assert!(plain_home(&l.route(chat(BOB, "8"), here)));
}

#[test]
fn no_session_to_go_to_sends_through_the_home_shard_and_asks_again_later() {
    let mut l = Locations::default();
    let here = ShardId(1);
    let q = asks(l.route(chat(BOB, "1"), here), here);
    assert!(matches!(l.route(chat(BOB, "2"), here), Step::Held));
    let (then, held) = l.located(&bob(), q, None);
    assert_eq!(then, Then::Home);
    assert_eq!(held.len(), 1);
    for _ in 0..ASK_AGAIN_AFTER {
        assert!(plain_home(&l.route(chat(BOB, "x"), here)));
    }
    let q = asks(l.route(chat(BOB, "ask"), here), here);
    // A session on this very shard is kept too (a resumed one has no local binding).
    let (then, _) = l.located(&bob(), q, Some(at(1, 3)));
    assert_eq!(then, Then::Direct(at(1, 3)));
    assert!(matches!(l.route(chat(BOB, "here"), here), Step::Direct(s, _) if s == at(1, 3)));
    // Not one on another node of a cluster.
    let mut l = Locations::default();
    let q = asks(l.route(chat(BOB, "ask"), here), here);
    let (then, _) = l.located(&bob(), q, Some(SessionRef::remote(1, 0, 9)));
    assert_eq!(then, Then::Home);
}

#[test]
fn an_answer_after_the_session_was_forgotten_is_not_kept() {
    let mut l = Locations::default();
    let here = ShardId(0);
    let q = asks(l.route(chat(BOB, "1"), here), here);
    assert!(matches!(l.route(chat(BOB, "2"), here), Step::Held));
    // The home shard's "gone" overtook the answer (they travel different rings).
    assert_eq!(
        l.forget(&bob(), at(2, 7)),
        q,
        "the drain carries the open question"
    );
    let (then, held) = l.located(&bob(), q, Some(at(2, 7)));
    assert_eq!(then, Then::Home);
    assert_eq!(held.len(), 1);
    assert!(plain_home(&l.route(chat(BOB, "3"), here)));
    // The drain's answer comes second and finds nothing to release.
    let (_, held) = l.located(&bob(), q, None);
    assert!(held.is_empty());
}

#[test]
fn a_late_answer_to_an_earlier_question_releases_nothing() {
    let mut l = Locations::default();
    let here = ShardId(0);
    let first = asks(l.route(chat(BOB, "1"), here), here);
    // Waiting grows too long: the held ones go home; later, a new question.
    for i in 0..=MAX_HELD {
        l.route(chat(BOB, &i.to_string()), here);
    }
    for _ in 0..ASK_AGAIN_AFTER {
        assert!(plain_home(&l.route(chat(BOB, "x"), here)));
    }
    let second = asks(l.route(chat(BOB, "again"), here), here);
    assert_ne!(first, second);
    assert!(matches!(l.route(chat(BOB, "waits"), here), Step::Held));
    // The first question's answer arrives now: the second may still be on its way home, so
    // what waits for it must not go straight past it.
    let (_, held) = l.located(&bob(), first, Some(at(2, 7)));
    assert!(held.is_empty());
    assert!(matches!(l.route(chat(BOB, "still"), here), Step::Held));
    let (then, held) = l.located(&bob(), second, Some(at(2, 7)));
    assert_eq!(then, Then::Direct(at(2, 7)));
    assert_eq!(
        held.iter().map(body).collect::<Vec<_>>(),
        ["waits", "still"]
    );
}

#[test]
fn waiting_is_bounded_and_a_late_answer_is_ignored() {
    let mut l = Locations::default();
    let here = ShardId(0);
    let q = asks(l.route(chat(BOB, "ask"), here), here);
    for i in 0..MAX_HELD {
        assert!(matches!(
            l.route(chat(BOB, &i.to_string()), here),
            Step::Held
        ));
    }
    match l.route(chat(BOB, "last"), here) {
        Step::Release(accs) => {
            assert_eq!(accs.len(), MAX_HELD + 1);
            assert_eq!(body(&accs[0]), "0");
            assert_eq!(body(&accs[MAX_HELD]), "last");
        }
        other => panic!("{other:?}"),
    }
    // The answer comes after the waiting ones went home: nothing is held, nothing is learnt.
    let (then, held) = l.located(&bob(), q, Some(at(2, 7)));
    assert_eq!(then, Then::Home);
    assert!(held.is_empty());
    assert!(plain_home(&l.route(chat(BOB, "after"), here)));
}

#[test]
fn the_cache_is_bounded() {
    let mut l = Locations::default();
    let here = ShardId(0);
    for i in 0..MAX_ENTRIES {
        let to = format!("u{i}@example.com/r");
        asks(l.route(chat(&to, "x"), here), here);
    }
    assert_eq!(l.len(), MAX_ENTRIES);
    let over = l.route(chat(BOB, "over"), here);
    assert!(plain_home(&over), "not asked: no room to keep it");
    assert_eq!(l.len(), MAX_ENTRIES);
}

/// Shards joined by FIFO rings that the test drains in the order it picks.
struct Net {
    c: Cluster,
    rings: Rings,
}

/// A bound user.
struct User {
    sess: Session,
    mb: Rc<Mailbox>,
    on: usize,
}

impl Net {
    fn new(shards: usize) -> Net {
        Net {
            c: Cluster::new(shards, &[HOST]),
            rings: Rings::default(),
        }
    }

    fn connect(&mut self, jid: &str, on: usize) -> User {
        let jid = FullJid::parse(jid).expect("a valid JID");
        let (sess, mb) = self.c.connect(on, &jid, Some(0));
        User { sess, mb, on }
    }

    /// Moves what the shards queued for each other onto the rings.
    fn collect(&mut self) {
        self.rings.collect(&mut self.c);
    }

    fn send(&mut self, u: &mut User, to: &str, body: &str) {
        let mut st = Stanza::parse(
            format!("<message to='{to}' type='chat'><body>{body}</body></message>").into_bytes(),
        )
        .expect("a well-formed stanza");
        st.set_from(u.sess.jid.as_str());
        user_send(&mut self.c.shards[u.on], &mut u.sess, st);
        self.collect();
    }

    /// Delivers the oldest message of ring `from` -> `to`; false when it is empty.
    fn step(&mut self, from: usize, to: usize) -> bool {
        self.rings.step(&mut self.c, from, to)
    }

    /// Rings with something queued.
    fn busy(&self) -> Vec<(usize, usize)> {
        self.rings.busy()
    }

    /// Drains every ring, picking the next ring at random.
    fn drain(&mut self, rng: &mut Rng) {
        while self.rings.step_any(&mut self.c, |n| rng.next(n)) {}
    }

    fn direct(&self) -> u64 {
        self.c.shards.iter().map(|s| s.stats.direct).sum()
    }
}

/// Bodies delivered into `mb` so far.
fn received(mb: &Mailbox) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(msg) = mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            out.push(body(&acc));
        }
    }
    out
}

/// A user name whose home shard is `home` of `n`.
fn homed(n: usize, home: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|u| home_shard_of(&format!("{u}@{HOST}"), n).index() == home)
        .expect("some name hashes there")
}

/// Three shards: alice on shard 0; bob, whose home is shard 1, bound on shard 2 (a stanza from
/// alice to bob's full JID, the last value, crosses twice through the home shard).
fn three_shards() -> (Net, User, User, String) {
    let mut net = Net::new(3);
    let b = homed(3, 1, "bob");
    let to = format!("{b}@{HOST}/r");
    let alice = net.connect(&format!("{}@{HOST}/r", homed(3, 2, "alice")), 0);
    let bob = net.connect(&to, 2);
    (net, alice, bob, to)
}

#[test]
fn a_known_recipient_gets_messages_without_the_home_hop() {
    let (mut net, mut alice, bob, to) = three_shards();
    net.send(&mut alice, &to, "1");
    assert_eq!(
        net.busy(),
        [(0, 1)],
        "the first one asks through the home shard"
    );
    net.drain(&mut Rng(7));
    net.send(&mut alice, &to, "2");
    assert_eq!(
        net.busy(),
        [(0, 2)],
        "the second one goes straight to bob's shard"
    );
    net.drain(&mut Rng(7));
    assert_eq!(received(&bob.mb), ["1", "2"]);
    assert_eq!(net.direct(), 1);
    // Bare-JID messages still choose the resource on the home shard.
    net.send(&mut alice, bob.sess.jid.bare().as_str(), "3");
    assert_eq!(net.busy(), [(0, 1)]);
    net.drain(&mut Rng(7));
    assert_eq!(received(&bob.mb), ["3"]);
}

#[test]
fn messages_sent_while_asking_wait_behind_the_asking_one() {
    let (mut net, mut alice, bob, to) = three_shards();
    net.send(&mut alice, &to, "1");
    // The home shard passes the first on towards bob's shard, where it lags in the ring.
    assert!(net.step(0, 1));
    assert_eq!(net.busy(), [(1, 2)]);
    net.send(&mut alice, &to, "2");
    net.send(&mut alice, &to, "3");
    assert_eq!(
        net.busy(),
        [(1, 2)],
        "held on alice's shard, not sent past the first"
    );
    assert!(net.step(1, 2));
    assert_eq!(
        net.busy(),
        [(2, 0)],
        "bob's shard answers once the first is in the mailbox"
    );
    assert!(net.step(2, 0));
    assert_eq!(net.busy(), [(0, 2)]);
    net.drain(&mut Rng(1));
    assert_eq!(received(&bob.mb), ["1", "2", "3"]);
    assert_eq!(net.direct(), 2);
}

/// Eight users on random shards send 600 messages to random others, interleaved at random with ring
/// steps, to full JIDs or (`mixed`) to bare or full ones at random; every recipient gets each
/// sender's messages once and in order. Gives how many went straight.
fn random_traffic_keeps_every_senders_order(shards: usize, seed: u64, mixed: bool) -> u64 {
    let mut rng = Rng(seed);
    let mut net = Net::new(shards);
    let mut users: Vec<User> = (0..8)
        .map(|i| {
            let on = rng.next(shards);
            net.connect(&format!("u{i}@{HOST}/r"), on)
        })
        .collect();
    let mut sent: Vec<Vec<(usize, usize)>> = vec![Vec::new(); users.len()];
    for seq in 0..600 {
        // Sends and ring steps interleave at random, so answers and held stanzas race.
        if rng.below(3) == 0 {
            let busy = net.busy();
            if !busy.is_empty() {
                let (f, t) = busy[rng.next(busy.len())];
                net.step(f, t);
            }
            continue;
        }
        let from = rng.next(users.len());
        let to = rng.next(users.len());
        // RFC 6120 §10.1: bare and full addresses of one recipient are one order.
        let jid = if mixed && rng.below(2) == 0 {
            users[to].sess.jid.bare().as_str().to_owned()
        } else {
            users[to].sess.jid.to_string()
        };
        net.send(&mut users[from], &jid, &format!("{from}:{seq}"));
        sent[to].push((from, seq));
    }
    net.drain(&mut rng);
    for (to, u) in users.iter().enumerate() {
        let got: Vec<(usize, usize)> = received(&u.mb)
            .iter()
            .map(|b| {
                let (f, s) = b.split_once(':').expect("from:seq");
                (f.parse().expect("a number"), s.parse().expect("a number"))
            })
            .collect();
        for from in 0..users.len() {
            let want: Vec<usize> = sent[to]
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, s)| *s)
                .collect();
            let had: Vec<usize> = got
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(had, want, "shards {shards}, seed {seed}: u{from} -> u{to}");
        }
    }
    net.direct()
}

#[test]
fn any_ring_order_keeps_every_senders_order_and_loses_nothing() {
    for (shards, seed) in [(2, 11), (3, 12), (4, 13), (4, 14), (5, 15)] {
        let direct = random_traffic_keeps_every_senders_order(shards, seed, false);
        assert!(direct > 0, "shards {shards}: no stanza went straight");
    }
}

#[test]
fn any_ring_order_keeps_every_senders_order_to_bare_and_full_jids_alike() {
    // Two shards: a full-JID stanza sent straight goes on the same ring as one through the home
    // shard, or is delivered at once on the sender's shard. From three up, one sent straight and
    // a later one on the home path take different rings: the later one waits (`shard::fence`).
    for seed in 21..61 {
        random_traffic_keeps_every_senders_order(2 + (seed as usize % 4), seed, true);
    }
}

#[test]
fn a_session_that_ended_is_forgotten_and_its_stanzas_follow_the_next_one() {
    let (mut net, mut alice, bob, to) = three_shards();
    net.send(&mut alice, &to, "1");
    net.drain(&mut Rng(3));
    assert_eq!(received(&bob.mb), ["1"]);
    // Sent straight to bob's old connection, which closes before it arrives.
    net.send(&mut alice, &to, "2");
    assert_eq!(net.busy(), [(0, 2)]);
    {
        let shard = &mut net.c.shards[2];
        shard.close_conn(bob.sess.session.conn);
        unbind(shard, &bob.sess);
    }
    net.collect();
    // Bob is back on shard 1 (his home), same resource, before anything else moves.
    let (conn, mb) = net.c.shards[1].open_conn();
    let sref = net.c.shards[1].session_ref(conn);
    crate::c2s::route::bind(
        &mut net.c.shards[1],
        bob.sess.jid.clone(),
        sref,
        std::time::Instant::now(),
    );
    net.collect();
    // Unregister (2 -> 1) and the new bind run at home; the stale stanza arrives after.
    assert!(net.step(2, 1));
    assert!(net.step(0, 2));
    net.drain(&mut Rng(3));
    net.c.shards[1].local_bind(bob.sess.jid.clone(), conn);
    let delivered: Vec<String> = received(&mb);
    assert_eq!(
        delivered,
        ["2"],
        "the stanza sent to the gone connection is re-routed"
    );
    // Alice's shard was told: the next stanza asks again and reaches the new session.
    net.send(&mut alice, &to, "3");
    assert_eq!(net.busy(), [(0, 1)]);
    net.drain(&mut Rng(3));
    assert_eq!(received(&mb), ["3"]);
    net.send(&mut alice, &to, "4");
    net.drain(&mut Rng(3));
    assert_eq!(received(&mb), ["4"]);
}

#[test]
fn an_asking_stanza_that_finds_its_session_gone_stays_ahead_of_the_waiting_ones() {
    let (mut net, mut alice, bob, to) = three_shards();
    net.send(&mut alice, &to, "1");
    // The home shard sends the asking stanza on towards bob's shard 2.
    assert!(net.step(0, 1));
    net.send(&mut alice, &to, "2");
    net.send(&mut alice, &to, "3");
    // Bob's connection on shard 2 goes, and he binds again on shard 1 (his home) first.
    {
        let shard = &mut net.c.shards[2];
        shard.close_conn(bob.sess.session.conn);
        unbind(shard, &bob.sess);
    }
    net.collect();
    assert!(net.step(2, 1), "the unregister");
    let (conn, mb) = net.c.shards[1].open_conn();
    let sref = net.c.shards[1].session_ref(conn);
    crate::c2s::route::bind(
        &mut net.c.shards[1],
        bob.sess.jid.clone(),
        sref,
        std::time::Instant::now(),
    );
    net.collect();
    net.c.shards[1].local_bind(bob.sess.jid.clone(), conn);
    // The bind's answer.
    let _ = mb.pop();
    // The asking stanza reaches the gone connection and is re-routed; then every ring towards or
    // from alice's shard goes first, the re-routed stanza's ring last.
    assert!(net.step(1, 2));
    let order = [(2, 0), (1, 0), (0, 1), (0, 2), (2, 1), (1, 2)];
    while let Some(&(f, t)) = order.iter().find(|r| net.busy().contains(r)) {
        net.step(f, t);
    }
    assert_eq!(received(&mb), ["1", "2", "3"]);
}

#[test]
fn a_session_bound_on_its_home_shard_is_forgotten_when_it_ends() {
    // Two shards: bob is homed and bound on shard 1, alice on shard 0. The home shard delivers
    // the asking stanza through its local fast path; it must still record who learnt the
    // location, or alice's shard keeps sending straight to a connection that is gone.
    let mut net = Net::new(2);
    let to = format!("{}@{HOST}/r", homed(2, 1, "bob"));
    let mut alice = net.connect(&format!("{}@{HOST}/r", homed(2, 0, "alice")), 0);
    let bob = net.connect(&to, 1);
    net.send(&mut alice, &to, "1");
    net.drain(&mut Rng(5));
    net.send(&mut alice, &to, "2");
    assert_eq!(net.busy(), [(0, 1)]);
    net.drain(&mut Rng(5));
    assert_eq!(received(&bob.mb), ["1", "2"]);
    assert_eq!(net.direct(), 1, "the second went straight");
    {
        let shard = &mut net.c.shards[1];
        shard.close_conn(bob.sess.session.conn);
        unbind(shard, &bob.sess);
    }
    net.collect();
    net.drain(&mut Rng(5));
    // Bob binds again, same resource, same shard.
    let again = net.connect(&to, 1);
    drop(received(&again.mb));
    for n in ["3", "4"] {
        net.send(&mut alice, &to, n);
        net.drain(&mut Rng(5));
    }
    assert_eq!(received(&again.mb), ["3", "4"]);
    let rerouted: u64 = net.c.shards.iter().map(|s| s.stats.rerouted).sum();
    assert_eq!(rerouted, 0, "nothing went to the connection that was gone");
    // Told, alice's shard sends through the home shard until it asks again.
    assert_eq!(net.direct(), 1);
}

/// A user on `net`'s shard `on` whose home is shard `home`.
fn user_homed(net: &mut Net, n: usize, home: usize, prefix: &str, on: usize) -> (User, String) {
    let jid = format!("{}@{HOST}/r", homed(n, home, prefix));
    (net.connect(&jid, on), jid)
}

#[test]
fn bare_and_full_addresses_keep_one_order_on_the_senders_shard() {
    // RFC 6120 §10.1: "treating stanzas addressed to the bare JID and the full JID of the intended
    // recipient as equivalent". Two shards: alice and bob are bound on shard 0, bob's home is
    // shard 1. To his bare JID a message goes 0 -> 1 -> 0; to his full JID it could be delivered
    // on shard 0 at once, ahead of it.
    let mut net = Net::new(2);
    let (mut alice, _) = user_homed(&mut net, 2, 0, "alice", 0);
    let (bob, full) = user_homed(&mut net, 2, 1, "bob", 0);
    let bare = bob.sess.jid.bare().as_str().to_owned();
    for (i, to) in [&bare, &full, &bare, &full, &full].iter().enumerate() {
        net.send(&mut alice, to, &i.to_string());
    }
    net.drain(&mut Rng(9));
    assert_eq!(received(&bob.mb), ["0", "1", "2", "3", "4"]);
    // Once the window has passed, full-JID messages take the fast path again.
    for _ in 0..super::order::WINDOW {
        for s in &mut net.c.shards {
            s.home_paths.tick();
        }
    }
    net.send(&mut alice, &full, "5");
    assert!(net.busy().is_empty(), "delivered on shard 0 at once");
    assert_eq!(received(&bob.mb), ["5"]);
}

#[test]
fn bare_and_full_addresses_keep_one_order_past_the_location_cache() {
    // Three shards: bob homed on 1, bound on 2; alice on 0 knows where he lives, so full-JID
    // messages go 0 -> 2 while bare-JID ones go 0 -> 1 -> 2. Held ones (sent while alice's shard
    // asks) go ahead of a later bare-JID one too.
    for held_first in [false, true] {
        let (mut net, mut alice, bob, full) = three_shards();
        let bare = bob.sess.jid.bare().as_str().to_owned();
        if !held_first {
            net.send(&mut alice, &full, "learn");
            net.drain(&mut Rng(3));
            assert_eq!(received(&bob.mb), ["learn"]);
        }
        let plan = [&full, &full, &bare, &full, &bare, &full];
        for (i, to) in plan.iter().enumerate() {
            net.send(&mut alice, to, &i.to_string());
        }
        // The straight rings first: what went straight would arrive before what went home.
        while net.step(0, 2) {}
        net.drain(&mut Rng(4));
        let want: Vec<String> = (0..plan.len()).map(|i| i.to_string()).collect();
        assert_eq!(received(&bob.mb), want, "held first: {held_first}");
    }
}

#[test]
fn a_stanza_on_the_home_path_waits_for_what_went_straight_before_it() {
    // Three shards, the straight ring lagging: alice's full-JID messages to bob go 0 -> 2, then a
    // bare-JID one (and the full-JID ones behind it) go 0 -> 1 -> 2 and reach shard 2 first. They
    // wait there until shard 2 has taken what came before them on the ring from shard 0.
    let (mut net, mut alice, bob, full) = three_shards();
    let bare = bob.sess.jid.bare().as_str().to_owned();
    net.send(&mut alice, &full, "learn");
    net.drain(&mut Rng(3));
    assert_eq!(received(&bob.mb), ["learn"]);
    let plan = [&full, &full, &bare, &full, &bare];
    for (i, to) in plan.iter().enumerate() {
        net.send(&mut alice, to, &i.to_string());
    }
    assert_eq!(net.busy(), [(0, 1), (0, 2)]);
    while net.step(0, 1) || net.step(1, 2) {}
    assert!(
        received(&bob.mb).is_empty(),
        "nothing overtakes the straight ones"
    );
    assert_eq!(net.c.shards[2].arrivals.parked(), 3);
    assert!(net.step(0, 2));
    assert_eq!(received(&bob.mb), ["0"]);
    assert!(net.step(0, 2));
    assert_eq!(received(&bob.mb), ["1", "2", "3", "4"]);
    assert_eq!(net.c.shards[2].arrivals.parked(), 0);
    // Nothing waits once the straight ring is read: the next bare-JID one goes through.
    net.send(&mut alice, &bare, "5");
    net.drain(&mut Rng(3));
    assert_eq!(received(&bob.mb), ["5"]);
}

#[test]
fn entries_for_jids_without_a_session_leave_after_a_few_seconds() {
    // Messages to full JIDs with no session (ended, never bound) leave "no session to go straight
    // to" entries; they must not stay until the cache is full.
    let mut net = Net::new(2);
    let (mut alice, _) = user_homed(&mut net, 2, 0, "alice", 0);
    let (bob, _) = user_homed(&mut net, 2, 1, "bob", 1);
    for i in 0..10 {
        let to = format!("{}/gone{i}", bob.sess.jid.bare());
        net.send(&mut alice, &to, "x");
    }
    net.drain(&mut Rng(2));
    // RFC 6121 §8.5.3.2.1: to a resource with no session, a message goes by the bare JID's rules.
    assert_eq!(received(&bob.mb).len(), 10);
    assert_eq!(net.c.shards[0].locations.len(), 10);
    for _ in 0..2 * super::locations::HOME_FOR {
        net.c.shards[0].locations.tick();
    }
    assert_eq!(net.c.shards[0].locations.len(), 0);
    // Bob's own JID still learns and goes straight.
    let full = bob.sess.jid.to_string();
    net.send(&mut alice, &full, "1");
    net.drain(&mut Rng(2));
    net.send(&mut alice, &full, "2");
    net.drain(&mut Rng(2));
    assert_eq!(received(&bob.mb), ["1", "2"]);
    assert_eq!(net.direct(), 1);
}
