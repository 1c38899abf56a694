//! PLAIN message parsing (RFC 4616): `[authzid] NUL authcid NUL passwd`.

use super::SaslFailure;

/// The three fields of a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlainMessage<'a> {
    /// Authorization identity; empty when absent.
    pub authzid: &'a str,
    /// Authentication identity (the username).
    pub authcid: &'a str,
    /// The password.
    pub password: &'a str,
}

/// Splits a PLAIN message; exactly two NULs, UTF-8, non-empty authcid and password.
pub(crate) fn parse(msg: &[u8]) -> Result<PlainMessage<'_>, SaslFailure> {
    let s = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
    let mut parts = s.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(PlainMessage {
        authzid,
        authcid,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let m = parse(b"\0user\0pencil");
        assert_eq!(
            m,
            Ok(PlainMessage {
                authzid: "",
                authcid: "user",
                password: "pencil"
            })
        );
        let m = parse(b"user@example.com\0user\0p w\x01");
        assert_eq!(
            m.map(|m| (m.authzid, m.password)),
            Ok(("user@example.com", "p w\x01"))
        );
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"user\0pencil"[..],
            b"userpencil",
            b"",
            b"\0\0pencil",
            b"\0user\0",
            b"\0user\0pen\0cil",
            b"\0us\xffer\0pencil",
        ] {
            assert_eq!(parse(bad), Err(SaslFailure::MalformedRequest), "{bad:?}");
        }
    }
}
