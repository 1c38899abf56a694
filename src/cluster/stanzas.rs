//! Stanzas between nodes, on one shard: publishing to another node's shard with a copy kept
//! until acknowledged, delivering what arrives, acknowledging it, and what NATS returns.

use super::link::{link_of, LinkRc};
use super::membership::broadcast;
use super::wire::{Incarnation, Record};
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
    let payload = Record::Deliver {
        target,
        from: acc.from.clone(),
        to: acc.to.clone(),
        reroutes: acc.reroutes,
        stanza: acc.stanza.bytes().to_vec(),
    }
    .encode();
    l.seq += 1;
    let seq = l.seq;
    let subject = format!("{}.n.{}.{to_shard}", l.node.prefix, who.node);
    let reply = format!("{}.{seq}", l.inbox);
    if l.nats.publish(&subject, Some(&reply), &payload).is_err() {
        l.stats.refused += 1;
        drop(l);
        return shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
    }
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
    {
        let mut l = link.borrow_mut();
        l.stats.stanzas_in += 1;
        if let Some(reply) = reply {
            if let Some((prefix, _)) = reply.rsplit_once('.') {
                l.acks_due.insert(prefix.to_owned(), reply.to_owned());
            }
        }
    }
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

/// Member `from`'s shard `at` got everything up to `seq` from this shard.
pub(super) fn acked(link: &LinkRc, from: &Incarnation, at: u16, seq: u64) {
    let mut l = link.borrow_mut();
    let Some(slot) = l.table.slot_of(from) else {
        return;
    };
    let mut freed = 0;
    if let Some(q) = l.unacked.get_mut(&(slot, at)) {
        while q.front().is_some_and(|(s, _)| *s <= seq) {
            q.pop_front();
            freed += 1;
        }
    }
    l.unacked_len -= freed;
}

/// NATS returned stanza `seq`: nobody listens on its node's shard any more. Shard 0 declares the
/// member dead, then routes the stanza again (after the purge reached every shard).
pub(super) fn returned(link: &LinkRc, shard: &mut Shard, seq: u64) {
    let Some((slot, acc)) = link.borrow_mut().take_copy(seq) else {
        return;
    };
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
