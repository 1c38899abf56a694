//! One server per data directory: `serve` holds an exclusive `flock(2)` on `DATA_DIR/petrel.lock`
//! for as long as it runs (the kernel drops it when the process ends, however it ends). A second
//! server on the same directory would share its store without sharing its sessions (messages to
//! users bound on the other one go to offline storage); CLI commands that must go through a
//! running server (`user del`) look at the lock too.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "petrel.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataLockError {
    /// Another process holds it.
    #[error("{dir}: another petrel server (pid {pid}) is running on this data directory")]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it ("?" if unreadable).
        pid: String,
    },
    /// The lock file could not be created or locked.
    #[error("{dir}: cannot lock {LOCK_FILE}: {source}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// The open lock file: the lock lives as long as this descriptor.
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `dir` (created if missing) and writes this process's pid into it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataLockError> {
        let io = |source| DataLockError::Io {
            dir: dir.to_owned(),
            source,
        };
        crate::store::create_private_dir(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        if !try_lock(&file).map_err(io)? {
            return Err(DataLockError::Held {
                dir: dir.to_owned(),
                pid: holder(&mut file),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }

    /// The pid of the server holding `dir`'s lock, if one runs.
    pub fn holder_of(dir: &Path) -> Option<String> {
        let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
        // Locked by us for an instant when free; the file's lock is released with `file`.
        match try_lock(&file) {
            Ok(false) => Some(holder(&mut file)),
            _ => None,
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open file holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock(2) on a descriptor `file` owns and keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn holder(file: &mut File) -> String {
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    match pid.trim() {
        "" => "?".to_owned(),
        p => p.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DataDirLock::holder_of(dir.path()), None);
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let me = std::process::id().to_string();
        assert_eq!(DataDirLock::holder_of(dir.path()), Some(me.clone()));
        match DataDirLock::acquire(dir.path()) {
            Err(DataLockError::Held { pid, .. }) => assert_eq!(pid, me),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert_eq!(DataDirLock::holder_of(dir.path()), None);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
