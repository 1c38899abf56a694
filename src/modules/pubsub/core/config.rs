//! Node configuration (XEP-0060 §16.4.3 `pubsub#node_config`): typed values, the configuration form,
//! a submitted configuration and `publish-options` preconditions (§7.1.5).

use serde::{Deserialize, Serialize};

use super::{ns, Limits, PubsubAppError, PubsubError};
use crate::xml::Element;
use crate::xmpp::form::{self, field, options, Form};
use crate::xmpp::StanzaErrorCondition;

/// Who may subscribe and retrieve items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts with a presence subscription to the owner.
    Presence,
    /// Contacts in allowed roster groups.
    Roster,
    /// Entities with an affiliation (member, publisher, owner).
    Whitelist,
    /// Subscriptions are approved by the owner.
    Authorize,
}

/// Who may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    /// Owners and publishers.
    Publishers,
    /// Subscribers too.
    Subscribers,
    /// Anyone.
    Open,
}

/// When the last published item goes to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    /// Never.
    Never,
    /// On a new subscription.
    OnSub,
    /// On a new subscription and on the subscriber's available presence.
    OnSubAndPresence,
}

/// The `type` of notification messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationType {
    /// `normal`.
    Normal,
    /// `headline`.
    Headline,
}

/// How many items a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxItems {
    /// This many.
    Count(u32),
    /// As many as the service allows (`max`).
    Max,
}

impl MaxItems {
    /// The bound in force under `limits`.
    pub fn resolve(self, limits: &Limits) -> usize {
        match self {
            MaxItems::Count(n) => (n as usize).min(limits.max_items_per_node),
            MaxItems::Max => limits.max_items_per_node,
        }
    }

    fn render(self) -> String {
        match self {
            MaxItems::Count(n) => n.to_string(),
            MaxItems::Max => "max".into(),
        }
    }

    fn parse(s: &str) -> Option<MaxItems> {
        match s {
            "max" => Some(MaxItems::Max),
            n => n.parse().ok().map(MaxItems::Count),
        }
    }
}

/// A node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// Natural-language title.
    pub title: String,
    /// Access model.
    pub access_model: AccessModel,
    /// Publish model.
    pub publish_model: PublishModel,
    /// Items are stored (survive a restart).
    pub persist_items: bool,
    /// Items kept.
    pub max_items: MaxItems,
    /// When the last item is sent.
    pub send_last_published_item: SendLast,
    /// `type` of notifications.
    pub notification_type: NotificationType,
    /// Notifications carry the payload.
    pub deliver_payloads: bool,
    /// Notifications are sent at all.
    pub deliver_notifications: bool,
    /// Retractions are notified.
    pub notify_retract: bool,
    /// Deletion is notified.
    pub notify_delete: bool,
    /// Configuration changes are notified.
    pub notify_config: bool,
    /// Roster groups allowed under the `roster` access model.
    pub roster_groups_allowed: Vec<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            title: String::new(),
            access_model: AccessModel::Open,
            publish_model: PublishModel::Publishers,
            persist_items: true,
            max_items: MaxItems::Count(1),
            send_last_published_item: SendLast::OnSubAndPresence,
            notification_type: NotificationType::Headline,
            deliver_payloads: true,
            deliver_notifications: true,
            notify_retract: true,
            notify_delete: true,
            notify_config: false,
            roster_groups_allowed: Vec::new(),
        }
    }
}

const ACCESS: &[(&str, AccessModel)] = &[
    ("open", AccessModel::Open),
    ("presence", AccessModel::Presence),
    ("roster", AccessModel::Roster),
    ("whitelist", AccessModel::Whitelist),
    ("authorize", AccessModel::Authorize),
];
const PUBLISH: &[(&str, PublishModel)] = &[
    ("publishers", PublishModel::Publishers),
    ("subscribers", PublishModel::Subscribers),
    ("open", PublishModel::Open),
];
const SEND_LAST: &[(&str, SendLast)] = &[
    ("never", SendLast::Never),
    ("on_sub", SendLast::OnSub),
    ("on_sub_and_presence", SendLast::OnSubAndPresence),
];
const NOTIF: &[(&str, NotificationType)] = &[
    ("normal", NotificationType::Normal),
    ("headline", NotificationType::Headline),
];

fn name_of<T: PartialEq + Copy>(table: &[(&'static str, T)], v: T) -> &'static str {
    table.iter().find(|(_, t)| *t == v).map_or("", |(n, _)| *n)
}

fn value_of<T: Copy>(table: &[(&str, T)], var: &str, s: Option<&str>) -> Result<T, PubsubError> {
    table
        .iter()
        .find(|(n, _)| Some(*n) == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| form::FormError::BadValue(var.into()).into())
}

fn names<T>(table: &[(&'static str, T)]) -> Vec<&'static str> {
    table.iter().map(|(n, _)| *n).collect()
}

impl AccessModel {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        name_of(ACCESS, self)
    }
}

impl NotificationType {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        name_of(NOTIF, self)
    }
}

/// Fields of the form this core understands, each with its current value in wire form.
fn values(c: &NodeConfig) -> Vec<(&'static str, Vec<String>)> {
    let b = |v: bool| if v { "1" } else { "0" }.to_owned();
    vec![
        ("pubsub#title", vec![c.title.clone()]),
        ("pubsub#access_model", vec![c.access_model.as_str().into()]),
        (
            "pubsub#publish_model",
            vec![name_of(PUBLISH, c.publish_model).into()],
        ),
        ("pubsub#persist_items", vec![b(c.persist_items)]),
        ("pubsub#max_items", vec![c.max_items.render()]),
        (
            "pubsub#send_last_published_item",
            vec![name_of(SEND_LAST, c.send_last_published_item).into()],
        ),
        (
            "pubsub#notification_type",
            vec![c.notification_type.as_str().into()],
        ),
        ("pubsub#deliver_payloads", vec![b(c.deliver_payloads)]),
        (
            "pubsub#deliver_notifications",
            vec![b(c.deliver_notifications)],
        ),
        ("pubsub#notify_retract", vec![b(c.notify_retract)]),
        ("pubsub#notify_delete", vec![b(c.notify_delete)]),
        ("pubsub#notify_config", vec![b(c.notify_config)]),
        (
            "pubsub#roster_groups_allowed",
            c.roster_groups_allowed.clone(),
        ),
    ]
}

impl NodeConfig {
    /// The configuration form (`type='form'`) with the current values, offering every access
    /// model.
    pub fn form(&self) -> Element {
        self.form_offering(|_| true)
    }

    /// The configuration form offering only the access models `offered` accepts (a form must not
    /// offer what its service then refuses).
    pub fn form_offering(&self, offered: impl Fn(AccessModel) -> bool) -> Element {
        let access: Vec<&str> = ACCESS
            .iter()
            .filter(|(_, m)| offered(*m))
            .map(|(n, _)| *n)
            .collect();
        self.form_as("form", ns::NODE_CONFIG, &access)
    }

    /// The node's metadata for its disco#info (§5.4): the configuration's values as a result form
    /// of type `pubsub#meta-data`.
    pub fn meta_data(&self) -> Element {
        self.form_as("result", ns::META_DATA, &names(ACCESS))
    }

    fn form_as(&self, ty: &str, form_type: &str, access: &[&str]) -> Element {
        let mut x = form::new_form(ty, form_type);
        for (var, vals) in values(self) {
            let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
            let f = match var {
                "pubsub#title" => field(var, "text-single", Some("Title"), &vals),
                "pubsub#max_items" => field(var, "text-single", Some("Items kept"), &vals),
                "pubsub#roster_groups_allowed" => {
                    field(var, "list-multi", Some("Roster groups allowed"), &vals)
                }
                "pubsub#access_model" => options(
                    field(var, "list-single", Some("Access model"), &vals),
                    access,
                ),
                "pubsub#publish_model" => options(
                    field(var, "list-single", Some("Publish model"), &vals),
                    &names(PUBLISH),
                ),
                "pubsub#send_last_published_item" => options(
                    field(var, "list-single", Some("Send the last item"), &vals),
                    &names(SEND_LAST),
                ),
                "pubsub#notification_type" => options(
                    field(var, "list-single", Some("Notification type"), &vals),
                    &names(NOTIF),
                ),
                _ => field(var, "boolean", None, &vals),
            };
            x = x.with_child(f);
        }
        x
    }

    /// Applies a submitted `pubsub#node_config` form over this configuration; fields left out keep
    /// their value, fields this server does not know are ignored (XEP-0060 lets a service support a
    /// subset). A `max_items` above `limits` is refused (`not-acceptable`).
    pub fn apply(&self, x: &Element, limits: &Limits) -> Result<NodeConfig, PubsubError> {
        let f = Form::parse_typed(x, ns::NODE_CONFIG)?;
        let mut c = self.clone();
        for fld in &f.fields {
            let var = fld.var.as_str();
            let one = fld.single()?;
            match var {
                "pubsub#title" => c.title = one.unwrap_or("").to_owned(),
                "pubsub#access_model" => c.access_model = value_of(ACCESS, var, one)?,
                "pubsub#publish_model" => c.publish_model = value_of(PUBLISH, var, one)?,
                "pubsub#send_last_published_item" => {
                    c.send_last_published_item = value_of(SEND_LAST, var, one)?
                }
                "pubsub#notification_type" => c.notification_type = value_of(NOTIF, var, one)?,
                "pubsub#persist_items" => c.persist_items = fld.boolean()?,
                "pubsub#deliver_payloads" => c.deliver_payloads = fld.boolean()?,
                "pubsub#deliver_notifications" => c.deliver_notifications = fld.boolean()?,
                "pubsub#notify_retract" => c.notify_retract = fld.boolean()?,
                "pubsub#notify_delete" => c.notify_delete = fld.boolean()?,
                "pubsub#notify_config" => c.notify_config = fld.boolean()?,
                "pubsub#max_items" => {
                    let m = one
                        .and_then(MaxItems::parse)
                        .ok_or_else(|| form::FormError::BadValue(var.into()))?;
                    if let MaxItems::Count(n) = m {
                        if n as usize > limits.max_items_per_node {
                            return Err(form::FormError::BadValue(var.into()).into());
                        }
                    }
                    c.max_items = m;
                }
                "pubsub#roster_groups_allowed" => {
                    c.roster_groups_allowed = fld
                        .values
                        .iter()
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .collect()
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// Checks `publish-options` (a `pubsub#publish-options` form) against this, the existing node's
    /// configuration: every field must hold, an unknown field does not (XEP-0060 §7.1.5:
    /// `conflict` + `precondition-not-met`).
    pub fn check_preconditions(&self, x: &Element, limits: &Limits) -> Result<(), PubsubError> {
        let f = Form::parse_typed(x, ns::PUBLISH_OPTIONS)?;
        let known = values(self);
        for fld in &f.fields {
            if !known.iter().any(|(v, _)| *v == fld.var) {
                return Err(PubsubError::precondition());
            }
            // Compare through the typed values so `true`/`1` and `max`/the limit agree.
            let mut wanted = self
                .apply(&single_field_form(fld), limits)
                .map_err(|_| PubsubError::precondition())?;
            if wanted.max_items.resolve(limits) == self.max_items.resolve(limits) {
                wanted.max_items = self.max_items;
            }
            if wanted != *self {
                return Err(PubsubError::precondition());
            }
        }
        Ok(())
    }

    /// The configuration of a node created by a publish with `publish-options` (§7.1.5: the
    /// options configure the new node); an unknown field or a bad value is `precondition-not-met`.
    pub fn from_publish_options(
        base: &NodeConfig,
        x: &Element,
        limits: &Limits,
    ) -> Result<NodeConfig, PubsubError> {
        let f = Form::parse_typed(x, ns::PUBLISH_OPTIONS)?;
        let known = values(base);
        if f.fields
            .iter()
            .any(|fld| !known.iter().any(|(v, _)| *v == fld.var))
        {
            return Err(PubsubError::precondition());
        }
        let mut c = base.clone();
        for fld in &f.fields {
            c = c
                .apply(&single_field_form(fld), limits)
                .map_err(|_| PubsubError::precondition())?;
        }
        Ok(c)
    }

    /// Transient (items not persisted) and notification-only (no payloads): XEP-0060 §4.3's event
    /// type whose publishes carry no item (§7.1.3.6: one with an item is `item-forbidden`).
    pub fn is_transient_notification(&self) -> bool {
        !self.persist_items && !self.deliver_payloads
    }

    /// Whether a publish without item (§7.1.1) fits this configuration (§7.1.3.6): a persistent
    /// node wants an item (`item-required`, a MUST), a payload node a payload
    /// (`payload-required`); only a transient notification-only node takes none.
    pub fn check_publish_without_item(&self) -> Result<(), PubsubError> {
        let app = if self.persist_items {
            PubsubAppError::ItemRequired
        } else if self.deliver_payloads {
            PubsubAppError::PayloadRequired
        } else {
            return Ok(());
        };
        Err(PubsubError::app(StanzaErrorCondition::BadRequest, app))
    }
}

/// A submit form holding one field, to run it through [`NodeConfig::apply`].
fn single_field_form(fld: &form::Field) -> Element {
    let vals: Vec<&str> = fld.values.iter().map(String::as_str).collect();
    Element::new("x", form::NS)
        .with_attr("type", "submit")
        .with_child(field(&fld.var, "text-single", None, &vals))
}
