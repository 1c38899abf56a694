//! `mod_last`: last activity (XEP-0012).
//!
//! - IQ to the server: its uptime (seconds since this shard started its modules).
//! - IQ to an account's bare JID: `0` while the account has an available resource, else the seconds
//!   since its last resource went unavailable, with the status text of its unavailable presence;
//!   `item-not-found` when no logout was ever recorded. Records are written by store jobs from
//!   `user_available` / `unset_presence` (home shard) and `user_send_presence` (the status text).
//!
//! Who may ask about an account: the account itself (see `disco::may_see_account`) and contacts
//! with a `from` or `both` subscription (XEP-0012 §4: whoever may see the presence), read from the
//! stored roster with the answer. Others get `forbidden`.

use std::rc::Rc;
use std::time::Instant;

use crate::hooks::{Acc, HookCtx, HookResult, JobDone, SessionEvent};
use crate::jid::BareJid;
use crate::local::IqReply;
use crate::shard::Shard;
use crate::store::{unix_now, LastActivity};
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// `jabber:iq:last`.
pub const NS: &str = "jabber:iq:last";

/// Store-job ordering key of an account (jobs on one account run in order).
pub fn job_key(bare: &BareJid) -> u64 {
    // Fixed seeds: the same account maps to the same pool queue from every shard.
    ahash::RandomState::with_seeds(0x6c61, 0x7374, 0x6163, 0x7469).hash_one(bare.as_str())
}

/// Present in a shard's extensions while this module runs: its logout records are current (a
/// record left from a run with the module on would be stale for other readers).
pub struct Recording;

/// Registers the handlers on every host.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    shard.ext.insert(Recording);
    let started = Instant::now();
    for host in hosts {
        shard.iq.register_server(
            host,
            NS,
            Rc::new(move |acc, _, _| {
                if acc.ty() != StanzaType::Get {
                    return IqReply::Error(StanzaErrorCondition::BadRequest);
                }
                let up = started.elapsed().as_secs();
                IqReply::Result(Some(
                    Element::new("query", NS).with_attr("seconds", up.to_string()),
                ))
            }),
        );
        shard
            .iq
            .register_account(host, NS, Rc::new(|acc, _, ctx| account_query(acc, ctx)));
        super::disco::add_account_feature(&mut shard.ext, host, NS);
    }
    shard.hooks.user_available.add(
        50,
        "last",
        |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            let jid = ev.jid.clone();
            ctx.store(Some(job_key(&jid.bare())), move |store| {
                if let Err(e) = store.last_available(&jid) {
                    tracing::warn!(%jid, error = %e, "last: cannot record availability");
                }
                JobDone::default()
            });
            HookResult::Continue
        },
    );
    shard.hooks.unset_presence.add(
        50,
        "last",
        |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            let jid = ev.jid.clone();
            let at = unix_now();
            ctx.store(Some(job_key(&jid.bare())), move |store| {
                if let Err(e) = store.last_unavailable(&jid, at) {
                    tracing::warn!(%jid, error = %e, "last: cannot record logout");
                }
                JobDone::default()
            });
            HookResult::Continue
        },
    );
    shard
        .hooks
        .user_send_presence
        .add(50, "last", |acc: &mut Acc, ctx: &mut HookCtx<'_>| {
            // Only the presence that ends availability (no `to`: the c2s put the sender's bare JID).
            if acc.ty() == StanzaType::Unavailable && acc.stanza.to().is_none() {
                let status = status_text(&acc.stanza);
                let bare = acc.from.bare();
                let at = unix_now();
                ctx.store(Some(job_key(&bare)), move |store| {
                    if let Err(e) = store.last_status(&bare, at, &status) {
                        tracing::warn!(%bare, error = %e, "last: cannot record status");
                    }
                    JobDone::default()
                });
            }
            HookResult::Continue
        });
}

fn status_text(stanza: &Stanza) -> String {
    stanza
        .tree()
        .ok()
        .and_then(|el| el.get_child("status", ns::CLIENT).map(|s| s.text()))
        .unwrap_or_default()
}

fn account_query(acc: &Acc, ctx: &mut HookCtx<'_>) -> IqReply {
    if acc.ty() != StanzaType::Get {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    let bare = acc.to.bare();
    // The account itself, or a contact the account shares its presence with: XEP-0012 §4 lets
    // whoever may see the presence see when it ended. Others: forbidden.
    let key = Some(job_key(&bare));
    let refused = StanzaErrorCondition::Forbidden;
    super::disco::answer_if_shared(acc, ctx, key, refused, move |store| {
        match store.last_activity(&bare) {
            Ok(LastActivity::Online) => Ok(query(0, "")),
            Ok(LastActivity::Offline { at, status }) => {
                Ok(query((unix_now() - at).max(0) as u64, &status))
            }
            Ok(LastActivity::Never) => Err(StanzaErrorCondition::ItemNotFound),
            Err(e) => {
                tracing::warn!(%bare, error = %e, "last: cannot read last activity");
                Err(StanzaErrorCondition::InternalServerError)
            }
        }
    })
}

fn query(seconds: u64, status: &str) -> Element {
    let q = Element::new("query", NS).with_attr("seconds", seconds.to_string());
    if status.is_empty() {
        q
    } else {
        q.with_text(status)
    }
}
