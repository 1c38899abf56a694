//! MUC namespaces, affiliations and roles (XEP-0045 §5).

use serde::{Deserialize, Serialize};

/// `http://jabber.org/protocol/muc` (join requests).
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// `http://jabber.org/protocol/muc#user` (occupant information, invitations).
pub const NS_MUC_USER: &str = crate::xmpp::ns::MUC_USER;
/// `http://jabber.org/protocol/muc#admin` (role and affiliation lists).
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// `http://jabber.org/protocol/muc#owner` (configuration, destruction).
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// FORM_TYPE of the room configuration form.
pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// FORM_TYPE of the room information form (disco#info extension).
pub const NS_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = crate::xmpp::ns::DELAY;

/// A long-lived relation of a bare JID to the room, ordered by rank (outcast lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// Member (may enter a members-only room).
    Member,
    /// Administrator.
    Admin,
    /// Owner.
    Owner,
}

impl Affiliation {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }

    /// True for admins and owners (they moderate and manage lists).
    pub fn is_admin(self) -> bool {
        self >= Affiliation::Admin
    }
}

/// A temporary relation of an occupant to the room, ordered by privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    None,
    /// May not speak in a moderated room.
    Visitor,
    /// Ordinary occupant.
    Participant,
    /// May kick and (de)voice.
    Moderator,
}

impl Role {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}
