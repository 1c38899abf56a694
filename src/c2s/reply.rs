//! IQ replies the stream writes itself (bind, legacy session, errors before routing exists).

use crate::xml::escape::{escape_attr_into, escape_text_into};
use crate::xmpp::{ns, StanzaErrorCondition};

/// Appends `<iq type='TYPE' id='ID'` (id omitted when the request had none).
fn iq_open(out: &mut Vec<u8>, type_: &str, id: Option<&str>) {
    out.extend_from_slice(b"<iq type='");
    out.extend_from_slice(type_.as_bytes());
    out.push(b'\'');
    if let Some(id) = id {
        out.extend_from_slice(b" id='");
        escape_attr_into(id, out);
        out.push(b'\'');
    }
}

/// Appends an empty `<iq type='result'/>` (legacy session establishment, RFC 3921 §3).
pub(crate) fn write_empty_result(out: &mut Vec<u8>, id: Option<&str>) {
    iq_open(out, "result", id);
    out.extend_from_slice(b"/>");
}

/// Appends the bind result carrying the bound full JID (RFC 6120 §7.6.1).
pub(crate) fn write_bind_result(out: &mut Vec<u8>, id: Option<&str>, jid: &str) {
    iq_open(out, "result", id);
    out.extend_from_slice(b"><bind xmlns='");
    out.extend_from_slice(ns::BIND.as_bytes());
    out.extend_from_slice(b"'><jid>");
    escape_text_into(jid, out);
    out.extend_from_slice(b"</jid></bind></iq>");
}

/// Appends an IQ error reply with `cond`.
pub(crate) fn write_iq_error(out: &mut Vec<u8>, id: Option<&str>, cond: StanzaErrorCondition) {
    iq_open(out, "error", id);
    out.push(b'>');
    cond.write_error_element(out);
    out.extend_from_slice(b"</iq>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_escape_and_shape() {
        let mut out = Vec::new();
        write_bind_result(&mut out, Some("a'b"), "u@d/r<");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<iq type='result' id='a&apos;b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u@d/r&lt;</jid></bind></iq>"
        );
        let mut out = Vec::new();
        write_iq_error(&mut out, None, StanzaErrorCondition::Conflict);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<iq type='error'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }
}
