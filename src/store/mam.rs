//! The message archive (XEP-0313): one row per archived message per archive owner (a user's bare
//! JID, or a room's), ordered by the archive id (time-ordered, see `modules::mam::id`), and the
//! owners' archiving preferences.

use rusqlite::{
    params, params_from_iter, Connection, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{Store, StoreError};

/// Creates the archive tables (idempotent).
pub(crate) fn migrate_mam(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS mam_message (
            owner     TEXT NOT NULL,
            id        INTEGER NOT NULL,
            with_bare TEXT NOT NULL,
            with_res  TEXT NOT NULL,
            outgoing  INTEGER NOT NULL,
            ts        INTEGER NOT NULL,
            stanza    BLOB NOT NULL,
            PRIMARY KEY (owner, id)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS mam_message_with ON mam_message (owner, with_bare, id);
        CREATE INDEX IF NOT EXISTS mam_message_ts ON mam_message (ts);
        CREATE TABLE IF NOT EXISTS mam_prefs (
            owner   TEXT NOT NULL PRIMARY KEY,
            mode    TEXT NOT NULL,
            always  TEXT NOT NULL,
            never   TEXT NOT NULL
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Whose archive (bare JID of a user or a room).
    pub owner: String,
    /// Archive id: unique per owner, increasing with time.
    pub id: i64,
    /// The other party's bare JID (for a room: the sender's occupant JID's room, i.e. the room).
    pub with_bare: String,
    /// The other party's resource, `""` when none (for a room: the sender's nick).
    pub with_res: String,
    /// Sent by the owner (true) or received (false).
    pub outgoing: bool,
    /// When it was archived, in microseconds since the Unix epoch.
    pub ts: i64,
    /// The message as archived.
    pub stanza: Vec<u8>,
}

/// What a query selects, besides the owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MamFilter {
    /// The other party: bare JID, with `with_res` when the query named a full JID.
    pub with_bare: Option<String>,
    /// The other party's resource.
    pub with_res: Option<String>,
    /// Archived at or after (µs).
    pub start: Option<i64>,
    /// Archived at or before (µs).
    pub end: Option<i64>,
    /// Ids strictly greater than.
    pub after_id: Option<i64>,
    /// Ids strictly smaller than.
    pub before_id: Option<i64>,
    /// Only these ids.
    pub ids: Option<Vec<i64>>,
}

/// An owner's archiving preferences as stored (`mode`: always, never or roster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMamPrefs {
    /// Default mode.
    pub mode: String,
    /// JIDs always archived.
    pub always: Vec<String>,
    /// JIDs never archived.
    pub never: Vec<String>,
}

impl MamFilter {
    /// The WHERE clause after `owner = ?1` and its parameters (numbered from 2).
    fn sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut sql = String::new();
        let mut args: Vec<Value> = Vec::new();
        let push = |clause: &str, v: Value, sql: &mut String, args: &mut Vec<Value>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len() + 1)));
        };
        if let Some(b) = &self.with_bare {
            push(
                " AND with_bare = ?",
                Value::Text(b.clone()),
                &mut sql,
                &mut args,
            );
        }
        if let Some(r) = &self.with_res {
            push(
                " AND with_res = ?",
                Value::Text(r.clone()),
                &mut sql,
                &mut args,
            );
        }
        if let Some(t) = self.start {
            push(" AND ts >= ?", Value::Integer(t), &mut sql, &mut args);
        }
        if let Some(t) = self.end {
            push(" AND ts <= ?", Value::Integer(t), &mut sql, &mut args);
        }
        if let Some(i) = self.after_id {
            push(" AND id > ?", Value::Integer(i), &mut sql, &mut args);
        }
        if let Some(i) = self.before_id {
            push(" AND id < ?", Value::Integer(i), &mut sql, &mut args);
        }
        if let Some(ids) = &self.ids {
            sql.push_str(" AND id IN (");
            for (n, id) in ids.iter().enumerate() {
                if n > 0 {
                    sql.push(',');
                }
                args.push(Value::Integer(*id));
                sql.push_str(&format!("?{}", args.len() + 1));
            }
            if ids.is_empty() {
                sql.push_str("NULL");
            }
            sql.push(')');
        }
        (sql, args)
    }
}

impl Store {
    /// Appends archived messages, all in one transaction (the archive writes in batches).
    pub fn mam_append(&self, rows: &[ArchivedMessage]) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO mam_message (owner, id, with_bare, with_res, outgoing, ts, stanza)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.owner,
                    r.id,
                    r.with_bare,
                    r.with_res,
                    r.outgoing,
                    r.ts,
                    r.stanza
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` messages of `owner`'s archive that `filter` selects, oldest first, or the
    /// newest ones (still returned oldest first) when `newest` is set.
    pub fn mam_query(
        &self,
        owner: &str,
        filter: &MamFilter,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<ArchivedMessage>, StoreError> {
        let (clause, mut args) = filter.sql();
        let order = if newest { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message
             WHERE owner = ?1{clause} ORDER BY id {order} LIMIT {limit}"
        );
        args.insert(0, rusqlite::types::Value::Text(owner.to_owned()));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
            Ok(ArchivedMessage {
                owner: owner.to_owned(),
                id: r.get(0)?,
                with_bare: r.get(1)?,
                with_res: r.get(2)?,
                outgoing: r.get(3)?,
                ts: r.get(4)?,
                stanza: r.get(5)?,
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        if newest {
            out.reverse();
        }
        Ok(out)
    }

    /// How many messages of `owner`'s archive `filter` selects.
    pub fn mam_count(&self, owner: &str, filter: &MamFilter) -> Result<u64, StoreError> {
        let (clause, mut args) = filter.sql();
        args.insert(0, rusqlite::types::Value::Text(owner.to_owned()));
        let sql = format!("SELECT count(*) FROM mam_message WHERE owner = ?1{clause}");
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// True when `owner`'s archive has message `id`.
    pub fn mam_has(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM mam_message WHERE owner = ?1 AND id = ?2")?
            .exists(params![owner, id])?)
    }

    /// Like [`Store::mam_count`], but counts no further than `cap`: a full count scans every
    /// selected row (a 1 000 000-message archive: ~100 ms), so queries only count up to a bound.
    pub fn mam_count_upto(
        &self,
        owner: &str,
        filter: &MamFilter,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let (clause, mut args) = filter.sql();
        args.insert(0, rusqlite::types::Value::Text(owner.to_owned()));
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM mam_message WHERE owner = ?1{clause} LIMIT {cap})"
        );
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `owner`'s preferences, if they set any.
    pub fn mam_prefs(&self, owner: &str) -> Result<Option<StoredMamPrefs>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT mode, always, never FROM mam_prefs WHERE owner = ?1")?
            .query_row(params![owner], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        Ok(row.map(|(mode, always, never)| StoredMamPrefs {
            mode,
            always: split_list(&always),
            never: split_list(&never),
        }))
    }

    /// Every owner's preferences (loaded by each shard at start).
    pub fn mam_all_prefs(&self) -> Result<Vec<(String, StoredMamPrefs)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT owner, mode, always, never FROM mam_prefs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                StoredMamPrefs {
                    mode: r.get(1)?,
                    always: split_list(&r.get::<_, String>(2)?),
                    never: split_list(&r.get::<_, String>(3)?),
                },
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Stores `owner`'s preferences.
    pub fn mam_set_prefs(&self, owner: &str, prefs: &StoredMamPrefs) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO mam_prefs (owner, mode, always, never) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner) DO UPDATE SET mode = excluded.mode,
                     always = excluded.always, never = excluded.never",
            )?
            .execute(params![
                owner,
                prefs.mode,
                prefs.always.join("\n"),
                prefs.never.join("\n")
            ])?;
        Ok(())
    }

    /// Deletes `owner`'s archive and preferences (account removal, room destruction).
    pub fn mam_delete_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM mam_message WHERE owner = ?1")?
            .execute(params![owner])?;
        self.conn
            .prepare_cached("DELETE FROM mam_prefs WHERE owner = ?1")?
            .execute(params![owner])?;
        Ok(n as u64)
    }

    /// Deletes every archived message older than `before` (µs); returns how many.
    pub fn mam_purge_before(&self, before: i64) -> Result<u64, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM mam_message WHERE ts < ?1")?
            .execute(params![before])?;
        Ok(n as u64)
    }

    /// Keeps only the newest `keep` messages of each owner whose archive is larger; returns how many
    /// were deleted.
    pub fn mam_trim(&self, keep: u64) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over: Vec<String> = self
            .conn
            .prepare_cached("SELECT owner FROM mam_message GROUP BY owner HAVING count(*) > ?1")?
            .query_map(params![keep], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for owner in over {
            let cutoff: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT id FROM mam_message WHERE owner = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![owner, keep - 1], |r| r.get(0))
                .optional()?;
            if let Some(cutoff) = cutoff {
                deleted += self
                    .conn
                    .prepare_cached("DELETE FROM mam_message WHERE owner = ?1 AND id < ?2")?
                    .execute(params![owner, cutoff])? as u64;
            }
        }
        Ok(deleted)
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: &str, id: i64, with: &str, ts: i64) -> ArchivedMessage {
        ArchivedMessage {
            owner: owner.into(),
            id,
            with_bare: with.into(),
            with_res: "r".into(),
            outgoing: id % 2 == 0,
            ts,
            stanza: format!("<message id='{id}'/>").into_bytes(),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    #[test]
    fn append_query_page_count() {
        let (_d, s) = open();
        let rows: Vec<_> = (1..=10)
            .map(|i| row("a@x", i, if i % 3 == 0 { "c@x" } else { "b@x" }, i * 100))
            .collect();
        s.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
        s.mam_append(&[row("z@x", 1, "a@x", 5)])
            .unwrap_or_else(|e| panic!("{e}"));
        let all = MamFilter::default();
        let first = s
            .mam_query("a@x", &all, 4, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            first.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let last = s
            .mam_query("a@x", &all, 4, true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            last.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        let f = MamFilter {
            with_bare: Some("c@x".into()),
            ..MamFilter::default()
        };
        assert_eq!(s.mam_count("a@x", &f).unwrap_or_else(|e| panic!("{e}")), 3);
        let f = MamFilter {
            start: Some(300),
            end: Some(700),
            after_id: Some(3),
            ids: Some(vec![4, 5, 9]),
            ..MamFilter::default()
        };
        let got = s
            .mam_query("a@x", &f, 10, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![4, 5]);
        assert!(s.mam_has("a@x", 7).unwrap_or_else(|e| panic!("{e}")));
        assert!(!s.mam_has("a@x", 70).unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn retention_purge_and_owner_deletion() {
        let (_d, s) = open();
        let rows: Vec<_> = (1..=10).map(|i| row("a@x", i, "b@x", i)).collect();
        s.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
        s.mam_append(&[row("b@x", 1, "a@x", 100)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.mam_trim(6).unwrap_or_else(|e| panic!("{e}")), 4);
        let left = s
            .mam_query("a@x", &MamFilter::default(), 100, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left.first().map(|r| r.id), Some(5));
        assert_eq!(s.mam_purge_before(7).unwrap_or_else(|e| panic!("{e}")), 2);
        s.mam_set_prefs(
            "a@x",
            &StoredMamPrefs {
                mode: "roster".into(),
                always: vec!["c@x".into()],
                never: vec!["d@x".into(), "e@x".into()],
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let p = s
            .mam_prefs("a@x")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no prefs"));
        assert_eq!(p.never.len(), 2);
        assert_eq!(s.mam_all_prefs().unwrap_or_else(|e| panic!("{e}")).len(), 1);
        assert_eq!(
            s.mam_delete_owner("a@x").unwrap_or_else(|e| panic!("{e}")),
            4
        );
        assert!(s
            .mam_prefs("a@x")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        assert_eq!(
            s.mam_count("b@x", &MamFilter::default())
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
    }
}
