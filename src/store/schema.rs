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
use super::{Corruption, Store, StoreError};

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
];

/// The newest schema version this build writes.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

impl Store {
    /// Applies the missing migrations in one write transaction.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
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
                return Err(Corruption::SchemaVersion(have).into());
            }
            for (v, m) in (1..).zip(MIGRATIONS).skip(have.max(0) as usize) {
                match self.kind() {
                    Kind::Sqlite => {
                        self.db.batch(m.sqlite)?;
                        if v == 2 {
                            self.fix_v2_sqlite()?;
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
