//! The room configuration and its XEP-0004 form (`muc#roomconfig`, XEP-0045 §10.2).

use serde::{Deserialize, Serialize};

use super::types::{NS_DATA, NS_ROOMCONFIG};
use super::RoomLimits;
use crate::jid::BareJid;
use crate::xml::Element;
use crate::xmpp::form::{field, options};

/// Who may see occupants' real JIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Whois {
    /// Moderators only (semi-anonymous room).
    Moderators,
    /// Every occupant (non-anonymous room).
    Anyone,
}

/// Who may send private messages to other occupants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    /// Every occupant.
    Anyone,
    /// Participants and moderators.
    Participants,
    /// Moderators only.
    Moderators,
    /// Nobody.
    None,
}

/// A room's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomConfig {
    /// Natural-language name (empty: none).
    pub name: String,
    /// Short description.
    pub description: String,
    /// Kept without occupants and stored.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    /// Only members (and admins, owners) may enter.
    pub members_only: bool,
    /// Only participants and moderators may speak; newcomers without affiliation are visitors.
    pub moderated: bool,
    /// Password needed to enter (`None`: unsecured).
    pub password: Option<String>,
    /// Most occupants (capped by the service's limit).
    pub max_users: u32,
    /// Who sees real JIDs.
    pub whois: Whois,
    /// Messages of history kept (capped by the service's limit).
    pub history_length: u32,
    /// Who may send private messages.
    pub allow_pm: AllowPm,
    /// Whether occupants without admin rights may invite to a members-only room.
    pub allow_invites: bool,
    /// Whether participants may change the subject (moderators always may).
    pub change_subject: bool,
}

impl RoomConfig {
    /// The settings of a new room.
    pub fn new(limits: &RoomLimits) -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users: limits.max_occupants,
            whois: Whois::Moderators,
            history_length: 20.min(limits.max_history),
            allow_pm: AllowPm::Anyone,
            allow_invites: false,
            change_subject: false,
        }
    }

    /// The configuration form filled with the current values, plus the owner and admin lists.
    pub fn form(&self, owners: &[BareJid], admins: &[BareJid]) -> Element {
        let b = |v: bool| if v { "1" } else { "0" };
        let whois = match self.whois {
            Whois::Moderators => "moderators",
            Whois::Anyone => "anyone",
        };
        let allow_pm = match self.allow_pm {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        };
        let max = self.max_users.to_string();
        let hist = self.history_length.to_string();
        let owners: Vec<&str> = owners.iter().map(BareJid::as_str).collect();
        let admins: Vec<&str> = admins.iter().map(BareJid::as_str).collect();
        Element::new("x", NS_DATA)
            .with_attr("type", "form")
            .with_child(Element::new("title", NS_DATA).with_text("Room configuration"))
            .with_child(field("FORM_TYPE", "hidden", None, &[NS_ROOMCONFIG]))
            .with_child(field(
                "muc#roomconfig_roomname",
                "text-single",
                Some("Name"),
                &[&self.name],
            ))
            .with_child(field(
                "muc#roomconfig_roomdesc",
                "text-single",
                Some("Description"),
                &[&self.description],
            ))
            .with_child(bool_field(
                "muc#roomconfig_persistentroom",
                "Persistent",
                b(self.persistent),
            ))
            .with_child(bool_field(
                "muc#roomconfig_publicroom",
                "Listed in the directory",
                b(self.public),
            ))
            .with_child(bool_field(
                "muc#roomconfig_membersonly",
                "Members only",
                b(self.members_only),
            ))
            .with_child(bool_field(
                "muc#roomconfig_moderatedroom",
                "Moderated",
                b(self.moderated),
            ))
            .with_child(bool_field(
                "muc#roomconfig_passwordprotectedroom",
                "Password protected",
                b(self.password.is_some()),
            ))
            .with_child(field(
                "muc#roomconfig_roomsecret",
                "text-private",
                Some("Password"),
                &[self.password.as_deref().unwrap_or("")],
            ))
            .with_child(field(
                "muc#roomconfig_maxusers",
                "text-single",
                Some("Maximum occupants"),
                &[&max],
            ))
            .with_child(options(
                field(
                    "muc#roomconfig_whois",
                    "list-single",
                    Some("Who may see real JIDs"),
                    &[whois],
                ),
                &["moderators", "anyone"],
            ))
            .with_child(field(
                "muc#maxhistoryfetch",
                "text-single",
                Some("Messages of history kept"),
                &[&hist],
            ))
            .with_child(options(
                field(
                    "muc#roomconfig_allowpm",
                    "list-single",
                    Some("Who may send private messages"),
                    &[allow_pm],
                ),
                &["anyone", "participants", "moderators", "none"],
            ))
            .with_child(bool_field(
                "muc#roomconfig_allowinvites",
                "Occupants may invite",
                b(self.allow_invites),
            ))
            .with_child(bool_field(
                "muc#roomconfig_changesubject",
                "Participants may change the subject",
                b(self.change_subject),
            ))
            .with_child(field(
                "muc#roomconfig_roomowners",
                "jid-multi",
                Some("Owners"),
                &owners,
            ))
            .with_child(field(
                "muc#roomconfig_roomadmins",
                "jid-multi",
                Some("Admins"),
                &admins,
            ))
    }
}

/// A submitted configuration: the new settings and the owner/admin lists if given.
#[derive(Debug)]
pub struct Submitted {
    /// The settings after the submission.
    pub config: RoomConfig,
    /// `muc#roomconfig_roomowners` if present.
    pub owners: Option<Vec<BareJid>>,
    /// `muc#roomconfig_roomadmins` if present.
    pub admins: Option<Vec<BareJid>>,
}

/// Why a submitted form was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A field's value is not one it accepts.
    BadValue(String),
    /// The FORM_TYPE is not `muc#roomconfig`.
    WrongFormType,
}

/// Applies a submitted `<x type='submit'/>` over `current`; fields left out keep their value.
pub fn parse_submit(
    x: &Element,
    current: &RoomConfig,
    limits: &RoomLimits,
) -> Result<Submitted, FormError> {
    let mut c = current.clone();
    let mut owners = None;
    let mut admins = None;
    let mut secret: Option<String> = None;
    let mut protected: Option<bool> = None;
    for f in x.child_elements().filter(|f| f.name == "field") {
        let Some(var) = f.attr("var") else { continue };
        let values: Vec<String> = f
            .child_elements()
            .filter(|v| v.name == "value")
            .map(Element::text)
            .collect();
        let one = values.first().map(String::as_str).unwrap_or("");
        match var {
            "FORM_TYPE" if one != NS_ROOMCONFIG => return Err(FormError::WrongFormType),
            "muc#roomconfig_roomname" => c.name = one.to_owned(),
            "muc#roomconfig_roomdesc" => c.description = one.to_owned(),
            "muc#roomconfig_persistentroom" => c.persistent = boolean(var, one)?,
            "muc#roomconfig_publicroom" => c.public = boolean(var, one)?,
            "muc#roomconfig_membersonly" => c.members_only = boolean(var, one)?,
            "muc#roomconfig_moderatedroom" => c.moderated = boolean(var, one)?,
            "muc#roomconfig_passwordprotectedroom" => protected = Some(boolean(var, one)?),
            "muc#roomconfig_roomsecret" => secret = Some(one.to_owned()),
            "muc#roomconfig_maxusers" => {
                c.max_users = match one {
                    "" | "none" => limits.max_occupants,
                    n => n
                        .parse::<u32>()
                        .map_err(|_| FormError::BadValue("muc#roomconfig_maxusers".into()))?
                        .clamp(1, limits.max_occupants),
                }
            }
            "muc#roomconfig_whois" => {
                c.whois = match one {
                    "moderators" => Whois::Moderators,
                    "anyone" => Whois::Anyone,
                    _ => return Err(FormError::BadValue("muc#roomconfig_whois".into())),
                }
            }
            "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => {
                c.history_length = one
                    .parse::<u32>()
                    .map_err(|_| FormError::BadValue("muc#maxhistoryfetch".into()))?
                    .min(limits.max_history)
            }
            "muc#roomconfig_allowpm" => {
                c.allow_pm = match one {
                    "anyone" => AllowPm::Anyone,
                    "participants" => AllowPm::Participants,
                    "moderators" => AllowPm::Moderators,
                    "none" => AllowPm::None,
                    _ => return Err(FormError::BadValue("muc#roomconfig_allowpm".into())),
                }
            }
            "muc#roomconfig_allowinvites" => c.allow_invites = boolean(var, one)?,
            "muc#roomconfig_changesubject" => c.change_subject = boolean(var, one)?,
            "muc#roomconfig_roomowners" => owners = Some(jids(&values)?),
            "muc#roomconfig_roomadmins" => admins = Some(jids(&values)?),
            _ => {}
        }
    }
    // The secret only counts when the room is (or stays) password protected. A form that gives a
    // secret and says nothing of protection asks for it (Prosody's form has only the secret):
    // dropping the password silently would leave open a room its owner believes closed.
    let protected = protected
        .unwrap_or(current.password.is_some() || secret.as_deref().is_some_and(|s| !s.is_empty()));
    c.password = match (protected, secret) {
        (false, _) => None,
        (true, Some(s)) if !s.is_empty() => Some(s),
        (true, _) => current.password.clone(),
    };
    // §10.1.3: a password-protected room with a blank password is refused, not made open.
    if protected && c.password.is_none() {
        return Err(FormError::BadValue("muc#roomconfig_roomsecret".into()));
    }
    Ok(Submitted {
        config: c,
        owners,
        admins,
    })
}

fn boolean(var: &str, v: &str) -> Result<bool, FormError> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(FormError::BadValue(var.into())),
    }
}

fn jids(values: &[String]) -> Result<Vec<BareJid>, FormError> {
    values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| {
            crate::jid::Jid::parse(v)
                .map(|j| j.bare())
                .map_err(|_| FormError::BadValue("muc#roomconfig_roomowners".into()))
        })
        .collect()
}

fn bool_field(var: &str, label: &str, v: &str) -> Element {
    field(var, "boolean", Some(label), &[v])
}
