//! Removal of uploaded files older than `file_expiry_days`, hourly on the store pool (blocking
//! directory walks stay off the shards), and of quota grants past their window.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::options::UploadOptions;
use super::slot;

/// How often the upload directory is swept.
const EVERY: Duration = Duration::from_secs(3600);

/// The sweep as periodic work (`None` when files are kept forever).
pub fn task(opts: &UploadOptions) -> Option<crate::modules::Periodic> {
    if opts.file_expiry.is_zero() {
        return None;
    }
    let (dir, max_age) = (opts.dir.clone(), opts.file_expiry);
    Some(crate::modules::Periodic {
        name: "http_upload expiry",
        every: EVERY,
        run: std::sync::Arc::new(move |_store| {
            let n = sweep(&dir, max_age, SystemTime::now());
            if n > 0 {
                tracing::info!(removed = n, "http_upload: expired files removed");
            }
        }),
    })
}

/// The hourly removal of quota grants past the window (`None` without a quota): a request prunes
/// its own user's, this takes those of users who asked nothing since.
pub fn grants_task(opts: &UploadOptions) -> Option<crate::modules::Periodic> {
    if opts.daily_quota == 0 {
        return None;
    }
    Some(crate::modules::Periodic {
        name: "http_upload quota",
        every: EVERY,
        run: std::sync::Arc::new(move |store| {
            let before = crate::store::unix_now().saturating_sub(super::options::QUOTA_WINDOW_SECS);
            if let Err(e) = store.upload_prune(before) {
                tracing::error!(error = %e, "http_upload: pruning quota grants failed");
            }
        }),
    })
}

/// Removes every slot directory under `dir` last modified more than `max_age` before `now`
/// (an upload adds its files to it, so that is the upload's time; slots never completed go too).
/// Returns how many went.
pub fn sweep(dir: &Path, max_age: Duration, now: SystemTime) -> usize {
    remove_slots(dir, "an expired file", |entry| {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > max_age));
        old && entry.file_type().is_ok_and(|t| t.is_dir())
    })
}

/// Removes every slot directory under `dir` whose file was uploaded by the account with owner tag
/// `tag` ([`slot::SlotKey::owner_tag`]): the account was deleted. Returns how many went.
pub fn remove_owned(dir: &Path, tag: &str) -> usize {
    remove_slots(dir, "a deleted account's file", |entry| {
        std::fs::read(entry.path().join(super::web::META)).is_ok_and(|meta| {
            std::str::from_utf8(&meta).is_ok_and(|m| m.lines().nth(2) == Some(tag))
        })
    })
}

/// Removes the slot directories under `dir` that `pick` accepts (`what` names them in a warning
/// when one cannot be removed); returns how many went. Only slot directories: never the secret or
/// anything else kept there.
fn remove_slots(dir: &Path, what: &str, pick: impl Fn(&std::fs::DirEntry) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(slot::valid_id) || !pick(&entry) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "http_upload: cannot remove {what}")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_slots_go_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let id = "B".repeat(slot::ID_LEN);
        std::fs::create_dir(dir.path().join(&id)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join(&id).join("data"), b"x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("secret"), b"k").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("other")).unwrap_or_else(|e| panic!("{e}"));
        let day = Duration::from_secs(86400);
        assert_eq!(sweep(dir.path(), day, SystemTime::now()), 0, "fresh");
        assert_eq!(sweep(dir.path(), day, SystemTime::now() + 2 * day), 1);
        assert!(!dir.path().join(&id).exists());
        assert!(dir.path().join("secret").exists() && dir.path().join("other").exists());
        assert_eq!(
            sweep(&dir.path().join("missing"), day, SystemTime::now()),
            0
        );
    }

    #[test]
    fn a_deleted_accounts_files_go_the_others_stay() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let put = |id: &str, meta: &str| {
            let d = dir.path().join(id);
            std::fs::create_dir(&d).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join("data"), b"x").unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join(super::super::web::META), meta).unwrap_or_else(|e| panic!("{e}"));
        };
        let (a, b, c) = (
            "A".repeat(slot::ID_LEN),
            "B".repeat(slot::ID_LEN),
            "C".repeat(slot::ID_LEN),
        );
        put(&a, "x.png\nimage/png\nTAG1\n");
        put(&b, "y.png\nimage/png\nTAG2\n");
        // Uploaded before owners were kept: stays.
        put(&c, "z.png\nimage/png\n");
        assert_eq!(remove_owned(dir.path(), "TAG1"), 1);
        assert!(!dir.path().join(&a).exists());
        assert!(dir.path().join(&b).exists() && dir.path().join(&c).exists());
        assert_eq!(remove_owned(dir.path(), "TAG1"), 0);
    }
}
