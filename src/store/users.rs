//! The [`Store`] (one connection to the configured backend) and its user accounts.

use std::path::{Path, PathBuf};

use super::db::{sql, sql2, Conn, End, Sql};
use super::value::args;
use super::{Corruption, StoreError};
use crate::auth::ScramSecrets;
use crate::jid::BareJid;
use crate::xmpp::roster::RosterItem;

/// File name of the SQLite database inside the data directory.
pub const DB_FILE: &str = "petrel.sqlite3";

/// How long connecting to PostgreSQL may take unless the URL says (`connect_timeout`).
const PG_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long bytes sent to PostgreSQL may stay unacknowledged before the connection is given up,
/// unless the URL says (`tcp_user_timeout`).
const PG_TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which database a store connects to.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded SQLite file `DB_FILE` in this directory (created if needed).
    Sqlite(PathBuf),
    /// A PostgreSQL database (its schema is created or migrated on connect).
    Postgres(Box<postgres::Config>),
}

impl Backend {
    /// The backend `[store]` selects (`general.data_dir` for SQLite).
    pub fn from_config(config: &crate::config::Config) -> Result<Backend, StoreError> {
        use crate::config::StoreBackend;
        match config.store.backend {
            StoreBackend::Sqlite => Ok(Backend::Sqlite(config.general.data_dir.clone())),
            StoreBackend::Postgres => {
                let url = config.store.url.as_ref().ok_or(StoreError::NoUrl)?;
                let mut pg: postgres::Config = url.parse()?;
                // Defaults the URL may override: a name in pg_stat_activity, and a start that
                // fails in seconds rather than at the OS's TCP timeout when the server is away.
                if pg.get_application_name().is_none() {
                    pg.application_name("petrel");
                }
                if pg.get_connect_timeout().is_none() {
                    pg.connect_timeout(PG_CONNECT_TIMEOUT);
                }
                limit_waits(&mut pg, config.store.query_timeout_ms);
                Ok(Backend::Postgres(Box::new(pg)))
            }
        }
    }
}

/// A database that stops answering (a lock held elsewhere, a lost network) must not hold the
/// store threads for good: every statement is cancelled after `query_timeout_ms` (0: never; unless
/// the URL's `options` set `statement_timeout`), and a connection whose sent bytes stay
/// unacknowledged is dropped (and reconnected at the next job).
pub(super) fn limit_waits(pg: &mut postgres::Config, query_timeout_ms: u64) {
    let own = pg.get_options().unwrap_or("");
    if query_timeout_ms > 0 && !own.contains("statement_timeout") {
        let sep = if own.is_empty() { "" } else { " " };
        let options = format!("{own}{sep}-c statement_timeout={query_timeout_ms}");
        pg.options(&options);
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(PG_TCP_USER_TIMEOUT);
    }
}

/// One connection to the store; each pool thread owns one.
pub struct Store {
    pub(super) db: Conn,
    /// Archive rows accepted but not yet committed (see [`Store::mam_append_later`]).
    pub(super) mam_pending: std::cell::RefCell<super::mam::Pending>,
}

const USER_INSERT: Sql = sql(
    "INSERT INTO users (domain, username, scram) VALUES (?1, ?2, ?3)
     ON CONFLICT DO NOTHING",
);

/// Deletes a user's rows from the per-user tables keyed by (domain, username).
const PURGE_BY_NAME: [Sql; 7] = [
    sql("DELETE FROM offline_message WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM blocklist WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM blocklist_version WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM private_storage WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM vcard WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM last_activity WHERE domain = ?1 AND username = ?2"),
    sql("DELETE FROM last_available WHERE domain = ?1 AND username = ?2"),
];
/// Deletes a user's rows from the per-user tables keyed by the bare JID in `"user"`.
const PURGE_BY_JID: [Sql; 6] = [
    sql("DELETE FROM roster_items WHERE \"user\" = ?1"),
    // The user's PEP nodes and items (the service of a PEP node is its owner's bare JID).
    sql("DELETE FROM pubsub_node WHERE service = ?1"),
    sql("DELETE FROM pubsub_item WHERE service = ?1"),
    sql("DELETE FROM roster_groups WHERE \"user\" = ?1"),
    sql("DELETE FROM roster_version WHERE \"user\" = ?1"),
    // Push registrations (XEP-0357).
    sql("DELETE FROM push_registration WHERE owner = ?1"),
];

impl Store {
    /// Opens (creating the directory, file and schema if needed) the SQLite store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        super::create_private_dir(data_dir)?;
        let store = Store {
            db: Conn::sqlite(&data_dir.join(DB_FILE))?,
            mam_pending: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Connects to `backend`, creating or migrating its schema.
    pub fn connect(backend: &Backend) -> Result<Store, StoreError> {
        match backend {
            Backend::Sqlite(dir) => Store::open(dir),
            Backend::Postgres(config) => {
                let store = Store {
                    db: Conn::postgres(config)?,
                    mam_pending: Default::default(),
                };
                store.migrate()?;
                Ok(store)
            }
        }
    }

    /// Adds a user; `UserExists` if present.
    pub fn add_user(&self, jid: &BareJid, secrets: &ScramSecrets) -> Result<(), StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        let scram = secrets.to_storage();
        if self.exec(USER_INSERT, args![jid.domain(), node, &scram])? == 0 {
            return Err(StoreError::UserExists);
        }
        Ok(())
    }

    /// Removes a user and everything that is theirs; returns the roster it had (every row, pending
    /// requests too). `NoSuchUser` if absent.
    pub fn remove_user(&self, jid: &BareJid) -> Result<Vec<RosterItem>, StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        // The archive rows held for the next commit are written first, the account's among them,
        // to go with it below (no flush can run inside the transaction).
        self.mam_flush();
        self.transaction(None, || {
            // The roster as it was, so the server can cancel the subscriptions (XEP-0077 §3.2).
            let roster = self.roster_rows(jid)?;
            let q = sql("DELETE FROM users WHERE domain = ?1 AND username = ?2");
            if self.exec(q, args![jid.domain(), node])? == 0 {
                return Ok(End::Rollback(Err(StoreError::NoSuchUser)));
            }
            // Everything that is the user's goes with the account: an account created again with
            // the name starts empty (no old roster, vCard or queued messages).
            for q in PURGE_BY_NAME {
                self.exec(q, args![jid.domain(), node])?;
            }
            for q in PURGE_BY_JID {
                self.exec(q, args![jid.as_str()])?;
            }
            // The message archive and its preferences (XEP-0313 data is personal).
            self.mam_delete_owner(jid.as_str())?;
            Ok(End::Commit(Ok(roster)))
        })?
    }

    /// Replaces a user's secrets (password change); `NoSuchUser` if absent.
    pub fn set_secrets(&self, jid: &BareJid, secrets: &ScramSecrets) -> Result<(), StoreError> {
        let node = jid.node().ok_or(StoreError::NoLocalpart)?;
        let q = sql("UPDATE users SET scram = ?3 WHERE domain = ?1 AND username = ?2");
        let scram = secrets.to_storage();
        if self.exec(q, args![jid.domain(), node, &scram])? == 0 {
            return Err(StoreError::NoSuchUser);
        }
        Ok(())
    }

    /// A user's secrets, or None if there is no such user.
    pub fn get_secrets(&self, jid: &BareJid) -> Result<Option<ScramSecrets>, StoreError> {
        let Some(node) = jid.node() else {
            return Ok(None);
        };
        let q = sql("SELECT scram FROM users WHERE domain = ?1 AND username = ?2");
        let Some(mut row) = self.row(q, args![jid.domain(), node])? else {
            return Ok(None);
        };
        ScramSecrets::from_storage(&row.text(0)?)
            .map(Some)
            .map_err(|e| Corruption::Secrets(e).into())
    }

    /// True when `jid` is a registered account.
    pub(crate) fn user_exists(&self, jid: &BareJid) -> Result<bool, StoreError> {
        let Some(node) = jid.node() else {
            return Ok(false);
        };
        self.is_user(jid.domain(), node)
    }

    /// [`Store::user_exists`] for a transaction that writes the user's data: on PostgreSQL the
    /// account row stays until the commit (`FOR KEY SHARE`), so [`Store::remove_user`] waits and
    /// its purge sees what was written; SQLite's write transactions run one at a time anyway.
    pub(super) fn user_held(&self, jid: &BareJid) -> Result<bool, StoreError> {
        match jid.node() {
            Some(node) => self.account_held(jid.domain(), node),
            None => Ok(false),
        }
    }

    /// [`Store::user_held`] for `node@domain` (both prepared).
    pub(super) fn account_held(&self, domain: &str, node: &str) -> Result<bool, StoreError> {
        let q = sql2(
            "SELECT 1 FROM users WHERE domain = ?1 AND username = ?2",
            "SELECT 1 FROM users WHERE domain = ?1 AND username = ?2 FOR KEY SHARE",
        );
        Ok(self.row(q, args![domain, node])?.is_some())
    }

    /// Runs `write` in a transaction (holding `lock` on PostgreSQL) if `user` is an account,
    /// which it stays until the commit ([`Store::user_held`]); `NoSuchUser`, nothing written,
    /// if not: the data of an account removed meanwhile would outlive it, for whoever registers
    /// the name next.
    pub(super) fn account_write<R>(
        &self,
        user: &BareJid,
        lock: Option<&str>,
        write: impl FnOnce() -> Result<End<R>, StoreError>,
    ) -> Result<R, StoreError> {
        self.transaction(lock, || {
            if !self.user_held(user)? {
                return Err(StoreError::NoSuchUser);
            }
            write()
        })
    }

    /// True when `node@domain` (both prepared) is a registered account.
    pub(super) fn is_user(&self, domain: &str, node: &str) -> Result<bool, StoreError> {
        let q = sql("SELECT 1 FROM users WHERE domain = ?1 AND username = ?2");
        Ok(self.row(q, args![domain, node])?.is_some())
    }

    /// All users, or those of one domain, sorted by domain then localpart.
    pub fn list_users(&self, domain: Option<&str>) -> Result<Vec<BareJid>, StoreError> {
        // Stored domains are prepared; prepare the filter the same way.
        let domain = domain.map(|d| {
            BareJid::domain_only(d)
                .map(|j| j.domain().to_owned())
                .unwrap_or_else(|_| d.to_owned())
        });
        // The CAST tells PostgreSQL the type of a parameter that is also compared with NULL.
        let q = sql("SELECT domain, username FROM users
             WHERE CAST(?1 AS TEXT) IS NULL OR domain = ?1 ORDER BY domain, username");
        self.rows(q, args![domain.as_deref()])?
            .into_iter()
            .map(|mut r| {
                let (d, u) = (r.text(0)?, r.text(1)?);
                BareJid::new(Some(&u), &d).map_err(|e| Corruption::Jid(e).into())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn removing_a_user_removes_their_data() {
        for db in test_dbs() {
            let store = db.open();
            let n = db.name;
            let alice = jid("alice@example.com");
            let s1 = ScramSecrets::derive("one", 16);
            store
                .add_user(&alice, &s1)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .vcard_set(&alice, b"<vCard xmlns='vcard-temp'><FN>A</FN></vCard>")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .offline_push(&alice, "bob@example.com/r", b"<message/>", 10, None)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .remove_user(&alice)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .add_user(&alice, &s1)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            // The account created again with the name starts empty.
            assert!(
                matches!(store.vcard_get(&alice), Ok(crate::store::VcardGet::Empty)),
                "{n}"
            );
            assert_eq!(store.offline_count(&alice).ok(), Some(0), "{n}");
        }
    }

    #[test]
    fn no_data_is_written_for_a_removed_account() {
        // XEP-0077 §3.2: a write queued by another session of an account removed meanwhile ran
        // after the purge, and the next account of the name found it.
        use crate::store::{
            ArchivedMessage, BlockChange, BlockUpdateError, Keep, MamFilter, RosterWrite,
            StoredItem,
        };
        for db in test_dbs() {
            let store = db.open();
            let n = db.name;
            let alice = jid("alice@example.com");
            store
                .add_user(&alice, &ScramSecrets::derive("one", 16))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store
                .remove_user(&alice)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let refused = |what: &str, r: Result<(), StoreError>| {
                assert!(
                    matches!(r, Err(StoreError::NoSuchUser)),
                    "{n}: {what}: {r:?}"
                );
            };
            let vcard = b"<vCard xmlns='vcard-temp'><FN>LEAK</FN></vCard>";
            refused("vcard", store.vcard_set(&alice, vcard));
            let frag = [("urn:leak".to_owned(), b"<x xmlns='urn:leak'/>".to_vec())];
            refused("private", store.private_set(&alice, &frag, 1000).map(drop));
            let block = BlockChange::Block(vec!["leak@example.com".into()]);
            let blocked = store.blocklist_update(&alice, &block, 10);
            assert!(
                matches!(
                    blocked,
                    Err(BlockUpdateError::Store(StoreError::NoSuchUser))
                ),
                "{n}: {blocked:?}"
            );
            let contact = jid("leak@example.com");
            let put = RosterWrite::Put(crate::xmpp::roster::RosterItem::new(contact.clone()));
            refused(
                "roster",
                store
                    .roster_change(&alice, &contact, |_, _| (put, ()))
                    .map(drop),
            );
            refused(
                "pep node",
                store.pubsub_node_save(alice.as_str(), "urn:leak", "{}"),
            );
            let item = StoredItem {
                id: "i".into(),
                publisher: alice.as_str().into(),
                published: 1,
                payload: "<x xmlns='urn:leak'/>".into(),
            };
            refused(
                "pep item",
                store.pubsub_item_put(alice.as_str(), "urn:leak", &item, &[]),
            );
            let sent = ArchivedMessage {
                owner: alice.as_str().into(),
                id: 1,
                with_bare: "leak@example.com".into(),
                with_res: String::new(),
                outgoing: true,
                ts: 1,
                stanza: b"<message><body>LEAK</body></message>".to_vec(),
                keep: Keep::IfAccount,
            };
            store
                .mam_append(&[sent])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            // The account registered again with the name finds none of it.
            store
                .add_user(&alice, &ScramSecrets::derive("two", 16))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(
                matches!(store.vcard_get(&alice), Ok(crate::store::VcardGet::Empty)),
                "{n}"
            );
            assert_eq!(
                store.private_get(&alice, "urn:leak").ok(),
                Some(None),
                "{n}"
            );
            assert_eq!(
                store.blocklist_get(&alice).map(|l| l.items.len()).ok(),
                Some(0),
                "{n}"
            );
            assert_eq!(
                store.roster_rows(&alice).map(|r| r.len()).ok(),
                Some(0),
                "{n}"
            );
            assert_eq!(
                store.pubsub_load(alice.as_str()).map(|v| v.len()).ok(),
                Some(0),
                "{n}"
            );
            let archived = store.mam_count(alice.as_str(), &MamFilter::default());
            assert_eq!(archived.ok(), Some(0), "{n}");
        }
    }

    #[test]
    fn crud() {
        for db in test_dbs() {
            let store = db.open();
            let n = db.name;
            let alice = jid("alice@example.com");
            let s1 = ScramSecrets::derive("one", 16);
            assert_eq!(store.get_secrets(&alice).ok().flatten(), None, "{n}");
            store
                .add_user(&alice, &s1)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(
                matches!(store.add_user(&alice, &s1), Err(StoreError::UserExists)),
                "{n}"
            );
            assert_eq!(
                store.get_secrets(&alice).ok().flatten(),
                Some(s1.clone()),
                "{n}"
            );

            let s2 = ScramSecrets::derive("two", 16);
            store
                .set_secrets(&alice, &s2)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let got = store.get_secrets(&alice).ok().flatten();
            assert!(
                got.as_ref()
                    .is_some_and(|g| g.verify_plain("two") && !g.verify_plain("one")),
                "{n}"
            );

            for u in ["bob@example.com", "carol@other.org", "_zed@example.com"] {
                store
                    .add_user(&jid(u), &s1)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            let all = store
                .list_users(None)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let names: Vec<_> = all.iter().map(BareJid::as_str).collect();
            // Bytewise order on both backends (`_` sorts before letters; a locale collation would ignore it).
            assert_eq!(
                names,
                [
                    "_zed@example.com",
                    "alice@example.com",
                    "bob@example.com",
                    "carol@other.org"
                ],
                "{n}"
            );
            let ex = store
                .list_users(Some("EXAMPLE.com"))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(ex.len(), 3, "{n}");

            store
                .remove_user(&alice)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(
                matches!(store.remove_user(&alice), Err(StoreError::NoSuchUser)),
                "{n}"
            );
            assert!(
                matches!(store.set_secrets(&alice, &s1), Err(StoreError::NoSuchUser)),
                "{n}"
            );
            assert_eq!(store.get_secrets(&alice).ok().flatten(), None, "{n}");
            let domain_only = jid("example.com");
            assert!(
                matches!(
                    store.add_user(&domain_only, &s1),
                    Err(StoreError::NoLocalpart)
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn persists_across_connections() {
        for db in test_dbs() {
            let n = db.name;
            let alice = jid("alice@example.com");
            {
                let store = db.open();
                let s = ScramSecrets::derive("correct horse", 16);
                store
                    .add_user(&alice, &s)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            let store = db.open();
            let got = store.get_secrets(&alice).ok().flatten();
            assert!(got.is_some_and(|g| g.verify_plain("correct horse")), "{n}");
        }
    }

    #[test]
    fn sqlite_is_wal_and_holds_no_passwords() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = dir.path().join("a/b");
        let alice = jid("alice@example.com");
        let store = Store::open(&nested).unwrap_or_else(|e| panic!("{e}"));
        let s = ScramSecrets::derive("correct horse", 16);
        store.add_user(&alice, &s).unwrap_or_else(|e| panic!("{e}"));
        let mode = store
            .row(sql("PRAGMA journal_mode"), &[])
            .ok()
            .flatten()
            .map(|mut r| r.text(0));
        assert_eq!(mode.and_then(Result::ok).as_deref(), Some("wal"));
        drop(store);
        let bytes = std::fs::read(nested.join(DB_FILE)).unwrap_or_default();
        let wal = std::fs::read(nested.join(format!("{DB_FILE}-wal"))).unwrap_or_default();
        assert!(bytes.len() + wal.len() > 0);
        let needle = b"correct horse";
        let found = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(!found(&bytes) && !found(&wal));
    }

    #[test]
    fn corrupt_secrets_and_newer_schema() {
        for db in test_dbs() {
            let n = db.name;
            let store = db.open();
            store
                .exec(
                    sql("INSERT INTO users (domain, username, scram) VALUES ('x.org', 'eve', 'junk')"),
                    &[],
                )
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let r = store.get_secrets(&jid("eve@x.org"));
            assert!(
                matches!(r, Err(StoreError::Corrupt(Corruption::Secrets(_)))),
                "{n}: {r:?}"
            );
            store
                .exec(sql("INSERT INTO schema_version (version) VALUES (99)"), &[])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            drop(store);
            let r = Store::connect(db.backend());
            assert!(
                matches!(r, Err(StoreError::NewerSchema(99))),
                "{n}: {:?}",
                r.err()
            );
        }
    }
}
