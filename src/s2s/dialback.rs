//! Dialback keys (XEP-0185) and the `jabber:server:dialback` elements (XEP-0220).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::NS_DIALBACK;
use crate::xml::escape::escape_text_into;
use crate::xml::Stanza;
use crate::xmpp::{ns, StanzaErrorCondition};

/// The dialback key of XEP-0185 §2: hex(HMAC-SHA256(key = hex(SHA256(secret)),
/// receiving || ' ' || originating || ' ' || stream id)), lowercase hex.
pub fn dialback_key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret));
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// True when `key` is our key for (receiving, originating, stream id), compared in constant time.
pub fn key_matches(
    secret: &[u8],
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> bool {
    let expected = dialback_key(secret, receiving, originating, stream_id);
    expected.as_bytes().ct_eq(key.trim().as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A `jabber:server:dialback` element (XEP-0220 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DbElement {
    /// `result` (the request to authenticate, or its answer) or `verify`.
    pub(super) verify: bool,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) id: Option<String>,
    pub(super) type_: Option<String>,
    /// The key (the text), trimmed.
    pub(super) key: String,
    /// The condition of `<error/>` (type='error').
    pub(super) error: Option<StanzaErrorCondition>,
}

/// Parses a top-level element in the dialback namespace (`None`: not one).
pub(super) fn parse(stanza: &Stanza) -> Option<DbElement> {
    let el = stanza.tree().ok()?;
    if el.ns != NS_DIALBACK || !matches!(el.name.as_str(), "result" | "verify") {
        return None;
    }
    let attr = |n: &str| el.attr(n).map(str::to_owned);
    let error = el
        .get_child("error", NS_DIALBACK)
        .or_else(|| el.get_child("error", ns::SERVER))
        .or_else(|| el.child_elements().find(|c| c.name == "error"))
        .and_then(|e| {
            e.child_elements()
                .find(|c| c.ns == ns::STANZAS)
                .and_then(|c| StanzaErrorCondition::from_name(&c.name))
        });
    Some(DbElement {
        verify: el.name == "verify",
        from: attr("from"),
        to: attr("to"),
        id: attr("id"),
        type_: attr("type"),
        key: el.text().trim().to_owned(),
        error,
    })
}

/// The content of a dialback element we write.
pub(super) enum Body<'a> {
    /// `<db:x .../>`.
    Empty,
    /// The key as text.
    Key(&'a str),
    /// `<error>` with this condition (type='error').
    Error(StanzaErrorCondition),
}

/// Appends `<db:result/>` or `<db:verify/>` (`verify`) with the given attributes and body.
pub(super) fn write(
    out: &mut Vec<u8>,
    verify: bool,
    from: &str,
    to: &str,
    id: Option<&str>,
    type_: Option<&str>,
    body: Body<'_>,
) {
    let name: &[u8] = if verify { b"db:verify" } else { b"db:result" };
    out.push(b'<');
    out.extend_from_slice(name);
    super::features::write_attrs(
        out,
        &[
            ("from", Some(from)),
            ("to", Some(to)),
            ("id", id),
            ("type", type_),
        ],
    );
    match body {
        Body::Empty => {
            out.extend_from_slice(b"/>");
            return;
        }
        Body::Key(key) => {
            out.push(b'>');
            escape_text_into(key, out);
        }
        Body::Error(cond) => {
            out.push(b'>');
            cond.write_error_element(out);
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name);
    out.push(b'>');
}

/// `type` of an answer: valid / invalid.
pub(super) fn verdict(valid: bool) -> &'static str {
    if valid {
        "valid"
    } else {
        "invalid"
    }
}
