//! `mod_pep`: personal eventing (XEP-0163) on every account, on the pubsub core.
//!
//! Pubsub IQs to a bare JID (or without `to`: the sender's own account) are account IQ handlers;
//! the work runs on the home shard of the owner's bare JID, where their PEP state lives: nodes
//! and items (loaded lazily from the store, cached with a bound, evicting users without sessions;
//! dropped when the user's last session ends, so a deleted account's state does not linger)
//! and the roster's subscriptions (for the access models). Nodes are auto-created on publish,
//! configured by `publish-options` when new and checked against them otherwise. Notifications go to
//! the owner's available resources and to the full JIDs whose available presence reached the
//! owner's home shard, when the access model admits them and their caps include `NODE+notify`
//! ([`interest`]); the last item goes to such a JID on its available presence, on a new
//! subscription and when its caps become known ([`caps_learned`]). Items of nodes with
//! `persist_items` are written by store jobs keyed by the owner.

pub mod api;
mod forget;
mod handle;
pub mod interest;
mod notify;
mod presence;
mod seen;
mod state;

#[cfg(test)]
mod tests;

use std::rc::Rc;

use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::{BareJid, Jid};
use crate::local::{IqHandler, IqReply};
use crate::modules::disco;
use crate::modules::options::{self, OptionError};
use crate::modules::pubsub::core::{
    self as ps, event, AccessModel, Limits, MaxItems, Node, NodeConfig, Request,
};
use crate::modules::register::AccountRemoved;
use crate::modules::roster;
use crate::shard::{home_shard_of, Shard};
use crate::store::{Store, StoreError};
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

use state::{with_user, Home};

/// The module's name in `[modules]`.
pub const NAME: &str = "pep";

/// `pubsub#…` features of PEP beyond the core's.
const PEP_FEATURES: &[&str] = &[
    "auto-subscribe",
    "presence-notifications",
    "presence-subscribe",
];

/// `[modules.pep]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Items per node, nodes per user, item size.
    pub limits: Limits,
    /// Users whose PEP state a shard keeps loaded (users with sessions are never evicted).
    pub cache_users: usize,
    /// Payload bytes of all of one user's items together; past it a publication is refused.
    pub max_bytes_per_user: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits {
                max_items_per_node: 256,
                max_item_bytes: 65_536,
                max_nodes_per_owner: 256,
            },
            cache_users: 10_000,
            max_bytes_per_user: 1 << 20,
        }
    }
}

impl Options {
    /// Reads and checks `[modules.pep]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new(NAME, Some(table));
        o.only(&[
            "max_items_per_node",
            "max_item_bytes",
            "max_nodes_per_user",
            "cache_users",
            "max_bytes_per_user",
        ])?;
        let d = Options::default();
        let n = |key, default: usize| o.positive_u32(key, default as u32).map(|v| v as usize);
        Ok(Options {
            limits: Limits {
                max_items_per_node: n("max_items_per_node", d.limits.max_items_per_node)?,
                max_item_bytes: n("max_item_bytes", d.limits.max_item_bytes)?,
                max_nodes_per_owner: n("max_nodes_per_user", d.limits.max_nodes_per_owner)?,
            },
            cache_users: n("cache_users", d.cache_users)?,
            max_bytes_per_user: n("max_bytes_per_user", d.max_bytes_per_user)?,
        })
    }

    /// The configuration of a new PEP node (XEP-0163 §4.1: presence access, one item kept, the
    /// last item sent on subscription and presence).
    pub fn default_config(&self) -> NodeConfig {
        NodeConfig {
            access_model: AccessModel::Presence,
            max_items: MaxItems::Count(1),
            ..NodeConfig::default()
        }
    }
}

/// Registers the account IQ handlers, the home-shard handler and the disco entries.
pub fn start(shard: &mut Shard, hosts: &[String], opts: Options) {
    shard.ext.insert(Home::new(opts, shard.shards));
    let handler: IqHandler = Rc::new(iq);
    let items: IqHandler = Rc::new(disco_items);
    let node_info: IqHandler = Rc::new(disco_node_info);
    for host in hosts {
        shard
            .iq
            .register_account(host, ps::ns::PUBSUB, handler.clone());
        shard
            .iq
            .register_account(host, ps::ns::OWNER, handler.clone());
        disco::add_account_identity(&mut shard.ext, host, "pubsub", "pep");
        disco::add_account_feature(&mut shard.ext, host, ps::ns::PUBSUB);
        for f in ps::feature_uris() {
            disco::add_account_feature(&mut shard.ext, host, &f);
        }
        // XEP-0163 §8: contacts are subscribed by their presence subscription and notified by it.
        for f in PEP_FEATURES {
            disco::add_account_feature(&mut shard.ext, host, &format!("{}#{f}", ps::ns::PUBSUB));
        }
        disco::set_account_items(&mut shard.ext, host, items.clone());
        disco::set_account_node_info(&mut shard.ext, host, node_info.clone());
    }
    shard.sm.add_home_handler(NAME, Rc::new(presence::home));
    shard
        .hooks
        .user_receive_presence
        .add(60, NAME, presence::received);
    shard.hooks.sm_remove_connection.add(60, NAME, |ev, ctx| {
        let user = ev.jid.bare();
        ctx.run_on(
            ctx.shard,
            Box::new(move |shard: &mut Shard| {
                if shard.sm.resources(&user).is_empty() {
                    // Without sessions, presences are kept for contacts only (see `presence`).
                    let home = shard.ext.get_or_default::<Home>();
                    home.forget(user.as_str());
                    home.presences.remove(user.as_str());
                }
            }),
        );
        crate::hooks::HookResult::Continue
    });
    crate::hooks::Events::<AccountRemoved>::listen(shard, 50, NAME, |shard, ev| {
        forget::account_removed(shard, &ev.jid);
        let user = ev.jid.clone();
        let home = home_shard_of(user.as_str(), shard.shards);
        crate::sm::run_on(
            shard,
            home,
            Box::new(move |shard: &mut Shard| {
                shard.ext.get_or_default::<Home>().removed(user.as_str());
            }),
        );
    });
    crate::modules::caps::on_learned(&mut shard.ext, 50, NAME, |learned, ctx| {
        let ver = learned.ver.clone();
        // The hook context has no shard: the work runs right after, on this shard.
        ctx.run_on(
            ctx.shard,
            Box::new(move |shard: &mut Shard| caps_learned(shard, &ver)),
        );
        crate::hooks::HookResult::Continue
    });
}

/// Carries the request to the owner's home shard.
fn iq(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>) -> IqReply {
    // A publish without item stays `item-required` here (PEP nodes keep items); the subid of an
    // items request is checked against the requester's subscriptions.
    let (req, subid) = match Request::parse_with_subid(acc.ty(), payload) {
        Ok(r) => r,
        Err(e) => {
            if let Some(r) = e.reply_to(acc, ctx.shard) {
                ctx.route(r);
            }
            return IqReply::NoReply;
        }
    };
    on_home(acc, ctx, move |shard, u, owner, acc| {
        handle::answer(shard, u, &owner, acc, req, subid)
    });
    IqReply::NoReply
}

/// Runs `f` with the state of the account `acc` is addressed to, on its home shard.
fn on_home(
    acc: &Acc,
    ctx: &mut HookCtx<'_>,
    f: impl FnOnce(&mut Shard, Option<&mut state::UserPep>, BareJid, Acc) + Send + 'static,
) {
    let owner = acc.to.bare();
    let shards = ctx.ext.get::<Home>().map_or(1, |h| h.shards);
    let acc = acc.fork();
    ctx.run_on(
        home_shard_of(owner.as_str(), shards),
        Box::new(move |shard: &mut Shard| {
            let o = owner.clone();
            with_user(shard, &o, Box::new(move |shard, u| f(shard, u, owner, acc)));
        }),
    );
}

/// disco#items of an account: its nodes, those the asker may read (XEP-0163 §6.2: the owner
/// sees all, a contact those whose access model lets it in). Someone who may read none and gets
/// no presence from the account is refused like a stranger (the account's existence is not
/// told).
fn disco_items(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>) -> IqReply {
    if acc.ty() != StanzaType::Get {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    if payload.attr("node").is_some() {
        return IqReply::Error(StanzaErrorCondition::ItemNotFound);
    }
    on_home(acc, ctx, |shard, u, owner, acc| {
        let asker = acc.from.bare();
        let reply = match u {
            None if asker == owner => {
                acc.error_reply(StanzaErrorCondition::ResourceConstraint, shard.id)
            }
            None => acc.error_reply(StanzaErrorCondition::ServiceUnavailable, shard.id),
            Some(u) => {
                let readable: Vec<&Node> = u
                    .nodes
                    .values()
                    .filter(|n| notify::may_read(u, &owner, n, asker.as_str()))
                    .collect();
                if readable.is_empty() && !shares_presence(u, &owner, &asker) {
                    acc.error_reply(StanzaErrorCondition::ServiceUnavailable, shard.id)
                } else {
                    let mut q = Element::new("query", ns::DISCO_ITEMS);
                    for n in readable {
                        let mut item = Element::new("item", ns::DISCO_ITEMS)
                            .with_attr("jid", owner.as_str())
                            .with_attr("node", &n.name);
                        if !n.config().title.is_empty() {
                            item = item.with_attr("name", &n.config().title);
                        }
                        q = q.with_child(item);
                    }
                    Some(crate::local::result_reply(&acc, Some(q), shard.id))
                }
            }
        };
        if let Some(r) = reply {
            crate::router::route(shard, r);
        }
    });
    IqReply::NoReply
}

/// disco#info of one of an account's nodes (XEP-0060 §5.3), to those who may read it: the owner,
/// and others as the node's access model says. A node the asker may not read is
/// `item-not-found`, like one that does not exist; a stranger is refused as for the account.
fn disco_node_info(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>) -> IqReply {
    let Some(name) = payload.attr("node").map(str::to_owned) else {
        return IqReply::Error(StanzaErrorCondition::ItemNotFound);
    };
    on_home(acc, ctx, move |shard, u, owner, acc| {
        let asker = acc.from.bare();
        let cond = |c| acc.error_reply(c, shard.id);
        let reply = match u {
            None if asker == owner => cond(StanzaErrorCondition::ResourceConstraint),
            None => cond(StanzaErrorCondition::ServiceUnavailable),
            Some(u) => match u.nodes.get(&name) {
                Some(n) if notify::may_read(u, &owner, n, asker.as_str()) => {
                    let q = ps::event::node_info(&n.name, n.config());
                    Some(crate::local::result_reply(&acc, Some(q), shard.id))
                }
                _ if asker == owner || shares_presence(u, &owner, &asker) => {
                    cond(StanzaErrorCondition::ItemNotFound)
                }
                _ => cond(StanzaErrorCondition::ServiceUnavailable),
            },
        };
        if let Some(r) = reply {
            crate::router::route(shard, r);
        }
    });
    IqReply::NoReply
}

/// Whether `owner` shares its presence with `asker` (a `from` or `both` subscription).
fn shares_presence(u: &state::UserPep, owner: &BareJid, asker: &BareJid) -> bool {
    asker == owner || u.roster.get(asker.as_str()).is_some_and(|c| c.from)
}

/// Queues a store write for `owner` (in order with their other jobs); failures are logged, and
/// fail the request being answered (`hooks::commit`).
fn persist(
    shard: &mut Shard,
    owner: &BareJid,
    f: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
) {
    let who = owner.as_str().to_owned();
    let key = roster::user_key(owner);
    let failed = crate::hooks::commit::track(&mut shard.ext, key);
    HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, move |s| {
        let Err(e) = f(s) else {
            return JobDone::default();
        };
        tracing::error!(error = %e, user = who, "pep: store write failed");
        if let Some(failed) = failed {
            failed.store(true, std::sync::atomic::Ordering::Release);
        }
        // Memory is ahead of the store now (a node whose row is missing would take the next
        // items with it at a restart): the user's state is read from the store again at its
        // next use, so what was refused is gone there too.
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                shard.ext.get_or_default::<Home>().forget(&who);
            })),
            ..JobDone::default()
        }
    });
}

/// Sends `to` the newest item of `n`, if any.
fn send_last(shard: &mut Shard, owner: &BareJid, n: &Node, to: Jid) {
    let Some(last) = n.last() else {
        return;
    };
    let msg = event::items(owner.as_str(), &n.name, n.config(), &[last]);
    let mut s = Stanza::from_element(&msg);
    s.set_to(to.as_str());
    crate::router::route(shard, Acc::new(s, Jid::from(owner.clone()), to, shard.id));
}

/// The caps `ver` became known on this shard: full JIDs that advertised it to users homed here get
/// the last items they now turn out to want (run by the caps module's "caps learned" callback).
pub fn caps_learned(shard: &mut Shard, ver: &str) {
    let Some(home) = shard.ext.get::<Home>() else {
        return;
    };
    let todo: Vec<(BareJid, crate::jid::FullJid)> = home
        .presences
        .iter()
        .flat_map(|(owner, seen)| {
            seen.iter()
                .filter(|(_, v)| v.as_deref() == Some(ver))
                .filter_map(move |(jid, _)| Some((BareJid::parse(owner).ok()?, jid.clone())))
        })
        .collect();
    for (owner, jid) in todo {
        presence::last_items(shard, owner, jid, Some(ver.to_owned()));
    }
}
