//! `mod_vcard`: vcard-temp (XEP-0054) as a stored blob. A user sets their own `<vCard/>` (at most
//! `max_bytes` serialized, otherwise `not-acceptable` and nothing stored) and anyone gets a user's
//! vCard from the user's bare JID. A user asking for its own missing vCard gets an empty `<vCard/>`;
//! anyone else asking for a missing vCard gets `service-unavailable`, as for a missing account
//! (XEP-0054 §3.3: no account harvesting).

use std::rc::Rc;

use crate::hooks::{Acc, Events, HookCtx, JobDone};
use crate::jid::BareJid;
use crate::local::result_reply;
use crate::local::{IqHandler, IqReply};
use crate::modules::offline::user_key;
use crate::modules::options::{self, OptionError};
use crate::shard::{Shard, ShardId};
use crate::store::{Store, VcardGet};
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// The vcard-temp namespace.
pub const NS: &str = crate::xmpp::ns::VCARD;
/// Features this module adds to the server's disco#info.
pub const FEATURES: &[&str] = &[NS];

/// `[modules.vcard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Largest serialized `<vCard/>` accepted.
    pub max_bytes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_bytes: 65_536 }
    }
}

impl Options {
    /// Reads and checks `[modules.vcard]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new("vcard", Some(table));
        o.only(&["max_bytes"])?;
        Ok(Options {
            max_bytes: o.positive_u32("max_bytes", Options::default().max_bytes)?,
        })
    }
}

/// Registers the account IQ handler on every host.
pub fn start(shard: &mut Shard, hosts: &[String], opts: &Options) {
    let max = opts.max_bytes as usize;
    let handler: IqHandler = Rc::new(move |acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>| {
        handle(acc, payload, ctx, max)
    });
    for host in hosts {
        shard.iq.register_account(host, NS, handler.clone());
    }
}

/// Emitted (see [`crate::hooks::Events`]) on the shard that answered, after a user's own vCard
/// was stored (`vcard_stored`): the avatar conversion listens.
#[derive(Debug)]
pub struct VcardStored {
    /// The account.
    pub owner: BareJid,
    /// The vCard as the user set it.
    pub vcard: Element,
    /// The result to the user's set.
    pub answer: crate::hooks::Answer,
}

/// Rewrites `owner`'s vCard with `edit` on the server's behalf (a store job keyed by the owner, in
/// order with their own requests; no `vcard_stored` event). Nothing is written for an account that
/// does not exist, or when `edit` returns `None` (nothing to change).
pub fn update_as_server(
    ctx: &mut HookCtx<'_>,
    owner: BareJid,
    edit: impl FnOnce(Element) -> Option<Element> + Send + 'static,
) {
    ctx.store(Some(user_key(&owner)), move |store| {
        let card = match store.vcard_get(&owner) {
            Ok(VcardGet::Found(xml)) => Stanza::parse(xml).and_then(|s| s.tree()).ok(),
            Ok(VcardGet::Empty) => Some(Element::new("vCard", NS)),
            Ok(VcardGet::NoSuchUser) => None,
            Err(e) => {
                tracing::error!(error = %e, "vcard: read for an update failed");
                None
            }
        };
        if let Some(new) = card.and_then(edit) {
            let mut xml = Vec::new();
            new.write_to(&mut xml);
            if let Err(e) = store.vcard_set(&owner, &xml) {
                tracing::error!(error = %e, "vcard: update failed");
            }
        }
        JobDone::default()
    });
}

fn handle(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>, max: usize) -> IqReply {
    if payload.name != "vCard" {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    let owner = acc.to.bare();
    let (req, on) = (acc.fork(), ctx.shard);
    match acc.ty() {
        StanzaType::Get => {
            ctx.store(Some(user_key(&owner)), move |store| {
                get_job(store, &owner, &req, on)
            });
            IqReply::NoReply
        }
        StanzaType::Set => {
            if acc.from.bare() != owner {
                return IqReply::NotYours(StanzaErrorCondition::Forbidden);
            }
            let mut xml = Vec::new();
            payload.write_to(&mut xml);
            if xml.len() > max {
                return IqReply::Error(StanzaErrorCondition::NotAcceptable);
            }
            let card = payload.clone();
            ctx.store(Some(user_key(&owner)), move |store| {
                set_job(store, &owner, &xml, &req, on, card)
            });
            IqReply::NoReply
        }
        _ => IqReply::Error(StanzaErrorCondition::BadRequest),
    }
}

fn error(req: &Acc, cond: StanzaErrorCondition, on: ShardId) -> JobDone {
    JobDone::from(req.error_reply(cond, on).into_iter().collect::<Vec<_>>())
}

fn get_job(store: &Store, owner: &BareJid, req: &Acc, on: ShardId) -> JobDone {
    let card = match store.vcard_get(owner) {
        Ok(VcardGet::Found(xml)) => match Stanza::parse(xml).and_then(|s| s.tree()) {
            Ok(el) => el,
            Err(e) => {
                tracing::error!(error = %e, "vcard: stored vCard unreadable");
                return error(req, StanzaErrorCondition::InternalServerError, on);
            }
        },
        // §3.1: the owner learns it has none. §3.3: anyone else gets the error a missing account
        // gets, so that vCards tell nobody which accounts exist.
        Ok(VcardGet::Empty) if req.from.bare() == *owner => Element::new("vCard", NS),
        Ok(VcardGet::Empty) => return error(req, StanzaErrorCondition::ServiceUnavailable, on),
        Ok(VcardGet::NoSuchUser) => {
            return error(req, StanzaErrorCondition::ServiceUnavailable, on)
        }
        Err(e) => {
            tracing::error!(error = %e, "vcard: get failed");
            return error(req, StanzaErrorCondition::InternalServerError, on);
        }
    };
    JobDone::from(vec![result_reply(req, Some(card), on)])
}

fn set_job(
    store: &Store,
    owner: &BareJid,
    xml: &[u8],
    req: &Acc,
    on: ShardId,
    vcard: Element,
) -> JobDone {
    match store.vcard_set(owner, xml) {
        Ok(()) => {
            let event = VcardStored {
                owner: owner.clone(),
                vcard,
                answer: crate::hooks::Answer::new(result_reply(req, None, on)),
            };
            JobDone {
                then: Some(Box::new(move |shard: &mut Shard| {
                    Events::<VcardStored>::emit(shard, &event);
                    event.answer.route_untaken(shard);
                })),
                ..JobDone::default()
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "vcard: set failed");
            error(req, StanzaErrorCondition::InternalServerError, on)
        }
    }
}

#[cfg(test)]
mod tests;
