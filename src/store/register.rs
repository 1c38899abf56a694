//! In-band registration (XEP-0077) bookkeeping: a log of registrations per client IP address, for the
//! per-IP rate limit shared by every shard (each shard sees only its own connections; the store sees
//! them all).

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};
use crate::auth::ScramSecrets;
use crate::jid::BareJid;

/// Outcome of [`Store::register_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The account was created.
    Created,
    /// The account already exists.
    Exists,
    /// `ip` reached its limit of registrations in the window.
    RateLimited,
}

impl Store {
    /// Registrations from `ip` at or after `since` (Unix seconds).
    pub fn registrations_since(&self, ip: &str, since: i64) -> Result<u64, StoreError> {
        let n = self.int(
            sql("SELECT count(*) FROM register_log WHERE ip = ?1 AND at >= ?2"),
            args![ip, since],
        )?;
        Ok(n.max(0) as u64)
    }

    /// Creates `jid` with `secrets` unless `ip` already registered `limit` accounts at or after
    /// `since`; logs the registration at `at`. The check and the insert are one write transaction
    /// (holding the address's lock on PostgreSQL), so concurrent registrations from one address
    /// cannot both slip under the limit.
    pub fn register_user(
        &self,
        jid: &BareJid,
        secrets: &ScramSecrets,
        ip: &str,
        at: i64,
        since: i64,
        limit: u64,
    ) -> Result<Registered, StoreError> {
        let lock = format!("register {ip}");
        self.transaction(Some(&lock), || {
            if self.registrations_since(ip, since)? >= limit {
                return Ok(End::Rollback(Registered::RateLimited));
            }
            match self.add_user(jid, secrets) {
                Ok(()) => {}
                Err(StoreError::UserExists) => return Ok(End::Rollback(Registered::Exists)),
                Err(e) => return Err(e),
            }
            self.exec(
                sql("INSERT INTO register_log (ip, at) VALUES (?1, ?2)"),
                args![ip, at],
            )?;
            // Entries older than the window never count again.
            self.exec(sql("DELETE FROM register_log WHERE at < ?1"), args![since])?;
            Ok(End::Commit(Registered::Created))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    #[test]
    fn limit_per_ip_and_window() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let s = ScramSecrets::derive("pw", 4096);
            let jid =
                |n: &str| BareJid::new(Some(n), "example.com").unwrap_or_else(|e| panic!("{e}"));
            let reg = |n: &str, ip: &str, at: i64| {
                store
                    .register_user(&jid(n), &s, ip, at, at - 60, 2)
                    .unwrap_or_else(|e| panic!("{e}"))
            };
            assert_eq!(reg("a", "1.2.3.4", 100), Registered::Created);
            assert_eq!(reg("a", "1.2.3.4", 101), Registered::Exists);
            assert_eq!(reg("b", "1.2.3.4", 102), Registered::Created);
            assert_eq!(reg("c", "1.2.3.4", 103), Registered::RateLimited);
            assert_eq!(reg("c", "5.6.7.8", 103), Registered::Created);
            // A minute later the address may register again.
            assert_eq!(reg("c2", "1.2.3.4", 162), Registered::Created);
            assert!(store.get_secrets(&jid("c")).ok().flatten().is_some());
            assert!(store.get_secrets(&jid("d")).ok().flatten().is_none());
            assert_eq!(store.registrations_since("1.2.3.4", 0).ok(), Some(2));
        }
    }
}
