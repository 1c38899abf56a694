//! The `C2s`'s output split into top-level elements for response bodies (with the splitter the
//! WebSocket transport uses): the server's stream header is dropped (its id kept as `authid`),
//! `</stream:stream>` and `<stream:error/>` end the session.

use crate::web::split::{Piece, Splitter};
use crate::web::ws::framing::with_namespaces;
use crate::xml::Stanza;

/// What changes the session, found in the C2s's output.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OutItem {
    /// The server's stream header (a new stream: at creation and after each restart), its id.
    Header(Option<String>),
    /// A `<stream:error/>` (the stream closes next).
    StreamError(Vec<u8>),
    /// `</stream:stream>`.
    Close,
}

/// Splits the C2s's output; an element cut by a read waits for its end.
#[derive(Default)]
pub(super) struct Outbound {
    split: Splitter,
}

impl Outbound {
    /// Bytes of an element still cut by a read (fed, not queued yet).
    pub(super) fn pending(&self) -> usize {
        self.split.pending()
    }

    /// Feeds output bytes; appends plain elements to `queue`, each declaring the namespace it
    /// inherited from the stream (inside `<body/>` the default one is httpbind), and hands back
    /// the items that change the session.
    pub(super) fn feed(&mut self, bytes: &[u8], queue: &mut Vec<u8>, items: &mut Vec<OutItem>) {
        self.split.push(bytes, |piece| match piece {
            Piece::Header(h) => items.push(OutItem::Header(header_id(h))),
            Piece::Close => items.push(OutItem::Close),
            Piece::Element(e) if e.starts_with(b"<stream:error") => {
                let mut err = Vec::with_capacity(e.len() + 64);
                with_namespaces(e, &mut err);
                items.push(OutItem::StreamError(err));
            }
            Piece::Element(e) => with_namespaces(e, queue),
        });
    }
}

/// The `id` of the server's `<stream:stream ...>` start tag.
fn header_id(h: &[u8]) -> Option<String> {
    let mut h = h.to_vec();
    h.extend_from_slice(b"</stream:stream>");
    let s = Stanza::parse(h).ok()?;
    s.id().map(|id| id.into_owned())
}
