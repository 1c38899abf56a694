//! The publish a notification is (XEP-0357 §6): a `<pubsub/>` payload with the summary form in
//! one item, and the registration's publish-options.

use crate::jid::Jid;
use crate::modules::pubsub::core::ns as ps;
use crate::xml::Element;
use crate::xmpp::form::{self, new_form};

use super::state::Reg;
use super::{NS, NS_SUMMARY};

/// What the summary form says.
pub struct Summary<'a> {
    /// Messages since the user was last available.
    pub count: u32,
    /// The last one's sender.
    pub sender: Option<&'a Jid>,
    /// The last one's body, when it may be sent.
    pub body: Option<&'a str>,
}

/// The `<pubsub/>` payload of the IQ set publishing `summary` to `reg`'s node.
pub fn publish(reg: &Reg, summary: &Summary<'_>) -> Element {
    let mut x = new_form("submit", NS_SUMMARY).with_child(form::field(
        "message-count",
        "text-single",
        None,
        &[&summary.count.to_string()],
    ));
    if let Some(s) = summary.sender {
        x = x.with_child(form::field(
            "last-message-sender",
            "jid-single",
            None,
            &[s.as_str()],
        ));
    }
    if let Some(b) = summary.body {
        x = x.with_child(form::field("last-message-body", "text-single", None, &[b]));
    }
    let item =
        Element::new("item", ps::PUBSUB).with_child(Element::new("notification", NS).with_child(x));
    let mut pubsub = Element::new("pubsub", ps::PUBSUB).with_child(
        Element::new("publish", ps::PUBSUB)
            .with_attr("node", &reg.node)
            .with_child(item),
    );
    if let Some(f) = &reg.form {
        pubsub =
            pubsub.with_child(Element::new("publish-options", ps::PUBSUB).with_child(f.clone()));
    }
    pubsub
}
