//! vcard-temp (XEP-0054): one serialized `<vCard/>` per user.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::jid::BareJid;

/// Creates the vCard table (idempotent).
pub(crate) fn migrate_vcard(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS vcard (
            domain   TEXT NOT NULL,
            username TEXT NOT NULL,
            xml      BLOB NOT NULL,
            PRIMARY KEY (domain, username)
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

/// A vCard lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcardGet {
    /// The stored `<vCard/>`.
    Found(Vec<u8>),
    /// The account exists but stored no vCard.
    Empty,
    /// No such account.
    NoSuchUser,
}

impl Store {
    /// `user`'s vCard.
    pub fn vcard_get(&self, user: &BareJid) -> Result<VcardGet, StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let xml: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT xml FROM vcard WHERE domain = ?1 AND username = ?2")?
            .query_row(params![user.domain(), node], |r| r.get(0))
            .optional()?;
        match xml {
            Some(x) => Ok(VcardGet::Found(x)),
            None if super::offline::user_exists(&self.conn, user)? => Ok(VcardGet::Empty),
            None => Ok(VcardGet::NoSuchUser),
        }
    }

    /// Replaces `user`'s vCard.
    pub fn vcard_set(&self, user: &BareJid, xml: &[u8]) -> Result<(), StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        self.conn
            .prepare_cached(
                "INSERT INTO vcard (domain, username, xml) VALUES (?1, ?2, ?3)
                 ON CONFLICT (domain, username) DO UPDATE SET xml = excluded.xml",
            )?
            .execute(params![user.domain(), node, xml])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramSecrets;

    #[test]
    fn get_set() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let u = BareJid::parse("u@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.vcard_get(&u).ok(), Some(VcardGet::NoSuchUser));
        store
            .add_user(&u, &ScramSecrets::derive("p", 16))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.vcard_get(&u).ok(), Some(VcardGet::Empty));
        store
            .vcard_set(&u, b"<vCard xmlns='vcard-temp'/>")
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .vcard_set(&u, b"<vCard xmlns='vcard-temp'><FN>U</FN></vCard>")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.vcard_get(&u).ok(),
            Some(VcardGet::Found(
                b"<vCard xmlns='vcard-temp'><FN>U</FN></vCard>".to_vec()
            ))
        );
    }
}
