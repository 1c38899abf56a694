//! Dialback keys (XEP-0185) and the `jabber:server:dialback` elements (XEP-0220).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
