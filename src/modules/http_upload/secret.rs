//! The slot secret: 32 random bytes in `DIR/secret` (mode 0600), generated at first start and read
//! afterwards, so tokens stay valid across restarts and every shard verifies the others' slots.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::slot::SlotKey;

/// The secret's file name in the upload directory.
const FILE: &str = "secret";

/// Why the secret is not available.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Creating the directory or reading/writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The OS gave no randomness.
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
    /// The file is not 32 bytes.
    #[error("{FILE} is not 32 bytes; remove it to generate a new one")]
    Corrupt,
}

/// Reads `dir/secret`, creating the directory and the file first if needed. Shards start at the
/// same time: the file is written aside and hard-linked into place, which fails for all but one,
/// so every shard reads the same complete secret. Blocking file I/O, once at start-up.
pub fn load_or_create(dir: &Path) -> Result<SlotKey, SecretError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    if !path.exists() {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(SecretError::Random)?;
        let tmp = dir.join(format!(
            "{FILE}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&raw)?;
        f.sync_all()?;
        drop(f);
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let raw = std::fs::read(&path)?;
    if std::fs::metadata(&path)?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "http_upload: the slot secret is readable by others");
    }
    let raw: [u8; 32] = raw.try_into().map_err(|_| SecretError::Corrupt)?;
    Ok(SlotKey::new(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let up = dir.path().join("up");
        let a = load_or_create(&up).unwrap_or_else(|e| panic!("{e}"));
        let b = load_or_create(&up).unwrap_or_else(|e| panic!("{e}"));
        let slot = super::super::slot::Slot::new("x".into(), 1, None, 1, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.token(&slot), b.token(&slot));
        let meta = std::fs::metadata(up.join(FILE)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(&up).map(|d| d.count()).unwrap_or(0),
            1,
            "no temp file left"
        );
        std::fs::write(up.join(FILE), b"short").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(load_or_create(&up), Err(SecretError::Corrupt)));
    }
}
