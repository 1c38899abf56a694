//! `ejabberd_s2s`: a remote server. The stanza (its `to` domain hosted nowhere here: the earlier
//! steps took local ones) travels over the mesh to the home shard of the remote domain, where the
//! outgoing stream for (our domain, remote domain) lives (see [`Shard::route_remote`]).
//!
//! Only stanzas from one of our domains (hosted, a service registered here, or an external
//! component's) leave: a server does not relay between two other servers (RFC 6120 §13.5: routing
//! must not let a remote domain use us as a relay); such a stanza is answered `not-allowed`.

use super::Routed;
use crate::component::routes::Routes;
use crate::hooks::Acc;
use crate::shard::{home_shard_of, Shard, ShardMsg};
use crate::xmpp::StanzaErrorCondition;

/// Sends the stanza towards its remote domain's home shard.
pub fn route(shard: &mut Shard, mut acc: Acc) -> Routed {
    super::took(shard, &mut acc, crate::config::RoutingModule::S2s);
    let from = acc.from.domain();
    let component = |s: &Shard| s.ext.get::<Routes>().is_some_and(|r| r.is_configured(from));
    if !(shard.is_hosted(from) || shard.local_routes.contains(from) || component(shard)) {
        shard.bounce(&acc, StanzaErrorCondition::NotAllowed);
        return Routed::Done;
    }
    let home = home_shard_of(acc.to.domain(), shard.shards);
    shard.send_to_shard(home, ShardMsg::Remote(acc));
    Routed::Done
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::hooks::Acc;
    use crate::jid::FullJid;
    use crate::shard::cluster::Cluster;
    use crate::shard::{home_shard_of, ShardId};
    use crate::xml::Stanza;

    fn send(c: &mut Cluster, on: usize, xml: &str) {
        let stanza = Stanza::parse(xml.as_bytes().to_vec()).unwrap();
        let from = stanza.from().unwrap().parse().unwrap();
        let to = stanza.to().unwrap().parse().unwrap();
        let acc = Acc::new(stanza, from, to, ShardId(on as u16));
        crate::router::route(&mut c.shards[on], acc);
        c.shards[on].drain_to_route();
        c.pump();
    }

    #[test]
    fn remote_stanzas_reach_the_remote_domains_home_shard() {
        let mut c = Cluster::new(4, &["petrel.test"]);
        let seen: Rc<RefCell<Vec<(ShardId, String)>>> = Rc::default();
        for shard in &mut c.shards {
            let seen = seen.clone();
            shard.set_remote_handler(Rc::new(move |shard, acc| {
                seen.borrow_mut()
                    .push((shard.id, acc.to.as_str().to_owned()))
            }));
        }
        for on in 0..4 {
            send(
                &mut c,
                on,
                "<message from='a@petrel.test/r' to='b@other.test' type='chat'><body>x</body></message>",
            );
        }
        let home = home_shard_of("other.test", 4);
        assert_eq!(seen.borrow().len(), 4);
        assert!(seen
            .borrow()
            .iter()
            .all(|(s, to)| *s == home && to == "b@other.test"));
    }

    #[test]
    fn relaying_and_no_federation_bounce() {
        let mut c = Cluster::new(2, &["petrel.test"]);
        let jid: FullJid = "a@petrel.test/r".parse().unwrap();
        let (_sess, mb) = c.connect(0, &jid, None);
        // No remote handler (federation not running): remote-server-not-found to the sender.
        send(
            &mut c,
            1,
            "<message from='a@petrel.test/r' to='b@other.test' id='1'><body>x</body></message>",
        );
        let got = match mb.pop() {
            Some(crate::shard::ConnMsg::Deliver(acc)) => {
                String::from_utf8(acc.stanza.bytes().to_vec()).unwrap()
            }
            other => panic!("{other:?}"),
        };
        assert!(got.contains("remote-server-not-found"), "{got}");
        // From a domain that is not ours: not relayed.
        let seen: Rc<RefCell<usize>> = Rc::default();
        for shard in &mut c.shards {
            let seen = seen.clone();
            shard.set_remote_handler(Rc::new(move |_, _| *seen.borrow_mut() += 1));
        }
        send(
            &mut c,
            0,
            "<message from='x@third.test/r' to='a@petrel.test/r' id='0'/>",
        );
        mb.pop();
        send(
            &mut c,
            0,
            "<message from='x@third.test/r' to='b@other.test' id='2'><body>x</body></message>",
        );
        assert_eq!(*seen.borrow(), 0);
    }
}
