//! Restricted-XML stream scanner, stanzas and on-demand element trees.
//!
//! The [`Scanner`] reads a client stream with `memchr`, restartable at any byte boundary, and
//! yields the stream header and each complete top-level stanza as an owned [`Stanza`] (its exact
//! bytes plus the ranges routing needs). It enforces RFC 6120 restricted XML: no DTDs, comments,
//! processing instructions or custom entities; UTF-8 only; namespace well-formedness; limits.
//! Errors are typed ([`XmlError`]) and map to stream error conditions.
//!
//! Hot-path shape: each byte is looked at by `memchr` to find token ends (resuming where the
//! last feed stopped), once more when its tag is validated, and once by a whole-stanza UTF-8 and
//! character sweep when the stanza completes. Attributes are recorded as ranges in a reused
//! buffer; the only allocation per stanza is its owned byte buffer.

mod chars;
mod elem;
mod error;
pub mod escape;
mod scanner;
mod stanza;
mod stanza_type;
mod stored;
mod tag;
mod tree;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;

pub use error::XmlError;
pub use scanner::{Event, Limits, Scanner, StreamHeader};
pub use stanza::{attr_len, Stanza, StanzaKind};
pub use stanza_type::StanzaType;
pub use stored::StoredStanza;
pub use tree::{Element, Node};

/// A test's XML as an element tree (panics, naming the XML, when it does not parse).
#[cfg(test)]
pub(crate) fn test_element(xml: &str) -> Element {
    Stanza::parse(xml.as_bytes().to_vec())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}: {xml}"))
}
