//! Push registrations (XEP-0357): an account's app servers, one row per (service, node), with the
//! resource of the session that enabled it and the publish-options form to send with each publish.

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};

/// One registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPush {
    /// The app server's JID.
    pub service: String,
    /// The node on it.
    pub node: String,
    /// The resource of the session that enabled it.
    pub resource: String,
    /// The publish-options form, serialized (empty: none).
    pub form: String,
}

/// What [`Store::push_enable`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEnable {
    /// Stored (new, or replacing the registration with the same service and node).
    Stored,
    /// The account holds the most registrations allowed already: nothing stored.
    Full,
}

impl Store {
    /// The registrations of `owner` (a bare JID), by service then node.
    pub fn push_list(&self, owner: &str) -> Result<Vec<StoredPush>, StoreError> {
        let q = sql("SELECT service, node, resource, form FROM push_registration
                     WHERE owner = ?1 ORDER BY service, node");
        self.rows(q, args![owner])?
            .into_iter()
            .map(|mut r| {
                Ok(StoredPush {
                    service: r.text(0)?,
                    node: r.text(1)?,
                    resource: r.text(2)?,
                    form: r.text(3)?,
                })
            })
            .collect()
    }

    /// Stores `reg` for `owner`, replacing the one with its service and node; a new one is refused
    /// when `owner` holds `max` already. The owner's push lock (PostgreSQL) keeps two enables from
    /// both passing the limit.
    pub fn push_enable(
        &self,
        owner: &str,
        reg: &StoredPush,
        max: u32,
    ) -> Result<PushEnable, StoreError> {
        let lock = format!("push {owner}");
        self.transaction(Some(&lock), || {
            let exists = self
                .row(
                    sql("SELECT 1 FROM push_registration
                         WHERE owner = ?1 AND service = ?2 AND node = ?3"),
                    args![owner, &reg.service, &reg.node],
                )?
                .is_some();
            if !exists {
                let n = self.int(
                    sql("SELECT count(*) FROM push_registration WHERE owner = ?1"),
                    args![owner],
                )?;
                if n >= i64::from(max) {
                    return Ok(End::Rollback(PushEnable::Full));
                }
            }
            let q = sql(
                "INSERT INTO push_registration (owner, service, node, resource, form, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (owner, service, node) DO UPDATE SET resource = excluded.resource,
                 form = excluded.form",
            );
            let now = super::unix_now();
            self.exec(
                q,
                args![
                    owner,
                    &reg.service,
                    &reg.node,
                    &reg.resource,
                    &reg.form,
                    now
                ],
            )?;
            Ok(End::Commit(PushEnable::Stored))
        })
    }

    /// Deletes the registrations of `owner` with `service` (only the one on `node` when given);
    /// returns how many went.
    pub fn push_disable(
        &self,
        owner: &str,
        service: &str,
        node: Option<&str>,
    ) -> Result<u64, StoreError> {
        match node {
            Some(node) => self.exec(
                sql(
                    "DELETE FROM push_registration WHERE owner = ?1 AND service = ?2 AND node = ?3",
                ),
                args![owner, service, node],
            ),
            None => self.exec(
                sql("DELETE FROM push_registration WHERE owner = ?1 AND service = ?2"),
                args![owner, service],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::BareJid;
    use crate::store::testing::test_dbs;

    fn reg(service: &str, node: &str, resource: &str) -> StoredPush {
        StoredPush {
            service: service.into(),
            node: node.into(),
            resource: resource.into(),
            form: String::new(),
        }
    }

    #[test]
    fn enable_replace_limit_disable_and_account_removal() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let a = "a@example.com";
            let ok = |r| store.push_enable(a, &r, 2).ok();
            assert_eq!(
                ok(reg("push.test", "n1", "phone")),
                Some(PushEnable::Stored)
            );
            // Same (service, node): replaced, not counted twice.
            let mut again = reg("push.test", "n1", "tablet");
            again.form = "<x/>".into();
            assert_eq!(ok(again.clone()), Some(PushEnable::Stored));
            assert_eq!(
                ok(reg("push.test", "n2", "phone")),
                Some(PushEnable::Stored)
            );
            assert_eq!(ok(reg("other.test", "n", "phone")), Some(PushEnable::Full));
            let list = store.push_list(a).unwrap_or_default();
            assert_eq!(list, vec![again, reg("push.test", "n2", "phone")]);
            // Another account's registrations are its own.
            assert!(store
                .push_list("b@example.com")
                .unwrap_or_default()
                .is_empty());
            assert_eq!(store.push_disable(a, "push.test", Some("n2")).ok(), Some(1));
            assert_eq!(store.push_list(a).map(|l| l.len()).ok(), Some(1));
            assert_eq!(
                ok(reg("push.test", "n3", "phone")),
                Some(PushEnable::Stored)
            );
            assert_eq!(store.push_disable(a, "push.test", None).ok(), Some(2));
            assert!(store.push_list(a).unwrap_or_default().is_empty());

            // Deleting the account deletes its registrations.
            let jid = BareJid::parse(a).unwrap_or_else(|e| panic!("{e}"));
            let secrets = crate::auth::ScramSecrets::derive("pw", 16);
            store
                .add_user(&jid, &secrets)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                ok(reg("push.test", "n1", "phone")),
                Some(PushEnable::Stored)
            );
            store.remove_user(&jid).unwrap_or_else(|e| panic!("{e}"));
            assert!(store.push_list(a).unwrap_or_default().is_empty());
        }
    }
}
