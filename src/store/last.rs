//! Last activity (XEP-0012) records: when each account last went unavailable and with what status,
//! and which of its resources are available now.
//!
//! Available resources are stored with the id of the server process that recorded them
//! ([`boot_id`]): rows of an earlier process (one that crashed without unset_presence) are stale
//! and ignored, so no clean-up pass is needed at start.

use std::sync::OnceLock;

use super::db::sql;
use super::value::args;
use super::{Store, StoreError};
use crate::jid::{BareJid, FullJid};

/// A status written this close (seconds) before a logout belongs to that logout: the status comes
/// from the client's unavailable presence, the logout from the session manager, on two shards.
const STATUS_WINDOW: i64 = 5;

/// A random id of this server process (stale availability rows carry another one).
pub fn boot_id() -> i64 {
    static BOOT: OnceLock<i64> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let mut b = [0u8; 8];
        // Without randomness, the start time still tells processes apart.
        if getrandom::getrandom(&mut b).is_err() {
            b = unix_now().to_le_bytes();
        }
        i64::from_le_bytes(b)
    })
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What is known of an account's last activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastActivity {
    /// At least one resource is available now.
    Online,
    /// Last went unavailable at `at` (Unix seconds) with `status`.
    Offline {
        /// Unix seconds of the logout.
        at: i64,
        /// Status text of the unavailable presence (may be empty).
        status: String,
    },
    /// No logout recorded.
    Never,
}

fn parts(jid: &BareJid) -> Result<(&str, &str), StoreError> {
    Ok((jid.domain(), jid.node().ok_or(StoreError::NoLocalpart)?))
}

// Conflict targets are spelled out and the stored row is named by its table: PostgreSQL needs
// both. CASE stands for the two-argument max() that only SQLite has.
impl Store {
    /// Records that `jid` became available (in this process).
    pub fn last_available(&self, jid: &FullJid) -> Result<(), StoreError> {
        let bare = jid.bare();
        let (domain, node) = parts(&bare)?;
        let q = sql(
            "INSERT INTO last_available (domain, username, resource, boot) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (domain, username, resource) DO UPDATE SET boot = excluded.boot",
        );
        self.exec(q, args![domain, node, jid.resource(), boot_id()])?;
        Ok(())
    }

    /// Records that `jid` went unavailable at `at` (Unix seconds): the account's last logout. A
    /// status recorded within a few seconds before is kept (see [`Store::last_status`]).
    pub fn last_unavailable(&self, jid: &FullJid, at: i64) -> Result<(), StoreError> {
        let bare = jid.bare();
        let (domain, node) = parts(&bare)?;
        self.exec(
            sql("DELETE FROM last_available WHERE domain = ?1 AND username = ?2 AND resource = ?3"),
            args![domain, node, jid.resource()],
        )?;
        let q = sql(
            "INSERT INTO last_activity (domain, username, seconds, status) VALUES (?1, ?2, ?3, '')
             ON CONFLICT (domain, username) DO UPDATE SET
               status = CASE WHEN last_activity.seconds >= excluded.seconds - ?4
                        THEN last_activity.status ELSE '' END,
               seconds = CASE WHEN last_activity.seconds > excluded.seconds
                         THEN last_activity.seconds ELSE excluded.seconds END",
        );
        self.exec(q, args![domain, node, at, STATUS_WINDOW])?;
        Ok(())
    }

    /// Records the status text of an unavailable presence sent at `at`.
    pub fn last_status(&self, jid: &BareJid, at: i64, status: &str) -> Result<(), StoreError> {
        let (domain, node) = parts(jid)?;
        let q = sql(
            "INSERT INTO last_activity (domain, username, seconds, status) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (domain, username) DO UPDATE SET
               seconds = CASE WHEN last_activity.seconds > excluded.seconds
                         THEN last_activity.seconds ELSE excluded.seconds END,
               status = excluded.status",
        );
        self.exec(q, args![domain, node, at, status])?;
        Ok(())
    }

    /// The account's last activity.
    pub fn last_activity(&self, jid: &BareJid) -> Result<LastActivity, StoreError> {
        let (domain, node) = parts(jid)?;
        let online = self.row(
            sql("SELECT 1 FROM last_available
                 WHERE domain = ?1 AND username = ?2 AND boot = ?3 LIMIT 1"),
            args![domain, node, boot_id()],
        )?;
        if online.is_some() {
            return Ok(LastActivity::Online);
        }
        let row = self.row(
            sql("SELECT seconds, status FROM last_activity WHERE domain = ?1 AND username = ?2"),
            args![domain, node],
        )?;
        Ok(match row {
            Some(mut r) => LastActivity::Offline {
                at: r.int(0)?,
                status: r.text(1)?,
            },
            None => LastActivity::Never,
        })
    }

    /// Forgets an account's last activity (account removal).
    pub fn last_remove(&self, jid: &BareJid) -> Result<(), StoreError> {
        let (domain, node) = parts(jid)?;
        self.exec(
            sql("DELETE FROM last_activity WHERE domain = ?1 AND username = ?2"),
            args![domain, node],
        )?;
        self.exec(
            sql("DELETE FROM last_available WHERE domain = ?1 AND username = ?2"),
            args![domain, node],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    #[test]
    fn online_offline_status() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let bare = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
            let r1 = bare.with_resource("r1").unwrap_or_else(|e| panic!("{e}"));
            let r2 = bare.with_resource("r2").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.last_activity(&bare).ok(), Some(LastActivity::Never));
            store.last_available(&r1).unwrap_or_else(|e| panic!("{e}"));
            store.last_available(&r2).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.last_activity(&bare).ok(), Some(LastActivity::Online));
            store
                .last_unavailable(&r1, 1000)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.last_activity(&bare).ok(), Some(LastActivity::Online));
            // The status arrives after the logout (other shard): kept either way round.
            store
                .last_unavailable(&r2, 2000)
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .last_status(&bare, 2000, "gone")
                .unwrap_or_else(|e| panic!("{e}"));
            let gone = LastActivity::Offline {
                at: 2000,
                status: "gone".into(),
            };
            assert_eq!(store.last_activity(&bare).ok(), Some(gone.clone()));
            store.last_available(&r1).unwrap_or_else(|e| panic!("{e}"));
            store
                .last_status(&bare, 3000, "bye")
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .last_unavailable(&r1, 3001)
                .unwrap_or_else(|e| panic!("{e}"));
            let bye = LastActivity::Offline {
                at: 3001,
                status: "bye".into(),
            };
            assert_eq!(store.last_activity(&bare).ok(), Some(bye));
            // A later logout without a status clears the old one.
            store.last_available(&r1).unwrap_or_else(|e| panic!("{e}"));
            store
                .last_unavailable(&r1, 9000)
                .unwrap_or_else(|e| panic!("{e}"));
            let plain = LastActivity::Offline {
                at: 9000,
                status: String::new(),
            };
            assert_eq!(store.last_activity(&bare).ok(), Some(plain));
            // A row from another process is stale.
            store
                .exec(
                    sql("INSERT INTO last_available VALUES ('example.com', 'alice', 'old', ?1)"),
                    args![boot_id().wrapping_add(1)],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(
                store.last_activity(&bare),
                Ok(LastActivity::Offline { .. })
            ));
            store.last_remove(&bare).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.last_activity(&bare).ok(), Some(LastActivity::Never));
        }
    }
}
