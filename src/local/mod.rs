//! Steps 4 and 5 of the seed: `mongoose_local_delivery` then `ejabberd_local`.
//!
//! `deliver` runs `filter_local_packet`, then the packet handler of the local route: stanzas addressed
//! to the server (or a server-side service) go to the IQ handler registry; stanzas addressed to a user
//! go to the session manager (`sm::route`). IQs to a user's bare JID are answered by the server on the
//! user's behalf (RFC 6121 §8.5.1), from the account IQ registry.

mod iq;
mod pending;

pub use iq::{result_reply, IqHandler, IqHandlers, IqReply};
pub use pending::{IqAnswer, IqCallback, PendingFull, PendingIqs, MAX_PENDING};

use crate::explain::Outcome;
use crate::hooks::{Acc, HookCtx, HookResult};
use crate::shard::Shard;
use crate::xml::StanzaKind;
use crate::xmpp::StanzaErrorCondition;

/// The packet handler of a service registered as a local route ([`Shard::register_route`]): it
/// takes every stanza addressed to the service's domain (or a JID under it).
pub type PacketHandler = std::rc::Rc<dyn Fn(&mut Shard, Acc)>;

/// `mongoose_local_delivery:do_route`: `filter_local_packet`, then the packet handler: the
/// service's for a service domain, `ejabberd_local`'s otherwise.
pub fn deliver(shard: &mut Shard, mut acc: Acc) {
    if shard.run_hook(|h| &h.filter_local_packet, &mut acc) == HookResult::Stop {
        return;
    }
    // The answer to an IQ the server or a service sent (`Shard::send_iq`) goes to its callback.
    let Some(mut acc) = pending::answer(shard, acc) else {
        return;
    };
    match shard.service(acc.to.domain()) {
        Some(handler) => {
            acc.note(shard.id, STAGE, Outcome::Took, |a| {
                Some(format!("packet handler of the service {}", a.to.domain()))
            });
            handler(shard, acc)
        }
        None => process_packet(shard, acc),
    }
}

/// `ejabberd_local:process_packet`: server-addressed vs user-addressed.
pub fn process_packet(shard: &mut Shard, mut acc: Acc) {
    if acc.to.node().is_none() {
        acc.note(shard.id, STAGE, Outcome::Took, |_| {
            Some("addressed to the server".to_owned())
        });
        process_server_packet(shard, acc);
    } else if acc.kind() == StanzaKind::Iq && acc.to.is_bare() {
        account_iq(shard, acc);
    } else {
        acc.note(shard.id, STAGE, Outcome::Pass, |_| {
            Some("addressed to a user: session manager".to_owned())
        });
        crate::sm::route(shard, acc);
    }
}

/// An IQ to an account's bare JID, answered by the server for the account. One from someone else
/// is answered on the account's home shard once the home filters let it pass (a blocked sender
/// gets `service-unavailable` there, XEP-0191 §3.4, wherever it sent from); one from the account
/// itself (its roster, vCard, PEP nodes) is answered here.
fn account_iq(shard: &mut Shard, mut acc: Acc) {
    let own = acc.from.bare_str() == acc.to.bare_str();
    let home = crate::shard::home_shard_of(acc.to.bare_str(), shard.shards);
    if !own && acc.ty().is_request() {
        if home != shard.id {
            acc.note(shard.id, STAGE, Outcome::Pass, |_| {
                Some("IQ to an account from another entity: to its home shard".to_owned())
            });
            let run = move |shard: &mut Shard| account_iq(shard, acc);
            return crate::sm::run_on(shard, home, Box::new(run));
        }
        let Some(passed) = crate::sm::filter_at_home(shard, acc) else {
            return;
        };
        acc = passed;
    }
    acc.note(shard.id, STAGE, Outcome::Took, |_| {
        Some("IQ to an account, answered by the server".to_owned())
    });
    process_iq(shard, acc, IqTarget::Account);
}

/// Stage name of local delivery's steps in a `route explain` trace.
pub const STAGE: &str = "local";

/// Which IQ registry answers.
#[derive(Clone, Copy)]
enum IqTarget {
    Server,
    Account,
}

fn process_server_packet(shard: &mut Shard, acc: Acc) {
    match acc.kind() {
        StanzaKind::Iq => process_iq(shard, acc, IqTarget::Server),
        // Messages and presences to the server itself have no handler yet (presence probes and
        // server-addressed messages come with the presence and MUC work): dropped, as ejabberd_local does.
        _ => {
            let mut acc = acc;
            acc.note(shard.id, STAGE, Outcome::Dropped, |_| {
                Some("no handler for messages and presences to the server".to_owned())
            });
            tracing::debug!(to = acc.to.as_str(), "stanza to the server dropped")
        }
    }
}

fn process_iq(shard: &mut Shard, acc: Acc, target: IqTarget) {
    let ty = acc.ty();
    if ty.is_response() {
        // Not an answer `pending::answer` took in `deliver`: nothing waits for it.
        pending::drop_answer(shard, acc);
        return;
    }
    if !ty.is_request() {
        shard.bounce(&acc, StanzaErrorCondition::BadRequest);
        return;
    }
    // RFC 6120 §8.2.3: an IQ get/set carries exactly one payload element.
    let Some(payload) = iq_payload(&acc) else {
        shard.bounce(&acc, StanzaErrorCondition::BadRequest);
        return;
    };
    // A domain added at run time shares the handlers of its template host (a configured one).
    let domain = acc.to.domain();
    let host = if shard.hosts.contains(domain) || !shard.dynamic_hosts.contains(domain) {
        std::borrow::Cow::Borrowed(domain)
    } else {
        std::borrow::Cow::Owned(shard.dynamic_hosts.template())
    };
    let handler = match target {
        IqTarget::Server => shard.iq.server(&host, &payload.ns),
        IqTarget::Account => shard.iq.account(&host, &payload.ns),
    };
    let Some(handler) = handler else {
        shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable);
        return;
    };
    let mut acc = acc;
    acc.note(shard.id, STAGE, Outcome::Took, |_| {
        Some(format!("IQ handler for {}", payload.ns))
    });
    answer_iq(shard, acc, &handler, &payload);
}

/// The single child element of an IQ get/set (RFC 6120 §8.2.3), or `None` when it has none, more
/// than one, or does not parse (the caller answers `bad-request`).
pub fn iq_payload(acc: &Acc) -> Option<crate::xml::Element> {
    let el = acc.stanza.tree().ok()?;
    let mut children = el.child_elements();
    match (children.next(), children.next()) {
        (Some(child), None) => Some(child.clone()),
        _ => None,
    }
}

/// The payload of an IQ get/set to a service's own domain (MUC, upload): results and errors are
/// dropped, messages bounced with `service-unavailable`, other presences ignored, and an IQ
/// without a single payload bounced with `bad-request`; `None` in all those cases.
pub fn service_iq(shard: &mut Shard, acc: &Acc) -> Option<crate::xml::Element> {
    let ty = acc.ty();
    if ty.is_response() {
        return None;
    }
    if acc.kind() != StanzaKind::Iq {
        if acc.kind() == StanzaKind::Message {
            shard.bounce(acc, StanzaErrorCondition::ServiceUnavailable);
        }
        return None;
    }
    let payload = iq_payload(acc);
    if payload.is_none() {
        shard.bounce(acc, StanzaErrorCondition::BadRequest);
    }
    payload
}

/// Runs an IQ handler on `acc` (a get or set with the single child `payload`) and routes its
/// answer: the result, the error, or nothing when the handler answers later itself.
pub fn answer_iq(shard: &mut Shard, acc: Acc, handler: &IqHandler, payload: &crate::xml::Element) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    let reply = handler(&acc, payload, &mut ctx);
    match reply {
        IqReply::Result(body) => {
            let reply = iq::result_reply(&acc, body, shard.id);
            shard.fx.to_route.push(reply);
        }
        IqReply::Error(cond) => shard.bounce(&acc, cond),
        IqReply::ErrorWithoutPayload(cond) => {
            if let Some(reply) = acc.error_reply_without_payload(cond, shard.id) {
                shard.fx.to_route.push(reply);
            }
        }
        IqReply::NotYours(cond) => {
            // The store says whether the account exists (an error path: one look-up is cheap).
            let (owner, on) = (acc.to.bare(), shard.id);
            HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(None, move |store| {
                let cond = match store.user_exists(&owner) {
                    Ok(false) => StanzaErrorCondition::ServiceUnavailable,
                    Ok(true) => cond,
                    Err(e) => {
                        tracing::warn!(%owner, error = %e, "cannot tell whether an account exists");
                        cond
                    }
                };
                acc.error_reply(cond, on)
                    .into_iter()
                    .collect::<Vec<_>>()
                    .into()
            });
        }
        IqReply::NoReply => {
            let mut acc = acc;
            acc.note(shard.id, STAGE, Outcome::Took, |_| {
                Some("the IQ handler answers later".to_owned())
            });
        }
    }
}
