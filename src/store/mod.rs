//! Storage: the embedded SQLite store (default) or PostgreSQL, and the off-shard pool that runs it.
//!
//! Every feature file writes its statements once through the small layer in `db`/`value`; the
//! schema of both backends is versioned in `schema`. A new feature: its tables as a new migration
//! (`schema/vN_sqlite.sql` and `schema/vN_pg.sql`, listed in `schema::MIGRATIONS`); its statements
//! as `sql("... ?1 ...")` (or `sql2(sqlite, pg)` where the dialects differ) run with
//! `self.exec`/`self.rows`/`self.row`/`self.int` and `args![...]`; read-modify-write under
//! `self.transaction(Some(lock), ...)`; its tests looping over `testing::test_dbs()`.
//!
//! Secrets are kept only as `ScramSecrets::to_storage()` text, never as passwords.

mod blocking;
#[cfg(test)]
mod concurrency_tests;
mod db;
mod domains;
mod files;
mod last;
mod login;
mod mam;
mod mam_runs;
mod muc;
mod offline;
pub(crate) mod oneshot;
mod pool;
mod private;
mod pubsub;
mod push;
mod register;
mod roster;
mod schema;
mod secret;
#[cfg(test)]
pub(crate) mod testing;
mod upload;
mod users;
pub(crate) mod value;
mod vcard;

pub use blocking::{BlockChange, BlockUpdateError, StoredBlockList};
pub use files::create_private_dir;
pub use last::{boot_id, unix_now, LastActivity};
pub use login::{Attempt, LoginGuard};
pub use mam::{
    ArchiveBatch, ArchiveInbox, ArchivedMessage, Keep, MamFilter, OnTaken, OnWritten, RowRef,
    StoredMamPrefs,
};
pub use offline::{OfflineMessage, OfflinePush};
pub use pool::StorePool;
pub use private::PrivateSet;
pub use pubsub::{StoredItem, StoredMeta, StoredNode};
pub use push::{PushEnable, StoredPush};
pub use register::Registered;
pub use roster::{RosterChanged, RosterWrite};
pub use upload::UploadGrant;
pub use users::{Backend, Store, DB_FILE};
pub use vcard::VcardGet;

use crate::auth::AuthError;
use crate::jid::JidError;

/// What in the database is not as petrel wrote it.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// Stored SCRAM text that does not parse.
    #[error("stored secrets: {0}")]
    Secrets(#[from] AuthError),
    /// A stored user that is not a valid JID.
    #[error("stored user: {0}")]
    Jid(#[from] JidError),
    /// A column that does not hold what petrel wrote there.
    #[error("a column does not hold {0}")]
    Column(&'static str),
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or the connection URL is invalid).
    #[error("postgres: {}", with_cause(.0))]
    Postgres(#[from] postgres::Error),
    /// The schema is newer than this build's: a newer petrel migrated the store (an upgrade
    /// rolled back).
    #[error(
        "store written by a newer petrel (schema version {0}; this build knows up to {latest}): \
         run that petrel, or restore the backup taken before the upgrade",
        latest = schema::LATEST
    )]
    NewerSchema(i64),
    /// `backend = "postgres"` without a URL (validation refuses such a configuration file).
    #[error("store.url is required for the postgres backend")]
    NoUrl,
    /// Creating the data directory failed.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// `add_user` for a user that exists.
    #[error("user exists")]
    UserExists,
    /// The user does not exist.
    #[error("no such user")]
    NoSuchUser,
    /// A user JID without a localpart (users are `node@domain`).
    #[error("a user JID needs a localpart")]
    NoLocalpart,
    /// Stored data is unreadable.
    #[error("corrupt store: {0}")]
    Corrupt(#[from] Corruption),
    /// The pool queue is full; callers answer temporary-auth-failure or resource-constraint.
    #[error("storage queue full")]
    Busy,
    /// The pool is shut down (or dropped the job).
    #[error("storage pool closed")]
    Closed,
    /// The job panicked on the pool thread.
    #[error("storage job panicked")]
    JobPanicked,
    /// A statement written for one backend was run on the other (a bug).
    #[error("statement for the other store backend")]
    WrongBackend,
}

impl StoreError {
    /// Whether trying again later may succeed: the database is unreachable, restarting, busy or
    /// out of space, as opposed to a statement it refuses (which would fail again).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Postgres(e) => match e.as_db_error() {
                // No answer from the server at all: the connection failed or was lost.
                None => true,
                Some(db) => {
                    let code = db.code().code();
                    // 08: connection exception, 53: insufficient resources, 57P01-03: the
                    // server is shutting down or starting.
                    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
                }
            },
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
            ),
            StoreError::Io(_) | StoreError::Busy => true,
            _ => false,
        }
    }
}

/// `e` and its cause: postgres says only "db error" or "error connecting to server" itself, and
/// the server's message ("database \"x\" does not exist") or the socket error is the cause.
fn with_cause(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
