//! Domains hosted at run time (the admin API), kept across restarts; `general.hosts` stays in the
//! configuration.

use super::db::sql;
use super::value::args;
use super::{Store, StoreError};

impl Store {
    /// The run-time domains, sorted.
    pub fn list_domains(&self) -> Result<Vec<String>, StoreError> {
        self.rows(sql("SELECT domain FROM hosted_domain ORDER BY domain"), &[])?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect()
    }

    /// Adds a run-time domain (already normalized); false if it was there.
    pub fn add_domain(&self, domain: &str) -> Result<bool, StoreError> {
        let q = sql("INSERT INTO hosted_domain (domain, added) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING");
        Ok(self.exec(q, args![domain, super::unix_now()])? > 0)
    }

    /// Removes a run-time domain; false if it was not there. Its accounts stay (adding the domain
    /// again brings them back).
    pub fn remove_domain(&self, domain: &str) -> Result<bool, StoreError> {
        let q = sql("DELETE FROM hosted_domain WHERE domain = ?1");
        Ok(self.exec(q, args![domain])? > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::test_dbs;

    #[test]
    fn add_list_remove() {
        for db in test_dbs() {
            let n = db.name;
            let store = db.open();
            assert_eq!(store.list_domains().ok(), Some(vec![]), "{n}");
            assert!(store.add_domain("b.example").unwrap_or(false), "{n}");
            assert!(store.add_domain("a.example").unwrap_or(false), "{n}");
            assert!(!store.add_domain("a.example").unwrap_or(true), "{n}");
            let got = store.list_domains().unwrap_or_default();
            assert_eq!(got, ["a.example", "b.example"], "{n}");
            assert!(store.remove_domain("a.example").unwrap_or(false), "{n}");
            assert!(!store.remove_domain("a.example").unwrap_or(true), "{n}");
            drop(store);
            assert_eq!(
                db.open().list_domains().unwrap_or_default(),
                ["b.example"],
                "{n}"
            );
        }
    }
}
