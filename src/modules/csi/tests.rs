//! Cluster tests of CSI: holding, coalescing, flushing on important stanzas, on `<active/>` and at
//! the bound, as the driver would write them (`user_receive_at`).

use crate::c2s::route::{user_receive_at, user_send, SendOutcome};
use crate::modules::testing::{User, World};
use crate::shard::ConnMsg;
use crate::xml::Stanza;
use crate::xmpp::StreamErrorCondition;

use super::CsiState;

/// What the driver would write to `user`'s socket now (routing what the hooks produce meanwhile).
fn written(w: &mut World, user: &User) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        w.cluster.pump();
        let Some(msg) = user.mb.pop() else {
            return out;
        };
        if let ConnMsg::Deliver(acc) = msg {
            let shard = &mut w.cluster.shards[user.on];
            for acc in user_receive_at(shard, &user.sess, acc) {
                out.push(String::from_utf8_lossy(acc.stanza.bytes()).into_owned());
            }
        }
    }
}

fn send(w: &mut World, user: &mut User, xml: &str) -> SendOutcome {
    let s = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let r = user_send(&mut w.cluster.shards[user.on], &mut user.sess, s);
    w.cluster.pump();
    r
}

const INACTIVE: &str = "<inactive xmlns='urn:xmpp:csi:0'/>";
const ACTIVE: &str = "<active xmlns='urn:xmpp:csi:0'/>";

fn presence(show: &str) -> String {
    format!("<presence to='bob@example.com/phone'><show>{show}</show></presence>")
}

fn held(w: &World, user: &User) -> usize {
    w.cluster.shards[user.on]
        .ext
        .get::<CsiState>()
        .map_or(0, |s| s.held(user.sess.session.conn))
}

/// Bob on shard `bob_on`, two contacts (alice, carol) on the other shards.
fn world(shards: usize, bob_on: usize, modules: &str) -> (World, User, User, User) {
    let mut w = World::new(shards, modules);
    let bob = w.connect(bob_on, "bob@example.com/phone", None);
    let alice = w.connect(0, "alice@example.com/pc", None);
    let carol = w.connect(shards - 1, "carol@example.com/pc", None);
    (w, bob, alice, carol)
}

#[test]
fn inactive_holds_presence_newest_per_sender_and_active_flushes_in_order() {
    for (shards, bob_on) in [(1, 0), (2, 1), (3, 2)] {
        let (mut w, mut bob, mut alice, mut carol) = world(shards, bob_on, "[modules.csi]");
        assert_eq!(send(&mut w, &mut bob, INACTIVE), SendOutcome::Continue);
        send(&mut w, &mut alice, &presence("away"));
        send(&mut w, &mut carol, &presence("dnd"));
        send(&mut w, &mut alice, &presence("xa"));
        assert!(written(&mut w, &bob).is_empty(), "held while inactive");
        assert_eq!(held(&w, &bob), 2, "alice's older presence was replaced");
        send(&mut w, &mut bob, ACTIVE);
        let out = written(&mut w, &bob);
        assert_eq!(out.len(), 2, "{out:?}");
        // (The route's stanzas carry no `from` here: the c2s stamps it on the wire.)
        assert!(out[0].contains("dnd"), "carol's first: {out:?}");
        assert!(out[1].contains("xa"), "then alice's newest: {out:?}");
        assert_eq!(held(&w, &bob), 0);
        // Active again: presences pass at once.
        send(&mut w, &mut alice, &presence("chat"));
        assert_eq!(written(&mut w, &bob).len(), 1);
        assert!(
            bob.mb.pop().is_none(),
            "the flush marker never reaches the client"
        );
    }
}

#[test]
fn message_with_body_flushes_the_queue_first_then_goes_out() {
    let (mut w, mut bob, mut alice, mut carol) = world(2, 1, "[modules.csi]");
    send(&mut w, &mut bob, INACTIVE);
    send(&mut w, &mut carol, &presence("away"));
    let state = "<message type='chat' to='bob@example.com/phone'>\
                 <composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
    send(&mut w, &mut alice, state);
    assert!(written(&mut w, &bob).is_empty(), "chat state held");
    send(
        &mut w,
        &mut alice,
        "<message type='chat' to='bob@example.com/phone'><body>hi</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out[0].starts_with("<presence"), "{out:?}");
    assert!(out[1].contains("composing"), "{out:?}");
    assert!(out[2].contains("<body>hi</body>"), "{out:?}");
    // Still inactive: the next presence is held again.
    send(&mut w, &mut carol, &presence("xa"));
    assert!(written(&mut w, &bob).is_empty());
    assert_eq!(held(&w, &bob), 1);
}

#[test]
fn iqs_and_subscription_requests_are_not_held() {
    let mut w = World::new(1, "[modules.csi]");
    // Available: a subscription request goes to the bare JID (RFC 6121 §3.1.1), so to the
    // available resources.
    let mut bob = w.connect(0, "bob@example.com/phone", Some(0));
    let mut alice = w.connect(0, "alice@example.com/pc", None);
    send(&mut w, &mut bob, INACTIVE);
    send(&mut w, &mut alice, &presence("away"));
    send(
        &mut w,
        &mut alice,
        "<presence type='subscribe' to='bob@example.com'/>",
    );
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[1].contains("subscribe"), "{out:?}");
    send(&mut w, &mut alice, &presence("dnd"));
    send(
        &mut w,
        &mut alice,
        "<iq type='get' id='q' to='bob@example.com/phone'><query xmlns='x:y'/></iq>",
    );
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[0].contains("dnd") && out[1].starts_with("<iq"),
        "{out:?}"
    );
}

#[test]
fn the_bound_flushes_everything_in_order() {
    let (mut w, mut bob, _alice, _carol) = world(2, 0, "[modules.csi]\nbuffer_max = 3\n");
    send(&mut w, &mut bob, INACTIVE);
    let mut users: Vec<User> = (0..4)
        .map(|i| w.connect(i % 2, &format!("u{i}@example.com/r"), None))
        .collect();
    for (i, u) in users.iter_mut().take(3).enumerate() {
        send(&mut w, u, &presence(&format!("s{i}")));
    }
    assert!(written(&mut w, &bob).is_empty());
    assert_eq!(held(&w, &bob), 3);
    send(&mut w, &mut users[3], &presence("s3"));
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 4, "{out:?}");
    for (i, s) in out.iter().enumerate() {
        assert!(s.contains(&format!("<show>s{i}</show>")), "{out:?}");
    }
    assert_eq!(held(&w, &bob), 0, "holding resumes with an empty queue");
    send(&mut w, &mut users[0], &presence("xa"));
    assert!(written(&mut w, &bob).is_empty());
}

#[test]
fn stanzas_arriving_after_active_keep_their_order() {
    let (mut w, mut bob, mut alice, mut carol) = world(2, 0, "[modules.csi]");
    send(&mut w, &mut bob, INACTIVE);
    send(&mut w, &mut alice, &presence("away"));
    // A presence is already in bob's mailbox when <active/> comes, ahead of the flush marker.
    let s = Stanza::parse(presence("dnd").into_bytes()).unwrap_or_else(|e| panic!("{e}"));
    user_send(&mut w.cluster.shards[carol.on], &mut carol.sess, s);
    w.cluster.pump();
    send(&mut w, &mut bob, ACTIVE);
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].contains("away"), "alice's held one first: {out:?}");
    assert!(out[1].contains("dnd"), "then carol's: {out:?}");
    let st = w.cluster.shards[bob.on].ext.get::<CsiState>();
    assert!(st.is_some_and(|s| !s.is_inactive(bob.sess.session.conn)));
}

#[test]
fn session_end_forgets_the_queue_and_unknown_csi_elements_close() {
    let (mut w, mut bob, mut alice, _carol) = world(1, 0, "[modules.csi]");
    send(&mut w, &mut bob, INACTIVE);
    send(&mut w, &mut alice, &presence("away"));
    assert!(written(&mut w, &bob).is_empty());
    assert_eq!(held(&w, &bob), 1);
    crate::c2s::route::unbind(&mut w.cluster.shards[0], &bob.sess);
    assert_eq!(held(&w, &bob), 0);
    let bad = send(&mut w, &mut alice, "<sleepy xmlns='urn:xmpp:csi:0'/>");
    assert_eq!(
        bad,
        SendOutcome::Close(StreamErrorCondition::UnsupportedStanzaType)
    );
}

#[test]
fn without_the_module_csi_elements_are_refused() {
    let (mut w, mut bob, _alice, _carol) = world(1, 0, "");
    assert_eq!(
        send(&mut w, &mut bob, INACTIVE),
        SendOutcome::Close(StreamErrorCondition::UnsupportedStanzaType)
    );
}

#[test]
fn options_are_checked() {
    let t: toml::Table = "buffer_max = 0".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(super::options(Some(&t)).is_err());
    let t: toml::Table = "buffer = 5".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(super::options(Some(&t)).is_err());
    let t: toml::Table = "buffer_max = 7".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(super::options(Some(&t)).map(|o| o.buffer_max), Ok(7));
    assert_eq!(super::options(None).map(|o| o.buffer_max), Ok(100));
}

/// A carbon of a chat state (another resource's conversation) waits like the chat state itself,
/// one per conversation; a message with a body lets them out first, in order.
#[test]
fn carbons_of_chat_states_are_held_per_conversation() {
    let (mut w, mut bob, mut alice, _carol) = world(1, 0, "[modules.csi]");
    send(&mut w, &mut bob, INACTIVE);
    let carbon = |dir: &str, party: &str, state: &str| {
        let attr = if dir == "received" { "from" } else { "to" };
        format!(
            "<message to='bob@example.com/phone'><{dir} xmlns='urn:xmpp:carbons:2'>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' {attr}='{party}' \
             type='chat'><{state} xmlns='http://jabber.org/protocol/chatstates'/></message>\
             </forwarded></{dir}></message>"
        )
    };
    send(
        &mut w,
        &mut alice,
        &carbon("received", "carol@example.com/pc", "composing"),
    );
    send(
        &mut w,
        &mut alice,
        &carbon("received", "carol@example.com/pc", "paused"),
    );
    send(
        &mut w,
        &mut alice,
        &carbon("sent", "dave@example.com", "active"),
    );
    assert!(written(&mut w, &bob).is_empty());
    // The newest per conversation.
    assert_eq!(held(&w, &bob), 2);
    // A carbon with a body is no chat state: it goes, after what waited.
    let body = carbon("received", "carol@example.com/pc", "active")
        .replace("<active", "<body>hi</body><active");
    send(&mut w, &mut alice, &body);
    let out = written(&mut w, &bob);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out[0].contains("paused") && out[2].contains("<body>hi</body>"),
        "{out:?}"
    );
}
