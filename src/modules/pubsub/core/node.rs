//! One pubsub node: configuration, items (oldest first, bounded by `max_items`), affiliations and
//! subscriptions, with the XEP-0060 rules on who may do what.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{AccessModel, Limits, NodeConfig, PublishModel, PubsubAppError, PubsubError};
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition;

/// Subscriptions (and affiliations) a node keeps at most: past it new ones are refused
/// (`not-allowed` + `too-many-subscriptions`), so a stranger cannot grow a node without bound.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// Most payload bytes one items result carries: past it the newest items that fit are returned,
/// the rest noted with a result set (XEP-0060 §6.5.4). A node may hold 1 000 items of 64 KiB.
pub const MAX_ITEMS_RESULT_BYTES: usize = 256 * 1024;

fn too_many() -> PubsubError {
    PubsubError::app(
        StanzaErrorCondition::NotAllowed,
        PubsubAppError::TooManySubscriptions,
    )
}

/// A bare JID's long-lived relation to a node (XEP-0060 §4.1), ordered by privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// May subscribe and read under the whitelist model.
    Member,
    /// May publish, not read beyond what the access model allows.
    PublishOnly,
    /// May publish.
    Publisher,
    /// Manages the node.
    Owner,
}

impl Affiliation {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Publisher => "publisher",
            Affiliation::Owner => "owner",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "publish-only" => Affiliation::PublishOnly,
            "publisher" => Affiliation::Publisher,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// The state of a subscription (XEP-0060 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubState {
    /// Not subscribed (only on the wire: removals).
    None,
    /// Waiting for the owner's approval.
    Pending,
    /// Needs configuration first.
    Unconfigured,
    /// Subscribed.
    Subscribed,
}

impl SubState {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::None => "none",
            SubState::Pending => "pending",
            SubState::Unconfigured => "unconfigured",
            SubState::Subscribed => "subscribed",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<SubState> {
        Some(match s {
            "none" => SubState::None,
            "pending" => SubState::Pending,
            "unconfigured" => SubState::Unconfigured,
            "subscribed" => SubState::Subscribed,
            _ => return None,
        })
    }
}

/// One subscription of a JID (bare or full) to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscribed JID, as given.
    pub jid: String,
    /// Its state.
    pub state: SubState,
    /// Its id.
    pub subid: String,
}

/// A published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id, unique in the node.
    pub id: String,
    /// Who published it (full JID as sent).
    pub publisher: String,
    /// When, in microseconds since the Unix epoch.
    pub published: i64,
    /// The payload (`None`: notification only).
    pub payload: Option<Element>,
}

impl Item {
    /// The serialized payload (what counts against `max_item_bytes` and what the store keeps).
    pub fn payload_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(p) = &self.payload {
            p.write_to(&mut out);
        }
        out
    }

    /// `<item id=…>payload</item>` in namespace `ns`, with or without the payload.
    pub fn element(&self, ns: &str, with_payload: bool) -> Element {
        let mut e = Element::new("item", ns).with_attr("id", &self.id);
        if with_payload {
            if let Some(p) = &self.payload {
                e = e.with_child(p.clone());
            }
        }
        e
    }
}

/// What the caller knows of the requester, for the access and publish models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The requester's affiliation (the owner of a PEP node is `Owner`).
    pub affiliation: Affiliation,
    /// The requester has a presence subscription to the owner (`from` or `both` in the owner's
    /// roster).
    pub presence_subscribed: bool,
    /// The owner's roster groups the requester is in.
    pub roster_groups: Vec<String>,
}

impl Access {
    /// The node's owner.
    pub fn owner() -> Access {
        Access {
            affiliation: Affiliation::Owner,
            presence_subscribed: true,
            roster_groups: Vec::new(),
        }
    }

    /// Someone without affiliation, with or without a presence subscription.
    pub fn contact(presence_subscribed: bool) -> Access {
        Access {
            affiliation: Affiliation::None,
            presence_subscribed,
            roster_groups: Vec::new(),
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The item's id.
    pub id: String,
    /// Ids of items dropped to stay within `max_items` (oldest first).
    pub evicted: Vec<String>,
}

/// What a node keeps besides its items (stored as one JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeMeta {
    /// Configuration.
    pub config: NodeConfig,
    /// Affiliations by bare JID (`none` is not kept).
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Subscriptions in the order they were made.
    pub subscriptions: Vec<Subscription>,
}

impl NodeMeta {
    /// `bare`'s account was deleted: its affiliation (a ban stays) and the subscriptions of all
    /// its JIDs go. True when something went.
    pub fn forget_account(&mut self, bare: &str) -> bool {
        let before = self.affiliations.len() + self.subscriptions.len();
        // A ban stays: deleting the account and registering the name again must not lift it.
        if self.affiliations.get(bare) != Some(&Affiliation::Outcast) {
            self.affiliations.remove(bare);
        }
        self.subscriptions
            .retain(|s| crate::jid::Jid::parse(&s.jid).map_or(true, |j| j.bare_str() != bare));
        before != self.affiliations.len() + self.subscriptions.len()
    }
}

/// A pubsub node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Configuration, affiliations, subscriptions.
    pub meta: NodeMeta,
    items: VecDeque<Item>,
}

impl Node {
    /// A new node owned by `owner` (a bare JID).
    pub fn new(name: &str, config: NodeConfig, owner: &str) -> Node {
        let mut affiliations = BTreeMap::new();
        affiliations.insert(owner.to_owned(), Affiliation::Owner);
        Node {
            name: name.to_owned(),
            meta: NodeMeta {
                config,
                affiliations,
                subscriptions: Vec::new(),
            },
            items: VecDeque::new(),
        }
    }

    /// A node read back from the store (items oldest first), trimmed to its `max_items`.
    pub fn restore(name: &str, meta: NodeMeta, items: Vec<Item>, limits: &Limits) -> Node {
        let mut n = Node {
            name: name.to_owned(),
            meta,
            items: items.into(),
        };
        n.trim(limits);
        n
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.meta.config
    }

    /// The items, oldest first.
    pub fn all_items(&self) -> impl DoubleEndedIterator<Item = &Item> + ExactSizeIterator {
        self.items.iter()
    }

    /// The newest item.
    pub fn last(&self) -> Option<&Item> {
        self.items.back()
    }

    /// The stored affiliation of a bare JID.
    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.meta
            .affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// May `a` see the items and subscribe (XEP-0060 §6.1.3, §6.5.9)?
    pub fn can_read(&self, a: &Access) -> Result<(), PubsubError> {
        use Affiliation::*;
        match a.affiliation {
            Owner | Publisher => return Ok(()),
            Outcast => return Err(PubsubError::forbidden()),
            _ => {}
        }
        let not_auth = |app| PubsubError::app(StanzaErrorCondition::NotAuthorized, app);
        match self.meta.config.access_model {
            AccessModel::Open => Ok(()),
            AccessModel::Presence if a.presence_subscribed => Ok(()),
            AccessModel::Presence => Err(not_auth(PubsubAppError::PresenceSubscriptionRequired)),
            AccessModel::Roster
                if a.roster_groups
                    .iter()
                    .any(|g| self.meta.config.roster_groups_allowed.contains(g)) =>
            {
                Ok(())
            }
            AccessModel::Roster => Err(not_auth(PubsubAppError::NotInRosterGroup)),
            AccessModel::Whitelist | AccessModel::Authorize if a.affiliation == Member => Ok(()),
            AccessModel::Whitelist => Err(PubsubError::app(
                StanzaErrorCondition::NotAllowed,
                PubsubAppError::ClosedNode,
            )),
            AccessModel::Authorize => Err(not_auth(PubsubAppError::NotSubscribed)),
        }
    }

    /// May `a` (whose subscription state is `subscribed`) publish (§7.1.3.1)?
    pub fn can_publish(&self, a: &Access, subscribed: bool) -> Result<(), PubsubError> {
        use Affiliation::*;
        let ok = match a.affiliation {
            Owner | Publisher | PublishOnly => true,
            Outcast => false,
            Member | None => match self.meta.config.publish_model {
                PublishModel::Publishers => false,
                PublishModel::Subscribers => subscribed,
                PublishModel::Open => true,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(PubsubError::forbidden())
        }
    }

    /// Checks an item against the size limit (`not-acceptable` + `payload-too-big`).
    pub fn check_size(item: &Item, limits: &Limits) -> Result<(), PubsubError> {
        if item.payload_bytes().len() > limits.max_item_bytes {
            return Err(PubsubError::app(
                StanzaErrorCondition::NotAcceptable,
                PubsubAppError::PayloadTooBig,
            ));
        }
        Ok(())
    }

    /// A transient notification-only node keeps no items: retrieving, retracting or purging them
    /// is `feature-not-implemented` with `<unsupported feature='persistent-items'/>` (XEP-0060
    /// §6.5.9.5, §7.2.3.5, §8.5.3.4).
    pub fn check_keeps_items(&self) -> Result<(), PubsubError> {
        if self.meta.config.is_transient_notification() {
            return Err(PubsubError::unsupported("persistent-items"));
        }
        Ok(())
    }

    /// Publishes `item` (replacing one with the same id) as the newest, and drops the oldest past
    /// `max_items`. The caller checked the publisher's rights. A transient notification-only node
    /// takes no items (`bad-request` + `item-forbidden`, §7.1.3.6: its publishes are bare
    /// `<publish/>`s, see [`NodeConfig::check_publish_without_item`]).
    pub fn publish(&mut self, item: Item, limits: &Limits) -> Result<Published, PubsubError> {
        if self.meta.config.is_transient_notification() {
            return Err(PubsubError::app(
                StanzaErrorCondition::BadRequest,
                PubsubAppError::ItemForbidden,
            ));
        }
        Node::check_size(&item, limits)?;
        if self.meta.config.deliver_payloads && item.payload.is_none() {
            return Err(PubsubError::app(
                StanzaErrorCondition::BadRequest,
                PubsubAppError::PayloadRequired,
            ));
        }
        self.items.retain(|i| i.id != item.id);
        let id = item.id.clone();
        self.items.push_back(item);
        let evicted = self.trim(limits);
        Ok(Published { id, evicted })
    }

    /// Drops the oldest items past `max_items`; returns their ids.
    fn trim(&mut self, limits: &Limits) -> Vec<String> {
        let max = self.meta.config.max_items.resolve(limits);
        let over = self.items.len().saturating_sub(max);
        self.items.drain(..over).map(|i| i.id).collect()
    }

    /// Removes the items with these ids; `item-not-found` when none exists (§7.2.3.5).
    pub fn retract(&mut self, ids: &[String]) -> Result<Vec<String>, PubsubError> {
        let before: Vec<String> = self.items.iter().map(|i| i.id.clone()).collect();
        self.items.retain(|i| !ids.contains(&i.id));
        let gone: Vec<String> = before.into_iter().filter(|id| ids.contains(id)).collect();
        if gone.is_empty() {
            return Err(PubsubError::not_found());
        }
        Ok(gone)
    }

    /// Removes every item; returns their ids.
    pub fn purge(&mut self) -> Vec<String> {
        self.items.drain(..).map(|i| i.id).collect()
    }

    /// Items for a retrieval: those with `ids` (unknown ones skipped) or else the newest `max`
    /// (all when `None`), oldest first.
    pub fn items(&self, max: Option<usize>, ids: &[String]) -> Vec<&Item> {
        if !ids.is_empty() {
            return ids
                .iter()
                .filter_map(|id| self.items.iter().find(|i| &i.id == id))
                .collect();
        }
        let skip = max.map_or(0, |m| self.items.len().saturating_sub(m));
        self.items.iter().skip(skip).collect()
    }

    /// [`Node::items`] within [`MAX_ITEMS_RESULT_BYTES`] (at least one item): the newest that fit,
    /// oldest first, and how many there were in all when some were left out.
    pub fn items_bounded(&self, max: Option<usize>, ids: &[String]) -> (Vec<&Item>, Option<usize>) {
        let all = self.items(max, ids);
        let mut bytes = 0;
        let mut fit = 0;
        for i in all.iter().rev() {
            bytes += i.payload_bytes().len();
            if fit > 0 && bytes > MAX_ITEMS_RESULT_BYTES {
                break;
            }
            fit += 1;
        }
        let total = all.len();
        let kept = all[total - fit..].to_vec();
        (kept, (fit < total).then_some(total))
    }

    /// Replaces the configuration; returns the ids of items dropped by a smaller `max_items`.
    pub fn set_config(&mut self, config: NodeConfig, limits: &Limits) -> Vec<String> {
        self.meta.config = config;
        self.trim(limits)
    }

    /// Sets (or with `none`, removes) a bare JID's affiliation. The last owner cannot be removed
    /// (`not-acceptable`).
    pub fn set_affiliation(&mut self, bare: &str, aff: Affiliation) -> Result<(), PubsubError> {
        let owners = self
            .meta
            .affiliations
            .values()
            .filter(|a| **a == Affiliation::Owner)
            .count();
        if self.affiliation(bare) == Affiliation::Owner && aff != Affiliation::Owner && owners == 1
        {
            return Err(PubsubError::new(StanzaErrorCondition::NotAcceptable));
        }
        if aff != Affiliation::None
            && !self.meta.affiliations.contains_key(bare)
            && self.meta.affiliations.len() >= MAX_SUBSCRIPTIONS
        {
            return Err(too_many());
        }
        if aff == Affiliation::None {
            self.meta.affiliations.remove(bare);
        } else {
            self.meta.affiliations.insert(bare.to_owned(), aff);
        }
        if aff == Affiliation::Outcast {
            self.meta
                .subscriptions
                .retain(|s| crate::jid::Jid::parse(&s.jid).map_or(true, |j| j.bare_str() != bare));
        }
        Ok(())
    }

    /// True when `bare` is the node's only owner.
    pub fn sole_owner(&self, bare: &str) -> bool {
        self.affiliation(bare) == Affiliation::Owner
            && self
                .meta
                .affiliations
                .values()
                .filter(|a| **a == Affiliation::Owner)
                .count()
                == 1
    }

    /// `bare`'s account was deleted: its affiliation (a ban stays) and the subscriptions of all its JIDs go
    /// (the caller deletes a node it solely owned instead). True when the node changed.
    pub fn forget_account(&mut self, bare: &str) -> bool {
        self.meta.forget_account(bare)
    }

    /// The subscription of exactly this JID.
    pub fn subscription(&self, jid: &str) -> Option<&Subscription> {
        self.meta.subscriptions.iter().find(|s| s.jid == jid)
    }

    /// Subscribes `jid` after checking `a` (§6.1); `subid` is used for a new subscription. Under
    /// the authorize model the subscription is pending. Subscribing again returns the existing one,
    /// unless it still waits for approval: `not-authorized` + `pending-subscription` (§6.1.3.7).
    pub fn subscribe(
        &mut self,
        jid: &str,
        a: &Access,
        subid: String,
    ) -> Result<Subscription, PubsubError> {
        let pending = self.meta.config.access_model == AccessModel::Authorize
            && a.affiliation < Affiliation::Member;
        if !pending {
            self.can_read(a)?;
        } else if a.affiliation == Affiliation::Outcast {
            return Err(PubsubError::forbidden());
        }
        match self.subscription(jid) {
            Some(s) if s.state == SubState::Pending => {
                return Err(PubsubError::app(
                    StanzaErrorCondition::NotAuthorized,
                    PubsubAppError::PendingSubscription,
                ))
            }
            Some(s) => return Ok(s.clone()),
            None => {}
        }
        if self.meta.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(too_many());
        }
        let s = Subscription {
            jid: jid.to_owned(),
            state: if pending {
                SubState::Pending
            } else {
                SubState::Subscribed
            },
            subid,
        };
        self.meta.subscriptions.push(s.clone());
        Ok(s)
    }

    /// Checks the `subid` of an items request by `bare` (§6.5.9.2): it must be the id of one of
    /// the subscriptions of `bare` or its resources (each has its own id, one per JID), else
    /// `not-acceptable` + `invalid-subid`.
    pub fn check_subid(&self, bare: &str, subid: &str) -> Result<(), PubsubError> {
        let mine = self.meta.subscriptions.iter().any(|s| {
            s.subid == subid && crate::jid::Jid::parse(&s.jid).is_ok_and(|j| j.bare_str() == bare)
        });
        if mine {
            Ok(())
        } else {
            Err(PubsubError::app(
                StanzaErrorCondition::NotAcceptable,
                PubsubAppError::InvalidSubid,
            ))
        }
    }

    /// Removes the subscription of `jid` (§6.2); `unexpected-request` + `not-subscribed` when there
    /// is none, `not-acceptable` + `invalid-subid` when the subid does not match.
    pub fn unsubscribe(&mut self, jid: &str, subid: Option<&str>) -> Result<(), PubsubError> {
        let Some(at) = self.meta.subscriptions.iter().position(|s| s.jid == jid) else {
            return Err(PubsubError::app(
                StanzaErrorCondition::UnexpectedRequest,
                PubsubAppError::NotSubscribed,
            ));
        };
        if subid.is_some_and(|id| id != self.meta.subscriptions[at].subid) {
            return Err(PubsubError::app(
                StanzaErrorCondition::NotAcceptable,
                PubsubAppError::InvalidSubid,
            ));
        }
        self.meta.subscriptions.remove(at);
        Ok(())
    }

    /// Sets the state of `jid`'s subscription by the owner (§8.8.2); `none` removes it, a new JID
    /// gets `subid`.
    pub fn set_subscription(
        &mut self,
        jid: &str,
        state: SubState,
        subid: String,
    ) -> Result<(), PubsubError> {
        let at = self.meta.subscriptions.iter().position(|s| s.jid == jid);
        match (at, state) {
            (Some(at), SubState::None) => {
                self.meta.subscriptions.remove(at);
            }
            (Some(at), st) => self.meta.subscriptions[at].state = st,
            (None, SubState::None) => {}
            (None, _) if self.meta.subscriptions.len() >= MAX_SUBSCRIPTIONS => {
                return Err(too_many())
            }
            (None, st) => self.meta.subscriptions.push(Subscription {
                jid: jid.to_owned(),
                state: st,
                subid,
            }),
        }
        Ok(())
    }

    /// The owner's subscription changes (§8.8.2), all or none: a refused one leaves the node as it
    /// was. New subscriptions get ids from `subid`.
    pub fn set_subscriptions(
        &mut self,
        changes: &[(crate::jid::Jid, SubState)],
        mut subid: impl FnMut() -> String,
    ) -> Result<(), PubsubError> {
        self.all_or_none(changes, |n, (jid, st)| {
            n.set_subscription(jid.as_str(), *st, subid())
        })
    }

    /// The owner's affiliation changes (§8.9.2) by bare JID, all or none.
    pub fn set_affiliations(
        &mut self,
        changes: &[(crate::jid::Jid, Affiliation)],
    ) -> Result<(), PubsubError> {
        self.all_or_none(changes, |n, (jid, aff)| {
            n.set_affiliation(jid.bare_str(), *aff)
        })
    }

    fn all_or_none<T>(
        &mut self,
        changes: &[T],
        mut f: impl FnMut(&mut Node, &T) -> Result<(), PubsubError>,
    ) -> Result<(), PubsubError> {
        let before = self.meta.clone();
        for c in changes {
            if let Err(e) = f(self, c) {
                self.meta = before;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Subscribed JIDs (state `subscribed`), for notifications.
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscription> {
        self.meta
            .subscriptions
            .iter()
            .filter(|s| s.state == SubState::Subscribed)
    }
}
