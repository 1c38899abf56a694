//! Parsing a request's `<body/>` (XEP-0124 §7, XEP-0206 §5): attributes plus the child elements
//! as the raw bytes the client wrote (validated by the stream scanner, never built into a tree).

use super::{Condition, NS_HTTPBIND};
use crate::xml::{Event, Limits, Scanner, Stanza, XmlError};
use crate::xmpp::ns;

/// The header under which body bytes are scanned: its default namespace is `jabber:client`, the
/// one the `C2s` applies to the same children once they reach it.
pub(super) const SCAN_HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams'>";
const SCAN_CLOSE: &[u8] = b"</stream:stream>";
/// The largest `rid` (XEP-0124 §14.1: 2^53 - 1), so that rid arithmetic cannot overflow.
const MAX_RID: u64 = (1 << 53) - 1;

/// Bounds on one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most child elements in one body.
    pub max_children: usize,
    /// Limits on each child (the c2s stanza limits).
    pub stanza: Limits,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body_bytes: 256 * 1024,
            max_children: 64,
            stanza: Limits::default(),
        }
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than `max_body_bytes`.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// More than `max_children` child elements.
    #[error("more than {0} child elements")]
    TooManyChildren(usize),
    /// Not well-formed or restricted XML.
    #[error("bad XML: {0}")]
    Xml(#[from] XmlError),
    /// The root is not `<body xmlns='http://jabber.org/protocol/httpbind'/>`.
    #[error("not a BOSH <body/>")]
    NotBody,
    /// An attribute is missing or has a bad value.
    #[error("bad attribute {0}")]
    Attr(&'static str),
}

impl BodyError {
    /// The terminal condition answering it.
    pub fn condition(&self) -> Condition {
        match self {
            BodyError::TooLarge(_)
            | BodyError::TooManyChildren(_)
            | BodyError::Xml(XmlError::StanzaTooLarge(_)) => Condition::PolicyViolation,
            _ => Condition::BadRequest,
        }
    }
}

/// A parsed request `<body/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `rid`, the request id (required).
    pub rid: u64,
    /// `sid`; absent on a session creation request.
    pub sid: Option<String>,
    /// `wait` in seconds (creation).
    pub wait: Option<u64>,
    /// `hold` (creation).
    pub hold: Option<u32>,
    /// `ver`, the client's BOSH version (creation; absent: a legacy client, see §17.2).
    pub ver: Option<String>,
    /// `to`, the XMPP domain (creation).
    pub to: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// `xmpp:version` (creation, XEP-0206).
    pub xmpp_version: Option<String>,
    /// `xmpp:restart='true'` (XEP-0206 §6).
    pub restart: bool,
    /// `type='terminate'`.
    pub terminate: bool,
    /// `ack`, the highest rid for which the client got every response (§9).
    pub ack: Option<u64>,
    /// `pause` in seconds (§12).
    pub pause: Option<u64>,
    /// The child elements exactly as written (whitespace between them included).
    pub payload: Vec<u8>,
    /// How many child elements `payload` holds.
    pub children: usize,
}

/// Parses and validates one request body.
pub fn parse(bytes: &[u8], limits: &BodyLimits) -> Result<Request, BodyError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(BodyError::TooLarge(limits.max_body_bytes));
    }
    let body = scan_body(bytes, limits)?;
    if body.name() != "body" || body.xmlns() != Some(NS_HTTPBIND) {
        return Err(BodyError::NotBody);
    }
    let attr = |name: &str| body.attr(name).map(|v| v.into_owned());
    let num = |name: &'static str| -> Result<Option<u64>, BodyError> {
        body.attr(name)
            .map(|v| v.trim().parse::<u64>().map_err(|_| BodyError::Attr(name)))
            .transpose()
    };
    let rid = num("rid")?
        .filter(|&r| r <= MAX_RID)
        .ok_or(BodyError::Attr("rid"))?;
    let hold = num("hold")?
        .map(|h| u32::try_from(h).map_err(|_| BodyError::Attr("hold")))
        .transpose()?;
    let (payload, children) = split_children(body.content(), limits)?;
    Ok(Request {
        rid,
        sid: attr("sid"),
        wait: num("wait")?,
        hold,
        ver: attr("ver"),
        to: attr("to"),
        lang: attr("xml:lang"),
        xmpp_version: attr("xmpp:version"),
        restart: body
            .attr("xmpp:restart")
            .is_some_and(|v| v == "true" || v == "1"),
        terminate: body.type_().is_some_and(|t| t == "terminate"),
        ack: num("ack")?,
        pause: num("pause")?,
        payload,
        children,
    })
}

/// The `sid` of a request that did not parse, when its `<body` start tag still names one (so that
/// the session it belongs to ends, XEP-0124 §17.2); `None` when the tag is not found, does not
/// parse on its own, or its `sid` holds anything a sid never does.
pub fn sid_of(bytes: &[u8]) -> Option<String> {
    let start = memchr::memmem::find(bytes, b"<body")?;
    let head = &bytes[start..];
    // The start tag alone, read as an empty element by the scanner (the error lies past it).
    let mut tag = head[..memchr::memchr(b'>', head)?].to_vec();
    if tag.last() == Some(&b'/') {
        tag.pop();
    }
    tag.extend_from_slice(b"/>");
    let tag = Stanza::parse(tag).ok()?;
    let value = tag.attr("sid")?;
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
    ok.then(|| value.into_owned())
}

/// Scans the whole body as the one element of a synthetic stream: full well-formedness and
/// namespace checks, one level deeper than a stanza may nest.
fn scan_body(bytes: &[u8], limits: &BodyLimits) -> Result<Stanza, BodyError> {
    let mut scanner = Scanner::new(
        Limits {
            max_stanza_bytes: limits.max_body_bytes,
            max_depth: limits.stanza.max_depth + 1,
            max_attrs: limits.stanza.max_attrs,
        },
        ns::CLIENT,
    );
    // An XML declaration may only come first: it goes ahead of the synthetic header.
    let rest = match bytes.strip_prefix(b"<?xml") {
        Some(_) => {
            let end = memchr::memmem::find(bytes, b"?>").ok_or(XmlError::BadXmlDecl)? + 2;
            scanner.feed(&bytes[..end]);
            &bytes[end..]
        }
        None => bytes,
    };
    scanner.feed(SCAN_HEADER);
    scanner.feed(rest);
    scanner.feed(SCAN_CLOSE);
    let mut body = None;
    loop {
        match scanner.next_event()? {
            Some(Event::StreamOpen(_) | Event::Whitespace) => {}
            Some(Event::Stanza(s)) if body.is_none() => body = Some(s),
            Some(Event::Stanza(_)) => return Err(BodyError::Xml(XmlError::TrailingData)),
            Some(Event::StreamClose) => return body.ok_or(BodyError::NotBody),
            None => return Err(BodyError::Xml(XmlError::Incomplete)),
        }
    }
}

/// Checks the children one by one under the c2s stanza limits and counts them.
fn split_children(content: &[u8], limits: &BodyLimits) -> Result<(Vec<u8>, usize), BodyError> {
    if content.iter().all(u8::is_ascii_whitespace) {
        return Ok((Vec::new(), 0));
    }
    let stanza = Limits {
        // The header's size counts against this limit too.
        max_stanza_bytes: limits.stanza.max_stanza_bytes.max(SCAN_HEADER.len()),
        ..limits.stanza
    };
    let mut scanner = Scanner::new(stanza, ns::CLIENT);
    scanner.feed(SCAN_HEADER);
    scanner.feed(content);
    scanner.feed(SCAN_CLOSE);
    let mut children = 0;
    loop {
        match scanner.next_event()? {
            Some(Event::StreamOpen(_) | Event::Whitespace) => {}
            Some(Event::Stanza(_)) => {
                children += 1;
                if children > limits.max_children {
                    return Err(BodyError::TooManyChildren(limits.max_children));
                }
            }
            Some(Event::StreamClose) => return Ok((content.to_vec(), children)),
            None => return Err(BodyError::Xml(XmlError::Incomplete)),
        }
    }
}
