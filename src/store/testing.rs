//! Test support: each store test runs on every backend, SQLite in a temporary directory and, when
//! `PETREL_TEST_PG` holds a connection URL, PostgreSQL in a fresh schema of its own (tests run in
//! parallel). Without the variable the PostgreSQL run is skipped with a note on stderr, and is an
//! error under CI (`CI` set), whose script always provides a server.

use std::io::Write;

use super::{Backend, Store};

/// The variable naming the PostgreSQL server for tests.
pub(crate) const PG_ENV: &str = "PETREL_TEST_PG";

/// One empty database on one backend, removed when dropped.
pub(crate) struct TestDb {
    /// "sqlite" or "postgres", for failure messages.
    pub name: &'static str,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    /// (server, schema) to drop at the end.
    schema: Option<(postgres::Config, String)>,
}

impl TestDb {
    /// A new connection (with the schema migrated).
    pub(crate) fn open(&self) -> Store {
        Store::connect(&self.backend).unwrap_or_else(|e| panic!("{}: open: {e}", self.name))
    }

    /// The backend, for a pool.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// PostgreSQL only: the server ends `store`'s connection (a restart, a failover), and this
    /// returns once it is gone; the next statements on `store` meet the closed connection.
    pub(crate) fn drop_connection(&self, store: &Store) {
        use super::db::sql;
        use super::value::Arg;
        let pid = store
            .int(sql("SELECT pg_backend_pid()"), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let admin = self.open();
        admin
            .exec(sql("SELECT pg_terminate_backend(?1)"), &[Arg::Int(pid)])
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = sql("SELECT count(*) FROM pg_stat_activity WHERE pid = ?1");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while admin.int(gone, &[Arg::Int(pid)]).unwrap_or(1) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "backend not terminated"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((config, schema)) = &self.schema {
            // Best effort: a leftover schema in a throwaway test server harms nothing.
            if let Ok(mut c) = config.connect(postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// Registers the accounts `jids` (per-user data is written for accounts only).
pub(crate) fn add_accounts(store: &Store, jids: &[&str]) {
    for j in jids {
        let jid = crate::jid::BareJid::parse(j).unwrap_or_else(|e| panic!("{j}: {e}"));
        store
            .add_user(&jid, &crate::auth::ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{j}: {e}"));
    }
}

/// A fresh SQLite database, and a fresh PostgreSQL one when `PETREL_TEST_PG` is set.
pub(crate) fn test_dbs() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut out = vec![TestDb {
        name: "sqlite",
        backend: Backend::Sqlite(dir.path().to_owned()),
        _dir: Some(dir),
        schema: None,
    }];
    match pg_config() {
        Some(config) => out.push(pg_db(config)),
        None => {
            if std::env::var_os("CI").is_some() {
                panic!("{PG_ENV} is not set under CI: the PostgreSQL store tests would not run");
            }
            // Straight to stderr: the test harness captures print macros of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "note: {PG_ENV} is not set: PostgreSQL variant SKIPPED (SQLite only)"
            );
        }
    }
    out
}

/// The server `PETREL_TEST_PG` names, if set.
pub(crate) fn pg_config() -> Option<postgres::Config> {
    let url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
    Some(
        url.parse()
            .unwrap_or_else(|e| panic!("{PG_ENV} is not a PostgreSQL URL: {e}")),
    )
}

fn pg_db(mut config: postgres::Config) -> TestDb {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap_or_else(|e| panic!("random: {e}"));
    let schema = format!("petrel_test_{:016x}", u64::from_le_bytes(b));
    let mut admin = config
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("{PG_ENV}: connect: {e}"));
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap_or_else(|e| panic!("create schema: {e}"));
    let admin_config = config.clone();
    config.options(&format!("-c search_path={schema}"));
    TestDb {
        name: "postgres",
        backend: Backend::Postgres(Box::new(config)),
        _dir: None,
        schema: Some((admin_config, schema)),
    }
}
