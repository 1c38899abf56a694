//! s2s stream headers and `<stream:features/>` (RFC 6120 §4.7, §5.4, §6.4; XEP-0220 §2.5).

use super::{NS_DIALBACK, NS_DIALBACK_FEATURE};
use crate::xml::escape::escape_attr_into;
use crate::xml::Element;
use crate::xmpp::ns;

/// Appends a stream header: `jabber:server` with the `db:` prefix declared; `id` is ours when we
/// answer (incoming), absent when we initiate; `version` none for a peer that gave none.
pub(super) fn write_header(
    out: &mut Vec<u8>,
    id: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    version: Option<&str>,
) {
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
    out.extend_from_slice(ns::SERVER.as_bytes());
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(ns::STREAMS.as_bytes());
    out.extend_from_slice(b"' xmlns:db='");
    out.extend_from_slice(NS_DIALBACK.as_bytes());
    out.push(b'\'');
    write_attrs(
        out,
        &[("id", id), ("from", from), ("to", to), ("version", version)],
    );
    out.push(b'>');
}

/// Appends ` name='value'` for each attribute with a value.
pub(super) fn write_attrs(out: &mut Vec<u8>, attrs: &[(&str, Option<&str>)]) {
    for (name, value) in attrs {
        if let Some(v) = value {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr_into(v, out);
            out.push(b'\'');
        }
    }
}

/// What an incoming stream advertises.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Offer {
    /// `Some(required)`: STARTTLS.
    pub(super) starttls: Option<bool>,
    /// SASL EXTERNAL.
    pub(super) external: bool,
    /// Dialback (with error support, XEP-0220 §2.5).
    pub(super) dialback: bool,
}

/// Appends `<stream:features>` for `offer`.
pub(super) fn write_features(out: &mut Vec<u8>, offer: Offer) {
    out.extend_from_slice(b"<stream:features>");
    if let Some(required) = offer.starttls {
        out.extend_from_slice(b"<starttls xmlns='");
        out.extend_from_slice(ns::TLS.as_bytes());
        out.extend_from_slice(if required {
            b"'><required/></starttls>".as_slice()
        } else {
            b"'/>".as_slice()
        });
    }
    if offer.external {
        out.extend_from_slice(b"<mechanisms xmlns='");
        out.extend_from_slice(ns::SASL.as_bytes());
        out.extend_from_slice(b"'><mechanism>EXTERNAL</mechanism></mechanisms>");
    }
    if offer.dialback {
        out.extend_from_slice(b"<dialback xmlns='");
        out.extend_from_slice(NS_DIALBACK_FEATURE.as_bytes());
        out.extend_from_slice(b"'><errors/></dialback>");
    }
    out.extend_from_slice(b"</stream:features>");
}

/// Parses the remote's `<stream:features/>` (an outgoing stream).
pub(super) fn parse_features(el: &Element) -> Offer {
    let starttls = el
        .get_child("starttls", ns::TLS)
        .map(|s| s.get_child("required", ns::TLS).is_some());
    let external = el.get_child("mechanisms", ns::SASL).is_some_and(|m| {
        m.child_elements()
            .any(|c| c.name == "mechanism" && c.text().trim() == "EXTERNAL")
    });
    let dialback = el.get_child("dialback", NS_DIALBACK_FEATURE).is_some();
    Offer {
        starttls,
        external,
        dialback,
    }
}

/// Appends an empty element `<name xmlns='ns'/>`.
pub(super) fn write_empty(out: &mut Vec<u8>, name: &str, xmlns: &str) {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" xmlns='");
    out.extend_from_slice(xmlns.as_bytes());
    out.extend_from_slice(b"'/>");
}

/// Appends `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><COND/></failure>`.
pub(super) fn write_sasl_failure(out: &mut Vec<u8>, cond: &str) {
    out.extend_from_slice(b"<failure xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(cond.as_bytes());
    out.extend_from_slice(b"/></failure>");
}
