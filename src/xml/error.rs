//! Typed scanner errors, each mapped to the RFC 6120 stream error it closes the stream with.

use crate::xmpp::StreamErrorCondition;

/// Why the scanner (or `Stanza::parse`) refused its input.
///
/// Invalid characters (control characters, U+FFFE/U+FFFF) map to `not-well-formed`: they make the
/// document not well-formed XML, and `invalid-xml` is reserved for schema violations. Bytes that
/// are not UTF-8 map to `unsupported-encoding`, which RFC 6120 §4.9.3.22 names for a stream
/// "improperly encoded (e.g., by violating the rules of the UTF-8 encoding)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Bytes that are not well-formed UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A character that is not an XML `Char` (control character, U+FFFE, U+FFFF).
    #[error("character not allowed in XML")]
    InvalidChar,
    /// A numeric character reference to a character that is not an XML `Char`.
    #[error("character reference to a character not allowed in XML")]
    InvalidCharRef,
    /// An `&` that does not start a syntactically valid reference.
    #[error("malformed reference")]
    MalformedReference,
    /// A reference to an entity other than the five predefined ones.
    #[error("reference to an undeclared entity")]
    UndeclaredEntity,
    /// An XML comment.
    #[error("comments are not allowed")]
    Comment,
    /// A processing instruction (including an XML declaration anywhere but at stream start).
    #[error("processing instructions are not allowed")]
    ProcessingInstruction,
    /// A document type declaration.
    #[error("DTDs are not allowed")]
    Doctype,
    /// `<!` followed by something that is neither a comment, a DTD nor a CDATA section.
    #[error("unknown markup declaration")]
    BadMarkup,
    /// A malformed XML declaration.
    #[error("malformed XML declaration")]
    BadXmlDecl,
    /// An XML declaration naming a version other than 1.0.
    #[error("unsupported XML version")]
    UnsupportedXmlVersion,
    /// An XML declaration naming an encoding other than UTF-8.
    #[error("unsupported encoding")]
    UnsupportedEncoding,
    /// An element or attribute name that is not a valid XML qualified name.
    #[error("invalid name")]
    InvalidName,
    /// An end tag that does not match the open element.
    #[error("mismatched end tag")]
    MismatchedEndTag,
    /// Malformed attribute syntax inside a tag.
    #[error("malformed tag")]
    BadTagSyntax,
    /// The same attribute twice on one element.
    #[error("duplicate attribute")]
    DuplicateAttribute,
    /// A literal `<` inside an attribute value.
    #[error("'<' in attribute value")]
    LtInAttributeValue,
    /// `]]>` in character data.
    #[error("']]>' in text")]
    CdataEndInText,
    /// A prefix used without a namespace declaration in scope.
    #[error("unbound namespace prefix")]
    UnboundPrefix,
    /// Misuse of the reserved `xml`/`xmlns` prefixes or namespace names, or an empty prefix binding.
    #[error("reserved namespace prefix or name misused")]
    ReservedNamespace,
    /// Non-whitespace text (or a CDATA section) directly inside the stream, between stanzas.
    #[error("text between stanzas")]
    TextBetweenStanzas,
    /// An element before the stream header, or a root element that is not `stream`.
    #[error("expected a stream header")]
    NotStreamHeader,
    /// A self-closing stream header.
    #[error("empty stream header")]
    EmptyStreamHeader,
    /// The stream element is not in the `http://etherx.jabber.org/streams` namespace.
    #[error("wrong stream namespace")]
    InvalidStreamNamespace,
    /// The stream element uses a prefix other than `stream:`.
    #[error("stream element prefix is not 'stream'")]
    BadStreamPrefix,
    /// The stream's default namespace is missing or not the one this listener serves.
    #[error("wrong default namespace")]
    InvalidDefaultNamespace,
    /// A stream header as a first-level element of the open stream.
    #[error("stream header inside the stream")]
    StreamHeaderInStream,
    /// Data after `</stream:stream>`.
    #[error("data after the stream end")]
    DataAfterClose,
    /// `Stanza::parse` was given an incomplete element.
    #[error("incomplete element")]
    Incomplete,
    /// `Stanza::parse` was given data after the element.
    #[error("data after the element")]
    TrailingData,
    /// A stanza (or the stream header) longer than `Limits::max_stanza_bytes`.
    #[error("stanza larger than {0} bytes")]
    StanzaTooLarge(usize),
    /// Elements nested deeper than `Limits::max_depth`.
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    /// More attributes on one element than `Limits::max_attrs`.
    #[error("more than {0} attributes on one element")]
    TooManyAttributes(usize),
}

impl XmlError {
    /// The stream error condition to close the stream with.
    pub fn condition(&self) -> StreamErrorCondition {
        use XmlError::*;
        match self {
            UndeclaredEntity | Comment | ProcessingInstruction | Doctype => {
                StreamErrorCondition::RestrictedXml
            }
            UnsupportedEncoding | InvalidUtf8 => StreamErrorCondition::UnsupportedEncoding,
            InvalidStreamNamespace | InvalidDefaultNamespace => {
                StreamErrorCondition::InvalidNamespace
            }
            BadStreamPrefix => StreamErrorCondition::BadNamespacePrefix,
            // Well-formed, but no first-level element a stream supports (RFC 6120 §4.9.3.24).
            StreamHeaderInStream => StreamErrorCondition::UnsupportedStanzaType,
            StanzaTooLarge(_) | TooDeep(_) | TooManyAttributes(_) => {
                StreamErrorCondition::PolicyViolation
            }
            InvalidChar
            | InvalidCharRef
            | MalformedReference
            | BadMarkup
            | BadXmlDecl
            | UnsupportedXmlVersion
            | InvalidName
            | MismatchedEndTag
            | BadTagSyntax
            | DuplicateAttribute
            | LtInAttributeValue
            | CdataEndInText
            | UnboundPrefix
            | ReservedNamespace
            | TextBetweenStanzas
            | NotStreamHeader
            | EmptyStreamHeader
            | DataAfterClose
            | Incomplete
            | TrailingData => StreamErrorCondition::NotWellFormed,
        }
    }
}
