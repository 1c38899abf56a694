//! Persistent MUC rooms: one row per room, its state as the MUC module serialized it (the store
//! does not interpret it).

use rusqlite::{params, Connection};

use super::{Store, StoreError};

/// Creates the rooms table (idempotent).
pub(crate) fn migrate_muc(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS muc_rooms (
            room  TEXT NOT NULL PRIMARY KEY,
            state TEXT NOT NULL
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

impl Store {
    /// Stores (replacing) the state of room `room` (a bare JID).
    pub fn muc_room_save(&self, room: &str, state: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO muc_rooms (room, state) VALUES (?1, ?2)
                 ON CONFLICT (room) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![room, state])?;
        Ok(())
    }

    /// Forgets room `room`.
    pub fn muc_room_delete(&self, room: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM muc_rooms WHERE room = ?1")?
            .execute(params![room])?;
        Ok(())
    }

    /// Every stored room whose JID `keep` accepts, as (room, state).
    pub fn muc_rooms(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, state FROM muc_rooms")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (room, state) = row?;
            if keep(&room) {
                out.push((room, state));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_saved_replaced_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
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
