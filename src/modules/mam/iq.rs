//! The IQ handlers of `urn:xmpp:mam:2`: queries, the query form, archive metadata and preferences.
//! Store work runs on the pool; its job routes the result messages, then the IQ result.

use std::rc::Rc;

use super::query::{self, Query};
pub use super::results::RealJids;
use super::{form, id, ns, prefs_iq, results, MamOptions};
use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::Jid;
use crate::local::{result_reply, IqReply};
use crate::shard::{Shard, ShardId};
use crate::store::{MamFilter, Store};
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// Registers the account handler of `urn:xmpp:mam:2` (IQs to a user's own bare JID) on `hosts`.
pub fn register(shard: &mut Shard, hosts: &[String], opts: &MamOptions) {
    for host in hosts {
        let opts = opts.clone();
        shard.iq.register_account(
            host,
            ns::MAM,
            Rc::new(move |acc, payload, ctx| user_iq(acc, payload, ctx, &opts)),
        );
    }
}

/// Registers the room archive handler on MUC service domains: the MUC service hands it the IQs
/// in `urn:xmpp:mam:2` to a room's bare JID once it checked the requester may read the room
/// (`muc::home::extension_iq`); results come from the room.
pub fn register_rooms(shard: &mut Shard, services: &[String], opts: &MamOptions) {
    for service in services {
        let opts = opts.clone();
        shard.iq.register_account(
            service,
            ns::MAM,
            Rc::new(move |acc, payload, ctx| {
                // The room said whether the requester may see its occupants' real JIDs now.
                let shown = acc.get(crate::hooks::ROOM_REAL_JIDS_SHOWN).is_some();
                let real_jids = if shown {
                    RealJids::Keep
                } else {
                    RealJids::Strip
                };
                query_archive(acc.to.bare_str(), acc, payload, ctx, &opts, real_jids)
            }),
        );
        // Every room advertises its archive and the stanza ids it stamps (XEP-0313 §7, XEP-0359
        // §3.5): clients ignore both otherwise.
        for f in [ns::MAM, ns::MAM_EXTENDED, ns::SID] {
            crate::modules::disco::add_account_feature(&mut shard.ext, service, f);
        }
    }
}

/// A user's own archive: only its owner may read it or set its preferences.
fn user_iq(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>, opts: &MamOptions) -> IqReply {
    if acc.from.bare_str() != acc.to.bare_str() {
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    let owner = acc.to.bare_str();
    match payload.name.as_str() {
        "prefs" => prefs_iq::handle(owner, acc, payload, ctx),
        _ => query_archive(owner, acc, payload, ctx, opts, RealJids::Keep),
    }
}

/// Answers a read of `owner`'s archive (a user's or a room's bare JID; the caller checked that
/// the requester may read it): `<query/>` get (the form), `<query/>` set (a page: result messages
/// from `owner` to the requester, then the IQ result with `<fin/>`) and `<metadata/>` get.
pub fn query_archive(
    owner: &str,
    acc: &Acc,
    payload: &Element,
    ctx: &mut HookCtx<'_>,
    opts: &MamOptions,
    real_jids: RealJids,
) -> IqReply {
    let get = acc.ty() == StanzaType::Get;
    match (payload.name.as_str(), get) {
        ("query", true) => IqReply::Result(Some(form::blank())),
        ("query", false) => match Query::parse(payload, opts) {
            Ok(q) => {
                let (req, on, owner) = (acc.fork(), ctx.shard, owner.to_owned());
                ctx.store(Some(super::STORE_KEY), move |store| {
                    page_job(store, &owner, &q, &req, on, real_jids)
                });
                IqReply::NoReply
            }
            Err(e) => IqReply::Error(e.condition()),
        },
        ("metadata", true) => {
            let (req, on, owner) = (acc.fork(), ctx.shard, owner.to_owned());
            ctx.store(Some(super::STORE_KEY), move |store| {
                let reply = match metadata(store, &owner) {
                    Some(el) => Some(result_reply(&req, Some(el), on)),
                    None => req.error_reply(StanzaErrorCondition::InternalServerError, on),
                };
                JobDone::from(reply.into_iter().collect::<Vec<_>>())
            });
            IqReply::NoReply
        }
        ("metadata", false) => IqReply::Error(StanzaErrorCondition::BadRequest),
        _ => IqReply::Error(StanzaErrorCondition::FeatureNotImplemented),
    }
}

/// One page of `q`: the result messages, then the IQ result (or only an error).
fn page_job(
    store: &Store,
    owner: &str,
    q: &Query,
    req: &Acc,
    on: ShardId,
    real_jids: RealJids,
) -> JobDone {
    let error = |c| JobDone::from(req.error_reply(c, on).into_iter().collect::<Vec<_>>());
    let Ok(from) = Jid::parse(owner) else {
        return error(StanzaErrorCondition::InternalServerError);
    };
    let page = match query::run(store, owner, q) {
        Ok(page) => page,
        Err(e) => return error(e.condition()),
    };
    let mut route = Vec::with_capacity(page.rows.len() + 1);
    for row in &page.rows {
        match results::message(
            row,
            q.queryid.as_deref(),
            owner,
            req.from.as_str(),
            real_jids,
        ) {
            Ok(el) => {
                let mut acc = Acc::new(
                    Stanza::from_element(&el),
                    from.clone(),
                    req.from.clone(),
                    on,
                );
                // The querying session's: not re-routed to another resource if it is gone.
                acc.put(crate::hooks::COPY_FOR, crate::hooks::CopyFor::SessionOnly);
                route.push(acc)
            }
            // A damaged row is left out rather than failing the whole page.
            Err(e) => {
                tracing::error!(error = %e, owner, id = row.id, "mam: stored message unreadable")
            }
        }
    }
    route.push(result_reply(req, Some(results::fin(&page)), on));
    JobDone::from(route)
}

/// `<metadata/>` (XEP-0313 §5): the first and last item of the archive; empty when it has none.
/// `None` when the store failed.
fn metadata(store: &Store, owner: &str) -> Option<Element> {
    let all = MamFilter::default();
    let first = store.mam_query(owner, &all, 1, false).ok()?;
    let last = store.mam_query(owner, &all, 1, true).ok()?;
    let mut el = Element::new("metadata", ns::MAM);
    for (name, row) in [("start", first.first()), ("end", last.first())] {
        if let Some(row) = row {
            el = el.with_child(
                Element::new(name, ns::MAM)
                    .with_attr("id", id::encode(row.id))
                    .with_attr("timestamp", results::stamp(row.ts)),
            );
        }
    }
    Some(el)
}

#[cfg(test)]
#[path = "iq_tests.rs"]
mod tests;
