//! `mod_private`: private XML storage (XEP-0049). A user stores and reads namespaced fragments on
//! their own account; the per-user total is bounded by `max_bytes` (all fragments of a set are
//! stored, or none).

use crate::xml::StanzaType;
use std::rc::Rc;

use crate::hooks::{Acc, Events, HookCtx, JobDone};
use crate::jid::BareJid;
use crate::local::result_reply;
use crate::local::{IqHandler, IqReply};
use crate::modules::offline::user_key;
use crate::modules::options::{self, OptionError};
use crate::shard::{Shard, ShardId};
use crate::store::{PrivateSet, Store};
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StanzaErrorCondition};

/// The private storage namespace.
pub const NS: &str = "jabber:iq:private";
/// Features this module adds to the server's disco#info (none: XEP-0049 defines no feature there).
pub const FEATURES: &[&str] = &[];

/// Namespaces a fragment may not use (XEP-0049 §3).
const REFUSED: [&str; 3] = [ns::CLIENT, "jabber:server", NS];

/// `[modules.private]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Bytes of stored fragments per user.
    pub max_bytes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_bytes: 65_536 }
    }
}

impl Options {
    /// Reads and checks `[modules.private]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new("private", Some(table));
        o.only(&["max_bytes"])?;
        Ok(Options {
            max_bytes: o.positive_u32("max_bytes", Options::default().max_bytes)?,
        })
    }
}

/// Registers the account IQ handler on every host.
pub fn start(shard: &mut Shard, hosts: &[String], opts: &Options) {
    let max = u64::from(opts.max_bytes);
    shard.ext.insert(Allowance(max));
    let handler: IqHandler = Rc::new(move |acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>| {
        handle(acc, payload, ctx, max)
    });
    for host in hosts {
        shard.iq.register_account(host, NS, handler.clone());
    }
}

/// What a request asks for, checked on the shard before any store work.
enum Request {
    Get(Element),
    Set(Vec<(String, Vec<u8>)>, Vec<Element>),
}

/// Emitted (see [`crate::hooks::Events`]) on the shard that answered, after a user's own set
/// committed (`private_stored`): modules that mirror a fragment elsewhere listen (bookmarks).
#[derive(Debug)]
pub struct PrivateStored {
    /// The account.
    pub owner: BareJid,
    /// The fragments stored, one per namespace.
    pub fragments: Vec<Element>,
    /// The result to the user's set.
    pub answer: crate::hooks::Answer,
}

fn parse(ty: StanzaType, payload: &Element) -> Result<Request, StanzaErrorCondition> {
    if payload.name != "query" {
        return Err(StanzaErrorCondition::BadRequest);
    }
    let children: Vec<&Element> = payload.child_elements().collect();
    if children.iter().any(|c| REFUSED.contains(&c.ns.as_str())) {
        return Err(StanzaErrorCondition::NotAcceptable);
    }
    match (ty, children.as_slice()) {
        (StanzaType::Get, [one]) => Ok(Request::Get((*one).clone())),
        // XEP-0049 §2.3: a query without child element MUST be "Not Acceptable"; the error
        // table (§3) names "Bad Format" (bad-request) for an empty get alone.
        (StanzaType::Set, []) => Err(StanzaErrorCondition::NotAcceptable),
        (StanzaType::Set, many) => Ok(Request::Set(
            by_namespace(many),
            many.iter().map(|c| (*c).clone()).collect(),
        )),
        _ => Err(StanzaErrorCondition::BadRequest),
    }
}

/// A fragment as stored: its namespace and its bytes.
fn serialize(frag: &Element) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    frag.write_to(&mut out);
    (frag.ns.clone(), out)
}

/// The fragments of a set, one row per namespace: XEP-0049 §2.3 lets a set carry several elements
/// of one namespace, and they are that namespace's data together (each replaced the one before it,
/// losing all but the last).
fn by_namespace(elements: &[&Element]) -> Vec<(String, Vec<u8>)> {
    let mut rows: Vec<(String, Vec<u8>)> = Vec::new();
    for el in elements {
        let (ns, bytes) = serialize(el);
        match rows.iter_mut().find(|(n, _)| *n == ns) {
            Some((_, stored)) => stored.extend_from_slice(&bytes),
            None => rows.push((ns, bytes)),
        }
    }
    rows
}

/// The elements of a stored row (one, or several of the same namespace written one after the
/// other).
fn stored_elements(bytes: Vec<u8>) -> Result<Vec<Element>, crate::xml::XmlError> {
    let mut wrapped = Vec::with_capacity(bytes.len() + 48);
    wrapped.extend_from_slice(b"<query xmlns='jabber:iq:private'>");
    wrapped.extend_from_slice(&bytes);
    wrapped.extend_from_slice(b"</query>");
    let query = Stanza::parse(wrapped)?.tree()?;
    Ok(query.child_elements().cloned().collect())
}

/// Rewrites `owner`'s fragment in namespace `ns` on the server's behalf (a module mirroring data
/// into private storage): `edit` gets the stored fragment (`None`: none yet) and returns the new
/// one (`None`: leave it). A store job keyed by the owner, so it runs in order with the owner's own
/// requests; no `private_stored` event. Refused (logged) past the owner's allowance. Returns false
/// when private storage is not enabled.
pub fn update_as_server(
    ctx: &mut HookCtx<'_>,
    owner: BareJid,
    ns: &'static str,
    edit: impl FnOnce(Option<Element>) -> Option<Element> + Send + 'static,
) -> bool {
    let Some(&Allowance(max)) = ctx.ext.get::<Allowance>() else {
        return false;
    };
    ctx.store(Some(user_key(&owner)), move |store| {
        let old = match store.private_get(&owner, ns) {
            Ok(found) => found
                .and_then(|b| stored_elements(b).ok())
                .and_then(|els| els.into_iter().next()),
            Err(e) => {
                tracing::error!(error = %e, "private: read for a mirrored update failed");
                return JobDone::default();
            }
        };
        let Some(new) = edit(old) else {
            return JobDone::default();
        };
        let frag = serialize(&new);
        match store.private_set(&owner, std::slice::from_ref(&frag), max) {
            Ok(PrivateSet::Stored) => {}
            Ok(PrivateSet::TooLarge) => {
                tracing::warn!(
                    user = owner.as_str(),
                    ns,
                    "private: mirrored fragment over the allowance"
                )
            }
            Err(e) => tracing::error!(error = %e, "private: mirrored set failed"),
        }
        JobDone::default()
    });
    true
}

/// `max_bytes` of the running module, for [`store_as_server`].
struct Allowance(u64);

fn handle(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>, max: u64) -> IqReply {
    let user = acc.to.bare();
    if acc.from.bare() != user {
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    let req = match parse(acc.ty(), payload) {
        Ok(r) => r,
        Err(c) => return IqReply::Error(c),
    };
    if let Request::Set(frags, _) = &req {
        // A set larger than the whole allowance cannot fit: refused without a store round trip.
        if frags.iter().map(|(_, x)| x.len() as u64).sum::<u64>() > max {
            return IqReply::Error(StanzaErrorCondition::NotAcceptable);
        }
    }
    let (req_acc, on) = (acc.fork(), ctx.shard);
    ctx.store(Some(user_key(&user)), move |store| {
        job(store, &user, req, &req_acc, on, max)
    });
    IqReply::NoReply
}

fn job(
    store: &Store,
    user: &BareJid,
    req: Request,
    req_acc: &Acc,
    on: ShardId,
    max: u64,
) -> JobDone {
    let answer = |body| JobDone::from(vec![result_reply(req_acc, body, on)]);
    let error = |c| JobDone::from(req_acc.error_reply(c, on).into_iter().collect::<Vec<_>>());
    match req {
        Request::Get(asked) => match store.private_get(user, &asked.ns) {
            Ok(found) => {
                let frags = match found.map(stored_elements) {
                    None => vec![asked],
                    Some(Ok(els)) if !els.is_empty() => els,
                    Some(Ok(_)) => vec![asked],
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "private: stored fragment unreadable");
                        return error(StanzaErrorCondition::InternalServerError);
                    }
                };
                let query = frags
                    .into_iter()
                    .fold(Element::new("query", NS), Element::with_child);
                answer(Some(query))
            }
            Err(e) => {
                tracing::error!(error = %e, "private: get failed");
                error(StanzaErrorCondition::InternalServerError)
            }
        },
        Request::Set(frags, elements) => match store.private_set(user, &frags, max) {
            Ok(PrivateSet::Stored) => {
                let event = PrivateStored {
                    owner: user.clone(),
                    fragments: elements,
                    answer: crate::hooks::Answer::new(result_reply(req_acc, None, on)),
                };
                JobDone {
                    then: Some(Box::new(move |shard: &mut Shard| {
                        Events::<PrivateStored>::emit(shard, &event);
                        event.answer.route_untaken(shard);
                    })),
                    ..JobDone::default()
                }
            }
            Ok(PrivateSet::TooLarge) => error(StanzaErrorCondition::NotAcceptable),
            Err(e) => {
                tracing::error!(error = %e, "private: set failed");
                error(StanzaErrorCondition::InternalServerError)
            }
        },
    }
}

#[cfg(test)]
mod tests;
