//! The home shard's table of sessions and the RFC 6121 §8.5 target selection.

use ahash::HashMap;

use super::{Sessions, Targets};
use crate::hooks::Acc;
use crate::jid::{BareJid, FullJid};
use crate::shard::SessionRef;
use crate::xml::{StanzaKind, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// One bound resource of a user.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The session's full JID.
    pub jid: FullJid,
    /// Where the session lives.
    pub session: SessionRef,
    /// `Some(priority)` once available (initial presence sent), `None` while only connected.
    pub priority: Option<i8>,
    /// The last available presence the session broadcast (answers probes, RFC 6121 §4.3.2); its
    /// bytes only, so that a resource stays a few words plus the presence it keeps.
    pub last_presence: Option<crate::xml::StoredStanza>,
    /// Shards that learnt where this session lives (bit `shard % 64`, see `sm::locations`): they
    /// are told when it ends or moves.
    pub located_by: u64,
    /// Stanzas to it pass the home shard: it is about to move (see `sm::after_drain`).
    pub pinned: bool,
}

/// Sessions of the users whose home is this shard.
#[derive(Default)]
pub struct SessionManager {
    users: HashMap<BareJid, Vec<Resource>>,
    /// Sessions about to move, waiting for drains (see `sm::after_drain`): how many are still
    /// to come, and what runs then.
    pub(super) drains: HashMap<SessionRef, (usize, Vec<super::AfterDrain>)>,
    /// Shared slice: the route clones it per stanza (a reference count, not a Vec).
    home_handlers: std::rc::Rc<[(&'static str, super::HomeHandler)]>,
    /// How many of `home_handlers`, at the front, are filters ([`Self::add_home_filter`]).
    home_filters: usize,
    /// Accounts of this home deleted a moment ago (see [`super::removed`]).
    removed: super::removed::Removed,
}

impl SessionManager {
    /// Records that account `jid` (homed here) was deleted `now`.
    pub fn note_removed(&mut self, jid: BareJid, now: std::time::Instant) {
        self.removed.note(jid, now);
    }

    /// Whether account `jid` was deleted at or after `authenticated`.
    pub fn removed_since(&self, jid: &BareJid, authenticated: std::time::Instant) -> bool {
        self.removed.since(jid, authenticated)
    }

    /// Binds `jid` at `session`, returning the resource it replaces (same full JID), if any.
    pub fn insert(&mut self, jid: FullJid, session: SessionRef) -> Option<Resource> {
        // Most users have one resource: no room for four (Vec's first growth) per idle session.
        let list = self
            .users
            .entry(jid.bare())
            .or_insert_with(|| Vec::with_capacity(1));
        let new = Resource {
            jid,
            session,
            priority: None,
            last_presence: None,
            located_by: 0,
            pinned: false,
        };
        match list.iter_mut().find(|r| r.jid == new.jid) {
            Some(slot) => Some(std::mem::replace(slot, new)),
            None => {
                list.push(new);
                None
            }
        }
    }

    /// Removes `jid` if it is bound at `session`.
    pub fn remove(&mut self, jid: &FullJid, session: SessionRef) -> Option<Resource> {
        let bare = jid.bare();
        let list = self.users.get_mut(&bare)?;
        let at = list
            .iter()
            .position(|r| &r.jid == jid && r.session == session)?;
        let old = list.swap_remove(at);
        if list.is_empty() {
            self.users.remove(&bare);
        }
        Some(old)
    }

    /// Moves `jid` from `old` to `new` keeping its priority and last presence (XEP-0198
    /// resumption); gives the shards that knew where `old` lived (see [`Resource::located_by`]),
    /// None when `jid` is not bound at `old`.
    pub fn move_session(&mut self, jid: &FullJid, old: SessionRef, new: SessionRef) -> Option<u64> {
        let r = self
            .users
            .get_mut(&jid.bare())
            .and_then(|l| l.iter_mut().find(|r| &r.jid == jid && r.session == old))?;
        r.session = new;
        r.pinned = false;
        Some(std::mem::take(&mut r.located_by))
    }

    /// Records that shard `by` learns where the session of the full JID `jid` (of user `bare`)
    /// lives; false when it may not (the session is about to move).
    pub fn locate(&mut self, bare: &str, jid: &str, by: crate::shard::ShardId) -> bool {
        match self
            .users
            .get_mut(bare)
            .and_then(|l| l.iter_mut().find(|r| r.jid.as_str() == jid))
        {
            Some(r) if !r.pinned => {
                r.located_by |= 1 << (by.0 % 64);
                true
            }
            _ => false,
        }
    }

    /// Keeps the stanzas to `jid` at `session` on the home-shard path from now on (it is about to
    /// move) and gives the shards that learnt where it lives; None when not bound there.
    pub fn pin(&mut self, jid: &FullJid, session: SessionRef) -> Option<u64> {
        let r = self
            .users
            .get_mut(&jid.bare())
            .and_then(|l| l.iter_mut().find(|r| &r.jid == jid && r.session == session))?;
        r.pinned = true;
        Some(std::mem::take(&mut r.located_by))
    }

    /// Sets the priority of `jid` at `session`; returns the previous one (None if not bound there).
    pub fn set_priority(
        &mut self,
        jid: &FullJid,
        session: SessionRef,
        priority: Option<i8>,
    ) -> Option<Option<i8>> {
        let r = self
            .users
            .get_mut(&jid.bare())?
            .iter_mut()
            .find(|r| &r.jid == jid && r.session == session)?;
        Some(std::mem::replace(&mut r.priority, priority))
    }

    /// Records the last broadcast presence of `jid` at `session` (None after unavailable).
    pub fn set_last_presence(
        &mut self,
        jid: &FullJid,
        session: SessionRef,
        presence: Option<crate::xml::Stanza>,
    ) {
        if let Some(r) = self
            .users
            .get_mut(&jid.bare())
            .and_then(|l| l.iter_mut().find(|r| &r.jid == jid && r.session == session))
        {
            r.last_presence = presence.map(crate::xml::StoredStanza::new);
        }
    }

    /// Adds module `name`'s handler for stanzas reaching their recipient's home shard.
    pub fn add_home_handler(&mut self, name: &'static str, h: super::HomeHandler) {
        let mut v = self.home_handlers.to_vec();
        v.push((name, h));
        self.home_handlers = v.into();
    }

    /// Adds a home handler that runs before every one added so far (a filter that must see
    /// stanzas before the modules acting on them, whatever the order modules start in).
    pub fn add_home_filter(&mut self, name: &'static str, h: super::HomeHandler) {
        let mut v = self.home_handlers.to_vec();
        v.insert(0, (name, h));
        self.home_handlers = v.into();
        self.home_filters += 1;
    }

    /// How many of [`Self::home_handlers`], at the front, are filters.
    pub(crate) fn home_filters(&self) -> usize {
        self.home_filters
    }

    /// The home handlers, in registration order.
    pub(crate) fn home_handlers(&self) -> std::rc::Rc<[(&'static str, super::HomeHandler)]> {
        self.home_handlers.clone()
    }

    /// The resources bound for `bare` (for modules and tests).
    pub fn resources(&self, bare: &BareJid) -> &[Resource] {
        self.resources_of(bare.as_str())
    }

    /// [`SessionManager::resources`] by the bare JID's string (no allocation on the route).
    pub fn resources_of(&self, bare: &str) -> &[Resource] {
        self.users.get(bare).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Removes every resource `gone` selects (the sessions of a dead cluster member) and returns
    /// them.
    pub fn remove_where(&mut self, gone: impl Fn(&Resource) -> bool) -> Vec<Resource> {
        let mut removed = Vec::new();
        self.users.retain(|_, list| {
            let mut i = 0;
            while i < list.len() {
                if gone(&list[i]) {
                    removed.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            !list.is_empty()
        });
        removed
    }

    /// Every resource held here, all users (cluster snapshots, admin counts).
    pub fn all_resources(&self) -> impl Iterator<Item = &Resource> {
        self.users.values().flatten()
    }

    /// Number of users with at least one session on this shard.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// RFC 6121 §8.5.3: a stanza to a full JID.
    pub fn full_targets(&self, bare: &str, resource: &str, acc: &Acc) -> Targets {
        let list = self.resources_of(bare);
        if let Some(r) = list.iter().find(|r| r.jid.resource() == resource) {
            return Targets::Deliver(smallvec::smallvec![r.session]);
        }
        match acc.kind() {
            StanzaKind::Message => match acc.ty() {
                StanzaType::Groupchat => Targets::Error(StanzaErrorCondition::ServiceUnavailable),
                StanzaType::Error => Targets::Drop,
                // §8.5.3.2.1: normal, chat and headline are treated as if sent to the bare JID
                // (a copy made for one session is not: see `bare_targets`).
                _ => self.bare_targets(bare, acc),
            },
            StanzaKind::Iq => Targets::Error(StanzaErrorCondition::ServiceUnavailable),
            _ => Targets::Drop,
        }
    }

    /// RFC 6121 §8.5.2: a stanza to a bare JID.
    pub fn bare_targets(&self, bare: &str, acc: &Acc) -> Targets {
        let list = self.resources_of(bare);
        match acc.kind() {
            StanzaKind::Message => {
                let ty = acc.ty();
                match ty {
                    StanzaType::Error => return Targets::Drop,
                    StanzaType::Groupchat => {
                        return Targets::Error(StanzaErrorCondition::ServiceUnavailable)
                    }
                    _ => {}
                }
                // A copy made for one session that could not take it (it went back to the
                // session manager): one for that session alone concerns nobody else; one of a
                // bare-JID message's copies goes to its resource if bound again (resumed), else,
                // as the others got theirs, only to offline storage when none is left.
                match acc.get(crate::hooks::COPY_FOR) {
                    Some(crate::hooks::CopyFor::SessionOnly) => return Targets::Drop,
                    Some(crate::hooks::CopyFor::FanOut(jid)) => {
                        if let Some(r) = list.iter().find(|r| &r.jid == jid) {
                            return Targets::Deliver(smallvec::smallvec![r.session]);
                        }
                        if list.iter().any(|r| matches!(r.priority, Some(p) if p >= 0)) {
                            return Targets::Drop;
                        }
                    }
                    None => {}
                }
                let eligible = list
                    .iter()
                    .filter(|r| matches!(r.priority, Some(p) if p >= 0));
                let chosen: Sessions = if ty == StanzaType::Headline {
                    eligible.map(|r| r.session).collect()
                } else {
                    let Some(top) = eligible.clone().filter_map(|r| r.priority).max() else {
                        return Targets::Offline;
                    };
                    eligible
                        .filter(|r| r.priority == Some(top))
                        .map(|r| r.session)
                        .collect()
                };
                if chosen.is_empty() {
                    Targets::Offline
                } else {
                    Targets::Deliver(chosen)
                }
            }
            StanzaKind::Presence => {
                let chosen: Sessions = list
                    .iter()
                    .filter(|r| r.priority.is_some())
                    .map(|r| r.session)
                    .collect();
                if chosen.is_empty() {
                    Targets::Drop
                } else {
                    Targets::Deliver(chosen)
                }
            }
            StanzaKind::Iq => Targets::Error(StanzaErrorCondition::ServiceUnavailable),
            StanzaKind::Other => Targets::Drop,
        }
    }
}
