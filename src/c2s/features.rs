//! The server's stream header and `<stream:features/>` (RFC 6120 §4.3.2, §5.4.1, §6.4.1, §7.4).

use crate::auth::{ChannelBinding, Mechanism};
use crate::xml::escape::escape_attr_into;
use crate::xmpp::ns;

/// Mechanisms in order of preference; the stream filters them with what the connection allows.
pub(crate) const MECHANISMS: [Mechanism; 5] = [
    Mechanism::ScramSha256Plus,
    Mechanism::ScramSha1Plus,
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::Plain,
];

/// What to advertise after a stream header.
pub(crate) enum Offer<'a> {
    /// Pre-authentication: optional STARTTLS (`Some(required)`) and the allowed SASL mechanisms.
    PreAuth {
        /// `Some(required)` when STARTTLS is offered.
        starttls: Option<bool>,
        /// SASL mechanisms (empty: no `<mechanisms/>`).
        mechanisms: &'a [Mechanism],
        /// What the -PLUS mechanisms bind to (XEP-0440 lists the types).
        channel_binding: ChannelBinding,
        /// Offer in-band registration (XEP-0077).
        register: bool,
        /// Offer SASL2 with Bind 2 beside `<mechanisms/>` (the listener's `sasl2`).
        sasl2: bool,
        /// Stream management can be enabled inside a Bind 2 request (advertised in SASL2's inline).
        inline_sm: bool,
        /// The modules' features a Bind 2 request can enable, rendered.
        bind2_features: &'a [u8],
    },
    /// Post-authentication: resource binding, the legacy optional session, and the modules' extra
    /// features (pre-rendered elements, e.g. roster versioning, stream management, CSI).
    Bind {
        /// Extra feature elements, written as they are.
        extra: &'a [u8],
    },
}

/// Appends the response stream header.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    version: Option<&str>,
) {
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
    out.extend_from_slice(ns::CLIENT.as_bytes());
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(ns::STREAMS.as_bytes());
    out.extend_from_slice(b"' id='");
    escape_attr_into(id, out);
    if let Some(from) = from {
        out.extend_from_slice(b"' from='");
        escape_attr_into(from, out);
    }
    if let Some(to) = to {
        out.extend_from_slice(b"' to='");
        escape_attr_into(to, out);
    }
    if let Some(version) = version {
        out.extend_from_slice(b"' version='");
        escape_attr_into(version, out);
    }
    out.extend_from_slice(b"' xml:lang='en'>");
}

/// Appends `<stream:features>` for `offer`.
pub(crate) fn write_features(out: &mut Vec<u8>, offer: &Offer<'_>) {
    out.extend_from_slice(b"<stream:features>");
    match offer {
        Offer::PreAuth {
            starttls,
            mechanisms,
            channel_binding,
            register,
            sasl2,
            inline_sm,
            bind2_features,
        } => {
            match starttls {
                Some(true) => {
                    out.extend_from_slice(b"<starttls xmlns='");
                    out.extend_from_slice(ns::TLS.as_bytes());
                    out.extend_from_slice(b"'><required/></starttls>");
                }
                Some(false) => {
                    out.extend_from_slice(b"<starttls xmlns='");
                    out.extend_from_slice(ns::TLS.as_bytes());
                    out.extend_from_slice(b"'/>");
                }
                None => {}
            }
            if !mechanisms.is_empty() {
                out.extend_from_slice(b"<mechanisms xmlns='");
                out.extend_from_slice(ns::SASL.as_bytes());
                out.extend_from_slice(b"'>");
                for m in mechanisms.iter() {
                    out.extend_from_slice(b"<mechanism>");
                    out.extend_from_slice(m.name().as_bytes());
                    out.extend_from_slice(b"</mechanism>");
                }
                out.extend_from_slice(b"</mechanisms>");
                // XEP-0388 beside RFC 6120 SASL, with the same mechanisms (never offered empty).
                if *sasl2 {
                    super::sasl2::write_feature(out, mechanisms, *inline_sm, bind2_features);
                }
                if mechanisms.iter().any(|m| m.is_plus()) {
                    // XEP-0440 (which XEP-0388 requires with channel binding): the types the
                    // -PLUS mechanisms can use on this stream.
                    out.extend_from_slice(b"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
                    for ty in channel_binding.types() {
                        out.extend_from_slice(b"<channel-binding type='");
                        out.extend_from_slice(ty.as_bytes());
                        out.extend_from_slice(b"'/>");
                    }
                    out.extend_from_slice(b"</sasl-channel-binding>");
                }
            }
            if *register {
                out.extend_from_slice(
                    b"<register xmlns='http://jabber.org/features/iq-register'/>",
                );
            }
        }
        Offer::Bind { extra } => {
            out.extend_from_slice(b"<bind xmlns='");
            out.extend_from_slice(ns::BIND.as_bytes());
            out.extend_from_slice(b"'/><session xmlns='");
            out.extend_from_slice(ns::SESSION.as_bytes());
            out.extend_from_slice(b"'><optional/></session>");
            out.extend_from_slice(extra);
        }
    }
    out.extend_from_slice(b"</stream:features>");
}

/// Appends `<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
pub(crate) fn write_proceed(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<proceed xmlns='");
    out.extend_from_slice(ns::TLS.as_bytes());
    out.extend_from_slice(b"'/>");
}

/// Appends `<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>` (RFC 6120 §5.4.2.2).
pub(crate) fn write_tls_failure_close(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<failure xmlns='");
    out.extend_from_slice(ns::TLS.as_bytes());
    out.extend_from_slice(b"'/></stream:stream>");
}
