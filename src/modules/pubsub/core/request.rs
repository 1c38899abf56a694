//! Typed pubsub requests (XEP-0060 §6-§8) parsed from an IQ's `<pubsub/>` payload in the
//! `pubsub` or `pubsub#owner` namespace.

use super::node::{Affiliation, SubState};
use super::{ns, PubsubAppError, PubsubError};
use crate::jid::Jid;
use crate::xml::{Element, StanzaType};
use crate::xmpp::form;
use crate::xmpp::StanzaErrorCondition;

/// An item as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishItem {
    /// The id the publisher gave (`None`: the service makes one).
    pub id: Option<String>,
    /// The payload (`None`: a notification-only publish).
    pub payload: Option<Element>,
}

/// What a request says besides its [`Request`], read by [`Request::parse_with_extras`]. Kept beside
/// the request rather than in it because PEP's handler (`modules::pep`) matches every field of
/// every [`Request`]; only the pubsub service acts on these so far, and [`Request::parse`] refuses
/// a publish without item as every persistent node must.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The `<publish/>` held no `<item/>` (its [`PublishItem`] is then empty): only a transient
    /// notification-only node takes that (XEP-0060 §7.1.1, §7.1.3.6; see
    /// [`NodeConfig::check_publish_without_item`](super::NodeConfig::check_publish_without_item)).
    pub no_item: bool,
    /// The `subid` of `<items/>`: it must name one of the requester's subscriptions (§6.5.9.2).
    pub subid: Option<String>,
}

impl PublishItem {
    /// The item as published now by `publisher` (a full JID), with a new id if it had none.
    pub fn into_item(self, publisher: &str) -> super::Item {
        super::Item {
            id: self.id.unwrap_or_else(super::new_id),
            publisher: publisher.to_owned(),
            published: super::now_micros(),
            payload: self.payload,
        }
    }
}

/// A pubsub request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `<create node=…/>` (`None`: an instant node), with an optional configuration form.
    Create {
        /// The node's name.
        node: Option<String>,
        /// `<configure><x/></configure>`.
        config: Option<Element>,
    },
    /// `<publish node=…><item/></publish>` with optional `<publish-options><x/></publish-options>`.
    Publish {
        /// The node.
        node: String,
        /// The item (empty for a `<publish/>` without one, [`Extras::no_item`]).
        item: PublishItem,
        /// The `pubsub#publish-options` form.
        options: Option<Element>,
    },
    /// `<retract node=… notify=…><item id=…/>…</retract>`.
    Retract {
        /// The node.
        node: String,
        /// Item ids (at least one).
        ids: Vec<String>,
        /// `notify='true'`.
        notify: bool,
    },
    /// `<subscribe node=… jid=…/>`.
    Subscribe {
        /// The node.
        node: String,
        /// The JID to subscribe.
        jid: Jid,
    },
    /// `<unsubscribe node=… jid=… subid=…/>`.
    Unsubscribe {
        /// The node.
        node: String,
        /// The JID to unsubscribe.
        jid: Jid,
        /// The subscription id, if given.
        subid: Option<String>,
    },
    /// `<items node=… max_items=…><item id=…/>…</items>` (its `subid`: [`Extras::subid`]).
    Items {
        /// The node.
        node: String,
        /// The newest this many.
        max: Option<usize>,
        /// Only these ids (empty: all).
        ids: Vec<String>,
    },
    /// `<options/>` (subscription options): get or set.
    Options {
        /// The node.
        node: String,
    },
    /// `<subscriptions node=…/>`: the requester's subscriptions.
    Subscriptions {
        /// Only this node.
        node: Option<String>,
    },
    /// `<affiliations node=…/>`: the requester's affiliations.
    Affiliations {
        /// Only this node.
        node: Option<String>,
    },
    /// Owner `<default/>`: the default node configuration (§8.3). The `<default/>` of the plain
    /// namespace asks for default subscription options (§6.4), which are not supported: it is
    /// refused when parsed.
    Default,
    /// Owner `<configure node=…/>` (get).
    ConfigureGet {
        /// The node.
        node: String,
    },
    /// Owner `<configure node=…><x/></configure>` (set).
    ConfigureSet {
        /// The node.
        node: String,
        /// The submitted form.
        form: Element,
    },
    /// Owner `<delete node=…/>`.
    Delete {
        /// The node.
        node: String,
        /// `<redirect uri=…/>`.
        redirect: Option<String>,
    },
    /// Owner `<purge node=…/>`.
    Purge {
        /// The node.
        node: String,
    },
    /// Owner `<subscriptions node=…/>` (get).
    OwnerSubscriptions {
        /// The node.
        node: String,
    },
    /// Owner `<subscriptions node=…><subscription jid=… subscription=…/></subscriptions>` (set).
    SetSubscriptions {
        /// The node.
        node: String,
        /// New states.
        changes: Vec<(Jid, SubState)>,
    },
    /// Owner `<affiliations node=…/>` (get).
    OwnerAffiliations {
        /// The node.
        node: String,
    },
    /// Owner `<affiliations node=…><affiliation jid=… affiliation=…/></affiliations>` (set).
    SetAffiliations {
        /// The node.
        node: String,
        /// New affiliations.
        changes: Vec<(Jid, Affiliation)>,
    },
}

impl Request {
    /// The node the request is about, if it names one.
    pub fn node(&self) -> Option<&str> {
        use Request::*;
        match self {
            Create { node, .. } | Subscriptions { node } | Affiliations { node } => node.as_deref(),
            Default => None,
            Publish { node, .. }
            | Retract { node, .. }
            | Subscribe { node, .. }
            | Unsubscribe { node, .. }
            | Items { node, .. }
            | Options { node }
            | ConfigureGet { node }
            | ConfigureSet { node, .. }
            | Delete { node, .. }
            | Purge { node }
            | OwnerSubscriptions { node }
            | SetSubscriptions { node, .. }
            | OwnerAffiliations { node }
            | SetAffiliations { node, .. } => Some(node),
        }
    }

    /// Whether the request changes state (answered only to `type='set'`; options go both ways).
    pub fn is_set(&self) -> bool {
        use Request::*;
        !matches!(
            self,
            Items { .. }
                | Options { .. }
                | Subscriptions { .. }
                | Affiliations { .. }
                | Default
                | ConfigureGet { .. }
                | OwnerSubscriptions { .. }
                | OwnerAffiliations { .. }
        )
    }

    /// Parses the `<pubsub/>` child of an IQ of type `iq_type` (`get` or `set`). A publish without
    /// item is `bad-request` + `item-required` (§7.1.3.6): callers that know the node and may take
    /// one use [`Request::parse_with_extras`].
    pub fn parse(iq_type: StanzaType, payload: &Element) -> Result<Request, PubsubError> {
        Request::parse_with_subid(iq_type, payload).map(|(req, _)| req)
    }

    /// [`Request::parse`], keeping the `subid` of an items request (PEP checks it).
    pub fn parse_with_subid(
        iq_type: StanzaType,
        payload: &Element,
    ) -> Result<(Request, Option<String>), PubsubError> {
        let (req, extras) = Request::parse_with_extras(iq_type, payload)?;
        if extras.no_item {
            return Err(item_required());
        }
        Ok((req, extras.subid))
    }

    /// [`Request::parse`], with what the request says besides (a publish without item is parsed,
    /// with an empty [`PublishItem`]).
    pub fn parse_with_extras(
        iq_type: StanzaType,
        payload: &Element,
    ) -> Result<(Request, Extras), PubsubError> {
        if payload.name != "pubsub" {
            return Err(PubsubError::bad_request());
        }
        let set = match iq_type {
            StanzaType::Get => false,
            StanzaType::Set => true,
            _ => return Err(PubsubError::bad_request()),
        };
        let mut extras = Extras::default();
        let req = if payload.ns == ns::PUBSUB {
            parse_user(set, payload, &mut extras)?
        } else if payload.ns == ns::OWNER {
            parse_owner(set, payload)?
        } else {
            return Err(PubsubError::bad_request());
        };
        // Subscription options may be read and written.
        if !matches!(req, Request::Options { .. }) && req.is_set() != set {
            return Err(PubsubError::bad_request());
        }
        Ok((req, extras))
    }
}

/// `bad-request` + `item-required`.
fn item_required() -> PubsubError {
    PubsubError::app(
        StanzaErrorCondition::BadRequest,
        PubsubAppError::ItemRequired,
    )
}

/// The children of the payload in its own namespace.
fn children(payload: &Element) -> Vec<&Element> {
    payload
        .child_elements()
        .filter(|e| e.ns == payload.ns)
        .collect()
}

fn node_attr(e: &Element) -> Result<String, PubsubError> {
    match e.attr("node") {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(PubsubError::app(
            StanzaErrorCondition::BadRequest,
            PubsubAppError::NodeidRequired,
        )),
    }
}

fn jid_attr(e: &Element) -> Result<Jid, PubsubError> {
    let s = e.attr("jid").ok_or(PubsubError::app(
        StanzaErrorCondition::BadRequest,
        PubsubAppError::JidRequired,
    ))?;
    Jid::parse(s)
        .map_err(|_| PubsubError::app(StanzaErrorCondition::BadRequest, PubsubAppError::InvalidJid))
}

/// The `<x xmlns='jabber:x:data'/>` inside `e`, if any.
fn form_in(e: Option<&Element>) -> Option<Element> {
    e.and_then(|e| e.get_child("x", form::NS)).cloned()
}

fn parse_user(set: bool, p: &Element, extras: &mut Extras) -> Result<Request, PubsubError> {
    let kids = children(p);
    let find = |name: &str| kids.iter().copied().find(|e| e.name == name);
    let main = kids
        .iter()
        .copied()
        .find(|e| !matches!(e.name.as_str(), "options" | "configure" | "publish-options"))
        .or_else(|| find("options"))
        .ok_or_else(PubsubError::bad_request)?;
    Ok(match main.name.as_str() {
        "create" => Request::Create {
            node: main
                .attr("node")
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            config: form_in(find("configure")),
        },
        "publish" => {
            let node = node_attr(main)?;
            let mut items = main.child_elements().filter(|e| e.name == "item");
            let item = match (items.next(), items.next()) {
                (Some(i), None) => i,
                // §7.1.1: zero items is a publish too (to a transient notification-only node);
                // the node decides.
                (None, _) => {
                    extras.no_item = true;
                    return Ok(Request::Publish {
                        node,
                        item: PublishItem {
                            id: None,
                            payload: None,
                        },
                        options: form_in(find("publish-options")),
                    });
                }
                // XEP-0060 §7.1.3.6: one item per publish request.
                (Some(_), Some(_)) => {
                    return Err(PubsubError::app(
                        StanzaErrorCondition::BadRequest,
                        PubsubAppError::InvalidPayload,
                    ))
                }
            };
            let mut payloads = item.child_elements();
            let payload = payloads.next().cloned();
            if payloads.next().is_some() {
                return Err(PubsubError::app(
                    StanzaErrorCondition::BadRequest,
                    PubsubAppError::InvalidPayload,
                ));
            }
            Request::Publish {
                node,
                item: PublishItem {
                    id: item.attr("id").filter(|i| !i.is_empty()).map(str::to_owned),
                    payload,
                },
                options: form_in(find("publish-options")),
            }
        }
        "retract" => {
            let ids = item_ids(main);
            if ids.is_empty() {
                return Err(item_required());
            }
            Request::Retract {
                node: node_attr(main)?,
                ids,
                notify: matches!(main.attr("notify"), Some("1" | "true")),
            }
        }
        "subscribe" => Request::Subscribe {
            node: node_attr(main)?,
            jid: jid_attr(main)?,
        },
        "unsubscribe" => Request::Unsubscribe {
            node: node_attr(main)?,
            jid: jid_attr(main)?,
            subid: main.attr("subid").map(str::to_owned),
        },
        "items" => {
            extras.subid = main.attr("subid").map(str::to_owned);
            Request::Items {
                node: node_attr(main)?,
                max: match main.attr("max_items") {
                    None => None,
                    Some(m) => Some(m.parse().map_err(|_| PubsubError::bad_request())?),
                },
                ids: item_ids(main),
            }
        }
        "options" => Request::Options {
            node: node_attr(main)?,
        },
        "subscriptions" => Request::Subscriptions {
            node: main.attr("node").map(str::to_owned),
        },
        "affiliations" => Request::Affiliations {
            node: main.attr("node").map(str::to_owned),
        },
        // §6.4: in this namespace `<default/>` asks for the default subscription options, which
        // the core does not have (§6.4.3); the default node configuration is the owner's
        // `<default/>` (§8.3).
        "default" if !set => return Err(PubsubError::unsupported("retrieve-default-sub")),
        _ => return Err(PubsubError::bad_request()),
    })
}

fn item_ids(e: &Element) -> Vec<String> {
    e.child_elements()
        .filter(|i| i.name == "item")
        .filter_map(|i| i.attr("id"))
        .map(str::to_owned)
        .collect()
}

fn parse_owner(set: bool, p: &Element) -> Result<Request, PubsubError> {
    let kids = children(p);
    let [main] = kids.as_slice() else {
        return Err(PubsubError::bad_request());
    };
    Ok(match (main.name.as_str(), set) {
        ("default", false) => Request::Default,
        ("configure", false) => Request::ConfigureGet {
            node: node_attr(main)?,
        },
        ("configure", true) => Request::ConfigureSet {
            node: node_attr(main)?,
            form: form_in(Some(main)).ok_or_else(PubsubError::bad_request)?,
        },
        ("delete", _) => Request::Delete {
            node: node_attr(main)?,
            redirect: main
                .get_child("redirect", ns::OWNER)
                .and_then(|r| r.attr("uri"))
                .map(str::to_owned),
        },
        ("purge", _) => Request::Purge {
            node: node_attr(main)?,
        },
        ("subscriptions", false) => Request::OwnerSubscriptions {
            node: node_attr(main)?,
        },
        ("subscriptions", true) => Request::SetSubscriptions {
            node: node_attr(main)?,
            changes: main
                .child_elements()
                .filter(|e| e.name == "subscription")
                .map(|e| {
                    let state = e
                        .attr("subscription")
                        .and_then(SubState::parse)
                        .ok_or_else(PubsubError::bad_request)?;
                    Ok((jid_attr(e)?, state))
                })
                .collect::<Result<_, PubsubError>>()?,
        },
        ("affiliations", false) => Request::OwnerAffiliations {
            node: node_attr(main)?,
        },
        ("affiliations", true) => Request::SetAffiliations {
            node: node_attr(main)?,
            changes: main
                .child_elements()
                .filter(|e| e.name == "affiliation")
                .map(|e| {
                    let aff = e
                        .attr("affiliation")
                        .and_then(Affiliation::parse)
                        .ok_or_else(PubsubError::bad_request)?;
                    Ok((jid_attr(e)?, aff))
                })
                .collect::<Result<_, PubsubError>>()?,
        },
        _ => return Err(PubsubError::bad_request()),
    })
}
