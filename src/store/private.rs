//! Private XML storage (XEP-0049): one serialized fragment per (user, namespace).

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Store, StoreError};
use crate::jid::BareJid;

/// Creates the private storage table (idempotent).
pub(crate) fn migrate_private(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS private_storage (
            domain    TEXT NOT NULL,
            username  TEXT NOT NULL,
            namespace TEXT NOT NULL,
            xml       BLOB NOT NULL,
            PRIMARY KEY (domain, username, namespace)
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

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
        Ok(self
            .conn
            .prepare_cached(
                "SELECT xml FROM private_storage WHERE domain = ?1 AND username = ?2 AND namespace = ?3",
            )?
            .query_row(params![user.domain(), node, namespace], |r| r.get(0))
            .optional()?)
    }

    /// Stores (replacing) each `(namespace, xml)` fragment, all or none: when the user's fragments
    /// would then total more than `max_bytes`, nothing changes.
    pub fn private_set(
        &self,
        user: &BareJid,
        fragments: &[(String, Vec<u8>)],
        max_bytes: u64,
    ) -> Result<PrivateSet, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO private_storage (domain, username, namespace, xml) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (domain, username, namespace) DO UPDATE SET xml = excluded.xml",
            )?;
            for (ns, xml) in fragments {
                stmt.execute(params![user.domain(), node, ns, xml])?;
            }
        }
        let total: i64 = tx
            .prepare_cached(
                "SELECT coalesce(sum(length(xml)), 0) FROM private_storage
                 WHERE domain = ?1 AND username = ?2",
            )?
            .query_row(params![user.domain(), node], |r| r.get(0))?;
        if total.max(0) as u64 > max_bytes {
            // Dropping `tx` rolls back.
            return Ok(PrivateSet::TooLarge);
        }
        tx.commit()?;
        Ok(PrivateSet::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_limit_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let u = BareJid::parse("u@example.com").unwrap_or_else(|e| panic!("{e}"));
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
