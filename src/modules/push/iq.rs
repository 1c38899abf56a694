//! `<enable/>` and `<disable/>` (XEP-0357 §5): parsed on the receiving shard, stored by a job
//! queued from the account's home shard (so the cached registrations there follow the store in
//! order), answered once committed.

use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::{BareJid, Jid};
use crate::local::{result_reply, IqReply};
use crate::modules::disco;
use crate::modules::offline::user_key;
use crate::modules::pubsub::core::ns as ps;
use crate::shard::{home_shard, Shard};
use crate::store::{PushEnable, StoredPush};
use crate::xml::Element;
use crate::xml::StanzaType;
use crate::xmpp::form::{self, Form, FormKind};
use crate::xmpp::StanzaErrorCondition;

use super::state::{Home, Reg};
use super::{MAX_FORM_BYTES, MAX_NODE_BYTES};

/// A request.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Register `node` on `service`, publishing with `form` as publish-options.
    Enable {
        /// The app server.
        service: Jid,
        /// Its node.
        node: String,
        /// The publish-options form.
        form: Option<Element>,
    },
    /// Unregister `node` on `service`, or every node there.
    Disable {
        /// The app server.
        service: Jid,
        /// The node (`None`: all of `service`).
        node: Option<String>,
    },
}

/// Reads an IQ of type `ty` with `payload`; every malformed request is `bad-request` (§5), a node
/// or publish-options form past its bound ([`MAX_NODE_BYTES`], [`MAX_FORM_BYTES`]) is
/// `not-acceptable`.
pub fn parse(ty: StanzaType, payload: &Element) -> Result<Command, StanzaErrorCondition> {
    let bad = StanzaErrorCondition::BadRequest;
    if ty != StanzaType::Set {
        return Err(bad);
    }
    let service = payload
        .attr("jid")
        .and_then(|j| Jid::parse(j).ok())
        .ok_or(bad)?;
    let node = payload.attr("node");
    // Absent means "every node" in a disable; empty is never a node.
    if node == Some("") {
        return Err(bad);
    }
    if node.is_some_and(|n| n.len() > MAX_NODE_BYTES) {
        return Err(StanzaErrorCondition::NotAcceptable);
    }
    match payload.name.as_str() {
        "enable" => {
            let node = node.ok_or(bad)?.to_owned();
            let form = match payload.get_child("x", form::NS) {
                None => None,
                Some(x) => {
                    let f = Form::parse(x).map_err(|_| bad)?;
                    // The form is forwarded as publish-options: it must be one.
                    if f.kind != FormKind::Submit
                        || f.form_type.as_deref() != Some(ps::PUBLISH_OPTIONS)
                    {
                        return Err(bad);
                    }
                    let mut xml = Vec::new();
                    x.write_to(&mut xml);
                    if xml.len() > MAX_FORM_BYTES {
                        return Err(StanzaErrorCondition::NotAcceptable);
                    }
                    Some(x.clone())
                }
            };
            Ok(Command::Enable {
                service,
                node,
                form,
            })
        }
        "disable" => Ok(Command::Disable {
            service,
            node: node.map(str::to_owned),
        }),
        _ => Err(bad),
    }
}

/// The account IQ handler of `urn:xmpp:push:0`.
pub fn iq(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>) -> IqReply {
    // Only the account's own sessions register its app servers.
    if !disco::may_see_account(acc) {
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    let cmd = match parse(acc.ty(), payload) {
        Ok(c) => c,
        Err(cond) => return IqReply::Error(cond),
    };
    let user = acc.to.bare();
    let resource = acc.from.resource().unwrap_or_default().to_owned();
    let shards = ctx.ext.get::<Home>().map_or(1, |h| h.shards);
    let acc = acc.fork();
    ctx.run_on(
        home_shard(&user, shards),
        Box::new(move |shard: &mut Shard| apply(shard, user, resource, cmd, acc)),
    );
    IqReply::NoReply
}

/// On the home shard: stores the change, then updates the cache and answers.
fn apply(shard: &mut Shard, user: BareJid, resource: String, cmd: Command, acc: Acc) {
    let max = shard.ext.get::<Home>().map_or(0, |h| h.opts.max_per_user);
    let on = shard.id;
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(Some(user_key(&user)), move |store| {
        let owner = user.as_str().to_owned();
        let (done, then): (Result<bool, _>, Option<crate::hooks::OnShard>) = match cmd {
            Command::Enable {
                service,
                node,
                form,
            } => {
                let mut xml = Vec::new();
                if let Some(f) = &form {
                    f.write_to(&mut xml);
                }
                let stored = StoredPush {
                    service: service.as_str().to_owned(),
                    node: node.clone(),
                    resource: resource.clone(),
                    form: String::from_utf8(xml).unwrap_or_default(),
                };
                match store.push_enable(&owner, &stored, max) {
                    Ok(PushEnable::Stored) => {
                        let reg = Reg::new(service, node, resource, form);
                        let then: crate::hooks::OnShard = Box::new(move |s: &mut Shard| {
                            if let Some(h) = s.ext.get_mut::<Home>() {
                                h.enabled(&owner, reg);
                            }
                        });
                        (Ok(true), Some(then))
                    }
                    Ok(PushEnable::Full) => (Ok(false), None),
                    Err(e) => (Err(e), None),
                }
            }
            Command::Disable { service, node } => {
                match store.push_disable(&owner, service.as_str(), node.as_deref()) {
                    Ok(_) => {
                        let then: crate::hooks::OnShard = Box::new(move |s: &mut Shard| {
                            if let Some(h) = s.ext.get_mut::<Home>() {
                                h.disabled(&owner, &service, node.as_deref());
                            }
                        });
                        (Ok(true), Some(then))
                    }
                    Err(e) => (Err(e), None),
                }
            }
        };
        let reply = match done {
            Ok(true) => Some(result_reply(&acc, None, on)),
            // Past the per-account limit: a policy refusal, not a lack of resources.
            Ok(false) => acc.error_reply(StanzaErrorCondition::NotAcceptable, on),
            Err(e) => {
                tracing::error!(error = %e, user = user.as_str(), "push: store failed");
                acc.error_reply(StanzaErrorCondition::InternalServerError, on)
            }
        };
        JobDone {
            route: reply.into_iter().collect(),
            then,
            ..JobDone::default()
        }
    });
}
