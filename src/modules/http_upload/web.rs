//! The sans-IO half of the `/upload/` HTTP handler: what a PUT, GET or HEAD may do, decided from the
//! request line and headers; `rt::http_upload` does the file I/O and writes the answers.
//!
//! On disk a file is `DIR/ID/data` with `DIR/ID/meta` (its name and content type). The file name
//! in the URL never names anything on disk, and the id is checked to be [`slot::ID_LEN`] URL-safe
//! base64 characters, so no request reaches outside `DIR/ID/`.

use std::path::PathBuf;

use super::slot::{self, PutQuery, Slot, SlotKey};

/// The path prefix the HTTP listener serves uploads under.
pub const PREFIX: &str = "/upload/";
/// The file, once complete.
pub const DATA: &str = "data";
/// The file while its PUT is under way (renamed to [`DATA`] at the end).
pub const PART: &str = "data.part";
/// The file's name and content type; created exclusively, so a second PUT to a slot fails.
pub const META: &str = "meta";
/// Served when no better content type is known.
const OCTET_STREAM: &str = "application/octet-stream";

/// Why a request is refused, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// No such file (or a malformed path).
    #[error("not found")]
    NotFound,
    /// The PUT URL's token does not verify.
    #[error("bad or missing token")]
    BadToken,
    /// The PUT URL is past its expiry.
    #[error("upload slot expired")]
    Expired,
    /// `Content-Length` larger than the slot.
    #[error("request body larger than the slot")]
    TooLarge,
    /// `Content-Length` missing or other than the slot's size.
    #[error("Content-Length must be the slot's size")]
    BadLength,
    /// `Content-Type` other than the slot's.
    #[error("Content-Type differs from the slot's")]
    BadType,
    /// The slot's file was uploaded already (or its upload is under way).
    #[error("file already uploaded")]
    Exists,
    /// A method other than PUT, GET, HEAD, OPTIONS.
    #[error("method not allowed")]
    Method,
    /// The body broke off, or the disk failed.
    #[error("upload failed")]
    Failed,
}

impl Reject {
    /// The HTTP status of the answer.
    pub fn status(self) -> u16 {
        match self {
            Reject::NotFound => 404,
            Reject::BadToken => 403,
            Reject::Expired => 410,
            Reject::TooLarge => 413,
            Reject::BadLength | Reject::BadType => 400,
            Reject::Exists => 409,
            Reject::Method => 405,
            Reject::Failed => 500,
        }
    }
}

/// A verified PUT: where to write, how much, and the meta file to create first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPlan {
    /// The slot's directory.
    pub dir: PathBuf,
    /// Exact body size.
    pub size: u64,
    /// Contents of [`META`].
    pub meta: Vec<u8>,
}

/// A GET or HEAD of a well-formed file URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPlan {
    /// The slot's directory.
    pub dir: PathBuf,
    /// The name in the URL (checked against [`META`] by [`served`]).
    pub filename: String,
}

/// The headers a stored file is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Sanitized stored type, `application/octet-stream` when none.
    pub content_type: String,
    /// `inline` for types browsers only display, `attachment` for the rest (HTML, SVG, scripts...
    /// would run in the server's origin).
    pub disposition: String,
}

/// The upload directory and the slot secret, shared by the XMPP service and the HTTP handler of a
/// shard.
#[derive(Debug)]
pub struct UploadFiles {
    /// Where files are stored.
    pub dir: PathBuf,
    /// Keys slot tokens.
    pub key: SlotKey,
}

/// `/upload/ID/NAME` → (id, decoded name); anything else is `NotFound`.
fn parse_path(path: &str) -> Result<(String, String), Reject> {
    let rest = path.strip_prefix(PREFIX).ok_or(Reject::NotFound)?;
    let (id, name) = rest.split_once('/').ok_or(Reject::NotFound)?;
    if !slot::valid_id(id) || name.contains('/') {
        return Err(Reject::NotFound);
    }
    let name = slot::decode(name).ok_or(Reject::NotFound)?;
    // Only names a slot can have (sanitized) are looked up.
    if slot::sanitize_filename(&name).as_deref() != Some(name.as_str()) {
        return Err(Reject::NotFound);
    }
    Ok((id.to_owned(), name))
}

impl UploadFiles {
    /// Checks a PUT: the token over the URL, the expiry (unix time `now`), `Content-Length`
    /// against the slot's size and `Content-Type` against the slot's.
    pub fn put(
        &self,
        path: &str,
        query: Option<&str>,
        content_length: Option<&str>,
        content_type: Option<&str>,
        now: i64,
    ) -> Result<PutPlan, Reject> {
        let (id, filename) = parse_path(path)?;
        let q = PutQuery::parse(query.unwrap_or(""));
        let (Some(size), Some(expires), Some(token)) = (q.size, q.expires, q.token) else {
            return Err(Reject::BadToken);
        };
        let slot = Slot {
            id,
            filename,
            size,
            content_type: q.content_type,
            expires,
            owner: q.owner,
        };
        if !self.key.verify(&slot, &token) {
            return Err(Reject::BadToken);
        }
        if now > slot.expires {
            return Err(Reject::Expired);
        }
        let length: u64 = content_length
            .and_then(|l| l.trim().parse().ok())
            .ok_or(Reject::BadLength)?;
        if length > slot.size {
            return Err(Reject::TooLarge);
        }
        if length != slot.size {
            return Err(Reject::BadLength);
        }
        let sent = content_type.and_then(slot::sanitize_content_type);
        let stored = match (slot.content_type, sent) {
            (Some(want), Some(sent)) if want != sent => return Err(Reject::BadType),
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => OCTET_STREAM.to_owned(),
        };
        let mut meta = format!("{}\n{stored}\n", slot.filename);
        if let Some(owner) = &slot.owner {
            // The third line finds the file when the account is deleted.
            meta.push_str(owner);
            meta.push('\n');
        }
        Ok(PutPlan {
            dir: self.dir.join(&slot.id),
            size: slot.size,
            meta: meta.into_bytes(),
        })
    }

    /// Checks a GET or HEAD path.
    pub fn get(&self, path: &str) -> Result<GetPlan, Reject> {
        let (id, filename) = parse_path(path)?;
        Ok(GetPlan {
            dir: self.dir.join(id),
            filename,
        })
    }
}

/// What a GET asks for of a file of `len` bytes (RFC 9110 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (no `Range`, one we ignore, or an `If-Range` we cannot match: no
    /// validators are kept).
    Whole,
    /// Bytes `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// The range starts past the end (416 with `Content-Range: bytes */len`).
    Unsatisfiable,
}

/// Reads one `Range: bytes=…` (first-last, first-, or -suffix); anything else (several ranges,
/// another unit, bad syntax) is served whole, as RFC 9110 §14.2 allows. Players seek in audio and
/// video by it.
pub fn byte_range(range: Option<&str>, if_range: bool, len: u64) -> Ranged {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if if_range || spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), num(first), num(last)) {
        // -N: the last N bytes.
        (true, _, Some(n)) if n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        (true, _, _) => return Ranged::Unsatisfiable,
        (false, Some(a), None) if last.trim().is_empty() => (a, len.saturating_sub(1)),
        (false, Some(a), Some(b)) if a <= b => (a, b.min(len.saturating_sub(1))),
        _ => return Ranged::Whole,
    };
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part { start, end }
}

/// How the file with meta file `meta` is served at a URL naming `filename` (`NotFound` when the
/// name is not the one it was uploaded under).
pub fn served(meta: &[u8], filename: &str) -> Result<Served, Reject> {
    let meta = std::str::from_utf8(meta).map_err(|_| Reject::NotFound)?;
    let mut lines = meta.lines();
    if lines.next() != Some(filename) {
        return Err(Reject::NotFound);
    }
    let content_type = lines
        .next()
        .and_then(slot::sanitize_content_type)
        .unwrap_or_else(|| OCTET_STREAM.to_owned());
    let inline = matches!(
        content_type.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "text/plain"
    ) || content_type.starts_with("audio/")
        || content_type.starts_with("video/");
    let kind = if inline { "inline" } else { "attachment" };
    Ok(Served {
        disposition: format!("{kind}; filename*=UTF-8''{}", slot::encode(filename)),
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> UploadFiles {
        UploadFiles {
            dir: PathBuf::from("/srv/up"),
            key: SlotKey::new([3; 32]),
        }
    }

    /// (path, query) of a slot's PUT URL.
    fn put_url(s: &Slot) -> (String, String) {
        let urls = s.urls("http://h/upload", &files().key);
        let rest = urls.put.strip_prefix("http://h").unwrap_or_default();
        let (p, q) = rest.split_once('?').unwrap_or_default();
        (p.to_owned(), q.to_owned())
    }

    fn slot(ct: Option<&str>, expires: i64) -> Slot {
        Slot::new("a b.png".into(), 10, ct.map(str::to_owned), expires, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_owners_tag_is_kept_with_the_file_and_covered_by_the_token() {
        let tag = files().key.owner_tag("alice@x");
        assert_ne!(tag, files().key.owner_tag("bob@x"));
        let s = Slot {
            owner: Some(tag.clone()),
            ..slot(Some("image/png"), 100)
        };
        let (p, q) = put_url(&s);
        let plan = files()
            .put(&p, Some(&q), Some("10"), None, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan.meta,
            format!("a b.png\nimage/png\n{tag}\n").into_bytes()
        );
        // Served as before: the name and type lines decide.
        assert!(served(&plan.meta, "a b.png").is_ok());
        // Another owner in the URL breaks the token.
        let other = q.replace(&tag, &files().key.owner_tag("bob@x"));
        let r = files().put(&p, Some(&other), Some("10"), None, 0);
        assert_eq!(r.map(drop), Err(Reject::BadToken));
    }

    #[test]
    fn a_good_put_is_planned() {
        let s = slot(Some("image/png"), 100);
        let (p, q) = put_url(&s);
        let plan = files()
            .put(&p, Some(&q), Some("10"), Some("image/png"), 100)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.dir, PathBuf::from(format!("/srv/up/{}", s.id)));
        assert_eq!(plan.size, 10);
        assert_eq!(plan.meta, b"a b.png\nimage/png\n");
        // No Content-Type: the slot's; a slot without one takes the PUT's, else octet-stream.
        let plan = files().put(&p, Some(&q), Some("10"), None, 0);
        assert_eq!(plan.map(|p| p.meta), Ok(b"a b.png\nimage/png\n".to_vec()));
        let s = slot(None, 100);
        let (p, q) = put_url(&s);
        let plan = files().put(&p, Some(&q), Some("10"), Some("Text/Plain; charset=x"), 0);
        assert_eq!(plan.map(|p| p.meta), Ok(b"a b.png\ntext/plain\n".to_vec()));
        let plan = files().put(&p, Some(&q), Some("10"), None, 0);
        assert_eq!(
            plan.map(|p| p.meta),
            Ok(b"a b.png\napplication/octet-stream\n".to_vec())
        );
    }

    #[test]
    fn bad_puts_are_refused() {
        let s = slot(Some("image/png"), 100);
        let (p, q) = put_url(&s);
        let f = files();
        let put = |p: &str, q: &str, len: Option<&str>, ct: Option<&str>, now: i64| {
            f.put(p, Some(q), len, ct, now).map(drop)
        };
        assert_eq!(put(&p, &q, Some("10"), None, 101), Err(Reject::Expired));
        assert_eq!(put(&p, &q, Some("11"), None, 0), Err(Reject::TooLarge));
        assert_eq!(put(&p, &q, Some("9"), None, 0), Err(Reject::BadLength));
        assert_eq!(put(&p, &q, None, None, 0), Err(Reject::BadLength));
        assert_eq!(put(&p, &q, Some("x"), None, 0), Err(Reject::BadLength));
        assert_eq!(
            put(&p, &q, Some("10"), Some("text/html"), 0),
            Err(Reject::BadType)
        );
        // Any change to the URL breaks the token: size, type, expiry, name, id.
        let forged_expiry = q.replace("expires=100", "expires=999");
        assert_eq!(
            put(&p, &forged_expiry, Some("10"), None, 0),
            Err(Reject::BadToken)
        );
        assert_eq!(
            put(&p, &q.replace("size=10", "size=11"), Some("11"), None, 0),
            Err(Reject::BadToken)
        );
        assert_eq!(
            put(
                &p,
                &q.replace("type=image%2Fpng", "type=text%2Fhtml"),
                Some("10"),
                Some("text/html"),
                0
            ),
            Err(Reject::BadToken)
        );
        assert_eq!(
            put(&p.replace("a%20b", "c"), &q, Some("10"), None, 0),
            Err(Reject::BadToken)
        );
        let other = slot(Some("image/png"), 100);
        assert_eq!(
            put(&p.replace(&s.id, &other.id), &q, Some("10"), None, 0),
            Err(Reject::BadToken)
        );
        assert_eq!(
            put(&p, "size=10&expires=100", Some("10"), None, 0),
            Err(Reject::BadToken)
        );
        // A token from another server's secret.
        let theirs = UploadFiles {
            key: SlotKey::new([4; 32]),
            ..files()
        };
        assert_eq!(
            theirs.put(&p, Some(&q), Some("10"), None, 0).map(drop),
            Err(Reject::BadToken)
        );
    }

    #[test]
    fn paths_stay_inside_the_upload_dir() {
        let f = files();
        let id = "A".repeat(slot::ID_LEN);
        assert_eq!(
            f.get(&format!("/upload/{id}/x.png")),
            Ok(GetPlan {
                dir: PathBuf::from(format!("/srv/up/{id}")),
                filename: "x.png".into()
            })
        );
        for bad in [
            "/upload/../../etc/passwd".to_owned(),
            "/upload/..%2F..%2Fetc/passwd".to_owned(),
            format!("/upload/{id}/../x"),
            format!("/upload/{id}/..%2Fx"),
            format!("/upload/{id}/%2e%2e"),
            format!("/upload/{id}/.."),
            format!("/upload/{id}/a/b"),
            format!("/upload/{id}/"),
            format!("/upload/{id}"),
            format!("/upload/{}/x", &id[1..]),
            format!("/upload/{}../x", &id[2..]),
            "/other/x".to_owned(),
        ] {
            assert_eq!(f.get(&bad), Err(Reject::NotFound), "{bad}");
        }
    }

    #[test]
    fn byte_ranges() {
        use Ranged::*;
        let r = |h: &str| byte_range(Some(h), false, 100);
        assert_eq!(r("bytes=0-9"), Part { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-10"), Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-500"), Part { start: 0, end: 99 });
        assert_eq!(r("bytes=50-500"), Part { start: 50, end: 99 });
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Whole);
        assert_eq!(r("items=0-1"), Whole);
        assert_eq!(r("bytes=9-1"), Whole);
        assert_eq!(r("bytes=x-"), Whole);
        assert_eq!(byte_range(None, false, 100), Whole);
        assert_eq!(byte_range(Some("bytes=0-1"), true, 100), Whole);
        assert_eq!(byte_range(Some("bytes=0-"), false, 0), Unsatisfiable);
    }

    #[test]
    fn served_types_and_dispositions() {
        let s = served(b"a.png\nimage/png\n", "a.png").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.content_type, "image/png");
        assert_eq!(s.disposition, "inline; filename*=UTF-8''a.png");
        for ct in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
        ] {
            let meta = format!("x\n{ct}\n");
            let s = served(meta.as_bytes(), "x").unwrap_or_else(|e| panic!("{e}"));
            assert!(s.disposition.starts_with("attachment;"), "{ct}");
        }
        let s = served(b"x\n\n", "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.content_type, OCTET_STREAM);
        assert_eq!(
            served(b"a.png\nimage/png\n", "b.png"),
            Err(Reject::NotFound)
        );
    }
}
