//! Where block lists live on each shard, and how copies move between shards.
//!
//! - Home shard of user U (`HomeLists`): U's list, loaded from the store when the shard starts (only
//!   non-empty lists are kept) and replaced by every committed change. It never waits for the store
//!   at bind time, so the session's shard gets the list in the same step as the bind answer.
//! - Connection shard C of a session of U (`ConnLists`): U's list while U has sessions on C,
//!   installed by a task the home shard sends at `sm_register_connection` and removed by one at
//!   `sm_remove_connection`.
//!
//! Ordering argument (why the list is on C before the first stanza for the session is filtered
//! there): `sm::register` on the home shard H answers the bind (`ConnMsg::Bound`) and, in the same
//! step, routes the install task towards C. Both leave H on the H->C ring in that order, and every
//! stanza H routes to the session afterwards (bare-JID messages, presences, IQs to the full JID)
//! is queued behind them. The only stanzas that can reach the session without crossing H are those
//! sent to its full JID by other sessions of C itself (the local fast path), which exist only once
//! C's connection task has taken the bind answer; if one is handled before the install task, the
//! receive check finds no list for U and holds it (by full JID), loads the list itself, and
//! delivers the held stanzas through the filter once the list is installed.
//!
//! Changes: once the store committed, the new list (with its version) goes to H, which replaces its
//! copy, sends it to the shard of every session of U (`sm.resources`), and only then routes the IQ's
//! result and the push IQs: a client reading the result is never ahead of the filters. Versions
//! make the newest list win wherever copies cross.

use std::sync::Arc;

use ahash::{HashMap, HashSet};
use smallvec::SmallVec;

use super::BlockList;
use crate::hooks::Acc;
use crate::jid::{BareJid, FullJid};
use crate::shard::{SessionRef, Shard};

/// Most stanzas held for one session while its list is loading; past it they are refused.
pub const MAX_HELD: usize = 256;

/// Lists of the users this shard is home to (non-empty or changed since start).
#[derive(Default)]
pub struct HomeLists {
    /// By user.
    pub lists: HashMap<BareJid, Arc<BlockList>>,
    /// The list of every user who never blocked anyone, shared: most sessions hold this one.
    empty: Arc<BlockList>,
}

impl HomeLists {
    /// U's list (empty when U never blocked anyone).
    pub fn get(&self, user: &BareJid) -> Arc<BlockList> {
        self.lists.get(user).unwrap_or(&self.empty).clone()
    }

    /// Keeps `list` unless a newer one is already here; returns the one kept.
    pub fn update(&mut self, user: &BareJid, list: Arc<BlockList>) -> Arc<BlockList> {
        let slot = self.lists.entry(user.clone()).or_default();
        if list.version >= slot.version {
            *slot = list;
        }
        slot.clone()
    }
}

/// A user's list on a shard holding sessions of that user.
pub struct ConnUser {
    /// The list.
    pub list: Arc<BlockList>,
    /// This shard's sessions of the user (by session, not JID: a session replaced by a new one with
    /// the same full JID is removed without removing its successor). Inline for the usual one: a
    /// set would cost an allocation per idle user.
    pub sessions: SmallVec<[SessionRef; 1]>,
}

/// Lists of the users with sessions on this shard, and stanzas held until a list arrives.
#[derive(Default)]
pub struct ConnLists {
    /// By user.
    pub users: HashMap<BareJid, ConnUser>,
    /// Stanzas for sessions whose list is not here yet, in arrival order.
    pub held: HashMap<FullJid, Vec<Acc>>,
    /// Users whose list this shard is loading itself.
    pub loading: HashSet<BareJid>,
}

/// On the session's shard: the session `jid` of `user` at `session` has `list` (or a newer one).
/// Without a session reference (a self-load for a session not bound here any more) only the list
/// is refreshed.
pub fn install(
    shard: &mut Shard,
    user: &BareJid,
    jid: &FullJid,
    session: Option<SessionRef>,
    list: Arc<BlockList>,
) {
    let st = shard.ext.get_or_default::<ConnLists>();
    st.loading.remove(user);
    let entry = st.users.entry(user.clone()).or_insert_with(|| ConnUser {
        list: list.clone(),
        sessions: SmallVec::new(),
    });
    if list.version >= entry.list.version {
        entry.list = list;
    }
    if let Some(s) = session {
        if !entry.sessions.contains(&s) {
            entry.sessions.push(s);
        }
    }
    let held = st.held.remove(jid).unwrap_or_default();
    // Back through the session manager: the local fast path puts them in the session's mailbox, and
    // the receive filter now has the list.
    for acc in held {
        crate::sm::route(shard, acc);
    }
}

/// On a shard holding sessions of `user`: a newer list, if this shard still has the user.
pub fn refresh(shard: &mut Shard, user: &BareJid, list: Arc<BlockList>) {
    let st = shard.ext.get_or_default::<ConnLists>();
    if let Some(entry) = st.users.get_mut(user) {
        if list.version >= entry.list.version {
            entry.list = list;
        }
    }
}

/// On the session's shard: the session left; forget the user when it was the last one here.
pub fn uninstall(shard: &mut Shard, user: &BareJid, jid: &FullJid, session: SessionRef) {
    let live = shard.local_session(jid.as_str()).is_some();
    let st = shard.ext.get_or_default::<ConnLists>();
    if let Some(entry) = st.users.get_mut(user) {
        entry.sessions.retain(|s| *s != session);
        if entry.sessions.is_empty() {
            st.users.remove(user);
        }
    }
    // Stanzas held for this JID belong to a successor session when one is bound here.
    let held = if live {
        Vec::new()
    } else {
        st.held.remove(jid).unwrap_or_default()
    };
    // The session is gone: the session manager picks another resource or the offline path.
    for acc in held {
        shard.reroute(acc);
    }
}

/// On the home shard: a committed list replaces the home copy and goes to every session's shard;
/// then `result` (the answer to the change) and `push` (the XEP-0191 push IQ built for each
/// resource). Both leave behind the refreshes on the same rings, so no session reads them before
/// its shard and the home shard filter with the new list.
pub fn publish(
    shard: &mut Shard,
    user: &BareJid,
    list: Arc<BlockList>,
    result: Acc,
    push: &(dyn Fn(&FullJid) -> Acc + Send + Sync),
) {
    let list = shard.ext.get_or_default::<HomeLists>().update(user, list);
    let resources: Vec<_> = shard
        .sm
        .resources(user)
        .iter()
        .map(|r| (r.jid.clone(), r.session))
        .collect();
    for (_, session) in &resources {
        let (u, l) = (user.clone(), list.clone());
        crate::sm::run_on(shard, session.shard, Box::new(move |s| refresh(s, &u, l)));
    }
    crate::router::route(shard, result);
    for (jid, _) in resources {
        crate::sm::route(shard, push(&jid));
    }
}
