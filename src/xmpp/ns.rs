//! XML namespaces used by the core (RFC 6120, RFC 6121 and the XEPs petrel speaks).

/// Default namespace of client streams.
pub const CLIENT: &str = "jabber:client";
/// Default namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// Default namespace of external component streams (XEP-0114).
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// The `stream:` prefix namespace.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS negotiation.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL negotiation.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Service discovery info (XEP-0030).
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Service discovery items (XEP-0030).
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XMPP ping (XEP-0199).
pub const PING: &str = "urn:xmpp:ping";
/// Delayed delivery (XEP-0203).
pub const DELAY: &str = "urn:xmpp:delay";
/// vCards (XEP-0054).
pub const VCARD: &str = "vcard-temp";
/// vCard4 over XMPP (XEP-0292).
pub const VCARD4: &str = "urn:ietf:params:xml:ns:vcard-4.0";
/// Chat state notifications (XEP-0085).
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// Message carbons (XEP-0280).
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// Stanza forwarding (XEP-0297).
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// Result set management (XEP-0059).
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// Publish-subscribe requests (XEP-0060): a user's PEP nodes.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// Roster (RFC 6121).
pub const ROSTER: &str = "jabber:iq:roster";
/// The `xml:` prefix namespace (always bound).
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Extensible SASL profile (XEP-0388, "SASL2").
pub const SASL2: &str = "urn:xmpp:sasl:2";
/// Bind 2 (XEP-0386): resource binding inside a SASL2 authentication.
pub const BIND2: &str = "urn:xmpp:bind:0";
/// Unique and stable stanza ids (XEP-0359).
pub const STANZA_ID: &str = "urn:xmpp:sid:0";

/// XEP-0045 occupant information (`<x/>` in presence and, in archives, messages).
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
