//! The hand-over protocol on in-process shards: rings delivered one message at a time in random
//! interleavings (each ring stays FIFO), senders on every shard, the old session parked: every
//! stanza must end up exactly once, in per-sender order, in the resumed session.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::park::Park;
use super::*;
use crate::c2s::route::{user_send, Session};
use crate::c2s::{SmConfig, SmState, Unacked};
use crate::jid::FullJid;
use crate::shard::cluster::{Cluster, Rings};
use crate::shard::{ConnMsg, Mailbox, ShardId};
use crate::testing::Rng;
use crate::xml::Stanza;

const HOST: &str = "example.com";

/// Shards whose rings are delivered one message at a time.
struct Net {
    cluster: Cluster,
    rings: Rings,
}

impl Net {
    fn new(n: usize) -> Net {
        let mut cluster = Cluster::new(n, &[HOST]);
        for s in &mut cluster.shards {
            start(s);
        }
        Net {
            cluster,
            rings: Rings::default(),
        }
    }

    /// Delivers the head of one random non-empty ring; false when all are empty.
    fn step(&mut self, rng: &mut Rng) -> bool {
        self.rings.step_any(&mut self.cluster, |n| rng.next(n))
    }
}

/// A parked connection: its mailbox fed to its `Park`.
struct Parked {
    on: usize,
    me: SessionRef,
    mb: Rc<Mailbox>,
    park: Park,
}

impl Parked {
    fn drain(&mut self, net: &mut Net) {
        while let Some(msg) = self.mb.pop() {
            let now = Instant::now();
            self.park
                .on_msg(&mut net.cluster.shards[self.on], self.me, msg, now);
        }
    }
}

fn cfg() -> SmConfig {
    SmConfig {
        buffer_max: 100_000,
        ack_freq: 1_000_000,
        resume_timeout: Duration::from_secs(60),
        id_prefix: None,
    }
}

fn msg(to: &str, body: &str) -> Stanza {
    Stanza::parse(
        format!("<message to='{to}' type='chat'><body>{body}</body></message>").into_bytes(),
    )
    .unwrap()
}

fn body(bytes: &[u8]) -> String {
    let s = Stanza::parse(bytes.to_vec()).unwrap();
    let t = s.tree().unwrap();
    t.get_child("body", crate::xmpp::ns::CLIENT)
        .map(|b| b.text().to_string())
        .unwrap_or_default()
}

/// Binds `jid` on shard `on` (available) and parks it as a detached resumable session `id`.
fn park_session(net: &mut Net, on: usize, jid: &FullJid, id: &str) -> Parked {
    let (sess, mb) = net.cluster.connect(on, jid, Some(0));
    enabled(
        &mut net.cluster.shards[on],
        jid,
        sess.session,
        id.to_string(),
    );
    net.cluster.pump();
    let sm = Box::new(SmState::new(cfg(), Some(id.to_string())));
    net.cluster.shards[on].local_unbind(jid, sess.session.conn);
    Parked {
        on,
        me: sess.session,
        mb,
        park: Park::detach(sess, sm, None, Instant::now()),
    }
}

/// A new connection on shard `on` that asked to resume `id` as `bare` and lost its socket at once
/// (so it parks as `Awaiting` and keeps whatever is handed over).
fn resumer(net: &mut Net, on: usize, bare: &str, id: &str, h: u32) -> Parked {
    let (conn, mb) = net.cluster.shards[on].open_conn();
    let me = net.cluster.shards[on].session_ref(conn);
    let bare = crate::jid::BareJid::parse(bare).unwrap();
    resume_request(
        &mut net.cluster.shards[on],
        bare,
        id.to_string(),
        h,
        me,
        cfg(),
    );
    Parked {
        on,
        me,
        mb,
        park: Park::awaiting(Instant::now(), Vec::new()),
    }
}

fn buffered(p: &Parked) -> Vec<String> {
    match &p.park {
        Park::Detached(d) => d.sm.unacked().map(|u| body(u.bytes())).collect(),
        other => panic!("not detached: {other:?}"),
    }
}

#[test]
fn handover_keeps_every_stanza_once_and_in_order_under_any_interleaving() {
    // From 4 shards up the old connection, the home shard and the new connection can all differ:
    // the home shard's first stanza for the new connection may overtake the old one's hand-over.
    for seed in 1..=60u64 {
        for shards in [1usize, 2, 3, 4, 5] {
            run_interleaving(seed, shards);
        }
    }
}

fn run_interleaving(seed: u64, shards: usize) {
    let mut rng = Rng(seed * 7919 + shards as u64);
    let mut net = Net::new(shards);
    let to = format!("u{seed}@{HOST}/phone");
    let jid = FullJid::parse(&to).unwrap();
    let mut old = park_session(&mut net, rng.next(shards), &jid, "ID1");
    let mut senders: Vec<(usize, Session)> = (0..shards.max(2))
        .map(|i| {
            let on = i % shards;
            let s = FullJid::parse(&format!("s{i}@{HOST}/r")).unwrap();
            let (sess, _) = net.cluster.connect(on, &s, Some(0));
            (on, sess)
        })
        .collect();
    let mut next_seq = vec![0u32; senders.len()];
    let mut new: Option<Parked> = None;
    let resume_at = 10 + rng.next(40);
    for step in 0..200 {
        if step == resume_at {
            let on = rng.next(shards);
            new = Some(resumer(&mut net, on, &format!("u{seed}@{HOST}"), "ID1", 0));
        }
        match rng.next(4) {
            0 => {
                let i = rng.next(senders.len());
                let (on, sess) = &mut senders[i];
                let b = format!("{i}:{}", next_seq[i]);
                next_seq[i] += 1;
                user_send(&mut net.cluster.shards[*on], sess, msg(&to, &b));
            }
            1 => old.drain(&mut net),
            2 => {
                if let Some(n) = new.as_mut() {
                    n.drain(&mut net)
                }
            }
            _ => {
                net.step(&mut rng);
            }
        }
    }
    // Quiesce.
    loop {
        let mut busy = net.step(&mut rng);
        busy |= !old.mb.is_empty() || new.as_ref().is_some_and(|n| !n.mb.is_empty());
        old.drain(&mut net);
        if let Some(n) = new.as_mut() {
            n.drain(&mut net);
        }
        if !busy {
            break;
        }
    }
    let new = new.expect("resumed");
    assert!(old.park.is_done(), "old session still {:?}", old.park);
    let got = buffered(&new);
    if let Park::Detached(d) = &new.park {
        assert!(d.hold.is_none(), "hand-over not completed");
    }
    let mut last: HashMap<usize, i64> = HashMap::new();
    for b in &got {
        let (i, k) = b.split_once(':').unwrap();
        let (i, k): (usize, i64) = (i.parse().unwrap(), k.parse().unwrap());
        let prev = last.insert(i, k).unwrap_or(-1);
        assert_eq!(
            k,
            prev + 1,
            "seed {seed} shards {shards}: out of order or lost: {got:?}"
        );
    }
    for (i, n) in next_seq.iter().enumerate() {
        assert_eq!(
            last.get(&i).copied().unwrap_or(-1),
            i64::from(*n) - 1,
            "seed {seed} shards {shards}: sender {i} lost messages: {got:?}"
        );
    }
    // The home shard routes to the new connection now.
    let home = home_shard(&jid.bare(), shards).index();
    let r = net.cluster.shards[home].sm.resources(&jid.bare());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].session, new.me);
    assert_eq!(r[0].priority, Some(0), "availability kept across the move");
}

#[test]
fn resume_of_another_users_id_fails_and_leaves_it_alone() {
    let mut net = Net::new(2);
    let jid = FullJid::parse(&format!("alice@{HOST}/a")).unwrap();
    let mut old = park_session(&mut net, 0, &jid, "ALICE");
    let mut mallory = resumer(&mut net, 1, &format!("mallory@{HOST}"), "ALICE", 0);
    net.cluster.pump();
    old.drain(&mut net);
    net.cluster.pump();
    mallory.drain(&mut net);
    assert!(mallory.park.is_done(), "mallory got {:?}", mallory.park);
    assert!(matches!(old.park, Park::Detached(_)));
    // Alice herself still can.
    let mut alice = resumer(&mut net, 1, &format!("alice@{HOST}"), "ALICE", 0);
    for _ in 0..4 {
        net.cluster.pump();
        old.drain(&mut net);
        alice.drain(&mut net);
    }
    assert!(old.park.is_done());
    assert!(matches!(alice.park, Park::Detached(_)));
}

#[test]
fn unknown_id_fails_and_resume_twice_fails_the_second() {
    let mut net = Net::new(2);
    let mut x = resumer(&mut net, 0, &format!("bob@{HOST}"), "NOPE", 0);
    net.cluster.pump();
    x.drain(&mut net);
    assert!(x.park.is_done());
    let jid = FullJid::parse(&format!("bob@{HOST}/b")).unwrap();
    let mut old = park_session(&mut net, 1, &jid, "B");
    let mut first = resumer(&mut net, 0, &format!("bob@{HOST}"), "B", 0);
    for _ in 0..4 {
        net.cluster.pump();
        old.drain(&mut net);
        first.drain(&mut net);
    }
    assert!(matches!(first.park, Park::Detached(_)));
    // `first` now owns the session; a live session refuses (here it is parked, so it would hand
    // over: simulate the live refusal through `refuse`).
    let (conn, mb) = net.cluster.shards[1].open_conn();
    let me = net.cluster.shards[1].session_ref(conn);
    park::refuse(
        &mut net.cluster.shards[0],
        SmConnMsg::Takeover(Takeover {
            id: "B".into(),
            h: 0,
            to: Requester::Local(me),
        }),
    );
    net.cluster.pump();
    assert!(matches!(
        mb.pop().map(ConnMsg::downcast_ext::<SmConnMsg>),
        Some(Ok(SmConnMsg::Failed(ResumeError::ItemNotFound)))
    ));
}

#[test]
fn h_too_high_on_resume_fails_and_keeps_the_session() {
    let mut net = Net::new(2);
    let jid = FullJid::parse(&format!("carol@{HOST}/c")).unwrap();
    let mut old = park_session(&mut net, 0, &jid, "C");
    let mut s = net
        .cluster
        .connect(1, &FullJid::parse(&format!("s@{HOST}/r")).unwrap(), Some(0))
        .0;
    user_send(&mut net.cluster.shards[1], &mut s, msg(jid.as_str(), "one"));
    net.cluster.pump();
    old.drain(&mut net);
    let mut n = resumer(&mut net, 1, &format!("carol@{HOST}"), "C", 5);
    net.cluster.pump();
    old.drain(&mut net);
    net.cluster.pump();
    match n.mb.pop().map(ConnMsg::downcast_ext::<SmConnMsg>) {
        Some(Ok(SmConnMsg::Failed(ResumeError::HandledCountTooHigh { h: 5, sent: 1 }))) => {}
        other => panic!("{other:?}"),
    }
    n.park = Park::Done;
    assert_eq!(buffered(&old), vec!["one"]);
}

#[test]
fn timeout_reroutes_unacked_to_another_resource_then_unregisters() {
    let mut net = Net::new(2);
    let jid = FullJid::parse(&format!("dave@{HOST}/gone")).unwrap();
    let mut old = park_session(&mut net, 0, &jid, "D");
    let other = FullJid::parse(&format!("dave@{HOST}/desk")).unwrap();
    let (_, other_mb) = net.cluster.connect(1, &other, Some(-1));
    let (mut s, s_mb) =
        net.cluster
            .connect(1, &FullJid::parse(&format!("s@{HOST}/r")).unwrap(), Some(0));
    for i in 0..3 {
        user_send(
            &mut net.cluster.shards[1],
            &mut s,
            msg(jid.as_str(), &format!("m{i}")),
        );
    }
    net.cluster.pump();
    old.drain(&mut net);
    assert_eq!(buffered(&old), vec!["m0", "m1", "m2"]);
    let later = Instant::now() + Duration::from_secs(61);
    old.park.on_timeout(&mut net.cluster.shards[0], later);
    net.cluster.pump();
    assert!(old.park.is_done());
    // Full-JID messages to a gone resource go to the bare JID (RFC 6121 §8.5.3.2.1): the other
    // resource has a negative priority, so they are offline messages: the default offline handler
    // answers the sender. Here: the other resource got nothing, the sender got three errors.
    let mut got = Vec::new();
    while let Some(m) = other_mb.pop() {
        if let ConnMsg::Deliver(acc) = m {
            got.push(body(acc.stanza.bytes()));
        }
    }
    assert!(got.is_empty(), "{got:?}");
    let mut errors = Vec::new();
    while let Some(m) = s_mb.pop() {
        if let ConnMsg::Deliver(acc) = m {
            assert_eq!(acc.ty(), crate::xml::StanzaType::Error);
            errors.push(body(acc.stanza.bytes()));
        }
    }
    assert_eq!(
        errors,
        vec!["m0", "m1", "m2"],
        "never dropped: answered in order"
    );
    let home = home_shard(&jid.bare(), 2).index();
    let left: Vec<String> = net.cluster.shards[home]
        .sm
        .resources(&jid.bare())
        .iter()
        .map(|r| r.jid.to_string())
        .collect();
    assert_eq!(left, vec![other.to_string()]);
    let table = net.cluster.shards[home].ext.get_or_default::<ResumeTable>();
    assert!(table.is_empty(), "the resumption id is forgotten");
}

#[test]
fn timeout_reroutes_to_an_available_resource_in_order() {
    let mut net = Net::new(2);
    let jid = FullJid::parse(&format!("erin@{HOST}/gone")).unwrap();
    let mut old = park_session(&mut net, 1, &jid, "E");
    let mut s = net
        .cluster
        .connect(0, &FullJid::parse(&format!("s@{HOST}/r")).unwrap(), Some(0))
        .0;
    for i in 0..3 {
        user_send(
            &mut net.cluster.shards[0],
            &mut s,
            msg(jid.as_str(), &format!("m{i}")),
        );
    }
    net.cluster.pump();
    old.drain(&mut net);
    let other = FullJid::parse(&format!("erin@{HOST}/desk")).unwrap();
    let (_, other_mb) = net.cluster.connect(0, &other, Some(1));
    old.park.on_timeout(
        &mut net.cluster.shards[1],
        Instant::now() + Duration::from_secs(61),
    );
    net.cluster.pump();
    let mut got = Vec::new();
    while let Some(m) = other_mb.pop() {
        if let ConnMsg::Deliver(acc) = m {
            if acc.kind() == crate::xml::StanzaKind::Message {
                got.push(body(acc.stanza.bytes()));
            }
        }
    }
    assert_eq!(got, vec!["m0", "m1", "m2"]);
}

#[test]
fn options_defaults_and_errors() {
    let t: toml::Table = "".parse().unwrap();
    let c = options(Some(&t)).unwrap().unwrap();
    assert_eq!(c, SmConfig::default());
    assert_eq!(options(None).unwrap(), None);
    let t: toml::Table = "resume_timeout = 5\nbuffer_max = 50\nack_freq = 2"
        .parse()
        .unwrap();
    let c = options(Some(&t)).unwrap().unwrap();
    assert_eq!(
        (c.resume_timeout, c.buffer_max, c.ack_freq),
        (Duration::from_secs(5), 50, 2)
    );
    for bad in [
        "buffer_max = 0",
        "ack_freq = 0",
        "nope = 1",
        "resume_timeout = 'x'",
    ] {
        let t: toml::Table = bad.parse().unwrap();
        assert!(options(Some(&t)).is_err(), "{bad}");
    }
    let _ = (ShardId(0), Unacked::Local(Vec::new()));
}

#[test]
fn module_offers_the_feature_after_auth_and_configures_the_c2s() {
    let parse = |modules: &str| {
        let text = format!(
            "[general]\nhosts = [\"{HOST}\"]\n[auth]\nscram_iterations = 4096\n[[listen.c2s]]\nport = 5222\n{modules}"
        );
        crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
    };
    let on =
        crate::modules::c2s_options(&parse("[modules.stream_management]\nbuffer_max = 7")).unwrap();
    assert_eq!(on.sm.map(|c| c.buffer_max), Some(7));
    let features = String::from_utf8_lossy(&on.post_auth_features).into_owned();
    assert!(
        features.contains("<sm xmlns='urn:xmpp:sm:3'/>"),
        "{features}"
    );
    let off = crate::modules::c2s_options(&parse("")).unwrap();
    assert!(off.sm.is_none());
    assert!(!String::from_utf8_lossy(&off.post_auth_features).contains("urn:xmpp:sm"));
    assert!(
        crate::modules::c2s_options(&parse("[modules.stream_management]\nbuffer_max = 0")).is_err()
    );
}

/// This shard as node `a` of a cluster (its NATS output kept for the test to read).
fn as_node_a(shard: &mut crate::shard::Shard) -> crate::cluster::link::LinkRc {
    use crate::cluster::link::{install, Link};
    let node = crate::cluster::link::test_node("a");
    let link = Rc::new(std::cell::RefCell::new(Link::new(Rc::new(node), 0)));
    install(shard, &link);
    link.borrow_mut().reset();
    link.borrow_mut().connected = true;
    link.borrow_mut().nats.take_output();
    link
}

/// Node `b` asks node `a` (this one shard) for session `id` of alice with `h`.
fn ask_from_b(net: &mut Net, link: &crate::cluster::link::LinkRc, id: &str, h: u32) {
    let body = remote::Msg::Ask {
        id: id.into(),
        h,
        node: "b".into(),
    }
    .encode();
    let rec = crate::cluster::wire::Record::Module {
        kind: "sm".into(),
        key: format!("alice@{HOST}"),
        body,
    };
    let msg = crate::cluster::nats::Msg {
        subject: "petrel.t.n.a.0".into(),
        sid: crate::cluster::sid::STANZAS,
        reply: Some("petrel.t.r.b.2.0.q.5".into()),
        status: None,
        payload: rec.encode(),
    };
    crate::cluster::link::on_msg(link, &mut net.cluster.shards[0], msg);
}

#[test]
fn a_session_asked_for_by_another_node_goes_there_whole_and_leaves_the_map() {
    let mut net = Net::new(1);
    let link = as_node_a(&mut net.cluster.shards[0]);
    let alice = FullJid::parse(&format!("alice@{HOST}/r")).unwrap();
    let mut old = park_session(&mut net, 0, &alice, "a.ID");
    let (mut bob, _bmb) =
        net.cluster
            .connect(0, &FullJid::parse(&format!("bob@{HOST}/b")).unwrap(), None);
    for b in ["one", "two", "three"] {
        user_send(&mut net.cluster.shards[0], &mut bob, msg(alice.as_str(), b));
        net.cluster.pump();
    }
    old.drain(&mut net);
    assert_eq!(buffered(&old), ["one", "two", "three"]);
    link.borrow_mut().nats.take_output();

    // Another user's id, or an unknown one: `failed` at once, the session untouched.
    ask_from_b(&mut net, &link, "a.OTHER", 0);
    net.cluster.pump();
    let out = String::from_utf8_lossy(&link.borrow_mut().nats.take_output()).into_owned();
    assert!(
        out.contains("PUB petrel.t.r.b.2.0.q.5 ") && out.contains("failed\n"),
        "{out}"
    );

    // The client saw "one": the rest goes, in order, in one answer expecting `taken`.
    ask_from_b(&mut net, &link, "a.ID", 1);
    net.cluster.pump();
    old.drain(&mut net);
    net.cluster.pump();
    assert!(old.park.is_done(), "{:?}", old.park);
    let out = String::from_utf8_lossy(&link.borrow_mut().nats.take_output()).into_owned();
    let at = out
        .find("PUB petrel.t.r.b.2.0.q.5 petrel.t.r.a.1.0.q.0 ")
        .unwrap_or_else(|| panic!("no hand-over: {out}"));
    let sent = &out[at..];
    // Priority 0, nothing handled inbound, three sent.
    assert!(
        sent.contains(&format!("handover\n{alice}\n0\n0\n3\n")),
        "{sent}"
    );
    let (two, three) = (sent.find("two").unwrap(), sent.find("three").unwrap());
    assert!(two < three && !sent.contains(">one<"), "{sent}");
    // Gone from this node's map (its `G` record; no `unavailable`: tests/cluster.rs shows it).
    assert!(out.contains("G\na\n"), "{out}");
    let bare = alice.bare();
    assert!(net.cluster.shards[0].sm.resources(&bare).is_empty());

    // No `taken` in time: the copies are routed again (here: no resource left, so dropped or
    // stored), never kept forever.
    let before = net.cluster.shards[0].stats.rerouted;
    let later = Instant::now() + remote::TAKE_WAIT;
    crate::cluster::rpc::expire(&mut net.cluster.shards[0], later);
    assert_eq!(net.cluster.shards[0].stats.rerouted, before + 2);
}
