//! Requests to one node of the service, on the node's home shard: the XEP-0060 rules with the
//! requester's affiliation as its access (presence and roster models belong to PEP, see
//! [`supported`]).

use super::core::{
    event, new_id, ns, Access, AccessModel, Affiliation, Extras, Node, NodeConfig, PubsubAppError,
    PubsubError, Request, SendLast, SubState,
};
use super::home::{self, Live};
use super::notify;
use crate::hooks::Acc;
use crate::jid::Jid;
use crate::shard::Shard;
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition as C;

/// Subscriptions one account may hold on a node (its resources and bare JID): past it
/// `not-allowed` with `too-many-subscriptions`, so one account cannot use up the node's budget.
const MAX_SUBSCRIPTIONS_PER_ACCOUNT: usize = 8;

/// What a request did.
pub(super) struct Outcome {
    /// The answer's payload, or the refusal.
    pub reply: Result<Option<Element>, PubsubError>,
    /// The node is gone.
    pub deleted: bool,
}

/// The access models a service node may have: those decided by affiliations and subscriptions
/// (presence and roster ones need the owner's roster, which only PEP has at hand).
pub(super) fn offered(m: AccessModel) -> bool {
    !matches!(m, AccessModel::Presence | AccessModel::Roster)
}

/// Refuses a configuration whose access model the service does not offer.
pub(super) fn supported(c: &NodeConfig) -> Result<(), PubsubError> {
    if offered(c.access_model) {
        Ok(())
    } else {
        Err(PubsubError::app(
            C::NotAcceptable,
            PubsubAppError::UnsupportedAccessModel,
        ))
    }
}

fn bare_of(jid: &str) -> String {
    Jid::parse(jid).map_or_else(|_| jid.to_owned(), |j| j.bare().as_str().to_owned())
}

/// Whether `bare` has a subscription of state `subscribed` to `n`.
fn subscribed(n: &Node, bare: &str) -> bool {
    n.subscribers().any(|s| bare_of(&s.jid) == bare)
}

/// How `bare` stands towards `n`: its affiliation; under the authorize model an approved
/// subscriber reads like a member.
pub(super) fn access(n: &Node, bare: &str) -> Access {
    let mut a = Access::contact(false);
    a.affiliation = n.affiliation(bare);
    if a.affiliation == Affiliation::None
        && n.config().access_model == AccessModel::Authorize
        && subscribed(n, bare)
    {
        a.affiliation = Affiliation::Member;
    }
    a
}

/// Runs `req` (with its `extras`) from `acc`'s sender on `live`, a node of `service`.
pub(super) fn run(
    shard: &mut Shard,
    service: &str,
    live: &mut Live,
    acc: &Acc,
    req: (Request, Extras),
) -> Outcome {
    let mut deleted = false;
    let reply = answer(shard, service, live, acc, req, &mut deleted);
    Outcome { reply, deleted }
}

fn answer(
    shard: &mut Shard,
    service: &str,
    live: &mut Live,
    acc: &Acc,
    (req, extras): (Request, Extras),
    deleted: &mut bool,
) -> Result<Option<Element>, PubsubError> {
    let opts = &home::nodes(shard).opts;
    let (limits, max_subscriptions) = (opts.limits.clone(), opts.max_subscriptions);
    let from_bare = acc.from.bare().as_str().to_owned();
    let n = &mut live.node;
    let a = access(n, &from_bare);
    let owner_only = || {
        if a.affiliation == Affiliation::Owner {
            Ok(())
        } else {
            Err(PubsubError::forbidden())
        }
    };
    let name = n.name.clone();
    match req {
        Request::Create { .. } => Err(PubsubError::new(C::Conflict)),
        Request::Publish { item, options, .. } => {
            let item = (!extras.no_item).then(|| item.into_item(acc.from.as_str()));
            if let Some(item) = &item {
                Node::check_size(item, &limits)?;
            }
            n.can_publish(&a, subscribed(n, &from_bare))?;
            if let Some(x) = &options {
                n.config().check_preconditions(x, &limits)?;
            }
            let Some(item) = item else {
                // §7.1.1: a publish without item, for a transient notification-only node: its
                // subscribers get `<items node=…/>` with nothing inside, nothing is kept.
                n.config().check_publish_without_item()?;
                if n.config().deliver_notifications {
                    let msg = event::items(service, &name, n.config(), &[]);
                    notify::fan_out(shard, service, n, &msg);
                }
                return Ok(None);
            };
            let stored = item.to_stored();
            // Notified as published: a node keeping no items (max_items 0) still notifies.
            let sent = item.clone();
            let published = n.publish(item, &limits)?;
            if n.config().persist_items {
                let ev = published.evicted.clone();
                home::persist(shard, service, &name, move |s, svc, node| {
                    s.pubsub_item_put(svc, node, &stored, &ev)
                });
            }
            if n.config().deliver_notifications {
                let msg = event::items(service, &name, n.config(), &[&sent]);
                notify::fan_out(shard, service, n, &msg);
            }
            Ok(Some(event::publish_result(&name, &published.id)))
        }
        Request::Retract { ids, notify, .. } => {
            n.check_keeps_items()?;
            // Owners and publishers retract anything, others only their own items (§7.2.3.1).
            let own = n
                .items(None, &ids)
                .iter()
                .all(|i| bare_of(&i.publisher) == from_bare);
            // Publish-only too: it "SHOULD be allowed to delete only items that the publish-only
            // entity has published" (§4.1).
            if a.affiliation < Affiliation::Publisher && !own {
                return Err(PubsubError::forbidden());
            }
            let gone = n.retract(&ids)?;
            if n.config().persist_items {
                let gone = gone.clone();
                home::persist(shard, service, &name, move |s, svc, node| {
                    s.pubsub_items_delete(svc, node, &gone)
                });
            }
            if notify || n.config().notify_retract {
                let msg = event::retract(service, &name, n.config(), &gone);
                notify::fan_out(shard, service, n, &msg);
            }
            Ok(None)
        }
        Request::Items { max, ids, .. } => {
            n.can_read(&a)?;
            // Each subscription has its own id (one per JID): a subid names one of the
            // requester's or is refused (§6.5.9.2), never ignored.
            if let Some(subid) = &extras.subid {
                n.check_subid(&from_bare, subid)?;
            }
            n.check_keeps_items()?;
            let (page, total) = n.items_bounded(max, &ids);
            Ok(Some(event::items_page(&name, &page, total)))
        }
        Request::Subscribe { jid, .. } => {
            if jid.bare().as_str() != from_bare {
                return Err(PubsubError::app(C::BadRequest, PubsubAppError::InvalidJid));
            }
            let known = n.subscription(jid.as_str()).is_some();
            // One account holds a few subscriptions (its resources), not the node's whole budget.
            let mine = n
                .meta
                .subscriptions
                .iter()
                .filter(|s| bare_of(&s.jid) == from_bare)
                .count();
            if !known
                && (n.meta.subscriptions.len() >= max_subscriptions
                    || mine >= MAX_SUBSCRIPTIONS_PER_ACCOUNT)
            {
                return Err(PubsubError::app(
                    C::NotAllowed,
                    PubsubAppError::TooManySubscriptions,
                ));
            }
            let sub = n.subscribe(jid.as_str(), &a, new_id())?;
            if !known {
                home::save(shard, service, live);
            }
            let n = &live.node;
            if sub.state == SubState::Pending && !known {
                notify::ask_owners(shard, service, n, &sub);
            }
            if sub.state == SubState::Subscribed
                && n.config().send_last_published_item != SendLast::Never
            {
                send_last(shard, service, n, jid);
            }
            Ok(Some(notify::subscription_result(&name, &sub)))
        }
        Request::Unsubscribe { jid, subid, .. } => {
            if jid.bare().as_str() != from_bare && a.affiliation != Affiliation::Owner {
                // XEP-0060 §6.2.3.3: unsubscribing someone else is forbidden.
                return Err(PubsubError::forbidden());
            }
            n.unsubscribe(jid.as_str(), subid.as_deref())?;
            home::save(shard, service, live);
            Ok(None)
        }
        Request::Options { .. } => Err(PubsubError::unsupported("subscription-options")),
        Request::Subscriptions { .. } => {
            let mine: Vec<_> = n
                .meta
                .subscriptions
                .iter()
                .filter(|s| bare_of(&s.jid) == from_bare)
                .map(|s| (name.as_str(), s))
                .collect();
            Ok(Some(event::subscriptions_result(ns::PUBSUB, None, &mine)))
        }
        Request::Affiliations { .. } => {
            let rows: Vec<_> = (a.affiliation != Affiliation::None)
                .then_some((name.as_str(), "", n.affiliation(&from_bare)))
                .into_iter()
                .collect();
            Ok(Some(event::affiliations_result(ns::PUBSUB, None, &rows)))
        }
        Request::Default => Ok(Some(event::configure_result(
            ns::OWNER,
            None,
            NodeConfig::default().form_offering(offered),
        ))),
        Request::ConfigureGet { .. } => {
            owner_only()?;
            Ok(Some(event::configure_result(
                ns::OWNER,
                Some(&name),
                n.config().form_offering(offered),
            )))
        }
        Request::ConfigureSet { form, .. } => {
            owner_only()?;
            if form.attr("type") == Some("cancel") {
                return Ok(None);
            }
            let was_persistent = n.config().persist_items;
            let config = n.config().apply(&form, &limits)?;
            supported(&config)?;
            let evicted = n.set_config(config, &limits);
            drop_unreadable(shard, service, n);
            if was_persistent && !n.config().persist_items {
                home::persist(shard, service, &name, |s, svc, node| {
                    s.pubsub_purge(svc, node)
                });
            } else if !was_persistent && n.config().persist_items {
                // Items kept in memory until now are written.
                for i in n.all_items() {
                    let stored = i.to_stored();
                    home::persist(shard, service, &name, move |s, svc, node| {
                        s.pubsub_item_put(svc, node, &stored, &[])
                    });
                }
            } else if n.config().persist_items && !evicted.is_empty() {
                home::persist(shard, service, &name, move |s, svc, node| {
                    s.pubsub_items_delete(svc, node, &evicted)
                });
            }
            home::save(shard, service, live);
            let n = &live.node;
            if n.config().notify_config {
                let msg = event::configuration(service, &name, n.config());
                notify::fan_out(shard, service, n, &msg);
            }
            Ok(None)
        }
        Request::Delete { redirect, .. } => {
            owner_only()?;
            if n.config().notify_delete {
                let msg = event::delete(service, &name, n.config(), redirect.as_deref());
                notify::fan_out(shard, service, n, &msg);
            }
            home::deleted(shard, service, live);
            *deleted = true;
            Ok(None)
        }
        Request::Purge { .. } => {
            owner_only()?;
            n.check_keeps_items()?;
            n.purge();
            if n.config().notify_retract {
                let msg = event::purge(service, &name, n.config());
                notify::fan_out(shard, service, n, &msg);
            }
            home::persist(shard, service, &name, |s, svc, node| {
                s.pubsub_purge(svc, node)
            });
            Ok(None)
        }
        Request::OwnerSubscriptions { .. } => {
            owner_only()?;
            Ok(Some(event::owner_subscriptions(n)))
        }
        Request::SetSubscriptions { changes, .. } => {
            owner_only()?;
            let before: Vec<Option<SubState>> = changes
                .iter()
                .map(|(j, _)| n.subscription(j.as_str()).map(|s| s.state))
                .collect();
            n.set_subscriptions(&changes, new_id)?;
            for ((jid, _), was) in changes.iter().zip(before) {
                changed(shard, service, n, jid, was);
            }
            home::save(shard, service, live);
            Ok(None)
        }
        Request::OwnerAffiliations { .. } => {
            owner_only()?;
            Ok(Some(event::owner_affiliations(n)))
        }
        Request::SetAffiliations { changes, .. } => {
            owner_only()?;
            // A ban takes the subscriptions of every JID of the account; each is told (§8.8.4).
            let banned: Vec<(Jid, SubState)> = n
                .meta
                .subscriptions
                .iter()
                .filter(|s| {
                    changes
                        .iter()
                        .any(|(j, a)| *a == Affiliation::Outcast && bare_of(&s.jid) == j.bare_str())
                })
                .filter_map(|s| Some((Jid::parse(&s.jid).ok()?, s.state)))
                .collect();
            n.set_affiliations(&changes)?;
            for (jid, was) in banned {
                changed(shard, service, n, &jid, Some(was));
            }
            drop_unreadable(shard, service, n);
            home::save(shard, service, live);
            Ok(None)
        }
    }
}

/// The owner sets `jid`'s subscription to `state` (§8.6 approval, removal of one the node no longer
/// admits); see [`changed`].
pub(super) fn set_subscription(
    shard: &mut Shard,
    service: &str,
    n: &mut Node,
    jid: &Jid,
    state: SubState,
) {
    let before = n.subscription(jid.as_str()).map(|s| s.state);
    if n.set_subscription(jid.as_str(), state, new_id()).is_ok() {
        changed(shard, service, n, jid, before);
    }
}

/// `jid`'s subscription changed from `before` by the owner: the subscriber is told (§8.8.4) and,
/// newly subscribed, gets the last item.
fn changed(shard: &mut Shard, service: &str, n: &Node, jid: &Jid, before: Option<SubState>) {
    let now = n.subscription(jid.as_str()).cloned();
    let state = now.as_ref().map(|s| s.state);
    if before == state {
        return;
    }
    let told = now.clone().unwrap_or(super::core::Subscription {
        jid: jid.as_str().to_owned(),
        state: SubState::None,
        subid: String::new(),
    });
    let msg = event::subscription(service, &n.name, &told);
    notify::send(shard, service, &msg, vec![jid.clone()]);
    if state == Some(SubState::Subscribed) && n.config().send_last_published_item != SendLast::Never
    {
        send_last(shard, service, n, jid.clone());
    }
}

/// Removes the subscriptions (pending ones too) of JIDs the node no longer admits after a change
/// of configuration or affiliations (a member removed from a whitelist, an outcast), and tells them.
fn drop_unreadable(shard: &mut Shard, service: &str, n: &mut Node) {
    let gone: Vec<Jid> = n
        .meta
        .subscriptions
        .iter()
        .filter(|s| {
            let a = access(n, &bare_of(&s.jid));
            let pending_ok = s.state == SubState::Pending
                && n.config().access_model == AccessModel::Authorize
                && a.affiliation != Affiliation::Outcast;
            !pending_ok && n.can_read(&a).is_err()
        })
        .filter_map(|s| Jid::parse(&s.jid).ok())
        .collect();
    for jid in gone {
        set_subscription(shard, service, n, &jid, SubState::None);
    }
}

/// Sends `to` the newest item of `n`, if any.
fn send_last(shard: &mut Shard, service: &str, n: &Node, to: Jid) {
    if let Some(last) = n.last() {
        let msg = event::items(service, &n.name, n.config(), &[last]);
        notify::send(shard, service, &msg, vec![to]);
    }
}

/// An owner's answer to the authorization form for `node`: approve or refuse `jid`'s pending
/// subscription (§8.6). Forms from non-owners and answers about no pending subscription are
/// ignored.
pub(super) fn authorize(
    shard: &mut Shard,
    service: &str,
    live: &mut Live,
    from: &Jid,
    jid: &Jid,
    allow: bool,
) {
    let n = &mut live.node;
    if n.affiliation(from.bare().as_str()) != Affiliation::Owner
        || n.subscription(jid.as_str()).map(|s| s.state) != Some(SubState::Pending)
    {
        return;
    }
    let state = if allow {
        SubState::Subscribed
    } else {
        SubState::None
    };
    set_subscription(shard, service, n, jid, state);
    home::save(shard, service, live);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_the_affiliation_and_an_approved_subscriber_reads_an_authorize_node() {
        let config = NodeConfig {
            access_model: AccessModel::Authorize,
            ..NodeConfig::default()
        };
        let mut n = Node::new("n", config, "alice@x");
        assert_eq!(access(&n, "alice@x").affiliation, Affiliation::Owner);
        assert!(n
            .set_subscription("bob@x/b", SubState::Pending, "1".into())
            .is_ok());
        assert_eq!(access(&n, "bob@x").affiliation, Affiliation::None);
        assert!(n.can_read(&access(&n, "bob@x")).is_err());
        assert!(n
            .set_subscription("bob@x/b", SubState::Subscribed, "1".into())
            .is_ok());
        assert_eq!(access(&n, "bob@x").affiliation, Affiliation::Member);
        assert!(n.can_read(&access(&n, "bob@x")).is_ok());
        assert!(n.can_read(&access(&n, "carol@x")).is_err());
    }

    #[test]
    fn presence_and_roster_models_are_refused_on_the_service() {
        for (m, ok) in [
            (AccessModel::Open, true),
            (AccessModel::Whitelist, true),
            (AccessModel::Authorize, true),
            (AccessModel::Presence, false),
            (AccessModel::Roster, false),
        ] {
            let c = NodeConfig {
                access_model: m,
                ..NodeConfig::default()
            };
            assert_eq!(supported(&c).is_ok(), ok, "{m:?}");
            // The configuration form offers exactly what the service accepts.
            let form = NodeConfig::default().form_offering(offered);
            let access = form
                .child_elements()
                .find(|f| f.attr("var") == Some("pubsub#access_model"))
                .unwrap();
            let listed = access
                .child_elements()
                .filter(|o| o.name == "option")
                .any(|o| o.child_elements().any(|v| v.text() == m.as_str()));
            assert_eq!(listed, ok, "{m:?}");
        }
    }
}
