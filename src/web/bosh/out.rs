//! The `C2s`'s output split into top-level elements for response bodies: the server's stream
//! header is dropped (its id kept as `authid`), `</stream:stream>` and `<stream:error/>` end the
//! session.

use crate::xml::{Event, Limits, Scanner, StanzaKind};
use crate::xmpp::ns;

/// What the C2s wrote, one item at a time.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OutItem {
    /// The server's stream header, with its id.
    Header(Option<String>),
    /// A `<stream:error/>` (the stream closes next).
    StreamError(Vec<u8>),
    /// `</stream:stream>`.
    Close,
}

/// Scans the C2s's output (server-written, so well-formed; the scan only finds the boundaries).
pub(super) struct Outbound {
    scanner: Scanner,
}

/// Output elements are routed stanzas already checked on their way in: only the sizes matter.
const OUT_LIMITS: Limits = Limits {
    max_stanza_bytes: usize::MAX,
    max_depth: usize::MAX,
    max_attrs: usize::MAX,
};

const CLIENT_XMLNS: &[u8] = b" xmlns='jabber:client'";

impl Outbound {
    /// A scanner waiting for the server's first header.
    pub(super) fn new() -> Outbound {
        Outbound {
            scanner: Scanner::new(OUT_LIMITS, ns::CLIENT),
        }
    }

    /// Feeds output bytes; appends plain elements to `queue` (message, presence and iq get an
    /// explicit `jabber:client` namespace: inside `<body/>` the default one is httpbind) and
    /// hands back the items that change the session. `Err` if the output is not what a C2s writes.
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        queue: &mut Vec<u8>,
        items: &mut Vec<OutItem>,
    ) -> Result<(), crate::xml::XmlError> {
        // The C2s writes `<?xml` only to start a stream (a restart after SASL): what comes before
        // belongs to the old one. Found in the output itself, it cannot race with the requests.
        let mut rest = bytes;
        while let Some(at) = memchr::memmem::find(rest, b"<?xml") {
            self.scan(&rest[..at], queue, items)?;
            self.scanner.reset();
            self.scanner.feed(&rest[at..at + 5]);
            rest = &rest[at + 5..];
        }
        self.scan(rest, queue, items)
    }

    fn scan(
        &mut self,
        bytes: &[u8],
        queue: &mut Vec<u8>,
        items: &mut Vec<OutItem>,
    ) -> Result<(), crate::xml::XmlError> {
        self.scanner.feed(bytes);
        while let Some(ev) = self.scanner.next_event()? {
            match ev {
                Event::StreamOpen(h) => items.push(OutItem::Header(h.id)),
                Event::Whitespace => {}
                Event::StreamClose => items.push(OutItem::Close),
                Event::Stanza(s) if s.name() == "stream:error" => {
                    items.push(OutItem::StreamError(s.into_bytes()))
                }
                Event::Stanza(s) => {
                    let b = s.bytes();
                    if s.kind() != StanzaKind::Other && s.xmlns().is_none() {
                        let at = 1 + s.name().len();
                        queue.extend_from_slice(&b[..at]);
                        queue.extend_from_slice(CLIENT_XMLNS);
                        queue.extend_from_slice(&b[at..]);
                    } else {
                        queue.extend_from_slice(b);
                    }
                }
            }
        }
        Ok(())
    }
}
