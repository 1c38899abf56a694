//! Block lists (XEP-0191): the blocked JIDs of each user plus a version bumped on every change, so
//! shards holding a copy keep the newest one whatever order updates reach them in.

use super::db::{sql, End};
use super::value::args;
use super::{Corruption, Store, StoreError};
use crate::jid::BareJid;

/// A change to a block list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockChange {
    /// Adds these (prepared) JIDs.
    Block(Vec<String>),
    /// Removes these JIDs.
    Unblock(Vec<String>),
    /// Empties the list.
    UnblockAll,
}

/// A user's stored block list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredBlockList {
    /// Blocked JIDs, sorted.
    pub items: Vec<String>,
    /// Bumped on every change (0: never changed).
    pub version: u64,
}

/// Why [`Store::blocklist_update`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum BlockUpdateError {
    /// The list would hold more JIDs than the limit.
    #[error("a block list holds at most {0} JIDs")]
    Full(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    fn blocklist_read(&self, domain: &str, node: &str) -> Result<StoredBlockList, StoreError> {
        let items = self
            .rows(
                sql("SELECT jid FROM blocklist WHERE domain = ?1 AND username = ?2 ORDER BY jid"),
                args![domain, node],
            )?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect::<Result<Vec<_>, _>>()?;
        let version = match self.row(
            sql("SELECT version FROM blocklist_version WHERE domain = ?1 AND username = ?2"),
            args![domain, node],
        )? {
            Some(mut r) => r.int(0)?,
            None => 0,
        };
        Ok(StoredBlockList {
            items,
            version: version.max(0) as u64,
        })
    }

    /// `user`'s block list (empty, version 0, when never set).
    pub fn blocklist_get(&self, user: &BareJid) -> Result<StoredBlockList, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        self.blocklist_read(user.domain(), node)
    }

    /// Applies `change` in one transaction (holding the user's block list lock on PostgreSQL) and
    /// returns the list after it, with its new version; a change that would leave more than `max`
    /// JIDs is rolled back whole. `NoSuchUser` when the account does not exist (any more).
    pub fn blocklist_update(
        &self,
        user: &BareJid,
        change: &BlockChange,
        max: usize,
    ) -> Result<StoredBlockList, BlockUpdateError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let domain = user.domain();
        let lock = format!("blocking {user}");
        let updated = self.account_write(user, Some(&lock), || {
            match change {
                BlockChange::Block(jids) => {
                    let q = sql(
                        "INSERT INTO blocklist (domain, username, jid) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                    );
                    for j in jids {
                        self.exec(q, args![domain, node, j])?;
                    }
                }
                BlockChange::Unblock(jids) => {
                    let q = sql(
                        "DELETE FROM blocklist WHERE domain = ?1 AND username = ?2 AND jid = ?3",
                    );
                    for j in jids {
                        self.exec(q, args![domain, node, j])?;
                    }
                }
                BlockChange::UnblockAll => {
                    self.exec(
                        sql("DELETE FROM blocklist WHERE domain = ?1 AND username = ?2"),
                        args![domain, node],
                    )?;
                }
            }
            self.exec(
                sql(
                    "INSERT INTO blocklist_version (domain, username, version) VALUES (?1, ?2, 1)
                     ON CONFLICT (domain, username)
                     DO UPDATE SET version = blocklist_version.version + 1",
                ),
                args![domain, node],
            )?;
            // The list is read back anyway: a block that took it past `max` is undone whole
            // (the version bump with it).
            let list = self.blocklist_read(domain, node)?;
            if matches!(change, BlockChange::Block(_)) && list.items.len() > max {
                return Ok(End::Rollback(None));
            }
            Ok(End::Commit(Some(list)))
        })?;
        updated.ok_or(BlockUpdateError::Full(max))
    }

    /// Every non-empty block list (loaded by each shard at start for the users it is home to).
    pub fn blocklist_all(&self) -> Result<Vec<(BareJid, StoredBlockList)>, StoreError> {
        let users = self.rows(
            sql("SELECT DISTINCT domain, username FROM blocklist ORDER BY domain, username"),
            &[],
        )?;
        users
            .into_iter()
            .map(|mut r| {
                let (d, u) = (r.text(0)?, r.text(1)?);
                let list = self.blocklist_read(&d, &u)?;
                let jid = BareJid::new(Some(&u), &d).map_err(Corruption::Jid)?;
                Ok((jid, list))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    #[test]
    fn update_versions_and_list_all() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let alice = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
            crate::store::testing::add_accounts(&store, &["alice@example.com"]);
            assert_eq!(
                store.blocklist_get(&alice).ok(),
                Some(StoredBlockList::default())
            );
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            let l = store
                .blocklist_update(&alice, &BlockChange::Block(s(&["z@x", "a@x", "a@x"])), 2)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(l.items, s(&["a@x", "z@x"]));
            assert_eq!(l.version, 1);
            // Past the limit: refused whole, nothing changes (not even the version).
            let full = store.blocklist_update(&alice, &BlockChange::Block(s(&["b@x", "a@x"])), 2);
            assert!(matches!(full, Err(BlockUpdateError::Full(2))), "{full:?}");
            assert_eq!(store.blocklist_get(&alice).ok(), Some(l.clone()));
            let l = store
                .blocklist_update(&alice, &BlockChange::Unblock(s(&["a@x", "nope@x"])), 2)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((l.items.clone(), l.version), (s(&["z@x"]), 2));
            let all = store.blocklist_all().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].0, alice);
            let l = store
                .blocklist_update(&alice, &BlockChange::UnblockAll, 2)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((l.items.len(), l.version), (0, 3));
            assert!(store.blocklist_all().is_ok_and(|v| v.is_empty()));
            assert_eq!(store.blocklist_get(&alice).ok().map(|l| l.version), Some(3));
        }
    }
}
