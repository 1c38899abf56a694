//! Persistent MUC rooms: one row per room, its state as the MUC module serialized it (the store
//! does not interpret it).

use super::db::sql;
use super::value::args;
use super::{Store, StoreError};

impl Store {
    /// Stores (replacing) the state of room `room` (a bare JID).
    pub fn muc_room_save(&self, room: &str, state: &str) -> Result<(), StoreError> {
        let q = sql("INSERT INTO muc_rooms (room, state) VALUES (?1, ?2)
             ON CONFLICT (room) DO UPDATE SET state = excluded.state");
        self.exec(q, args![room, state])?;
        Ok(())
    }

    /// Forgets room `room`.
    pub fn muc_room_delete(&self, room: &str) -> Result<(), StoreError> {
        self.exec(sql("DELETE FROM muc_rooms WHERE room = ?1"), args![room])?;
        Ok(())
    }

    /// The stored state of room `room`, if stored (a cluster node loading one room).
    pub fn muc_room(&self, room: &str) -> Result<Option<String>, StoreError> {
        let q = sql("SELECT state FROM muc_rooms WHERE room = ?1");
        self.row(q, args![room])?.map(|mut r| r.text(0)).transpose()
    }

    /// Every stored room whose JID `keep` accepts, as (room, state).
    pub fn muc_rooms(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for mut r in self.rows(sql("SELECT room, state FROM muc_rooms"), &[])? {
            let room = r.text(0)?;
            if keep(&room) {
                out.push((room, r.text(1)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::test_dbs;

    #[test]
    fn rooms_are_saved_replaced_listed_and_deleted() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            store
                .muc_room_save("a@conference.x", "{1}")
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .muc_room_save("b@conference.x", "{2}")
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .muc_room_save("a@conference.x", "{3}")
                .unwrap_or_else(|e| panic!("{e}"));
            let all = store.muc_rooms(|_| true).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                store
                    .muc_room("a@conference.x")
                    .unwrap_or_else(|e| panic!("{e}")),
                Some("{3}".into())
            );
            assert_eq!(
                store
                    .muc_room("c@conference.x")
                    .unwrap_or_else(|e| panic!("{e}")),
                None
            );
            assert_eq!(all.len(), 2);
            assert!(all.contains(&("a@conference.x".into(), "{3}".into())));
            let only_b = store
                .muc_rooms(|r| r.starts_with('b'))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(only_b, vec![("b@conference.x".into(), "{2}".into())]);
            store
                .muc_room_delete("a@conference.x")
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                store
                    .muc_rooms(|_| true)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .len(),
                1
            );
        }
    }
}
