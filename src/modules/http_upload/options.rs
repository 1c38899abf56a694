//! `[modules.http_upload]` options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::modules::options::{OptionError, Options};

/// The module's name in `[modules.NAME]`.
pub const NAME: &str = "http_upload";

/// Options of `[modules.http_upload]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// The service's domain, `@HOST@` standing for each hosted domain.
    pub host: String,
    /// Where the HTTP listener serving `/upload` is reachable from clients, `@HOST@` standing for
    /// the hosted domain (modules do not know listeners: this must match one with `upload`).
    pub base_url: String,
    /// Largest file a slot is given for, in bytes.
    pub max_file_size: u64,
    /// How long a PUT URL stays valid.
    pub slot_timeout: Duration,
    /// Files older than this are deleted (zero: kept forever).
    pub file_expiry: Duration,
    /// Where files are stored (and the slot secret).
    pub dir: PathBuf,
    /// Only users of the service's own host get slots (`not-allowed` for the others).
    pub host_users_only: bool,
    /// Bytes of slots one user is given per [`QUOTA_WINDOW_SECS`] (zero: no limit).
    pub daily_quota: u64,
}

/// The window of [`UploadOptions::daily_quota`], in seconds (the store's grant times are unix
/// seconds).
pub const QUOTA_WINDOW_SECS: i64 = 24 * 3600;

impl UploadOptions {
    /// The defaults, with the files under `data_dir/upload`.
    pub fn defaults(data_dir: &Path) -> UploadOptions {
        UploadOptions {
            host: "upload.@HOST@".to_owned(),
            base_url: "http://@HOST@:5280/upload".to_owned(),
            max_file_size: 10 * 1024 * 1024,
            slot_timeout: Duration::from_secs(300),
            file_expiry: Duration::ZERO,
            dir: data_dir.join("upload"),
            host_users_only: true,
            daily_quota: 10 * 10 * 1024 * 1024,
        }
    }

    /// Reads `[modules.http_upload]`; a relative `dir` is taken from the working directory, like
    /// `data_dir`.
    pub fn from_table(table: &toml::Table, data_dir: &Path) -> Result<UploadOptions, OptionError> {
        let o = Options::new(NAME, Some(table));
        o.only(&[
            "host",
            "base_url",
            "max_file_size",
            "slot_timeout",
            "file_expiry_days",
            "dir",
            "host_users_only",
            "daily_quota",
        ])?;
        let d = UploadOptions::defaults(data_dir);
        let host = o.string("host", &d.host)?;
        if !host.contains("@HOST@") && crate::jid::BareJid::domain_only(&host).is_err() {
            return Err(o.invalid("host", "a domain, `@HOST@` standing for each hosted domain"));
        }
        let base_url = o.string("base_url", &d.base_url)?;
        let scheme_ok = base_url.starts_with("http://") || base_url.starts_with("https://");
        if !scheme_ok || base_url.contains(['?', '#', ' ']) {
            return Err(o.invalid("base_url", "an http:// or https:// URL without query"));
        }
        let days = o.uint("file_expiry_days", 0, 100 * 365)?;
        let dir = match o.string("dir", "")? {
            s if s.is_empty() => d.dir,
            s => PathBuf::from(s),
        };
        let max_file_size = o.uint_in("max_file_size", d.max_file_size, 1..=i64::MAX as u64)?;
        // Ten of the largest files a day unless said otherwise, like Prosody's default.
        let daily_quota = o.uint(
            "daily_quota",
            max_file_size.saturating_mul(10).min(i64::MAX as u64),
            i64::MAX as u64,
        )?;
        if daily_quota != 0 && daily_quota < max_file_size {
            return Err(o.invalid(
                "daily_quota",
                "0 (no limit) or at least max_file_size: a file of the largest size must fit",
            ));
        }
        Ok(UploadOptions {
            host,
            base_url: base_url.trim_end_matches('/').to_owned(),
            max_file_size,
            slot_timeout: Duration::from_secs(o.uint_in("slot_timeout", 300, 1..=7 * 24 * 3600)?),
            file_expiry: Duration::from_secs(days * 24 * 3600),
            dir,
            host_users_only: o.bool("host_users_only", d.host_users_only)?,
            daily_quota,
        })
    }

    /// The service domain for hosted domain `host`.
    pub fn service_for(&self, host: &str) -> String {
        self.host.replace("@HOST@", host)
    }

    /// The URL prefix of the files of hosted domain `host`.
    pub fn base_url_for(&self, host: &str) -> String {
        self.base_url.replace("@HOST@", host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<UploadOptions, OptionError> {
        let t: toml::Table = toml::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        UploadOptions::from_table(&t, Path::new("/data"))
    }

    #[test]
    fn defaults_and_patterns() {
        let o = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o, UploadOptions::defaults(Path::new("/data")));
        assert_eq!(o.dir, Path::new("/data/upload"));
        assert_eq!(o.service_for("a.b"), "upload.a.b");
        assert_eq!(o.base_url_for("a.b"), "http://a.b:5280/upload");
        let o =
            parse("base_url = \"https://files.@HOST@/up/\"\nfile_expiry_days = 2\ndir = \"/x\"")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.base_url_for("a.b"), "https://files.a.b/up");
        assert_eq!(o.file_expiry, Duration::from_secs(2 * 86400));
        assert_eq!(o.dir, Path::new("/x"));
        let o = parse("max_file_size = 100").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.daily_quota, 1000, "ten of the largest files");
        let o = parse("max_file_size = 100\ndaily_quota = 0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.daily_quota, 0);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse("hots = \"x\"").is_err());
        assert!(parse("max_file_size = 0").is_err());
        assert!(parse("slot_timeout = 0").is_err());
        assert!(parse("base_url = \"ftp://x\"").is_err());
        assert!(parse("base_url = \"http://x/?a\"").is_err());
        assert!(parse("host = \"bad domain\"").is_err());
        assert!(parse("max_file_size = 100\ndaily_quota = 99").is_err());
    }
}
