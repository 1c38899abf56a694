//! Stanzas between nodes, on one shard: publishing to another node's shard with a copy kept
//! until acknowledged, delivering what arrives, acknowledging it, and what NATS returns.

use super::link::{link_of, LinkRc};
use super::membership::broadcast;
use super::wire::Record;
use crate::hooks::Acc;
use crate::shard::{ConnMsg, SessionRef, Shard, ShardId};
use crate::xmpp::StanzaErrorCondition;

use super::link::MAX_UNACKED;

/// A message for a session on another node, on its home shard: a stanza is published to that
/// node's shard, a copy kept until acknowledged.
pub(super) fn send_remote(link: &LinkRc, shard: &mut Shard, session: SessionRef, msg: ConnMsg) {
    let acc = match msg {
        ConnMsg::Deliver(acc) => acc,
        ConnMsg::Ext(m) => return m.conn_gone(shard),
        // A conflict on bind: the other node closes its own session when our binding reaches it
        // (see `apply_record`); nothing else is sent to a remote session.
        _ => return,
    };
    let Some((slot, to_shard)) = session.remote_parts() else {
        return;
    };
    let target = shard
        .sm
        .resources_of(acc.to.bare_str())
        .iter()
        .find(|r| r.session == session)
        .map(|r| r.jid.clone());
    let mut l = link.borrow_mut();
    let (Some(who), Some(target)) = (l.table.get(slot).cloned(), target) else {
        // The member died (or the session left) meanwhile: the session manager picks again.
        drop(l);
        return shard.reroute(acc);
    };
    if l.unacked_len >= MAX_UNACKED {
        l.stats.refused += 1;
        drop(l);
        return shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
    }
    // Taken only once published: a refused stanza leaves no gap in the receiver's sequence.
    let seq = l.seqs.get(&(slot, to_shard)).copied().unwrap_or(0) + 1;
    let published = {
        let l = &mut *l;
        Record::deliver_header(
            &mut l.scratch,
            target.as_str(),
            acc.from.as_str(),
            acc.to.as_str(),
            acc.reroutes,
        );
        l.nats.publish_parts(
            format_args!("{}.n.{}.{to_shard}", l.node.prefix, who.node),
            format_args!("{}.{slot}.{to_shard}.{seq}", l.inbox),
            &[&l.scratch, acc.stanza.bytes()],
        )
    };
    if published.is_err() {
        l.stats.refused += 1;
        drop(l);
        return shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
    }
    l.seqs.insert((slot, to_shard), seq);
    l.stats.stanzas_out += 1;
    l.unacked
        .entry((slot, to_shard))
        .or_default()
        .push_back((seq, acc));
    l.unacked_len += 1;
    l.wake();
}

/// A stanza for a session bound on this shard.
pub(super) fn deliver(link: &LinkRc, shard: &mut Shard, rec: Record, reply: Option<&str>) {
    let Record::Deliver {
        target,
        from,
        to,
        reroutes,
        stanza,
    } = rec
    else {
        return;
    };
    if let Some(reply) = reply {
        received(link, reply);
    }
    link.borrow_mut().stats.stanzas_in += 1;
    let Ok(stanza) = crate::xml::Stanza::parse(stanza) else {
        tracing::warn!(
            shard = shard.id.0,
            "cluster: unparsable stanza from another node"
        );
        return;
    };
    let mut acc = Acc::new(stanza, from, to, shard.id);
    acc.reroutes = reroutes;
    match shard.local_session(target.as_str()) {
        Some(conn) => {
            let at = shard.session_ref(conn);
            shard.send_to_session(at, ConnMsg::Deliver(acc));
        }
        // The session left this node: handled as for any vanished full JID.
        None => shard.reroute(acc),
    }
}

/// Senders remembered for gap detection; past it the table starts over (a gap spanning that
/// moment goes unnoticed).
const MAX_SENDERS: usize = 4096;

/// Notes a stanza's reply subject `PREFIX.SEQ`: acknowledged after this batch; a sequence number
/// past the one expected from that sender reports the gap at once (before the acknowledgement,
/// on the same connection, so the sender handles it first).
fn received(link: &LinkRc, reply: &str) {
    let Some((prefix, seq)) = reply.rsplit_once('.') else {
        return;
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return;
    };
    let mut l = link.borrow_mut();
    if l.expected.len() >= MAX_SENDERS && !l.expected.contains_key(prefix) {
        l.expected.clear();
    }
    let expected = l.expected.insert(prefix.to_owned(), seq + 1);
    if let Some(e) = expected.filter(|&e| seq > e) {
        l.stats.gaps += 1;
        let rec = Record::Gap { from_seq: e }.encode();
        l.publish_control(reply, None, &rec);
    }
    l.acks_due.insert(prefix.to_owned(), reply.to_owned());
}

/// Publishes the acknowledgements due after a batch of input: one per sending shard.
pub fn flush_acks(link: &LinkRc) {
    let mut l = link.borrow_mut();
    if l.acks_due.is_empty() {
        return;
    }
    let ack = Record::Ack {
        from: l.node.me.clone(),
        shard: l.shard,
    }
    .encode();
    let due: Vec<String> = l.acks_due.drain().map(|(_, r)| r).collect();
    for reply in due {
        l.publish_control(&reply, None, &ack);
    }
}

/// The receiver (slot, shard) `key` got everything up to `seq` from this shard.
pub(super) fn acked(link: &LinkRc, key: (u16, u16), seq: u64) {
    let mut l = link.borrow_mut();
    let mut freed = 0;
    if let Some(q) = l.unacked.get_mut(&key) {
        while q.front().is_some_and(|(s, _)| *s <= seq) {
            q.pop_front();
            freed += 1;
        }
    }
    l.unacked_len -= freed;
}

/// The receiver (slot, shard) `key` never got `missing` (NATS dropped them): those copies are
/// routed again (out of order with what followed them: the price of the drop).
pub(super) fn gap(
    link: &LinkRc,
    shard: &mut Shard,
    key: (u16, u16),
    missing: std::ops::Range<u64>,
) {
    let copies = link.borrow_mut().take_range(key, missing);
    link.borrow_mut().stats.rerouted += copies.len() as u64;
    for acc in copies {
        shard.reroute(acc);
    }
}

/// NATS returned stanza `seq`: nobody listens on its node's shard any more. Shard 0 declares the
/// member dead, then routes the stanza again (after the purge reached every shard).
pub(super) fn returned(link: &LinkRc, shard: &mut Shard, key: (u16, u16), seq: u64) {
    let Some(acc) = link.borrow_mut().take_range(key, seq..seq + 1).pop() else {
        return;
    };
    let slot = key.0;
    link.borrow_mut().stats.returned += 1;
    crate::sm::run_on(
        shard,
        ShardId(0),
        Box::new(move |s| {
            if let Some(link) = link_of(s) {
                let change = link
                    .borrow_mut()
                    .members
                    .as_mut()
                    .and_then(|m| m.suspect(slot));
                if let Some(c) = change {
                    broadcast(s, c);
                }
            }
            s.reroute(acc);
        }),
    );
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::cluster::link::{install, on_msg, Link};
    use crate::cluster::members::Change;
    use crate::cluster::nats::Msg;
    use crate::cluster::wire::Incarnation;
    use crate::cluster::{sid, Node};
    use crate::jid::{FullJid, Jid};

    fn shard_and_link(name: &str) -> (Shard, LinkRc) {
        let node = Node {
            prefix: "petrel.t".into(),
            me: Incarnation {
                node: name.into(),
                id: 1,
            },
            c2s: String::new(),
            heartbeat: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(3),
        };
        let mut shard = Shard::new(
            ShardId(0),
            1,
            Rc::new(["localhost".to_owned()].into_iter().collect()),
            crate::shard::cluster::DEFAULT_ROUTING.to_vec().into(),
            usize::MAX / 2,
        );
        let link = Rc::new(RefCell::new(Link::new(Rc::new(node), 0)));
        install(&mut shard, &link);
        link.borrow_mut().nats.take_output();
        (shard, link)
    }

    fn chat(to: &str, body: &str) -> Acc {
        let stanza = crate::xml::Stanza::parse(
            format!("<message to='{to}' type='chat'><body>{body}</body></message>").into_bytes(),
        )
        .unwrap();
        Acc::new(
            stanza,
            Jid::parse("alice@localhost/a").unwrap(),
            Jid::parse(to).unwrap(),
            ShardId(0),
        )
    }

    fn output(link: &LinkRc) -> String {
        String::from_utf8_lossy(&link.borrow_mut().nats.take_output()).into_owned()
    }

    #[test]
    fn the_receiver_reports_a_gap_before_its_acknowledgement() {
        let (mut shard, link) = shard_and_link("b");
        let deliver = |shard: &mut Shard, seq: u64| {
            let rec = Record::Deliver {
                target: FullJid::parse("bob@localhost/r").unwrap(),
                from: Jid::parse("alice@localhost/a").unwrap(),
                to: Jid::parse("bob@localhost/r").unwrap(),
                reroutes: 0,
                stanza: b"<message type='headline'/>".to_vec(),
            };
            let msg = Msg {
                subject: "petrel.t.n.b.0".into(),
                sid: sid::STANZAS,
                reply: Some(format!("petrel.t.r.a.1.0.0.{seq}")),
                status: None,
                payload: rec.encode(),
            };
            on_msg(&link, shard, msg);
        };
        deliver(&mut shard, 1);
        deliver(&mut shard, 2);
        flush_acks(&link);
        let out = output(&link);
        assert!(!out.contains("X\n"), "{out}");
        assert!(out.contains("PUB petrel.t.r.a.1.0.0.2 "), "{out}");
        // 3 and 4 never came.
        deliver(&mut shard, 5);
        flush_acks(&link);
        let out = output(&link);
        let gap = out.find("X\n3\n").expect("a gap from 3");
        let ack = out.rfind("PUB petrel.t.r.a.1.0.0.5 ").unwrap();
        assert!(gap < ack, "the gap goes before the acknowledgement: {out}");
        assert_eq!(link.borrow().stats.gaps, 1);
    }

    #[test]
    fn the_sender_resends_what_a_gap_names_and_forgets_what_is_acknowledged() {
        let (mut shard, link) = shard_and_link("a");
        let b = Incarnation {
            node: "b".into(),
            id: 2,
        };
        link.borrow_mut()
            .table
            .apply(&Change::Joined { slot: 0, who: b });
        let bob = FullJid::parse("bob@localhost/r").unwrap();
        let remote = SessionRef::remote(0, 1, 1);
        shard.sm.insert(bob.clone(), remote);
        shard.sm.set_priority(&bob, remote, Some(0));
        for body in ["one", "two", "three"] {
            crate::sm::route(&mut shard, chat("bob@localhost/r", body));
        }
        let out = output(&link);
        for seq in 1..=3 {
            assert!(
                out.contains(&format!("PUB petrel.t.n.b.1 petrel.t.r.a.1.0.0.1.{seq} ")),
                "{out}"
            );
        }
        let seqs = |link: &LinkRc| -> Vec<u64> {
            link.borrow().unacked[&(0, 1)]
                .iter()
                .map(|(s, _)| *s)
                .collect()
        };
        assert_eq!(seqs(&link), [1, 2, 3]);
        // The receiver got 3 but not 2: 2 goes again, as 4.
        gap(&link, &mut shard, (0, 1), 2..3);
        let out = output(&link);
        assert!(out.contains("petrel.t.r.a.1.0.0.1.4 "), "{out}");
        assert!(out.contains("two"), "{out}");
        assert_eq!(seqs(&link), [1, 3, 4]);
        acked(&link, (0, 1), 3);
        assert_eq!(seqs(&link), [4]);
        acked(&link, (0, 1), 4);
        assert!(seqs(&link).is_empty());
    }
}
