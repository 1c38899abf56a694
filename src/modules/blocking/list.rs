//! A block list and XEP-0191 §3.3 / XEP-0016 JID matching.

use std::collections::BTreeSet;

use crate::jid::Jid;

/// One user's blocked JIDs, as of a version (newer versions replace older ones on every shard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    items: BTreeSet<String>,
    /// Store version this list was read at.
    pub version: u64,
}

impl BlockList {
    /// A list of prepared JID strings at `version`.
    pub fn new(items: impl IntoIterator<Item = String>, version: u64) -> BlockList {
        BlockList {
            items: items.into_iter().collect(),
            version,
        }
    }

    /// The blocked JIDs, sorted.
    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(String::as_str)
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `jid` is blocked: an item equal to its full JID, its bare JID, `domain/resource` or
    /// its domain matches (the privacy-list matching XEP-0191 refers to).
    pub fn blocks(&self, jid: &Jid) -> bool {
        if self.items.is_empty() {
            return false;
        }
        if self.items.contains(jid.as_str()) {
            return true;
        }
        let domain = jid.domain();
        if jid.node().is_some() {
            if jid.resource().is_some() && self.items.contains(jid.bare().as_str()) {
                return true;
            }
            if let Some(res) = jid.resource() {
                if self.items.contains(&format!("{domain}/{res}")) {
                    return true;
                }
            }
        }
        self.items.contains(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        Jid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn matching_rules() {
        let l = BlockList::new(
            ["full@a.org/phone", "bare@a.org", "b.org/res", "c.org"].map(String::from),
            1,
        );
        assert!(l.blocks(&j("full@a.org/phone")));
        assert!(!l.blocks(&j("full@a.org/laptop")));
        assert!(!l.blocks(&j("full@a.org")));
        assert!(l.blocks(&j("bare@a.org")));
        assert!(l.blocks(&j("bare@a.org/any")));
        assert!(l.blocks(&j("x@b.org/res")));
        assert!(l.blocks(&j("b.org/res")));
        assert!(!l.blocks(&j("x@b.org/other")));
        assert!(!l.blocks(&j("x@b.org")));
        assert!(l.blocks(&j("anyone@c.org/r")));
        assert!(l.blocks(&j("c.org")));
        assert!(!l.blocks(&j("a.org")));
        assert!(!BlockList::default().blocks(&j("c.org")));
        // Prepared forms: case-folded on parse.
        assert!(l.blocks(&j("BARE@A.org/X")));
    }
}
