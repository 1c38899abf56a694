//! Who gets a user's notifications, and their fan-out over the mesh.
//!
//! Recipients (XEP-0163 §4.3): the owner's available resources (unless their caps say they do
//! not want the node), the full JIDs whose available presence reached the owner and that the
//! access model admits and whose caps include `NODE+notify`, and explicit subscribers. Copies are
//! grouped by the shard where the recipient is delivered: the owner's resources by the shard their
//! session lives on, others by their home shard, one `Shard::multicast` per shard.

use std::sync::Arc;

use ahash::HashMap;

use super::interest;
use super::state::{Home, UserPep};
use crate::hooks::Acc;
use crate::jid::{BareJid, FullJid, Jid};
use crate::modules::pubsub::core::{Access, Node};
use crate::shard::{home_shard_of, Shard, ShardId};
use crate::xml::{Element, Stanza};

/// How `bare` stands towards `owner`'s `node`.
pub(super) fn access_for(u: &UserPep, owner: &BareJid, node: &Node, bare: &str) -> Access {
    if bare == owner.as_str() {
        return Access::owner();
    }
    let c = u.roster.get(bare);
    Access {
        affiliation: node.affiliation(bare),
        presence_subscribed: c.is_some_and(|c| c.from),
        roster_groups: c.map(|c| c.groups.clone()).unwrap_or_default(),
    }
}

/// Whether `bare` may read `node` now (its access model, the owner's roster).
pub(super) fn may_read(u: &UserPep, owner: &BareJid, node: &Node, bare: &str) -> bool {
    node.can_read(&access_for(u, owner, node, bare)).is_ok()
}

/// Subscribers of `node` that may no longer read it (after a configuration change).
pub(super) fn lapsed(u: &UserPep, owner: &BareJid, node: &Node) -> Vec<String> {
    node.subscribers()
        .filter(|s| Jid::parse(&s.jid).is_ok_and(|j| !may_read(u, owner, node, j.bare_str())))
        .map(|s| s.jid.clone())
        .collect()
}

/// Whether the available `jid` (advertising `ver`) gets notifications of `node`.
pub(super) fn wanted(
    shard: &Shard,
    u: &UserPep,
    owner: &BareJid,
    node: &Node,
    jid: &FullJid,
    ver: Option<&str>,
) -> bool {
    let want = ver.and_then(|v| interest::wants(&shard.ext, v, &node.name));
    if jid.bare() == *owner {
        // The owner's own resources: unless their caps say otherwise.
        return want != Some(false);
    }
    want == Some(true) && may_read(u, owner, node, jid.bare().as_str())
}

/// The full JIDs that get `node`'s notifications, each with the shard to deliver at; plus bare
/// subscribers (routed as ordinary stanzas).
pub(super) fn recipients(
    shard: &Shard,
    u: &UserPep,
    owner: &BareJid,
    node: &Node,
) -> (Vec<(FullJid, ShardId)>, Vec<Jid>) {
    let mut out: Vec<(FullJid, ShardId)> = Vec::new();
    let seen = shard
        .ext
        .get::<Home>()
        .and_then(|h| h.presences.get(owner.as_str()));
    let ver_of = |j: &FullJid| seen.and_then(|m| m.get(j)).and_then(|v| v.as_deref());
    for r in shard.sm.resources(owner) {
        if r.priority.is_some() && wanted(shard, u, owner, node, &r.jid, ver_of(&r.jid)) {
            out.push((r.jid.clone(), r.session.shard));
        }
    }
    if let Some(seen) = seen {
        for (jid, ver) in seen.iter() {
            if jid.bare() != *owner && wanted(shard, u, owner, node, jid, ver.as_deref()) {
                out.push((
                    jid.clone(),
                    home_shard_of(jid.bare().as_str(), shard.shards),
                ));
            }
        }
    }
    let mut bare = Vec::new();
    for s in node.subscribers() {
        let Ok(jid) = Jid::parse(&s.jid) else {
            continue;
        };
        // Checked again at each fan-out: a subscriber may have lost its roster subscription since.
        if !may_read(u, owner, node, jid.bare_str()) {
            continue;
        }
        match jid.clone().try_into_full() {
            Ok(full) if !out.iter().any(|(j, _)| *j == full) => {
                let at = home_shard_of(full.bare().as_str(), shard.shards);
                out.push((full, at));
            }
            Ok(_) => {}
            // XEP-0163 §4.3.2: a bare-JID subscriber whose interested resources get their copy
            // above gets no second one at the bare JID.
            Err(_)
                if out.iter().any(|(j, _)| {
                    j.as_str()
                        .strip_prefix(jid.bare_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                }) => {}
            Err(_) => bare.push(jid),
        }
    }
    (out, bare)
}

/// Sends `msg` (a notification without `to`) from `owner` to `node`'s recipients.
pub(super) fn fan_out(shard: &mut Shard, u: &UserPep, owner: &BareJid, node: &Node, msg: &Element) {
    let (full, bare) = recipients(shard, u, owner, node);
    send(shard, owner, msg, full, bare);
}

/// Sends `msg` to `full` (grouped by shard) and `bare`.
pub(super) fn send(
    shard: &mut Shard,
    owner: &BareJid,
    msg: &Element,
    mut full: Vec<(FullJid, ShardId)>,
    bare: Vec<Jid>,
) {
    let from = Jid::from(owner.clone());
    // What the owner blocked gets nothing (XEP-0163 §4.3.3, XEP-0191). The multicast below skips
    // the route's `filter_packet`, so each full JID passes it here, on a small stand-in for the
    // notification (the bare copies are routed and meet it there).
    let stand_in = Element::new("message", crate::xmpp::ns::CLIENT).with_attr("type", "headline");
    let mut probe = Acc::new(
        Stanza::from_element(&stand_in),
        from.clone(),
        from.clone(),
        shard.id,
    );
    full.retain(|(jid, _)| {
        probe.to = Jid::from(jid.clone());
        shard.run_hook(|h| &h.filter_packet, &mut probe) != crate::hooks::HookResult::Stop
    });
    let mut by_shard: HashMap<ShardId, Vec<FullJid>> = HashMap::default();
    for (jid, at) in full {
        by_shard.entry(at).or_default().push(jid);
    }
    let stanza = Stanza::from_element(msg);
    for (at, jids) in by_shard {
        let acc = Acc::new(stanza.clone(), from.clone(), from.clone(), shard.id);
        shard.multicast(at, acc, Arc::from(jids));
    }
    for to in bare {
        let mut s = stanza.clone();
        s.set_to(to.as_str());
        crate::router::route(shard, Acc::new(s, from.clone(), to, shard.id));
    }
}
