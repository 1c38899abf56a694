//! The connection under [`Store`]: SQLite or PostgreSQL behind one small interface.
//!
//! Each statement is written once with `?N` placeholders ([`sql`]); PostgreSQL gets it with `$N`
//! (converted once, when first prepared). Where the dialects differ, [`sql2`] gives one text per
//! backend. Both backends cache prepared statements per connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use super::value::{Arg, Row, Val};
use super::{Store, StoreError};

/// How long a SQLite statement waits on another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per SQLite connection (rusqlite's default, 16, is fewer than the store
/// has statements).
const SQLITE_STATEMENT_CACHE: usize = 128;

/// SQLite page cache per connection, in KiB (negative `cache_size` means KiB).
const SQLITE_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages (4 KiB) after which a commit checkpoints (SQLite's default: 1 000).
const SQLITE_CHECKPOINT_PAGES: i64 = 16_384;

/// One statement's text, per backend (the same `&'static str` when the dialects agree).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    sqlite: &'static str,
    pg: &'static str,
}

/// A statement both backends run as written (`?N` placeholders).
pub(crate) const fn sql(both: &'static str) -> Sql {
    Sql {
        sqlite: both,
        pg: both,
    }
}

/// A statement written once per backend (both with `?N` placeholders).
pub(crate) const fn sql2(sqlite: &'static str, pg: &'static str) -> Sql {
    Sql { sqlite, pg }
}

/// Which backend a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A PostgreSQL connection with its statement cache.
pub(super) struct Pg {
    config: postgres::Config,
    client: postgres::Client,
    /// Keyed by the address and length of the statement's static text.
    stmts: HashMap<(usize, usize), postgres::Statement>,
    /// Inside BEGIN ... COMMIT: a lost connection must fail the transaction, not reconnect.
    in_tx: bool,
}

/// One backend connection.
pub(super) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<Pg>>),
}

impl Conn {
    /// Opens the SQLite file at `path` in WAL mode.
    pub(super) fn sqlite(path: &std::path::Path) -> Result<Conn, StoreError> {
        super::files::private_database(path)?;
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(SQLITE_STATEMENT_CACHE);
        // WAL: readers do not block the writer; NORMAL sync is durable across process
        // crashes and loses at most the last commits on power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A page cache that holds the archive's hot index pages (the default 2 MB makes every
        // write re-read them), and checkpoints every 64 MB of WAL instead of 4 MB: pages written
        // again and again (the end of each owner's index range) are copied into the database
        // and synced once per checkpoint, so fewer checkpoints copy and sync far less.
        conn.pragma_update(None, "cache_size", -SQLITE_CACHE_KIB)?;
        conn.pragma_update(None, "wal_autocheckpoint", SQLITE_CHECKPOINT_PAGES)?;
        Ok(Conn::Sqlite(conn))
    }

    /// Connects to PostgreSQL.
    pub(super) fn postgres(config: &postgres::Config) -> Result<Conn, StoreError> {
        let client = config.connect(postgres::NoTls)?;
        Ok(Conn::Postgres(Box::new(RefCell::new(Pg {
            config: config.clone(),
            client,
            stmts: HashMap::new(),
            in_tx: false,
        }))))
    }

    pub(super) fn kind(&self) -> Kind {
        match self {
            Conn::Sqlite(_) => Kind::Sqlite,
            Conn::Postgres(_) => Kind::Postgres,
        }
    }

    /// Runs `text` (several statements, no parameters) as it is: schema migrations.
    pub(super) fn batch(&self, text: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(text)?,
            Conn::Postgres(pg) => pg.borrow_mut().live()?.client.batch_execute(text)?,
        }
        Ok(())
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) fn exec(&self, q: Sql, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let n = c
                    .prepare_cached(q.sqlite)?
                    .execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Conn::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let pg = pg.live()?;
                let st = pg.statement(q.pg)?;
                Ok(pg.client.execute(&st, &pg_args(args))?)
            }
        }
    }

    /// Runs a PostgreSQL statement (`$N` placeholders) with parameters the shared [`Arg`] cannot
    /// express (arrays for multi-row inserts); the number of rows it changed. `WrongBackend` on
    /// SQLite.
    pub(super) fn pg_exec(
        &self,
        text: &'static str,
        args: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(_) => Err(StoreError::WrongBackend),
            Conn::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let pg = pg.live()?;
                let st = pg.statement(text)?;
                Ok(pg.client.execute(&st, args)?)
            }
        }
    }

    /// Runs a query; every row.
    pub(super) fn rows(&self, q: Sql, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(q.sqlite)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(Val::from_sqlite(r.get_ref(i)?)?);
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Conn::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let pg = pg.live()?;
                let st = pg.statement(q.pg)?;
                let rows = pg.client.query(&st, &pg_args(args))?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.try_get::<_, Val>(i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Row)
                            .map_err(StoreError::from)
                    })
                    .collect()
            }
        }
    }

    /// Inside a transaction (BEGIN ... COMMIT).
    pub(crate) fn in_tx(&self) -> bool {
        match self {
            Conn::Sqlite(c) => !c.is_autocommit(),
            Conn::Postgres(pg) => pg.borrow().in_tx,
        }
    }

    fn set_in_tx(&self, on: bool) {
        if let Conn::Postgres(pg) = self {
            pg.borrow_mut().in_tx = on;
        }
    }
}

impl Pg {
    /// This connection, reconnected first if the server dropped it (outside a transaction only).
    fn live(&mut self) -> Result<&mut Pg, StoreError> {
        if self.client.is_closed() && !self.in_tx {
            self.client = self.config.connect(postgres::NoTls)?;
            self.stmts.clear();
        }
        Ok(self)
    }

    fn statement(&mut self, text: &'static str) -> Result<postgres::Statement, StoreError> {
        let key = (text.as_ptr() as usize, text.len());
        if let Some(st) = self.stmts.get(&key) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(&dollar_placeholders(text))?;
        self.stmts.insert(key, st.clone());
        Ok(st)
    }
}

fn pg_args<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// `?N` -> `$N`, outside quoted strings and identifiers.
fn dollar_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// How a transaction ends when its body succeeds.
pub(crate) enum End<R> {
    /// Keep what it wrote.
    Commit(R),
    /// Undo what it wrote (the body decided against it).
    Rollback(R),
}

/// Rolls back on drop unless committed (an error or a panic in the body).
struct Open<'a> {
    conn: &'a Conn,
    done: bool,
}

impl Open<'_> {
    fn finish(mut self, text: &str) -> Result<(), StoreError> {
        self.conn.batch(text)?;
        self.done = true;
        self.conn.set_in_tx(false);
        Ok(())
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing more to do if this fails: the connection is closed or the transaction gone.
            let _ = self.conn.batch("ROLLBACK");
            self.conn.set_in_tx(false);
        }
    }
}

/// Serializes PostgreSQL transactions taking the same key (as SQLite's write lock serializes all).
const PG_LOCK: Sql = sql("SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))");

impl Store {
    /// The backend this store talks to.
    pub(crate) fn kind(&self) -> Kind {
        self.db.kind()
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) fn exec(&self, q: Sql, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.db.exec(q, args)
    }

    /// Runs a query; every row.
    pub(crate) fn rows(&self, q: Sql, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        self.db.rows(q, args)
    }

    /// Runs a query; its first row, if any.
    pub(crate) fn row(&self, q: Sql, args: &[Arg<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.db.rows(q, args)?.into_iter().next())
    }

    /// Runs a query that returns one integer (`count(*)` and the like).
    pub(crate) fn int(&self, q: Sql, args: &[Arg<'_>]) -> Result<i64, StoreError> {
        match self.row(q, args)? {
            Some(mut r) => r.int(0),
            None => Err(super::Corruption::Column("a row").into()),
        }
    }

    /// Runs `body` with no statement time-out (PostgreSQL's `statement_timeout`, which
    /// `store.query_timeout_ms` sets for every connection): a schema migration, or waiting for
    /// another node's, and an archive purge may rightly take longer than any query a client
    /// waits on.
    pub(crate) fn unlimited<R>(
        &self,
        body: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.kind() != Kind::Postgres {
            return body();
        }
        self.db.batch("SET statement_timeout = 0")?;
        let r = body();
        // Back to the connection's own setting (its startup options), even after an error.
        let reset = self.db.batch("RESET statement_timeout");
        let r = r?;
        reset?;
        Ok(r)
    }

    /// Runs `body` so that all or none of what it writes is kept: in the caller's transaction when
    /// there is one (an error fails it), else in a transaction of its own.
    pub(crate) fn atomic<R>(
        &self,
        body: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.db.in_tx() {
            body()
        } else {
            self.transaction(None, || body().map(End::Commit))
        }
    }

    /// Runs `body` in a write transaction. SQLite takes the database's write lock at once
    /// (`BEGIN IMMEDIATE`); PostgreSQL takes a transaction-scoped advisory lock on `lock`, if
    /// given, so transactions on the same data (one user's roster, one address's registrations...)
    /// run one after the other while others proceed. An error or a panic in `body` rolls back.
    pub(crate) fn transaction<R>(
        &self,
        lock: Option<&str>,
        body: impl FnOnce() -> Result<End<R>, StoreError>,
    ) -> Result<R, StoreError> {
        match self.kind() {
            Kind::Sqlite => self.db.batch("BEGIN IMMEDIATE")?,
            Kind::Postgres => {
                self.db.batch("BEGIN")?;
                self.db.set_in_tx(true);
            }
        }
        let open = Open {
            conn: &self.db,
            done: false,
        };
        if let (Kind::Postgres, Some(lock)) = (self.kind(), lock) {
            self.db.exec(PG_LOCK, &[Arg::Text(lock)])?;
        }
        match body()? {
            End::Commit(r) => {
                open.finish("COMMIT")?;
                Ok(r)
            }
            End::Rollback(r) => {
                open.finish("ROLLBACK")?;
                Ok(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;

    #[test]
    fn postgres_reconnects_after_losing_its_connection() {
        for db in crate::store::testing::test_dbs() {
            let store = db.open();
            if store.kind() != Kind::Postgres {
                continue;
            }
            let pid = store
                .int(sql("SELECT pg_backend_pid()"), &[])
                .unwrap_or_else(|e| panic!("{e}"));
            db.drop_connection(&store);
            // The statements that meet the closed connection fail; a later one reconnects.
            let again = (0..3)
                .find_map(|_| store.int(sql("SELECT pg_backend_pid()"), &[]).ok())
                .unwrap_or_else(|| panic!("no reconnect"));
            assert_ne!(again, pid);
        }
    }

    #[test]
    fn postgres_cancels_a_statement_that_waits_too_long() {
        use crate::jid::BareJid;
        for db in crate::store::testing::test_dbs() {
            let Backend::Postgres(config) = db.backend() else {
                continue;
            };
            let mut config = config.clone();
            // The test database's own options (its search_path) are kept beside the limit.
            crate::store::users::limit_waits(&mut config, 500);
            let store =
                Store::connect(&Backend::Postgres(config)).unwrap_or_else(|e| panic!("{e}"));
            let shown = |q| match store.rows(sql(q), &[]).map(|mut r| r.remove(0).text(0)) {
                Ok(Ok(v)) => v,
                other => panic!("{q}: {other:?}"),
            };
            assert_eq!(shown("SHOW statement_timeout"), "500ms");
            assert!(shown("SHOW search_path").starts_with("petrel_test_"));

            // Another connection holds the users table: the insert is cancelled, not left waiting.
            let holder = db.open();
            holder
                .db
                .batch("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                .unwrap_or_else(|e| panic!("{e}"));
            let jid = BareJid::parse("waiter@example.org").unwrap_or_else(|e| panic!("{e}"));
            let secrets = crate::auth::ScramSecrets::derive("pw", 4096);
            let started = std::time::Instant::now();
            let refused = store.add_user(&jid, &secrets);
            assert!(refused.is_err(), "{refused:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(30));
            holder
                .db
                .batch("ROLLBACK")
                .unwrap_or_else(|e| panic!("{e}"));
            // The connection goes on, and the account is added once the lock is gone.
            store
                .add_user(&jid, &secrets)
                .unwrap_or_else(|e| panic!("{e}"));

            // What may rightly take long runs without the limit, which then applies again.
            let nap = sql("SELECT count(*) FROM pg_sleep(0.8)");
            assert!(store.int(nap, &[]).is_err());
            assert_eq!(store.unlimited(|| store.int(nap, &[])).ok(), Some(1));
            assert_eq!(shown("SHOW statement_timeout"), "500ms");
        }
    }

    #[test]
    fn placeholders_outside_quotes_only() {
        assert_eq!(
            dollar_placeholders("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
    }
}
