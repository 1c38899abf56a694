//! The upload quota (XEP-0363): the slots each user was given over the last window (a day), so that
//! a slot request is checked against everything the user was given on every shard and session.
//!
//! A grant counts whether or not the file is then uploaded (a slot is a promise of that much disk).
//! The rows outlive an account's removal on purpose: they only say how much and when, and they go
//! with the window anyway; purging them would let a user reset the quota by unregistering (XEP-0077)
//! and registering again.

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};
use crate::jid::BareJid;

/// What [`Store::upload_grant`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadGrant {
    /// Within the quota: recorded.
    Granted,
    /// Past the quota: nothing recorded; enough of it is free again at unix time `retry_at`.
    OverQuota {
        /// When the oldest grants that stand in the way leave the window.
        retry_at: i64,
    },
}

impl Store {
    /// Records a slot of `size` bytes for `user` at unix time `now` if the user's grants since
    /// `now - window` plus `size` stay within `quota` bytes. The user's upload lock (PostgreSQL)
    /// keeps two requests on two shards from both passing.
    pub fn upload_grant(
        &self,
        user: &BareJid,
        size: u64,
        now: i64,
        window: i64,
        quota: u64,
    ) -> Result<UploadGrant, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let domain = user.domain();
        let lock = format!("upload {user}");
        self.transaction(Some(&lock), || {
            let since = now.saturating_sub(window);
            self.exec(
                sql("DELETE FROM upload_grant WHERE domain = ?1 AND username = ?2 AND granted <= ?3"),
                args![domain, node, since],
            )?;
            let q = sql("SELECT granted, size FROM upload_grant
                         WHERE domain = ?1 AND username = ?2 ORDER BY granted");
            let mut grants = Vec::new();
            for mut r in self.rows(q, args![domain, node])? {
                grants.push((r.int(0)?, u64::try_from(r.int(1)?).unwrap_or(0)));
            }
            if let Some(retry_at) = over_quota(&grants, size, quota, window) {
                return Ok(End::Rollback(UploadGrant::OverQuota { retry_at }));
            }
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            self.exec(
                sql("INSERT INTO upload_grant (domain, username, granted, size)
                     VALUES (?1, ?2, ?3, ?4)"),
                args![domain, node, now, size],
            )?;
            Ok(End::Commit(UploadGrant::Granted))
        })
    }

    /// Removes every grant from before unix time `before` (past every user's window); returns how
    /// many went.
    pub fn upload_prune(&self, before: i64) -> Result<u64, StoreError> {
        self.exec(
            sql("DELETE FROM upload_grant WHERE granted < ?1"),
            args![before],
        )
    }
}

/// `None` when `size` more bytes fit in `quota` beside `grants` ((unix time, size), oldest first, all
/// within the window); otherwise when enough of them will have left the `window` for it to fit.
fn over_quota(grants: &[(i64, u64)], size: u64, quota: u64, window: i64) -> Option<i64> {
    let used: u64 = grants.iter().map(|g| g.1).sum();
    let excess = used
        .saturating_add(size)
        .checked_sub(quota)
        .filter(|e| *e > 0)?;
    let mut freed = 0u64;
    for (at, n) in grants {
        freed = freed.saturating_add(*n);
        if freed >= excess {
            return Some(at.saturating_add(window));
        }
    }
    // Larger than the whole quota: never (the options keep `max_file_size` within it).
    grants.last().map(|g| g.0.saturating_add(window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    #[test]
    fn retry_is_when_enough_leaves_the_window() {
        let day = 86_400;
        assert_eq!(over_quota(&[], 10, 10, day), None);
        assert_eq!(over_quota(&[(5, 4), (7, 6)], 0, 10, day), None);
        // 4 + 6 + 3 = 13: 3 too many, freed when the first grant (4 bytes) leaves.
        assert_eq!(over_quota(&[(5, 4), (7, 6)], 3, 10, day), Some(5 + day));
        // 5 too many: the first two must leave.
        assert_eq!(
            over_quota(&[(5, 4), (7, 6), (9, 0)], 5, 10, day),
            Some(7 + day)
        );
    }

    #[test]
    fn grants_stop_at_the_quota_and_leave_with_the_window() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let a = BareJid::parse("a@x").unwrap_or_else(|e| panic!("{e}"));
            let b = BareJid::parse("b@x").unwrap_or_else(|e| panic!("{e}"));
            let grant = |u: &BareJid, size, now| {
                store
                    .upload_grant(u, size, now, 100, 10)
                    .unwrap_or_else(|e| panic!("{e}"))
            };
            assert_eq!(grant(&a, 4, 1000), UploadGrant::Granted);
            assert_eq!(grant(&a, 6, 1010), UploadGrant::Granted);
            // Full: refused, and a refusal takes nothing.
            assert_eq!(
                grant(&a, 1, 1020),
                UploadGrant::OverQuota { retry_at: 1100 }
            );
            assert_eq!(
                grant(&a, 5, 1030),
                UploadGrant::OverQuota { retry_at: 1110 }
            );
            // Another user's quota is their own.
            assert_eq!(grant(&b, 10, 1030), UploadGrant::Granted);
            // A window later the first grant is gone: 4 bytes free again, not 5.
            assert_eq!(
                grant(&a, 5, 1100),
                UploadGrant::OverQuota { retry_at: 1110 }
            );
            assert_eq!(grant(&a, 4, 1100), UploadGrant::Granted);
            // Pruning (at 1131, a window after 1031) takes a's grant of 1010 and b's of 1030.
            assert_eq!(
                store.upload_prune(1031).unwrap_or_else(|e| panic!("{e}")),
                2
            );
            assert_eq!(grant(&b, 10, 1131), UploadGrant::Granted);
            assert_eq!(grant(&a, 6, 1131), UploadGrant::Granted);
            assert_eq!(
                grant(&a, 1, 1131),
                UploadGrant::OverQuota { retry_at: 1200 }
            );
        }
    }
}
