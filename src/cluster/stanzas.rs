//! Stanzas between nodes, on one shard: publishing to another node's shard with a copy kept
//! until acknowledged, delivering what arrives, acknowledging it, and what NATS returns.

use std::time::Instant;

use super::link::{link_of, Link, LinkRc};
use super::membership::broadcast;
use super::wire::{DeliverHead, Malformed, Record};
use crate::hooks::Acc;
use crate::jid::Jid;
use crate::shard::{ConnMsg, SessionRef, Shard, ShardId};
use crate::xmpp::StanzaErrorCondition;

use super::link::{INBOX_SLOT, MAX_UNACKED};
use super::peer::Peer;

/// A message for a session on another node, on its home shard: a stanza is published to that
/// node's shard, a copy kept until acknowledged.
pub(super) fn send_remote(link: &LinkRc, shard: &mut Shard, session: SessionRef, msg: ConnMsg) {
    let acc = match msg {
        ConnMsg::Deliver(acc) => acc,
        ConnMsg::Handled(seqs) => return handled(link, shard, session, seqs),
        ConnMsg::Ext(m) => return m.conn_gone(shard),
        // A conflict on bind: the other node closes its own session when our binding reaches it
        // (see `apply_record`); nothing else is sent to a remote session.
        _ => return,
    };
    let Some((slot, to_shard)) = session.remote_parts() else {
        return;
    };
    let mut guard = link.borrow_mut();
    // Split borrows of the link's fields; no allocation per stanza (the target and the member
    // are borrowed, not cloned).
    let l = &mut *guard;
    let target = shard
        .sm
        .resources_of(acc.to.bare_str())
        .iter()
        .find(|r| r.session == session)
        .map(|r| r.jid.as_str());
    let Some(target) = target else {
        // The session left meanwhile: the session manager picks again.
        drop(guard);
        return shard.reroute(acc);
    };
    Record::deliver_header(
        &mut l.scratch,
        target,
        acc.from.as_str(),
        acc.to.as_str(),
        acc.reroutes,
    );
    let done = publish_kept(l, (slot, to_shard), acc);
    drop(guard);
    done.settle(shard);
}

/// What became of a stanza given to [`publish_kept`].
pub(super) enum Published {
    /// Published, its copy kept.
    Kept,
    /// The member died meanwhile: to route again.
    Gone(Acc),
    /// Output or copies full: to answer `resource-constraint`.
    Refused(Acc),
}

impl Published {
    /// Routes again or answers what was not published (the link no longer borrowed).
    pub(super) fn settle(self, shard: &mut Shard) {
        match self {
            Published::Kept => {}
            Published::Gone(acc) => shard.reroute(acc),
            Published::Refused(acc) => shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint),
        }
    }
}

/// Publishes the stanza whose record header is in `l.scratch` to shard `to_shard` of member
/// `slot`, with the next sequence number in the reply subject, and keeps its copy until
/// acknowledged (`D` and `R` records alike).
pub(super) fn publish_kept(l: &mut Link, (slot, to_shard): (u16, u16), acc: Acc) -> Published {
    let Some(who) = l.table.get(slot) else {
        return Published::Gone(acc);
    };
    if l.unacked_len >= MAX_UNACKED {
        l.stats.refused += 1;
        return Published::Refused(acc);
    }
    let peer = l.peers.entry((slot, to_shard)).or_insert_with(|| {
        Peer::new(
            format!("{}.n.{}.{to_shard}", l.node.prefix, who.node),
            format!("{}.{slot}.{to_shard}.", l.inbox),
        )
    });
    // Taken only once published: a refused stanza leaves no gap in the receiver's sequence.
    let seq = peer.seq + 1;
    let published = l.nats.publish_parts(
        &peer.subject,
        &[&peer.reply, itoa::Buffer::new().format(seq).as_bytes()],
        &[&l.scratch, acc.stanza.bytes()],
    );
    if published.is_err() {
        l.stats.refused += 1;
        return Published::Refused(acc);
    }
    peer.seq = seq;
    peer.keep(seq, acc);
    l.stats.stanzas_out += 1;
    l.unacked_len += 1;
    l.wake();
    Published::Kept
}

/// A stanza for a session bound on this shard (a `Deliver` payload).
pub(super) fn deliver(link: &LinkRc, shard: &mut Shard, payload: Vec<u8>, reply: Option<&str>) {
    let look = |s: &Shard, target: &str| s.local_session(target);
    let Some((acc, conn)) = arrived(link, shard, payload, reply, b'D', look) else {
        return;
    };
    match conn {
        Some(conn) => {
            let at = shard.session_ref(conn);
            shard.send_to_session(at, ConnMsg::Deliver(acc));
        }
        // The session left this node: handled as for any vanished full JID.
        None => shard.reroute(acc),
    }
}

/// The stanza of a `Deliver` (`kind` `D`) or `ToObject` (`R`) payload as an `Acc` on this shard,
/// with the token that acknowledges it to its sender when its route ends here (see `handled`),
/// and what `look` found for the record's target (read in place, not copied); None when
/// malformed.
pub(super) fn arrived<T>(
    link: &LinkRc,
    shard: &mut Shard,
    mut payload: Vec<u8>,
    reply: Option<&str>,
    kind: u8,
    look: impl FnOnce(&Shard, &str) -> T,
) -> Option<(Acc, T)> {
    let token = reply.and_then(|r| received(link, r));
    link.borrow_mut().stats.stanzas_in += 1;
    let parsed = DeliverHead::parse_kind(&payload, kind).and_then(|(h, at)| {
        let from = Jid::parse(h.from).map_err(|_| Malformed)?;
        let to = Jid::parse(h.to).map_err(|_| Malformed)?;
        let found = look(shard, h.target);
        Ok((from, to, h.reroutes, found, at))
    });
    let Ok((from, to, reroutes, found, at)) = parsed else {
        tracing::warn!(shard = shard.id.0, "cluster: malformed stanza record");
        return None;
    };
    // The stanza's bytes stay in the payload's allocation.
    payload.drain(..at);
    let Ok(stanza) = crate::xml::Stanza::parse(payload) else {
        tracing::warn!(
            shard = shard.id.0,
            "cluster: unparsable stanza from another node"
        );
        return None;
    };
    let mut acc = Acc::new(stanza, from, to, shard.id);
    acc.reroutes = reroutes;
    if let Some((sender, seq)) = token {
        // Acknowledged to the sender when the stanza's route ends here (see `handled`).
        let at = SessionRef::remote(INBOX_SLOT, shard.id.0, sender);
        acc.handled = Some(crate::hooks::Handled::new(at, seq as u32));
    }
    Some((acc, found))
}

/// Senders remembered (gap detection, acknowledgement tokens); past it the oldest is forgotten
/// (most likely a past incarnation of a node): a token of its stanzas still travelling is then
/// not acknowledged, and its copy waits at the sender until it declares this node dead or
/// reconnects.
const MAX_SENDERS: usize = 4096;

/// Notes a stanza's reply subject `PREFIX.SEQ`: a sequence number past the one expected from that
/// sender reports the gap at once (before the stanza's acknowledgement, on the same connection,
/// so the sender handles it first). Returns the sender's number and the sequence number.
fn received(link: &LinkRc, reply: &str) -> Option<(u64, u64)> {
    let (prefix, seq) = reply.rsplit_once('.')?;
    let seq = seq.parse::<u64>().ok()?;
    let mut l = link.borrow_mut();
    // The prefix is allocated only for a sender not seen yet (this runs once per stanza).
    let expected = match l.expected.get_mut(prefix) {
        Some(e) => Some(std::mem::replace(e, seq + 1)),
        None => l.expected.insert(prefix.to_owned(), seq + 1),
    };
    if let Some(e) = expected.filter(|&e| seq > e) {
        l.stats.gaps += 1;
        let rec = Record::Gap { from_seq: e }.encode();
        l.publish_control(reply, None, &rec);
    }
    if let Some(&id) = l.sender_ids.get(prefix) {
        return Some((id, seq));
    }
    if l.sender_order.len() >= MAX_SENDERS {
        if let Some(old) = l.sender_order.pop_front() {
            if let Some(p) = l.senders.remove(&old) {
                l.sender_ids.remove(&p);
                l.expected.remove(&p);
            }
        }
    }
    let id = l.next_sender;
    l.next_sender += 1;
    l.senders.insert(id, prefix.to_owned());
    l.sender_ids.insert(prefix.to_owned(), id);
    l.sender_order.push_back(id);
    Some((id, seq))
}

/// Stanzas from another node reached the end of their route on this node (their tokens dropped,
/// see `deliver`): the shard that received them tells their sender, in one record.
fn handled(link: &LinkRc, shard: &mut Shard, token: SessionRef, seqs: Vec<u32>) {
    let Some((INBOX_SLOT, owner)) = token.remote_parts() else {
        return;
    };
    let sender = token.conn.0 & 0xffff_ffff_ffff;
    if owner != shard.id.0 {
        // Dropped on another shard (re-routed there): its receiver's shard knows the sender.
        let msg = ConnMsg::Handled(seqs);
        let at = ShardId(owner);
        return crate::sm::run_on(
            shard,
            at,
            Box::new(move |s| {
                if let (Some(link), ConnMsg::Handled(seqs)) = (link_of(s), msg) {
                    handled(&link, s, token, seqs);
                }
            }),
        );
    }
    let mut l = link.borrow_mut();
    let Some(prefix) = l.senders.get(&sender).cloned() else {
        return;
    };
    let top = seqs.iter().copied().max().unwrap_or(0);
    let ack = Record::Ack {
        from: l.node.me.clone(),
        shard: l.shard,
        seqs,
    }
    .encode();
    l.publish_control(&format!("{prefix}.{top}"), None, &ack);
}

/// The receiver (slot, shard) `key` is done with these stanzas (sequence numbers, low 32 bits):
/// their copies go (and with them the sender's own acknowledgement tokens).
pub(super) fn acked(link: &LinkRc, key: (u16, u16), seqs: &[u32]) {
    let mut l = link.borrow_mut();
    let freed = l.peers.get_mut(&key).map_or(0, |p| p.ack(seqs));
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

/// NATS returned stanza `seq`: nobody listens on its node's shard (any more, or yet): shard 0
/// decides what it means (see `on_returned`).
pub(super) fn returned(link: &LinkRc, shard: &mut Shard, key: (u16, u16), seq: u64) {
    let Some(acc) = link.borrow_mut().take_range(key, seq..seq + 1).pop() else {
        return;
    };
    link.borrow_mut().stats.returned += 1;
    crate::sm::run_on(
        shard,
        ShardId(0),
        Box::new(move |s| match link_of(s) {
            Some(link) => on_returned(&link, s, key, acc),
            None => s.reroute(acc),
        }),
    );
}

/// A stanza for (member slot, shard) `key` NATS returned, on shard 0. Just after our own
/// reconnection (or while we are cut off) that shard may simply not have subscribed again on the
/// new server: the stanza waits until the shard announces itself (`resubscribed`) or the failure
/// timeout passes (`release_overdue`), then is routed again once; it goes at once when the shard
/// announced itself already or [`MAX_UNACKED`] wait. Otherwise the member is declared dead and the
/// stanza routed again (after the purge reached every shard).
fn on_returned(link: &LinkRc, shard: &mut Shard, key: (u16, u16), acc: Acc) {
    let now = Instant::now();
    let mut l = link.borrow_mut();
    if l.resubscribing(now) {
        // `back` holds what announced itself on our current connection only.
        if (l.connected && l.back.contains(&key)) || l.held.len() >= MAX_UNACKED {
            drop(l);
            return shard.reroute(acc);
        }
        l.held.push(Held {
            key,
            since: now,
            acc,
        });
        return;
    }
    let change = l.members.as_mut().and_then(|m| m.suspect(key.0));
    drop(l);
    if let Some(c) = change {
        broadcast(shard, c);
    }
    shard.reroute(acc);
}

/// A stanza NATS returned just after our reconnection, waiting on shard 0 for its member's shard.
pub(super) struct Held {
    /// The (member slot, shard) it was published to.
    pub(super) key: (u16, u16),
    /// When it came back.
    since: Instant,
    /// The stanza.
    pub(super) acc: Acc,
}

/// Shard 0: shard `key.1` of member `key.0` announced itself on our connection (a snapshot frame,
/// published after its subscriptions): it listens again, what waited for it is routed again.
pub(super) fn resubscribed(link: &LinkRc, shard: &mut Shard, key: (u16, u16)) {
    let again = {
        let mut l = link.borrow_mut();
        l.back.insert(key);
        l.take_held(|h| h.key == key)
    };
    for acc in again {
        retry(shard, acc);
    }
}

/// Shard 0, every heartbeat: the stanzas that waited the failure timeout for their member's
/// shard are routed again (to it if it is back or still counts as live, else elsewhere; a return
/// now declares the member dead).
pub(super) fn release_overdue(link: &LinkRc, shard: &mut Shard, now: Instant) {
    let due = {
        let mut l = link.borrow_mut();
        let timeout = l.node.failure_timeout;
        l.take_held(|h| now.saturating_duration_since(h.since) >= timeout)
    };
    for acc in due {
        retry(shard, acc);
    }
}

/// Routes a held stanza again: the hop NATS refused is tried again, not counted as one more
/// re-route (a stanza is held at most once per connection of ours, see `on_returned`).
fn retry(shard: &mut Shard, mut acc: Acc) {
    acc.reroutes = acc.reroutes.saturating_sub(1);
    shard.reroute(acc);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cluster::link::on_msg;
    /// A one-shard node with its link installed (no connection); shared with other tests here.
    pub(in crate::cluster) use crate::cluster::link::test_shard as shard_and_link;
    use crate::cluster::members::Change;
    use crate::cluster::nats::Msg;
    use crate::cluster::sid;
    use crate::cluster::wire::Incarnation;
    use crate::jid::{FullJid, Jid};

    /// A chat message from alice@localhost/a to `to`.
    pub(in crate::cluster) fn chat(to: &str, body: &str) -> Acc {
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

    /// What the link wrote to its NATS connection since last asked.
    pub(in crate::cluster) fn output(link: &LinkRc) -> String {
        String::from_utf8_lossy(&link.borrow_mut().nats.take_output()).into_owned()
    }

    #[test]
    fn the_receiver_acknowledges_at_the_end_of_the_route_and_reports_a_gap_first() {
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
        // bob/r is not bound here: the headlines end their route (dropped, RFC 6121 §8.5), so
        // they are acknowledged, in one record, when the shard flushes.
        deliver(&mut shard, 1);
        deliver(&mut shard, 2);
        assert!(output(&link).is_empty());
        shard.take_outgoing();
        let out = output(&link);
        assert!(!out.contains("X\n"), "{out}");
        assert!(out.contains("PUB petrel.t.r.a.1.0.0.2 "), "{out}");
        assert!(out.contains("A\nb\n1\n0\n"), "{out}");
        assert!(out.contains("1,2") || out.contains("2,1"), "{out}");
        // 3 and 4 never came.
        deliver(&mut shard, 5);
        shard.take_outgoing();
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
        let seqs = |link: &LinkRc| -> Vec<u64> { link.borrow().peers[&(0, 1)].seqs() };
        assert_eq!(seqs(&link), [1, 2, 3]);
        // The receiver got 3 but not 2: 2 goes again, as 4.
        gap(&link, &mut shard, (0, 1), 2..3);
        let out = output(&link);
        assert!(out.contains("petrel.t.r.a.1.0.0.1.4 "), "{out}");
        assert!(out.contains("two"), "{out}");
        assert_eq!(seqs(&link), [1, 3, 4]);
        // Acknowledged as their routes end there, in any order.
        acked(&link, (0, 1), &[3]);
        assert_eq!(seqs(&link), [1, 4]);
        acked(&link, (0, 1), &[4, 1]);
        assert!(seqs(&link).is_empty());
        assert_eq!(link.borrow().unacked_len, 0);
    }

    #[test]
    fn a_return_after_our_reconnection_waits_for_the_shard_and_is_no_death() {
        let (mut shard, link) = shard_and_link("a");
        let b = Incarnation {
            node: "b".into(),
            id: 2,
        };
        let now = Instant::now();
        let joined = link
            .borrow_mut()
            .members
            .as_mut()
            .unwrap()
            .heard(&b, None, now);
        for c in &joined.0 {
            link.borrow_mut().table.apply(c);
        }
        // Our connection came back just now.
        let _ = link.borrow_mut().reset();
        link.borrow_mut().connected = true;
        output(&link);
        let bob = FullJid::parse("bob@localhost/r").unwrap();
        let remote = SessionRef::remote(0, 1, 1);
        shard.sm.insert(bob.clone(), remote);
        shard.sm.set_priority(&bob, remote, Some(0));
        crate::sm::route(&mut shard, chat("bob@localhost/r", "one"));
        assert!(output(&link).contains("one"));
        // NATS returns it: b's shard 1 has not subscribed on the new server yet. It waits.
        let acc = link.borrow_mut().take_range((0, 1), 1..2).pop().unwrap();
        on_returned(&link, &mut shard, (0, 1), acc);
        assert_eq!(link.borrow().members.as_ref().unwrap().live().count(), 1);
        assert_eq!(link.borrow().held.len(), 1);
        assert!(output(&link).is_empty());
        // b's shard 1 announces itself: the stanza goes again, to it.
        resubscribed(&link, &mut shard, (0, 1));
        let out = output(&link);
        assert!(
            out.contains("PUB petrel.t.n.b.1 petrel.t.r.a.1.0.0.1.2 "),
            "{out}"
        );
        assert!(out.contains("one"), "{out}");
        assert!(link.borrow().held.is_empty());
        // Long after our reconnection a return is a death again.
        let long_ago = now - link.borrow().node.failure_timeout * 2;
        link.borrow_mut()
            .members
            .as_mut()
            .unwrap()
            .refresh_all(long_ago);
        let acc = link.borrow_mut().take_range((0, 1), 2..3).pop().unwrap();
        on_returned(&link, &mut shard, (0, 1), acc);
        assert_eq!(link.borrow().members.as_ref().unwrap().live().count(), 0);
        assert!(link.borrow().held.is_empty());
    }
}
