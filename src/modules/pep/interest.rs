//! What PEP needs from entity capabilities (XEP-0115, the `caps` module), in one place: which
//! `ver` a presence advertises, and whether the entity behind a `ver` wants notifications of a
//! node (`NODE+notify`). The caps module's "caps learned" callback calls [`super::caps_learned`].

use crate::modules::caps;
use crate::shard::Extensions;
use crate::xml::Stanza;

/// The caps `ver` a presence advertises (hashed caps only).
pub fn caps_ver(presence: &Stanza) -> Option<String> {
    caps::parse(presence).map(|c| c.ver)
}

/// Whether the entity advertising `ver` wants notifications of `node`: `None` while its features
/// are unknown (or the caps module is off).
pub fn wants(ext: &Extensions, ver: &str, node: &str) -> Option<bool> {
    caps::features(ext, ver).map(|info| info.notify(node))
}
