//! The data directory and the SQLite files hold password secrets (SCRAM), messages and the server's
//! own secrets: only petrel's user may read them. New ones are created so (directories 0700, files
//! 0600), whatever the process's umask; database files readable by others are tightened.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents, readable by this user only (an existing one is left as
/// it is: the operator chose its mode).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Before SQLite opens `db`: a missing file is created 0600 (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and an existing one, or its `-wal`/`-shm`, that others may
/// read is made 0600.
pub(super) fn private_database(db: &Path) -> io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut names = vec![db.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        names.push(p.into());
    }
    for path in names {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "store file readable by other users: made 0600 (it holds password secrets)"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn new_files_and_directories_are_private_and_old_files_tightened() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("a/data");
        create_private_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("petrel.sqlite3");
        private_database(&db).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&db), 0o600);
        // A store written by an older petrel under umask 022.
        let wal = dir.join("petrel.sqlite3-wal");
        std::fs::write(&wal, b"").unwrap_or_else(|e| panic!("{e}"));
        for p in [&db, &wal] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        private_database(&db).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
