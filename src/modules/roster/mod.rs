//! `mod_roster`: the roster (RFC 6121 §2) with versioning (XEP-0237), stored in the store.
//!
//! Roster IQs are answered for the user's own bare JID: a get on the shard of the requesting
//! session, a set from the user's home shard ([`change_on_home`], so pushes leave in the order the
//! changes were made); the work runs as a store job keyed by the user's bare JID, so every change
//! to one user's roster runs in order, in one transaction. Pushes are routed to the user's home shard, which copies them to
//! every resource bound there; each connection's shard lets through only pushes for sessions that
//! requested the roster in this session (the "interested resources" of §2.1.6).

pub use crate::xmpp::roster::state;
pub use crate::xmpp::roster::{
    RosterItem, SetRequest, SubKind, SubState, Transition, MAX_GROUPS, MAX_NAME_BYTES,
};

use std::rc::Rc;

use ahash::HashSet;

use crate::hooks::{Acc, HookCtx, HookResult, JobDone};
use crate::hooks::{SessionEnd, SessionEndKind};
use crate::jid::{BareJid, FullJid, Jid};
use crate::local::{result_reply, IqReply};
use crate::shard::{home_shard_of, ConnMsg, Shard, ShardId};
use crate::store::{RosterWrite, Store};
use crate::xml::{Element, Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

use super::options::{OptionError, Options};

/// Stream feature of roster versioning (XEP-0237 §3).
pub const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";

/// Scratch key marking a roster push on its way to the user's home shard.
const PUSH: crate::hooks::Key<()> = crate::hooks::Key::new("roster.push");

/// Options of `[modules.roster]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterOpts {
    /// Most items a roster may hold; a set that would add one more gets `not-allowed`.
    pub max_items: u64,
    /// Roster versioning (XEP-0237).
    pub versioning: bool,
}

impl Default for RosterOpts {
    fn default() -> Self {
        RosterOpts {
            max_items: 1000,
            versioning: true,
        }
    }
}

impl RosterOpts {
    /// Reads the options from the module's toml table.
    pub fn from_table(t: &toml::Table) -> Result<RosterOpts, OptionError> {
        let o = Options::new("roster", Some(t));
        o.only(&["max_items", "versioning"])?;
        let d = RosterOpts::default();
        Ok(RosterOpts {
            // No upper bound but toml's own (`i64::MAX`).
            max_items: o.uint_in("max_items", d.max_items, 1..=i64::MAX as u64)?,
            versioning: o.bool("versioning", d.versioning)?,
        })
    }
}

/// Full JIDs of the sessions on this shard that asked for the roster (they get pushes).
#[derive(Default)]
pub struct RosterInterest(HashSet<FullJid>);

/// The module's settings, kept on each shard for the presence module.
#[derive(Clone, Copy, Default)]
pub struct RosterSettings(pub RosterOpts);

/// The store ordering key of a user's roster: every job touching it runs in order.
pub fn user_key(user: &BareJid) -> Option<u64> {
    Some(ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(user.as_str()))
}

/// Queues `job`, a change to `user`'s roster, from `user`'s home shard (it gets that shard's id),
/// where its continuation runs too. Changes made for a contact's stanzas run there anyway; run
/// from the shard of the user's own connection, a change's push could overtake the answer of an
/// earlier change still waiting on the home shard and leave the older state last, in the user's
/// clients and in what the home shard's modules know of the roster (PEP's access models). From
/// one shard, the answers of one key's jobs, and so the pushes, are handled in the store's order
/// (the runtime keeps one lane per key).
pub fn change_on_home(
    ctx: &mut HookCtx<'_>,
    user: BareJid,
    job: impl FnOnce(&Store, ShardId) -> JobDone + Send + 'static,
) {
    ctx.run_on(
        ctx.shard,
        Box::new(move |shard: &mut Shard| {
            let home = home_shard_of(user.as_str(), shard.shards);
            crate::sm::run_on(
                shard,
                home,
                Box::new(move |shard: &mut Shard| {
                    let at = shard.id;
                    HookCtx::new(at, &mut shard.fx, &mut shard.ext)
                        .store(user_key(&user), move |store| job(store, at));
                }),
            );
        }),
    );
}

/// Forgets a closed session's interest in pushes (called when its connection ends); a session
/// resumed on another shard takes it there (XEP-0198 §5: the client does not ask for the roster
/// again, it counts on the pushes).
fn session_end(end: &mut SessionEnd, ctx: &mut HookCtx<'_>) -> HookResult {
    if end.kind == SessionEndKind::Detached {
        return HookResult::Continue;
    }
    let interested = ctx
        .ext
        .get_or_default::<RosterInterest>()
        .0
        .remove(&end.jid);
    if let (SessionEndKind::MovedTo(to), true) = (end.kind, interested) {
        let jid = end.jid.clone();
        ctx.run_on(
            to.shard,
            Box::new(move |s: &mut Shard| {
                s.ext.get_or_default::<RosterInterest>().0.insert(jid);
            }),
        );
    }
    HookResult::Continue
}

/// Registers the roster IQ handler, the push fan-out on home shards and the push filter.
pub fn start(shard: &mut Shard, hosts: &[String], opts: RosterOpts) {
    shard.ext.insert(RosterSettings(opts));
    for host in hosts {
        shard.iq.register_account(
            host,
            ns::ROSTER,
            Rc::new(move |acc, q, ctx| handle_iq(acc, q, ctx, opts)),
        );
    }
    shard.sm.add_home_handler("roster", Rc::new(fan_out_push));
    shard.hooks.session_end.add(50, "roster", session_end);
    shard
        .hooks
        .user_receive_iq
        .add(50, "roster", |acc: &mut Acc, ctx: &mut HookCtx<'_>| {
            if !is_push(acc) {
                return HookResult::Continue;
            }
            let interested = match acc.to.clone().try_into_full() {
                Ok(full) => ctx
                    .ext
                    .get::<RosterInterest>()
                    .is_some_and(|i| i.0.contains(&full)),
                Err(_) => false,
            };
            if interested {
                HookResult::Continue
            } else {
                HookResult::Stop
            }
        });
}

/// A roster push: an IQ set in the roster namespace from the recipient's own bare JID.
fn is_push(acc: &Acc) -> bool {
    acc.kind() == StanzaKind::Iq
        && acc.ty() == StanzaType::Set
        && acc.from.is_bare()
        && acc.from.as_str() == acc.to.bare().as_str()
        && acc.stanza.child_ns().as_deref() == Some(ns::ROSTER)
}

fn handle_iq(acc: &Acc, query: &Element, ctx: &mut HookCtx<'_>, opts: RosterOpts) -> IqReply {
    let user = acc.from.bare();
    // §2.1.5: a roster is only the user's own business.
    if acc.to.as_str() != user.as_str() {
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    if query.name != "query" {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    match acc.ty() {
        StanzaType::Get => {
            if let Ok(full) = acc.from.clone().try_into_full() {
                ctx.ext.get_or_default::<RosterInterest>().0.insert(full);
            }
            let client_ver = query.attr("ver").map(str::to_owned);
            let req = acc.fork();
            let shard = ctx.shard;
            ctx.store(user_key(&user), move |store| {
                vec![get_reply(store, &req, &user, client_ver, opts, shard)].into()
            });
            IqReply::NoReply
        }
        StanzaType::Set => match SetRequest::parse(query) {
            Err(cond) => IqReply::Error(cond),
            Ok(set) => {
                let req = acc.fork();
                change_on_home(ctx, user.clone(), move |store, shard| {
                    apply_set(store, req, user, set, opts, shard)
                });
                IqReply::NoReply
            }
        },
        _ => IqReply::Error(StanzaErrorCondition::BadRequest),
    }
}

fn store_failed(req: &Acc, shard: ShardId, e: &crate::store::StoreError) -> Option<Acc> {
    tracing::error!(error = %e, user = req.from.as_str(), "roster store job failed");
    req.error_reply(StanzaErrorCondition::InternalServerError, shard)
}

/// The result of a roster get: the full roster, or an empty result when the client's version is
/// current (XEP-0237 §4.2).
fn get_reply(
    store: &Store,
    req: &Acc,
    user: &BareJid,
    client_ver: Option<String>,
    opts: RosterOpts,
    shard: ShardId,
) -> Acc {
    let (ver, items) = match store.roster_items(user) {
        Ok(r) => r,
        Err(e) => {
            return store_failed(req, shard, &e).unwrap_or_else(|| result_reply(req, None, shard))
        }
    };
    let ver_s = ver.to_string();
    if opts.versioning && client_ver.as_deref() == Some(ver_s.as_str()) {
        return result_reply(req, None, shard);
    }
    let mut q = Element::new("query", ns::ROSTER);
    if opts.versioning {
        q = q.with_attr("ver", ver_s);
    }
    for it in &items {
        q = q.with_child(it.to_element());
    }
    result_reply(req, Some(q), shard)
}

/// What removing an item sends to the contact (RFC 6121 §2.5.2).
#[derive(Default)]
struct Removal {
    /// The user was subscribed (or asked): `unsubscribe`.
    unsubscribe: bool,
    /// The contact was subscribed (or asked): `unsubscribed`.
    unsubscribed: bool,
    /// The contact saw the user's presence: `unavailable` from each available resource.
    revoke: bool,
}

fn apply_set(
    store: &Store,
    req: Acc,
    user: BareJid,
    set: SetRequest,
    opts: RosterOpts,
    shard: ShardId,
) -> JobDone {
    let contact = set.jid().clone();
    let changed = store.roster_change(&user, &contact, |before, count| {
        let visible = before.as_ref().is_some_and(|b| b.in_roster);
        match &set {
            SetRequest::Update { name, groups, .. } => {
                // §2.3.3 / brief: a roster at its size limit refuses a new item.
                if !visible && count >= opts.max_items {
                    return (RosterWrite::Keep, Err(StanzaErrorCondition::NotAllowed));
                }
                let mut item = before.unwrap_or_else(|| RosterItem::new(contact.clone()));
                item.name = name.clone();
                item.groups = groups.clone();
                item.in_roster = true;
                (RosterWrite::Put(item), Ok(Removal::default()))
            }
            SetRequest::Remove(_) => {
                let Some(b) = before.filter(|b| b.in_roster) else {
                    return (RosterWrite::Keep, Err(StanzaErrorCondition::ItemNotFound));
                };
                // §2.5.2: cancel both directions before the item goes.
                let out = Removal {
                    unsubscribe: b.state.to || b.state.pending_out,
                    unsubscribed: b.state.from || b.state.pending_in,
                    revoke: b.state.from,
                };
                (RosterWrite::Delete, Ok(out))
            }
        }
    });
    let changed = match changed {
        Ok(c) => c,
        Err(e) => {
            return store_failed(&req, shard, &e)
                .into_iter()
                .collect::<Vec<_>>()
                .into()
        }
    };
    let removal = match changed.out {
        Err(cond) => {
            return req
                .error_reply(cond, shard)
                .into_iter()
                .collect::<Vec<_>>()
                .into()
        }
        Ok(r) => r,
    };
    let mut route = vec![result_reply(&req, None, shard)];
    if removal.unsubscribe {
        route.push(subscription_stanza(
            &user,
            &contact,
            SubKind::Unsubscribe,
            shard,
        ));
    }
    if removal.unsubscribed {
        route.push(subscription_stanza(
            &user,
            &contact,
            SubKind::Unsubscribed,
            shard,
        ));
    }
    let revoke = removal.revoke;
    // §2.3.2: every successful set is pushed, one that changed nothing too (as Prosody and
    // ejabberd do: a client may wait for the push), with the version it leaves.
    let ver = changed.ver.or_else(|| store.roster_version(&user).ok());
    let push = ver.map(|ver| push_acc(&user, changed.item.as_ref(), &contact, ver, opts, shard));
    let then_user = user.clone();
    JobDone {
        hold: Vec::new(),
        route,
        then: Some(Box::new(move |shard: &mut Shard| {
            if let Some(p) = push {
                crate::sm::route(shard, p);
            }
            if revoke {
                crate::modules::presence::revoke_presence(shard, &then_user, &contact);
            }
        })),
    }
}

/// `<presence type='KIND'/>` from the user's bare JID to the contact's (RFC 6121 §3: the server
/// stamps bare JIDs on subscription stanzas).
pub fn subscription_stanza(
    user: &BareJid,
    contact: &BareJid,
    kind: SubKind,
    shard: ShardId,
) -> Acc {
    let el = Element::new("presence", ns::CLIENT)
        .with_attr("from", user.as_str())
        .with_attr("to", contact.as_str())
        .with_attr("type", kind.as_str());
    Acc::new(
        Stanza::from_element(&el),
        Jid::from(user.clone()),
        Jid::from(contact.clone()),
        shard,
    )
}

/// A roster push of `item` (or of its removal when None) to the user's bare JID, marked for the
/// fan-out on the home shard: route it with `sm::route`.
pub fn push_acc(
    user: &BareJid,
    item: Option<&RosterItem>,
    contact: &BareJid,
    ver: u64,
    opts: RosterOpts,
    shard: ShardId,
) -> Acc {
    let mut id = [0u8; 6];
    // A push id only needs to be unlikely to repeat; on failure the version still tells pushes apart.
    let _ = getrandom::getrandom(&mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let mut q = Element::new("query", ns::ROSTER);
    if opts.versioning {
        q = q.with_attr("ver", ver.to_string());
    }
    q = q.with_child(match item {
        Some(i) => i.to_element(),
        None => RosterItem::removed_element(contact),
    });
    let el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", format!("push-{ver}-{id}"))
        .with_attr("from", user.as_str())
        .with_attr("to", user.as_str())
        .with_child(q);
    let mut acc = Acc::new(
        Stanza::from_element(&el),
        Jid::from(user.clone()),
        Jid::from(user.clone()),
        shard,
    );
    acc.put(PUSH, ());
    acc
}

/// Home-shard handler: copies a marked push to every bound resource of the user.
fn fan_out_push(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    if acc.get(PUSH).is_none() {
        return Some(acc);
    }
    let bare = acc.to.bare();
    let targets: Vec<(FullJid, crate::shard::SessionRef)> = shard
        .sm
        .resources(&bare)
        .iter()
        .map(|r| (r.jid.clone(), r.session))
        .collect();
    for (jid, session) in targets {
        let mut copy = acc.fork();
        copy.stanza.set_to(jid.as_str());
        copy.to = Jid::from(jid);
        shard.send_to_session(session, ConnMsg::Deliver(copy));
    }
    None
}

/// The module's settings on this shard (defaults when the roster module is off).
pub fn settings(shard: &Shard) -> RosterOpts {
    shard
        .ext
        .get::<RosterSettings>()
        .map(|s| s.0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
