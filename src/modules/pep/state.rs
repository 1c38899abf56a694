//! The PEP state of the users homed on a shard: their nodes and roster (loaded lazily from the
//! store, kept in a bounded cache) and the full JIDs whose available presence reached them.

use std::collections::BTreeMap;

use ahash::HashMap;

use super::seen::Seen;
use super::Options;
use crate::hooks::{HookCtx, JobDone};
use crate::jid::{BareJid, FullJid};
use crate::modules::pubsub::core::node::NodeMeta;
use crate::modules::pubsub::core::{Item, Node};
use crate::modules::roster::{self, RosterItem};
use crate::shard::Shard;
use crate::store::StoredNode;
use crate::xml::Stanza;

/// Requests that may wait for one user's state to load; past it they are refused. Last items owed
/// meanwhile are not requests: they are kept apart ([`Loading::last`]) and sent when it is ready.
const MAX_PENDING: usize = 64;
/// Deleted accounts remembered for one state being loaded (see [`Loading::forgotten`]); past it the
/// state is read again once loaded.
const MAX_FORGOTTEN: usize = 64;
/// Full JIDs remembered per user as having sent it available presence; past it new ones are
/// ignored (they get no notifications until an old one leaves).
pub(super) const MAX_PRESENCES: usize = 10_000;
/// Offline users a shard remembers contacts' presences for (the outer map of
/// [`Home::presences`]); past it a contact's presence to another offline user is not recorded (it
/// gets the last items on its next presence, or from the user's own notifications later). Users
/// with sessions are always recorded: they are bounded by the sessions.
pub(super) const MAX_OFFLINE_OWNERS: usize = 100_000;

/// What one user's roster says about a contact, for the access models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Contact {
    /// The contact has a presence subscription to the user (`from` or `both`).
    pub from: bool,
    /// The user's groups for the contact.
    pub groups: Vec<String>,
}

/// One user's PEP nodes and roster.
#[derive(Debug, Default)]
pub(super) struct UserPep {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Roster entries by bare JID (a tree: an empty one is three words, where a hash map carries
    /// its hasher's keys in every user's state).
    pub roster: BTreeMap<String, Contact>,
    /// No such account when loaded: others' requests are answered `service-unavailable` (RFC 6121
    /// §8.5.1).
    pub missing: bool,
}

/// Work on one user's state; `None` when it cannot be had (load failed, too many waiting).
pub(super) type Op = Box<dyn FnOnce(&mut Shard, Option<&mut UserPep>)>;

/// Full JIDs owed the last items of a user whose state is not ready, with the caps `ver` they
/// advertised and whether they still have to be checked against the owner's roster (a contact's
/// presence to an offline owner, see [`super::presence`]).
pub(super) type Owed = HashMap<FullJid, (Option<String>, bool)>;

/// What waits for a user's state (loading from the store, or in use).
#[derive(Default)]
struct Loading {
    /// Requests, in order (at most [`MAX_PENDING`]).
    ops: Vec<Op>,
    /// Full JIDs owed the last items (at most [`MAX_PRESENCES`]), sent once when ready: one entry
    /// per JID however many presences or caps arrive meanwhile.
    last: Owed,
    /// The account was deleted meanwhile: the state becomes empty when ready.
    gone: bool,
    /// Accounts deleted meanwhile (at most [`MAX_FORGOTTEN`]), each with how many requests were
    /// waiting then: the load may have read their subscriptions and affiliations, and those
    /// requests (sent before the deletion, a subscribe of the account itself perhaps) may add
    /// some; they go once those requests ran, before the later ones.
    forgotten: Vec<(String, usize)>,
    /// More accounts were deleted meanwhile than [`Loading::forgotten`] keeps: the state is read
    /// again (after the store forgot them) instead of being made ready.
    reload: bool,
}

impl Loading {
    /// Notes that `gone`'s account was deleted while this state loads.
    fn forget(&mut self, gone: &str) {
        if self.forgotten.len() < MAX_FORGOTTEN {
            self.forgotten.push((gone.to_owned(), self.ops.len()));
        } else {
            self.reload = true;
        }
    }
}

enum Slot {
    /// Loading from the store, or in use (boxed: ready is what a slot is most of its life).
    Waiting(Box<Loading>),
    /// Ready.
    Ready(UserPep),
}

/// The PEP state kept on one shard (`Shard::ext`).
#[derive(Default)]
pub(super) struct Home {
    users: HashMap<String, Slot>,
    /// Per user homed here: full JIDs whose available presence reached the user, with the caps
    /// `ver` they advertised. Cleared when the user's last resource goes unavailable; kept for an
    /// offline user only for contacts in their roster, when they have nodes (at most
    /// [`MAX_OFFLINE_OWNERS`] such users); an entry goes when its last JID does.
    pub presences: HashMap<String, Seen>,
    /// The module's options.
    pub opts: Options,
    /// Shards in the process (to find home shards from hook contexts).
    pub shards: usize,
}

impl Home {
    /// The state of a shard with these options.
    pub fn new(opts: Options, shards: usize) -> Home {
        Home {
            opts,
            shards,
            ..Home::default()
        }
    }

    /// The user's state when it is loaded and not in use.
    pub fn loaded(&self, user: &str) -> Option<&UserPep> {
        match self.users.get(user) {
            Some(Slot::Ready(u)) => Some(u),
            _ => None,
        }
    }

    /// Notes that `jid` is owed `user`'s last items when their state becomes ready; false when the
    /// state is not on its way (loaded or absent: the caller does the work now).
    pub fn owe_last(
        &mut self,
        user: &str,
        jid: &FullJid,
        ver: Option<String>,
        check: bool,
    ) -> bool {
        let Some(Slot::Waiting(l)) = self.users.get_mut(user) else {
            return false;
        };
        // Past the bound the JID is not owed (it gets the next notification, not the last items).
        if l.last.len() < MAX_PRESENCES || l.last.contains_key(jid) {
            l.last.insert(jid.clone(), (ver, check));
        }
        true
    }

    /// `jid` went unavailable: it is owed nothing more and is no longer seen by `user`.
    pub fn unseen(&mut self, user: &str, jid: &FullJid) {
        if let Some(Slot::Waiting(l)) = self.users.get_mut(user) {
            l.last.remove(jid);
        }
        if let Some(seen) = self.presences.get_mut(user) {
            seen.remove(jid);
            if seen.is_empty() {
                self.presences.remove(user);
            }
        }
    }

    /// Drops the user's loaded state (their last session ended: an account deleted meanwhile must not
    /// come back from memory); state in use or loading stays.
    pub fn forget(&mut self, user: &str) {
        if matches!(self.users.get(user), Some(Slot::Ready(_))) {
            self.users.remove(user);
        }
    }

    /// The account was deleted: its loaded state and the presences it saw go; state being loaded
    /// (perhaps read before the deletion) or in use becomes empty when ready.
    pub fn removed(&mut self, user: &str) {
        match self.users.get_mut(user) {
            Some(Slot::Waiting(l)) => l.gone = true,
            _ => self.forget(user),
        }
        self.presences.remove(user);
    }

    /// Whether the user's state is loaded, or being loaded or used.
    pub fn in_memory(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// `gone`'s account was deleted: it goes from the nodes of every state loaded here, and
    /// states being loaded drop it when ready. Returns the nodes changed, to be saved.
    fn forget_everywhere(&mut self, gone: &str) -> Vec<(String, Vec<Changed>)> {
        let mut out = Vec::new();
        for (owner, slot) in &mut self.users {
            // Its own state went with it (see `removed`), or goes when ready.
            if owner == gone {
                continue;
            }
            match slot {
                Slot::Ready(u) => {
                    let changed = u.forget_account(gone);
                    if !changed.is_empty() {
                        out.push((owner.clone(), changed));
                    }
                }
                Slot::Waiting(l) => l.forget(gone),
            }
        }
        out
    }
}

/// A node whose metadata changed: its name and new metadata (JSON), to be saved.
pub(super) type Changed = (String, String);

impl UserPep {
    /// `gone`'s account was deleted: its affiliations (bans stay) and subscriptions go from every
    /// node; returns the nodes changed.
    fn forget_account(&mut self, gone: &str) -> Vec<Changed> {
        self.nodes
            .iter_mut()
            .filter_map(|(name, n)| {
                n.forget_account(gone)
                    .then(|| (name.clone(), super::handle::meta_json(n)))
            })
            .collect()
    }
}

/// `gone`'s account was deleted: it goes from `owner`'s ready state (saved after).
fn forget_ready(shard: &mut Shard, owner: &BareJid, gone: &str) {
    let home = shard.ext.get_or_default::<Home>();
    if let Some(Slot::Ready(u)) = home.users.get_mut(owner.as_str()) {
        let changed = u.forget_account(gone);
        save_changed(shard, owner.as_str(), changed);
    }
}

/// Saves the changed nodes of `owner` (in the owner's store order).
pub(super) fn save_changed(shard: &mut Shard, owner: &str, changed: Vec<Changed>) {
    if changed.is_empty() {
        return;
    }
    let Ok(jid) = BareJid::parse(owner) else {
        return;
    };
    let svc = owner.to_owned();
    super::persist(shard, &jid, move |s| {
        for (node, meta) in &changed {
            s.pubsub_node_save(&svc, node, meta)?;
        }
        Ok(())
    });
}

/// `gone`'s account was deleted: forgets it on every state loaded or loading on this shard.
pub(super) fn forget_everywhere(shard: &mut Shard, gone: &str) {
    let changed = shard.ext.get_or_default::<Home>().forget_everywhere(gone);
    for (owner, c) in changed {
        save_changed(shard, &owner, c);
    }
}

/// `gone`'s account was deleted and `owner` (homed here) has stored nodes that name it: a loaded
/// state forgets it now, a loading one when ready; the store forgets it in the owner's store order,
/// ahead of any later load.
pub(super) fn forget_on_owner(shard: &mut Shard, owner: &BareJid, gone: &str) {
    let home = shard.ext.get_or_default::<Home>();
    match home.users.get_mut(owner.as_str()) {
        Some(Slot::Ready(_)) => return forget_ready(shard, owner, gone),
        Some(Slot::Waiting(l)) => l.forget(gone),
        None => {}
    }
    let (svc, gone) = (owner.as_str().to_owned(), gone.to_owned());
    super::persist(shard, owner, move |s| {
        for (node, meta) in s.pubsub_metas(&svc)? {
            // Unreadable metadata is left to the load, which reports it.
            let Ok(mut m) = serde_json::from_str::<NodeMeta>(&meta) else {
                continue;
            };
            if m.forget_account(&gone) {
                // A NodeMeta is plain data: serializing it cannot fail.
                let meta = serde_json::to_string(&m).unwrap_or_default();
                s.pubsub_node_save(&svc, &node, &meta)?;
            }
        }
        Ok(())
    });
}

impl UserPep {
    /// A roster push: the contact's new entry (`None`: removed). True when the contact just
    /// gained a presence subscription (it may now get the last items).
    pub fn roster_changed(&mut self, contact: &str, c: Option<Contact>) -> bool {
        let had = self.roster.get(contact).is_some_and(|c| c.from);
        let has = c.as_ref().is_some_and(|c| c.from);
        match c {
            Some(c) => self.roster.insert(contact.to_owned(), c),
            None => self.roster.remove(contact),
        };
        has && !had
    }
}

/// Runs `op` with `owner`'s state on this (their home) shard: now when it is loaded, after the
/// load otherwise (started here when needed).
pub(super) fn with_user(shard: &mut Shard, owner: &BareJid, op: Op) {
    let key = owner.as_str();
    let home = shard.ext.get_or_default::<Home>();
    match home.users.remove(key) {
        Some(Slot::Ready(mut u)) => {
            // In use: what arrives meanwhile (a stanza routed back here) waits for `ready`.
            home.users
                .insert(key.to_owned(), Slot::Waiting(Box::default()));
            op(shard, Some(&mut u));
            ready(shard, owner, u);
        }
        Some(Slot::Waiting(mut l)) => {
            let refused = if l.ops.len() >= MAX_PENDING {
                Some(op)
            } else {
                l.ops.push(op);
                None
            };
            home.users.insert(key.to_owned(), Slot::Waiting(l));
            if let Some(op) = refused {
                op(shard, None);
            }
        }
        None => {
            let l = Loading {
                ops: vec![op],
                ..Loading::default()
            };
            if let Err(l) = start_load(shard, owner, l, true) {
                for op in l.ops {
                    op(shard, None);
                }
            }
        }
    }
}

/// Starts loading `owner`'s state with `l` waiting for it; gives `l` back when the cache has no
/// room (`evict`: a user without sessions may be evicted to make some).
fn start_load(shard: &mut Shard, owner: &BareJid, l: Loading, evict: bool) -> Result<(), Loading> {
    if !make_room(shard, owner, evict) {
        return Err(l);
    }
    shard
        .ext
        .get_or_default::<Home>()
        .users
        .insert(owner.as_str().to_owned(), Slot::Waiting(Box::new(l)));
    load(shard, owner.clone());
    Ok(())
}

/// Starts loading `owner`'s state, without evicting anyone, for `jid` to be owed its last items
/// once checked against the roster (a contact's presence to an offline owner); false when the
/// cache has no room.
pub(super) fn load_for_contact(
    shard: &mut Shard,
    owner: &BareJid,
    jid: FullJid,
    ver: Option<String>,
) -> bool {
    let mut l = Loading::default();
    l.last.insert(jid, (ver, true));
    start_load(shard, owner, l, false).is_ok()
}

/// Puts `u` back as ready, runs what queued meanwhile, then sends the last items owed.
fn ready(shard: &mut Shard, owner: &BareJid, u: UserPep) {
    let home = shard.ext.get_or_default::<Home>();
    let l = match home.users.remove(owner.as_str()) {
        Some(Slot::Waiting(l)) => *l,
        _ => Loading::default(),
    };
    let u = if l.gone {
        UserPep {
            missing: true,
            ..UserPep::default()
        }
    } else {
        u
    };
    home.users.insert(owner.as_str().to_owned(), Slot::Ready(u));
    let mut marks = l.forgotten.into_iter().peekable();
    for (i, op) in l.ops.into_iter().enumerate() {
        while let Some((gone, _)) = marks.next_if(|(_, at)| *at <= i) {
            forget_ready(shard, owner, &gone);
        }
        with_user(shard, owner, op);
    }
    for (gone, _) in marks {
        forget_ready(shard, owner, &gone);
    }
    if !l.last.is_empty() {
        let o = owner.clone();
        with_user(
            shard,
            owner,
            Box::new(move |shard, u| {
                if let Some(u) = u {
                    for (jid, (ver, check)) in l.last {
                        super::presence::owed(shard, u, &o, jid, ver, check);
                    }
                }
            }),
        );
    }
}

/// Makes room in the cache for `owner`. Users with sessions always get in (they are bounded by
/// the sessions); others only below `cache_users`, or by evicting (when `evict`) a loaded user
/// without sessions. False when there is no room.
fn make_room(shard: &mut Shard, owner: &BareJid, evict: bool) -> bool {
    if !shard.sm.resources(owner).is_empty() {
        return true;
    }
    let home = shard.ext.get_or_default::<Home>();
    if home.users.len() < home.opts.cache_users {
        return true;
    }
    if !evict {
        return false;
    }
    let sm = &shard.sm;
    let Some(victim) = home
        .users
        .iter()
        .find(|(k, s)| matches!(s, Slot::Ready(_)) && sm.resources_of(k).is_empty())
        .map(|(k, _)| k.clone())
    else {
        return false;
    };
    home.users.remove(&victim);
    true
}

/// Loads `owner`'s nodes and roster on the store pool.
fn load(shard: &mut Shard, owner: BareJid) {
    let key = roster::user_key(&owner);
    let job = move |store: &crate::store::Store| {
        let got = store
            .pubsub_load(owner.as_str())
            // With the groups: the `roster` access model decides by them.
            .and_then(|n| store.roster_rows_grouped(&owner).map(|r| (n, r)))
            .and_then(|(n, r)| {
                // Only an account with neither nodes nor contacts may not exist: asked then.
                let missing = n.is_empty() && r.is_empty() && !store.user_exists(&owner)?;
                Ok((n, r, missing))
            })
            .map_err(|e| e.to_string());
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| loaded(shard, owner, got))),
            ..JobDone::default()
        }
    };
    HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, job);
}

fn loaded(
    shard: &mut Shard,
    owner: BareJid,
    got: Result<(Vec<StoredNode>, Vec<RosterItem>, bool), String>,
) {
    let (nodes, roster, missing) = match got {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, user = owner.as_str(), "pep: loading failed");
            let home = shard.ext.get_or_default::<Home>();
            if let Some(Slot::Waiting(l)) = home.users.remove(owner.as_str()) {
                for op in l.ops {
                    op(shard, None);
                }
            }
            return;
        }
    };
    let home = shard.ext.get_or_default::<Home>();
    if let Some(Slot::Waiting(l)) = home.users.get_mut(owner.as_str()) {
        if l.reload {
            // Too many deletions to remember: read it again, behind the store's forgetting.
            l.reload = false;
            l.forgotten.clear();
            return load(shard, owner);
        }
    }
    let limits = home.opts.limits.clone();
    // An account with sessions exists, whatever the store said a moment ago.
    let missing = missing && shard.sm.resources(&owner).is_empty();
    let mut u = UserPep {
        missing,
        ..UserPep::default()
    };
    for n in nodes {
        let meta: NodeMeta = match serde_json::from_str(&n.meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, user = owner.as_str(), node = n.node, "pep: stored node unreadable");
                continue;
            }
        };
        let items = n
            .items
            .into_iter()
            .map(|i| Item {
                payload: (!i.payload.is_empty())
                    .then(|| {
                        Stanza::parse(i.payload.into_bytes())
                            .and_then(|s| s.tree())
                            .ok()
                    })
                    .flatten(),
                id: i.id,
                publisher: i.publisher,
                published: i.published,
            })
            .collect();
        u.nodes
            .insert(n.node.clone(), Node::restore(&n.node, meta, items, &limits));
    }
    for r in roster {
        u.roster.insert(r.jid.as_str().to_owned(), contact_of(&r));
    }
    ready(shard, &owner, u);
    // Loaded for a contact's presence to an offline account without nodes (or to no account at
    // all): nothing to keep.
    let home = shard.ext.get_or_default::<Home>();
    if home
        .loaded(owner.as_str())
        .is_some_and(|u| u.nodes.is_empty())
        && shard.sm.resources(&owner).is_empty()
    {
        shard.ext.get_or_default::<Home>().forget(owner.as_str());
    }
}

/// The access-model view of a roster item.
pub(super) fn contact_of(r: &RosterItem) -> Contact {
    Contact {
        from: r.state.from,
        groups: r.groups.clone(),
    }
}
