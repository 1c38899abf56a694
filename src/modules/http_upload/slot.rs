//! Stateless upload slots: a slot is a random id plus what the client asked for, and the PUT URL
//! carries an HMAC-SHA256 token over all of it under the server's secret, so any shard (or the
//! server after a restart) verifies a PUT without shared state. The GET URL is the id (128 random
//! bits, unguessable) and the file name, with no token.
//!
//! URLs: `BASE/ID/NAME` (GET) and `BASE/ID/NAME?size=N&type=T&expires=UNIX&token=HMAC` (PUT,
//! `type` only when the slot has one); `NAME` is the sanitized file name, percent-encoded.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// Bytes of randomness in a slot id (base64url: [`ID_LEN`] characters).
const ID_BYTES: usize = 16;
/// Characters of a slot id.
pub const ID_LEN: usize = 22;
/// Longest file name kept, in bytes (longer ones are cut at a character boundary).
const MAX_FILENAME: usize = 200;
/// Longest content type accepted, in bytes.
const MAX_CONTENT_TYPE: usize = 100;

/// What percent-encoding leaves alone in a path segment or query value: RFC 3986 unreserved.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The server secret that keys slot tokens.
#[derive(Clone)]
pub struct SlotKey([u8; 32]);

impl std::fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotKey(..)")
    }
}

impl SlotKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> SlotKey {
        SlotKey(bytes)
    }

    fn mac(&self, slot: &Slot) -> Hmac<Sha256> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        // NUL separators: neither the id, the name (no control characters), the type (token
        // characters) nor the numbers contain one, so no two slots give the same message.
        let ct = slot.content_type.as_deref().unwrap_or("");
        for part in [
            "petrel-upload-v1",
            &slot.id,
            &slot.filename,
            &slot.size.to_string(),
            ct,
            &slot.expires.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        // Slots made before owners were recorded have none: their tokens still verify.
        if let Some(owner) = &slot.owner {
            mac.update(b"owner\0");
            mac.update(owner.as_bytes());
            mac.update(b"\0");
        }
        mac
    }

    /// The tag standing for the account `bare` in its uploads' records: a keyed hash, so that
    /// neither a PUT URL nor the upload directory names the account, and the files of a deleted
    /// account can still be found (base64url, [`ID_LEN`] characters).
    pub fn owner_tag(&self, bare: &str) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(b"petrel-upload-owner-v1\0");
        mac.update(bare.as_bytes());
        let out = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&out[..ID_BYTES])
    }

    /// The token of `slot` (base64url).
    pub fn token(&self, slot: &Slot) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(slot).finalize().into_bytes())
    }

    /// Whether `token` is the token of `slot` (constant-time comparison).
    pub fn verify(&self, slot: &Slot, token: &str) -> bool {
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) {
            Ok(raw) => self.mac(slot).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }
}

/// One upload slot: everything its token covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Random id: the file's directory.
    pub id: String,
    /// Sanitized file name (see [`sanitize_filename`]).
    pub filename: String,
    /// Exact size of the file, in bytes.
    pub size: u64,
    /// Sanitized content type the PUT must send, if the client named one.
    pub content_type: Option<String>,
    /// Unix time (seconds) after which the PUT URL is refused.
    pub expires: i64,
    /// The requesting account's tag ([`SlotKey::owner_tag`]), kept with the file.
    pub owner: Option<String>,
}

/// The URLs of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotUrls {
    /// Where the client PUTs the file.
    pub put: String,
    /// Where it is served.
    pub get: String,
}

impl Slot {
    /// A new slot with a fresh random id (an error when the OS has no randomness to give).
    pub fn new(
        filename: String,
        size: u64,
        content_type: Option<String>,
        expires: i64,
        owner: Option<String>,
    ) -> Result<Slot, getrandom::Error> {
        let mut raw = [0u8; ID_BYTES];
        getrandom::getrandom(&mut raw)?;
        Ok(Slot {
            id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            filename,
            size,
            content_type,
            expires,
            owner,
        })
    }

    /// The PUT and GET URLs under `base` (no trailing slash).
    pub fn urls(&self, base: &str, key: &SlotKey) -> SlotUrls {
        let get = format!("{base}/{}/{}", self.id, encode(&self.filename));
        let mut put = format!("{get}?size={}", self.size);
        if let Some(ct) = &self.content_type {
            put.push_str("&type=");
            put.push_str(&encode(ct));
        }
        put.push_str(&format!("&expires={}", self.expires));
        if let Some(owner) = &self.owner {
            put.push_str("&owner=");
            put.push_str(&encode(owner));
        }
        put.push_str(&format!("&token={}", key.token(self)));
        SlotUrls { put, get }
    }
}

/// Percent-encodes all but the unreserved characters.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Percent-decodes `s` (`None` when it is not UTF-8).
pub fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Whether `s` has the shape of a slot id (so it is a safe directory name).
pub fn valid_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file name as served: the last component of any path (`/` or `\`), without control
/// characters, surrounding blanks or leading dots (no `.`/`..` URL segments), at most
/// [`MAX_FILENAME`] bytes, a long name cut before its extension so that it keeps it (clients show
/// a file by it). `None` when nothing is left. The name never names anything on disk (the file is
/// stored under fixed names in the slot's directory); this keeps URLs and `Content-Disposition`
/// sane. Sanitizing a sanitized name gives it back (the download URL is checked so).
pub fn sanitize_filename(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    // Dots and blanks in any mix: ". .jpg" left ".jpg" after one pass of each.
    let clean = clean
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    let clean = if clean.len() <= MAX_FILENAME {
        clean.to_owned()
    } else {
        // An extension of a few ASCII characters survives the cut.
        let ext = clean
            .rfind('.')
            .map(|i| &clean[i..])
            .filter(|e| e.len() <= 16 && e.is_ascii() && !e.contains(char::is_whitespace))
            .unwrap_or("");
        let mut end = MAX_FILENAME - ext.len();
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{ext}", clean[..end].trim_end())
    };
    (!clean.is_empty()).then_some(clean)
}

/// The essence of a content type (`type/subtype`, lowercased, parameters dropped), or `None` when
/// it is not one.
pub fn sanitize_content_type(raw: &str) -> Option<String> {
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let (ty, sub) = essence.split_once('/')?;
    (essence.len() <= MAX_CONTENT_TYPE && token(ty) && token(sub)).then_some(essence)
}

/// The PUT query of a slot URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutQuery {
    /// `size`.
    pub size: Option<u64>,
    /// `type`.
    pub content_type: Option<String>,
    /// `expires`.
    pub expires: Option<i64>,
    /// `owner`.
    pub owner: Option<String>,
    /// `token`.
    pub token: Option<String>,
}

impl PutQuery {
    /// Reads `size=..&type=..&expires=..&owner=..&token=..` (unknown keys are ignored, bad values dropped).
    pub fn parse(query: &str) -> PutQuery {
        let mut q = PutQuery::default();
        for pair in query.split('&') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let Some(v) = decode(v) else { continue };
            match k {
                "size" => q.size = v.parse().ok(),
                "type" => q.content_type = Some(v),
                "expires" => q.expires = v.parse().ok(),
                "owner" => q.owner = Some(v),
                "token" => q.token = Some(v),
                _ => {}
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SlotKey {
        SlotKey::new([7; 32])
    }

    fn slot() -> Slot {
        Slot::new(
            "photo.jpg".into(),
            1234,
            Some("image/jpeg".into()),
            2_000_000_000,
            Some(key().owner_tag("a@x")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn token_verifies_only_its_slot() {
        let s = slot();
        let t = key().token(&s);
        assert!(key().verify(&s, &t));
        assert!(!SlotKey::new([8; 32]).verify(&s, &t), "other secret");
        for other in [
            Slot {
                size: 1235,
                ..s.clone()
            },
            Slot {
                filename: "photo.jpeg".into(),
                ..s.clone()
            },
            Slot {
                content_type: None,
                ..s.clone()
            },
            Slot {
                expires: s.expires + 1,
                ..s.clone()
            },
            Slot {
                id: "A".repeat(ID_LEN),
                ..s.clone()
            },
            Slot {
                owner: Some(key().owner_tag("b@x")),
                ..s.clone()
            },
            Slot {
                owner: None,
                ..s.clone()
            },
        ] {
            assert!(!key().verify(&other, &t), "{other:?}");
        }
        assert!(!key().verify(&s, "not base64!"));
        assert!(!key().verify(&s, ""));
    }

    #[test]
    fn ids_are_random_and_safe() {
        let (a, b) = (slot(), slot());
        assert_ne!(a.id, b.id);
        assert!(valid_id(&a.id), "{}", a.id);
        for bad in [
            "..",
            "../../../../etc/passwd",
            "",
            "a/b",
            &"a".repeat(ID_LEN + 1),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(!valid_id(&format!("{}.", "a".repeat(ID_LEN - 1))));
    }

    #[test]
    fn urls_round_trip_through_the_query() {
        let s = Slot::new(
            "my file ü.txt".into(),
            5,
            Some("text/plain".into()),
            99,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let urls = s.urls("http://h:5280/upload", &key());
        let prefix = format!("http://h:5280/upload/{}/my%20file%20%C3%BC.txt", s.id);
        assert_eq!(urls.get, prefix);
        let query = urls
            .put
            .strip_prefix(&format!("{prefix}?"))
            .unwrap_or_else(|| panic!("{}", urls.put));
        let q = PutQuery::parse(query);
        assert_eq!(q.size, Some(5));
        assert_eq!(q.content_type.as_deref(), Some("text/plain"));
        assert_eq!(q.expires, Some(99));
        assert!(key().verify(&s, &q.token.unwrap_or_default()));
        assert_eq!(
            decode("my%20file%20%C3%BC.txt").as_deref(),
            Some("my file ü.txt")
        );
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn filenames_are_sanitized() {
        for (raw, want) in [
            ("photo.jpg", Some("photo.jpg")),
            ("../../etc/passwd", Some("passwd")),
            ("..\\..\\windows\\win.ini", Some("win.ini")),
            ("/abs/path/x", Some("x")),
            ("..", None),
            ("...", None),
            ("dir/", None),
            ("", None),
            ("  ", None),
            (".hidden", Some("hidden")),
            ("a\nb\0c\r.txt", Some("abc.txt")),
            ("ünïcødé ok.png", Some("ünïcødé ok.png")),
            // Leading dots and blanks in any order (". .jpg" kept a dot, and its URL was 404).
            (". .jpg", Some("jpg")),
            (".. ..txt", Some("txt")),
            (" . . ", None),
        ] {
            assert_eq!(sanitize_filename(raw).as_deref(), want, "{raw:?}");
            if let Some(clean) = want {
                assert_eq!(sanitize_filename(clean).as_deref(), Some(clean), "{raw:?}");
            }
        }
        let long = "é".repeat(300);
        let cut = sanitize_filename(&long).unwrap_or_default();
        assert!(cut.len() <= MAX_FILENAME && cut.chars().all(|c| c == 'é'));
        // A long name keeps its extension.
        let long = format!("{}.jpg", "a".repeat(300));
        let cut = sanitize_filename(&long).unwrap_or_default();
        assert!(cut.len() <= MAX_FILENAME && cut.ends_with("a.jpg"), "{cut}");
        assert_eq!(sanitize_filename(&cut).as_deref(), Some(cut.as_str()));
    }

    #[test]
    fn content_types_are_sanitized() {
        for (raw, want) in [
            ("image/jpeg", Some("image/jpeg")),
            ("Text/HTML; charset=utf-8", Some("text/html")),
            ("application/vnd.api+json", Some("application/vnd.api+json")),
            ("text", None),
            ("text/", None),
            ("/x", None),
            ("text/html\r\nX-Evil: 1", None),
            ("a b/c", None),
        ] {
            assert_eq!(sanitize_content_type(raw).as_deref(), want, "{raw:?}");
        }
    }
}
