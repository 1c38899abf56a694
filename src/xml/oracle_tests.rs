//! Differential test against `rxml` (a restricted-XML parser) on generated, mutated streams:
//! same acceptance, and for accepted streams the same stanza boundaries.

use proptest::prelude::*;
use proptest::sample::select;
use rxml::{Event as RxEvent, Parse, Parser};

use super::{Event, Limits, Scanner};
use crate::xmpp::ns;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const CLOSE: &[u8] = b"</stream:stream>";

fn attr() -> impl Strategy<Value = String> {
    // No `xmlns`/`xmlns:p` here: rxml 0.11 lets a repeated namespace declaration override the
    // first, where XML's unique-attribute rule (which we enforce) refuses it.
    let names = select(vec![
        "to", "from", "type", "id", "a", "b", "c", "d", "xml:lang", "p:a", "r:a", "xmlns:r", "é",
    ]);
    let values = select(vec![
        "",
        "x",
        "urn:p",
        "&amp;",
        "&apos;x&quot;",
        "&#x41;&#66;",
        "b&#10;c",
        "é€",
        ">",
        "]]>",
    ]);
    (names, values, any::<bool>()).prop_map(|(n, v, dq)| {
        if dq {
            format!(" {n}=\"{v}\"")
        } else {
            format!(" {n}='{v}'")
        }
    })
}

fn head() -> impl Strategy<Value = (String, String)> {
    let names = select(vec![
        "message",
        "presence",
        "iq",
        "body",
        "x",
        "iq",
        "p:x",
        "q:y",
        "stream:error",
        "é",
    ]);
    let decls = select(vec![
        "",
        " xmlns:p='urn:p'",
        " xmlns='urn:d'",
        " xmlns:q='urn:p' xmlns:p='urn:p'",
        " xmlns:p='urn:p' xmlns:q='urn:q' xmlns='urn:d'",
    ]);
    (names, decls, prop::collection::vec(attr(), 0..4))
        .prop_map(|(n, d, a)| (n.to_string(), format!("{n}{d}{}", a.concat())))
}

fn text() -> impl Strategy<Value = String> {
    select(vec![
        "hi",
        " ",
        "&lt;&gt;",
        "&#x263A;",
        "é",
        "]]",
        ">",
        "\n",
        "<![CDATA[<&]]]>",
        "a&amp;b",
    ])
    .prop_map(String::from)
}

fn element() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![head().prop_map(|(_, h)| format!("<{h}/>")), text()];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (head(), prop::collection::vec(inner, 0..4))
            .prop_map(|((n, h), kids)| format!("<{h}>{}</{n}>", kids.concat()))
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let item = (select(vec!["", " ", "\n\t"]), element());
    prop::collection::vec(item, 0..5).prop_map(|items| {
        items
            .into_iter()
            .flat_map(|(ws, e)| [ws.to_string(), e])
            .collect::<String>()
            .into_bytes()
    })
}

fn mutation() -> impl Strategy<Value = (prop::sample::Index, usize, &'static [u8])> {
    let snippets: Vec<&'static [u8]> = vec![
        b"<",
        b">",
        b"&",
        b"'",
        b"\"",
        b"]]>",
        b"&foo;",
        b"&#0;",
        b"<!--x-->",
        b"<?pi?>",
        b":",
        b"\x01",
        b"</x>",
        b"<x>",
        b" xmlns:p=''",
        b" a='1'",
        b"=",
        b"/",
        "\u{FFFE}".as_bytes(),
        b"p:",
        b"",
        b"&#xD800;",
        b"\xff",
        b" ",
        b"<![CDATA[",
        b"r:",
    ];
    (any::<prop::sample::Index>(), 0usize..3, select(snippets))
}

/// Our verdict: the stanzas up to a clean `</stream:stream>`, or `None` if refused or unfinished.
fn ours(input: &[u8], chunk: usize) -> Option<Vec<Vec<u8>>> {
    let limits = Limits {
        max_stanza_bytes: 1 << 20,
        max_depth: 1 << 10,
        max_attrs: 1 << 10,
    };
    let mut s = Scanner::new(limits, ns::CLIENT);
    let mut stanzas = Vec::new();
    for part in input.chunks(chunk) {
        s.feed(part);
        loop {
            match s.next_event() {
                Ok(Some(Event::Stanza(st))) => stanzas.push(st.into_bytes()),
                Ok(Some(Event::StreamClose)) => return Some(stanzas),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return None,
            }
        }
    }
    None
}

/// rxml's verdict, with XMPP's extra rule: only literal whitespace between stanzas
/// (no references, no CDATA sections, not even empty ones).
fn oracle(input: &[u8]) -> Option<Vec<Vec<u8>>> {
    let ws_only = |b: &[u8]| b.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    let mut p = Parser::new();
    let mut rest = input;
    let (mut off, mut depth, mut gap_start) = (0, 0, 0);
    let mut stanzas = Vec::new();
    loop {
        let ev = match p.parse(&mut rest, true) {
            Ok(Some(ev)) => ev,
            Ok(None) => return Some(stanzas),
            Err(_) => return None,
        };
        let len = ev.metrics().len();
        match ev {
            RxEvent::StartElement(..) => {
                if repeats_a_declaration(&input[off..off + len]) {
                    return None;
                }
                depth += 1;
                if depth == 2 && !ws_only(&input[gap_start..off]) {
                    return None;
                }
                // XMPP's rule: a stream header is no stanza (refused at its name).
                let tag = &input[off..off + len];
                if depth == 2
                    && tag.starts_with(b"<stream:stream")
                    && matches!(
                        tag.get(14),
                        Some(b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n')
                    )
                {
                    return None;
                }
                if depth == 1 {
                    gap_start = off + len;
                }
            }
            RxEvent::EndElement(..) => {
                if depth == 2 {
                    // Find the stanza's start: it is the first `<` after the gap.
                    let start = gap_start
                        + input[gap_start..]
                            .iter()
                            .position(|&c| c == b'<')
                            .unwrap_or(0);
                    stanzas.push(input[start..off + len].to_vec());
                    gap_start = off + len;
                }
                if depth == 1 && !ws_only(&input[gap_start..off]) {
                    return None;
                }
                depth -= 1;
            }
            _ => {}
        }
        off += len;
    }
}

/// rxml 0.11 lets a repeated namespace declaration (`xmlns='a' xmlns='b'`) override the first;
/// XML's unique-attribute rule, which we enforce, refuses it. Scans the start tag's attribute
/// names outside quoted values.
fn repeats_a_declaration(tag: &[u8]) -> bool {
    let mut names: Vec<&[u8]> = Vec::new();
    let mut quote = 0u8;
    for i in 0..tag.len() {
        let c = tag[i];
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = c;
        } else if c.is_ascii_whitespace() && tag[i + 1..].starts_with(b"xmlns") {
            let rest = &tag[i + 1..];
            let end = rest
                .iter()
                .position(|&c| c == b'=' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if names.contains(&&rest[..end]) {
                return true;
            }
            names.push(&rest[..end]);
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("XML_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_rxml(body in body(), muts in prop::collection::vec(mutation(), 0..2), chunk in 1usize..40) {
        let mut body = body;
        for (at, del, snippet) in muts {
            let at = if body.is_empty() { 0 } else { at.index(body.len() + 1) };
            let del = del.min(body.len() - at);
            body.splice(at..at + del, snippet.iter().copied());
        }
        let input = [HEADER, &body, CLOSE].concat();
        let want = oracle(&input);
        if std::env::var("XML_ORACLE_STATS").is_ok() {
            eprintln!("ORACLE {}", if want.is_some() { "accept" } else { "reject" });
        }
        prop_assert_eq!(ours(&input, input.len()), want.clone(), "input: {:?}", String::from_utf8_lossy(&input));
        prop_assert_eq!(ours(&input, chunk), want, "chunk {}", chunk);
    }
}

#[test]
fn oracle_sanity() {
    let input = [
        HEADER,
        b" <message><body>x</body></message>\n<presence/>",
        CLOSE,
    ]
    .concat();
    let want = Some(vec![
        b"<message><body>x</body></message>".to_vec(),
        b"<presence/>".to_vec(),
    ]);
    assert_eq!(oracle(&input), want);
    assert_eq!(ours(&input, 1), want);
    let bad = [HEADER, b"<message>&foo;</message>", CLOSE].concat();
    assert_eq!(oracle(&bad), None);
    assert_eq!(ours(&bad, 3), None);
}
