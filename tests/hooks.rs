//! The seed's order of hooks for one message, asserted on the in-process route (no sockets needed:
//! the hook runs are the behaviour under test).

use std::cell::RefCell;
use std::rc::Rc;

use petrel::c2s::route::{unbind, user_receive, user_send};
use petrel::hooks::{Acc, HookResult, Hooks, SessionEvent};
use petrel::jid::FullJid;
use petrel::shard::cluster::Cluster;
use petrel::shard::ConnMsg;
use petrel::xml::Stanza;

type Log = Rc<RefCell<Vec<&'static str>>>;

fn record(hooks: &mut Hooks, log: &Log) {
    macro_rules! acc_hooks {
        ($($h:ident),*) => {$(
            let l = log.clone();
            hooks.$h.add(50, "recorder", move |_: &mut Acc, _| {
                l.borrow_mut().push(stringify!($h));
                HookResult::Continue
            });
        )*};
    }
    macro_rules! session_hooks {
        ($($h:ident),*) => {$(
            let l = log.clone();
            hooks.$h.add(50, "recorder", move |_: &mut SessionEvent, _| {
                l.borrow_mut().push(stringify!($h));
                HookResult::Continue
            });
        )*};
    }
    acc_hooks!(
        user_send_packet,
        user_send_message,
        user_send_presence,
        user_send_iq,
        user_send_xmlel,
        filter_packet,
        filter_local_packet,
        offline_message,
        user_receive_packet,
        user_receive_message,
        user_receive_presence,
        user_receive_iq,
        user_receive_xmlel,
        xmpp_presend_element
    );
    session_hooks!(
        sm_register_connection,
        sm_remove_connection,
        user_available,
        unset_presence
    );
}

fn jid(s: &str) -> FullJid {
    FullJid::parse(s).unwrap()
}

fn msg(to: &str) -> Stanza {
    Stanza::parse(
        format!(
            "<message to='{to}' type='chat' from='alice@localhost/a'><body>hi</body></message>"
        )
        .into_bytes(),
    )
    .unwrap()
}

#[test]
fn one_message_runs_the_seed_hooks_in_order() {
    let mut cluster = Cluster::new(1, &["localhost"]);
    let log: Log = Rc::default();
    record(&mut cluster.shards[0].hooks, &log);
    let (mut alice, _amb) = cluster.connect(0, &jid("alice@localhost/a"), Some(0));
    let (bob, bmb) = cluster.connect(0, &jid("bob@localhost/b"), Some(0));
    assert_eq!(
        log.borrow().as_slice(),
        [
            "sm_register_connection",
            "user_send_packet",
            "user_send_presence",
            "user_available",
            "sm_register_connection",
            "user_send_packet",
            "user_send_presence",
            "user_available",
        ]
    );
    log.borrow_mut().clear();
    user_send(&mut cluster.shards[0], &mut alice, msg("bob@localhost"));
    cluster.pump();
    // The recipient's c2s runs step 7 when it takes the stanza from its mailbox.
    let Some(ConnMsg::Deliver(acc)) = bmb.pop() else {
        panic!("not delivered")
    };
    let out = user_receive(&mut cluster.shards[0], acc).expect("not stopped");
    assert!(String::from_utf8_lossy(out.stanza.bytes()).contains("<body>hi</body>"));
    assert_eq!(
        log.borrow().as_slice(),
        [
            "user_send_packet",
            "user_send_message",   // step 2
            "filter_packet",       // step 3, mongoose_router_global
            "filter_local_packet", // step 4
            "user_receive_packet",
            "user_receive_message",
            "xmpp_presend_element", // step 7
        ]
    );
    // Bob leaves: the next message goes to offline_message, whose default answer goes back to Alice.
    log.borrow_mut().clear();
    unbind(&mut cluster.shards[0], &bob);
    cluster.pump();
    assert_eq!(
        log.borrow().as_slice(),
        ["unset_presence", "sm_remove_connection"]
    );
    log.borrow_mut().clear();
    user_send(&mut cluster.shards[0], &mut alice, msg("bob@localhost"));
    cluster.pump();
    assert_eq!(
        log.borrow().as_slice(),
        [
            "user_send_packet",
            "user_send_message",
            "filter_packet",
            "filter_local_packet",
            "offline_message",
            // the service-unavailable error routed back to Alice
            "filter_packet",
            "filter_local_packet",
        ]
    );
}

#[test]
fn same_order_across_shards() {
    let mut cluster = Cluster::new(3, &["localhost"]);
    let log: Log = Rc::default();
    for s in cluster.shards.iter_mut() {
        record(&mut s.hooks, &log);
    }
    let (mut alice, _amb) = cluster.connect(0, &jid("alice@localhost/a"), Some(0));
    let (_bob, bmb) = cluster.connect(2, &jid("bob@localhost/b"), Some(0));
    log.borrow_mut().clear();
    user_send(&mut cluster.shards[0], &mut alice, msg("bob@localhost"));
    cluster.pump();
    let Some(ConnMsg::Deliver(acc)) = bmb.pop() else {
        panic!("not delivered")
    };
    user_receive(&mut cluster.shards[2], acc).expect("not stopped");
    assert_eq!(
        log.borrow().as_slice(),
        [
            "user_send_packet",
            "user_send_message",
            "filter_packet",
            "filter_local_packet",
            "user_receive_packet",
            "user_receive_message",
            "xmpp_presend_element",
        ]
    );
}

#[test]
fn a_handler_stopping_filter_packet_drops_the_stanza() {
    let mut cluster = Cluster::new(2, &["localhost"]);
    let log: Log = Rc::default();
    for s in cluster.shards.iter_mut() {
        record(&mut s.hooks, &log);
        s.hooks.filter_packet.add(10, "block", |acc: &mut Acc, _| {
            if String::from_utf8_lossy(acc.stanza.bytes()).contains("forbidden") {
                HookResult::Stop
            } else {
                HookResult::Continue
            }
        });
    }
    let (mut alice, amb) = cluster.connect(0, &jid("alice@localhost/a"), Some(0));
    let (_bob, bmb) = cluster.connect(1, &jid("bob@localhost/b"), Some(0));
    log.borrow_mut().clear();
    let st = Stanza::parse(
        b"<message to='bob@localhost' type='chat'><body>forbidden</body></message>".to_vec(),
    )
    .unwrap();
    user_send(&mut cluster.shards[0], &mut alice, st);
    cluster.pump();
    assert!(bmb.is_empty(), "stopped stanza was delivered");
    assert!(amb.is_empty(), "a stopped stanza is dropped, not bounced");
    // The recorder at priority 50 never saw filter_packet: the blocker at 10 stopped the run.
    assert_eq!(
        log.borrow().as_slice(),
        ["user_send_packet", "user_send_message"]
    );
    user_send(&mut cluster.shards[0], &mut alice, msg("bob@localhost"));
    cluster.pump();
    assert!(matches!(bmb.pop(), Some(ConnMsg::Deliver(_))));
}

#[test]
fn a_receive_handler_can_stop_delivery() {
    let mut cluster = Cluster::new(1, &["localhost"]);
    cluster.shards[0]
        .hooks
        .user_receive_message
        .add(10, "privacy", |_: &mut Acc, _| HookResult::Stop);
    let (mut alice, _amb) = cluster.connect(0, &jid("alice@localhost/a"), Some(0));
    let (_bob, bmb) = cluster.connect(0, &jid("bob@localhost/b"), Some(0));
    user_send(&mut cluster.shards[0], &mut alice, msg("bob@localhost"));
    cluster.pump();
    let Some(ConnMsg::Deliver(acc)) = bmb.pop() else {
        panic!("not routed")
    };
    assert!(user_receive(&mut cluster.shards[0], acc).is_none());
}
