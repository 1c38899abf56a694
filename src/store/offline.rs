//! Offline message storage (XEP-0160): one row per message, in arrival order, per user.
//!
//! Writes commit before the job that made them returns, so a message acknowledged as stored survives
//! `kill -9` (WAL, `synchronous = NORMAL`: a committed transaction is in the OS's hands).
//!
//! Delivery does not delete: [`Store::offline_lease`] marks the rows with this process's lease (so
//! a second resource becoming available does not get them again), and they are deleted only once
//! the client has them ([`Store::offline_ack`]) or handed back ([`Store::offline_release`]) when the
//! session that took them ended without. A crash drops every lease with the process: the rows are
//! delivered again at the next login.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Store, StoreError};
use crate::jid::BareJid;

/// Creates the offline tables (idempotent).
pub(crate) fn migrate_offline(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS offline_message (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            domain   TEXT NOT NULL,
            username TEXT NOT NULL,
            stamp    TEXT NOT NULL,
            sender   TEXT NOT NULL,
            stanza   BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS offline_message_user ON offline_message (domain, username, id);",
    )?;
    let has_lease = conn
        .prepare("SELECT 1 FROM pragma_table_info('offline_message') WHERE name = 'lease'")?
        .exists([])?;
    if !has_lease {
        conn.execute_batch("ALTER TABLE offline_message ADD COLUMN lease INTEGER")?;
    }
    Ok(())
}

/// This process's lease on the rows it is delivering (random per start: a crash frees them all).
fn lease() -> i64 {
    static LEASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *LEASE.get_or_init(|| {
        let mut b = [0u8; 8];
        // A fixed fallback only weakens crash-freeing to "same value across restarts".
        let _ = getrandom::getrandom(&mut b);
        i64::from_le_bytes(b)
    })
}

/// True when `jid` is a registered account.
pub(super) fn user_exists(conn: &Connection, jid: &BareJid) -> Result<bool, StoreError> {
    let Some(node) = jid.node() else {
        return Ok(false);
    };
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE domain = ?1 AND username = ?2")?
        .query_row(params![jid.domain(), node], |_| Ok(()))
        .optional()?
        .is_some())
}

/// What [`Store::offline_push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflinePush {
    /// Stored and committed.
    Stored,
    /// There is no such account.
    NoSuchUser,
    /// The user already has `max` messages waiting.
    Full,
}

/// A stored message, as handed back for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// The row (for [`Store::offline_ack`] and [`Store::offline_release`]).
    pub id: i64,
    /// When it was stored (XEP-0082 UTC, milliseconds).
    pub stamp: String,
    /// The sender's JID as it was routed.
    pub sender: String,
    /// The serialized stanza (self-contained, `jabber:client`).
    pub stanza: Vec<u8>,
}

impl Store {
    /// Stores `stanza` for `user` unless the account is missing or already holds `max` messages;
    /// committed when this returns `Stored`.
    pub fn offline_push(
        &self,
        user: &BareJid,
        sender: &str,
        stanza: &[u8],
        max: u32,
    ) -> Result<OfflinePush, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        if !user_exists(&tx, user)? {
            return Ok(OfflinePush::NoSuchUser);
        }
        let count: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM offline_message WHERE domain = ?1 AND username = ?2",
            )?
            .query_row(params![user.domain(), node], |r| r.get(0))?;
        if count >= i64::from(max) {
            return Ok(OfflinePush::Full);
        }
        tx.prepare_cached(
            "INSERT INTO offline_message (domain, username, stamp, sender, stanza)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3, ?4)",
        )?
        .execute(params![user.domain(), node, sender, stanza])?;
        tx.commit()?;
        Ok(OfflinePush::Stored)
    }

    /// Leases every message of `user` not already out for delivery by this process, oldest first:
    /// they stay stored until [`Store::offline_ack`] (or go back with [`Store::offline_release`]).
    pub fn offline_lease(&self, user: &BareJid) -> Result<Vec<OfflineMessage>, StoreError> {
        let Some(node) = user.node() else {
            return Ok(Vec::new());
        };
        let mut msgs = self
            .conn
            .prepare_cached(
                "UPDATE offline_message SET lease = ?3
                 WHERE domain = ?1 AND username = ?2 AND (lease IS NULL OR lease != ?3)
                 RETURNING id, stamp, sender, stanza",
            )?
            .query_map(params![user.domain(), node, lease()], |r| {
                Ok(OfflineMessage {
                    id: r.get(0)?,
                    stamp: r.get(1)?,
                    sender: r.get(2)?,
                    stanza: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        msgs.sort_by_key(|m| m.id);
        Ok(msgs)
    }

    /// The client has these messages: deletes them.
    pub fn offline_ack(&self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM offline_message WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The session that leased these messages ended without them: they wait for the next one.
    pub fn offline_release(&self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE offline_message SET lease = NULL WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of messages waiting for `user`.
    pub fn offline_count(&self, user: &BareJid) -> Result<u64, StoreError> {
        let Some(node) = user.node() else {
            return Ok(0);
        };
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM offline_message WHERE domain = ?1 AND username = ?2",
            )?
            .query_row(params![user.domain(), node], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramSecrets;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn push_limit_and_deliver_in_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let bob = jid("bob@example.com");
        assert_eq!(
            store.offline_push(&bob, "a@x/y", b"<message/>", 5).ok(),
            Some(OfflinePush::NoSuchUser)
        );
        store
            .add_user(&bob, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            let body = format!("<message><body>{i}</body></message>");
            assert_eq!(
                store.offline_push(&bob, "a@x/y", body.as_bytes(), 3).ok(),
                Some(OfflinePush::Stored)
            );
        }
        assert_eq!(
            store.offline_push(&bob, "a@x/y", b"<message/>", 3).ok(),
            Some(OfflinePush::Full)
        );
        assert_eq!(store.offline_count(&bob).ok(), Some(3));
        let got = store.offline_lease(&bob).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<i64> = got.iter().map(|m| m.id).collect();
        store.offline_ack(&ids).unwrap_or_else(|e| panic!("{e}"));
        let bodies: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.stanza).into_owned())
            .collect();
        assert_eq!(
            bodies,
            [0, 1, 2].map(|i| format!("<message><body>{i}</body></message>"))
        );
        assert!(got
            .iter()
            .all(|m| m.stamp.ends_with('Z') && m.stamp.len() == 24));
        assert_eq!(store.offline_count(&bob).ok(), Some(0));
        assert!(store.offline_lease(&bob).is_ok_and(|v| v.is_empty()));
    }

    #[test]
    fn leased_messages_stay_until_acked_and_come_back_when_released() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let bob = jid("bob@example.com");
        store
            .add_user(&bob, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            let body = format!("<message><body>{i}</body></message>");
            store
                .offline_push(&bob, "a@x/y", body.as_bytes(), 10)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let first = store.offline_lease(&bob).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.len(), 3);
        assert!(first.windows(2).all(|w| w[0].id < w[1].id));
        // Out for delivery: a second lease gets nothing, the rows are still stored.
        assert!(store.offline_lease(&bob).is_ok_and(|v| v.is_empty()));
        assert_eq!(store.offline_count(&bob).ok(), Some(3));
        store
            .offline_ack(&[first[0].id])
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .offline_release(&[first[1].id, first[2].id])
            .unwrap_or_else(|e| panic!("{e}"));
        let again = store.offline_lease(&bob).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![first[1].id, first[2].id]
        );
        assert_eq!(store.offline_count(&bob).ok(), Some(2));
    }
}
