//! Block lists (XEP-0191): the blocked JIDs of each user plus a version bumped on every change, so
//! shards holding a copy keep the newest one whatever order updates reach them in.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Corruption, Store, StoreError};
use crate::jid::BareJid;

/// Creates the blocking tables (idempotent).
pub(crate) fn migrate_blocking(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS blocklist (
            domain   TEXT NOT NULL,
            username TEXT NOT NULL,
            jid      TEXT NOT NULL,
            PRIMARY KEY (domain, username, jid)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS blocklist_version (
            domain   TEXT NOT NULL,
            username TEXT NOT NULL,
            version  INTEGER NOT NULL,
            PRIMARY KEY (domain, username)
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

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

fn read(conn: &Connection, domain: &str, node: &str) -> Result<StoredBlockList, StoreError> {
    let items = conn
        .prepare_cached(
            "SELECT jid FROM blocklist WHERE domain = ?1 AND username = ?2 ORDER BY jid",
        )?
        .query_map(params![domain, node], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let version: Option<i64> = conn
        .prepare_cached(
            "SELECT version FROM blocklist_version WHERE domain = ?1 AND username = ?2",
        )?
        .query_row(params![domain, node], |r| r.get(0))
        .optional()?;
    Ok(StoredBlockList {
        items,
        version: version.unwrap_or(0).max(0) as u64,
    })
}

impl Store {
    /// `user`'s block list (empty, version 0, when never set).
    pub fn blocklist_get(&self, user: &BareJid) -> Result<StoredBlockList, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        read(&self.conn, user.domain(), node)
    }

    /// Applies `change` in one transaction and returns the list after it, with its new version.
    pub fn blocklist_update(
        &self,
        user: &BareJid,
        change: &BlockChange,
    ) -> Result<StoredBlockList, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let domain = user.domain();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        match change {
            BlockChange::Block(jids) => {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO blocklist (domain, username, jid) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?;
                for j in jids {
                    stmt.execute(params![domain, node, j])?;
                }
            }
            BlockChange::Unblock(jids) => {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM blocklist WHERE domain = ?1 AND username = ?2 AND jid = ?3",
                )?;
                for j in jids {
                    stmt.execute(params![domain, node, j])?;
                }
            }
            BlockChange::UnblockAll => {
                tx.prepare_cached("DELETE FROM blocklist WHERE domain = ?1 AND username = ?2")?
                    .execute(params![domain, node])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO blocklist_version (domain, username, version) VALUES (?1, ?2, 1)
             ON CONFLICT (domain, username) DO UPDATE SET version = version + 1",
        )?
        .execute(params![domain, node])?;
        let list = read(&tx, domain, node)?;
        tx.commit()?;
        Ok(list)
    }

    /// Every non-empty block list (loaded by each shard at start for the users it is home to).
    pub fn blocklist_all(&self) -> Result<Vec<(BareJid, StoredBlockList)>, StoreError> {
        let users = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT domain, username FROM blocklist ORDER BY domain, username",
            )?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        users
            .into_iter()
            .map(|(d, u)| {
                let list = read(&self.conn, &d, &u)?;
                let jid = BareJid::new(Some(&u), &d).map_err(Corruption::Jid)?;
                Ok((jid, list))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_versions_and_list_all() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let alice = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.blocklist_get(&alice).ok(),
            Some(StoredBlockList::default())
        );
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let l = store
            .blocklist_update(&alice, &BlockChange::Block(s(&["z@x", "a@x", "a@x"])))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.items, s(&["a@x", "z@x"]));
        assert_eq!(l.version, 1);
        let l = store
            .blocklist_update(&alice, &BlockChange::Unblock(s(&["a@x", "nope@x"])))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.items.clone(), l.version), (s(&["z@x"]), 2));
        let all = store.blocklist_all().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, alice);
        let l = store
            .blocklist_update(&alice, &BlockChange::UnblockAll)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.items.len(), l.version), (0, 3));
        assert!(store.blocklist_all().is_ok_and(|v| v.is_empty()));
        assert_eq!(store.blocklist_get(&alice).ok().map(|l| l.version), Some(3));
    }
}
