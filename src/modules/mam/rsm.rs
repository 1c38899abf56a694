//! Result set management (XEP-0059) as MAM uses it: the request's `<set/>` and the answer's.

use super::ns;
use crate::xml::Element;

/// Where a backward page ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// `<before/>`: the last page of the result set.
    Last,
    /// `<before>id</before>`: the page just before that item.
    Id(String),
}

/// The request's `<set/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsmRequest {
    /// `<max/>` (saturated at `u64::MAX`: the caller refuses anything past its limit).
    pub max: Option<u64>,
    /// `<after/>`: the page just after that item.
    pub after: Option<String>,
    /// `<before/>`.
    pub before: Option<Before>,
}

/// Why a `<set/>` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsmError {
    /// Not a number where one is needed, or an element given twice.
    Malformed,
    /// `<index/>` (paging by position), which the archive does not offer.
    IndexUnsupported,
}

/// Reads the `<set/>` child of `parent`, if any (none: an empty request).
pub fn parse(parent: &Element) -> Result<RsmRequest, RsmError> {
    let mut sets = parent
        .child_elements()
        .filter(|e| e.name == "set" && e.ns == ns::RSM);
    let Some(set) = sets.next() else {
        return Ok(RsmRequest::default());
    };
    if sets.next().is_some() {
        return Err(RsmError::Malformed);
    }
    let mut req = RsmRequest::default();
    for child in set.child_elements().filter(|e| e.ns == ns::RSM) {
        let text = child.text();
        let text = text.trim();
        match child.name.as_str() {
            "max" if req.max.is_none() => req.max = Some(parse_max(text)?),
            "after" if req.after.is_none() && !text.is_empty() => req.after = Some(text.to_owned()),
            "before" if req.before.is_none() => {
                req.before = Some(if text.is_empty() {
                    Before::Last
                } else {
                    Before::Id(text.to_owned())
                })
            }
            "index" => return Err(RsmError::IndexUnsupported),
            "max" | "after" | "before" => return Err(RsmError::Malformed),
            // Unknown RSM children (e.g. a future extension) are ignored, as XEP-0059 readers do.
            _ => {}
        }
    }
    Ok(req)
}

/// A non-negative integer; a long run of digits saturates rather than failing, so that it is
/// refused as too large and not as malformed.
fn parse_max(s: &str) -> Result<u64, RsmError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RsmError::Malformed);
    }
    Ok(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// The answer's `<set/>`: `first` (with its index in the whole result set, when known) and `last`
/// when the page has items, and the size of the result set when known.
pub fn answer(
    first: Option<(&str, Option<u64>)>,
    last: Option<&str>,
    count: Option<u64>,
) -> Element {
    let mut set = Element::new("set", ns::RSM);
    if let Some((id, index)) = first {
        let mut el = Element::new("first", ns::RSM);
        if let Some(index) = index {
            el = el.with_attr("index", index.to_string());
        }
        set = set.with_child(el.with_text(id));
    }
    if let Some(id) = last {
        set = set.with_child(Element::new("last", ns::RSM).with_text(id));
    }
    if let Some(count) = count {
        set = set.with_child(Element::new("count", ns::RSM).with_text(&count.to_string()));
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    fn query(set: &str) -> Element {
        let xml = format!("<query xmlns='urn:xmpp:mam:2'>{set}</query>");
        Stanza::parse(xml.into_bytes())
            .and_then(|s| s.tree())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const RSM: &str = "http://jabber.org/protocol/rsm";

    #[test]
    fn reads_max_after_before() {
        assert_eq!(parse(&query("")), Ok(RsmRequest::default()));
        let r = parse(&query(&format!(
            "<set xmlns='{RSM}'><max> 10 </max><after>42</after></set>"
        )));
        assert_eq!(
            r,
            Ok(RsmRequest {
                max: Some(10),
                after: Some("42".into()),
                before: None
            })
        );
        let r = parse(&query(&format!("<set xmlns='{RSM}'><before/></set>")));
        assert_eq!(r.map(|r| r.before), Ok(Some(Before::Last)));
        let r = parse(&query(&format!(
            "<set xmlns='{RSM}'><before>7</before></set>"
        )));
        assert_eq!(r.map(|r| r.before), Ok(Some(Before::Id("7".into()))));
        let r = parse(&query(&format!(
            "<set xmlns='{RSM}'><max>1000000000000000000000000</max></set>"
        )));
        assert_eq!(r.map(|r| r.max), Ok(Some(u64::MAX)));
    }

    #[test]
    fn refuses_bad_numbers_duplicates_and_index() {
        for bad in [
            "<max>-1</max>",
            "<max>ten</max>",
            "<max/>",
            "<max>1</max><max>2</max>",
        ] {
            assert_eq!(
                parse(&query(&format!("<set xmlns='{RSM}'>{bad}</set>"))),
                Err(RsmError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            parse(&query(&format!(
                "<set xmlns='{RSM}'><index>3</index></set>"
            ))),
            Err(RsmError::IndexUnsupported)
        );
        assert_eq!(
            parse(&query(&format!("<set xmlns='{RSM}'/><set xmlns='{RSM}'/>"))),
            Err(RsmError::Malformed)
        );
    }

    #[test]
    fn answer_lists_first_last_count() {
        let a = answer(Some(("5", Some(2))), Some("9"), Some(20));
        let first = a.get_child("first", RSM);
        assert_eq!(first.and_then(|f| f.attr("index")), Some("2"));
        assert_eq!(first.map(|f| f.text()).as_deref(), Some("5"));
        assert_eq!(
            a.get_child("last", RSM).map(|f| f.text()).as_deref(),
            Some("9")
        );
        assert_eq!(
            a.get_child("count", RSM).map(|f| f.text()).as_deref(),
            Some("20")
        );
        let empty = answer(None, None, Some(0));
        assert!(empty.get_child("first", RSM).is_none());
        assert!(empty.get_child("last", RSM).is_none());
        assert_eq!(
            empty.get_child("count", RSM).map(|f| f.text()).as_deref(),
            Some("0")
        );
        let unknown = answer(Some(("5", None)), Some("9"), None);
        let first = unknown.get_child("first", RSM);
        assert_eq!(
            first.map(|f| (f.attr("index"), f.text())),
            Some((None, "5".into()))
        );
        assert!(unknown.get_child("count", RSM).is_none());
    }
}
