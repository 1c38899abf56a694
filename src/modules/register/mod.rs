//! `mod_register`: in-band registration (XEP-0077), off unless `[modules.register]` is configured.
//!
//! - Before authentication the c2s hands `jabber:iq:register` IQs to the driver
//!   (`C2sEvent::PreAuthIq`), which calls [`pre_auth`] and runs the returned job on the store pool:
//!   the SCRAM secrets are derived there (PBKDF2), never on a shard. The c2s only lets them through
//!   on TLS streams (or plaintext loopback streams where the listener allows PLAIN).
//! - After authentication, IQs to the server (or the account's own bare JID) change the password or,
//!   with `<remove/>`, delete the account and close the requesting session.
//!
//! Options: `ip_rate_limit` (registrations per client IP address per minute, default 5; past it
//! `resource-constraint`), `min_password_length` (characters, default 8; shorter -> `not-acceptable`).

pub mod form;

use std::net::IpAddr;
use std::rc::Rc;

use form::{Request, NS};

use super::options::{OptionError, Options};
use crate::auth::ScramSecrets;
use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::BareJid;
use crate::local::IqReply;
use crate::shard::{ConnMsg, Extensions, Shard};
use crate::store::{unix_now, Registered, Store, StoreError};
use crate::xml::{Element, Stanza};
use crate::xmpp::roster::RosterItem;
use crate::xmpp::{StanzaErrorCondition, StreamErrorCondition};

/// Module event: an account was deleted (in-band here, or by the admin API), emitted on the shard
/// that ran the removal once the store has forgotten it; modules drop what they hold of it.
#[derive(Debug, Clone)]
pub struct AccountRemoved {
    /// The deleted account.
    pub jid: BareJid,
    /// Its roster as it was (the presence module cancels the subscriptions).
    pub roster: Vec<RosterItem>,
}

/// Announces that `jid`, whose roster was `roster`, was deleted (see [`AccountRemoved`]).
pub fn account_removed(shard: &mut Shard, jid: BareJid, roster: Vec<RosterItem>) {
    // First: a connection that authenticated before the deletion binds no session after it.
    crate::sm::account_removed(shard, &jid);
    crate::hooks::Events::<AccountRemoved>::emit(shard, &AccountRemoved { jid, roster });
}

/// The rate limit window.
const WINDOW_SECS: i64 = 60;

/// Options of `[modules.register]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Registrations per IP address per minute.
    pub ip_rate_limit: u64,
    /// Shortest password accepted, in characters.
    pub min_password_length: usize,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            ip_rate_limit: 5,
            min_password_length: 8,
        }
    }
}

/// Reads `[modules.register]`.
pub fn options(table: Option<&toml::Table>) -> Result<RegisterOptions, OptionError> {
    let o = Options::new("register", table);
    o.only(&["ip_rate_limit", "min_password_length"])?;
    let d = RegisterOptions::default();
    Ok(RegisterOptions {
        ip_rate_limit: o.uint("ip_rate_limit", d.ip_rate_limit, 1_000_000)?,
        min_password_length: o.uint("min_password_length", d.min_password_length as u64, 1024)?
            as usize,
    })
}

/// The module's settings on a shard (present only when the module is on).
#[derive(Debug, Clone, Copy)]
struct Settings {
    opts: RegisterOptions,
    iterations: u32,
}

/// Store job computing the `<iq/>` answer to a registration before authentication.
pub type PreAuthJob = Box<dyn FnOnce(&Store) -> Vec<u8> + Send>;

/// What the driver does with a registration IQ received before authentication.
pub enum PreAuth {
    /// Write this `<iq/>` now.
    Reply(Vec<u8>),
    /// Run this on the store pool, then write the `<iq/>` it returns.
    Job(PreAuthJob),
}

/// Answers a registration IQ before authentication on the stream for `domain`, from `ip`.
pub fn pre_auth(ext: &Extensions, stanza: &Stanza, domain: &str, ip: IpAddr) -> PreAuth {
    let id = stanza.id().map(|c| c.into_owned());
    let reply = |r| PreAuth::Reply(form::iq_bytes(id.as_deref(), r));
    let Some(settings) = ext.get::<Settings>().copied() else {
        return reply(Err(StanzaErrorCondition::ServiceUnavailable));
    };
    let Some(query) = stanza
        .tree()
        .ok()
        .and_then(|t| t.get_child("query", NS).cloned())
    else {
        return reply(Err(StanzaErrorCondition::BadRequest));
    };
    let type_ = stanza.ty();
    let (username, password) = match form::parse(type_, &query) {
        Ok(Request::Form) => return reply(Ok(Some(form::blank_form()))),
        // Nothing to cancel without an account; XEP-0077 §3.2 wants authentication first.
        Ok(Request::Remove) => return reply(Err(StanzaErrorCondition::NotAuthorized)),
        Ok(Request::Set { username, password }) => (username, password),
        Err(cond) => return reply(Err(cond)),
    };
    let jid = match checked_account(&username, &password, domain, settings.opts) {
        Ok(jid) => jid,
        Err(cond) => return reply(Err(cond)),
    };
    let ip = ip.to_string();
    PreAuth::Job(Box::new(move |store| {
        let answer = create(store, &jid, &password, &ip, settings);
        form::iq_bytes(id.as_deref(), answer.map(|()| None))
    }))
}

/// The account `username@domain` if the username is a valid localpart and the password long enough.
fn checked_account(
    username: &str,
    password: &str,
    domain: &str,
    opts: RegisterOptions,
) -> Result<BareJid, StanzaErrorCondition> {
    if password.chars().count() < opts.min_password_length {
        return Err(StanzaErrorCondition::NotAcceptable);
    }
    BareJid::new(Some(username), domain).map_err(|_| StanzaErrorCondition::NotAcceptable)
}

/// Creates the account (on the store pool).
fn create(
    store: &Store,
    jid: &BareJid,
    password: &str,
    ip: &str,
    s: Settings,
) -> Result<(), StanzaErrorCondition> {
    let now = unix_now();
    let since = now - WINDOW_SECS + 1;
    let internal = |e: StoreError| {
        tracing::warn!(%jid, error = %e, "register: store failed");
        StanzaErrorCondition::InternalServerError
    };
    // Cheap checks first: PBKDF2 is the expensive part and must not be a free amplifier.
    if store.registrations_since(ip, since).map_err(internal)? >= s.opts.ip_rate_limit {
        return Err(StanzaErrorCondition::ResourceConstraint);
    }
    if store.get_secrets(jid).map_err(internal)?.is_some() {
        return Err(StanzaErrorCondition::Conflict);
    }
    let secrets = ScramSecrets::derive(password, s.iterations);
    let created = store
        .register_user(jid, &secrets, ip, now, since, s.opts.ip_rate_limit)
        .map_err(internal)?;
    match created {
        Registered::Created => {
            tracing::info!(%jid, ip, "account registered in-band");
            Ok(())
        }
        Registered::Exists => Err(StanzaErrorCondition::Conflict),
        Registered::RateLimited => Err(StanzaErrorCondition::ResourceConstraint),
    }
}

/// Registers the post-authentication handlers on every host and the settings for [`pre_auth`].
pub fn start(shard: &mut Shard, hosts: &[String], opts: RegisterOptions, iterations: u32) {
    shard.ext.insert(Settings { opts, iterations });
    let handler: crate::local::IqHandler =
        Rc::new(move |acc, payload, ctx| authed(acc, payload, ctx, opts, iterations));
    for host in hosts {
        shard.iq.register_server(host, NS, handler.clone());
        shard.iq.register_account(host, NS, handler.clone());
    }
    // XEP-0077 §3.2: nothing the client sends after its removal request may act for the account
    // (a publish, a roster change, a message): the stream's input waits for the answer, which
    // the close follows (or, if the removal fails, the stream goes on).
    shard.hooks.user_send_iq.add(0, "register", |acc, _| {
        if acc.ty() == crate::xml::StanzaType::Set && is_removal(acc) {
            acc.put(crate::hooks::HOLD_INPUT, ());
        }
        crate::hooks::HookResult::Continue
    });
}

/// Whether `acc` is an in-band removal request (`<query xmlns='jabber:iq:register'><remove/>`) to
/// the sender's own account or server.
fn is_removal(acc: &Acc) -> bool {
    if acc.stanza.child_ns().as_deref() != Some(NS)
        || (acc.to.node().is_some() && acc.to.bare_str() != acc.from.bare_str())
    {
        return false;
    }
    // What the handler will take for a removal ([`form::parse`]).
    crate::local::iq_payload(acc)
        .is_some_and(|q| matches!(form::parse(acc.ty(), &q), Ok(Request::Remove)))
}

/// A registration IQ from an authenticated client: form, password change or account removal.
fn authed(
    acc: &Acc,
    payload: &Element,
    ctx: &mut HookCtx<'_>,
    opts: RegisterOptions,
    iterations: u32,
) -> IqReply {
    let bare = acc.from.bare();
    // Only the account itself (to its own server or its own bare JID), never someone else's,
    // nor the same name on another hosted domain.
    if acc.to.node().is_some() && acc.to.bare() != bare {
        // Another account (service-unavailable when there is none, RFC 6121 §8.5.1).
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    // From here an error does not carry the request back: it may hold a password (XEP-0077 §3.3).
    if bare.node().is_none() || acc.to.domain() != bare.domain() {
        return IqReply::ErrorWithoutPayload(StanzaErrorCondition::Forbidden);
    }
    let node = bare.node().unwrap_or_default().to_owned();
    let request = match form::parse(acc.ty(), payload) {
        Ok(r) => r,
        // A password change without both fields (§3.3); not-acceptable is registration's (§3.1).
        Err(StanzaErrorCondition::NotAcceptable) => {
            return IqReply::ErrorWithoutPayload(StanzaErrorCondition::BadRequest)
        }
        Err(cond) => return IqReply::ErrorWithoutPayload(cond),
    };
    let req = acc.fork();
    let shard = ctx.shard;
    let key = Some(super::last::job_key(&bare));
    match request {
        Request::Form => IqReply::Result(Some(form::registered_form(&node))),
        Request::Set { username, password } => {
            match checked_account(&username, &password, bare.domain(), opts) {
                Ok(jid) if jid == bare => {}
                // A password change names the account itself (XEP-0077 §3.3).
                Ok(_) => return IqReply::ErrorWithoutPayload(StanzaErrorCondition::NotAuthorized),
                Err(cond) => return IqReply::ErrorWithoutPayload(cond),
            }
            ctx.store(key, move |store| {
                let secrets = ScramSecrets::derive(&password, iterations);
                let reply = match store.set_secrets(&bare, &secrets) {
                    Ok(()) => Some(crate::local::result_reply(&req, None, shard)),
                    Err(e) => {
                        tracing::warn!(%bare, error = %e, "register: password change failed");
                        req.error_reply_without_payload(
                            StanzaErrorCondition::InternalServerError,
                            shard,
                        )
                    }
                };
                reply.into_iter().collect::<Vec<_>>().into()
            });
            IqReply::NoReply
        }
        Request::Remove => {
            ctx.store(key, move |store| remove(store, &bare, req, shard));
            IqReply::NoReply
        }
    }
}

/// Deletes the account, then (back on the shard) answers and closes the requesting session.
fn remove(store: &Store, bare: &BareJid, req: Acc, shard: crate::shard::ShardId) -> JobDone {
    let removed = store
        .remove_user(bare)
        .and_then(|roster| store.last_remove(bare).map(|()| roster));
    let roster = match removed {
        Ok(roster) => roster,
        Err(e) => {
            tracing::warn!(%bare, error = %e, "register: account removal failed");
            let reply = req.error_reply(StanzaErrorCondition::InternalServerError, shard);
            return reply.into_iter().collect::<Vec<_>>().into();
        }
    };
    tracing::info!(%bare, "account removed in-band");
    let reply = crate::local::result_reply(&req, None, shard);
    let from = req.from.clone();
    let gone = bare.clone();
    JobDone {
        hold: Vec::new(),
        route: Vec::new(),
        then: Some(Box::new(move |shard: &mut Shard| {
            account_removed(shard, gone.clone(), roster);
            // XEP-0077 §3.2: every session of the account ends, wherever it lives, and before the
            // answer goes: one left working even a moment could send as the deleted account, and
            // got what was sent to the name (archived for whoever registers it next). On the home
            // shard: the others are closed, then the answer is routed and the requester closed
            // behind it (the same ring: its client reads both).
            let home = crate::shard::home_shard(&gone, shard.shards);
            crate::sm::run_on(
                shard,
                home,
                Box::new(move |s| {
                    let close = || ConnMsg::Close(StreamErrorCondition::NotAuthorized);
                    crate::sm::close_sessions(s, &gone, |j| j.as_str() != from.as_str(), close);
                    s.route_all(vec![reply]);
                    crate::sm::close_sessions(s, &gone, |j| j.as_str() == from.as_str(), close);
                }),
            );
        })),
    }
}

#[cfg(test)]
mod tests;
