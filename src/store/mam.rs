//! The message archive (XEP-0313): one row per archived message per archive owner (a user's bare
//! JID, or a room's), ordered by the archive id (time-ordered, see `modules::mam::id`), and the
//! owners' archiving preferences.

use super::db::{sql, End, Sql};
use super::value::{args, Row};

use super::{Store, StoreError};

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
    /// Archive it only if the other party is in the owner's roster (the owner's `roster` default;
    /// checked when the row is written). Always false on rows read back.
    pub only_if_in_roster: bool,
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

/// Page queries: one static statement per (with or not, direction), every bound always given
/// (open ends as the extreme integers) so each uses its index without OR clauses.
const PAGE_ASC: Sql = sql(
    "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
     ORDER BY id ASC LIMIT ?6",
);
const PAGE_DESC: Sql = sql(
    "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
     ORDER BY id DESC LIMIT ?6",
);
const PAGE_WITH_ASC: Sql = sql(
    "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND with_bare = ?7 AND (?8 = '*' OR with_res = ?8)
     ORDER BY id ASC LIMIT ?6",
);
const PAGE_WITH_DESC: Sql = sql(
    "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND with_bare = ?7 AND (?8 = '*' OR with_res = ?8)
     ORDER BY id DESC LIMIT ?6",
);
const COUNT: Sql = sql("SELECT count(*) FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5");
const COUNT_WITH: Sql = sql("SELECT count(*) FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND with_bare = ?6 AND (?7 = '*' OR with_res = ?7)");
const COUNT_UPTO: Sql = sql("SELECT count(*) FROM (SELECT 1 FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5 LIMIT ?6) AS page");
const COUNT_WITH_UPTO: Sql = sql("SELECT count(*) FROM (SELECT 1 FROM mam_message
     WHERE owner = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND with_bare = ?7 AND (?8 = '*' OR with_res = ?8) LIMIT ?6) AS page");
const BY_ID: Sql = sql(
    "SELECT id, with_bare, with_res, outgoing, ts, stanza FROM mam_message WHERE owner = ?1 AND id = ?2",
);

impl MamFilter {
    /// (after, before, start, end) with open ends filled in.
    fn bounds(&self) -> (i64, i64, i64, i64) {
        (
            self.after_id.unwrap_or(i64::MIN),
            self.before_id.unwrap_or(i64::MAX),
            self.start.unwrap_or(i64::MIN),
            self.end.unwrap_or(i64::MAX),
        )
    }

    /// Whether `m` passes every condition but `ids` (used when ids are fetched one by one).
    fn accepts(&self, m: &ArchivedMessage) -> bool {
        let (after, before, start, end) = self.bounds();
        m.id > after
            && m.id < before
            && m.ts >= start
            && m.ts <= end
            && self.with_bare.as_ref().is_none_or(|b| *b == m.with_bare)
            && self.with_res.as_ref().is_none_or(|r| *r == m.with_res)
    }

    /// The resource condition: `*` for any.
    fn res(&self) -> &str {
        self.with_res.as_deref().unwrap_or("*")
    }
}

fn read_row(owner: &str, mut r: Row) -> Result<ArchivedMessage, StoreError> {
    Ok(ArchivedMessage {
        owner: owner.to_owned(),
        id: r.int(0)?,
        with_bare: r.text(1)?,
        with_res: r.text(2)?,
        outgoing: r.bool(3)?,
        ts: r.int(4)?,
        stanza: r.bytes(5)?,
        only_if_in_roster: false,
    })
}

impl Store {
    /// Appends archived messages, all in one transaction (the archive writes in batches).
    pub fn mam_append(&self, rows: &[ArchivedMessage]) -> Result<(), StoreError> {
        let put = sql(
            "INSERT INTO mam_message (owner, id, with_bare, with_res, outgoing, ts, stanza)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (owner, id) DO NOTHING",
        );
        let in_roster = sql(
            "SELECT count(*) FROM roster_items WHERE \"user\" = ?1 AND contact = ?2 AND in_roster = 1",
        );
        self.transaction(None, || {
            for r in rows {
                if r.only_if_in_roster && self.int(in_roster, args![&r.owner, &r.with_bare])? == 0 {
                    continue;
                }
                self.exec(
                    put,
                    args![
                        &r.owner,
                        r.id,
                        &r.with_bare,
                        &r.with_res,
                        r.outgoing,
                        r.ts,
                        &r.stanza
                    ],
                )?;
            }
            Ok(End::Commit(()))
        })
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
        if let Some(ids) = &filter.ids {
            let mut out = Vec::new();
            for &id in ids {
                if let Some(r) = self.row(BY_ID, args![owner, id])? {
                    let m = read_row(owner, r)?;
                    if filter.accepts(&m) {
                        out.push(m);
                    }
                }
            }
            out.sort_by_key(|m| m.id);
            out.dedup_by_key(|m| m.id);
            if out.len() > limit {
                if newest {
                    out.drain(..out.len() - limit);
                } else {
                    out.truncate(limit);
                }
            }
            return Ok(out);
        }
        let (after, before, start, end) = filter.bounds();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match (&filter.with_bare, newest) {
            (None, false) => self.rows(PAGE_ASC, args![owner, after, before, start, end, limit])?,
            (None, true) => self.rows(PAGE_DESC, args![owner, after, before, start, end, limit])?,
            (Some(w), false) => self.rows(
                PAGE_WITH_ASC,
                args![owner, after, before, start, end, limit, w, filter.res()],
            )?,
            (Some(w), true) => self.rows(
                PAGE_WITH_DESC,
                args![owner, after, before, start, end, limit, w, filter.res()],
            )?,
        };
        let mut out = rows
            .into_iter()
            .map(|r| read_row(owner, r))
            .collect::<Result<Vec<_>, _>>()?;
        if newest {
            out.reverse();
        }
        Ok(out)
    }

    /// How many messages of `owner`'s archive `filter` selects.
    pub fn mam_count(&self, owner: &str, filter: &MamFilter) -> Result<u64, StoreError> {
        if filter.ids.is_some() {
            return Ok(self.mam_query(owner, filter, usize::MAX, false)?.len() as u64);
        }
        let (after, before, start, end) = filter.bounds();
        let n = match &filter.with_bare {
            None => self.int(COUNT, args![owner, after, before, start, end])?,
            Some(w) => self.int(
                COUNT_WITH,
                args![owner, after, before, start, end, w, filter.res()],
            )?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The largest archive id stored (0 when the archive is empty).
    pub fn mam_max_id(&self) -> Result<i64, StoreError> {
        self.int(sql("SELECT coalesce(max(id), 0) FROM mam_message"), &[])
    }

    /// True when `owner`'s archive has message `id`.
    pub fn mam_has(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        Ok(self.row(BY_ID, args![owner, id])?.is_some())
    }

    /// Like [`Store::mam_count`], but counts no further than `cap`: a full count scans every
    /// selected row (a 1 000 000-message archive: ~100 ms), so queries only count up to a bound.
    pub fn mam_count_upto(
        &self,
        owner: &str,
        filter: &MamFilter,
        cap: u64,
    ) -> Result<u64, StoreError> {
        if filter.ids.is_some() {
            return Ok(self.mam_count(owner, filter)?.min(cap));
        }
        let (after, before, start, end) = filter.bounds();
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let n = match &filter.with_bare {
            None => self.int(COUNT_UPTO, args![owner, after, before, start, end, cap])?,
            Some(w) => self.int(
                COUNT_WITH_UPTO,
                args![owner, after, before, start, end, cap, w, filter.res()],
            )?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `owner`'s preferences, if they set any.
    pub fn mam_prefs(&self, owner: &str) -> Result<Option<StoredMamPrefs>, StoreError> {
        let q = sql("SELECT mode, always, never FROM mam_prefs WHERE owner = ?1");
        let Some(mut r) = self.row(q, args![owner])? else {
            return Ok(None);
        };
        Ok(Some(StoredMamPrefs {
            mode: r.text(0)?,
            always: split_list(&r.text(1)?),
            never: split_list(&r.text(2)?),
        }))
    }

    /// Every owner's preferences (loaded by each shard at start).
    pub fn mam_all_prefs(&self) -> Result<Vec<(String, StoredMamPrefs)>, StoreError> {
        let q = sql("SELECT owner, mode, always, never FROM mam_prefs");
        let mut out = Vec::new();
        for mut r in self.rows(q, &[])? {
            out.push((
                r.text(0)?,
                StoredMamPrefs {
                    mode: r.text(1)?,
                    always: split_list(&r.text(2)?),
                    never: split_list(&r.text(3)?),
                },
            ));
        }
        Ok(out)
    }

    /// Stores `owner`'s preferences.
    pub fn mam_set_prefs(&self, owner: &str, prefs: &StoredMamPrefs) -> Result<(), StoreError> {
        let q = sql(
            "INSERT INTO mam_prefs (owner, mode, always, never) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner) DO UPDATE SET mode = excluded.mode,
                 always = excluded.always, never = excluded.never",
        );
        let (always, never) = (prefs.always.join("\n"), prefs.never.join("\n"));
        self.exec(q, args![owner, &prefs.mode, &always, &never])?;
        Ok(())
    }

    /// Deletes `owner`'s archive and preferences (account removal, room destruction).
    pub fn mam_delete_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let n = self.exec(
            sql("DELETE FROM mam_message WHERE owner = ?1"),
            args![owner],
        )?;
        self.exec(sql("DELETE FROM mam_prefs WHERE owner = ?1"), args![owner])?;
        Ok(n)
    }

    /// Deletes every archived message older than `before` (µs); returns how many.
    pub fn mam_purge_before(&self, before: i64) -> Result<u64, StoreError> {
        self.exec(sql("DELETE FROM mam_message WHERE ts < ?1"), args![before])
    }

    /// Keeps only the newest `keep` messages of each owner whose archive is larger; returns how many
    /// were deleted.
    pub fn mam_trim(&self, keep: u64) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over = sql("SELECT owner FROM mam_message GROUP BY owner HAVING count(*) > ?1");
        let owners = self
            .rows(over, args![keep])?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff_q =
            sql("SELECT id FROM mam_message WHERE owner = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2");
        let delete = sql("DELETE FROM mam_message WHERE owner = ?1 AND id < ?2");
        let mut deleted = 0;
        for owner in owners {
            if let Some(mut r) = self.row(cutoff_q, args![&owner, keep - 1])? {
                let cutoff = r.int(0)?;
                deleted += self.exec(delete, args![&owner, cutoff])?;
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
    use crate::store::testing::test_dbs;

    fn row(owner: &str, id: i64, with: &str, ts: i64) -> ArchivedMessage {
        ArchivedMessage {
            owner: owner.into(),
            id,
            with_bare: with.into(),
            with_res: "r".into(),
            outgoing: id % 2 == 0,
            ts,
            stanza: format!("<message id='{id}'/>").into_bytes(),
            only_if_in_roster: false,
        }
    }

    #[test]
    fn append_query_page_count() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let s = db.open();
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
    }

    #[test]
    fn retention_purge_and_owner_deletion() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let s = db.open();
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
}
