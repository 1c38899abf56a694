//! The stream scanner on arbitrary bytes in arbitrary reads. Checks, besides "no panic":
//! - the events and the final error do not depend on how the bytes were split into reads;
//! - after an error every call returns the same error;
//! - events come in stream order (header, stanzas and whitespace, close), whitespace runs are
//!   reported once;
//! - every stanza builds a tree, survives `set_from`/`set_to` in place and still parses.
//!
//! Control byte: bits 0-1 pick the limits (default or tight ones), the whole byte seeds the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::xml::{Event, Limits, Scanner, XmlError};
use petrel::xmpp::ns;
use petrel_fuzz::{control, Chunks};

/// What one pass over the input produced, comparable across splits.
#[derive(Debug, PartialEq)]
enum Seen {
    Open(petrel::xml::StreamHeader),
    Stanza(Vec<u8>),
    Close,
    Whitespace,
}

fn limits(c: u8) -> Limits {
    match c & 3 {
        0 | 1 => Limits::default(),
        2 => Limits {
            max_stanza_bytes: 200,
            max_depth: 3,
            max_attrs: 3,
        },
        _ => Limits {
            max_stanza_bytes: 64,
            max_depth: 1,
            max_attrs: 1,
        },
    }
}

/// Feeds `reads` one by one, draining events after each; returns the events and the error.
fn run<'a>(limits: Limits, reads: impl Iterator<Item = &'a [u8]>) -> (Vec<Seen>, Option<XmlError>) {
    let mut sc = Scanner::new(limits, ns::CLIENT);
    let mut seen = Vec::new();
    for read in reads {
        sc.feed(read);
        loop {
            match sc.next_event() {
                Ok(Some(ev)) => seen.push(check(ev, &seen)),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        sc.next_event().err(),
                        Some(e.clone()),
                        "a dead scanner stays dead"
                    );
                    return (seen, Some(e));
                }
            }
        }
    }
    (seen, None)
}

/// Checks one event against those before it.
fn check(ev: Event, before: &[Seen]) -> Seen {
    let opened = matches!(before.first(), Some(Seen::Open(_)));
    assert!(
        !matches!(before.last(), Some(Seen::Close)),
        "event after the stream closed"
    );
    match ev {
        Event::StreamOpen(h) => {
            assert!(before.is_empty(), "second stream header");
            Seen::Open(h)
        }
        Event::StreamClose => {
            assert!(opened);
            Seen::Close
        }
        Event::Whitespace => {
            assert!(opened);
            assert!(
                !matches!(before.last(), Some(Seen::Whitespace)),
                "split whitespace run"
            );
            Seen::Whitespace
        }
        Event::Stanza(mut s) => {
            assert!(opened);
            let b = s.bytes().to_vec();
            assert!(b.starts_with(b"<") && b.ends_with(b">"), "{b:?}");
            // Every accessor on a stanza the scanner accepted.
            let _ = (
                s.name(),
                s.kind(),
                s.xmlns(),
                s.to(),
                s.from(),
                s.type_(),
                s.id(),
            );
            let _ = (s.child_name(), s.child_ns(), s.attr("xml:lang"));
            let tree = s.tree().expect("an accepted stanza builds a tree");
            // The in-place edits the c2s makes on every stanza keep it well-formed.
            s.set_from("a@example.com/r&'<");
            s.set_to("b@example.com");
            assert_eq!(s.from().as_deref(), Some("a@example.com/r&'<"));
            assert_eq!(s.to().as_deref(), Some("b@example.com"));
            let edited = s.tree().expect("an edited stanza builds a tree");
            assert_eq!((&edited.name, &edited.ns), (&tree.name, &tree.ns));
            assert_eq!(edited.children, tree.children);
            Seen::Stanza(b)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((c, stream)) = control(data) else {
        return;
    };
    let limits = limits(c);
    let whole = run(limits, std::iter::once(stream));
    let split = run(limits, Chunks::new(c | 1, stream));
    assert_eq!(whole, split, "result depends on the read boundaries");
});
