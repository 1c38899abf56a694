//! vcard-temp (XEP-0054): one serialized `<vCard/>` per user.

use super::db::{sql, End};
use super::value::args;
use super::{Store, StoreError};
use crate::jid::BareJid;

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
        let q = sql("SELECT xml FROM vcard WHERE domain = ?1 AND username = ?2");
        match self.row(q, args![user.domain(), node])? {
            Some(mut r) => Ok(VcardGet::Found(r.bytes(0)?)),
            None if self.user_exists(user)? => Ok(VcardGet::Empty),
            None => Ok(VcardGet::NoSuchUser),
        }
    }

    /// Replaces `user`'s vCard; `NoSuchUser` when the account does not exist (any more).
    pub fn vcard_set(&self, user: &BareJid, xml: &[u8]) -> Result<(), StoreError> {
        let node = user.node().ok_or(StoreError::NoLocalpart)?;
        let q = sql(
            "INSERT INTO vcard (domain, username, xml) VALUES (?1, ?2, ?3)
             ON CONFLICT (domain, username) DO UPDATE SET xml = excluded.xml",
        );
        self.account_write(user, None, || {
            self.exec(q, args![user.domain(), node, xml])?;
            Ok(End::Commit(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramSecrets;
    use crate::store::testing::test_dbs;

    #[test]
    fn get_set() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
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
}
