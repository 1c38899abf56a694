//! SASL glue: the `urn:ietf:params:xml:ns:xmpp-sasl` elements around `auth::SaslServer` (RFC 6120 §6.4).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::auth::SaslFailure;
use crate::xml::Stanza;
use crate::xmpp::ns;

/// A SASL element sent by the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SaslRequest {
    /// `<auth mechanism='..'>`: `initial` is `None` without an initial response, `Some(empty)` for `=`.
    Auth {
        /// The mechanism name as sent.
        mechanism: String,
        /// The decoded initial response.
        initial: Option<Vec<u8>>,
    },
    /// `<response>`: the decoded data.
    Response(Vec<u8>),
    /// `<abort/>`.
    Abort,
}

/// Parses a top-level element in the SASL namespace.
pub(crate) fn parse(stanza: &Stanza) -> Result<SaslRequest, SaslFailure> {
    let el = stanza.tree().map_err(|_| SaslFailure::MalformedRequest)?;
    match stanza.name() {
        "auth" => {
            let mechanism = el
                .attr("mechanism")
                .ok_or(SaslFailure::InvalidMechanism)?
                .to_string();
            let text = el.text();
            let initial = decode(text.trim(), true)?;
            Ok(SaslRequest::Auth { mechanism, initial })
        }
        "response" => {
            let text = el.text();
            Ok(SaslRequest::Response(
                decode(text.trim(), false)?.unwrap_or_default(),
            ))
        }
        "abort" => Ok(SaslRequest::Abort),
        _ => Err(SaslFailure::MalformedRequest),
    }
}

/// Decodes a SASL payload: empty means "no data" (`None` when `absent_is_none`), `=` means empty data.
fn decode(text: &str, absent_is_none: bool) -> Result<Option<Vec<u8>>, SaslFailure> {
    match text {
        "" if absent_is_none => Ok(None),
        "" | "=" => Ok(Some(Vec::new())),
        _ => B64
            .decode(text)
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding),
    }
}

/// Appends `<challenge>` with base64 `data` (`=` when empty).
pub(crate) fn write_challenge(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"<challenge xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    out.extend_from_slice(b"'>");
    write_b64(out, data);
    out.extend_from_slice(b"</challenge>");
}

/// Appends `<success>` with base64 additional data (empty element without it).
pub(crate) fn write_success(out: &mut Vec<u8>, data: Option<&[u8]>) {
    out.extend_from_slice(b"<success xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    match data {
        Some(data) => {
            out.extend_from_slice(b"'>");
            write_b64(out, data);
            out.extend_from_slice(b"</success>");
        }
        None => out.extend_from_slice(b"'/>"),
    }
}

/// Appends `<failure><COND/></failure>`.
pub(crate) fn write_failure(out: &mut Vec<u8>, condition: &str) {
    out.extend_from_slice(b"<failure xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(condition.as_bytes());
    out.extend_from_slice(b"/></failure>");
}

/// Appends base64 of `data`, or `=` for empty data (RFC 6120 §6.4.2).
fn write_b64(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        out.push(b'=');
        return;
    }
    b64_into(out, data);
}

/// Appends base64 of `data` (nothing for empty data).
pub(super) fn b64_into(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    // The slice is exactly encoded_len long, so encoding cannot run out of space; fall back to
    // the allocating encoder if it ever did.
    match B64.encode_slice(data, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(B64.encode(data).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rules() {
        assert_eq!(decode("", true), Ok(None));
        assert_eq!(decode("", false), Ok(Some(vec![])));
        assert_eq!(decode("=", true), Ok(Some(vec![])));
        assert_eq!(
            decode("AGZvbwBiYXI=", true),
            Ok(Some(b"\0foo\0bar".to_vec()))
        );
        assert_eq!(decode("***", true), Err(SaslFailure::IncorrectEncoding));
    }

    #[test]
    fn b64_output() {
        let mut out = Vec::new();
        write_challenge(&mut out, b"hello");
        assert_eq!(
            out,
            b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>aGVsbG8=</challenge>"
        );
        out.clear();
        write_success(&mut out, Some(b""));
        assert_eq!(
            out,
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</success>"
        );
    }
}
