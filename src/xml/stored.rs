//! A stanza kept for long (the last presence of every session): its bytes only, indexed again when
//! read, so that a stored stanza costs its bytes and not the index (and stream context) beside them.

use super::Stanza;

/// A stanza at rest: bytes that index back to it on their own (two words, a `Box<[u8]>`).
#[derive(Debug, Clone)]
pub struct StoredStanza(Box<[u8]>);

impl StoredStanza {
    /// Stores `stanza`; one that depends on its stream (an inherited namespace other than
    /// `jabber:client`, prefixes bound in the stream header) is written out again with its
    /// namespaces on itself first.
    pub fn new(stanza: Stanza) -> StoredStanza {
        if stanza.stands_alone() {
            return StoredStanza(stanza.into_bytes().into_boxed_slice());
        }
        match stanza.tree() {
            Ok(el) => StoredStanza(Stanza::from_element(&el).into_bytes().into_boxed_slice()),
            // A scanned stanza always builds a tree; were it not so, its bytes are still kept.
            Err(_) => StoredStanza(stanza.into_bytes().into_boxed_slice()),
        }
    }

    /// The bytes, as they will be written.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The stanza, indexed again (None only for bytes that did not index as a stanza when stored).
    pub fn stanza(&self) -> Option<Stanza> {
        Stanza::reindex(self.0.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::ns;

    #[test]
    fn a_plain_presence_is_kept_as_bytes_and_reads_back_the_same() {
        let p = Stanza::parse(
            b"<presence from='a@x/r'><show>away</show><c xmlns='http://jabber.org/protocol/caps' ver='v'/></presence>"
                .to_vec(),
        )
        .unwrap();
        let stored = StoredStanza::new(p.clone());
        assert_eq!(stored.bytes(), p.bytes());
        let back = stored.stanza().unwrap();
        assert_eq!(back.bytes(), p.bytes());
        assert_eq!(back.from().as_deref(), Some("a@x/r"));
        assert_eq!(back.child_ns().as_deref(), Some("jabber:client"));
        assert_eq!(back.child_name(), Some("show"));
    }

    #[test]
    fn a_stanza_that_needs_its_stream_is_stored_with_its_namespaces() {
        let mut sc = crate::xml::Scanner::new(crate::xml::Limits::default(), ns::CLIENT);
        sc.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
              xmlns:x='urn:x'><presence><x:y/></presence>",
        );
        let mut stanzas = Vec::new();
        while let Ok(Some(ev)) = sc.next_event() {
            if let crate::xml::Event::Stanza(s) = ev {
                stanzas.push(s);
            }
        }
        let s = stanzas.pop().expect("one stanza");
        assert!(!s.stands_alone());
        let back = StoredStanza::new(s.clone()).stanza().unwrap();
        assert_eq!(back.tree().unwrap(), s.tree().unwrap());
        assert_eq!(back.name(), "presence");
    }
}
