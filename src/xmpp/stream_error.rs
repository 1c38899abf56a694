//! Stream error conditions (RFC 6120 §4.9.3) and their wire form.

use std::fmt;

/// A stream-level error condition; sending one closes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamErrorCondition {
    /// The entity sent XML that cannot be processed.
    BadFormat,
    /// The entity sent a namespace prefix that is unsupported.
    BadNamespacePrefix,
    /// A new stream for the same identity took over this one.
    Conflict,
    /// The peer did not generate traffic for too long.
    ConnectionTimeout,
    /// The stream's domain is no longer served here (removed at run time).
    HostGone,
    /// The `to` of the stream header names a domain not served here.
    HostUnknown,
    /// A stanza lacks a `from` or `to` a server-to-server or component stream requires (RFC 6120
    /// §4.9.3.7, XEP-0114).
    ImproperAddressing,
    /// A `from` that does not match the authenticated identity.
    InvalidFrom,
    /// The stream or content namespace is wrong.
    InvalidNamespace,
    /// The server hit a misconfiguration or an internal failure.
    InternalServerError,
    /// The entity tried to send data before the stream was authenticated.
    NotAuthorized,
    /// The XML is not well-formed.
    NotWellFormed,
    /// The entity violated a local policy (size, rate, slow reader).
    PolicyViolation,
    /// The server lacks the resources to serve the stream.
    ResourceConstraint,
    /// The entity used XML that XMPP restricts (DTD, comments, PIs, entities).
    RestrictedXml,
    /// The server is shutting down.
    SystemShutdown,
    /// Catch-all condition.
    UndefinedCondition,
    /// The encoding is not UTF-8.
    UnsupportedEncoding,
    /// A top-level element that is not a stanza known to this stream.
    UnsupportedStanzaType,
    /// The stream `version` is not supported.
    UnsupportedVersion,
}

impl StreamErrorCondition {
    /// The element name of the condition, as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InternalServerError => "internal-server-error",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// Appends `<stream:error>` with this condition (and optional text) followed by `</stream:stream>`.
    pub fn write_close(self, text: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<stream:error><");
        out.extend_from_slice(self.as_str().as_bytes());
        out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
        if let Some(text) = text {
            out.extend_from_slice(
                b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>",
            );
            crate::xml::escape::escape_text_into(text, out);
            out.extend_from_slice(b"</text>");
        }
        out.extend_from_slice(b"</stream:error></stream:stream>");
    }
}

impl fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
