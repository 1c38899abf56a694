//! What PEP needs from entity capabilities (XEP-0115), in one place: which `ver` a presence
//! advertises, and whether the entity behind a `ver` wants notifications of a node (`NODE+notify`).
//!
//! Until the `caps` module is merged this reads the `<c/>` element itself and knows no features
//! (every contact's interest is unknown). On merge, [`caps_ver`] becomes `crate::modules::caps::parse`
//! and [`wants`] a look-up in `crate::modules::caps::features`; the caps module's "caps learned" hook
//! calls [`super::caps_learned`].

use crate::shard::Extensions;
use crate::xml::Stanza;

/// `http://jabber.org/protocol/caps`.
const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// The caps `ver` a presence advertises (hashed caps only: legacy caps without `hash` are
/// ignored, as the caps module does).
pub fn caps_ver(presence: &Stanza) -> Option<String> {
    let el = presence.tree().ok()?;
    let c = el.get_child("c", NS_CAPS)?;
    c.attr("hash")?;
    c.attr("ver").map(str::to_owned)
}

/// Whether the entity advertising `ver` wants notifications of `node`: `None` while its features
/// are unknown.
pub fn wants(ext: &Extensions, ver: &str, node: &str) -> Option<bool> {
    let _ = ext;
    #[cfg(test)]
    if let Some(features) = test::features(ver) {
        return Some(features.iter().any(|f| *f == format!("{node}+notify")));
    }
    let _ = (ver, node);
    None
}

/// Caps known to the tests of this module, per thread (each test runs on its own), until the caps
/// module provides them.
#[cfg(test)]
pub(super) mod test {
    use std::cell::RefCell;

    thread_local! {
        static KNOWN: RefCell<Vec<(String, Vec<String>)>> = const { RefCell::new(Vec::new()) };
    }

    /// Makes `ver` known with `features`.
    pub fn learn(ver: &str, features: &[&str]) {
        KNOWN.with(|k| {
            k.borrow_mut().push((
                ver.to_owned(),
                features.iter().map(|f| f.to_string()).collect(),
            ))
        });
    }

    pub(super) fn features(ver: &str) -> Option<Vec<String>> {
        KNOWN.with(|k| {
            k.borrow()
                .iter()
                .find(|(v, _)| v == ver)
                .map(|(_, f)| f.clone())
        })
    }
}
