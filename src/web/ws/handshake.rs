//! The server side of the WebSocket opening handshake (RFC 6455 §4.2) for the `xmpp`
//! subprotocol (RFC 7395 §3.1), as a pure check of the request's method and headers.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The subprotocol an XMPP WebSocket must negotiate.
pub const SUBPROTOCOL: &str = "xmpp";

/// RFC 6455 §1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused; each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a GET.
    #[error("a WebSocket handshake is a GET request")]
    Method,
    /// HTTP/1.0, whose `Upgrade` header a server must ignore (RFC 6455 §4.2.1, RFC 9110 §7.8).
    #[error("a WebSocket handshake needs HTTP/1.1 or later")]
    OldHttp,
    /// No `Upgrade: websocket` / `Connection: upgrade`.
    #[error("this endpoint speaks XMPP over WebSocket only (Upgrade: websocket)")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` other than 13.
    #[error("unsupported Sec-WebSocket-Version (13 only)")]
    Version,
    /// No usable `Sec-WebSocket-Key`.
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
    /// The client did not offer the `xmpp` subprotocol.
    #[error("Sec-WebSocket-Protocol must offer \"xmpp\" (RFC 7395)")]
    Subprotocol,
}

impl HandshakeError {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::Method => 405,
            HandshakeError::NotUpgrade | HandshakeError::Version => 426,
            HandshakeError::Key | HandshakeError::Subprotocol | HandshakeError::OldHttp => 400,
        }
    }
}

/// Checks an upgrade request (`http11`: HTTP/1.1 or later); `header(name)` returns every value
/// of a header (case-insensitive name). Returns the `Sec-WebSocket-Accept` value.
pub fn check<'a>(
    method: &str,
    http11: bool,
    header: impl Fn(&str) -> Vec<&'a str>,
) -> Result<String, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::Method);
    }
    if !http11 {
        return Err(HandshakeError::OldHttp);
    }
    let has_token = |name: &str, token: &str| {
        header(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if !header("sec-websocket-version")
        .iter()
        .any(|v| v.trim() == "13")
    {
        return Err(HandshakeError::Version);
    }
    let keys = header("sec-websocket-key");
    let key = match keys.as_slice() {
        [key] => key.trim(),
        _ => return Err(HandshakeError::Key),
    };
    // The key is 16 random bytes in base64 (RFC 6455 §4.1).
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(HandshakeError::Key);
    }
    // Subprotocol names are compared exactly: a client offering only `XMPP` would fail a 101
    // naming `xmpp` (RFC 6455 §4.1).
    let offers_xmpp = header("sec-websocket-protocol")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == SUBPROTOCOL);
    if !offers_xmpp {
        return Err(HandshakeError::Subprotocol);
    }
    Ok(accept_key(key))
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Vec<&'a str> {
        move |name| {
            list.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        }
    }

    const GOOD: [(&str, &str); 5] = [
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "chat, xmpp"),
    ];

    #[test]
    fn rfc6455_sample_key() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            check("GET", true, headers(&GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            check("POST", true, headers(&GOOD)),
            Err(HandshakeError::Method)
        );
        assert_eq!(
            check("GET", false, headers(&GOOD)),
            Err(HandshakeError::OldHttp)
        );
        for offer in ["chat", "chat, XMPP"] {
            let mut h = GOOD;
            h[4] = ("Sec-WebSocket-Protocol", offer);
            assert_eq!(
                check("GET", true, headers(&h)),
                Err(HandshakeError::Subprotocol)
            );
        }
        let mut h = GOOD;
        h[2] = ("Sec-WebSocket-Version", "8");
        assert_eq!(
            check("GET", true, headers(&h)),
            Err(HandshakeError::Version)
        );
        let mut h = GOOD;
        h[3] = ("Sec-WebSocket-Key", "short");
        assert_eq!(check("GET", true, headers(&h)), Err(HandshakeError::Key));
        let mut h = GOOD;
        h[0] = ("Upgrade", "h2c");
        assert_eq!(
            check("GET", true, headers(&h)),
            Err(HandshakeError::NotUpgrade)
        );
    }
}
