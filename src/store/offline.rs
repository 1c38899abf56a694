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
//!
//! A push checks the user's limit against `offline_count`, which triggers on `offline_message`
//! keep in step with the rows (schema version 10): counting the rows made each push as slow as
//! the user's queue was long (30 000 pushes to one user: 17.5 s, against 1.3 s with the counter).

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};
use crate::jid::BareJid;

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

/// `at` as XEP-0082 UTC with milliseconds (`2026-12-01T18:13:23.123Z`).
fn stamp_of(at: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
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
    /// committed when this returns `Stored`. Its delay stamp is `at` (when delivery was first
    /// tried), else now. The count and the insert hold the user's offline lock
    /// (PostgreSQL), so two pushes cannot both pass the limit.
    pub fn offline_push(
        &self,
        user: &BareJid,
        sender: &str,
        stanza: &[u8],
        max: u32,
        at: Option<std::time::SystemTime>,
    ) -> Result<OfflinePush, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let lock = format!("offline {user}");
        self.transaction(Some(&lock), || {
            if !self.user_exists(user)? {
                return Ok(End::Rollback(OfflinePush::NoSuchUser));
            }
            if self.count_of(user.domain(), node)? >= i64::from(max) {
                return Ok(End::Rollback(OfflinePush::Full));
            }
            let stamp = stamp_of(at.unwrap_or_else(std::time::SystemTime::now));
            self.exec(
                sql(
                    "INSERT INTO offline_message (domain, username, stamp, sender, stanza)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                ),
                args![user.domain(), node, &stamp, sender, stanza],
            )?;
            Ok(End::Commit(OfflinePush::Stored))
        })
    }

    /// From `offline_count`, which triggers keep (schema version 10): counting the user's rows
    /// here took as long as the limit is large, inside the write transaction.
    fn count_of(&self, domain: &str, node: &str) -> Result<i64, StoreError> {
        self.int(
            sql("SELECT coalesce(
                   (SELECT n FROM offline_count WHERE domain = ?1 AND username = ?2), 0)"),
            args![domain, node],
        )
    }

    /// Leases the oldest messages of `user` not already out for delivery by this process: at most
    /// `max_rows`, and no more than `max_bytes` of stanzas (at least one), oldest first. They stay
    /// stored until [`Store::offline_ack`] (or go back with [`Store::offline_release`]); the
    /// caller asks for the next ones once these are delivered, so a long backlog never lands on
    /// a session at once (past its mailbox's bound it was bounced, and its rows deleted).
    /// One UPDATE: on PostgreSQL a concurrent lease waits on the row locks, then skips the rows
    /// this one took. Most logins find nothing: a read answers them, without the write lock
    /// (SQLite: its `fcntl` calls, and the other store threads' leases waiting behind it). A
    /// message stored between the read and the session's availability stays for the next login,
    /// as one stored just after the UPDATE would.
    pub fn offline_lease(
        &self,
        user: &BareJid,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Vec<OfflineMessage>, StoreError> {
        let Some(node) = user.node() else {
            return Ok(Vec::new());
        };
        let any = sql("SELECT 1 FROM offline_message
             WHERE domain = ?1 AND username = ?2 AND (lease IS NULL OR lease != ?3) LIMIT 1");
        if self
            .rows(any, args![user.domain(), node, lease()])?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        self.transaction(None, || {
            let q = sql("UPDATE offline_message SET lease = ?3
                 WHERE id IN (SELECT id FROM offline_message
                     WHERE domain = ?1 AND username = ?2 AND (lease IS NULL OR lease != ?3)
                     ORDER BY id LIMIT ?4)
                   AND (lease IS NULL OR lease != ?3)
                 RETURNING id, stamp, sender, stanza");
            let mut msgs = self
                .rows(q, args![user.domain(), node, lease(), limit])?
                .into_iter()
                .map(|mut r| {
                    Ok(OfflineMessage {
                        id: r.int(0)?,
                        stamp: r.text(1)?,
                        sender: r.text(2)?,
                        stanza: r.bytes(3)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            msgs.sort_by_key(|m| m.id);
            // Past the byte budget the rest go back, for the next lease.
            let mut bytes = 0;
            let keep = msgs
                .iter()
                .position(|m| {
                    bytes += m.stanza.len();
                    bytes > max_bytes
                })
                .map_or(msgs.len(), |at| at.max(1));
            for m in &msgs[keep..] {
                self.exec(
                    sql("UPDATE offline_message SET lease = NULL WHERE id = ?1"),
                    args![m.id],
                )?;
            }
            msgs.truncate(keep);
            Ok(End::Commit(msgs))
        })
    }

    /// The client has these messages: deletes them.
    pub fn offline_ack(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.transaction(None, || {
            for &id in ids {
                self.exec(sql("DELETE FROM offline_message WHERE id = ?1"), args![id])?;
            }
            Ok(End::Commit(()))
        })
    }

    /// The session that leased these messages ended without them: they wait for the next one.
    pub fn offline_release(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.transaction(None, || {
            for &id in ids {
                self.exec(
                    sql("UPDATE offline_message SET lease = NULL WHERE id = ?1"),
                    args![id],
                )?;
            }
            Ok(End::Commit(()))
        })
    }

    /// Number of messages waiting for `user`.
    pub fn offline_count(&self, user: &BareJid) -> Result<u64, StoreError> {
        let Some(node) = user.node() else {
            return Ok(0);
        };
        Ok(self.count_of(user.domain(), node)?.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramSecrets;
    use crate::store::testing::test_dbs;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn push_limit_and_deliver_in_order() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let bob = jid("bob@example.com");
            assert_eq!(
                store
                    .offline_push(&bob, "a@x/y", b"<message/>", 5, None)
                    .ok(),
                Some(OfflinePush::NoSuchUser)
            );
            store
                .add_user(&bob, &ScramSecrets::derive("pw", 16))
                .unwrap_or_else(|e| panic!("{e}"));
            for i in 0..3 {
                let body = format!("<message><body>{i}</body></message>");
                assert_eq!(
                    store
                        .offline_push(&bob, "a@x/y", body.as_bytes(), 3, None)
                        .ok(),
                    Some(OfflinePush::Stored)
                );
            }
            assert_eq!(
                store
                    .offline_push(&bob, "a@x/y", b"<message/>", 3, None)
                    .ok(),
                Some(OfflinePush::Full)
            );
            assert_eq!(store.offline_count(&bob).ok(), Some(3));
            let got = store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .unwrap_or_else(|e| panic!("{e}"));
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
            assert!(store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .is_ok_and(|v| v.is_empty()));
        }
    }

    #[test]
    fn leased_messages_stay_until_acked_and_come_back_when_released() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let bob = jid("bob@example.com");
            store
                .add_user(&bob, &ScramSecrets::derive("pw", 16))
                .unwrap_or_else(|e| panic!("{e}"));
            for i in 0..3 {
                let body = format!("<message><body>{i}</body></message>");
                store
                    .offline_push(&bob, "a@x/y", body.as_bytes(), 10, None)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let first = store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(first.len(), 3);
            assert!(first.windows(2).all(|w| w[0].id < w[1].id));
            // Out for delivery: a second lease gets nothing, the rows are still stored.
            assert!(store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .is_ok_and(|v| v.is_empty()));
            assert_eq!(store.offline_count(&bob).ok(), Some(3));
            store
                .offline_ack(&[first[0].id])
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .offline_release(&[first[1].id, first[2].id])
                .unwrap_or_else(|e| panic!("{e}"));
            let again = store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                again.iter().map(|m| m.id).collect::<Vec<_>>(),
                vec![first[1].id, first[2].id]
            );
            assert_eq!(store.offline_count(&bob).ok(), Some(2));
        }
    }

    /// The count a push checks comes from `offline_count`: it follows pushes, acks and an
    /// account's removal, per user, and a database migrated from version 9 counts what it had.
    #[test]
    fn the_count_follows_every_change_and_the_migration() {
        for db in test_dbs() {
            let n = db.name;
            let store = db.open();
            let (bob, eve) = (jid("bob@example.com"), jid("eve@example.com"));
            for u in [&bob, &eve] {
                store
                    .add_user(u, &ScramSecrets::derive("pw", 16))
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            let push = |u: &BareJid, max| {
                store
                    .offline_push(u, "a@x/y", b"<message/>", max, None)
                    .unwrap_or_else(|e| panic!("{n}: {e}"))
            };
            for _ in 0..4 {
                assert_eq!(push(&bob, 4), OfflinePush::Stored);
            }
            assert_eq!(push(&bob, 4), OfflinePush::Full, "{n}");
            assert_eq!(
                push(&eve, 4),
                OfflinePush::Stored,
                "{n}: eve has her own count"
            );
            let got = store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .offline_ack(&[got[0].id, got[1].id])
                .and_then(|()| store.offline_release(&[got[2].id, got[3].id]))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(store.offline_count(&bob).ok(), Some(2), "{n}");
            assert_eq!(
                push(&bob, 4),
                OfflinePush::Stored,
                "{n}: acked rows make room"
            );
            store
                .remove_user(&eve)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            // Back to version 9 with bob's three rows: the migration counts them.
            let old = match store.kind() {
                super::super::db::Kind::Sqlite => {
                    "DROP TRIGGER offline_count_insert; DROP TRIGGER offline_count_delete;
                     DROP TABLE offline_count;"
                }
                super::super::db::Kind::Postgres => {
                    "DROP TRIGGER offline_count_follow ON offline_message;
                     DROP FUNCTION offline_count_follow(); DROP TABLE offline_count;"
                }
            };
            store.rewind_schema(old, 9);
            drop(store);
            let store = db.open();
            assert_eq!(store.offline_count(&bob).ok(), Some(3), "{n}");
            assert_eq!(store.offline_count(&eve).ok(), Some(0), "{n}");
            let rows = store
                .int(sql("SELECT count(*) FROM offline_count"), &[])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(rows, 1, "{n}: a row only for a user with messages");
            let got = store
                .offline_lease(&bob, usize::MAX, usize::MAX)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let ids: Vec<i64> = got.iter().map(|m| m.id).collect();
            store
                .offline_ack(&ids)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let rows = store
                .int(sql("SELECT count(*) FROM offline_count"), &[])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(rows, 0, "{n}: the last ack removes the row");
        }
    }
}
