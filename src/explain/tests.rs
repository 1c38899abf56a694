//! `route explain` over a cluster of shards in one thread (mesh and store jobs run by `pump`).

use std::rc::Rc;

use super::{start, Explanation, Outcome, Path, Pending};
use crate::auth::ScramSecrets;
use crate::c2s::route::{user_receive_at, user_send, Session};
use crate::jid::{BareJid, FullJid, Jid};
use crate::local::IqReply;
use crate::shard::cluster::Cluster;
use crate::shard::{home_shard, ConnMsg, Mailbox};
use crate::store::Store;
use crate::xml::Stanza;

const HOST: &str = "localhost";

/// A chat message to bob's bare JID.
const CHAT: &str = "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>";

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn full(s: &str) -> FullJid {
    FullJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` shards with a store holding alice and bob.
fn cluster(n: usize) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    for u in ["alice@localhost", "bob@localhost"] {
        let u = BareJid::parse(u).unwrap_or_else(|e| panic!("{e}"));
        store
            .add_user(&u, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = Cluster::new(n, &[HOST]);
    c.store = Some(store);
    (c, dir)
}

/// A bound session: its shard, route session and mailbox.
struct User {
    on: usize,
    sess: Session,
    mb: Rc<Mailbox>,
}

fn connect(c: &mut Cluster, on: usize, j: &str, priority: Option<i8>) -> User {
    let (sess, mb) = c.connect(on, &full(j), priority);
    User { on, sess, mb }
}

fn explain(c: &mut Cluster, on: usize, from: &str, xml: &str) -> Pending {
    let p = start(&mut c.shards[on], jid(from), xml).unwrap_or_else(|e| panic!("{e}"));
    c.pump();
    p
}

/// Step 7 for what waits in `u`'s mailbox (the connection's part): how many stanzas it got.
fn receive(c: &mut Cluster, u: &User) -> usize {
    let mut n = 0;
    while let Some(msg) = u.mb.pop() {
        if let ConnMsg::Deliver(acc) = msg {
            n += user_receive_at(&mut c.shards[u.on], &u.sess, acc)
                .into_iter()
                .count();
        }
        c.pump();
    }
    n
}

/// The steps of `p` as `stage[handler]:outcome`.
fn steps(p: &Path) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| {
            let h = s
                .handler
                .as_deref()
                .map_or(String::new(), |h| format!("[{h}]"));
            format!(
                "{}{h}:{}",
                s.stage,
                serde_json::to_string(&s.outcome)
                    .unwrap_or_default()
                    .trim_matches('"')
            )
        })
        .collect()
}

/// The home shard of bare JID `bare` in a cluster of `n`.
fn home(bare: &str, n: usize) -> usize {
    home_shard(&BareJid::parse(bare).unwrap_or_else(|e| panic!("{e}")), n).index()
}

/// How a request from `bare` enters, when its session is on shard `session_on` (None: no
/// session): a hop from the home shard to the session's shard, then `user_send_*` there. Returns
/// the steps and the shard where the stanza enters.
fn entry(bare: &str, session_on: Option<usize>, n: usize) -> (Vec<String>, usize) {
    let home = home(bare, n);
    match session_on {
        Some(s) if s != home => (vec!["sm:forwarded".into(), "c2s:ok".into()], s),
        _ => (vec!["c2s:ok".into()], home),
    }
}

/// The route from the sender through the router chain to local delivery of a user-addressed
/// stanza, with no module loaded: the router's first module to take a hosted domain is
/// `dynamic_domains` on first use of a shard, `localdomain` afterwards.
fn send_side(entry: &[String], kind: &str, took_by: &str) -> Vec<String> {
    entry
        .iter()
        .cloned()
        .chain(
            [
                "user_send_packet:ok",
                &format!("user_send_{kind}:ok"),
                "filter_packet:ok",
                "router[global]:pass",
            ]
            .map(String::from),
        )
        .chain(pass_until(took_by))
        .chain(["filter_local_packet:ok".to_string()])
        .collect()
}

fn pass_until(took_by: &str) -> Vec<String> {
    let mut v = Vec::new();
    for m in [
        "localdomain",
        "external_localnode",
        "external",
        "dynamic_domains",
    ] {
        if m == took_by {
            v.push(format!("router[{m}]:took"));
            return v;
        }
        v.push(format!("router[{m}]:pass"));
    }
    v
}

fn only_path(e: &Explanation) -> &Path {
    assert_eq!(e.paths.len(), 1, "{}", e.render_text());
    &e.paths[0]
}

#[test]
fn chat_to_two_resources_goes_to_the_highest_priority_only() {
    let (mut c, _dir) = cluster(2);
    let phone = connect(&mut c, 1, "bob@localhost/phone", Some(5));
    let laptop = connect(&mut c, 0, "bob@localhost/laptop", Some(1));
    let (enter, at) = entry("alice@localhost", None, 2);
    let p = explain(&mut c, 0, "alice@localhost", CHAT);
    // The copy for the phone waits in its connection's mailbox: not an end yet.
    assert!(!p.done());
    assert_eq!(receive(&mut c, &laptop), 0);
    assert_eq!(receive(&mut c, &phone), 1);
    assert!(p.done());
    let e = p.finish();
    assert_eq!((e.in_flight, e.paths_dropped), (0, 0));
    assert_eq!(
        e.from,
        format!("alice@localhost/{}", super::EXPLAIN_RESOURCE)
    );
    let path = only_path(&e);
    let mut want = send_side(&enter, "message", "dynamic_domains");
    want.push("local:pass".into());
    let bob_home = home("bob@localhost", 2);
    if bob_home != at {
        want.push("sm:forwarded".into());
    }
    want.extend(
        [
            "sm:took",
            "sm:delivered",
            "user_receive_packet:ok",
            "user_receive_message:ok",
            "xmpp_presend_element:ok",
            "c2s:written",
        ]
        .map(String::from),
    );
    assert_eq!(steps(path), want, "{}", e.render_text());
    let sm = path
        .steps
        .iter()
        .find(|s| s.stage == "sm" && s.outcome == Outcome::Took)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default();
    assert!(sm.contains("bare JID"), "{sm}");
    assert!(sm.contains("phone (priority 5, shard 1)"), "{sm}");
    assert!(sm.contains("laptop (priority 1, shard 0)"), "{sm}");
    let last = &path.steps[path.steps.len() - 1];
    assert_eq!(last.shard, 1);
    assert_eq!(last.detail.as_deref(), Some("bob@localhost/phone"));
    let delivered = &path.steps[path.steps.len() - 5];
    assert_eq!(delivered.shard as usize, bob_home);
    assert_eq!(
        delivered.detail.as_deref(),
        Some("to bob@localhost/phone on shard 1")
    );
    // Times never go back.
    assert!(path.steps.windows(2).all(|w| w[0].at_us <= w[1].at_us));
}

#[test]
fn message_to_an_offline_user_ends_in_the_offline_hook() {
    let (mut c, _dir) = cluster(2);
    for s in c.shards.iter_mut() {
        crate::modules::offline::start(s, &crate::modules::offline::Options::default());
    }
    let p = explain(&mut c, 1, "alice@localhost", CHAT);
    // Stored by a store job, which `pump` ran: the trace ended there.
    assert!(p.done());
    let e = p.finish();
    let got = steps(only_path(&e));
    let tail: Vec<&str> = got.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        ["sm:took", "sm:offline", "offline_message[offline]:stop"],
        "{}",
        e.render_text()
    );
    assert!(
        only_path(&e).steps[got.len() - 2]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("no available resource")),
        "{}",
        e.render_text()
    );
}

#[test]
fn message_stopped_by_a_handler_and_its_error_back_to_the_sender() {
    let (mut c, _dir) = cluster(2);
    for s in c.shards.iter_mut() {
        crate::modules::blocking::register(s, &[HOST.to_string()], &Default::default());
    }
    let mut alice = connect(&mut c, 0, "alice@localhost/r", Some(0));
    user_send(
        &mut c.shards[0],
        &mut alice.sess,
        Stanza::parse(
            b"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>"
                .to_vec(),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    c.pump();
    receive(&mut c, &alice);
    // Asked on shard 1: the stanza enters on shard 0, from alice's own session.
    let p = explain(&mut c, 1, "alice@localhost/r", CHAT);
    let (enter, _) = entry("alice@localhost", Some(0), 2);
    let n = enter.len();
    assert!(!p.done());
    assert_eq!(receive(&mut c, &alice), 1);
    assert!(p.done());
    let e = p.finish();
    assert_eq!(e.paths.len(), 2, "{}", e.render_text());

    // The message itself: stopped at the first handler of user_send_packet.
    let stopped = e
        .paths
        .iter()
        .find(|p| p.steps.last().is_some_and(|s| s.outcome == Outcome::Stop))
        .unwrap_or_else(|| panic!("no stopped path: {}", e.render_text()));
    assert_eq!(steps(stopped)[..n], enter[..]);
    assert_eq!(steps(stopped)[n..], ["user_send_packet[blocking]:stop"]);
    assert_eq!(stopped.steps[n - 1].shard, 0);
    assert!(stopped.steps[n - 1]
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("the session of alice@localhost/r")));
    // Its error, carrying the trace on, back to alice's connection.
    let error = e
        .paths
        .iter()
        .find(|p| {
            p.steps
                .last()
                .is_some_and(|s| s.outcome == Outcome::Written)
        })
        .unwrap_or_else(|| panic!("no written path: {}", e.render_text()));
    let got = steps(error);
    assert_eq!(got[..n], enter[..]);
    assert_eq!(got[n], "reply:bounced", "{}", e.render_text());
    assert_eq!(error.steps[n].detail.as_deref(), Some("blocked"));
    assert!(got.contains(&"user_receive_packet[blocking]:ok".to_string()));
    assert_eq!(got.last().map(String::as_str), Some("c2s:written"));
    assert_eq!(
        error.steps.last().and_then(|s| s.detail.as_deref()),
        Some("alice@localhost/r")
    );
}

#[test]
fn iq_to_the_server_is_answered_and_the_answer_traced_back() {
    let (mut c, _dir) = cluster(2);
    for s in c.shards.iter_mut() {
        s.iq.register_server(
            HOST,
            "urn:xmpp:ping",
            Rc::new(|_, _, _| IqReply::Result(None)),
        );
    }
    let alice = connect(&mut c, 1, "alice@localhost/r", None);
    let p = explain(
        &mut c,
        1,
        "alice@localhost/r",
        "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert_eq!(receive(&mut c, &alice), 1);
    assert!(p.done());
    let e = p.finish();
    let got = steps(only_path(&e));
    let (enter, _) = entry("alice@localhost", Some(1), 2);
    let mut want = send_side(&enter, "iq", "dynamic_domains");
    want.extend(
        [
            "local:took",
            "local:took",
            "reply:answered",
            "filter_packet:ok",
            "router[global]:pass",
            "router[localdomain]:took",
            "filter_local_packet:ok",
            "local:pass",
            "sm:delivered",
            "user_receive_packet:ok",
            "user_receive_iq:ok",
            "xmpp_presend_element:ok",
            "c2s:written",
        ]
        .map(String::from),
    );
    assert_eq!(got, want, "{}", e.render_text());
    let details: Vec<&str> = only_path(&e)
        .steps
        .iter()
        .filter(|s| s.stage == "local" && s.outcome == Outcome::Took)
        .filter_map(|s| s.detail.as_deref())
        .collect();
    assert_eq!(
        details,
        ["addressed to the server", "IQ handler for urn:xmpp:ping"]
    );
}

#[test]
fn explanation_is_json_and_text() {
    let (mut c, _dir) = cluster(1);
    let p = explain(
        &mut c,
        0,
        "alice@localhost/x",
        "<message to='nobody@elsewhere.example' type='chat'><body>hi</body></message>",
    );
    assert!(p.done());
    let e = p.finish();
    let json = serde_json::to_string(&e).unwrap_or_else(|err| panic!("{err}"));
    let back: Explanation = serde_json::from_str(&json).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(back, e);
    let text = e.render_text();
    assert!(
        text.starts_with("message from alice@localhost/x to nobody@elsewhere.example"),
        "{text}"
    );
    assert!(text.contains("router [s2s]: took"), "{text}");
    assert!(
        text.contains("reply: bounced (remote-server-not-found)"),
        "{text}"
    );
}

#[test]
fn bad_requests_are_refused() {
    use super::ExplainError;
    let (mut c, _dir) = cluster(1);
    let s = &mut c.shards[0];
    assert!(matches!(
        start(s, jid("alice@localhost"), "<message"),
        Err(ExplainError::Parse(_))
    ));
    assert!(matches!(
        start(s, jid("alice@localhost"), "<r xmlns='urn:xmpp:sm:3'/>"),
        Err(ExplainError::NotAStanza(_))
    ));
    assert!(matches!(
        start(
            s,
            jid("alice@elsewhere.example"),
            "<message to='bob@localhost'/>"
        ),
        Err(ExplainError::BadSender(_))
    ));
    assert!(matches!(
        start(s, jid("localhost"), "<message to='bob@localhost'/>"),
        Err(ExplainError::BadSender(_))
    ));
    assert!(matches!(
        start(s, jid("alice@localhost"), "<message to='@@'/>"),
        Err(ExplainError::BadTo(_))
    ));
}

#[test]
fn equal_priorities_fork_one_path_per_resource() {
    let (mut c, _dir) = cluster(2);
    let a = connect(&mut c, 0, "bob@localhost/a", Some(3));
    let b = connect(&mut c, 1, "bob@localhost/b", Some(3));
    let p = explain(&mut c, 1, "alice@localhost", CHAT);
    assert_eq!(receive(&mut c, &a) + receive(&mut c, &b), 2);
    assert!(p.done());
    let e = p.finish();
    assert_eq!(e.paths.len(), 2, "{}", e.render_text());
    let mut ends: Vec<&str> = e
        .paths
        .iter()
        .filter_map(|p| p.steps.last()?.detail.as_deref())
        .collect();
    ends.sort();
    assert_eq!(ends, ["bob@localhost/a", "bob@localhost/b"]);
    // Both copies share the route up to the session manager's choice.
    let shared = e.paths[0]
        .steps
        .iter()
        .zip(&e.paths[1].steps)
        .take_while(|(x, y)| x == y)
        .count();
    assert_eq!(e.paths[0].steps[shared - 1].outcome, Outcome::Took);
    assert_eq!(e.paths[0].steps[shared - 1].stage, "sm");
    assert!(e.render_text().contains("step(s) as above"));
}

#[test]
fn a_carbon_copy_is_a_path_of_its_own_from_the_home_handler() {
    let (mut c, _dir) = cluster(2);
    for s in c.shards.iter_mut() {
        crate::modules::carbons::start(s, &[HOST.to_string()]);
    }
    let phone = connect(&mut c, 0, "bob@localhost/phone", Some(5));
    let mut laptop = connect(&mut c, 1, "bob@localhost/laptop", Some(1));
    user_send(
        &mut c.shards[1],
        &mut laptop.sess,
        Stanza::parse(b"<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>".to_vec())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    c.pump();
    assert_eq!(receive(&mut c, &laptop), 1);
    let p = explain(&mut c, 0, "alice@localhost", CHAT);
    assert_eq!(receive(&mut c, &phone) + receive(&mut c, &laptop), 2);
    assert!(p.done());
    let e = p.finish();
    assert_eq!(e.paths.len(), 2, "{}", e.render_text());
    let ends: Vec<(Vec<String>, Option<&str>)> = e
        .paths
        .iter()
        .map(|p| (steps(p), p.steps.last().and_then(|s| s.detail.as_deref())))
        .collect();
    let direct = ends
        .iter()
        .find(|(_, to)| *to == Some("bob@localhost/phone"))
        .unwrap_or_else(|| panic!("{}", e.render_text()));
    assert!(direct.0.contains(&"sm_home[carbons]:ok".to_string()));
    let copy = ends
        .iter()
        .find(|(_, to)| *to == Some("bob@localhost/laptop"))
        .unwrap_or_else(|| panic!("{}", e.render_text()));
    let at = copy
        .0
        .iter()
        .position(|s| s == "sm_home[carbons]:took")
        .unwrap_or_else(|| panic!("{}", e.render_text()));
    assert_eq!(copy.0[at + 1], "carbons:reply", "{}", e.render_text());
    assert_eq!(copy.0.last().map(String::as_str), Some("c2s:written"));
}

#[test]
fn copies_not_yet_at_an_end_are_counted_in_flight() {
    let (mut c, _dir) = cluster(2);
    let _bob = connect(&mut c, 1, "bob@localhost/phone", Some(0));
    let p = explain(&mut c, 0, "alice@localhost", CHAT);
    // The copy waits in bob's mailbox: the request stops waiting without it.
    let e = p.finish();
    assert_eq!((e.paths.len(), e.in_flight), (0, 1), "{}", e.render_text());
    assert!(e.render_text().contains("1 copy(ies) still on their way"));
}
