//! Pubsub errors: a stanza error condition plus, where XEP-0060 names one, an application
//! condition in `http://jabber.org/protocol/pubsub#errors` (XEP-0060 §7-§8 error cases).

use super::ns;
use crate::hooks::Acc;
use crate::shard::ShardId;
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition;

/// XEP-0060's application-specific error conditions (`pubsub#errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubsubAppError {
    /// The node is whitelist-only and the requester is not on it.
    ClosedNode,
    /// The node must be configured before use.
    ConfigurationRequired,
    /// The JID in the request does not match the requester.
    InvalidJid,
    /// The subscription options are not valid.
    InvalidOptions,
    /// The payload does not fit the node's type.
    InvalidPayload,
    /// The subscription id is unknown.
    InvalidSubid,
    /// An item was given to a node that takes none (transient notification-only, §7.1.3.6).
    ItemForbidden,
    /// An item is needed (a publish to a persistent node, §7.1.3.6; a retract).
    ItemRequired,
    /// A JID is needed.
    JidRequired,
    /// The node's item limit is reached.
    MaxItemsExceeded,
    /// The owner's node limit is reached.
    MaxNodesExceeded,
    /// A node id is needed.
    NodeidRequired,
    /// The requester is not in an allowed roster group.
    NotInRosterGroup,
    /// The requester is not subscribed.
    NotSubscribed,
    /// The item is larger than the service accepts.
    PayloadTooBig,
    /// The node delivers payloads and none was given.
    PayloadRequired,
    /// The subscription is pending approval.
    PendingSubscription,
    /// The access model wants a presence subscription.
    PresenceSubscriptionRequired,
    /// Several subscriptions: the subid is needed.
    SubidRequired,
    /// Too many subscriptions.
    TooManySubscriptions,
    /// A feature the service does not support (its `pubsub#` name without the prefix).
    Unsupported(&'static str),
    /// The access model is not supported.
    UnsupportedAccessModel,
    /// A publish-options precondition does not hold.
    PreconditionNotMet,
}

impl PubsubAppError {
    /// The element name.
    pub fn as_str(&self) -> &'static str {
        use PubsubAppError::*;
        match self {
            ClosedNode => "closed-node",
            ConfigurationRequired => "configuration-required",
            InvalidJid => "invalid-jid",
            InvalidOptions => "invalid-options",
            InvalidPayload => "invalid-payload",
            InvalidSubid => "invalid-subid",
            ItemForbidden => "item-forbidden",
            ItemRequired => "item-required",
            JidRequired => "jid-required",
            MaxItemsExceeded => "max-items-exceeded",
            MaxNodesExceeded => "max-nodes-exceeded",
            NodeidRequired => "nodeid-required",
            NotInRosterGroup => "not-in-roster-group",
            NotSubscribed => "not-subscribed",
            PayloadTooBig => "payload-too-big",
            PayloadRequired => "payload-required",
            PendingSubscription => "pending-subscription",
            PresenceSubscriptionRequired => "presence-subscription-required",
            SubidRequired => "subid-required",
            TooManySubscriptions => "too-many-subscriptions",
            Unsupported(_) => "unsupported",
            UnsupportedAccessModel => "unsupported-access-model",
            PreconditionNotMet => "precondition-not-met",
        }
    }

    /// The `<… xmlns='pubsub#errors'/>` element.
    pub fn element(&self) -> Element {
        let e = Element::new(self.as_str(), ns::ERRORS);
        match self {
            PubsubAppError::Unsupported(f) => e.with_attr("feature", *f),
            _ => e,
        }
    }
}

/// A refused pubsub request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pubsub error {cond}{}", app.as_ref().map(|a| format!(" ({})", a.as_str())).unwrap_or_default())]
pub struct PubsubError {
    /// The RFC 6120 condition.
    pub cond: StanzaErrorCondition,
    /// The XEP-0060 condition, if any.
    pub app: Option<PubsubAppError>,
}

impl PubsubError {
    /// An error without application condition.
    pub fn new(cond: StanzaErrorCondition) -> PubsubError {
        PubsubError { cond, app: None }
    }

    /// An error with an application condition.
    pub fn app(cond: StanzaErrorCondition, app: PubsubAppError) -> PubsubError {
        PubsubError {
            cond,
            app: Some(app),
        }
    }

    /// `bad-request` (malformed request).
    pub fn bad_request() -> PubsubError {
        PubsubError::new(StanzaErrorCondition::BadRequest)
    }

    /// `item-not-found` (no such node or item).
    pub fn not_found() -> PubsubError {
        PubsubError::new(StanzaErrorCondition::ItemNotFound)
    }

    /// `forbidden` (not allowed for this affiliation).
    pub fn forbidden() -> PubsubError {
        PubsubError::new(StanzaErrorCondition::Forbidden)
    }

    /// `feature-not-implemented` with `<unsupported feature=…/>`.
    pub fn unsupported(feature: &'static str) -> PubsubError {
        PubsubError::app(
            StanzaErrorCondition::FeatureNotImplemented,
            PubsubAppError::Unsupported(feature),
        )
    }

    /// `conflict` with `<precondition-not-met/>` (XEP-0060 §7.1.5).
    pub fn precondition() -> PubsubError {
        PubsubError::app(
            StanzaErrorCondition::Conflict,
            PubsubAppError::PreconditionNotMet,
        )
    }

    /// The application element to put in the `<error/>` (see `Acc::error_reply_with`).
    pub fn app_element(&self) -> Option<Element> {
        self.app.as_ref().map(PubsubAppError::element)
    }

    /// The error reply to `req` (RFC 6120 §8.3 with the application condition inside the
    /// `<error/>`); `None` for stanzas never answered with an error.
    pub fn reply_to(&self, req: &Acc, shard: ShardId) -> Option<Acc> {
        // XEP-0060 §6.2.3.2: unsubscribing without a subscription is `cancel` (the RFC's usual
        // type for `unexpected-request` is `wait`, which would have the client try again).
        let ty = match (self.cond, &self.app) {
            (StanzaErrorCondition::UnexpectedRequest, Some(PubsubAppError::NotSubscribed)) => {
                crate::xmpp::ErrorType::Cancel
            }
            (cond, _) => cond.default_type(),
        };
        req.error_reply_typed(self.cond, ty, self.app_element(), shard)
    }
}

impl From<crate::xmpp::form::FormError> for PubsubError {
    fn from(e: crate::xmpp::form::FormError) -> PubsubError {
        use crate::xmpp::form::FormError;
        match e {
            // Not a form at all, or another form: a malformed request (RFC 6120 `bad-request`).
            FormError::Malformed | FormError::WrongFormType => PubsubError::bad_request(),
            // XEP-0060 §8.2.5.4: a value the service cannot accept.
            FormError::BadValue(_) => PubsubError::new(StanzaErrorCondition::NotAcceptable),
        }
    }
}
