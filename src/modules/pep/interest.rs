//! What PEP needs from entity capabilities (XEP-0115, module `caps`), in one place: which `ver` a
//! presence advertises, whether the entity behind a `ver` wants notifications of a node
//! (`NODE+notify`), and the "caps learned" callback that sends the last items then wanted.

use crate::hooks::HookResult;
use crate::modules::caps;
use crate::shard::Extensions;
use crate::xml::Stanza;

/// The caps `ver` a presence advertises (hashed caps only: legacy caps without `hash` are
/// ignored, as the caps module does).
pub fn caps_ver(presence: &Stanza) -> Option<String> {
    caps::parse(presence).map(|c| c.ver)
}

/// Whether the entity advertising `ver` wants notifications of `node`: `None` while its features
/// are unknown (or the caps module is off).
pub fn wants(ext: &Extensions, ver: &str, node: &str) -> Option<bool> {
    caps::features(ext, ver).map(|info| info.notify(node))
}

/// Registers [`super::caps_learned`] with the caps module on this shard: a `ver` learned here may
/// make full JIDs that advertised it want last items.
pub fn watch(ext: &mut Extensions) {
    caps::on_learned(ext, 50, super::NAME, |learned, ctx| {
        let ver = learned.ver.clone();
        // The callback has no `Shard`; the work runs right after it, on this shard.
        ctx.run_on(
            ctx.shard,
            Box::new(move |shard| super::caps_learned(shard, &ver)),
        );
        HookResult::Continue
    });
}
