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
    #[cfg(test)]
    if let Some(features) = test::features(ver) {
        return Some(features.iter().any(|f| *f == format!("{node}+notify")));
    }
    caps::features(ext, ver).map(|info| info.notify(node))
}

/// Caps known to the tests of this module without a client answering the caps query, per thread
/// (each test runs on its own).
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
