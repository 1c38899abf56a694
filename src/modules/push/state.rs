//! The push state of the accounts homed on a shard: their registrations (loaded from the store on
//! the first message, then kept up to date by enable/disable, which run on the same shard), the
//! messages counted since they were last available, and the publish in flight per registration.
//!
//! Bounded: at most `max_users` accounts per shard; a new one past it evicts an account without a
//! publish in flight, and when every account has one the message is not notified (logged).
//! Per registration, one publish in flight; messages meanwhile set `dirty`, and one publish with
//! the latest count goes when the answer comes (coalescing).

use ahash::HashMap;

use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::{BareJid, Jid};
use crate::local::IqAnswer;
use crate::metrics::Counter;
use crate::modules::offline::{user_key, NS_HINTS};
use crate::shard::Shard;
use crate::store::StoredPush;
use crate::xml::{Element, Stanza, StanzaKind};
use crate::xmpp::ns;

use super::{notify, BodyPolicy, Options, INCLUDE_BODY_FIELD, MAX_TIMEOUTS};

/// A message that calls for a notification.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Whose.
    pub user: BareJid,
    /// The resource of the detached session that buffered it (`None`: no session took it).
    pub resource: Option<String>,
    /// Its sender.
    pub sender: Jid,
    /// Its body, if any.
    pub body: Option<String>,
}

impl Trigger {
    /// The trigger for `acc`, a message to `user`, when it is one that notifies: a chat or normal
    /// message with a body or a `<store/>` hint.
    pub fn of(acc: &Acc, user: &BareJid, resource: Option<String>) -> Option<Trigger> {
        if acc.kind() != StanzaKind::Message {
            return None;
        }
        let ty = acc.ty();
        if !ty.is_one_to_one_message() {
            return None;
        }
        let el = acc.stanza.tree().ok()?;
        let body = el.get_child("body", ns::CLIENT).map(|b| b.text());
        if body.is_none() && el.get_child("store", NS_HINTS).is_none() {
            return None;
        }
        Some(Trigger {
            user: user.clone(),
            resource,
            sender: acc.from.clone(),
            body,
        })
    }
}

/// One registration of an account.
#[derive(Debug, Clone)]
pub struct Reg {
    /// The app server.
    pub service: Jid,
    /// Its node.
    pub node: String,
    /// The resource of the session that enabled it.
    pub resource: String,
    /// The publish-options form to forward (without [`INCLUDE_BODY_FIELD`]).
    pub form: Option<Element>,
    /// The enable asked for bodies.
    pub wants_body: bool,
    /// A publish is in flight.
    in_flight: bool,
    /// Messages came since the last publish went.
    dirty: bool,
    /// Timeouts in a row.
    timeouts: u8,
    /// Which enable this is (a re-enable of the same service and node gets a new one): an answer
    /// to a publish sent for an older one never disables it.
    generation: u64,
}

impl Reg {
    /// Reads a stored registration (`None` when it cannot be read: skipped).
    pub fn from_stored(s: &StoredPush) -> Option<Reg> {
        let service = Jid::parse(&s.service).ok()?;
        let form = if s.form.is_empty() {
            None
        } else {
            Some(
                Stanza::parse(s.form.as_bytes().to_vec())
                    .ok()?
                    .tree()
                    .ok()?,
            )
        };
        Some(Reg::new(service, s.node.clone(), s.resource.clone(), form))
    }

    /// A registration with its enable's form (a `petrel#include_body` field is taken out of it).
    pub fn new(service: Jid, node: String, resource: String, form: Option<Element>) -> Reg {
        let mut wants_body = false;
        let form = form.map(|mut x| {
            x.children.retain(|c| match c {
                crate::xml::Node::Element(f) if f.attr("var") == Some(INCLUDE_BODY_FIELD) => {
                    wants_body = f
                        .get_child("value", crate::xmpp::form::NS)
                        .is_some_and(|v| matches!(v.text().trim(), "1" | "true"));
                    false
                }
                _ => true,
            });
            x
        });
        Reg {
            service,
            node,
            resource,
            form,
            wants_body,
            in_flight: false,
            dirty: false,
            timeouts: 0,
            generation: 0,
        }
    }

    fn is(&self, service: &Jid, node: &str) -> bool {
        self.service == *service && self.node == node
    }
}

/// An account's registrations: being read from the store, or known.
enum Regs {
    /// The load is in flight; the resources of the triggers that came meanwhile.
    Loading(Vec<Option<String>>),
    Ready(Vec<Reg>),
}

/// The push state of one account.
struct UserPush {
    regs: Regs,
    /// Messages since the user was last available.
    count: u32,
    /// The last one's sender.
    sender: Option<Jid>,
    /// The last one's body.
    body: Option<String>,
}

impl UserPush {
    fn in_flight(&self) -> bool {
        matches!(&self.regs, Regs::Ready(r) if r.iter().any(|r| r.in_flight))
    }
}

/// Per shard: the options and the state of the accounts homed here.
pub struct Home {
    /// `[modules.push]`.
    pub opts: Options,
    /// Shards of the server.
    pub shards: usize,
    users: HashMap<String, UserPush>,
    /// Publishes sent.
    published: Counter,
    /// Registrations disabled by their app server's answer.
    disabled_by_server: Counter,
    /// The last generation given to an enable.
    generation: u64,
}

impl Home {
    /// Empty state, counting in `shard`'s metrics.
    pub fn new(opts: Options, shard: &Shard) -> Home {
        Home {
            opts,
            shards: shard.shards,
            users: HashMap::default(),
            generation: 0,
            published: shard.metrics.counter(
                "petrel_push_published",
                "Push notifications published to app servers (XEP-0357)",
            ),
            disabled_by_server: shard.metrics.counter(
                "petrel_push_disabled",
                "Push registrations disabled by an error or repeated timeouts from their app server",
            ),
        }
    }

    /// The user became available: the count starts again (the state goes unless a publish waits).
    pub fn back_online(&mut self, user: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        if u.in_flight() {
            u.count = 0;
            if let Regs::Ready(regs) = &mut u.regs {
                for r in regs {
                    r.dirty = false;
                }
            }
        } else {
            self.users.remove(user);
        }
    }

    /// Drops everything of `user` (the account was deleted).
    pub fn forget(&mut self, user: &str) {
        self.users.remove(user);
    }

    /// Makes room for one more account; false when every account has a publish in flight.
    fn room(&mut self) -> bool {
        if self.users.len() < self.opts.max_users {
            return true;
        }
        let victim = self
            .users
            .iter()
            .find(|(_, u)| !u.in_flight() && !matches!(u.regs, Regs::Loading(_)))
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.users.remove(&k);
                true
            }
            None => false,
        }
    }

    /// The registrations of `user` as this shard knows them (`None`: not loaded).
    #[cfg(test)]
    pub fn registrations(&self, user: &str) -> Option<&[Reg]> {
        match &self.users.get(user)?.regs {
            Regs::Ready(r) => Some(r),
            Regs::Loading(_) => None,
        }
    }

    /// An enable committed: the loaded registrations learn it (a load in flight reads it).
    pub fn enabled(&mut self, user: &str, mut reg: Reg) {
        self.generation += 1;
        reg.generation = self.generation;
        if let Some(UserPush {
            regs: Regs::Ready(regs),
            ..
        }) = self.users.get_mut(user)
        {
            match regs.iter_mut().find(|r| r.is(&reg.service, &reg.node)) {
                // The publish in flight, if any, stays accounted.
                Some(r) => {
                    r.resource = reg.resource;
                    r.form = reg.form;
                    r.wants_body = reg.wants_body;
                    r.generation = reg.generation;
                    r.timeouts = 0;
                }
                None => regs.push(reg),
            }
        }
    }

    /// A disable committed (or a registration failed): the loaded registrations forget it.
    pub fn disabled(&mut self, user: &str, service: &Jid, node: Option<&str>) {
        if let Some(UserPush {
            regs: Regs::Ready(regs),
            ..
        }) = self.users.get_mut(user)
        {
            regs.retain(|r| !(r.service == *service && node.is_none_or(|n| r.node == n)));
        }
    }
}

/// Marks the registrations a trigger from `resource` notifies: the ones that resource enabled, or
/// every one when it enabled none (or no session took the message).
fn mark(regs: &mut [Reg], resource: Option<&str>) {
    let own = resource.filter(|r| regs.iter().any(|g| g.resource == *r));
    for r in regs {
        if own.is_none_or(|o| r.resource == o) {
            r.dirty = true;
        }
    }
}

/// A message for `t.user` calls for a notification (on the user's home shard).
pub fn trigger(shard: &mut Shard, t: Trigger) {
    let Some(home) = shard.ext.get_mut::<Home>() else {
        return;
    };
    let key = t.user.as_str().to_owned();
    if !home.users.contains_key(&key) {
        if !home.room() {
            tracing::warn!(
                user = key,
                "push: every tracked account has a publish in flight; message not notified"
            );
            return;
        }
        home.users.insert(
            key.clone(),
            UserPush {
                regs: Regs::Loading(Vec::new()),
                count: 0,
                sender: None,
                body: None,
            },
        );
        load(shard, t.user.clone());
    }
    let Some(home) = shard.ext.get_mut::<Home>() else {
        return;
    };
    let Some(u) = home.users.get_mut(&key) else {
        return;
    };
    u.count = u.count.saturating_add(1);
    u.sender = Some(t.sender);
    u.body = t.body;
    match &mut u.regs {
        Regs::Loading(pending) => {
            // Bounded by the distinct resources (a detached session's, or none).
            if !pending.contains(&t.resource) {
                pending.push(t.resource);
            }
        }
        Regs::Ready(regs) => {
            mark(regs, t.resource.as_deref());
            flush(shard, &t.user);
        }
    }
}

/// Reads `user`'s registrations (a store job keyed by the user, so in order with enable/disable).
fn load(shard: &mut Shard, user: BareJid) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(Some(user_key(&user)), move |store| {
        let stored = store.push_list(user.as_str()).unwrap_or_else(|e| {
            tracing::error!(error = %e, user = user.as_str(), "push: loading registrations failed");
            Vec::new()
        });
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                loaded(shard, &user, &stored)
            })),
            ..JobDone::default()
        }
    });
}

fn loaded(shard: &mut Shard, user: &BareJid, stored: &[StoredPush]) {
    let Some(u) = shard
        .ext
        .get_mut::<Home>()
        .and_then(|h| h.users.get_mut(user.as_str()))
    else {
        return;
    };
    let mut regs: Vec<Reg> = stored.iter().filter_map(Reg::from_stored).collect();
    if let Regs::Loading(pending) = &u.regs {
        for resource in pending {
            mark(&mut regs, resource.as_deref());
        }
    }
    u.regs = Regs::Ready(regs);
    flush(shard, user);
}

/// Sends a publish for each registration of `user` with news and none in flight.
fn flush(shard: &mut Shard, user: &BareJid) {
    let Some(home) = shard.ext.get_mut::<Home>() else {
        return;
    };
    let policy = home.opts.include_body;
    let timeout = home.opts.timeout;
    let published = home.published.clone();
    let Some(u) = home.users.get_mut(user.as_str()) else {
        return;
    };
    let (count, sender, body) = (u.count, u.sender.clone(), u.body.clone());
    let Regs::Ready(regs) = &mut u.regs else {
        return;
    };
    let mut out = Vec::new();
    for r in regs.iter_mut().filter(|r| r.dirty && !r.in_flight) {
        let with_body = match policy {
            BodyPolicy::Never => false,
            BodyPolicy::OnRequest => r.wants_body,
            BodyPolicy::Always => true,
        };
        let summary = notify::Summary {
            count,
            sender: sender.as_ref(),
            body: body.as_deref().filter(|_| with_body),
        };
        out.push((
            r.service.clone(),
            r.node.clone(),
            r.generation,
            notify::publish(r, &summary),
        ));
        r.dirty = false;
        r.in_flight = true;
    }
    for (service, node, generation, payload) in out {
        let (u2, s2, n2) = (user.clone(), service.clone(), node.clone());
        let sent = shard.send_iq(
            "set",
            payload,
            Jid::from(user.clone()),
            service.clone(),
            timeout,
            Box::new(move |shard, answer| answered(shard, &u2, &s2, &n2, generation, answer)),
        );
        if sent.is_err() {
            // The shard waits for too many answers: the news waits for the next message.
            tracing::warn!(
                user = user.as_str(),
                "push: too many IQs in flight; publish skipped"
            );
            settle(shard, user, &service, &node, |r| r.dirty = true);
        } else {
            published.inc();
        }
    }
}

/// Applies `f` to the registration (`service`, `node`) of `user`, no longer in flight.
fn settle(shard: &mut Shard, user: &BareJid, service: &Jid, node: &str, f: impl FnOnce(&mut Reg)) {
    let reg = shard
        .ext
        .get_mut::<Home>()
        .and_then(|h| h.users.get_mut(user.as_str()))
        .and_then(|u| match &mut u.regs {
            Regs::Ready(regs) => regs.iter_mut().find(|r| r.is(service, node)),
            Regs::Loading(_) => None,
        });
    if let Some(r) = reg {
        r.in_flight = false;
        f(r);
    }
}

/// The app server answered a publish sent for the registration's `generation` (or did not, in
/// time). Only the generation it was sent for can be disabled by it: a re-enable meanwhile stays.
fn answered(
    shard: &mut Shard,
    user: &BareJid,
    service: &Jid,
    node: &str,
    generation: u64,
    answer: IqAnswer,
) {
    let mut disable = false;
    match answer {
        IqAnswer::Result(_) => settle(shard, user, service, node, |r| r.timeouts = 0),
        // A temporary error (type 'wait': the app server's domain is unreachable for now, it is
        // overloaded) counts as a timeout, and so does any error while the app server is a
        // configured component that is not connected (our own server answered it: an outage,
        // not the app server's refusal); any other refuses for good.
        IqAnswer::Error(acc) if !is_wait(&acc) && !component_down(shard, service) => {
            settle(shard, user, service, node, |r| {
                disable = r.generation == generation;
            })
        }
        IqAnswer::Error(_) | IqAnswer::Timeout => settle(shard, user, service, node, |r| {
            if r.generation == generation {
                r.timeouts += 1;
                disable = r.timeouts >= MAX_TIMEOUTS;
            }
        }),
    }
    if disable {
        // XEP-0357 §8: an app server that refuses (or never answers) gets no more publishes.
        tracing::info!(
            user = user.as_str(),
            service = service.as_str(),
            node,
            "push: registration disabled by the app server's answer"
        );
        if let Some(h) = shard.ext.get_mut::<Home>() {
            h.disabled_by_server.inc();
            h.disabled(user.as_str(), service, Some(node));
        }
        let (u, s, n) = (user.clone(), service.clone(), node.to_owned());
        let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
        ctx.store(Some(user_key(user)), move |store| {
            if let Err(e) = store.push_disable(u.as_str(), s.as_str(), Some(&n)) {
                tracing::error!(error = %e, user = u.as_str(), "push: disabling failed");
            }
            JobDone::default()
        });
    }
    flush(shard, user);
}

/// True when `service` is a configured external component that is not connected now: an error
/// "from" it was made by this server, not by the app server.
fn component_down(shard: &Shard, service: &Jid) -> bool {
    shard
        .ext
        .get::<crate::component::Routes>()
        .is_some_and(|r| {
            r.lookup(service.domain()) == crate::component::routes::Lookup::Disconnected
        })
}

/// True when the error answer `acc` is of type `wait` (RFC 6120 §8.3.2: retry later).
fn is_wait(acc: &Acc) -> bool {
    acc.stanza.tree().is_ok_and(|t| {
        t.get_child("error", ns::CLIENT)
            .is_some_and(|e| e.attr("type") == Some("wait"))
    })
}

#[cfg(test)]
pub(super) fn in_flight(home: &Home, user: &str) -> usize {
    home.registrations(user)
        .map_or(0, |r| r.iter().filter(|r| r.in_flight).count())
}
