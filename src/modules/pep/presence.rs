//! The home-shard handler: it observes (and always passes on) what reaches a user's home shard —
//! available and unavailable presence from others (who gets notifications), the user's own
//! presence updates (last items to a resource coming online), roster pushes (the access model's
//! view of the roster).

use super::state::{
    load_for_contact, with_user, Contact, Home, UserPep, MAX_OFFLINE_OWNERS, MAX_PRESENCES,
};
use super::{interest, notify, send_last};
use crate::hooks::{Acc, HookCtx, HookResult};
use crate::jid::{BareJid, FullJid, Jid};
use crate::modules::pubsub::core::SendLast;
use crate::shard::{home_shard_of, Shard};
use crate::sm::PRESENCE_UPDATE;
use crate::xml::{StanzaKind, StanzaType};
use crate::xmpp::ns;

/// The handler (registered before the presence module's, which takes the user's own updates).
pub(super) fn home(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    match acc.kind() {
        StanzaKind::Presence => presence(shard, &acc),
        StanzaKind::Iq => roster_push(shard, &acc),
        _ => {}
    }
    Some(acc)
}

/// `user_receive_presence` on the recipient's connection shard: a presence to a full JID bound on
/// the shard that routed it skipped the recipient's home shard (the session manager's fast path),
/// so it is shown there now. Seen twice when it did pass there: the second sighting changes nothing.
pub(super) fn received(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let ty = acc.ty();
    if acc.to.resource().is_none()
        || acc.from.bare_str() == acc.to.bare_str()
        || !ty.is_availability()
    {
        return HookResult::Continue;
    }
    let shards = ctx.ext.get::<Home>().map_or(1, |h| h.shards);
    let copy = acc.fork();
    ctx.run_on(
        home_shard_of(acc.to.bare_str(), shards),
        Box::new(move |shard: &mut Shard| presence(shard, &copy)),
    );
    HookResult::Continue
}

fn presence(shard: &mut Shard, acc: &Acc) {
    let Ok(from) = acc.from.clone().try_into_full() else {
        return;
    };
    let owner = acc.to.bare();
    let ty = acc.ty();
    let own = acc.get(PRESENCE_UPDATE).copied();
    if own.is_none() && from.bare() == owner {
        // The user's presence to themselves (not a broadcast): nothing to learn.
        return;
    }
    let owner = if own.is_some() { from.bare() } else { owner };
    match ty {
        StanzaType::Absent => {
            let ver = interest::caps_ver(&acc.stanza);
            let initial = own.is_some_and(|u| u.initial);
            if own.is_none() && shard.sm.resources(&owner).is_empty() {
                offline_owner(shard, owner, from, ver);
                return;
            }
            let home = shard.ext.get_or_default::<Home>();
            let seen = home.presences.entry(owner.as_str().to_owned()).or_default();
            if seen.len() >= MAX_PRESENCES && !seen.contains_key(&from) {
                return;
            }
            let before = seen.insert(from.clone(), ver.clone());
            let news = match &before {
                None => own.is_none() || initial,
                Some(v) => *v != ver,
            };
            if news {
                last_items(shard, owner, from, ver);
            }
        }
        StanzaType::Unavailable => {
            if own.is_some() {
                let online = shard
                    .sm
                    .resources(&owner)
                    .iter()
                    .any(|r| r.priority.is_some());
                let home = shard.ext.get_or_default::<Home>();
                if online {
                    home.unseen(owner.as_str(), &from);
                } else {
                    home.presences.remove(owner.as_str());
                }
            } else {
                shard
                    .ext
                    .get_or_default::<Home>()
                    .unseen(owner.as_str(), &from);
            }
        }
        _ => {}
    }
}

/// A contact's available presence to an offline `owner` (XEP-0163 §4.3.2; Prosody does the
/// same): their client gets the last items on login (an OMEMO device list to encrypt to, an
/// avatar), and again when its caps become known. Only for a contact in the owner's roster, so a
/// user sending presence to made-up or unrelated accounts records nothing; the owner's state is
/// loaded for it without evicting anyone, and dropped again when the account has no nodes.
fn offline_owner(shard: &mut Shard, owner: BareJid, from: FullJid, ver: Option<String>) {
    let home = shard.ext.get_or_default::<Home>();
    let known = home
        .presences
        .get(owner.as_str())
        .and_then(|m| m.get(&from));
    if known == Some(&ver) || home.owe_last(owner.as_str(), &from, ver.clone(), true) {
        return;
    }
    if home.loaded(owner.as_str()).is_none() {
        // No room: the presence is not recorded (policy when the cache is full of other users).
        load_for_contact(shard, &owner, from, ver);
        return;
    }
    let o = owner.clone();
    with_user(
        shard,
        &o,
        Box::new(move |shard, u| {
            if let Some(u) = u {
                owed(shard, u, &owner, from, ver, true);
            }
        }),
    );
}

/// Sends `to` the last items of `owner`'s nodes it wants; when `check`, only if it is a contact of
/// an owner with nodes, and its presence is recorded first (within [`MAX_OFFLINE_OWNERS`]).
pub(super) fn owed(
    shard: &mut Shard,
    u: &UserPep,
    owner: &BareJid,
    to: FullJid,
    ver: Option<String>,
    check: bool,
) {
    if check {
        if u.nodes.is_empty() || !u.roster.contains_key(to.bare().as_str()) {
            return;
        }
        let home = shard.ext.get_or_default::<Home>();
        let full = home.presences.len() >= MAX_OFFLINE_OWNERS;
        if full && !home.presences.contains_key(owner.as_str()) {
            return;
        }
        let seen = home.presences.entry(owner.as_str().to_owned()).or_default();
        if seen.len() >= MAX_PRESENCES && !seen.contains_key(&to) {
            return;
        }
        if seen.insert(to.clone(), ver.clone()).as_ref() == Some(&ver) {
            return;
        }
    }
    for n in u.nodes.values() {
        if n.config().send_last_published_item == SendLast::OnSubAndPresence
            && notify::wanted(shard, u, owner, n, &to, ver.as_deref())
        {
            send_last(shard, owner, n, Jid::from(to.clone()));
        }
    }
}

/// Sends `to` the last item of each of `owner`'s nodes it gets notifications of (XEP-0163 §4.3.2):
/// now when the state is loaded, once when it is ready when it is on its way.
pub(super) fn last_items(shard: &mut Shard, owner: BareJid, to: FullJid, ver: Option<String>) {
    let home = shard.ext.get_or_default::<Home>();
    if home.owe_last(owner.as_str(), &to, ver.clone(), false) {
        return;
    }
    let o = owner.clone();
    with_user(
        shard,
        &o,
        Box::new(move |shard, u: Option<&mut UserPep>| {
            if let Some(u) = u {
                owed(shard, u, &owner, to, ver, false);
            }
        }),
    );
}

/// A roster push on its way to the user (`from` = `to` = the user's bare JID): the contact's
/// subscription and groups as the access models see them.
fn roster_push(shard: &mut Shard, acc: &Acc) {
    if acc.ty() != StanzaType::Set || !acc.from.is_bare() || acc.from != acc.to {
        return;
    }
    let Ok(el) = acc.stanza.tree() else {
        return;
    };
    let Some(item) = el
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.get_child("item", ns::ROSTER))
    else {
        return;
    };
    let Some(contact) = item.attr("jid").and_then(|j| BareJid::parse(j).ok()) else {
        return;
    };
    let c = match item.attr("subscription") {
        Some("remove") => None,
        sub => Some(Contact {
            from: matches!(sub, Some("from" | "both")),
            groups: item
                .child_elements()
                .filter(|g| g.name == "group")
                .map(|g| g.text())
                .collect(),
        }),
    };
    let owner = acc.to.bare();
    let home = shard.ext.get_or_default::<Home>();
    if !home.in_memory(owner.as_str()) {
        // Not loaded: the roster is read with the rest when it is.
        return;
    }
    // Loading (its roster read may predate this change) or in use: applied when ready; loaded:
    // applied now.
    let o = owner.clone();
    with_user(
        shard,
        &o,
        Box::new(move |shard, u| {
            let Some(u) = u else { return };
            let gained = u.roster_changed(contact.as_str(), c);
            // XEP-0163 §7.1: a subscriber that lost its access loses its subscription.
            super::handle::cancel_lapsed(shard, u, &owner);
            if gained {
                subscribed(shard, owner, &contact);
            }
        }),
    );
}

/// `contact` just gained a presence subscription to `owner`: its available resources get the last
/// items.
fn subscribed(shard: &mut Shard, owner: BareJid, contact: &BareJid) {
    let home = shard.ext.get_or_default::<Home>();
    // A new presence subscription: the contact's available resources get the last items.
    let present: Vec<(FullJid, Option<String>)> = home
        .presences
        .get(owner.as_str())
        .map(|seen| {
            seen.iter()
                .filter(|(j, _)| j.bare() == *contact)
                .map(|(j, v)| (j.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (jid, ver) in present {
        last_items(shard, owner.clone(), jid, ver);
    }
}
