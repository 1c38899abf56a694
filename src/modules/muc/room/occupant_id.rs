//! XEP-0421 occupant ids: a stable, pseudonymous id per real bare JID and room, attached to every
//! presence and message the room sends about an occupant, so that clients can tell who sent what
//! (message corrections, reactions, moderation) without seeing real JIDs.
//!
//! The id is HMAC-SHA256 under one service secret over the room's JID and the user's bare JID
//! (XEP-0421 §4.1, the second suggestion): stable across nick changes, sessions and restarts (the
//! secret is kept in the store), different in every room, and not computable without the secret.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::jid::BareJid;
use crate::xml::{Element, Node};

/// The XEP-0421 namespace (also the room's disco#info feature).
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";

/// The service secret occupant ids are computed under.
#[derive(Clone)]
pub struct OccupantIds([u8; 32]);

impl std::fmt::Debug for OccupantIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OccupantIds(..)")
    }
}

impl OccupantIds {
    /// Ids under `key`.
    pub fn new(key: [u8; 32]) -> OccupantIds {
        OccupantIds(key)
    }

    /// The id of `user` in `room` (43 URL-safe base64 characters; XEP-0421 allows 128).
    pub fn id(&self, room: &BareJid, user: &BareJid) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        // A NUL cannot occur in a JID, so (room, user) pairs cannot run into each other.
        mac.update(room.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(user.as_str().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// The `<occupant-id/>` element of `id`.
pub fn element(id: &str) -> Element {
    Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", id)
}

/// True for an `<occupant-id/>` child: a client's own is never passed on (XEP-0421 §4: the room
/// replaces it), whether or not the room adds one.
pub fn is_occupant_id(n: &Node) -> bool {
    matches!(n, Node::Element(e) if e.name == "occupant-id" && e.ns == NS_OCCUPANT_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ids_are_stable_per_room_and_user_and_keyed() {
        let ids = OccupantIds::new([7; 32]);
        let (r1, r2) = (jid("r1@muc.x"), jid("r2@muc.x"));
        let (a, b) = (jid("a@x"), jid("b@x"));
        let id = ids.id(&r1, &a);
        assert_eq!(id, ids.id(&r1, &a));
        assert!(id.len() <= 128 && !id.is_empty());
        assert_ne!(id, ids.id(&r1, &b), "another user");
        assert_ne!(id, ids.id(&r2, &a), "another room");
        assert_ne!(id, OccupantIds::new([8; 32]).id(&r1, &a), "another secret");
    }
}
