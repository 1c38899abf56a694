//! A PostgreSQL database of its own for one test, on the server `PETREL_TEST_PG` names (CI's
//! throwaway cluster, .ci/pg.sh); tests skip with a note when it is unset outside CI.

use std::io::Write;

use petrel::store::Backend;

/// A database created for one test, dropped at the end.
pub struct TestDatabase {
    admin: postgres::Config,
    name: String,
    /// Connection string for petrel (`key=value` form).
    pub url: String,
}

impl TestDatabase {
    /// A new empty database, or None (with a note) when `PETREL_TEST_PG` is unset.
    pub fn create() -> Option<TestDatabase> {
        let Some(url) = std::env::var("PETREL_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PETREL_TEST_PG is not set under CI: the PostgreSQL server test would not run"
            );
            let _ = writeln!(
                std::io::stderr(),
                "note: PETREL_TEST_PG is not set: server-on-PostgreSQL test SKIPPED"
            );
            return None;
        };
        let admin: postgres::Config = url.parse().expect("PETREL_TEST_PG is a PostgreSQL URL");
        let name = format!("petrel_sock_{:016x}", super::rand_u64());
        let mut c = admin
            .connect(postgres::NoTls)
            .expect("connect PETREL_TEST_PG");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = key_values(&admin, &name);
        Some(TestDatabase { admin, name, url })
    }

    /// The store backend for this database (to open it from the test).
    pub fn backend(&self) -> Backend {
        Backend::Postgres(Box::new(self.url.parse().unwrap()))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admin.connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `admin`'s server and credentials, database `dbname`, as a `key=value` connection string.
fn key_values(admin: &postgres::Config, dbname: &str) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut out = format!("dbname={}", quote(dbname));
    if let Some(host) = admin.get_hosts().first() {
        let h = match host {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.to_string_lossy().into_owned(),
        };
        out += &format!(" host={}", quote(&h));
    }
    if let Some(port) = admin.get_ports().first() {
        out += &format!(" port={port}");
    }
    if let Some(user) = admin.get_user() {
        out += &format!(" user={}", quote(user));
    }
    if let Some(pw) = admin.get_password() {
        out += &format!(" password={}", quote(&String::from_utf8_lossy(pw)));
    }
    out
}
