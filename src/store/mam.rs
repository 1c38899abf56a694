//! The message archive (XEP-0313): one row per archived message per archive owner (a user's bare
//! JID, or a room's), ordered by the archive id (time-ordered, see `modules::mam::id`), and the
//! owners' archiving preferences.

use super::db::{sql, sql2, End, Sql};
use std::time::{Duration, Instant};

use super::db::Kind;
use super::mam_runs::{Entry, ALL};
use super::value::{args, Arg, Row};

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
    /// When the row is written (checked then). Always [`Keep::Always`] on rows read back.
    pub keep: Keep,
}

/// Whether a row is kept when it is written (checked in the write's transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Always (a room's message).
    #[default]
    Always,
    /// Only if the owner is an account: a user's received copy, whose address may name no one
    /// (an archive for a name nobody registered would grow unasked, and be read by whoever
    /// registered it later), and a sender's copy (its account may have been removed before the
    /// row's commit).
    IfAccount,
    /// Only if the other party is in the owner's roster (the owner's `roster` default; an owner
    /// with a roster is an account).
    IfInRoster,
}

/// What an archive write needs to know of a row's owner (looked up once per commit).
#[derive(Debug, Clone, Copy, Default)]
struct Owner {
    /// The owner is an account.
    account: bool,
    /// Its block list is not empty.
    blocks: bool,
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

/// The archive's tables differ per backend: on SQLite each message's stanza is in `mam_msg` and
/// each owner's entries are packed into runs (`mam_run`, see `mam_runs.rs`); on PostgreSQL each
/// per-owner row in `mam_row` holds the stanza. These statements are PostgreSQL's:
/// `$pre mam_row $post`.
macro_rules! on_rows {
    ($pre:expr, $post:expr) => {
        sql(concat!($pre, "mam_row", $post))
    };
}

/// A page's rows with their contact's JID and their stanza, per backend.
macro_rules! page_text {
    ($from:expr, $stanza:expr, $with:expr, $dir:literal) => {
        concat!(
            "SELECT m.id, w.jid, m.with_res, m.outgoing, m.ts, ",
            $stanza,
            " FROM ",
            $from,
            " WHERE m.oid = ?1 AND m.id > ?2 AND m.id < ?3 AND m.ts >= ?4 AND m.ts <= ?5",
            $with,
            " ORDER BY m.id ",
            $dir,
            " LIMIT ?6"
        )
    };
}
macro_rules! pg_from {
    () => {
        "mam_row m JOIN mam_jid w ON w.jid_id = m.wid"
    };
}

/// Page queries (PostgreSQL): one static statement per (with or not, direction), every bound
/// always given (open ends as the extreme integers) so each uses its index without OR clauses.
/// Owners and contacts are their `mam_jid` ids (`?1`, `?7`); the contact's JID comes back by a
/// join on its primary key.
macro_rules! page {
    ($with:expr, $dir:literal) => {
        sql(page_text!(pg_from!(), "m.stanza", $with, $dir))
    };
}
/// The contact condition of the `with` pages.
macro_rules! with {
    () => {
        " AND m.wid = ?7 AND (?8 = '*' OR m.with_res = ?8)"
    };
}
const PAGE_ASC: Sql = page!("", "ASC");
const PAGE_DESC: Sql = page!("", "DESC");
const PAGE_WITH_ASC: Sql = page!(with!(), "ASC");
const PAGE_WITH_DESC: Sql = page!(with!(), "DESC");
const COUNT: Sql = on_rows!(
    "SELECT count(*) FROM ",
    " WHERE oid = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5"
);
const COUNT_WITH: Sql = on_rows!(
    "SELECT count(*) FROM ",
    " WHERE oid = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND wid = ?6 AND (?7 = '*' OR with_res = ?7)"
);
const COUNT_UPTO: Sql = on_rows!(
    "SELECT count(*) FROM (SELECT 1 FROM ",
    " WHERE oid = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5 LIMIT ?6) AS page"
);
const COUNT_WITH_UPTO: Sql = on_rows!(
    "SELECT count(*) FROM (SELECT 1 FROM ",
    " WHERE oid = ?1 AND id > ?2 AND id < ?3 AND ts >= ?4 AND ts <= ?5
       AND wid = ?7 AND (?8 = '*' OR with_res = ?8) LIMIT ?6) AS page"
);
const BY_ID: Sql = sql(concat!(
    "SELECT m.id, w.jid, m.with_res, m.outgoing, m.ts, m.stanza FROM ",
    pg_from!(),
    " WHERE m.oid = ?1 AND m.id = ?2"
));
/// A JID's id, when it has one.
const JID_ID: Sql = sql("SELECT jid_id FROM mam_jid WHERE jid = ?1");
/// Gives a JID an id (if it has none yet).
const JID_ADD: Sql = sql("INSERT INTO mam_jid (jid) VALUES (?1) ON CONFLICT DO NOTHING");

/// JID ids cached per connection, at most this many (then the cache starts over).
const JID_CACHE_MAX: usize = 65_536;

impl MamFilter {
    /// (after, before, start, end) with open ends filled in.
    pub(super) fn bounds(&self) -> (i64, i64, i64, i64) {
        (
            self.after_id.unwrap_or(i64::MIN),
            self.before_id.unwrap_or(i64::MAX),
            self.start.unwrap_or(i64::MIN),
            self.end.unwrap_or(i64::MAX),
        )
    }

    /// Whether `m` passes every condition but `ids` (used when ids are fetched one by one).
    pub(super) fn accepts(&self, m: &ArchivedMessage) -> bool {
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
        keep: Keep::Always,
    })
}

/// Rows held for one coalesced write before it is forced, whatever the age of the oldest (bounded
/// memory: about 80 MiB of typical rows; a commit's cost is mostly per page it touches — each
/// active owner's last run, `mam_msg`'s right edge — so the more rows share it the better: at
/// `max`'s rate, about 350 000 rows a second, the [`PENDING_WAIT`] bound ends the commits).
const PENDING_MAX: usize = 1 << 19;

/// How long accepted rows may wait for more before they are committed: a process crash loses at
/// most the rows of this window (MongooseIM's asynchronous archive writer flushes every 2 s by
/// default); a query commits them before it reads. A commit per second rather than five: each
/// rewrites every active owner's last run and checkpoints its pages again, so commits five
/// times as large cost about a third less per message.
pub const PENDING_WAIT: Duration = Duration::from_millis(1000);

/// Called once the rows handed over with [`Store::mam_append_later`] are committed (with how many)
/// or failed.
pub type OnWritten = Box<dyn FnOnce(Result<usize, &StoreError>) + Send>;

/// One row of an [`ArchiveBatch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Whose archive (bare JID).
    pub owner: &'a str,
    /// Archive id.
    pub id: i64,
    /// The other party's bare JID.
    pub with_bare: &'a str,
    /// The other party's resource (`""` when none).
    pub with_res: &'a str,
    /// Sent by the owner.
    pub outgoing: bool,
    /// Archive time (µs).
    pub ts: i64,
    /// The message.
    pub stanza: &'a [u8],
    /// When it is kept.
    pub keep: Keep,
}

/// Where one row's parts are in its batch's buffers.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: i64,
    ts: i64,
    /// Start of the owner in `text`; ends of owner, with_bare, with_res (each part starts where the
    /// previous ends).
    text: [u32; 4],
    /// Start and end of the stanza in `bytes`.
    bytes: [u32; 2],
    outgoing: bool,
    keep: Keep,
}

/// Messages on their way to the archive: every row's text in one buffer and every stanza in
/// another, so a shard fills a batch without allocating per row (and the store thread frees three
/// buffers, not four strings per row).
#[derive(Debug, Default)]
pub struct ArchiveBatch {
    text: String,
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

impl ArchiveBatch {
    /// Removes every row, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.bytes.clear();
        self.slots.clear();
    }

    /// Appends every row of `other`.
    fn extend(&mut self, other: &ArchiveBatch) {
        // Offsets as in `push` (the pending batch is committed long before 4 GiB).
        let shift = |n: u32, by: usize| n.saturating_add(u32::try_from(by).unwrap_or(u32::MAX));
        let (dt, db) = (self.text.len(), self.bytes.len());
        self.text.push_str(&other.text);
        self.bytes.extend_from_slice(&other.bytes);
        self.slots.extend(other.slots.iter().map(|s| Slot {
            text: s.text.map(|n| shift(n, dt)),
            bytes: s.bytes.map(|n| shift(n, db)),
            ..*s
        }));
    }

    /// Adds a row.
    pub fn push(&mut self, r: RowRef<'_>) {
        // Offsets are u32: a batch is flushed long before 4 GiB (PENDING_MAX rows of bounded
        // stanzas); saturate rather than wrap if it ever were not.
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let t0 = at(self.text.len());
        self.text.push_str(r.owner);
        let t1 = at(self.text.len());
        self.text.push_str(r.with_bare);
        let t2 = at(self.text.len());
        self.text.push_str(r.with_res);
        let t3 = at(self.text.len());
        let b0 = at(self.bytes.len());
        self.bytes.extend_from_slice(r.stanza);
        let b1 = at(self.bytes.len());
        self.slots.push(Slot {
            id: r.id,
            ts: r.ts,
            text: [t0, t1, t2, t3],
            bytes: [b0, b1],
            outgoing: r.outgoing,
            keep: r.keep,
        });
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the batch has no row.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The rows, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        (0..self.slots.len()).map(|i| self.row(i))
    }

    /// Row `i`, in push order (callers pass indexes below [`ArchiveBatch::len`]).
    fn row(&self, i: usize) -> RowRef<'_> {
        let s = &self.slots[i];
        let t = |i: usize| s.text[i] as usize;
        RowRef {
            owner: &self.text[t(0)..t(1)],
            id: s.id,
            with_bare: &self.text[t(1)..t(2)],
            with_res: &self.text[t(2)..t(3)],
            outgoing: s.outgoing,
            ts: s.ts,
            stanza: &self.bytes[s.bytes[0] as usize..s.bytes[1] as usize],
            keep: s.keep,
        }
    }
}

impl ArchivedMessage {
    fn as_row(&self) -> RowRef<'_> {
        RowRef {
            owner: &self.owner,
            id: self.id,
            with_bare: &self.with_bare,
            with_res: &self.with_res,
            outgoing: self.outgoing,
            ts: self.ts,
            stanza: &self.stanza,
            keep: self.keep,
        }
    }
}

/// Archive rows accepted by [`Store::mam_append_later`] and not yet committed.
#[derive(Default)]
pub(crate) struct Pending {
    /// Every accepted row, copied in (one batch kept for the life of the connection: buffers
    /// freed and allocated anew for each hand-over or commit made the allocator fetch and zero
    /// fresh pages, up to a tenth of a loaded server's time).
    rows: ArchiveBatch,
    /// When the first of them was accepted.
    since: Option<Instant>,
    /// Each hand-over's callback, with its row count.
    done: Vec<(usize, OnWritten)>,
    /// A commit's (owner, id, contact, row) keys, kept for the next commit.
    keys: Vec<(i64, i64, i64, u32)>,
    /// Every inbox this connection took from (taken from again before each read), with how many
    /// of the rows held came from it.
    inboxes: Vec<(std::sync::Arc<ArchiveInbox>, usize)>,
    /// `mam_jid` ids this connection has seen (ids never change: JIDs are never removed from the
    /// table; cleared when a write that may have added some rolls back). At most
    /// [`JID_CACHE_MAX`].
    jids: ahash::HashMap<Box<str>, i64>,
}

/// Rows an [`ArchiveInbox`] holds at most (two full commits, about 150 MiB of typical rows: the
/// store is seconds behind past it). Policy when full: the rows a shard hands over are dropped,
/// counted, and logged by the store thread at its next take.
const INBOX_MAX: usize = 2 * PENDING_MAX;

/// A take asked for and still not run after this long is asked for again (a take job the pool
/// refused would otherwise leave the rows waiting for good; a second take finds them gone).
const ASK_AGAIN: Duration = Duration::from_secs(1);

/// Emptied batches an inbox keeps for its shard.
const INBOX_SPARE: usize = 64;

/// Rows an inbox gathers before its shard asks for a take at once.
const TAKE_ROWS: usize = 8192;

/// How long rows may wait in an inbox before its shard asks for a take (each take wakes the store
/// thread: on a server whose store threads share the shard's core, a take per scheduler turn
/// cost about half a microsecond per message in context switches).
const TAKE_AFTER: Duration = Duration::from_millis(50);

/// One shard's archive rows on their way to the store: the shard moves each turn's rows in, the
/// store thread takes all of them at once. The shard asks for a take (a store job) once the inbox
/// holds [`TAKE_ROWS`] rows or its oldest has waited [`TAKE_AFTER`], and the first time at once;
/// while a take is queued it asks for no other. Reads do not wait for the shard to ask: the store
/// thread that took from an inbox once takes from it before every archive read or deletion
/// ([`Store::mam_flush`]), so a query sees every row archived before it was asked.
#[derive(Default)]
pub struct ArchiveInbox {
    state: std::sync::Mutex<InboxState>,
    /// Told how many of the rows taken from this inbox each commit wrote (or why it failed).
    written: Option<OnTaken>,
}

/// Called after each commit that wrote rows taken from an inbox (with how many), or failed.
pub type OnTaken = Box<dyn Fn(Result<usize, &StoreError>) + Send + Sync>;

impl std::fmt::Debug for ArchiveInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveInbox").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct InboxState {
    /// The batches put, as they were (no copy on the shard's side).
    full: Vec<ArchiveBatch>,
    /// Rows in `full`.
    rows: usize,
    /// Emptied batches, handed back to the shard at its next put (buffers that keep their
    /// capacity: no fresh pages for the kernel to zero).
    spare: Vec<ArchiveBatch>,
    /// When the take still to run was asked for.
    asked: Option<Instant>,
    /// When the oldest row held arrived.
    since: Option<Instant>,
    /// A store thread has taken from this inbox (and takes from it before every read).
    known: bool,
    /// Rows dropped because the inbox was full, not yet logged.
    dropped: usize,
}

impl ArchiveInbox {
    /// An inbox whose commits are reported to `written`.
    pub fn new(written: OnTaken) -> ArchiveInbox {
        ArchiveInbox {
            written: Some(written),
            ..ArchiveInbox::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves `rows` in (`rows` comes back empty; it may be empty already, to see whether a take
    /// is due). Returns whether the caller must queue a take ([`Store::mam_take`]) now, and
    /// whether the inbox still holds rows no take was asked for (then the caller puts again
    /// later, with or without rows).
    pub fn put(&self, rows: &mut ArchiveBatch) -> (bool, bool) {
        let mut st = self.lock();
        if !rows.is_empty() {
            if st.rows + rows.len() <= INBOX_MAX {
                if st.rows == 0 {
                    st.since = Some(Instant::now());
                }
                st.rows += rows.len();
                // The batch moves in whole; an emptied one (if any) goes back to the shard.
                let back = st.spare.pop().unwrap_or_default();
                let put = std::mem::replace(rows, back);
                st.full.push(put);
            } else {
                st.dropped += rows.len();
                rows.clear();
            }
        }
        if st.rows == 0 && st.dropped == 0 {
            return (false, false);
        }
        let ask = match st.asked {
            Some(t) => t.elapsed() >= ASK_AGAIN,
            None => {
                !st.known
                    || st.rows >= TAKE_ROWS
                    || st.since.is_some_and(|t| t.elapsed() >= TAKE_AFTER)
            }
        };
        if ask {
            st.asked = Some(Instant::now());
        }
        (ask, st.asked.is_none())
    }

    /// Copies every row held to `into` (the inbox keeps its emptied buffers); returns how many
    /// rows that was, and how many were dropped since the last take.
    fn take_into(&self, into: &mut ArchiveBatch) -> (usize, usize) {
        let mut st = self.lock();
        st.asked = None;
        st.since = None;
        st.known = true;
        let dropped = std::mem::take(&mut st.dropped);
        let n = std::mem::take(&mut st.rows);
        let InboxState { full, spare, .. } = &mut *st;
        for mut b in full.drain(..) {
            into.extend(&b);
            b.clear();
            if spare.len() < INBOX_SPARE {
                spare.push(b);
            }
        }
        (n, dropped)
    }
}

/// Multi-row insert on PostgreSQL: the batch as one array per column, one statement and one round
/// trip for all of it.
const PG_PUT_MANY: &str = "INSERT INTO mam_row (oid, id, wid, with_res, outgoing, ts, stanza)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[],
                          $7::bytea[])
     ON CONFLICT (oid, id) DO NOTHING";

/// Rows per multi-row INSERT on SQLite (at most 6 parameters each, far below SQLite's limit of
/// 32 766).
const SQLITE_CHUNK: usize = 64;

/// One multi-row SQLite insert, as texts for 0..=[`SQLITE_CHUNK`] rows.
struct PutMany {
    head: &'static str,
    cols: usize,
    texts: std::sync::OnceLock<Vec<&'static str>>,
}

/// `INSERT OR IGNORE ... VALUES (...), ...`. `OR IGNORE` rather than `ON CONFLICT DO NOTHING`: the
/// same for these rows (no column is ever NULL), and a statement that cannot abort needs no
/// statement journal.
static SQLITE_PUT_MSGS: PutMany = PutMany {
    head: "INSERT OR IGNORE INTO mam_msg (id, stanza) VALUES ",
    cols: 2,
    texts: std::sync::OnceLock::new(),
};

impl PutMany {
    /// The statement for `n` rows (at most [`SQLITE_CHUNK`]), built once per size and kept
    /// (statement caches key on the text).
    fn rows(&'static self, n: usize) -> Sql {
        use std::fmt::Write;
        let texts = self.texts.get_or_init(|| {
            (0..=SQLITE_CHUNK)
                .map(|n| {
                    let mut t = String::from(self.head);
                    for i in 0..n {
                        t.push_str(if i > 0 { ",(" } else { "(" });
                        for c in 1..=self.cols {
                            let sep = if c > 1 { "," } else { "" };
                            // Writing to a String cannot fail.
                            let _ = write!(t, "{sep}?{}", i * self.cols + c);
                        }
                        t.push(')');
                    }
                    // Built once for the life of the process (statement caches key on static
                    // texts).
                    &*Box::leak(t.into_boxed_str())
                })
                .collect()
        });
        sql(texts[n.min(SQLITE_CHUNK)])
    }
}

impl Store {
    /// Appends archived messages, all in one transaction.
    pub fn mam_append(&self, rows: &[ArchivedMessage]) -> Result<(), StoreError> {
        let mut batch = ArchiveBatch::default();
        for r in rows {
            batch.push(r.as_row());
        }
        self.mam_put(&batch)
    }

    /// Writes the rows of `batch` in one transaction.
    fn mam_put(&self, batch: &ArchiveBatch) -> Result<(), StoreError> {
        let mut keys = std::mem::take(&mut self.mam_pending.borrow_mut().keys);
        keys.clear();
        let r = self.transaction(None, || {
            let in_roster = sql(
                "SELECT count(*) FROM roster_items WHERE \"user\" = ?1 AND contact = ?2 AND in_roster = 1",
            );
            // Owners looked up in this transaction (a batch holds many rows of few owners).
            let mut owners: ahash::HashMap<&str, Owner> = ahash::HashMap::default();
            for (i, r) in (0u32..).zip(batch.iter()) {
                let kept = match r.keep {
                    Keep::Always => true,
                    Keep::IfAccount | Keep::IfInRoster => {
                        let owner = match owners.get(r.owner) {
                            Some(&o) => o,
                            None => {
                                let o = self.mam_owner(r.owner)?;
                                owners.insert(r.owner, o);
                                o
                            }
                        };
                        // A received copy from a JID the owner blocks is not kept either (XEP-0191
                        // §3.4: the archive would deliver it later).
                        let unblocked = !owner.blocks
                            || r.outgoing
                            || !self.blocks(r.owner, r.with_bare, r.with_res)?;
                        owner.account
                            && unblocked
                            // One by one: the `roster` default mode is rare.
                            && (r.keep == Keep::IfAccount
                                || self.int(in_roster, args![r.owner, r.with_bare])? != 0)
                    }
                };
                if !kept {
                    continue;
                }
                let (oid, wid) = (self.jid_id_add(r.owner)?, self.jid_id_add(r.with_bare)?);
                keys.push((oid, r.id, wid, i));
            }
            // In (owner, id) order, as small keys rather than the rows themselves (sorting the
            // rows moved ~100 bytes per swap: 4 % of a loaded server); the row's place breaks
            // ties, so of a message's two rows in one archive (sent to oneself) the first written
            // is kept.
            keys.sort_unstable();
            match self.kind() {
                Kind::Postgres => self.mam_put_pg(batch, &keys)?,
                Kind::Sqlite => self.mam_put_sqlite(batch, &keys)?,
            }
            Ok(End::Commit(()))
        });
        let mut p = self.mam_pending.borrow_mut();
        p.keys = keys;
        if r.is_err() {
            // Ids given inside the rolled-back transaction are gone.
            p.jids.clear();
        }
        r
    }

    /// Whether `owner` (a bare JID as routed: prepared) is an account, and has a block list: one
    /// query. Unlike the other per-account writes ([`Store::user_held`]) it takes no row lock on
    /// PostgreSQL: a commit asks this for every owner it writes, and locking each account's row
    /// would turn each of those reads into a write. So there, a removal that commits between
    /// this read and the archive's commit can leave that commit's rows behind (SQLite's write
    /// transactions run one at a time: no window).
    fn mam_owner(&self, owner: &str) -> Result<Owner, StoreError> {
        let Some((node, domain)) = owner.split_once('@') else {
            return Ok(Owner::default());
        };
        let q = sql("SELECT (SELECT count(*) FROM (SELECT 1 FROM blocklist \
             WHERE domain = ?1 AND username = ?2 LIMIT 1) AS b) FROM users \
             WHERE domain = ?1 AND username = ?2");
        Ok(match self.row(q, args![domain, node])? {
            Some(mut r) => Owner {
                account: true,
                blocks: r.int(0)? != 0,
            },
            None => Owner::default(),
        })
    }

    /// Whether `owner`'s block list holds an item matching `with_bare`/`with_res` (XEP-0191 items
    /// match as privacy list items do: the full JID, the bare JID, the domain and resource, or the
    /// domain).
    fn blocks(&self, owner: &str, with_bare: &str, with_res: &str) -> Result<bool, StoreError> {
        let Some((node, domain)) = owner.split_once('@') else {
            return Ok(false);
        };
        let with_domain = with_bare.rsplit_once('@').map_or(with_bare, |(_, d)| d);
        let (full, domain_res) = if with_res.is_empty() {
            (with_bare.to_owned(), with_domain.to_owned())
        } else {
            (
                format!("{with_bare}/{with_res}"),
                format!("{with_domain}/{with_res}"),
            )
        };
        let q = sql(
            "SELECT count(*) FROM blocklist WHERE domain = ?1 AND username = ?2 \
             AND jid IN (?3, ?4, ?5, ?6)",
        );
        let n = self.int(
            q,
            args![
                domain,
                node,
                with_bare,
                full.as_str(),
                with_domain,
                domain_res.as_str()
            ],
        )?;
        Ok(n != 0)
    }

    /// `jid`'s id from this connection's cache or `mam_jid`; `None` when it has none (so it is in
    /// no archive).
    fn jid_id(&self, jid: &str) -> Result<Option<i64>, StoreError> {
        if let Some(&id) = self.mam_pending.borrow().jids.get(jid) {
            return Ok(Some(id));
        }
        let Some(mut r) = self.row(JID_ID, args![jid])? else {
            return Ok(None);
        };
        let id = r.int(0)?;
        let mut p = self.mam_pending.borrow_mut();
        if p.jids.len() >= JID_CACHE_MAX {
            p.jids.clear();
        }
        p.jids.insert(jid.into(), id);
        Ok(Some(id))
    }

    /// `jid`'s id, given one first if it has none (inside a write transaction).
    fn jid_id_add(&self, jid: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.jid_id(jid)? {
            return Ok(id);
        }
        self.exec(JID_ADD, args![jid])?;
        self.jid_id(jid)?
            .ok_or(super::Corruption::Column("mam_jid.jid_id").into())
    }

    fn mam_put_sqlite(
        &self,
        batch: &ArchiveBatch,
        keys: &[(i64, i64, i64, u32)],
    ) -> Result<(), StoreError> {
        let row = |i: u32| batch.row(i as usize);
        // Each message's stanza once (a message's rows share their id; the first written keeps
        // it), in id order: appended at the right edge of `mam_msg`.
        let mut msgs: Vec<(i64, u32)> = keys.iter().map(|k| (k.1, k.3)).collect();
        msgs.sort_unstable();
        msgs.dedup_by_key(|m| m.0);
        let mut params: Vec<Arg<'_>> = Vec::with_capacity(SQLITE_CHUNK * 2);
        for chunk in msgs.chunks(SQLITE_CHUNK) {
            params.clear();
            params.extend(
                chunk
                    .iter()
                    .flat_map(|&(id, i)| [Arg::Int(id), Arg::Bytes(row(i).stanza)]),
            );
            self.exec(SQLITE_PUT_MSGS.rows(chunk.len()), &params)?;
        }
        // Each owner's entries into its whole list, then into one list per contact.
        let mut entries: Vec<Entry<'_>> = Vec::new();
        for owner in keys.chunk_by(|a, b| a.0 == b.0) {
            entries.clear();
            entries.extend(owner.iter().map(|&(_, id, wid, i)| {
                let r = row(i);
                Entry {
                    id,
                    wid,
                    ts: r.ts,
                    outgoing: r.outgoing,
                    res: r.with_res,
                }
            }));
            entries.dedup_by_key(|e| e.id);
            let oid = owner[0].0;
            let stored = self.runs_add(oid, ALL, &entries)?;
            // An id the owner's archive had already stays as it was, in its contact's list too.
            entries.retain(|e| !stored.contains(&e.id));
            entries.sort_by_key(|e| (e.wid, e.id));
            for with in entries.chunk_by(|a, b| a.wid == b.wid) {
                self.runs_add(oid, with[0].wid, with)?;
            }
        }
        Ok(())
    }

    fn mam_put_pg(
        &self,
        batch: &ArchiveBatch,
        keys: &[(i64, i64, i64, u32)],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        // The archive accepts losing its last moments on a crash (it already holds rows up to
        // PENDING_WAIT before committing): this commit need not wait for the WAL flush.
        self.db.batch("SET LOCAL synchronous_commit = off")?;
        let rows: Vec<RowRef<'_>> = keys.iter().map(|k| batch.row(k.3 as usize)).collect();
        let oid: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let id: Vec<i64> = keys.iter().map(|k| k.1).collect();
        let wid: Vec<i64> = keys.iter().map(|k| k.2).collect();
        let with_res: Vec<&str> = rows.iter().map(|r| r.with_res).collect();
        let outgoing: Vec<i64> = rows.iter().map(|r| i64::from(r.outgoing)).collect();
        let ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
        let stanza: Vec<&[u8]> = rows.iter().map(|r| r.stanza).collect();
        self.db.pg_exec(
            PG_PUT_MANY,
            &[&oid, &id, &wid, &with_res, &outgoing, &ts, &stanza],
        )?;
        Ok(())
    }

    /// Accepts archived messages for a write coalesced with later ones (copied: `batch` comes
    /// back emptied, its buffers kept, for its caller to reuse): they are committed in one
    /// transaction once `PENDING_MAX` rows are held or the oldest has waited [`PENDING_WAIT`] (the
    /// pool's worker asks [`Store::deferred`] and calls [`Store::run_deferred`]), and before any
    /// archive read or deletion on this connection, so a query queued after the rows sees them.
    /// `done` learns the outcome.
    pub fn mam_append_later(&self, mut batch: ArchiveBatch, done: OnWritten) -> ArchiveBatch {
        let full = {
            let mut p = self.mam_pending.borrow_mut();
            p.since.get_or_insert_with(Instant::now);
            p.rows.extend(&batch);
            p.done.push((batch.len(), done));
            p.rows.len() >= PENDING_MAX
        };
        batch.clear();
        if full {
            self.mam_flush();
        }
        batch
    }

    /// Takes every row `inbox` holds, as [`Store::mam_append_later`] (the store job a shard queues
    /// when [`ArchiveInbox::put`] asks for it); from then on, this connection also takes from it
    /// before every archive read.
    pub fn mam_take(&self, inbox: &std::sync::Arc<ArchiveInbox>) {
        let full = {
            let mut p = self.mam_pending.borrow_mut();
            let i = match p
                .inboxes
                .iter()
                .position(|(x, _)| std::sync::Arc::ptr_eq(x, inbox))
            {
                Some(i) => i,
                None => {
                    p.inboxes.push((inbox.clone(), 0));
                    p.inboxes.len() - 1
                }
            };
            take_from(&mut p, i);
            p.rows.len() >= PENDING_MAX
        };
        if full {
            self.mam_flush();
        }
    }

    /// Commits the rows held (those of [`Store::mam_append_later`] and every known inbox's), if
    /// any.
    pub fn mam_flush(&self) {
        if self.db.in_tx() {
            // Inside another write's transaction (an account's removal reading the archive): the
            // rows' own transaction cannot open there, and the caller's may roll back. They stay
            // held, for the next flush.
            return;
        }
        let (rows, done, taken) = {
            let mut p = self.mam_pending.borrow_mut();
            for i in 0..p.inboxes.len() {
                take_from(&mut p, i);
            }
            if p.done.is_empty() && p.inboxes.iter().all(|(_, n)| *n == 0) {
                return;
            }
            p.since = None;
            let taken: Vec<(std::sync::Arc<ArchiveInbox>, usize)> = p
                .inboxes
                .iter_mut()
                .filter(|(_, n)| *n > 0)
                .map(|(x, n)| (x.clone(), std::mem::take(n)))
                .collect();
            (
                std::mem::take(&mut p.rows),
                std::mem::take(&mut p.done),
                taken,
            )
        };
        let r = self.mam_put(&rows);
        if let Err(e) = &r {
            if e.is_transient() {
                // The database is down or full: the rows stay, and are written with the next
                // ones once it is back (their stanza ids were given out already). Tried again
                // after PENDING_WAIT, or at the next read.
                return self.mam_keep_for_retry(rows, done, taken, e);
            }
        }
        for (n, f) in done {
            f(r.as_ref().map(|()| n));
        }
        for (inbox, n) in taken {
            if let Some(f) = &inbox.written {
                f(r.as_ref().map(|()| n));
            }
        }
        let mut rows = rows;
        rows.clear();
        self.mam_pending.borrow_mut().rows = rows;
    }

    /// Puts back what a failed commit took, in front of whatever arrived since; past
    /// [`PENDING_MAX`] rows the oldest go (bounded memory through a long outage), logged.
    fn mam_keep_for_retry(
        &self,
        rows: ArchiveBatch,
        done: Vec<(usize, OnWritten)>,
        taken: Vec<(std::sync::Arc<ArchiveInbox>, usize)>,
        e: &StoreError,
    ) {
        let mut p = self.mam_pending.borrow_mut();
        let mut rows = rows;
        rows.extend(&p.rows);
        let excess = rows.len().saturating_sub(PENDING_MAX);
        if excess > 0 {
            let mut kept = ArchiveBatch::default();
            for r in rows.iter().skip(excess) {
                kept.push(r);
            }
            rows = kept;
        }
        p.rows = rows;
        let mut done = done;
        done.append(&mut p.done);
        p.done = done;
        for (inbox, n) in taken {
            if let Some((_, count)) = p
                .inboxes
                .iter_mut()
                .find(|(x, _)| std::sync::Arc::ptr_eq(x, &inbox))
            {
                *count += n;
            }
        }
        p.since = Some(Instant::now());
        match excess {
            0 => {
                tracing::warn!(error = %e, rows = p.rows.len(), "archive write failed; kept to try again")
            }
            n => {
                tracing::error!(error = %e, rows = p.rows.len(), dropped = n, "archive write failed; the oldest rows past the bound were dropped")
            }
        }
    }

    /// How long work deferred on this connection (coalesced archive writes) may still wait; `None`
    /// when there is none. The pool's worker runs [`Store::run_deferred`] when it is due.
    pub fn deferred(&self) -> Option<Duration> {
        let since = self.mam_pending.borrow().since?;
        Some(PENDING_WAIT.saturating_sub(since.elapsed()))
    }

    /// Runs the deferred work now.
    pub fn run_deferred(&self) {
        self.mam_flush();
    }

    /// Archive rows this connection holds that are not committed (a commit failed and waits to be
    /// tried again, or the batch window is open).
    pub fn mam_unwritten(&self) -> usize {
        self.mam_pending.borrow().rows.len()
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
        self.mam_flush();
        let Some(oid) = self.jid_id(owner)? else {
            return Ok(Vec::new());
        };
        if let Some(ids) = &filter.ids {
            let mut out = Vec::new();
            for &id in ids {
                let m = match self.kind() {
                    Kind::Sqlite => self.runs_by_id(owner, oid, id)?,
                    Kind::Postgres => self
                        .row(BY_ID, args![oid, id])?
                        .map(|r| read_row(owner, r))
                        .transpose()?,
                };
                if let Some(m) = m.filter(|m| filter.accepts(m)) {
                    out.push(m);
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
        let Some(with) = self.with_id(filter)? else {
            return Ok(Vec::new());
        };
        if self.kind() == Kind::Sqlite {
            return self.runs_query(owner, oid, with, filter, limit, newest);
        }
        let (after, before, start, end) = filter.bounds();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match (with, newest) {
            (None, false) => self.rows(PAGE_ASC, args![oid, after, before, start, end, limit])?,
            (None, true) => self.rows(PAGE_DESC, args![oid, after, before, start, end, limit])?,
            (Some(w), false) => self.rows(
                PAGE_WITH_ASC,
                args![oid, after, before, start, end, limit, w, filter.res()],
            )?,
            (Some(w), true) => self.rows(
                PAGE_WITH_DESC,
                args![oid, after, before, start, end, limit, w, filter.res()],
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

    /// The filter's contact: `Some(None)` when it names none, `Some(Some(id))` when it names one
    /// with an id, `None` when it names one without (in no archive, so nothing matches).
    fn with_id(&self, filter: &MamFilter) -> Result<Option<Option<i64>>, StoreError> {
        Ok(match &filter.with_bare {
            None => Some(None),
            Some(w) => self.jid_id(w)?.map(Some),
        })
    }

    /// How many messages of `owner`'s archive `filter` selects.
    pub fn mam_count(&self, owner: &str, filter: &MamFilter) -> Result<u64, StoreError> {
        self.mam_flush();
        if filter.ids.is_some() {
            return Ok(self.mam_query(owner, filter, usize::MAX, false)?.len() as u64);
        }
        let (Some(oid), Some(with)) = (self.jid_id(owner)?, self.with_id(filter)?) else {
            return Ok(0);
        };
        if self.kind() == Kind::Sqlite {
            return self.runs_count((oid, with.unwrap_or(ALL)), filter, u64::MAX);
        }
        let (after, before, start, end) = filter.bounds();
        let n = match with {
            None => self.int(COUNT, args![oid, after, before, start, end])?,
            Some(w) => self.int(
                COUNT_WITH,
                args![oid, after, before, start, end, w, filter.res()],
            )?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The largest archive id stored (0 when the archive is empty).
    pub fn mam_max_id(&self) -> Result<i64, StoreError> {
        self.mam_flush();
        self.int(
            sql2(
                "SELECT coalesce(max(id), 0) FROM mam_msg",
                "SELECT coalesce(max(id), 0) FROM mam_row",
            ),
            &[],
        )
    }

    /// True when `owner`'s archive has message `id`.
    pub fn mam_has(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        self.mam_flush();
        let Some(oid) = self.jid_id(owner)? else {
            return Ok(false);
        };
        match self.kind() {
            Kind::Sqlite => Ok(self.runs_by_id(owner, oid, id)?.is_some()),
            Kind::Postgres => Ok(self.row(BY_ID, args![oid, id])?.is_some()),
        }
    }

    /// Like [`Store::mam_count`], but counts no further than `cap`: a full count scans every
    /// selected row (a 1 000 000-message archive: ~100 ms), so queries only count up to a bound.
    pub fn mam_count_upto(
        &self,
        owner: &str,
        filter: &MamFilter,
        cap: u64,
    ) -> Result<u64, StoreError> {
        self.mam_flush();
        if filter.ids.is_some() {
            return Ok(self.mam_count(owner, filter)?.min(cap));
        }
        let (Some(oid), Some(with)) = (self.jid_id(owner)?, self.with_id(filter)?) else {
            return Ok(0);
        };
        if self.kind() == Kind::Sqlite {
            return self.runs_count((oid, with.unwrap_or(ALL)), filter, cap);
        }
        let (after, before, start, end) = filter.bounds();
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let n = match with {
            None => self.int(COUNT_UPTO, args![oid, after, before, start, end, cap])?,
            Some(w) => self.int(
                COUNT_WITH_UPTO,
                args![oid, after, before, start, end, cap, w, filter.res()],
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
        self.mam_flush();
        // The owner keeps its `mam_jid` id (ids are never reused or removed).
        let n = match (self.jid_id(owner)?, self.kind()) {
            (Some(oid), Kind::Sqlite) => self.runs_delete_owner(oid)?,
            (Some(oid), Kind::Postgres) => {
                self.exec(on_rows!("DELETE FROM ", " WHERE oid = ?1"), args![oid])?
            }
            (None, _) => 0,
        };
        self.exec(sql("DELETE FROM mam_prefs WHERE owner = ?1"), args![owner])?;
        Ok(n)
    }

    /// Deletes `owner`'s archived messages with an id below `before` (an id taken when the owner
    /// went, so that later rows, archived for a new owner of the name, stay); returns how many.
    pub fn mam_delete_owner_before(&self, owner: &str, before: i64) -> Result<u64, StoreError> {
        self.mam_flush();
        match (self.jid_id(owner)?, self.kind()) {
            (Some(oid), Kind::Sqlite) => self.runs_delete_owner_before(oid, before),
            (Some(oid), Kind::Postgres) => self.exec(
                on_rows!("DELETE FROM ", " WHERE oid = ?1 AND id < ?2"),
                args![oid, before],
            ),
            (None, _) => Ok(0),
        }
    }

    /// Deletes `owner`'s received copy of message `id` (its server refused the message after
    /// archiving it); returns whether there was one. A copy the owner sent (a message to oneself)
    /// stays.
    pub fn mam_delete_received(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        self.mam_flush();
        match (self.jid_id(owner)?, self.kind()) {
            (Some(oid), Kind::Sqlite) => self.runs_delete_received(oid, id),
            (Some(oid), Kind::Postgres) => Ok(self.exec(
                on_rows!(
                    "DELETE FROM ",
                    " WHERE oid = ?1 AND id = ?2 AND outgoing = 0"
                ),
                args![oid, id],
            )? > 0),
            (None, _) => Ok(false),
        }
    }

    /// Deletes every archived message older than `before` (µs); returns how many.
    pub fn mam_purge_before(&self, before: i64) -> Result<u64, StoreError> {
        self.mam_flush();
        match self.kind() {
            Kind::Sqlite => self.runs_purge_before(before),
            Kind::Postgres => self
                .unlimited(|| self.exec(on_rows!("DELETE FROM ", " WHERE ts < ?1"), args![before])),
        }
    }

    /// Keeps only the newest `keep` messages of each owner whose archive is larger; returns how many
    /// were deleted.
    pub fn mam_trim(&self, keep: u64) -> Result<u64, StoreError> {
        self.mam_flush();
        if self.kind() == Kind::Sqlite {
            return self.runs_trim(keep);
        }
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over = on_rows!("SELECT oid FROM ", " GROUP BY oid HAVING count(*) > ?1");
        let owners = self
            .rows(over, args![keep])?
            .into_iter()
            .map(|mut r| r.int(0))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff_q = on_rows!(
            "SELECT id FROM ",
            " WHERE oid = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2"
        );
        let delete = on_rows!("DELETE FROM ", " WHERE oid = ?1 AND id < ?2");
        let mut deleted = 0;
        for oid in owners {
            if let Some(mut r) = self.row(cutoff_q, args![oid, keep - 1])? {
                let cutoff = r.int(0)?;
                deleted += self.exec(delete, args![oid, cutoff])?;
            }
        }
        Ok(deleted)
    }
}

/// Moves the rows of `p`'s inbox `i` into its pending rows.
fn take_from(p: &mut Pending, i: usize) {
    let Pending {
        rows,
        inboxes,
        since,
        ..
    } = p;
    let (inbox, count) = &mut inboxes[i];
    let (n, dropped) = inbox.take_into(rows);
    if dropped > 0 {
        tracing::error!(
            rows = dropped,
            "archive rows dropped: the store is far behind (a shard's inbox was full)"
        );
    }
    if n > 0 {
        since.get_or_insert_with(Instant::now);
        *count += n;
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jid::BareJid;
    use crate::store::testing::test_dbs;

    pub(crate) fn row(owner: &str, id: i64, with: &str, ts: i64) -> ArchivedMessage {
        ArchivedMessage {
            owner: owner.into(),
            id,
            with_bare: with.into(),
            with_res: "r".into(),
            outgoing: id % 2 == 0,
            ts,
            stanza: format!("<message id='{id}'/>").into_bytes(),
            keep: Keep::Always,
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
    fn a_received_copy_from_a_blocked_jid_is_not_kept() {
        use crate::store::BlockChange;
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let s = db.open();
            let a = BareJid::parse("a@x").unwrap();
            s.add_user(&a, &crate::auth::ScramSecrets::derive("pw", 16))
                .unwrap_or_else(|e| panic!("{e}"));
            let items = ["eve@x", "spam.example", "x/evil", "carol@x/bad"];
            let block = BlockChange::Block(items.iter().map(|j| j.to_string()).collect());
            s.blocklist_update(&a, &block, 100)
                .unwrap_or_else(|e| panic!("{e:?}"));
            // (id, from bare, resource, outgoing): received rows from blocked JIDs go, the rest
            // (and a copy the owner sent) stay.
            let cases = [
                (1, "bob@x", "r", false, true),
                (2, "eve@x", "r", false, false),
                (3, "m@spam.example", "r", false, false),
                (4, "dave@x", "evil", false, false),
                (5, "carol@x", "bad", false, false),
                (6, "carol@x", "good", false, true),
                (7, "eve@x", "r", true, true),
                (8, "b@x", "", false, true),
            ];
            let rows: Vec<_> = cases
                .iter()
                .map(|&(id, with, res, outgoing, _)| ArchivedMessage {
                    with_res: res.into(),
                    outgoing,
                    keep: Keep::IfAccount,
                    ..row("a@x", id, with, id * 10)
                })
                .collect();
            s.mam_append(&rows).unwrap_or_else(|e| panic!("{e}"));
            let kept: Vec<i64> = s
                .mam_query("a@x", &MamFilter::default(), 20, false)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|r| r.id)
                .collect();
            let want: Vec<i64> = cases.iter().filter(|c| c.4).map(|c| c.0).collect();
            assert_eq!(kept, want, "{}", db.name);
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

    /// Messages stored: each once on SQLite, in each row on PostgreSQL.
    pub(crate) const STORED_MESSAGES: Sql = sql2(
        "SELECT count(*) FROM mam_msg",
        "SELECT count(DISTINCT id) FROM mam_row",
    );

    /// A message in two archives is stored once (on SQLite); trimming, purging or deleting one owner's rows
    /// keeps it for the other, and it goes with the last row that refers to it.
    #[test]
    fn a_message_is_stored_once_and_goes_with_its_last_row() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let msgs = || s.int(STORED_MESSAGES, &[]).ok();
            // Messages 1..=6 between a and b (in both archives), 7 and 8 from c to a only.
            let mut rows = Vec::new();
            for i in 1..=6 {
                rows.push(row("a@x", i, "b@x", i));
                rows.push(row("b@x", i, "a@x", i));
            }
            rows.extend([row("a@x", 7, "c@x", 7), row("a@x", 8, "c@x", 8)]);
            s.mam_append(&rows).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(msgs(), Some(8), "{n}");
            // a keeps 4 (5..=8), b keeps 4 (3..=6): 1 and 2 are in no archive any more, 3 and 4
            // stay for b.
            assert_eq!(s.mam_trim(4).ok(), Some(6), "{n}");
            assert_eq!(msgs(), Some(6), "{n}");
            // Older than 4: b's 3 (a's went already).
            assert_eq!(s.mam_purge_before(4).ok(), Some(1), "{n}");
            assert_eq!(msgs(), Some(5), "{n}");
            // a's archive goes (5..=8): 5 and 6 stay for b.
            assert_eq!(s.mam_delete_owner("a@x").ok(), Some(4), "{n}");
            assert_eq!(msgs(), Some(3), "{n}");
            let b = s
                .mam_query("b@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let got: Vec<_> = b.iter().map(|m| (m.id, m.stanza.clone())).collect();
            let want: Vec<_> = (4..=6)
                .map(|i| (i, format!("<message id='{i}'/>").into_bytes()))
                .collect();
            assert_eq!(got, want, "{n}");
            assert_eq!(s.mam_delete_owner("b@x").ok(), Some(3), "{n}");
            assert_eq!(msgs(), Some(0), "{n}");
            // A room gone at id 13 and created again: the rows after the cut stay.
            let room: Vec<_> = (10..=15).map(|i| row("r@x", i, "r@x", i)).collect();
            s.mam_append(&room).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(s.mam_delete_owner_before("r@x", 13).ok(), Some(3), "{n}");
            let left = s
                .mam_query("r@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            let ids: Vec<i64> = left.iter().map(|m| m.id).collect();
            assert_eq!(ids, [13, 14, 15], "{n}");
        }
    }

    #[test]
    fn a_refused_messages_received_copy_goes_alone() {
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let msgs = || s.int(STORED_MESSAGES, &[]).ok();
            let dir = |mut r: ArchivedMessage, outgoing| {
                r.outgoing = outgoing;
                r
            };
            // 1 from b to a (in both archives), 2 from a to b, 3 from c to a.
            let rows = [
                dir(row("a@x", 1, "b@x", 1), false),
                dir(row("b@x", 1, "a@x", 1), true),
                dir(row("a@x", 2, "b@x", 2), true),
                dir(row("a@x", 3, "c@x", 3), false),
            ];
            s.mam_append(&rows).unwrap_or_else(|e| panic!("{n}: {e}"));
            let ids = |owner: &str, with: Option<&str>| {
                let f = MamFilter {
                    with_bare: with.map(str::to_owned),
                    ..MamFilter::default()
                };
                let got = s.mam_query(owner, &f, 10, false);
                let got = got.unwrap_or_else(|e| panic!("{n}: {e}"));
                got.iter().map(|m| m.id).collect::<Vec<_>>()
            };
            // Sent copies, unknown ids and other archives stay.
            for (owner, id) in [("a@x", 2), ("a@x", 9), ("c@x", 3)] {
                assert_eq!(s.mam_delete_received(owner, id).ok(), Some(false), "{n}");
            }
            assert_eq!(s.mam_delete_received("a@x", 1).ok(), Some(true), "{n}");
            assert_eq!(ids("a@x", None), [2, 3], "{n}");
            assert_eq!(ids("a@x", Some("b@x")), [2], "{n}");
            // b's sent copy keeps the message.
            assert_eq!(ids("b@x", None), [1], "{n}");
            assert_eq!(msgs(), Some(3), "{n}");
            assert_eq!(s.mam_delete_received("a@x", 3).ok(), Some(true), "{n}");
            assert_eq!(ids("a@x", Some("c@x")), Vec::<i64>::new(), "{n}");
            assert_eq!(msgs(), Some(2), "{n}");
        }
    }

    #[test]
    fn deferred_rows_are_seen_by_the_next_read_and_committed_once() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let s = db.open();
            let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut batch = ArchiveBatch::default();
            for i in 1..=3 {
                batch.push(row("a@x", i, "b@x", i * 10).as_row());
            }
            let w = written.clone();
            let back = s.mam_append_later(
                batch,
                Box::new(move |r| {
                    w.fetch_add(r.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
                }),
            );
            assert!(back.is_empty());
            assert!(s.deferred().is_some());
            assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 0);
            // A read commits what is held first.
            let got = s
                .mam_query("a@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3]);
            assert_eq!(got[1].stanza, b"<message id='2'/>");
            assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 3);
            assert!(s.deferred().is_none());
            s.run_deferred();
            assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 3);
        }
    }

    /// An account's removal, a transaction of its own that deletes the account's archive, lost
    /// every other owner's rows held for the next commit ("cannot start a transaction within a
    /// transaction"): the flush inside it failed and dropped them.
    #[test]
    fn removing_an_account_keeps_everyone_elses_held_rows() {
        for db in test_dbs() {
            let s = db.open();
            let gone = crate::jid::BareJid::parse("gone@x").unwrap_or_else(|e| panic!("{e}"));
            s.add_user(&gone, &crate::auth::ScramSecrets::derive("pw", 16))
                .unwrap_or_else(|e| panic!("{e}"));
            let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut batch = ArchiveBatch::default();
            for i in 1..=3 {
                batch.push(row("a@x", i, "b@x", i * 10).as_row());
            }
            batch.push(row("gone@x", 4, "b@x", 40).as_row());
            let w = written.clone();
            s.mam_append_later(
                batch,
                Box::new(move |r| {
                    w.fetch_add(r.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
                }),
            );
            s.remove_user(&gone)
                .unwrap_or_else(|e| panic!("{}: {e}", db.name));
            let got = s
                .mam_query("a@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                got.iter().map(|r| r.id).collect::<Vec<_>>(),
                [1, 2, 3],
                "{}",
                db.name
            );
            let theirs = s
                .mam_query("gone@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                theirs.is_empty(),
                "{}: the removed account's rows stay",
                db.name
            );
            assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 4);
        }
    }

    /// Rows whose commit met a lost connection (a restarting or unreachable server) are kept and
    /// committed by the next flush, which reconnects: their stanza ids were given out already.
    #[test]
    fn rows_a_lost_connection_could_not_commit_are_committed_later() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        for db in test_dbs() {
            let s = db.open();
            if s.kind() != Kind::Postgres {
                continue;
            }
            let written = std::sync::Arc::new(AtomicUsize::new(0));
            let mut batch = ArchiveBatch::default();
            for i in 1..=3 {
                batch.push(row("a@x", i, "b@x", i * 10).as_row());
            }
            let w = written.clone();
            s.mam_append_later(
                batch,
                Box::new(move |r| {
                    w.fetch_add(r.unwrap_or(0), SeqCst);
                }),
            );
            // The server drops this connection (a restart, a failover).
            db.drop_connection(&s);
            s.run_deferred();
            assert_eq!(
                written.load(SeqCst),
                0,
                "nothing committed on a lost connection"
            );
            assert!(s.deferred().is_some(), "the rows wait to be tried again");
            // Tried again (by the pool's timer, or here by a read): committed once.
            let got = s
                .mam_query("a@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3]);
            assert_eq!(written.load(SeqCst), 3);
        }
    }

    /// A shard asks for a take at once the first time, then only when enough rows wait (or long
    /// enough), and never while one is queued; a read takes every known inbox's rows first, and
    /// each commit is reported to the inbox its rows came from.
    #[test]
    fn an_inbox_asks_for_takes_sparingly_and_reads_see_every_row() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        for db in test_dbs() {
            let n = db.name;
            let s = db.open();
            let written = std::sync::Arc::new(AtomicUsize::new(0));
            let w = written.clone();
            let inbox = std::sync::Arc::new(ArchiveInbox::new(Box::new(move |r| {
                w.fetch_add(r.unwrap_or(0), SeqCst);
            })));
            let mut batch = ArchiveBatch::default();
            batch.push(row("a@x", 1, "b@x", 10).as_row());
            assert_eq!(
                inbox.put(&mut batch),
                (true, false),
                "{n}: the first put asks"
            );
            assert!(batch.is_empty(), "{n}");
            batch.push(row("a@x", 2, "b@x", 20).as_row());
            batch.push(row("b@x", 2, "a@x", 20).as_row());
            assert_eq!(
                inbox.put(&mut batch),
                (false, false),
                "{n}: a take is queued already"
            );
            s.mam_take(&inbox);
            assert_eq!(written.load(SeqCst), 0, "{n}: held for the next commit");
            // Known now: a few rows wait for more (and the caller is told to look again).
            batch.push(row("a@x", 3, "b@x", 30).as_row());
            assert_eq!(inbox.put(&mut batch), (false, true), "{n}");
            // A read sees them all: it takes from the inbox, then commits.
            let got = s
                .mam_query("a@x", &MamFilter::default(), 10, false)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(
                got.iter().map(|r| r.id).collect::<Vec<_>>(),
                vec![1, 2, 3],
                "{n}"
            );
            assert_eq!(written.load(SeqCst), 4, "{n}");
            assert_eq!(inbox.put(&mut batch), (false, false), "{n}: nothing left");
            // Enough rows ask at once.
            for i in 0..TAKE_ROWS as i64 {
                batch.push(row("c@x", 100 + i, "d@x", 40).as_row());
            }
            assert_eq!(inbox.put(&mut batch), (true, false), "{n}");
            // So does a row that waited long enough (asked again after the take).
            s.mam_take(&inbox);
            batch.push(row("c@x", 1, "d@x", 50).as_row());
            assert_eq!(inbox.put(&mut batch), (false, true), "{n}");
            std::thread::sleep(TAKE_AFTER);
            assert_eq!(inbox.put(&mut batch), (true, false), "{n}");
            s.mam_take(&inbox);
            s.mam_flush();
            assert_eq!(written.load(SeqCst), 4 + TAKE_ROWS + 1, "{n}");
        }
    }
}
