//! `mod_caps`: entity capabilities (XEP-0115). The server learns what a client's software can do
//! from the `<c/>` in its presence, once per `ver`, and other modules ask it ([`features`]).
//!
//! - A client's available presence with hashed caps (`user_send_presence`, the sender's shard)
//!   costs one hash-map lookup when the `ver` is known. An unknown one is claimed on the `ver`'s
//!   home shard (a hash of the `ver`), which lets ONE query go out per `ver` in the whole server;
//!   the sender's shard then sends `<query xmlns='disco#info' node='NODE#VER'/>` to the client's
//!   full JID from its domain ([`crate::shard::Shard::send_iq`]), verifies the answer (§5.1,
//!   with extended forms) and, when the hash matches, puts the info in every shard's cache
//!   (`ShardMsg::Run`) where the `caps_learned` callbacks ([`on_learned`]) run.
//! - An error, no answer within [`QUERY_TIMEOUT`], or a hash that does not verify: not cached,
//!   logged, and the `ver` is not asked of that account's clients again for `retry_after` seconds
//!   (default 600), nor of anyone once [`cache::FAILING_ACCOUNTS`] accounts failed it (one client
//!   answering wrongly, or gone before answering, does not keep everyone's caps unknown).
//!   Legacy caps (no `hash`) and hash functions other than sha-1 and sha-2 are ignored.
//! - Bounds: the cache holds `max_entries` `ver`s (default 100 000) and [`MAX_CACHE_BYTES`],
//!   evicting the one learned the longest ago; at most [`MAX_CLAIMS`] queries under way and as
//!   many failed `ver`s remembered per home shard (see [`cache::Claims`]).
//! - The server's own caps: [`stream_feature`] (post-auth stream features), `ver` computed from
//!   the server's disco#info, whose handler also answers `node='https://petrel.im#VER'`.

pub mod cache;
#[cfg(test)]
mod tests;
pub mod ver;

pub use ver::{parse, CapsCarrier, CapsError, CapsInfo, CapsRef, Form, Identity};

use std::rc::Rc;
use std::time::Duration;

use crate::hooks::{Acc, Hook, HookCtx, HookResult};
use crate::jid::{FullJid, Jid};
use crate::local::IqAnswer;
use crate::shard::{Extensions, Served, Shard, ShardId, ShardMsg};
use crate::xml::{Element, StanzaType};
use crate::xmpp::ns;

use super::options::{OptionError, Options};
use cache::{Cache, Claim, Claims};

/// The module's name in `[modules]`.
pub const NAME: &str = "caps";
/// The `node` of the server's own caps.
pub const SERVER_NODE: &str = "https://petrel.im";
/// How long the server waits for a client's disco#info answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries under way (and failed `ver`s remembered) per home shard.
pub const MAX_CLAIMS: usize = 10_000;
/// Bytes the cache of one shard may hold (roughly, see [`CapsInfo::weight`]).
pub const MAX_CACHE_BYTES: usize = 64 << 20;
/// A disco#info answer heavier than this is not cached (treated as failing).
pub const MAX_INFO_BYTES: usize = 64 << 10;

/// Options of `[modules.caps]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsOptions {
    /// Most `ver`s cached per shard.
    pub max_entries: usize,
    /// How long a `ver` whose query failed is not asked again.
    pub retry_after: Duration,
}

impl Default for CapsOptions {
    fn default() -> Self {
        CapsOptions {
            max_entries: 100_000,
            retry_after: Duration::from_secs(600),
        }
    }
}

impl CapsOptions {
    /// Reads `[modules.caps]`.
    pub fn from_table(table: &toml::Table) -> Result<CapsOptions, OptionError> {
        let o = Options::new(NAME, Some(table));
        o.only(&["max_entries", "retry_after"])?;
        let d = CapsOptions::default();
        Ok(CapsOptions {
            max_entries: o.positive_u32("max_entries", d.max_entries as u32)? as usize,
            retry_after: o.positive_secs("retry_after", d.retry_after.as_secs())?,
        })
    }
}

/// A `ver` became known on this shard (argument of the `caps_learned` callbacks).
pub struct CapsLearned {
    /// The `ver`.
    pub ver: String,
    /// What it stands for.
    pub info: Rc<CapsInfo>,
}

/// The caps state of one shard.
struct CapsState {
    /// Number of shards (where `ver`s have their home).
    shards: usize,
    cache: Cache,
    claims: Claims,
    learned: Hook<CapsLearned>,
    /// The domains served here: their users' caps are asked about on the send side (on this
    /// node; none in a cluster, whose other nodes' users are asked about where they are).
    served: Option<Served>,
}

impl Default for CapsState {
    fn default() -> Self {
        CapsState::new(CapsOptions::default())
    }
}

impl CapsState {
    fn new(opts: CapsOptions) -> CapsState {
        CapsState {
            shards: 1,
            cache: Cache::new(opts.max_entries, MAX_CACHE_BYTES),
            claims: Claims::new(MAX_CLAIMS, QUERY_TIMEOUT * 2, opts.retry_after),
            learned: Hook::new("caps_learned"),
            served: None,
        }
    }
}

/// What the shard `ext` knows of `ver` (None: unknown, or the module is off).
pub fn features(ext: &Extensions, ver: &str) -> Option<Rc<CapsInfo>> {
    ext.get::<CapsState>()?.cache.get(ver).cloned()
}

/// Runs `handler` on this shard each time a `ver` becomes known here (MongooseIM's
/// `caps_recognised`); register it on every shard, in a module's `start`.
pub fn on_learned(
    ext: &mut Extensions,
    priority: i32,
    module: &'static str,
    handler: impl Fn(&mut CapsLearned, &mut HookCtx<'_>) -> HookResult + 'static,
) {
    ext.get_or_default::<CapsState>()
        .learned
        .add(priority, module, handler);
}

/// Starts caps on `shard`; `clustered`: other nodes serve the same domains (their users' caps
/// are learned here from their presences, like contacts' of other servers).
pub fn start(shard: &mut Shard, opts: CapsOptions, clustered: bool) {
    let served = (!clustered).then(|| shard.served());
    let state = shard.ext.get_or_default::<CapsState>();
    // Callbacks registered before caps started stay.
    let learned = std::mem::replace(&mut state.learned, Hook::new("caps_learned"));
    *state = CapsState::new(opts);
    state.learned = learned;
    state.shards = shard.shards;
    state.served = served;
    shard
        .hooks
        .user_send_presence
        .add(60, NAME, user_send_presence);
    shard
        .hooks
        .user_receive_presence
        .add(60, NAME, user_receive_presence);
    shard
        .sm
        .add_home_handler(NAME, std::rc::Rc::new(to_offline_user));
}

/// Home handler: a remote contact's available presence to a user with no session reaches no
/// `user_receive_presence`, yet PEP owes the contact the offline owner's last items once it knows
/// what the contact wants (XEP-0163 §4.3.2): its caps are learned here. With sessions, their
/// shards' `user_receive_presence` asks.
fn to_offline_user(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    if acc.kind() != crate::xml::StanzaKind::Presence
        || acc.ty() != StanzaType::Absent
        || !shard.sm.resources(&acc.to.bare()).is_empty()
    {
        return Some(acc);
    }
    let remote = shard.ext.get::<CapsState>().is_some_and(|state| {
        state
            .served
            .as_ref()
            .is_some_and(|s| !s.contains(acc.from.domain()))
    });
    if remote {
        let from = acc.to.domain().to_owned();
        let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
        ask_if_unknown(&acc, from, &mut ctx);
    }
    Some(acc)
}

/// The server's caps as a stream feature, for the disco#info `features` of the server.
pub fn stream_feature(features: &[String]) -> Vec<u8> {
    let el = Element::new("c", ver::NS_CAPS)
        .with_attr("hash", "sha-1")
        .with_attr("node", SERVER_NODE)
        .with_attr("ver", server_ver(features));
    let mut out = Vec::new();
    el.write_to(&mut out);
    out
}

/// The `ver` (sha-1) of the server's disco#info: identity `server/im/petrel` and `features`.
pub fn server_ver(features: &[String]) -> String {
    let info = CapsInfo {
        identities: vec![Identity {
            category: "server".into(),
            type_: "im".into(),
            lang: String::new(),
            name: "petrel".into(),
        }],
        features: features.iter().cloned().collect(),
        forms: Vec::new(),
    };
    // sha-1 is one of the functions `ver::hash` computes.
    ver::ver(&info, "sha-1").unwrap_or_default()
}

/// The shard that decides whether `ver` is asked about.
fn home_of(ver: &str, shards: usize) -> ShardId {
    crate::shard::home_shard_of(ver, shards)
}

/// One query to make: who, about what, from which of our domains, for which shard.
struct Ask {
    caps: CapsRef,
    jid: FullJid,
    /// The domain the query comes from: the client's own, or (for a contact on another server)
    /// the domain of the local user its presence reached.
    from: String,
    /// The shard the query leaves from (where the answer arrives).
    at: ShardId,
}

/// A local client's available presence.
fn user_send_presence(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let from = acc.from.domain().to_owned();
    ask_if_unknown(acc, from, ctx);
    HookResult::Continue
}

/// An available presence on its way to a local session: a contact on another server has its
/// caps learned too, or PEP would never notify it (`+notify`, XEP-0163 §4) unless a local client
/// happened to share its `ver`. A local sender's presence is skipped unparsed: its `ver` was
/// asked about when it was sent.
fn user_receive_presence(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let local = ctx.ext.get::<CapsState>().is_none_or(|state| {
        state
            .served
            .as_ref()
            .is_some_and(|s| s.contains(acc.from.domain()))
    });
    if local {
        return HookResult::Continue;
    }
    let from = acc.to.domain().to_owned();
    ask_if_unknown(acc, from, ctx);
    HookResult::Continue
}

/// Claims the query of `acc`'s caps on the `ver`'s home shard when the `ver` is unknown here.
fn ask_if_unknown(acc: &Acc, from: String, ctx: &mut HookCtx<'_>) {
    if acc.ty() != StanzaType::Absent {
        return;
    }
    let Some(caps) = parse(&acc.stanza) else {
        return;
    };
    if !ver::hash_supported(&caps.hash) {
        return;
    }
    let Some(state) = ctx.ext.get::<CapsState>() else {
        return;
    };
    if state.cache.get(&caps.ver).is_some() {
        return;
    }
    let shards = state.shards;
    let Ok(jid) = acc.from.clone().try_into_full() else {
        return;
    };
    let ask = Ask {
        caps,
        jid,
        from,
        at: ctx.shard,
    };
    ctx.run_on(
        home_of(&ask.caps.ver, shards),
        Box::new(move |s| claim(s, ask)),
    );
}

/// On the `ver`'s home shard: lets the query go out unless it is known, under way or failed.
fn claim(s: &mut Shard, ask: Ask) {
    let now = crate::hooks::clock::now();
    let Some(state) = s.ext.get_mut::<CapsState>() else {
        return;
    };
    if let Some(info) = state.cache.get(&ask.caps.ver) {
        // Known here but not on the asking shard (evicted there): hand it over.
        let info = CapsInfo::clone(info);
        let ver = ask.caps.ver;
        s.send_to_shard(
            ask.at,
            ShardMsg::Run(Box::new(move |s| learn(s, ver, info))),
        );
        return;
    }
    match state
        .claims
        .claim(&ask.caps.ver, ask.jid.bare().as_str(), now)
    {
        Claim::Granted => s.send_to_shard(ask.at, ShardMsg::Run(Box::new(move |s| query(s, ask)))),
        outcome => tracing::debug!(ver = ask.caps.ver, ?outcome, "caps not asked"),
    }
}

/// On the client's shard: sends the disco#info query.
fn query(s: &mut Shard, ask: Ask) {
    let node = format!("{}#{}", ask.caps.node, ask.caps.ver);
    let payload = Element::new("query", ns::DISCO_INFO).with_attr("node", node);
    let from = match crate::jid::BareJid::domain_only(&ask.from) {
        Ok(d) => Jid::from(d),
        Err(_) => return settle(s, &ask.caps.ver, None),
    };
    let to = Jid::from(ask.jid.clone());
    let ver = ask.caps.ver.clone();
    let sent = s.send_iq(
        "get",
        payload,
        from,
        to,
        QUERY_TIMEOUT,
        Box::new(move |s, answer| answered(s, ask, answer)),
    );
    if sent.is_err() {
        // This shard waits for too many answers: give the claim back, someone may ask later.
        settle(s, &ver, None);
    }
}

/// On the client's shard: the answer (or its absence) to the query.
fn answered(s: &mut Shard, ask: Ask, answer: IqAnswer) {
    let verified = match &answer {
        IqAnswer::Result(acc) => check(acc, &ask.caps),
        IqAnswer::Error(_) => Err("an error".to_owned()),
        IqAnswer::Timeout => Err("no answer".to_owned()),
    };
    match verified {
        Ok(info) => {
            for i in 0..s.shards {
                let (ver, info) = (ask.caps.ver.clone(), info.clone());
                s.send_to_shard(
                    ShardId(i as u16),
                    ShardMsg::Run(Box::new(move |s| learn(s, ver, info))),
                );
            }
        }
        Err(why) => {
            tracing::info!(
                jid = ask.jid.as_str(),
                ver = ask.caps.ver,
                why,
                "caps not verified"
            );
            settle(s, &ask.caps.ver, Some(ask.jid.bare()));
        }
    }
}

/// Reads and verifies a disco#info result.
fn check(acc: &Acc, caps: &CapsRef) -> Result<CapsInfo, String> {
    let iq = acc.stanza.tree().map_err(|e| e.to_string())?;
    let query = iq
        .get_child("query", ns::DISCO_INFO)
        .ok_or("no disco#info query")?;
    let info = ver::verify(query, caps).map_err(|e| e.to_string())?;
    if info.weight() > MAX_INFO_BYTES {
        return Err("too big".to_owned());
    }
    Ok(info)
}

/// Tells the `ver`'s home shard the query is over without a result (`failed`: a client of that
/// account failed it, see [`cache::FAILING_ACCOUNTS`]).
fn settle(s: &mut Shard, ver: &str, failed: Option<crate::jid::BareJid>) {
    let ver = ver.to_owned();
    let home = home_of(&ver, s.shards);
    s.send_to_shard(
        home,
        ShardMsg::Run(Box::new(move |s| {
            let now = crate::hooks::clock::now();
            if let Some(state) = s.ext.get_mut::<CapsState>() {
                if let Some(account) = failed {
                    state.claims.failed(&ver, account.as_str(), now);
                } else {
                    state.claims.done(&ver);
                }
            }
        })),
    );
}

/// On every shard: `ver` is verified; cache it and tell the `caps_learned` callbacks.
fn learn(s: &mut Shard, ver: String, info: CapsInfo) {
    let Some(state) = s.ext.get_mut::<CapsState>() else {
        return;
    };
    state.claims.done(&ver);
    let info = Rc::new(info);
    state.cache.insert(ver.clone(), info.clone());
    // Taken out while it runs: the callbacks get the shard's `ext` through their context.
    let hook = std::mem::replace(&mut state.learned, Hook::new("caps_learned"));
    let mut arg = CapsLearned { ver, info };
    {
        let mut ctx = HookCtx::new(s.id, &mut s.fx, &mut s.ext);
        hook.run(&mut arg, &mut ctx);
    }
    if let Some(state) = s.ext.get_mut::<CapsState>() {
        state.learned = hook;
    }
}
