//! Versioned schema migrations, one SQL text per backend for each version.
//!
//! `schema_version` holds one row per applied version. `Store::open`/`connect` applies the missing
//! ones in one transaction under the store's write lock (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
//! advisory lock), so the pool threads opening at once serialize and only the first migrates. A
//! version above the newest this build knows is refused: a newer petrel wrote the database.
//!
//! Adding a table: append a migration (never edit a released one).

use super::db::{End, Kind};
use super::value::args;
use super::{Store, StoreError};

/// One schema version.
struct Migration {
    sqlite: &'static str,
    pg: &'static str,
}

/// Version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: include_str!("schema/v1_sqlite.sql"),
        pg: include_str!("schema/v1_pg.sql"),
    },
    // Version 2: every feature table. Databases written by builds before versioned migrations
    // already have some of them (created on open with IF NOT EXISTS), hence IF NOT EXISTS here
    // too, and `offline_message.lease` is added in code when missing (see `fix_v2_sqlite`).
    Migration {
        sqlite: include_str!("schema/v2_sqlite.sql"),
        pg: include_str!("schema/v2_pg.sql"),
    },
    // Version 3: the message archive.
    Migration {
        sqlite: include_str!("schema/v3_sqlite.sql"),
        pg: include_str!("schema/v3_pg.sql"),
    },
    // Version 4: hosted domains added at run time (admin API).
    Migration {
        sqlite: include_str!("schema/v4_domains_sqlite.sql"),
        pg: include_str!("schema/v4_domains_pg.sql"),
    },
    // Version 5: pubsub nodes and items (PEP and the pubsub service).
    Migration {
        sqlite: include_str!("schema/v5_pubsub_sqlite.sql"),
        pg: include_str!("schema/v5_pubsub_pg.sql"),
    },
    // Version 6: push registrations (XEP-0357).
    Migration {
        sqlite: include_str!("schema/v6_push_sqlite.sql"),
        pg: include_str!("schema/v6_push_pg.sql"),
    },
    // Version 7: the archive keyed by integer JID ids (existing archives converted).
    Migration {
        sqlite: include_str!("schema/v7_mam_ids_sqlite.sql"),
        pg: include_str!("schema/v7_mam_ids_pg.sql"),
    },
    // Version 8: each archived message's stanza stored once, the per-owner rows refer to it.
    Migration {
        sqlite: include_str!("schema/v8_mam_msg_sqlite.sql"),
        pg: include_str!("schema/v8_mam_msg_pg.sql"),
    },
    // Version 9: on SQLite, each owner's archive entries packed into runs (converted in code).
    Migration {
        sqlite: include_str!("schema/v9_mam_run_sqlite.sql"),
        pg: include_str!("schema/v9_mam_run_pg.sql"),
    },
    // Version 10: each user's offline message count, kept by triggers.
    Migration {
        sqlite: include_str!("schema/v10_offline_count_sqlite.sql"),
        pg: include_str!("schema/v10_offline_count_pg.sql"),
    },
    // Version 11: the upload slots given to each user in the last day (XEP-0363 quota).
    Migration {
        sqlite: include_str!("schema/v11_upload_grant_sqlite.sql"),
        pg: include_str!("schema/v11_upload_grant_pg.sql"),
    },
    // Version 12: server secrets shared by shards and nodes (MUC occupant ids).
    Migration {
        sqlite: include_str!("schema/v12_secret_sqlite.sql"),
        pg: include_str!("schema/v12_secret_pg.sql"),
    },
];

/// The newest schema version this build writes.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

impl Store {
    /// Applies the missing migrations in one write transaction, however long they take.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        self.unlimited(|| self.migrate_now())
    }

    /// [`Store::migrate`] under the connection's statement time-out.
    fn migrate_now(&self) -> Result<(), StoreError> {
        self.transaction(Some("petrel schema"), || {
            self.db
                .batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
            let have = self
                .row(
                    super::db::sql("SELECT max(version) FROM schema_version"),
                    &[],
                )?
                .map(|mut r| r.opt_int(0))
                .transpose()?
                .flatten()
                .unwrap_or(0);
            if have > LATEST {
                return Err(StoreError::NewerSchema(have));
            }
            for (v, m) in (1..).zip(MIGRATIONS).skip(have.max(0) as usize) {
                match self.kind() {
                    Kind::Sqlite => {
                        self.db.batch(m.sqlite)?;
                        if v == 2 {
                            self.fix_v2_sqlite()?;
                        }
                        if v == 9 {
                            self.convert_v9_sqlite()?;
                        }
                    }
                    Kind::Postgres => self.db.batch(m.pg)?,
                }
                self.exec(
                    super::db::sql("INSERT INTO schema_version (version) VALUES (?1)"),
                    args![v],
                )?;
            }
            Ok(End::Commit(()))
        })
    }

    /// Adds `offline_message.lease` to a table created before the column existed.
    fn fix_v2_sqlite(&self) -> Result<(), StoreError> {
        let has_lease = self
            .row(
                super::db::sql(
                    "SELECT 1 FROM pragma_table_info('offline_message') WHERE name = 'lease'",
                ),
                &[],
            )?
            .is_some();
        if !has_lease {
            self.db
                .batch("ALTER TABLE offline_message ADD COLUMN lease INTEGER")?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    /// Test support: runs `undo` (dropping what later versions made) and forgets every version
    /// after `keep`, so that the next open migrates them again. Panics on a store error.
    pub(super) fn rewind_schema(&self, undo: &str, keep: i64) {
        let forget = format!("DELETE FROM schema_version WHERE version > {keep}");
        self.db
            .batch(undo)
            .and_then(|()| self.db.batch(&forget))
            .unwrap_or_else(|e| panic!("rewind to {keep}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{sql, Sql};
    use crate::store::testing::test_dbs;
    use crate::store::value::Arg;

    #[test]
    fn every_version_is_recorded_once_across_reopens() {
        for db in test_dbs() {
            let n = db.name;
            drop(db.open());
            let store = db.open();
            let versions: Vec<i64> = store
                .rows(
                    sql("SELECT version FROM schema_version ORDER BY version"),
                    &[],
                )
                .unwrap_or_else(|e| panic!("{n}: {e}"))
                .into_iter()
                .map(|mut r| r.int(0).unwrap_or(-1))
                .collect();
            assert_eq!(versions, (1..=LATEST).collect::<Vec<_>>(), "{n}");
        }
    }

    /// A database written before versioned migrations: version 1 recorded, feature tables created
    /// by the old open, `offline_message` without `lease`.
    #[test]
    fn sqlite_from_before_versioned_migrations_is_upgraded() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let c = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE))
                .unwrap_or_else(|e| panic!("{e}"));
            c.execute_batch(concat!(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1);",
                include_str!("schema/v1_sqlite.sql"),
                "CREATE TABLE offline_message (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, domain TEXT NOT NULL,
                    username TEXT NOT NULL, stamp TEXT NOT NULL, sender TEXT NOT NULL,
                    stanza BLOB NOT NULL);
                 INSERT INTO users (domain, username, scram) VALUES ('example.com', 'bob', 'x');
                 INSERT INTO offline_message (domain, username, stamp, sender, stanza)
                 VALUES ('example.com', 'bob', '2020-01-01T00:00:00.000Z', 'a@x', X'3c6d2f3e');"
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let max = store
            .int(sql("SELECT max(version) FROM schema_version"), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(max, LATEST);
        let bob = crate::jid::BareJid::parse("bob@example.com").unwrap_or_else(|e| panic!("{e}"));
        // The old row is kept and can be leased (the column was added).
        let got = store
            .offline_lease(&bob, usize::MAX, usize::MAX)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].stanza, b"<m/>");
        assert!(store
            .offline_lease(&bob, usize::MAX, usize::MAX)
            .is_ok_and(|v| v.is_empty()));
    }

    /// Archive rows of an older layout through `put` ((owner, id, contact, outgoing, time, stanza)
    /// parameters): each `(owner, id, contact, outgoing)` with time `id * 10` and stanza `<m{id}/>`.
    fn put_old_rows(store: &Store, n: &str, put: Sql, rows: &[(Arg<'_>, i64, Arg<'_>, i64)]) {
        for &(owner, id, with, out) in rows {
            let stanza = format!("<m{id}/>");
            let row = [
                owner,
                Arg::Int(id),
                with,
                Arg::Int(out),
                Arg::Int(id * 10),
                Arg::Bytes(stanza.as_bytes()),
            ];
            store.exec(put, &row).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    /// An archive written under version 6 (owner and contact as text columns) is converted by
    /// versions 7 and 8: its rows, ids and contacts survive, and per-owner queries find them.
    #[test]
    fn archive_of_version_6_is_converted() {
        use crate::store::MamFilter;
        for db in test_dbs() {
            let n = db.name;
            let store = db.open();
            let v6 = match store.kind() {
                Kind::Sqlite => {
                    "CREATE TABLE mam_message (seq INTEGER PRIMARY KEY, owner TEXT NOT NULL,
                         id INTEGER NOT NULL, with_bare TEXT NOT NULL, with_res TEXT NOT NULL,
                         outgoing INTEGER NOT NULL, ts INTEGER NOT NULL, stanza BLOB NOT NULL)"
                }
                Kind::Postgres => {
                    "CREATE TABLE mam_message (owner TEXT NOT NULL, id BIGINT NOT NULL,
                         with_bare TEXT NOT NULL, with_res TEXT NOT NULL, outgoing BIGINT NOT NULL,
                         ts BIGINT NOT NULL, stanza BYTEA NOT NULL, PRIMARY KEY (owner, id))"
                }
            };
            let old = match store.kind() {
                Kind::Sqlite => "DROP TABLE mam_run; DROP TABLE mam_msg; DROP TABLE mam_jid;",
                Kind::Postgres => "DROP TABLE mam_row; DROP TABLE mam_jid;",
            };
            store.rewind_schema(old, 6);
            store.db.batch(v6).unwrap_or_else(|e| panic!("{n}: {e}"));
            let put = sql(
                "INSERT INTO mam_message (owner, id, with_bare, with_res, outgoing, ts, stanza)
                 VALUES (?1, ?2, ?3, 'r', ?4, ?5, ?6)",
            );
            let (a, b, c) = (Arg::Text("a@x"), Arg::Text("b@x"), Arg::Text("c@x"));
            put_old_rows(&store, n, put, &[(a, 1, b, 1), (b, 1, a, 0), (a, 2, c, 0)]);
            drop(store);
            let store = db.open();
            let all = MamFilter::default();
            let got = store
                .mam_query("a@x", &all, 10, false)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let got: Vec<_> = got
                .iter()
                .map(|m| {
                    (
                        m.id,
                        m.with_bare.as_str(),
                        m.outgoing,
                        m.ts,
                        m.stanza.as_slice(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    (1, "b@x", true, 10, &b"<m1/>"[..]),
                    (2, "c@x", false, 20, &b"<m2/>"[..])
                ],
                "{n}"
            );
            let with_a = MamFilter {
                with_bare: Some("a@x".into()),
                ..MamFilter::default()
            };
            assert_eq!(store.mam_count("b@x", &with_a).ok(), Some(1), "{n}");
            // New rows go in after the converted ones.
            let more = crate::store::ArchivedMessage {
                owner: "b@x".into(),
                id: 3,
                with_bare: "d@x".into(),
                with_res: String::new(),
                outgoing: true,
                ts: 30,
                stanza: b"<m3/>".to_vec(),
                keep: crate::store::Keep::Always,
            };
            store
                .mam_append(&[more])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(store.mam_count("b@x", &all).ok(), Some(2), "{n}");
        }
    }

    /// An archive written under version 7 (the stanza in each owner's row) is converted by
    /// version 8 (SQLite: each message's stanza kept once; PostgreSQL keeps the layout): both
    /// owners still read their rows, and deleting one owner's archive leaves the other's message
    /// whole.
    #[test]
    fn archive_of_version_7_is_converted() {
        use crate::store::MamFilter;
        for db in test_dbs() {
            let n = db.name;
            let store = db.open();
            let v7 = match store.kind() {
                Kind::Sqlite => {
                    "CREATE TABLE mam_row (seq INTEGER PRIMARY KEY, oid INTEGER NOT NULL,
                         id INTEGER NOT NULL, wid INTEGER NOT NULL, with_res TEXT NOT NULL,
                         outgoing INTEGER NOT NULL, ts INTEGER NOT NULL, stanza BLOB NOT NULL);
                     CREATE UNIQUE INDEX mam_row_owner_id ON mam_row (oid, id);
                     CREATE INDEX mam_row_with ON mam_row (oid, wid, id);"
                }
                Kind::Postgres => {
                    "CREATE TABLE mam_row (oid BIGINT NOT NULL, id BIGINT NOT NULL,
                         wid BIGINT NOT NULL, with_res TEXT NOT NULL, outgoing BIGINT NOT NULL,
                         ts BIGINT NOT NULL, stanza BYTEA NOT NULL, PRIMARY KEY (oid, id));
                     CREATE INDEX mam_row_with ON mam_row (oid, wid, id);"
                }
            };
            let old = match store.kind() {
                Kind::Sqlite => "DROP TABLE mam_run; DROP TABLE mam_msg;",
                Kind::Postgres => "DROP TABLE mam_row;",
            };
            store.rewind_schema(old, 7);
            store
                .db
                .batch(
                    "DELETE FROM mam_jid;
                     INSERT INTO mam_jid (jid_id, jid) VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x');",
                )
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            store.db.batch(v7).unwrap_or_else(|e| panic!("{n}: {e}"));
            let put = sql(
                "INSERT INTO mam_row (oid, id, wid, with_res, outgoing, ts, stanza)
                 VALUES (?1, ?2, ?3, 'r', ?4, ?5, ?6)",
            );
            // Message 1 from a to b (both archives), message 2 from c to a (a's only).
            let (a, b, c) = (Arg::Int(1), Arg::Int(2), Arg::Int(3));
            put_old_rows(&store, n, put, &[(a, 1, b, 1), (b, 1, a, 0), (a, 2, c, 0)]);
            drop(store);
            let store = db.open();
            let msgs = crate::store::mam::tests::STORED_MESSAGES;
            assert_eq!(store.int(msgs, &[]).ok(), Some(2), "{n}");
            let all = MamFilter::default();
            let read = |owner: &str| {
                store
                    .mam_query(owner, &all, 10, false)
                    .unwrap_or_else(|e| panic!("{n}: {e}"))
                    .into_iter()
                    .map(|m| (m.id, m.with_bare, m.outgoing, m.stanza))
                    .collect::<Vec<_>>()
            };
            let m = |id: i64, with: &str, out: bool| {
                (id, with.to_owned(), out, format!("<m{id}/>").into_bytes())
            };
            assert_eq!(
                read("a@x"),
                vec![m(1, "b@x", true), m(2, "c@x", false)],
                "{n}"
            );
            assert_eq!(read("b@x"), vec![m(1, "a@x", false)], "{n}");
            // a's archive goes; b's copy of message 1 stays whole, message 2 goes.
            assert_eq!(store.mam_delete_owner("a@x").ok(), Some(2), "{n}");
            assert_eq!(read("b@x"), vec![m(1, "a@x", false)], "{n}");
            assert_eq!(store.int(msgs, &[]).ok(), Some(1), "{n}");
            assert_eq!(store.mam_max_id().ok(), Some(1), "{n}");
        }
    }
}
