//! SQLite's archive layout since schema 9: each owner's entries packed into runs.
//!
//! One B-tree row per archive entry — two per 1:1 message, each with a second entry in the contact
//! index — was most of the archive's cost: every commit inserted four scattered keys per message,
//! and the store thread spent about 4 of its 5 µs per message there. Now an owner's entries are
//! packed, in id order, into runs of up to [`RUN_BYTES`] (`mam_run`, keyed by (owner, list, first
//! id)): a commit rewrites the owner's last run and adds a new one when it is full, a few rows per
//! owner per commit whatever the traffic. Each owner has two kinds of lists: [`ALL`] (every entry,
//! for pages, counts and lookups by id) and one per contact (the `with` pages). The stanzas stay in
//! `mam_msg`, once per message, looked up by id for the page being returned.
//!
//! PostgreSQL keeps one row per entry (`mam_row`): its writes are off the shard's CPU (another
//! process) and batched per commit already.

use std::collections::HashMap;

use super::db::{sql, Sql};
use super::mam::{ArchivedMessage, MamFilter};
use super::value::{args, Row};
use super::{Corruption, Store, StoreError};

/// A run is closed once its entries take this many bytes: the whole record stays below SQLite's
/// largest local payload of a `WITHOUT ROWID` row with 4 KiB pages (about 1 000 bytes), so no run
/// spills to overflow pages.
const RUN_BYTES: usize = 800;

/// The list of every entry of an owner (`wid` 0: `mam_jid` ids start at 1); a contact's id names
/// the list of the entries with that contact.
pub(super) const ALL: i64 = 0;

/// Archive ids are the archive time (µs) shifted by this many bits (`modules::mam::id`): an entry
/// whose time is its id's own stores a zero.
const TIME_SHIFT: u32 = 10;

/// Runs fetched per statement while scanning a list.
const SCAN_BATCH: i64 = 16;

/// One archive entry, decoded from a run (`res` borrows the run's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    /// Archive id.
    pub id: i64,
    /// The contact's `mam_jid` id.
    pub wid: i64,
    /// Archive time (µs).
    pub ts: i64,
    /// Sent by the owner.
    pub outgoing: bool,
    /// The contact's resource (`""` when none).
    pub res: &'a str,
}

/// One `mam_run` row.
#[derive(Debug, Clone, Default)]
struct Run {
    first: i64,
    last: i64,
    n: i64,
    data: Vec<u8>,
}

impl Run {
    fn read(mut r: Row) -> Result<Run, StoreError> {
        Run::read_at(&mut r, 0)
    }

    /// The run in columns `at..at + 4` of `r` (first, last, n, data).
    fn read_at(r: &mut Row, at: usize) -> Result<Run, StoreError> {
        Ok(Run {
            first: r.int(at)?,
            last: r.int(at + 1)?,
            n: r.int(at + 2)?,
            data: r.bytes(at + 3)?,
        })
    }

    /// The run's entries, in id order.
    fn entries(&self) -> Decoder<'_> {
        Decoder {
            data: &self.data,
            at: 0,
            prev: self.first,
        }
    }

    /// Appends `e` (its id above every id in the run).
    fn push(&mut self, e: &Entry<'_>) {
        let prev = if self.n == 0 { e.id } else { self.last };
        if self.n == 0 {
            self.first = e.id;
        }
        encode(&mut self.data, prev, e);
        self.last = e.id;
        self.n += 1;
    }

    fn is_full(&self) -> bool {
        self.data.len() >= RUN_BYTES
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Appends `e` after an entry with id `prev` (the entry's own id for a run's first): the id as a
/// delta, the contact, the time as its (zigzag) difference from the id's, the direction, the
/// resource.
fn encode(out: &mut Vec<u8>, prev: i64, e: &Entry<'_>) {
    put_varint(out, e.id.wrapping_sub(prev) as u64);
    put_varint(out, e.wid as u64);
    let dt = e.ts.wrapping_sub(e.id >> TIME_SHIFT);
    put_varint(out, ((dt << 1) ^ (dt >> 63)) as u64);
    out.push(u8::from(e.outgoing));
    put_varint(out, e.res.len() as u64);
    out.extend_from_slice(e.res.as_bytes());
}

/// A run's entries, decoded one by one.
struct Decoder<'a> {
    data: &'a [u8],
    at: usize,
    prev: i64,
}

impl<'a> Decoder<'a> {
    fn next_entry(&mut self) -> Option<Entry<'a>> {
        let d = self.data;
        let id = self.prev.wrapping_add(get_varint(d, &mut self.at)? as i64);
        let wid = get_varint(d, &mut self.at)? as i64;
        let z = get_varint(d, &mut self.at)?;
        let dt = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let outgoing = *d.get(self.at)? != 0;
        self.at += 1;
        let len = usize::try_from(get_varint(d, &mut self.at)?).ok()?;
        let res = std::str::from_utf8(d.get(self.at..self.at.checked_add(len)?)?).ok()?;
        self.at += len;
        self.prev = id;
        Some(Entry {
            id,
            wid,
            ts: (id >> TIME_SHIFT).wrapping_add(dt),
            outgoing,
            res,
        })
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<Entry<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.data.len() {
            return None;
        }
        Some(
            self.next_entry()
                .ok_or(Corruption::Column("a run of archive entries").into()),
        )
    }
}

/// An entry with its resource owned (read out of a run for a page).
#[derive(Debug, Clone)]
struct Found {
    id: i64,
    wid: i64,
    ts: i64,
    outgoing: bool,
    res: String,
}

impl From<Entry<'_>> for Found {
    fn from(e: Entry<'_>) -> Found {
        Found {
            id: e.id,
            wid: e.wid,
            ts: e.ts,
            outgoing: e.outgoing,
            res: e.res.to_owned(),
        }
    }
}

/// The first id of the run that holds `id` or the last one before it.
const RUN_AT: Sql = sql("SELECT first FROM mam_run
     WHERE oid = ?1 AND wid = ?2 AND first <= ?3 ORDER BY first DESC LIMIT 1");
const RUNS_UP: Sql = sql("SELECT first, last, n, data FROM mam_run
     WHERE oid = ?1 AND wid = ?2 AND first >= ?3 ORDER BY first ASC LIMIT ?4");
const RUNS_DOWN: Sql = sql("SELECT first, last, n, data FROM mam_run
     WHERE oid = ?1 AND wid = ?2 AND first <= ?3 ORDER BY first DESC LIMIT ?4");
/// The runs a write into a list touches: the one holding (or last before) `?3`, the smallest new
/// id, and every later one starting at most at `?4`, the largest (usually the list's last run
/// only).
const RUNS_TOUCHED: Sql = sql("SELECT first, last, n, data FROM mam_run
     WHERE oid = ?1 AND wid = ?2 AND first <= ?4 AND first >= coalesce((SELECT max(first)
         FROM mam_run WHERE oid = ?1 AND wid = ?2 AND first <= ?3), -9223372036854775808)
     ORDER BY first");
const RUN_PUT: Sql = sql(
    "INSERT OR REPLACE INTO mam_run (oid, wid, first, last, n, data)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
);
const RUN_DELETE: Sql = sql("DELETE FROM mam_run WHERE oid = ?1 AND wid = ?2 AND first = ?3");
const MSG_DELETE: Sql = sql("DELETE FROM mam_msg WHERE id = ?1");
/// Stanzas fetched per statement.
const STANZA_CHUNK: usize = 64;

/// `SELECT id, stanza FROM mam_msg WHERE id IN (?1, ..., ?n)` for `n` in 1..=[`STANZA_CHUNK`],
/// each text built once (statement caches key on static texts).
fn stanzas_in(n: usize) -> Sql {
    static TEXTS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=STANZA_CHUNK)
            .map(|n| {
                let list: Vec<String> = (1..=n.max(1)).map(|i| format!("?{i}")).collect();
                let t = format!(
                    "SELECT id, stanza FROM mam_msg WHERE id IN ({})",
                    list.join(",")
                );
                // Built once for the life of the process.
                &*Box::leak(t.into_boxed_str())
            })
            .collect()
    });
    sql(texts[n.clamp(1, STANZA_CHUNK)])
}
const JID_OF: Sql = sql("SELECT jid FROM mam_jid WHERE jid_id = ?1");

/// An entry removed from an owner's [`ALL`] list: its stanza goes unless the contact's archive
/// still has the message.
#[derive(Debug, Clone, Copy)]
struct Removed {
    oid: i64,
    id: i64,
    wid: i64,
}

impl MamFilter {
    /// Whether a decoded entry passes the time and resource conditions (ids are bounded by the
    /// scan, the contact by the list).
    fn admits(&self, e: &Entry<'_>, start: i64, end: i64) -> bool {
        e.ts >= start && e.ts <= end && self.with_res.as_deref().is_none_or(|r| r == e.res)
    }
}

impl Store {
    /// Adds `entries` (in id order, no id twice) to the list `(oid, wid)`: appended to its last
    /// run while that has room; merged where they fall among stored ones (ids from another store
    /// connection's later commit); an id the list has already is kept as stored, and returned
    /// (so that the contact lists skip it too).
    pub(super) fn runs_add(
        &self,
        oid: i64,
        wid: i64,
        entries: &[Entry<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let mut kept_as_stored = Vec::new();
        let (Some(lo), Some(hi)) = (entries.first(), entries.last()) else {
            return Ok(kept_as_stored);
        };
        let old = self
            .rows(RUNS_TOUCHED, args![oid, wid, lo.id, hi.id])?
            .into_iter()
            .map(Run::read)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Run> = Vec::new();
        // The stored runs rewritten (their keys go unless a new run takes them over).
        let mut replaced: &[Run] = &old;
        match old.as_slice() {
            // The usual case: every new id after the list's last one.
            [] => pack(&mut out, Run::default(), entries.iter().copied()),
            [tail] if lo.id > tail.last && tail.is_full() => {
                // The last run stays as it is; the new entries start the next one.
                replaced = &[];
                pack(&mut out, Run::default(), entries.iter().copied());
            }
            [tail] if lo.id > tail.last => pack(&mut out, tail.clone(), entries.iter().copied()),
            _ => {
                let mut merged: Vec<Entry<'_>> = Vec::new();
                for r in &old {
                    for e in r.entries() {
                        merged.push(e?);
                    }
                }
                let stored = merged.len();
                merged.extend(entries.iter().copied());
                // Stable: a stored entry stays ahead of a new one with its id, and is the one kept.
                merged.sort_by_key(|e| e.id);
                let before = merged.len();
                merged.dedup_by_key(|e| e.id);
                if merged.len() < before {
                    let mut ids: Vec<i64> = old
                        .iter()
                        .flat_map(|r| r.entries().flatten().map(|e| e.id))
                        .collect();
                    ids.sort_unstable();
                    debug_assert_eq!(ids.len(), stored);
                    kept_as_stored = entries
                        .iter()
                        .map(|e| e.id)
                        .filter(|id| ids.binary_search(id).is_ok())
                        .collect();
                }
                pack(&mut out, Run::default(), merged.into_iter());
            }
        }
        for r in &out {
            self.exec(RUN_PUT, args![oid, wid, r.first, r.last, r.n, &r.data[..]])?;
        }
        for r in replaced
            .iter()
            .filter(|r| !out.iter().any(|o| o.first == r.first))
        {
            self.exec(RUN_DELETE, args![oid, wid, r.first])?;
        }
        Ok(kept_as_stored)
    }

    /// Calls `f` with each run of `(oid, wid)` that may hold ids in `(after, before)`, in id order
    /// (descending when `down`), until it returns false.
    fn runs_each(
        &self,
        (oid, wid): (i64, i64),
        after: i64,
        before: i64,
        down: bool,
        mut f: impl FnMut(Run) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if after.checked_add(1).is_none_or(|lo| lo >= before) {
            return Ok(());
        }
        let mut at = if down {
            before - 1
        } else {
            match self.row(RUN_AT, args![oid, wid, after + 1])? {
                Some(mut r) => r.int(0)?,
                None => i64::MIN,
            }
        };
        loop {
            let q = if down { RUNS_DOWN } else { RUNS_UP };
            let runs = self.rows(q, args![oid, wid, at, SCAN_BATCH])?;
            let full = runs.len() as i64 == SCAN_BATCH;
            for r in runs {
                let r = Run::read(r)?;
                let past = if down {
                    r.last <= after
                } else {
                    r.first >= before
                };
                if past {
                    return Ok(());
                }
                at = if down {
                    match r.first.checked_sub(1) {
                        Some(a) => a,
                        None => return f(r).map(drop),
                    }
                } else {
                    match r.first.checked_add(1) {
                        Some(a) => a,
                        None => return f(r).map(drop),
                    }
                };
                if !f(r)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Up to `limit` entries of the list that `filter` selects, in id order (the newest ones when
    /// `newest`, still returned oldest first).
    fn runs_select(
        &self,
        list: (i64, i64),
        filter: &MamFilter,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<Found>, StoreError> {
        let (after, before, start, end) = filter.bounds();
        let mut out: Vec<Found> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.runs_each(list, after, before, newest, |r| {
            let mut es = Vec::with_capacity(r.n as usize);
            for e in r.entries() {
                let e = e?;
                if e.id > after && e.id < before && filter.admits(&e, start, end) {
                    es.push(e);
                }
            }
            if newest {
                es.reverse();
            }
            for e in es {
                out.push(e.into());
                if out.len() >= limit {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        if newest {
            out.reverse();
        }
        Ok(out)
    }

    /// How many entries of the list `filter` selects, counting no further than `cap`.
    pub(super) fn runs_count(
        &self,
        list: (i64, i64),
        filter: &MamFilter,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let (after, before, start, end) = filter.bounds();
        // Whole runs inside the id bounds count without decoding when no other condition applies.
        let plain = filter.start.is_none() && filter.end.is_none() && filter.with_res.is_none();
        let mut n = 0u64;
        self.runs_each(list, after, before, false, |r| {
            if plain && r.first > after && r.last < before {
                n += u64::try_from(r.n).unwrap_or(0);
            } else {
                for e in r.entries() {
                    let e = e?;
                    if e.id > after && e.id < before && filter.admits(&e, start, end) {
                        n += 1;
                    }
                }
            }
            Ok(n < cap)
        })?;
        Ok(n.min(cap))
    }

    /// The entry `id` of the list, if it has one.
    fn runs_find(&self, list: (i64, i64), id: i64) -> Result<Option<Found>, StoreError> {
        let Some(run) = self.run_holding(list, id)? else {
            return Ok(None);
        };
        for e in run.entries() {
            let e = e?;
            if e.id == id {
                return Ok(Some(e.into()));
            }
        }
        Ok(None)
    }

    /// The run of the list whose id range holds `id`, if any (one statement, one run).
    fn run_holding(&self, (oid, wid): (i64, i64), id: i64) -> Result<Option<Run>, StoreError> {
        let Some(r) = self.row(RUNS_DOWN, args![oid, wid, id, 1])? else {
            return Ok(None);
        };
        let run = Run::read(r)?;
        Ok((run.last >= id).then_some(run))
    }

    /// The entries as archived messages of `owner`: each with its stanza and contact's JID.
    fn runs_messages(
        &self,
        owner: &str,
        found: Vec<Found>,
    ) -> Result<Vec<ArchivedMessage>, StoreError> {
        let mut names: HashMap<i64, String> = HashMap::new();
        // The page's stanzas, up to `STANZA_CHUNK` per statement (one lookup each was two thirds
        // of a page's time).
        let mut stanzas: HashMap<i64, Vec<u8>> = HashMap::with_capacity(found.len());
        for chunk in found.chunks(STANZA_CHUNK) {
            let ids: Vec<super::value::Arg<'_>> =
                chunk.iter().map(|f| super::value::Arg::Int(f.id)).collect();
            for mut r in self.rows(stanzas_in(chunk.len()), &ids)? {
                stanzas.insert(r.int(0)?, r.bytes(1)?);
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for f in found {
            // An entry whose stanza is gone (deleted with the contact's archive) is skipped.
            let Some(stanza) = stanzas.remove(&f.id) else {
                continue;
            };
            let with_bare = match names.get(&f.wid) {
                Some(n) => n.clone(),
                None => {
                    let mut r = self
                        .row(JID_OF, args![f.wid])?
                        .ok_or(Corruption::Column("mam_jid.jid"))?;
                    let n = r.text(0)?;
                    names.insert(f.wid, n.clone());
                    n
                }
            };
            out.push(ArchivedMessage {
                owner: owner.to_owned(),
                id: f.id,
                with_bare,
                with_res: f.res,
                outgoing: f.outgoing,
                ts: f.ts,
                stanza,
                keep: crate::store::Keep::Always,
            });
        }
        Ok(out)
    }

    /// SQLite's [`Store::mam_query`] (`oid` the owner's id, `with` the contact's when the filter
    /// names one).
    pub(super) fn runs_query(
        &self,
        owner: &str,
        oid: i64,
        with: Option<i64>,
        filter: &MamFilter,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<ArchivedMessage>, StoreError> {
        let found = self.runs_select((oid, with.unwrap_or(ALL)), filter, limit, newest)?;
        self.runs_messages(owner, found)
    }

    /// SQLite's lookup of one message of `owner` by id.
    pub(super) fn runs_by_id(
        &self,
        owner: &str,
        oid: i64,
        id: i64,
    ) -> Result<Option<ArchivedMessage>, StoreError> {
        let found = self.runs_find((oid, ALL), id)?;
        Ok(self
            .runs_messages(owner, found.into_iter().collect())?
            .pop())
    }

    /// Removes from every list of `oid` the entries `drop` selects among those of the runs
    /// starting before `upto`; returns the removed entries of its [`ALL`] list.
    fn runs_remove(
        &self,
        oid: i64,
        upto: i64,
        drop: impl Fn(&Entry<'_>) -> bool,
    ) -> Result<Vec<Removed>, StoreError> {
        let q = sql("SELECT wid, first, last, n, data FROM mam_run WHERE oid = ?1 AND first < ?2");
        let mut removed = Vec::new();
        for mut row in self.rows(q, args![oid, upto])? {
            let wid = row.int(0)?;
            let run = Run::read_at(&mut row, 1)?;
            self.rewrite_run(oid, wid, &run, &drop, &mut removed)?;
        }
        Ok(removed)
    }

    /// Rewrites one run without the entries `drop` selects (deleting it when none stays).
    fn rewrite_run(
        &self,
        oid: i64,
        wid: i64,
        run: &Run,
        drop: &impl Fn(&Entry<'_>) -> bool,
        removed: &mut Vec<Removed>,
    ) -> Result<(), StoreError> {
        let mut kept: Vec<Entry<'_>> = Vec::new();
        let before = removed.len();
        for e in run.entries() {
            let e = e?;
            if drop(&e) {
                if wid == ALL {
                    removed.push(Removed {
                        oid,
                        id: e.id,
                        wid: e.wid,
                    });
                }
            } else {
                kept.push(e);
            }
        }
        if kept.len() == run.n as usize && removed.len() == before {
            return Ok(());
        }
        self.exec(RUN_DELETE, args![oid, wid, run.first])?;
        let mut out = Vec::new();
        pack(&mut out, Run::default(), kept.into_iter());
        for r in &out {
            self.exec(RUN_PUT, args![oid, wid, r.first, r.last, r.n, &r.data[..]])?;
        }
        Ok(())
    }

    /// Deletes the stanzas of removed entries unless the contact's archive still has the message
    /// (a 1:1 message is in its sender's and its recipient's archives, each naming the other).
    fn drop_stanzas(&self, removed: &[Removed]) -> Result<(), StoreError> {
        // The contact's run last looked into, decoded: consecutive removals hit the same one.
        let mut seen: HashMap<i64, (i64, i64, Vec<i64>)> = HashMap::new();
        for r in removed {
            let kept = r.wid != r.oid && {
                let hit = seen
                    .get(&r.wid)
                    .is_some_and(|(first, last, _)| (*first..=*last).contains(&r.id));
                if !hit {
                    let decoded = match self.run_holding((r.wid, ALL), r.id)? {
                        Some(x) => (
                            x.first,
                            x.last,
                            x.entries()
                                .map(|e| e.map(|e| e.id))
                                .collect::<Result<_, _>>()?,
                        ),
                        None => (r.id, r.id, Vec::new()),
                    };
                    seen.insert(r.wid, decoded);
                }
                seen.get(&r.wid)
                    .is_some_and(|(_, _, ids)| ids.binary_search(&r.id).is_ok())
            };
            if !kept {
                self.exec(MSG_DELETE, args![r.id])?;
            }
        }
        Ok(())
    }

    /// SQLite's [`Store::mam_delete_owner`] for the owner's id: how many entries went.
    pub(super) fn runs_delete_owner(&self, oid: i64) -> Result<u64, StoreError> {
        self.atomic(|| {
            let removed = self.runs_remove(oid, i64::MAX, |_| true)?;
            self.exec(sql("DELETE FROM mam_run WHERE oid = ?1"), args![oid])?;
            self.drop_stanzas(&removed)?;
            Ok(removed.len() as u64)
        })
    }

    /// SQLite's [`Store::mam_delete_owner_before`].
    pub(super) fn runs_delete_owner_before(
        &self,
        oid: i64,
        before: i64,
    ) -> Result<u64, StoreError> {
        self.atomic(|| {
            let removed = self.runs_remove(oid, before, |e| e.id < before)?;
            self.drop_stanzas(&removed)?;
            Ok(removed.len() as u64)
        })
    }

    /// SQLite's [`Store::mam_delete_received`]: the entry goes from the owner's lists (every
    /// entry's and its contact's).
    pub(super) fn runs_delete_received(&self, oid: i64, id: i64) -> Result<bool, StoreError> {
        self.atomic(|| {
            let Some(found) = self.runs_find((oid, ALL), id)? else {
                return Ok(false);
            };
            if found.outgoing {
                return Ok(false);
            }
            let mut removed = Vec::new();
            for wid in [ALL, found.wid] {
                if let Some(run) = self.run_holding((oid, wid), id)? {
                    self.rewrite_run(oid, wid, &run, &|e: &Entry<'_>| e.id == id, &mut removed)?;
                }
            }
            self.drop_stanzas(&removed)?;
            Ok(!removed.is_empty())
        })
    }

    /// SQLite's [`Store::mam_trim`]: keeps the newest `keep` entries of each owner.
    pub(super) fn runs_trim(&self, keep: u64) -> Result<u64, StoreError> {
        let over = sql("SELECT oid FROM mam_run WHERE wid = 0 GROUP BY oid HAVING sum(n) > ?1");
        let keep_i = i64::try_from(keep).unwrap_or(i64::MAX);
        let owners = self
            .rows(over, args![keep_i])?
            .into_iter()
            .map(|mut r| r.int(0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut deleted = 0;
        for oid in owners {
            // The id of the oldest entry kept: the keep-th from the newest.
            // At least one stays (as a count of 0 did before schema 9).
            let mut left = keep.max(1);
            let mut cutoff = None;
            self.runs_each((oid, ALL), i64::MIN, i64::MAX, true, |r| {
                let n = u64::try_from(r.n).unwrap_or(0);
                if n < left {
                    left -= n;
                    return Ok(true);
                }
                let ids: Vec<i64> = r
                    .entries()
                    .map(|e| e.map(|e| e.id))
                    .collect::<Result<_, _>>()?;
                cutoff = ids
                    .len()
                    .checked_sub(left as usize)
                    .and_then(|i| ids.get(i).copied());
                Ok(false)
            })?;
            let Some(cutoff) = cutoff else { continue };
            deleted += self.atomic(|| {
                let removed = self.runs_remove(oid, cutoff, |e| e.id < cutoff)?;
                self.drop_stanzas(&removed)?;
                Ok(removed.len() as u64)
            })?;
        }
        Ok(deleted)
    }

    /// SQLite's [`Store::mam_purge_before`]: every entry older than `before` (µs).
    pub(super) fn runs_purge_before(&self, before: i64) -> Result<u64, StoreError> {
        // Every run is read (an entry's time is in its run's bytes), in key order a page at a time.
        let q = sql("SELECT oid, wid, first, last, n, data FROM mam_run
             WHERE (oid, wid, first) > (?1, ?2, ?3) ORDER BY oid, wid, first LIMIT 256");
        self.atomic(|| {
            let mut removed = Vec::new();
            let mut key = (i64::MIN, i64::MIN, i64::MIN);
            loop {
                let rows = self.rows(q, args![key.0, key.1, key.2])?;
                let Some(_) = rows.last() else { break };
                for mut row in rows {
                    let (oid, wid) = (row.int(0)?, row.int(1)?);
                    let run = Run::read_at(&mut row, 2)?;
                    key = (oid, wid, run.first);
                    self.rewrite_run(oid, wid, &run, &|e| e.ts < before, &mut removed)?;
                }
            }
            self.drop_stanzas(&removed)?;
            Ok(removed.len() as u64)
        })
    }

    /// Schema 9 on SQLite: `mam_entry`'s rows (one per entry) packed into `mam_run`, then the
    /// table dropped.
    pub(super) fn convert_v9_sqlite(&self) -> Result<(), StoreError> {
        // Every owner's whole list in (owner, id) order, then each contact's in (owner, contact,
        // id) order (the `with` index's), a bounded number of rows at a time.
        let passes = [
            sql("SELECT oid, wid, id, ts, outgoing, with_res FROM mam_entry
                 WHERE (oid, id) > (?1, ?2) ORDER BY oid, id LIMIT 4096"),
            sql("SELECT oid, wid, id, ts, outgoing, with_res FROM mam_entry INDEXED BY mam_entry_with
                 WHERE (oid, wid, id) > (?1, ?3, ?2) ORDER BY oid, wid, id LIMIT 4096"),
        ];
        for (pass, q) in passes.into_iter().enumerate() {
            let per_contact = pass == 1;
            let mut key = (i64::MIN, i64::MIN, i64::MIN);
            loop {
                let rows = if per_contact {
                    self.rows(q, args![key.0, key.1, key.2])?
                } else {
                    self.rows(q, args![key.0, key.1])?
                };
                if rows.is_empty() {
                    break;
                }
                let mut read = Vec::with_capacity(rows.len());
                for mut r in rows {
                    read.push((
                        r.int(0)?,
                        r.int(1)?,
                        r.int(2)?,
                        r.int(3)?,
                        r.bool(4)?,
                        r.text(5)?,
                    ));
                }
                if let Some(l) = read.last() {
                    key = (l.0, l.2, l.1);
                }
                let list = |r: &(i64, i64, i64, i64, bool, String)| {
                    (r.0, if per_contact { r.1 } else { ALL })
                };
                for group in read.chunk_by(|a, b| list(a) == list(b)) {
                    let (oid, wid) = list(&group[0]);
                    let entries: Vec<Entry<'_>> = group
                        .iter()
                        .map(|r| Entry {
                            id: r.2,
                            wid: r.1,
                            ts: r.3,
                            outgoing: r.4,
                            res: &r.5,
                        })
                        .collect();
                    // A list is converted once: no id is there already.
                    self.runs_add(oid, wid, &entries)?;
                }
            }
        }
        self.db.batch("DROP TABLE mam_entry")?;
        Ok(())
    }
}

/// Packs `entries` (in id order, after every entry of `cur`) into runs, starting with `cur`
/// (the list's last run, or an empty one); the runs written go to `out`.
fn pack<'a>(out: &mut Vec<Run>, mut cur: Run, entries: impl Iterator<Item = Entry<'a>>) {
    for e in entries {
        if cur.is_full() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(&e);
    }
    if cur.n > 0 {
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: i64, wid: i64, ts: i64, res: &str) -> Entry<'_> {
        Entry {
            id,
            wid,
            ts,
            outgoing: id % 2 == 0,
            res,
        }
    }

    #[test]
    fn entries_round_trip() {
        let es = [
            e(1 << 40, 3, (1 << 40) >> TIME_SHIFT, ""),
            e((1 << 40) + 1024, 1, 7, "phone"),
            e(i64::MAX, 70_000, i64::MIN, "r\u{e9}s"),
        ];
        let mut run = Run::default();
        for x in &es {
            run.push(x);
        }
        let back: Vec<_> = run.entries().collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(back, es);
        assert_eq!((run.first, run.last, run.n), (1 << 40, i64::MAX, 3));
        // The usual entry (time from the id, no resource) takes a few bytes.
        let mut one = Vec::new();
        encode(
            &mut one,
            1 << 40,
            &e((1 << 40) + 1024, 5, ((1 << 40) + 1024) >> TIME_SHIFT, ""),
        );
        assert_eq!(one.len(), 6);
    }

    #[test]
    fn a_truncated_run_is_corruption() {
        let mut run = Run::default();
        run.push(&e(5, 1, 0, "abc"));
        run.data.pop();
        assert!(run.entries().any(|r| r.is_err()));
    }

    #[test]
    fn packing_closes_full_runs() {
        let ids: Vec<i64> = (1..=500).collect();
        let mut out = Vec::new();
        pack(
            &mut out,
            Run::default(),
            ids.iter().map(|&i| e(i, 1, 0, "resource")),
        );
        assert!(out.len() > 1);
        assert!(out.iter().all(|r| r.data.len() < RUN_BYTES + 32));
        let back: Vec<i64> = out
            .iter()
            .flat_map(|r| r.entries().map(|e| e.map(|e| e.id).unwrap_or(-1)))
            .collect();
        assert_eq!(back, ids);
        for w in out.windows(2) {
            assert!(w[0].last < w[1].first);
        }
    }
}

/// The packed lists answer as one row per entry would: pages, counts and lookups on SQLite
/// checked against the same filter applied to what was written (and PostgreSQL, which keeps one
/// row per entry, gives the same answers).
#[cfg(test)]
mod store_tests {
    use crate::store::testing::test_dbs;
    use crate::store::{ArchivedMessage, MamFilter};
    use crate::testing::Rng;

    /// The store tests' row, with resource `res`.
    fn msg(owner: &str, id: i64, with: &str, res: &str, ts: i64) -> ArchivedMessage {
        ArchivedMessage {
            with_res: res.into(),
            ..crate::store::mam::tests::row(owner, id, with, ts)
        }
    }

    #[test]
    fn pages_counts_and_lookups_match_a_row_per_entry() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let contacts = ["b@x", "c@x", "d@x"];
            let mut written: Vec<ArchivedMessage> = Vec::new();
            // Batches of ids in increasing order, then some out of order (another store
            // connection's later commit) and some written again (kept as first stored).
            let mut id = 1_000i64;
            for batch in 0..12 {
                let mut rows = Vec::new();
                for _ in 0..(50 + rng.below(150)) {
                    id += 1 + rng.below(3) as i64;
                    let with = contacts[rng.below(3) as usize];
                    let res = ["", "phone", "laptop"][rng.below(3) as usize];
                    rows.push(msg("a@x", id, with, res, id * 7 + rng.below(5) as i64));
                }
                if batch % 4 == 3 {
                    // Ids between stored ones: gaps left by the steps above.
                    for _ in 0..20 {
                        let back = 1_000 + rng.below((id - 1_000) as u64) as i64;
                        if !written.iter().any(|m| m.id == back)
                            && !rows.iter().any(|m| m.id == back)
                        {
                            rows.push(msg("a@x", back, "c@x", "", back * 7));
                        }
                    }
                    // A stored id again, with other contents: the stored entry stays.
                    let again = written[rng.below(written.len() as u64) as usize].id;
                    rows.push(msg("a@x", again, "d@x", "other", 1));
                }
                s.mam_append(&rows).unwrap_or_else(|e| panic!("{n}: {e}"));
                for r in rows {
                    if !written.iter().any(|m| m.id == r.id) {
                        written.push(r);
                    }
                }
            }
            written.sort_by_key(|m| m.id);
            let ids = |v: &[ArchivedMessage]| v.iter().map(|m| m.id).collect::<Vec<_>>();
            for round in 0..200 {
                let pick = |rng: &mut Rng| written[rng.below(written.len() as u64) as usize].id;
                let f = MamFilter {
                    with_bare: (round % 2 == 0).then(|| contacts[rng.below(3) as usize].to_owned()),
                    with_res: (round % 6 == 0).then(|| "phone".to_owned()),
                    after_id: (rng.below(2) == 0).then(|| pick(&mut rng)),
                    before_id: (rng.below(2) == 0).then(|| pick(&mut rng)),
                    start: (rng.below(3) == 0).then(|| pick(&mut rng) * 7),
                    end: (rng.below(3) == 0).then(|| pick(&mut rng) * 7),
                    ..MamFilter::default()
                };
                let want: Vec<ArchivedMessage> =
                    written.iter().filter(|m| f.accepts(m)).cloned().collect();
                let limit = 1 + rng.below(80) as usize;
                let newest = round % 3 == 0;
                let got = s
                    .mam_query("a@x", &f, limit, newest)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
                let expect = if newest {
                    &want[want.len().saturating_sub(limit)..]
                } else {
                    &want[..want.len().min(limit)]
                };
                assert_eq!(ids(&got), ids(expect), "{n}: round {round} {f:?}");
                for (g, w) in got.iter().zip(expect) {
                    assert_eq!(
                        (&g.with_bare, &g.with_res, g.outgoing, g.ts, &g.stanza),
                        (&w.with_bare, &w.with_res, w.outgoing, w.ts, &w.stanza),
                        "{n}: round {round}"
                    );
                }
                let count = s
                    .mam_count("a@x", &f)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(count, want.len() as u64, "{n}: round {round} {f:?}");
                let cap = 1 + rng.below(100);
                let upto = s
                    .mam_count_upto("a@x", &f, cap)
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(upto, (want.len() as u64).min(cap), "{n}: round {round}");
                let probe = pick(&mut rng) + rng.below(2) as i64;
                assert_eq!(
                    s.mam_has("a@x", probe).ok(),
                    Some(written.iter().any(|m| m.id == probe)),
                    "{n}: {probe}"
                );
            }
        }
    }
}
