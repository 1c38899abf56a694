//! Private XML storage (XEP-0049): one serialized fragment per (user, namespace).

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};
use crate::jid::BareJid;

/// What [`Store::private_set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateSet {
    /// Every fragment stored.
    Stored,
    /// The user's fragments would exceed the byte limit: nothing was stored.
    TooLarge,
}

impl Store {
    /// The fragment `user` stored under `namespace`.
    pub fn private_get(
        &self,
        user: &BareJid,
        namespace: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let q = sql(
            "SELECT xml FROM private_storage WHERE domain = ?1 AND username = ?2 AND namespace = ?3",
        );
        self.row(q, args![user.domain(), node, namespace])?
            .map(|mut r| r.bytes(0))
            .transpose()
    }

    /// Stores (replacing) each `(namespace, xml)` fragment, all or none: when the user's fragments
    /// would then total more than `max_bytes`, nothing changes. The user's private storage lock
    /// (PostgreSQL) keeps two sets from both passing the limit. `NoSuchUser` when the account
    /// does not exist (any more).
    pub fn private_set(
        &self,
        user: &BareJid,
        fragments: &[(String, Vec<u8>)],
        max_bytes: u64,
    ) -> Result<PrivateSet, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let lock = format!("private {user}");
        self.account_write(user, Some(&lock), || {
            let put = sql(
                "INSERT INTO private_storage (domain, username, namespace, xml) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (domain, username, namespace) DO UPDATE SET xml = excluded.xml",
            );
            for (ns, xml) in fragments {
                self.exec(put, args![user.domain(), node, ns, xml])?;
            }
            let total = self.int(
                sql("SELECT coalesce(sum(length(xml)), 0) FROM private_storage
                     WHERE domain = ?1 AND username = ?2"),
                args![user.domain(), node],
            )?;
            if total.max(0) as u64 > max_bytes {
                return Ok(End::Rollback(PrivateSet::TooLarge));
            }
            Ok(End::Commit(PrivateSet::Stored))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    #[test]
    fn set_get_and_limit_is_all_or_nothing() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let u = BareJid::parse("u@example.com").unwrap_or_else(|e| panic!("{e}"));
            crate::store::testing::add_accounts(&store, &["u@example.com"]);
            let frag = |ns: &str, n: usize| (ns.to_string(), vec![b'x'; n]);
            assert_eq!(store.private_get(&u, "a").ok(), Some(None));
            assert_eq!(
                store.private_set(&u, &[frag("a", 40)], 100).ok(),
                Some(PrivateSet::Stored)
            );
            // Replacing "a" does not count the old value.
            assert_eq!(
                store.private_set(&u, &[frag("a", 60)], 100).ok(),
                Some(PrivateSet::Stored)
            );
            assert_eq!(
                store
                    .private_set(&u, &[frag("b", 30), frag("c", 30)], 100)
                    .ok(),
                Some(PrivateSet::TooLarge)
            );
            assert_eq!(store.private_get(&u, "b").ok(), Some(None));
            assert_eq!(
                store.private_get(&u, "a").ok().flatten().map(|v| v.len()),
                Some(60)
            );
        }
    }
}
