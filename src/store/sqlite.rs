//! The embedded default store: SQLite (bundled) in WAL mode at `data_dir/petrel.sqlite3`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Corruption, StoreError};
use crate::auth::ScramSecrets;
use crate::jid::BareJid;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "petrel.sqlite3";

/// Schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits on another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
    CREATE TABLE users (
        domain     TEXT NOT NULL,
        username   TEXT NOT NULL,
        scram      TEXT NOT NULL,
        created_at INTEGER NOT NULL DEFAULT (unixepoch()),
        PRIMARY KEY (domain, username)
    ) WITHOUT ROWID;
";

/// One connection to the store; each pool thread owns one.
pub struct Store {
    pub(super) conn: Connection,
}

impl Store {
    /// Opens (creating the directory, file and schema if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers do not block the writer; NORMAL sync is durable across process
        // crashes and loses at most the last commits on power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let store = Store { conn };
        store.migrate()?;
        super::last::migrate_last(&store.conn)?;
        super::register::migrate_register(&store.conn)?;
        Ok(store)
    }

    /// Creates or checks the schema in one write transaction, so concurrent opens serialize.
    fn migrate(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = self.migrate_in_tx();
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end)?;
        r
    }

    fn migrate_in_tx(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        )?;
        super::roster::migrate_roster(&self.conn)?;
        super::offline::migrate_offline(&self.conn)?;
        super::blocking::migrate_blocking(&self.conn)?;
        super::private::migrate_private(&self.conn)?;
        super::muc::migrate_muc(&self.conn)?;
        super::mam::migrate_mam(&self.conn)?;
        super::vcard::migrate_vcard(&self.conn)?;
        let version: Option<i64> =
            self.conn
                .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
        match version {
            None => {
                self.conn.execute_batch(SCHEMA_V1)?;
                self.conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )?;
                Ok(())
            }
            Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(Corruption::SchemaVersion(v).into()),
        }
    }

    /// Adds a user; `UserExists` if present.
    pub fn add_user(&self, jid: &BareJid, secrets: &ScramSecrets) -> Result<(), StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO users (domain, username, scram) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![jid.domain(), node, secrets.to_storage()])?;
        if n == 0 {
            return Err(StoreError::UserExists);
        }
        Ok(())
    }

    /// Removes a user; `NoSuchUser` if absent.
    pub fn remove_user(&self, jid: &BareJid) -> Result<(), StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        let n = self
            .conn
            .prepare_cached("DELETE FROM users WHERE domain = ?1 AND username = ?2")?
            .execute(params![jid.domain(), node])?;
        if n == 0 {
            return Err(StoreError::NoSuchUser);
        }
        // The user's message archive goes with the account (XEP-0313 data is personal).
        self.mam_delete_owner(jid.as_str())?;
        Ok(())
    }

    /// Replaces a user's secrets (password change); `NoSuchUser` if absent.
    pub fn set_secrets(&self, jid: &BareJid, secrets: &ScramSecrets) -> Result<(), StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        let n = self
            .conn
            .prepare_cached("UPDATE users SET scram = ?3 WHERE domain = ?1 AND username = ?2")?
            .execute(params![jid.domain(), node, secrets.to_storage()])?;
        if n == 0 {
            return Err(StoreError::NoSuchUser);
        }
        Ok(())
    }

    /// A user's secrets, or None if there is no such user.
    pub fn get_secrets(&self, jid: &BareJid) -> Result<Option<ScramSecrets>, StoreError> {
        let Some(node) = jid.node() else {
            return Ok(None);
        };
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT scram FROM users WHERE domain = ?1 AND username = ?2")?
            .query_row(params![jid.domain(), node], |r| r.get(0))
            .optional()?;
        match text {
            None => Ok(None),
            Some(t) => ScramSecrets::from_storage(&t)
                .map(Some)
                .map_err(|e| Corruption::Secrets(e).into()),
        }
    }

    /// All users, or those of one domain, sorted by domain then localpart.
    pub fn list_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, StoreError> {
        // Stored domains are prepared; prepare the filter the same way.
        let domain = domain.map(|d| {
            BareJid::domain_only(d)
                .map(|j| j.domain().to_owned())
                .unwrap_or_else(|_| d.to_owned())
        });
        let mut stmt = self.conn.prepare_cached(
            "SELECT domain, username FROM users
             WHERE ?1 IS NULL OR domain = ?1 ORDER BY domain, username",
        )?;
        let rows = stmt.query_map([domain], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (d, u) = row?;
            BareJid::new(Some(&u), &d).map_err(|e| Corruption::Jid(e).into())
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn crud() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(&dir);
        let alice = jid("alice@example.com");
        let s1 = ScramSecrets::derive("one", 16);
        assert_eq!(store.get_secrets(&alice).ok().flatten(), None);
        store
            .add_user(&alice, &s1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            store.add_user(&alice, &s1),
            Err(StoreError::UserExists)
        ));
        assert_eq!(store.get_secrets(&alice).ok().flatten(), Some(s1.clone()));

        let s2 = ScramSecrets::derive("two", 16);
        store
            .set_secrets(&alice, &s2)
            .unwrap_or_else(|e| panic!("{e}"));
        let got = store.get_secrets(&alice).ok().flatten();
        assert!(got
            .as_ref()
            .is_some_and(|g| g.verify_plain("two") && !g.verify_plain("one")));

        store
            .add_user(&jid("bob@example.com"), &s1)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .add_user(&jid("carol@other.org"), &s1)
            .unwrap_or_else(|e| panic!("{e}"));
        let all = store.list_users(None).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = all.iter().map(BareJid::as_str).collect();
        assert_eq!(
            names,
            ["alice@example.com", "bob@example.com", "carol@other.org"]
        );
        let ex = store
            .list_users(Some("EXAMPLE.com"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ex.len(), 2);

        store.remove_user(&alice).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            store.remove_user(&alice),
            Err(StoreError::NoSuchUser)
        ));
        assert!(matches!(
            store.set_secrets(&alice, &s1),
            Err(StoreError::NoSuchUser)
        ));
        assert_eq!(store.get_secrets(&alice).ok().flatten(), None);
        let domain_only = jid("example.com");
        assert!(matches!(
            store.add_user(&domain_only, &s1),
            Err(StoreError::NoLocalpart)
        ));
    }

    #[test]
    fn persists_across_opens_without_passwords() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = dir.path().join("a/b");
        let alice = jid("alice@example.com");
        {
            let store = Store::open(&nested).unwrap_or_else(|e| panic!("{e}"));
            let s = ScramSecrets::derive("correct horse", 16);
            store.add_user(&alice, &s).unwrap_or_else(|e| panic!("{e}"));
        }
        let store = Store::open(&nested).unwrap_or_else(|e| panic!("{e}"));
        let got = store.get_secrets(&alice).ok().flatten();
        assert!(got.is_some_and(|g| g.verify_plain("correct horse")));
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode, "wal");
        drop(store);
        let bytes = std::fs::read(nested.join(DB_FILE)).unwrap_or_default();
        let wal = std::fs::read(nested.join(format!("{DB_FILE}-wal"))).unwrap_or_default();
        let needle = b"correct horse";
        let found = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(!found(&bytes) && !found(&wal));
    }

    #[test]
    fn corrupt_secrets_and_newer_schema() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(&dir);
        store
            .conn
            .execute(
                "INSERT INTO users (domain, username, scram) VALUES ('x.org', 'eve', 'junk')",
                [],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let r = store.get_secrets(&jid("eve@x.org"));
        assert!(
            matches!(r, Err(StoreError::Corrupt(Corruption::Secrets(_)))),
            "{r:?}"
        );
        store
            .conn
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let r = Store::open(dir.path());
        assert!(
            matches!(r, Err(StoreError::Corrupt(Corruption::SchemaVersion(99)))),
            "{:?}",
            r.err()
        );
    }
}
