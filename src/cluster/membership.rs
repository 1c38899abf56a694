//! Membership on the shards: shard 0 hears members and declares deaths; every shard applies the
//! changes in order (its member table, and on a death the purge of the member's sessions, the
//! `unavailable` said on their behalf, and the re-routing of unacknowledged stanzas).

use std::time::Instant;

use super::link::{link_of, LinkRc};
use super::members::Change;
use super::wire::{Incarnation, Record};
use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::shard::{SessionRef, Shard, ShardId};

/// Shard 0 heard from `who`: membership changes go to every shard first.
pub(super) fn heard(
    link: &LinkRc,
    shard: &mut Shard,
    who: &Incarnation,
    info: Option<(u16, &str)>,
) -> Option<u16> {
    let (changes, slot) = link
        .borrow_mut()
        .members
        .as_mut()?
        .heard(who, info, Instant::now());
    for c in changes {
        broadcast(shard, c);
    }
    slot
}

/// Applies a membership change on every shard, shard 0 last: by the time shard 0 routes anything
/// again, every other shard has the change queued before it.
pub fn broadcast(shard: &mut Shard, change: Change) {
    if let Change::Joined { who, .. } = &change {
        // A member that joins (a start, a restart, or back after being cut off) tells us its
        // sessions.
        if let Some(link) = link_of(shard) {
            let mut l = link.borrow_mut();
            let subject = format!("{}.sync.{}", l.node.prefix, who.node);
            let reply = format!("{}.sync", l.inbox);
            l.publish_control(&subject, Some(&reply), &Record::SyncRequest.encode());
        }
    }
    // One node speaks for a dead member's users (their contacts get one `unavailable` each, not
    // one per surviving node): the live node with the smallest name, as this node sees them.
    let speak = matches!(change, Change::Died { .. })
        && link_of(shard).is_some_and(|link| {
            let l = link.borrow();
            let me = &l.node.me.node;
            l.members
                .as_ref()
                .is_some_and(|m| m.live().all(|x| x.who.node > *me))
        });
    for i in (0..shard.shards).rev() {
        let c = change.clone();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| apply_change(s, c, speak)),
        );
    }
}

/// A dead member's available sessions homed here go unavailable as if their clients had said so:
/// the presence modules tell their contacts and their other resources.
pub(super) fn unavailable_on_behalf(shard: &mut Shard, slot: u16) {
    let available: Vec<(FullJid, SessionRef)> = shard
        .sm
        .all_resources()
        .filter(|r| r.priority.is_some())
        .filter(|r| r.session.remote_parts().is_some_and(|(s, _)| s == slot))
        .map(|r| (r.jid.clone(), r.session))
        .collect();
    for (jid, session) in available {
        let el = crate::xml::Element::new("presence", crate::xmpp::ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", jid.as_str());
        let mut acc = Acc::new(
            crate::xml::Stanza::from_element(&el),
            crate::jid::Jid::from(jid.clone()),
            crate::jid::Jid::from(jid.bare()),
            shard.id,
        );
        acc.put(
            crate::sm::PRESENCE_UPDATE,
            crate::sm::PresenceUpdate {
                session,
                priority: None,
                initial: false,
            },
        );
        crate::sm::route(shard, acc);
    }
}

/// A membership change on one shard: the table, and for a death the purge of its sessions and
/// the re-routing of the stanzas not acknowledged by it (through shard 0, after the purge).
pub(super) fn apply_change(shard: &mut Shard, change: Change, speak: bool) {
    let Some(link) = link_of(shard) else { return };
    link.borrow_mut().table.apply(&change);
    let Change::Died { slot, who } = change else {
        if let Change::Joined { who, .. } = &change {
            tracing::info!(
                shard = shard.id.0,
                node = who.node,
                "cluster: member joined"
            );
        }
        return;
    };
    if speak {
        unavailable_on_behalf(shard, slot);
    }
    let gone = shard
        .sm
        .remove_where(|r| r.session.remote_parts().is_some_and(|(s, _)| s == slot));
    if !gone.is_empty() || shard.id.0 == 0 {
        tracing::info!(
            shard = shard.id.0,
            node = who.node,
            sessions = gone.len(),
            "cluster: member died, its sessions left the map"
        );
    }
    // Before the copies are routed again: stanzas for its objects find them unknown.
    super::objects::purge(shard, slot);
    let copies = {
        let mut l = link.borrow_mut();
        // Shard 0: what waited for one of its shards to subscribe again goes first (it came
        // back before the copies still kept were published).
        l.back.retain(|k| k.0 != slot);
        let mut copies = l.take_held(|h| h.key.0 == slot);
        copies.extend(l.take_copies(slot));
        copies
    };
    if copies.is_empty() {
        return;
    }
    link.borrow_mut().stats.rerouted += copies.len() as u64;
    if shard.id.0 == 0 {
        for acc in copies {
            shard.reroute(acc);
        }
    } else {
        crate::sm::run_on(
            shard,
            ShardId(0),
            Box::new(move |s| {
                for acc in copies {
                    s.reroute(acc);
                }
            }),
        );
    }
}

/// Shard 0, every heartbeat: publishes ours, declares the silent members dead.
pub fn tick(link: &LinkRc, shard: &mut Shard) {
    let deaths = {
        let mut l = link.borrow_mut();
        let hb = Record::Heartbeat {
            from: l.node.me.clone(),
            shards: shard.shards as u16,
            c2s: l.node.c2s.clone(),
        }
        .encode();
        let subject = format!("{}.hb", l.node.prefix);
        l.publish_control(&subject, None, &hb);
        match l.members.as_mut() {
            Some(m) => m.tick(Instant::now()),
            None => Vec::new(),
        }
    };
    for c in deaths {
        broadcast(shard, c);
    }
    super::stanzas::release_overdue(link, shard, Instant::now());
}
