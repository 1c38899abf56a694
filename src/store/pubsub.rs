//! Pubsub nodes and items (PEP and the pubsub service). A node is one row (its metadata as JSON,
//! written by the pubsub core; the store does not interpret it); items are rows of their own, kept
//! in publication order. `service` is the owner's bare JID for PEP, the service domain otherwise.

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The item id.
    pub id: String,
    /// Who published it.
    pub publisher: String,
    /// When, in microseconds since the Unix epoch.
    pub published: i64,
    /// The serialized payload (empty: none).
    pub payload: String,
}

/// A node as stored, with its items oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNode {
    /// The node's name.
    pub node: String,
    /// Its metadata (JSON).
    pub meta: String,
    /// Its items, oldest first.
    pub items: Vec<StoredItem>,
}

/// A node's metadata with where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeta {
    /// The service (the owner's bare JID for PEP).
    pub service: String,
    /// The node's name.
    pub node: String,
    /// Its metadata (JSON).
    pub meta: String,
}

impl Store {
    /// Stores (replacing) the metadata of `node` of `service`; `NoSuchUser` for the PEP service
    /// of an account that does not exist (any more).
    pub fn pubsub_node_save(
        &self,
        service: &str,
        node: &str,
        meta: &str,
    ) -> Result<(), StoreError> {
        let q = sql(
            "INSERT INTO pubsub_node (service, node, meta) VALUES (?1, ?2, ?3)
             ON CONFLICT (service, node) DO UPDATE SET meta = excluded.meta",
        );
        self.transaction(None, || {
            self.pep_owner_held(service)?;
            self.exec(q, args![service, node, meta])?;
            Ok(End::Commit(()))
        })
    }

    /// `NoSuchUser` when `service` is a PEP service (an account's bare JID) whose account does
    /// not exist (any more; see [`Store::user_held`]): what it would write would outlive the
    /// account, for whoever registers the name next.
    fn pep_owner_held(&self, service: &str) -> Result<(), StoreError> {
        match service.split_once('@') {
            Some((node, domain)) if !self.account_held(domain, node)? => {
                Err(StoreError::NoSuchUser)
            }
            _ => Ok(()),
        }
    }

    /// Deletes `node` of `service` and its items.
    pub fn pubsub_node_delete(&self, service: &str, node: &str) -> Result<(), StoreError> {
        self.transaction(None, || {
            self.exec(
                sql("DELETE FROM pubsub_item WHERE service = ?1 AND node = ?2"),
                args![service, node],
            )?;
            self.exec(
                sql("DELETE FROM pubsub_node WHERE service = ?1 AND node = ?2"),
                args![service, node],
            )?;
            Ok(End::Commit(()))
        })
    }

    /// Stores (replacing one with the same id) `item` and deletes the items `evicted`, in one
    /// transaction; `NoSuchUser` as [`Store::pubsub_node_save`].
    pub fn pubsub_item_put(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        evicted: &[String],
    ) -> Result<(), StoreError> {
        self.transaction(None, || {
            self.pep_owner_held(service)?;
            let q = sql(
                "INSERT INTO pubsub_item (service, node, item_id, publisher, published, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (service, node, item_id) DO UPDATE SET publisher = excluded.publisher,
                 published = excluded.published, payload = excluded.payload",
            );
            self.exec(
                q,
                args![
                    service,
                    node,
                    &item.id,
                    &item.publisher,
                    item.published,
                    &item.payload
                ],
            )?;
            self.pubsub_items_delete_in(service, node, evicted)?;
            Ok(End::Commit(()))
        })
    }

    /// Deletes the items `ids` of `node`.
    pub fn pubsub_items_delete(
        &self,
        service: &str,
        node: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        self.transaction(None, || {
            self.pubsub_items_delete_in(service, node, ids)?;
            Ok(End::Commit(()))
        })
    }

    fn pubsub_items_delete_in(
        &self,
        service: &str,
        node: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let q = sql("DELETE FROM pubsub_item WHERE service = ?1 AND node = ?2 AND item_id = ?3");
        for id in ids {
            self.exec(q, args![service, node, id])?;
        }
        Ok(())
    }

    /// Deletes every item of `node`.
    pub fn pubsub_purge(&self, service: &str, node: &str) -> Result<(), StoreError> {
        self.exec(
            sql("DELETE FROM pubsub_item WHERE service = ?1 AND node = ?2"),
            args![service, node],
        )?;
        Ok(())
    }

    /// Every node of `service` with its items, nodes by name, items oldest first.
    pub fn pubsub_load(&self, service: &str) -> Result<Vec<StoredNode>, StoreError> {
        self.pubsub_load_where(service, |_| true)
    }

    /// One node of `service` with its items, oldest first (a cluster node loading the node it is
    /// to serve), if stored.
    pub fn pubsub_load_node(
        &self,
        service: &str,
        node: &str,
    ) -> Result<Option<StoredNode>, StoreError> {
        let q = sql("SELECT meta FROM pubsub_node WHERE service = ?1 AND node = ?2");
        let Some(mut r) = self.row(q, args![service, node])? else {
            return Ok(None);
        };
        let mut out = StoredNode {
            node: node.to_owned(),
            meta: r.text(0)?,
            items: Vec::new(),
        };
        let q = sql(
            "SELECT item_id, publisher, published, payload FROM pubsub_item
             WHERE service = ?1 AND node = ?2 ORDER BY published, item_id",
        );
        for mut r in self.rows(q, args![service, node])? {
            out.items.push(StoredItem {
                id: r.text(0)?,
                publisher: r.text(1)?,
                published: r.int(2)?,
                payload: r.text(3)?,
            });
        }
        Ok(Some(out))
    }

    /// The metadata of every node of `service`, by node name, without items.
    pub fn pubsub_metas(&self, service: &str) -> Result<Vec<(String, String)>, StoreError> {
        let q = sql("SELECT node, meta FROM pubsub_node WHERE service = ?1 ORDER BY node");
        self.rows(q, args![service])?
            .into_iter()
            .map(|mut r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    }

    /// Every node, of any service, whose metadata contains `text` (its services, names and
    /// metadata). It reads every node row: it serves rare work (an account's deletion).
    pub fn pubsub_metas_containing(&self, text: &str) -> Result<Vec<StoredMeta>, StoreError> {
        // `!` escapes LIKE's wildcards (and itself) in the same way on SQLite and PostgreSQL.
        let mut pattern = String::with_capacity(text.len() + 2);
        pattern.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '!') {
                pattern.push('!');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let q = sql(
            "SELECT service, node, meta FROM pubsub_node WHERE meta LIKE ?1 ESCAPE '!'
             ORDER BY service, node",
        );
        self.rows(q, args![pattern.as_str()])?
            .into_iter()
            .map(|mut r| {
                Ok(StoredMeta {
                    service: r.text(0)?,
                    node: r.text(1)?,
                    meta: r.text(2)?,
                })
            })
            .collect()
    }

    /// [`Store::pubsub_load`] of the nodes whose name `keep` accepts (a shard loads the service's
    /// nodes homed on it).
    pub fn pubsub_load_where(
        &self,
        service: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<StoredNode>, StoreError> {
        let mut nodes = Vec::new();
        let q = sql("SELECT node, meta FROM pubsub_node WHERE service = ?1 ORDER BY node");
        for mut r in self.rows(q, args![service])? {
            let node = r.text(0)?;
            if keep(&node) {
                nodes.push(StoredNode {
                    node,
                    meta: r.text(1)?,
                    items: Vec::new(),
                });
            }
        }
        // A service may have many nodes: items find theirs through an index, not a scan.
        let at: std::collections::HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node.clone(), i))
            .collect();
        let q = sql(
            "SELECT node, item_id, publisher, published, payload FROM pubsub_item
             WHERE service = ?1 ORDER BY node, published, item_id",
        );
        for mut r in self.rows(q, args![service])? {
            // Items of nodes not kept (or without a node row, which this API never leaves) are
            // skipped.
            let Some(&i) = at.get(&r.text(0)?) else {
                continue;
            };
            nodes[i].items.push(StoredItem {
                id: r.text(1)?,
                publisher: r.text(2)?,
                published: r.int(3)?,
                payload: r.text(4)?,
            });
        }
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    fn item(id: &str, at: i64) -> StoredItem {
        StoredItem {
            id: id.into(),
            publisher: "alice@x/pc".into(),
            published: at,
            payload: format!("<p xmlns='urn:p'>{id}</p>"),
        }
    }

    fn ids(nodes: &[StoredNode], node: &str) -> Vec<String> {
        nodes
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.items.iter().map(|i| i.id.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn nodes_and_items_are_saved_replaced_evicted_and_deleted() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let ok = |r: Result<(), StoreError>| r.unwrap_or_else(|e| panic!("{n}: {e}"));
            crate::store::testing::add_accounts(&s, &["alice@x", "bob@x"]);
            ok(s.pubsub_node_save("alice@x", "urn:a", "{1}"));
            ok(s.pubsub_node_save("alice@x", "urn:b", "{2}"));
            ok(s.pubsub_node_save("alice@x", "urn:a", "{3}"));
            ok(s.pubsub_node_save("bob@x", "urn:a", "{4}"));
            ok(s.pubsub_item_put("alice@x", "urn:a", &item("i1", 10), &[]));
            ok(s.pubsub_item_put("alice@x", "urn:a", &item("i2", 20), &[]));
            ok(s.pubsub_item_put("alice@x", "urn:b", &item("j1", 5), &[]));
            // Replaced: newest now.
            ok(s.pubsub_item_put("alice@x", "urn:a", &item("i1", 30), &[]));
            let load = |svc| s.pubsub_load(svc).unwrap_or_else(|e| panic!("{n}: {e}"));
            let all = load("alice@x");
            assert_eq!(
                all.iter().map(|x| (&*x.node, &*x.meta)).collect::<Vec<_>>(),
                [("urn:a", "{3}"), ("urn:b", "{2}")],
                "{n}"
            );
            assert_eq!(ids(&all, "urn:a"), ["i2", "i1"], "{n}");
            assert_eq!(all[0].items[1], item("i1", 30), "{n}");
            // A publish past max_items evicts in the same transaction.
            ok(s.pubsub_item_put("alice@x", "urn:a", &item("i3", 40), &["i2".into()]));
            assert_eq!(ids(&load("alice@x"), "urn:a"), ["i1", "i3"], "{n}");
            ok(s.pubsub_items_delete("alice@x", "urn:a", &["i1".into(), "zz".into()]));
            assert_eq!(ids(&load("alice@x"), "urn:a"), ["i3"], "{n}");
            ok(s.pubsub_purge("alice@x", "urn:a"));
            assert!(ids(&load("alice@x"), "urn:a").is_empty(), "{n}");
            let only_b = s
                .pubsub_load_where("alice@x", |n| n == "urn:b")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(only_b.len(), 1, "{n}");
            assert_eq!(ids(&only_b, "urn:b"), ["j1"], "{n}");
            let one = |svc, node| {
                s.pubsub_load_node(svc, node)
                    .unwrap_or_else(|e| panic!("{n}: {e}"))
            };
            assert_eq!(one("alice@x", "urn:b"), only_b.into_iter().next(), "{n}");
            assert_eq!(one("alice@x", "urn:zz"), None, "{n}");
            ok(s.pubsub_node_delete("alice@x", "urn:b"));
            assert_eq!(load("alice@x").len(), 1, "{n}");
            assert_eq!(load("bob@x").len(), 1, "{n}");
        }
    }

    #[test]
    fn removing_the_user_removes_their_pep_nodes() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let alice = crate::jid::BareJid::parse("alice@x").unwrap_or_else(|e| panic!("{e}"));
            let secrets = crate::auth::ScramSecrets::derive("pw", 4096);
            s.add_user(&alice, &secrets)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            s.pubsub_node_save("alice@x", "urn:a", "{}")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            s.pubsub_item_put("alice@x", "urn:a", &item("i1", 1), &[])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            crate::store::testing::add_accounts(&s, &["bob@x"]);
            s.pubsub_node_save("bob@x", "urn:a", "{}")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            s.remove_user(&alice).unwrap_or_else(|e| panic!("{n}: {e}"));
            let left = s
                .pubsub_load("alice@x")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(left.is_empty(), "{n}");
            let items = s
                .int(sql("SELECT count(*) FROM pubsub_item"), &[])
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(items, 0, "{n}");
            assert_eq!(s.pubsub_load("bob@x").map(|v| v.len()).ok(), Some(1), "{n}");
        }
    }

    #[test]
    fn metas_are_found_by_their_text_with_wildcards_taken_literally() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let save = |svc: &str, node: &str, meta: &str| {
                s.pubsub_node_save(svc, node, meta)
                    .unwrap_or_else(|e| panic!("{n}: {e}"))
            };
            crate::store::testing::add_accounts(&s, &["alice@x", "bob@x"]);
            save("alice@x", "urn:a", r#"{"subs":["d_v@x/r"]}"#);
            save("alice@x", "urn:b", r#"{"subs":["dav@x"]}"#);
            save("bob@x", "urn:a", r#"{"subs":["d%v!@x"]}"#);
            save("pubsub.x", "n", r#"{"subs":["d_v@x"]}"#);
            let found = |text: &str| -> Vec<String> {
                s.pubsub_metas_containing(text)
                    .unwrap_or_else(|e| panic!("{n}: {e}"))
                    .into_iter()
                    .map(|m| format!("{} {}", m.service, m.node))
                    .collect()
            };
            // `_` is no wildcard: "dav" is not found for "d_v".
            assert_eq!(found("\"d_v@x"), ["alice@x urn:a", "pubsub.x n"], "{n}");
            assert_eq!(found("\"d%v!@x"), ["bob@x urn:a"], "{n}");
            assert!(found("\"nobody@x").is_empty(), "{n}");
            let metas = s
                .pubsub_metas("alice@x")
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(metas.len(), 2, "{n}");
            assert_eq!(
                metas[1],
                ("urn:b".to_owned(), r#"{"subs":["dav@x"]}"#.to_owned()),
                "{n}"
            );
        }
    }
}
