//! Cluster tests of carbons: enable/disable on the home shard, sent and received copies between
//! resources on different shards, bare-JID delivery, the hints and the message-type rules.

use crate::c2s::route::{unbind, user_receive_at};
use crate::jid::BareJid;
use crate::modules::testing::{error_condition, User, World};
use crate::shard::{home_shard, ConnMsg};
use crate::xml::{Element, Stanza};

use super::{CarbonsHome, NS_CARBONS, NS_FORWARD};

const MODS: &str = "[modules.carbons]\n[modules.disco]\n";

/// What the driver would write to `user` now.
fn written(w: &mut World, user: &User) -> Vec<Element> {
    let mut out = Vec::new();
    loop {
        w.cluster.pump();
        let Some(msg) = user.mb.pop() else {
            return out;
        };
        if let ConnMsg::Deliver(acc) = msg {
            let shard = &mut w.cluster.shards[user.on];
            for acc in user_receive_at(shard, &user.sess, acc) {
                out.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
            }
        }
    }
}

fn enable(w: &mut World, user: &mut User, on: bool) {
    let op = if on { "enable" } else { "disable" };
    let reply = w.iq(
        user,
        &format!("<iq type='set' id='c1'><{op} xmlns='{NS_CARBONS}'/></iq>"),
    );
    let t = reply.tree().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.attr("type"), Some("result"), "{t:?}");
    assert_eq!(t.attr("id"), Some("c1"));
}

/// The carbon in `el`: (direction, the forwarded message).
fn carbon(el: &Element) -> Option<(String, Element)> {
    let dir = el.child_elements().find(|c| c.ns == NS_CARBONS)?;
    let fwd = dir.get_child("forwarded", NS_FORWARD)?;
    let msg = fwd.child_elements().next()?.clone();
    Some((dir.name.clone(), msg))
}

fn body(el: &Element) -> String {
    el.get_child("body", crate::xmpp::ns::CLIENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

/// Users: alice with resources a1..an spread over shards, bob on the last shard.
fn world(shards: usize, resources: usize, prio: Option<i8>) -> (World, Vec<User>, User) {
    let mut w = World::new(shards, MODS);
    let alice: Vec<User> = (0..resources)
        .map(|i| w.connect(i % shards, &format!("alice@example.com/a{i}"), prio))
        .collect();
    let bob = w.connect(shards - 1, "bob@example.com/b", prio);
    (w, alice, bob)
}

#[test]
fn enable_is_recorded_on_the_home_shard_and_disable_and_logout_remove_it() {
    for shards in [1, 2, 3] {
        let (mut w, mut alice, _bob) = world(shards, 2, None);
        enable(&mut w, &mut alice[1], true);
        enable(&mut w, &mut alice[1], true); // repeated enable is fine (§10.1)
        let bare = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
        let home = home_shard(&bare, shards).index();
        let count = |w: &World| {
            w.cluster.shards[home]
                .ext
                .get::<CarbonsHome>()
                .map_or(0, |h| h.enabled(&bare).len())
        };
        assert_eq!(count(&w), 1);
        enable(&mut w, &mut alice[0], true);
        assert_eq!(count(&w), 2);
        enable(&mut w, &mut alice[0], false);
        assert_eq!(count(&w), 1);
        let on = alice[1].on;
        unbind(&mut w.cluster.shards[on], &alice[1].sess);
        w.cluster.pump();
        assert_eq!(count(&w), 0, "a session that ends leaves the list");
    }
}

#[test]
fn bad_requests_are_refused() {
    let (mut w, mut alice, mut bob) = world(2, 1, None);
    let r = w.iq(
        &mut alice[0],
        &format!("<iq type='get' id='g'><enable xmlns='{NS_CARBONS}'/></iq>"),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
    let r = w.iq(
        &mut alice[0],
        &format!("<iq type='set' id='g'><toggle xmlns='{NS_CARBONS}'/></iq>"),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
    // RFC 6121 §8.5.1: an account that does not exist is service-unavailable; alice's, forbidden.
    w.remove_account("alice@example.com");
    for (exists, want) in [(false, "service-unavailable"), (true, "forbidden")] {
        if exists {
            w.add_account("alice@example.com");
        }
        let r = w.iq(
            &mut bob,
            &format!(
                "<iq type='set' id='x' to='alice@example.com'><enable xmlns='{NS_CARBONS}'/></iq>"
            ),
        );
        assert_eq!(error_condition(&r).as_deref(), Some(want));
    }
}

#[test]
fn sent_copies_reach_other_enabled_resources_on_any_shard() {
    for shards in [1, 2, 3] {
        let (mut w, mut alice, bob) = world(shards, 3, None);
        enable(&mut w, &mut alice[0], true);
        enable(&mut w, &mut alice[1], true);
        // a2 has not enabled carbons: its messages are still copied (§7), it gets none.
        w.send(
            &mut alice[2],
            "<message type='chat' to='bob@example.com/b' id='m1'><body>hello</body></message>",
        );
        let got = written(&mut w, &bob);
        assert_eq!(got.len(), 1);
        assert_eq!(body(&got[0]), "hello");
        for a in &alice[..2] {
            let out = written(&mut w, a);
            assert_eq!(out.len(), 1, "shards={shards}");
            assert_eq!(out[0].attr("from"), Some("alice@example.com"));
            assert_eq!(out[0].attr("to"), Some(a.sess.jid.as_str()));
            assert_eq!(out[0].attr("type"), Some("chat"));
            let (dir, msg) = carbon(&out[0]).unwrap_or_else(|| panic!("{:?}", out[0]));
            assert_eq!(dir, "sent");
            assert_eq!(body(&msg), "hello");
            assert_eq!(msg.attr("to"), Some("bob@example.com/b"));
        }
        assert!(written(&mut w, &alice[2]).is_empty());
        // The sender itself gets no copy even when enabled.
        w.send(
            &mut alice[0],
            "<message type='chat' to='bob@example.com/b'><body>two</body></message>",
        );
        assert!(written(&mut w, &alice[0]).is_empty());
        assert_eq!(written(&mut w, &alice[1]).len(), 1);
        assert!(written(&mut w, &alice[2]).is_empty());
    }
}

#[test]
fn messages_between_ones_own_resources_are_not_copied() {
    // a0 -> a1 with carbons on everywhere: a1 got the original and a <sent/> copy, a0 a
    // <received/> copy of its own message, a2 both copies.
    for shards in [1, 2, 3] {
        let (mut w, mut alice, _bob) = world(shards, 3, Some(0));
        for a in alice.iter_mut() {
            enable(&mut w, a, true);
        }
        for a in &alice {
            written(&mut w, a);
        }
        let to = alice[1].sess.jid.to_string();
        w.send(
            &mut alice[0],
            &format!(
                "<message type='chat' to='{to}' id='s1'><body>to my other device</body></message>"
            ),
        );
        let got = written(&mut w, &alice[1]);
        assert_eq!(got.len(), 1, "shards={shards}: {got:?}");
        assert!(carbon(&got[0]).is_none(), "{got:?}");
        assert!(written(&mut w, &alice[0]).is_empty(), "shards={shards}");
        assert!(written(&mut w, &alice[2]).is_empty(), "shards={shards}");
        // A note to self (the bare JID): whichever resources take it, no copies.
        w.send(
            &mut alice[0],
            "<message type='chat' to='alice@example.com' id='s2'><body>note</body></message>",
        );
        let all: Vec<Element> = alice.iter().flat_map(|a| written(&mut w, a)).collect();
        assert!(
            all.iter().all(|m| carbon(m).is_none()),
            "shards={shards}: {all:?}"
        );
        assert!(!all.is_empty(), "shards={shards}: the note reached someone");
    }
}

#[test]
fn received_copies_for_full_jid_messages_including_the_local_fast_path() {
    for shards in [1, 2, 3] {
        let (mut w, mut alice, mut bob) = world(shards, 3, None);
        for a in alice.iter_mut() {
            enable(&mut w, a, true);
        }
        for target in 0..3 {
            let to = alice[target].sess.jid.to_string();
            w.send(
                &mut bob,
                &format!("<message type='chat' to='{to}'><body>to {target}</body></message>"),
            );
            // The receiving connection asks for the copies when it takes the original: it goes first.
            let mut order: Vec<usize> = (0..3).collect();
            order.swap(0, target);
            for i in order {
                let a = &alice[i];
                let out = written(&mut w, a);
                assert_eq!(
                    out.len(),
                    1,
                    "shards={shards} target={target} a{i}: {out:?}"
                );
                if i == target {
                    assert!(carbon(&out[0]).is_none(), "the original");
                    assert_eq!(body(&out[0]), format!("to {target}"));
                } else {
                    let (dir, msg) = carbon(&out[0]).unwrap_or_else(|| panic!("{out:?}"));
                    assert_eq!(dir, "received");
                    assert_eq!(msg.attr("to"), Some(to.as_str()));
                }
            }
        }
    }
}

#[test]
fn bare_jid_messages_copy_only_to_resources_that_did_not_get_the_original() {
    let mut w = World::new(2, MODS);
    let mut hi = w.connect(0, "alice@example.com/hi", Some(5));
    let mut lo = w.connect(1, "alice@example.com/lo", Some(1));
    let mut neg = w.connect(1, "alice@example.com/neg", Some(-1));
    let mut bob = w.connect(0, "bob@example.com/b", Some(0));
    for a in [&mut hi, &mut lo, &mut neg] {
        enable(&mut w, a, true);
    }
    w.send(
        &mut bob,
        "<message type='chat' to='alice@example.com'><body>bare</body></message>",
    );
    let out = written(&mut w, &hi);
    assert_eq!(out.len(), 1);
    assert!(carbon(&out[0]).is_none());
    for a in [&lo, &neg] {
        let out = written(&mut w, a);
        assert_eq!(out.len(), 1, "{out:?}");
        let (dir, msg) = carbon(&out[0]).unwrap_or_else(|| panic!("{out:?}"));
        assert_eq!((dir.as_str(), body(&msg).as_str()), ("received", "bare"));
    }
    // Equal top priorities: both get the original, nobody a copy.
    let mut w = World::new(2, MODS);
    let mut a = w.connect(0, "alice@example.com/a", Some(0));
    let mut b = w.connect(1, "alice@example.com/b", Some(0));
    let mut bob = w.connect(1, "bob@example.com/b", Some(0));
    enable(&mut w, &mut a, true);
    enable(&mut w, &mut b, true);
    w.send(
        &mut bob,
        "<message to='alice@example.com'><body>n</body></message>",
    );
    for s in [&a, &b] {
        let out = written(&mut w, s);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(carbon(&out[0]).is_none());
    }
}

#[test]
fn hints_types_and_carbons_themselves_are_not_copied() {
    let (mut w, mut alice, mut bob) = world(2, 2, None);
    enable(&mut w, &mut alice[1], true);
    let to = "bob@example.com/b";
    let not_copied = [
        format!("<message type='chat' to='{to}'><body>p</body><private xmlns='{NS_CARBONS}'/></message>"),
        format!("<message type='chat' to='{to}'><body>p</body><no-copy xmlns='urn:xmpp:hints'/></message>"),
        format!("<message type='headline' to='{to}'><body>h</body></message>"),
        format!("<message type='groupchat' to='{to}'><body>g</body></message>"),
        format!("<message type='error' to='{to}'><body>e</body></message>"),
        format!("<message type='normal' to='{to}'><subject>no body</subject></message>"),
        format!("<message to='{to}'><x xmlns='jabber:x:conference' jid='r@muc'/></message>"),
        format!("<message type='chat' to='{to}'><body>pm</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"),
        format!("<message type='chat' to='{to}'><received xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'/></received></message>"),
    ];
    for m in &not_copied {
        w.send(&mut alice[0], m);
        assert!(written(&mut w, &alice[1]).is_empty(), "copied: {m}");
    }
    written(&mut w, &bob);
    let copied = [
        format!("<message type='chat' to='{to}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"),
        format!("<message to='{to}'><body>normal</body></message>"),
        format!("<message type='normal' to='{to}'><body>normal</body></message>"),
        // §6: receipts and chat markers without a body (type normal, as clients send them).
        format!("<message to='{to}'><received xmlns='urn:xmpp:receipts' id='m1'/></message>"),
        format!("<message to='{to}'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>"),
    ];
    for m in &copied {
        w.send(&mut alice[0], m);
        assert_eq!(written(&mut w, &alice[1]).len(), 1, "not copied: {m}");
    }
    // Private messages received are not copied either.
    let a0 = alice[0].sess.jid.to_string();
    w.send(
        &mut bob,
        &format!("<message type='chat' to='{a0}'><body>p</body><private xmlns='{NS_CARBONS}'/></message>"),
    );
    assert_eq!(written(&mut w, &alice[0]).len(), 1);
    assert!(written(&mut w, &alice[1]).is_empty());
}

#[test]
fn disabled_resources_get_nothing_and_disco_advertises() {
    let (mut w, mut alice, mut bob) = world(2, 2, None);
    enable(&mut w, &mut alice[1], true);
    enable(&mut w, &mut alice[1], false);
    w.send(
        &mut alice[0],
        "<message type='chat' to='bob@example.com/b'><body>x</body></message>",
    );
    assert!(written(&mut w, &alice[1]).is_empty());
    written(&mut w, &bob);
    let info = w.iq(
        &mut bob,
        "<iq type='get' id='d' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let s = String::from_utf8_lossy(info.bytes()).into_owned();
    assert!(s.contains(&format!("var='{NS_CARBONS}'")), "{s}");
}

#[test]
fn a_copy_to_a_vanished_session_is_dropped_not_redelivered() {
    let (mut w, mut alice, _bob) = world(2, 3, Some(0));
    enable(&mut w, &mut alice[1], true);
    enable(&mut w, &mut alice[2], true);
    // A copy addressed to a2 comes back to the session manager (a2's connection went away).
    let copy = Stanza::from_element(
        &Element::new("message", crate::xmpp::ns::CLIENT).with_attr("type", "chat"),
    );
    let mut acc = crate::hooks::Acc::new(
        copy,
        crate::jid::Jid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}")),
        crate::jid::Jid::parse("alice@example.com/gone").unwrap_or_else(|e| panic!("{e}")),
        w.cluster.shards[0].id,
    );
    acc.put(super::COPY, super::CopyMarker);
    w.cluster.shards[0].reroute(acc);
    w.cluster.pump();
    for a in &alice {
        assert!(written(&mut w, a).is_empty());
    }
}
