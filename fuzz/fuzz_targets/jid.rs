//! JID parsing (RFC 7622 with the RFC 6122 stringprep profiles) on arbitrary text. Checks:
//! - preparation is idempotent: the prepared form parses back to the same JID;
//! - the parts are consistent: rebuilding from node, domain and resource gives the same JID;
//! - `BareJid::parse` / `FullJid::parse` agree with `Jid::parse` on whether there is a resource;
//! - every part is within the RFC 7622 size bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::jid::{BareJid, FullJid, Jid, MAX_PART_BYTES};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let Ok(j) = Jid::parse(&s) else {
        assert!(BareJid::parse(&s).is_err() && FullJid::parse(&s).is_err());
        return;
    };
    assert_eq!(j.to_string(), j.as_str());
    let again = Jid::parse(j.as_str()).expect("a prepared JID parses");
    assert_eq!(again, j, "preparation is not idempotent for {s:?}");
    assert!(j
        .node()
        .is_none_or(|n| !n.is_empty() && n.len() <= MAX_PART_BYTES));
    assert!(!j.domain().is_empty() && j.domain().len() <= MAX_PART_BYTES);
    assert!(j
        .resource()
        .is_none_or(|r| !r.is_empty() && r.len() <= MAX_PART_BYTES));

    let bare = BareJid::new(j.node(), j.domain()).expect("parts of a JID rebuild it");
    assert_eq!(bare, j.bare());
    assert_eq!(bare.as_str(), j.bare_str());
    match j.resource() {
        None => {
            assert!(j.is_bare());
            assert_eq!(BareJid::parse(&s).expect("bare").as_str(), j.as_str());
            assert!(FullJid::parse(&s).is_err());
        }
        Some(r) => {
            let full = bare
                .with_resource(r)
                .expect("resource of a JID rebuilds it");
            assert_eq!(full.as_str(), j.as_str());
            let f = FullJid::parse(&s).expect("full");
            assert_eq!((f.resource(), f.bare()), (r, bare));
            assert!(BareJid::parse(&s).is_err());
        }
    }
});
