//! `mod_blocking`: the blocking command (XEP-0191), enforced in the route as MongooseIM does.
//!
//! - Outgoing: `user_send_packet` on the sender's shard stops a message or IQ to a blocked JID with
//!   `<not-acceptable/>` + `<blocked xmlns='urn:xmpp:blocking:errors'/>`; presence to it is dropped.
//! - Incoming: `user_receive_packet` on the recipient session's shard stops stanzas from a blocked
//!   JID: messages and IQ get/set are answered `service-unavailable` (as if the user were absent),
//!   everything else is dropped, and so is a message stored offline before the block (an answer
//!   at login would tell the sender when the user came online).
//! - The user's home shard, which holds the user's list: `filter_packet` stops what the server
//!   sends there on the user's behalf to a blocked JID (presence broadcasts, probe answers, PEP
//!   notifications); a home filter, ahead of every module's home handler, stops what a blocked JID
//!   sends to the user's bare JID (probes and subscription requests dropped, messages and IQs
//!   answered `service-unavailable`, never stored offline).
//! - IQs (`urn:xmpp:blocking`, to the user's own account): get the list, block, unblock, unblock
//!   all; after the store commits, the home shard takes the new list, then sends the result to the
//!   requester and a push to every resource.
//!   [`BlocklistChanged`] tells the presence module, which sends a newly blocked JID unavailable
//!   presence and an unblocked subscriber the current presence (§3.3, §3.4).
//!
//! Where the lists live and why each shard has the list before it filters: see [`state`].

pub mod iq;
mod list;
pub mod state;

use std::rc::Rc;
use std::sync::Arc;

pub use list::BlockList;

use crate::config::Config;
use crate::hooks::{Acc, Events, HookCtx, HookResult, JobDone, SessionEvent};
use crate::jid::{BareJid, FullJid, Jid};
use crate::local::{result_reply, IqHandler, IqReply};
use crate::modules::offline::{user_key, OFFLINE_ROW};
use crate::modules::options::{self, OptionError};
use crate::shard::{home_shard, Shard, ShardId};
use crate::store::{Backend, BlockChange, BlockUpdateError, Store};
use crate::xml::{Element, Node, Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};
use state::{ConnLists, HomeLists, MAX_HELD};

/// The blocking command namespace.
pub const NS: &str = "urn:xmpp:blocking";
/// Application-specific error namespace (`<blocked/>`).
pub const NS_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Features this module adds to the server's disco#info.
pub const FEATURES: &[&str] = &[NS];

/// Priority of the enforcement handlers: early, before modules that act on delivered stanzas.
pub const PRIORITY: i32 = 10;

/// `[modules.blocking]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Most JIDs one block list holds: a block that would add more is refused whole with
    /// `policy-violation` (every shard keeps the lists of its users in memory).
    pub max_items: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_items: 1000 }
    }
}

impl Options {
    /// Reads and checks `[modules.blocking]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new("blocking", Some(table));
        o.only(&["max_items"])?;
        let d = Options::default();
        let max = o.uint_in("max_items", d.max_items as u64, 1..=1_000_000)?;
        Ok(Options {
            // Within 1..=1 000 000 (checked above).
            max_items: usize::try_from(max).unwrap_or(d.max_items),
        })
    }
}

/// Registers the module on `shard`, with the lists of the users it is home to read from the store
/// (a synchronous read at start-up, before the shard serves).
pub fn start(shard: &mut Shard, hosts: &[String], opts: &Options, config: &Config) {
    match Backend::from_config(config).and_then(|b| Store::connect(&b)) {
        Ok(store) => preload(shard, &store),
        Err(e) => tracing::error!(error = %e, "blocking: cannot read block lists; starting empty"),
    }
    register(shard, hosts, opts);
}

/// Loads the lists of the users `shard` is home to.
pub fn preload(shard: &mut Shard, store: &Store) {
    let all = match store.blocklist_all() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "blocking: cannot read block lists");
            return;
        }
    };
    let (id, n) = (shard.id, shard.shards);
    let home = shard.ext.get_or_default::<HomeLists>();
    for (user, stored) in all {
        if home_shard(&user, n) == id {
            let list = BlockList::new(stored.items, stored.version);
            home.lists.insert(user, Arc::new(list));
        }
    }
}

/// Registers the hook and IQ handlers (without preloading).
pub fn register(shard: &mut Shard, hosts: &[String], opts: &Options) {
    let hooks = &mut shard.hooks;
    hooks
        .sm_register_connection
        .add(PRIORITY, "blocking", on_register);
    hooks
        .sm_remove_connection
        .add(PRIORITY, "blocking", on_remove);
    hooks.user_send_packet.add(PRIORITY, "blocking", on_send);
    hooks
        .user_receive_packet
        .add(PRIORITY, "blocking", on_receive);
    hooks.filter_packet.add(PRIORITY, "blocking", on_route);
    shard.sm.add_home_filter("blocking", Rc::new(on_home));
    let max = opts.max_items;
    let handler: IqHandler = Rc::new(move |acc, payload, ctx| handle_iq(acc, payload, ctx, max));
    for host in hosts {
        shard.iq.register_account(host, NS, handler.clone());
    }
}

/// Home shard: the new session's shard gets the list right behind the bind answer.
fn on_register(ev: &mut SessionEvent, ctx: &mut HookCtx<'_>) -> HookResult {
    let user = ev.jid.bare();
    let list = ctx.ext.get_or_default::<HomeLists>().get(&user);
    let (u, j, s) = (user.clone(), ev.jid.clone(), ev.session);
    ctx.run_on(
        ev.session.shard,
        Box::new(move |shard| state::install(shard, &u, &j, Some(s), list)),
    );
    HookResult::Continue
}

/// Home shard: the session's shard forgets it (and the user's list with its last session there).
fn on_remove(ev: &mut SessionEvent, ctx: &mut HookCtx<'_>) -> HookResult {
    let user = ev.jid.bare();
    let (u, j, s) = (user.clone(), ev.jid.clone(), ev.session);
    ctx.run_on(
        ev.session.shard,
        Box::new(move |shard| state::uninstall(shard, &u, &j, s)),
    );
    HookResult::Continue
}

/// True when `other` is the user's own account or server: never blocked either way.
fn is_own(user: &BareJid, other: &Jid) -> bool {
    if other.node().is_none() {
        return other.domain() == user.domain() && other.resource().is_none();
    }
    other.node() == user.node() && other.domain() == user.domain()
}

/// Sender's shard: nothing leaves towards a JID the sender blocked.
fn on_send(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let kind = acc.kind();
    if kind == StanzaKind::Other {
        return HookResult::Continue;
    }
    let user = acc.from.bare();
    if is_own(&user, &acc.to) {
        return HookResult::Continue;
    }
    let st = ctx.ext.get_or_default::<ConnLists>();
    let Some(entry) = st.users.get(&user) else {
        // The install task has not arrived (only under mesh overload): load the list here so the
        // next stanza is filtered; this one goes out.
        if let Ok(session) = FullJid::try_from(acc.from.clone()) {
            self_load(ctx, user, session);
        }
        return HookResult::Continue;
    };
    if !entry.list.blocks(&acc.to) {
        return HookResult::Continue;
    }
    if kind != StanzaKind::Presence {
        if let Some(reply) = blocked_error(acc, ctx.shard) {
            ctx.route(reply);
        }
    }
    HookResult::Stop
}

/// Recipient session's shard: nothing from a JID the recipient blocked gets through.
fn on_receive(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let kind = acc.kind();
    let user = acc.to.bare();
    if kind == StanzaKind::Other || is_own(&user, &acc.from) || acc.get(ANSWER).is_some() {
        return HookResult::Continue;
    }
    let st = ctx.ext.get_or_default::<ConnLists>();
    let Some(entry) = st.users.get(&user) else {
        return hold(acc, ctx, user);
    };
    if !entry.list.blocks(&acc.from) {
        return HookResult::Continue;
    }
    if is_answered(acc) {
        if let Some(reply) = acc.error_reply(StanzaErrorCondition::ServiceUnavailable, ctx.shard) {
            ctx.route(reply);
        }
        // Refused: the archive that kept it for the user drops it.
        crate::hooks::MessageRefused::emit_later(ctx, acc);
    }
    HookResult::Stop
}

/// Whether a stanza from a blocked JID is answered `service-unavailable` (as if the user were
/// absent): a message or an IQ request. Not a message stored while the user was away: it was
/// accepted then, and an answer now would tell the blocked sender when she came online, and from
/// which session; it is dropped (its row with it), as for a user who stays offline (§3.3: she
/// appears offline to him).
fn is_answered(acc: &Acc) -> bool {
    let ty = acc.ty();
    match acc.kind() {
        StanzaKind::Message => ty != StanzaType::Error && acc.get(OFFLINE_ROW).is_none(),
        StanzaKind::Iq => ty.is_request(),
        _ => false,
    }
}

/// Any shard routing a stanza; acts on the sender's home shard, which has the sender's list: what
/// the server sends there on the user's behalf (presence broadcasts and probe answers, PEP
/// notifications) never goes to a JID the user blocked (§3.3, XEP-0163 §4.3.3). The user's own
/// stanzas were stopped on their connection's shard already; errors go out (the
/// `service-unavailable` a blocked sender gets comes from the user).
fn on_route(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let lists = ctx.ext.get_or_default::<HomeLists>();
    if lists.lists.is_empty() || acc.from.node().is_none() {
        return HookResult::Continue;
    }
    let Some(list) = lists.lists.get(acc.from.bare_str()) else {
        return HookResult::Continue;
    };
    if list.is_empty() || acc.kind() == StanzaKind::Other || acc.ty() == StanzaType::Error {
        return HookResult::Continue;
    }
    if list.blocks(&acc.to) && !is_own(&acc.from.bare(), &acc.to) {
        return HookResult::Stop;
    }
    HookResult::Continue
}

/// The recipient's home shard, before any module: nothing from a JID the user blocked reaches the
/// modules that act there for the user. Presence (subscription requests, probes) is dropped
/// without an answer (§3.3); a message or an IQ request is answered `service-unavailable` as if
/// the user were absent, so that it is neither stored offline nor delivered later.
fn on_home(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    let lists = shard.ext.get_or_default::<HomeLists>();
    if lists.lists.is_empty() || acc.get(ANSWER).is_some() {
        return Some(acc);
    }
    let Some(list) = lists.lists.get(acc.to.bare_str()) else {
        return Some(acc);
    };
    if list.is_empty() || !list.blocks(&acc.from) || is_own(&acc.to.bare(), &acc.from) {
        return Some(acc);
    }
    if is_answered(&acc) {
        if let Some(reply) = acc.error_reply(StanzaErrorCondition::ServiceUnavailable, shard.id) {
            crate::router::route(shard, reply);
        }
        crate::hooks::MessageRefused::emit(shard, &acc);
    }
    None
}

/// No list for the recipient here yet. A stanza to a full JID (the local fast path overtaking the
/// install task) waits for the list, loaded from the store if no load is running; one to the bare
/// JID can only follow the install task from the home shard, so a missing list means the task was
/// refused by a full mesh outbox: it is delivered, and the list loaded for the next ones.
fn hold(acc: &mut Acc, ctx: &mut HookCtx<'_>, user: BareJid) -> HookResult {
    let Ok(session) = FullJid::try_from(acc.to.clone()) else {
        tracing::warn!(
            user = user.as_str(),
            "blocking: no list on this shard for a bare-JID delivery"
        );
        return HookResult::Continue;
    };
    let st = ctx.ext.get_or_default::<ConnLists>();
    let held = st.held.entry(session.clone()).or_default();
    if held.len() >= MAX_HELD {
        if let Some(reply) = acc.error_reply(StanzaErrorCondition::ResourceConstraint, ctx.shard) {
            ctx.route(reply);
        }
        crate::hooks::MessageRefused::emit_later(ctx, acc);
        return HookResult::Stop;
    }
    let mut copy = acc.fork();
    // A stored message's row goes with the copy: kept until it is delivered, and known as stored
    // if the list, once here, blocks its sender (see `is_answered`).
    if let Some(row) = acc.take(OFFLINE_ROW) {
        copy.put(OFFLINE_ROW, row);
    }
    held.push(copy);
    self_load(ctx, user, session);
    HookResult::Stop
}

/// Loads `user`'s list on this shard (once at a time) and installs it for `session`.
fn self_load(ctx: &mut HookCtx<'_>, user: BareJid, session: FullJid) {
    let st = ctx.ext.get_or_default::<ConnLists>();
    if !st.loading.insert(user.clone()) {
        return;
    }
    ctx.store(Some(user_key(&user)), move |store| {
        let stored = match store.blocklist_get(&user) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "blocking: list load failed; treating as empty");
                Default::default()
            }
        };
        let list = Arc::new(BlockList::new(stored.items, stored.version));
        JobDone {
            hold: Vec::new(),
            route: Vec::new(),
            then: Some(Box::new(move |shard| {
                let sref = shard
                    .local_session(session.as_str())
                    .map(|conn| shard.session_ref(conn));
                state::install(shard, &user, &session, sref, list)
            })),
        }
    });
}

/// `<not-acceptable/>` + `<blocked/>` back to the sender (XEP-0191 §3.3).
pub fn blocked_error(acc: &Acc, on: ShardId) -> Option<Acc> {
    let ty = acc.ty();
    if ty.is_response() {
        return None;
    }
    let mut el = acc.stanza.tree().ok()?;
    el.attrs
        .retain(|(k, _)| k != "type" && k != "from" && k != "to");
    el.attrs.push(("type".into(), "error".into()));
    el.attrs.push(("from".into(), acc.to.as_str().into()));
    el.attrs.push(("to".into(), acc.from.as_str().into()));
    let error = Element::new("error", ns::CLIENT)
        .with_attr("type", "cancel")
        .with_child(Element::new("not-acceptable", ns::STANZAS))
        .with_child(Element::new("blocked", NS_ERRORS));
    el.children.push(Node::Element(error));
    let mut reply = Acc::new(
        Stanza::from_element(&el),
        acc.to.clone(),
        acc.from.clone(),
        on,
    );
    // It comes "from" the blocked JID: the sender's own receive filter must let it through.
    reply.put(ANSWER, Answer);
    acc.reply_trace(
        &mut reply,
        on,
        crate::explain::Outcome::Bounced,
        Some("blocked"),
    );
    Some(reply)
}

/// Marks the server's `<blocked/>` answer on its way back to the blocking user.
struct Answer;
/// Scratch key of [`Answer`].
const ANSWER: crate::hooks::Key<Answer> = crate::hooks::Key::new("blocking.answer");

/// The account IQ handler: runs on the requester's shard; the store answers. A list holds at most
/// `max` JIDs.
fn handle_iq(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>, max: usize) -> IqReply {
    let user = acc.to.bare();
    if acc.from.bare() != user {
        // Someone else's block list is not theirs to read or change.
        return IqReply::NotYours(StanzaErrorCondition::NotAllowed);
    }
    let req = match iq::parse(acc.ty(), payload) {
        Ok(r) => r,
        Err(cond) => return IqReply::Error(cond),
    };
    let req_acc = acc.fork();
    let on = ctx.shard;
    ctx.store(Some(user_key(&user)), move |store| match req {
        iq::Request::Get => match store.blocklist_get(&user) {
            Ok(stored) => {
                let list = BlockList::new(stored.items, stored.version);
                let body = iq::blocklist(&list);
                vec![result_reply(&req_acc, Some(body), on)].into()
            }
            Err(e) => internal_error(&req_acc, on, &e),
        },
        iq::Request::Change(change) => match store.blocklist_update(&user, &change, max) {
            Ok(stored) => {
                let told = presence_shared(store, &user, &change);
                changed(&req_acc, user, change, stored, told, on)
            }
            Err(BlockUpdateError::Full(_)) => {
                error_answer(&req_acc, on, StanzaErrorCondition::PolicyViolation)
            }
            Err(BlockUpdateError::Store(e)) => internal_error(&req_acc, on, &e),
        },
    });
    IqReply::NoReply
}

/// The JIDs a block names that the user shares its presence with (a `from` or `both`
/// subscription): only they may be told the user went (XEP-0191 §3.3).
fn presence_shared(store: &Store, user: &BareJid, change: &BlockChange) -> Vec<Jid> {
    let BlockChange::Block(items) = change else {
        return Vec::new();
    };
    parse_all(items.iter().map(String::as_str))
        .into_iter()
        .filter(|j| j.node().is_some())
        .filter(|j| {
            store
                .shares_presence_with(user, &j.bare())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "blocking: cannot read the roster");
                    false
                })
        })
        .collect()
}

fn internal_error(req: &Acc, on: ShardId, e: &crate::store::StoreError) -> JobDone {
    tracing::error!(error = %e, "blocking: store failed");
    error_answer(req, on, StanzaErrorCondition::InternalServerError)
}

/// The store's answer to `req`: the error `cond`.
fn error_answer(req: &Acc, on: ShardId, cond: StanzaErrorCondition) -> JobDone {
    req.error_reply(cond, on)
        .into_iter()
        .collect::<Vec<_>>()
        .into()
}

/// Module event on the user's home shard, for presence to follow a block (XEP-0191 §3.3, §3.4).
#[derive(Debug, Clone)]
pub enum BlocklistChanged {
    /// `user` is blocking `jids`: emitted before the new list applies, so that what listeners send
    /// them now (unavailable presence) still goes out.
    Blocking {
        /// The user.
        user: BareJid,
        /// The JIDs being blocked.
        jids: Vec<Jid>,
        /// Those of `jids` the user shares its presence with (read with the change): the only
        /// ones that may learn the user went (XEP-0191 §3.3).
        subscribers: Vec<Jid>,
    },
    /// `user` unblocked `jids`: emitted once the new list applies (current presence may go).
    Unblocked {
        /// The user.
        user: BareJid,
        /// The JIDs no longer blocked.
        jids: Vec<Jid>,
    },
}

/// The JIDs of a stored list's items (they were prepared before they were stored).
fn parse_all<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<Jid> {
    items
        .into_iter()
        .filter_map(|j| Jid::parse(j).ok())
        .collect()
}

/// After a committed change: the result to the requester, then the new list to the home shard,
/// which refreshes every session's shard and pushes the change to every resource.
fn changed(
    req: &Acc,
    user: BareJid,
    change: BlockChange,
    stored: crate::store::StoredBlockList,
    subscribers: Vec<Jid>,
    on: ShardId,
) -> JobDone {
    let list = Arc::new(BlockList::new(stored.items, stored.version));
    let result = result_reply(req, None, on);
    let payload = iq::push_payload(&change);
    JobDone {
        hold: Vec::new(),
        route: Vec::new(),
        then: Some(Box::new(move |shard| {
            // The result goes from the home shard once the home copy is replaced, then the pushes
            // (XEP-0191 §3.3 order): whoever the user tells after reading it meets the new list.
            let home = home_shard(&user, shard.shards);
            let u = user.clone();
            crate::sm::run_on(
                shard,
                home,
                Box::new(move |home_shard| {
                    let id = home_shard.id;
                    let version = list.version;
                    let old = home_shard.ext.get_or_default::<HomeLists>().get(&u);
                    let (blocking, unblocked) = match &change {
                        BlockChange::Block(j) => (parse_all(j.iter().map(String::as_str)), vec![]),
                        BlockChange::Unblock(j) => {
                            (vec![], parse_all(j.iter().map(String::as_str)))
                        }
                        BlockChange::UnblockAll => (vec![], parse_all(old.items())),
                    };
                    if !blocking.is_empty() {
                        let ev = BlocklistChanged::Blocking {
                            user: u.clone(),
                            jids: blocking,
                            subscribers,
                        };
                        Events::<BlocklistChanged>::emit(home_shard, &ev);
                    }
                    let from = u.clone();
                    let push = move |to: &FullJid| push_iq(&from, to, &payload, version, id);
                    state::publish(home_shard, &u, list, result, &push);
                    if !unblocked.is_empty() {
                        let ev = BlocklistChanged::Unblocked {
                            user: u.clone(),
                            jids: unblocked,
                        };
                        Events::<BlocklistChanged>::emit(home_shard, &ev);
                    }
                }),
            );
        })),
    }
}

/// `<iq type='set'>` push of `payload` to one resource.
fn push_iq(user: &BareJid, to: &FullJid, payload: &Element, version: u64, on: ShardId) -> Acc {
    // One change per version: unique enough for clients to tell pushes apart.
    let id = format!("block-push-{version}");
    let el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_attr("from", user.as_str())
        .with_attr("to", to.as_str())
        .with_child(payload.clone());
    Acc::new(
        Stanza::from_element(&el),
        Jid::from(user.clone()),
        Jid::from(to.clone()),
        on,
    )
}

#[cfg(test)]
mod tests;
