//! The full JIDs whose available presence reached one user, with the caps `ver` they advertised:
//! a short list (an idle session sees its own resource and a few contacts), a hash map past it.

use ahash::HashMap;

use crate::jid::FullJid;

/// Entries kept in the list before it becomes a map: scanning this many beats hashing, and one
/// entry costs 48 bytes where a map starts at four buckets (about 210 bytes per user).
const LIST_MAX: usize = 16;

/// Full JID -> caps `ver`, for one user.
#[derive(Debug)]
pub(super) enum Seen {
    /// At most [`LIST_MAX`] entries, in no particular order.
    List(Vec<(FullJid, Option<String>)>),
    /// More than [`LIST_MAX`] entries at some point (boxed: a user's entry stays three words).
    Map(Box<HashMap<FullJid, Option<String>>>),
}

impl Default for Seen {
    fn default() -> Self {
        Seen::List(Vec::new())
    }
}

impl Seen {
    /// Number of JIDs.
    pub fn len(&self) -> usize {
        match self {
            Seen::List(v) => v.len(),
            Seen::Map(m) => m.len(),
        }
    }

    /// True when no JID is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caps `ver` recorded for `jid`, if `jid` is recorded.
    pub fn get(&self, jid: &FullJid) -> Option<&Option<String>> {
        match self {
            Seen::List(v) => v.iter().find(|(j, _)| j == jid).map(|(_, ver)| ver),
            Seen::Map(m) => m.get(jid),
        }
    }

    /// Whether `jid` is recorded.
    pub fn contains_key(&self, jid: &FullJid) -> bool {
        self.get(jid).is_some()
    }

    /// Records `jid` with `ver`; returns the `ver` it had.
    pub fn insert(&mut self, jid: FullJid, ver: Option<String>) -> Option<Option<String>> {
        match self {
            Seen::List(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(j, _)| *j == jid) {
                    return Some(std::mem::replace(old, ver));
                }
                if v.len() < LIST_MAX {
                    // Exactly one slot for the first entry: most users stay at one.
                    v.reserve_exact(1);
                    v.push((jid, ver));
                    return None;
                }
                let mut m: Box<HashMap<FullJid, Option<String>>> =
                    Box::new(std::mem::take(v).into_iter().collect());
                m.insert(jid, ver);
                *self = Seen::Map(m);
                None
            }
            Seen::Map(m) => m.insert(jid, ver),
        }
    }

    /// Forgets `jid`; returns the `ver` it had.
    pub fn remove(&mut self, jid: &FullJid) -> Option<Option<String>> {
        match self {
            Seen::List(v) => {
                let at = v.iter().position(|(j, _)| j == jid)?;
                Some(v.swap_remove(at).1)
            }
            Seen::Map(m) => m.remove(jid),
        }
    }

    /// Every JID with its `ver` (one of the two halves is empty: no boxed iterator per call).
    pub fn iter(&self) -> impl Iterator<Item = (&FullJid, &Option<String>)> + '_ {
        let (list, map) = match self {
            Seen::List(v) => (v.as_slice(), None),
            Seen::Map(m) => (&[][..], Some(&**m)),
        };
        list.iter()
            .map(|(j, ver)| (j, ver))
            .chain(map.into_iter().flat_map(|m| m.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(i: usize) -> FullJid {
        FullJid::parse(&format!("u{i}@example.com/r")).unwrap()
    }

    /// Inserts, replacements and removals agree with a map, across the switch to one and after.
    #[test]
    fn behaves_like_a_map_on_both_sides_of_the_switch() {
        let mut seen = Seen::default();
        let mut model: HashMap<FullJid, Option<String>> = HashMap::default();
        let mut rng = crate::testing::Rng(7);
        for step in 0..2_000 {
            let j = jid(rng.next(40));
            let ver = (step % 3 != 0).then(|| format!("v{}", step % 5));
            match rng.below(3) {
                0 => assert_eq!(seen.remove(&j), model.remove(&j)),
                _ => assert_eq!(seen.insert(j.clone(), ver.clone()), model.insert(j, ver)),
            }
            assert_eq!(seen.len(), model.len());
            let probe = jid(rng.next(40));
            assert_eq!(seen.get(&probe), model.get(&probe));
            assert_eq!(seen.contains_key(&probe), model.contains_key(&probe));
        }
        assert!(
            matches!(seen, Seen::Map(_)),
            "40 JIDs must have switched to a map"
        );
        let mut all: Vec<_> = seen
            .iter()
            .map(|(j, v)| (j.to_string(), v.clone()))
            .collect();
        let mut want: Vec<_> = model
            .iter()
            .map(|(j, v)| (j.to_string(), v.clone()))
            .collect();
        all.sort();
        want.sort();
        assert_eq!(all, want);
    }

    /// One JID takes one list slot, not a map's four buckets.
    #[test]
    fn one_jid_takes_one_slot() {
        let mut seen = Seen::default();
        seen.insert(jid(1), None);
        match &seen {
            Seen::List(v) => assert_eq!(v.capacity(), 1),
            Seen::Map(_) => panic!("one JID is a list"),
        }
        assert!(!seen.is_empty());
        seen.remove(&jid(1));
        assert!(seen.is_empty());
    }
}
