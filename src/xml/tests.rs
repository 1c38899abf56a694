//! Scanner, stanza and tree behaviour tests.

use super::*;
use crate::xmpp::{ns, StreamErrorCondition as C};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// A comparable summary of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Open(StreamHeader),
    Stanza(Vec<u8>),
    Close,
    Ws,
}

fn summarize(e: Event) -> Ev {
    match e {
        Event::StreamOpen(h) => Ev::Open(h),
        Event::Stanza(s) => Ev::Stanza(s.into_bytes()),
        Event::StreamClose => Ev::Close,
        Event::Whitespace => Ev::Ws,
    }
}

/// Feeds `input` in chunks of `chunk` bytes, draining events after each feed.
fn scan_with(limits: Limits, input: &[u8], chunk: usize) -> (Vec<Ev>, Option<XmlError>) {
    let mut s = Scanner::new(limits, ns::CLIENT);
    let mut evs = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        s.feed(part);
        loop {
            match s.next_event() {
                Ok(Some(e)) => evs.push(summarize(e)),
                Ok(None) => break,
                Err(e) => return (evs, Some(e)),
            }
        }
    }
    (evs, None)
}

fn scan(input: &str) -> (Vec<Ev>, Option<XmlError>) {
    scan_with(Limits::default(), input.as_bytes(), usize::MAX)
}

/// The error a stream body (after the header) produces, checked for every feeding pattern.
fn body_err(body: &str) -> XmlError {
    let input = format!("{HEADER}{body}");
    let (_, one) = scan(&input);
    let (_, bytewise) = scan_with(Limits::default(), input.as_bytes(), 1);
    assert_eq!(one, bytewise, "one-shot and bytewise differ for {body:?}");
    one.unwrap_or_else(|| panic!("accepted {body:?}"))
}

fn stanzas(input: &str) -> Vec<Stanza> {
    let mut s = Scanner::new(Limits::default(), ns::CLIENT);
    s.feed(input.as_bytes());
    let mut out = Vec::new();
    while let Some(e) = s.next_event().unwrap() {
        if let Event::Stanza(st) = e {
            out.push(st);
        }
    }
    out
}

fn one(stanza: &str) -> Stanza {
    Stanza::parse(stanza.as_bytes().to_vec()).unwrap()
}

fn realistic_stream() -> String {
    let mut s = String::from(HEADER);
    s.push_str("\n  <iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r&amp;1</resource></bind></iq>");
    s.push_str("<presence><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/></presence>\r\n");
    for i in 0..20 {
        s.push_str(&format!(
            "<message to=\"bob@example.com/r{i}\" type='chat' id='m{i}' xml:lang='en'>\
             <body>Hello &lt;{i}&gt; &#x263A; caf\u{e9} <![CDATA[<raw> & ]]]]></body>\
             <x:active xmlns:x='http://jabber.org/protocol/chatstates'/></message> "
        ));
    }
    s.push_str("<r xmlns='urn:xmpp:sm:3'/>\t\t<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>");
    s
}

#[test]
fn bytewise_feeding_matches_one_shot() {
    let input = realistic_stream();
    let (all, err) = scan(&input);
    assert_eq!(err, None);
    assert!(matches!(all.first(), Some(Ev::Open(h)) if h.to.as_deref() == Some("example.com")));
    assert_eq!(all.last(), Some(&Ev::Close));
    let n_stanzas = all.iter().filter(|e| matches!(e, Ev::Stanza(_))).count();
    assert_eq!(n_stanzas, 24);
    for chunk in [1, 2, 3, 7, 64, 1000] {
        let (evs, err) = scan_with(Limits::default(), input.as_bytes(), chunk);
        assert_eq!(err, None, "chunk {chunk}");
        assert_eq!(evs, all, "chunk {chunk}");
    }
}

#[test]
fn header_fields_and_lang() {
    let (evs, err) = scan(HEADER);
    assert_eq!(err, None);
    let want = StreamHeader {
        to: Some("example.com".into()),
        from: None,
        id: None,
        version: Some("1.0".into()),
        lang: Some("en".into()),
    };
    assert_eq!(evs, [Ev::Open(want)]);
}

#[test]
fn whitespace_runs_are_coalesced_however_split() {
    let input = format!("{HEADER} \n\t <presence/>\n\n<presence/>  ");
    let want = {
        let (evs, err) = scan(&input);
        assert_eq!(err, None);
        evs
    };
    let kinds: Vec<_> = want.iter().map(std::mem::discriminant).collect();
    let ws = std::mem::discriminant(&Ev::Ws);
    assert_eq!(kinds.iter().filter(|k| **k == ws).count(), 3);
    assert_eq!(scan_with(Limits::default(), input.as_bytes(), 1).0, want);
}

#[test]
fn restricted_xml_is_refused() {
    let cases = [
        ("<!-- hi -->", XmlError::Comment),
        ("<message><!-- hi --></message>", XmlError::Comment),
        ("<?pi x?>", XmlError::ProcessingInstruction),
        ("<message><?pi?></message>", XmlError::ProcessingInstruction),
        ("<?xml version='1.0'?>", XmlError::ProcessingInstruction),
        ("<!DOCTYPE x>", XmlError::Doctype),
        ("<message><!DOCTYPE x></message>", XmlError::Doctype),
        ("<message>&nbsp;</message>", XmlError::UndeclaredEntity),
        ("<message a='&foo;'/>", XmlError::UndeclaredEntity),
    ];
    for (body, want) in cases {
        let e = body_err(body);
        assert_eq!(e, want, "{body}");
        assert_eq!(e.condition(), C::RestrictedXml, "{body}");
    }
}

#[test]
fn prolog_restrictions() {
    let cases = [
        ("<!DOCTYPE stream>", XmlError::Doctype, C::RestrictedXml),
        (
            "<!-- x --><stream:stream>",
            XmlError::Comment,
            C::RestrictedXml,
        ),
        (
            "<?php ?>",
            XmlError::ProcessingInstruction,
            C::RestrictedXml,
        ),
        (
            " <?xml version='1.0'?>",
            XmlError::ProcessingInstruction,
            C::RestrictedXml,
        ),
        (
            "<?xml version='1.0' encoding='ISO-8859-1'?>",
            XmlError::UnsupportedEncoding,
            C::UnsupportedEncoding,
        ),
        (
            "<?xml version='1.1'?>",
            XmlError::UnsupportedXmlVersion,
            C::NotWellFormed,
        ),
        (
            "<?xml encoding='UTF-8'?>",
            XmlError::BadXmlDecl,
            C::NotWellFormed,
        ),
        ("<message/>", XmlError::NotStreamHeader, C::NotWellFormed),
        ("hello", XmlError::NotStreamHeader, C::NotWellFormed),
    ];
    for (input, want, cond) in cases {
        for chunk in [1, usize::MAX] {
            let (_, e) = scan_with(Limits::default(), input.as_bytes(), chunk);
            assert_eq!(e.as_ref(), Some(&want), "{input} chunk {chunk}");
            assert_eq!(want.condition(), cond);
        }
    }
    let ok = "<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes' ?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_eq!(scan(ok).1, None);
}

/// Found by fuzzing (scanner target): an XML declaration whose `>` lies past the 256-byte bound was
/// parsed when it arrived in one read but refused when split, so the same bytes got different answers.
#[test]
fn long_xml_declaration_is_refused_however_split() {
    let pad = " ".repeat(300);
    for decl in [
        format!("<?xml version='1.0'{pad}?>"),
        format!("<?xml version='1.2'{pad}?>"),
    ] {
        let input = format!("{decl}<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        for chunk in [1, 7, usize::MAX] {
            let (evs, e) = scan_with(Limits::default(), input.as_bytes(), chunk);
            assert_eq!(
                (evs, e),
                (vec![], Some(XmlError::BadXmlDecl)),
                "chunk {chunk}"
            );
        }
    }
    // At the bound itself the declaration is still fine.
    let decl = format!("<?xml version='1.0'{}?>", " ".repeat(256 - 21));
    assert_eq!(decl.len(), 256);
    let input = format!("{decl}<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    for chunk in [1, usize::MAX] {
        assert_eq!(
            scan_with(Limits::default(), input.as_bytes(), chunk).1,
            None
        );
    }
}

#[test]
fn stream_header_namespaces() {
    let st = "xmlns:stream='http://etherx.jabber.org/streams'";
    let cases = [
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>".to_string(),
            XmlError::InvalidStreamNamespace,
            C::InvalidNamespace,
        ),
        (
            "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>"
                .to_string(),
            XmlError::BadStreamPrefix,
            C::BadNamespacePrefix,
        ),
        (
            "<stream xmlns='http://etherx.jabber.org/streams'>".to_string(),
            XmlError::BadStreamPrefix,
            C::BadNamespacePrefix,
        ),
        (
            format!("<stream:stream xmlns='jabber:server' {st}>"),
            XmlError::InvalidDefaultNamespace,
            C::InvalidNamespace,
        ),
        (
            format!("<stream:stream {st}>"),
            XmlError::InvalidDefaultNamespace,
            C::InvalidNamespace,
        ),
        (
            "<stream:stream xmlns='jabber:client'>".to_string(),
            XmlError::UnboundPrefix,
            C::NotWellFormed,
        ),
        (
            format!("<stream:stream xmlns='jabber:client' {st}/>"),
            XmlError::EmptyStreamHeader,
            C::NotWellFormed,
        ),
        (
            format!("<stream:stream xmlns='jabber:client' {st} a:b='1'>"),
            XmlError::UnboundPrefix,
            C::NotWellFormed,
        ),
    ];
    for (input, want, cond) in cases {
        let (_, e) = scan(&input);
        assert_eq!(e, Some(want.clone()), "{input}");
        assert_eq!(want.condition(), cond);
    }
}

/// A second stream header inside the stream is refused at its name (before, it was an element
/// that swallowed every later stanza), however the bytes are split; names that only start like it
/// are stanzas.
#[test]
fn stream_header_inside_the_stream() {
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    for body in [
        header.to_owned(),
        format!("<presence/>{header}<message/>"),
        "<stream:stream/>".to_owned(),
        "<stream:stream\n>".to_owned(),
    ] {
        assert_eq!(body_err(&body), XmlError::StreamHeaderInStream, "{body}");
    }
    assert_eq!(
        XmlError::StreamHeaderInStream.condition(),
        C::UnsupportedStanzaType
    );
    let (evs, err) = scan(&format!("{HEADER}<stream:streams/><stream:features/><s/>"));
    assert_eq!(err, None);
    assert_eq!(evs.len(), 4, "{evs:?}");
}

#[test]
fn stanza_before_header_and_text_between_stanzas() {
    assert_eq!(scan("<message/>").1, Some(XmlError::NotStreamHeader));
    for body in ["hello", "<presence/>x", "&#32;", "<![CDATA[ ]]>"] {
        assert_eq!(body_err(body), XmlError::TextBetweenStanzas, "{body}");
    }
    assert_eq!(body_err("</stream:stream>x"), XmlError::DataAfterClose);
    assert_eq!(body_err("</stream>"), XmlError::MismatchedEndTag);
    assert_eq!(body_err("</>"), XmlError::MismatchedEndTag);
    assert_eq!(body_err("</stream:stream x>"), XmlError::BadTagSyntax);
}

#[test]
fn well_formedness_errors() {
    let cases = [
        ("<message></presence>", XmlError::MismatchedEndTag),
        ("<message><body></message>", XmlError::MismatchedEndTag),
        // An end tag's name is checked only against its start tag's (validated) name.
        ("<message></1message>", XmlError::MismatchedEndTag),
        ("<message><body></>", XmlError::MismatchedEndTag),
        ("<message a='1' a='2'/>", XmlError::DuplicateAttribute),
        (
            "<message xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>",
            XmlError::DuplicateAttribute,
        ),
        ("<message a='<'/>", XmlError::LtInAttributeValue),
        ("<message a=1/>", XmlError::BadTagSyntax),
        ("<message a='1'b='2'/>", XmlError::BadTagSyntax),
        ("<1message/>", XmlError::InvalidName),
        ("<a:b:c/>", XmlError::InvalidName),
        ("<p:message/>", XmlError::UnboundPrefix),
        ("<message><p:x/></message>", XmlError::UnboundPrefix),
        ("<message p:a='1'/>", XmlError::UnboundPrefix),
        (
            "<message><x xmlns:p='u'/><p:y/></message>",
            XmlError::UnboundPrefix,
        ),
        ("<message xmlns:p=''/>", XmlError::ReservedNamespace),
        (
            "<message xmlns:xml='urn:other'/>",
            XmlError::ReservedNamespace,
        ),
        ("<xmlns:message/>", XmlError::ReservedNamespace),
        ("<message>a ]]> b</message>", XmlError::CdataEndInText),
        ("<message>&#0;</message>", XmlError::InvalidCharRef),
        ("<message a='&#xFFFE;'/>", XmlError::InvalidCharRef),
        ("<message>& x</message>", XmlError::MalformedReference),
        ("<message>\u{1}</message>", XmlError::InvalidChar),
        ("<message a='\u{1b}'/>", XmlError::InvalidChar),
        ("<message>\u{FFFF}</message>", XmlError::InvalidChar),
        ("<message><![FOO[x]]></message>", XmlError::BadMarkup),
    ];
    for (body, want) in cases {
        let e = body_err(body);
        assert_eq!(e, want, "{body}");
        assert_eq!(e.condition(), C::NotWellFormed, "{body}");
    }
    // Invalid UTF-8 (not expressible in a &str literal).
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(b"<message>\xc3\x28</message>");
    assert_eq!(
        scan_with(Limits::default(), &input, 1).1,
        Some(XmlError::InvalidUtf8)
    );
    // `xml:` is always bound.
    assert_eq!(scan(&format!("{HEADER}<message xml:lang='en'/>")).1, None);
}

#[test]
fn limits_are_policy_violations() {
    let limits = Limits {
        max_stanza_bytes: 256,
        max_depth: 3,
        max_attrs: 6,
    };
    let run = |body: &str, chunk| scan_with(limits, format!("{HEADER}{body}").as_bytes(), chunk).1;
    for chunk in [1, usize::MAX] {
        let big = format!("<message><body>{}</body></message>", "x".repeat(230));
        assert_eq!(run(&big, chunk), Some(XmlError::StanzaTooLarge(256)));
        let fits = format!("<message><body>{}</body></message>", "x".repeat(224));
        assert_eq!(run(&fits, chunk), None);
        assert_eq!(
            run("<a><b><c><d/></c></b></a>", chunk),
            Some(XmlError::TooDeep(3))
        );
        assert_eq!(run("<a><b><c/></b></a>", chunk), None);
        let seven = "<a><b a='' b='' c='' d='' e='' f='' g=''/></a>";
        assert_eq!(run(seven, chunk), Some(XmlError::TooManyAttributes(6)));
        assert_eq!(
            run("<a a='' b='' c='' d='' e='' xmlns:f='u'/>", chunk),
            None
        );
    }
    for e in [
        XmlError::StanzaTooLarge(1),
        XmlError::TooDeep(1),
        XmlError::TooManyAttributes(1),
    ] {
        assert_eq!(e.condition(), C::PolicyViolation);
    }
}

#[test]
fn oversized_partial_stanza_is_refused_before_its_end() {
    let limits = Limits {
        max_stanza_bytes: 200,
        ..Limits::default()
    };
    let mut s = Scanner::new(limits, ns::CLIENT);
    s.feed(HEADER.as_bytes());
    assert!(matches!(s.next_event(), Ok(Some(Event::StreamOpen(_)))));
    s.feed(b"<message><body>");
    assert!(matches!(s.next_event(), Ok(None)));
    s.feed(&[b'x'; 200]);
    assert_eq!(s.next_event().unwrap_err(), XmlError::StanzaTooLarge(200));
    // The scanner stays dead.
    s.feed(b"</body></message>");
    assert_eq!(s.next_event().unwrap_err(), XmlError::StanzaTooLarge(200));
}

#[test]
fn escaped_attributes_are_unescaped() {
    let st = one(
        "<message to='a&apos;b@x' from=\"&#x41;&#66;@y\" id='&lt;&amp;&gt;&quot;' extra='t&#9;u'/>",
    );
    assert_eq!(st.to().unwrap(), "a'b@x");
    assert_eq!(st.from().unwrap(), "AB@y");
    assert_eq!(st.id().unwrap(), "<&>\"");
    assert_eq!(st.attr("extra").unwrap(), "t\tu");
    assert_eq!(st.attr("missing"), None);
    assert_eq!(st.type_(), None);
}

#[test]
fn cdata_sections() {
    let st = one(
        "<message><body><![CDATA[<b>&amp; ]] ]]></body><body2>x<![CDATA[]]>y</body2></message>",
    );
    let t = st.tree().unwrap();
    assert_eq!(
        t.get_child("body", ns::CLIENT).unwrap().text(),
        "<b>&amp; ]] "
    );
    assert_eq!(t.get_child("body2", ns::CLIENT).unwrap().text(), "xy");
    // A CDATA section split across feeds, with `]]` and `>` on either side of the split.
    let input = format!("{HEADER}<message><body><![CDATA[a]]]>></body></message>");
    let (evs, err) = scan_with(Limits::default(), input.as_bytes(), 1);
    assert_eq!(err, None);
    assert_eq!(evs.len(), 2);
}

#[test]
fn kinds_and_namespaces() {
    assert_eq!(one("<message/>").kind(), StanzaKind::Message);
    assert_eq!(
        one("<presence xmlns='jabber:client'/>").kind(),
        StanzaKind::Presence
    );
    assert_eq!(one("<iq/>").kind(), StanzaKind::Iq);
    assert_eq!(one("<iq xmlns='urn:other'/>").kind(), StanzaKind::Other);
    assert_eq!(
        one("<x:iq xmlns:x='jabber:client'/>").kind(),
        StanzaKind::Other
    );
    assert_eq!(
        one("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").kind(),
        StanzaKind::Other
    );
    assert_eq!(one("<iq xmlns='urn:other'/>").xmlns(), Some("urn:other"));
    assert_eq!(one("<iq/>").xmlns(), None);
    let mut s = Scanner::new(Limits::default(), ns::COMPONENT_ACCEPT);
    s.feed(b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'><message/>");
    assert!(matches!(s.next_event(), Ok(Some(Event::StreamOpen(_)))));
    let Ok(Some(Event::Stanza(m))) = s.next_event() else {
        panic!("no stanza")
    };
    assert_eq!(m.kind(), StanzaKind::Message);
    assert_eq!(m.tree().unwrap().ns, ns::COMPONENT_ACCEPT);
}

#[test]
fn child_name_and_ns() {
    let st = one("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>");
    assert_eq!(
        (st.child_name(), st.child_ns().as_deref()),
        (Some("query"), Some("jabber:iq:roster"))
    );
    let st = one("<iq xmlns:d='http://jabber.org/protocol/disco#info'>\n <d:query/><other/></iq>");
    assert_eq!(st.child_name(), Some("query"));
    assert_eq!(st.child_ns().unwrap(), ns::DISCO_INFO);
    let st = one("<message xmlns='jabber:client'><body>x</body></message>");
    assert_eq!(
        (st.child_name(), st.child_ns().as_deref()),
        (Some("body"), Some("jabber:client"))
    );
    let st = one("<message><body/></message>");
    assert_eq!(st.child_ns().unwrap(), ns::CLIENT);
    let st = one("<iq><p:ping xmlns:p='urn:xmpp:&#112;ing'/></iq>");
    assert_eq!(
        (st.child_name(), st.child_ns().as_deref()),
        (Some("ping"), Some(ns::PING))
    );
    let st = one("<iq><a:x xmlns:a='urn:a' xmlns='urn:b'/></iq>");
    assert_eq!(st.child_ns().unwrap(), "urn:a");
    assert_eq!(one("<presence/>").child_name(), None);
    assert_eq!(one("<presence/>").child_ns(), None);
    // A prefix bound on the stream header.
    let body =
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    let st = stanzas(&format!("{HEADER}{body}")).remove(0);
    assert_eq!(st.name(), "stream:error");
    assert_eq!(st.kind(), StanzaKind::Other);
    let t = st.tree().unwrap();
    assert_eq!((t.name.as_str(), t.ns.as_str()), ("error", ns::STREAMS));
    assert!(Stanza::parse(body.as_bytes().to_vec()).is_err());
}

#[test]
fn set_from_and_set_to_in_place() {
    let cases = [
        (
            "<message to='a@x' from='old@y' type='chat'><body/></message>",
            "<message to='b@x' from='new&apos;@y/r' type='chat'><body/></message>",
        ),
        (
            "<message from=\"old@y\" to=\"a@x\"><body/></message>",
            "<message from=\"new&apos;@y/r\" to=\"b@x\"><body/></message>",
        ),
        (
            "<message><body/></message>",
            "<message to='b@x' from='new&apos;@y/r'><body/></message>",
        ),
        ("<message/>", "<message to='b@x' from='new&apos;@y/r'/>"),
        (
            "<message from=''\n/>",
            "<message to='b@x' from='new&apos;@y/r'\n/>",
        ),
    ];
    for (input, want) in cases {
        let mut st = one(input);
        st.set_from("new'@y/r");
        st.set_to("b@x");
        assert_eq!(std::str::from_utf8(st.bytes()).unwrap(), want, "{input}");
        assert_eq!(st.from().unwrap(), "new'@y/r");
        assert_eq!(st.to().unwrap(), "b@x");
        assert_eq!(st.child_name(), one(input).child_name());
        // The edited bytes still parse to the same index.
        let re = one(want);
        assert_eq!(
            (re.from(), re.to(), re.type_(), re.child_name()),
            (st.from(), st.to(), st.type_(), st.child_name())
        );
        // Shrinking edits keep the ranges right too.
        st.set_from("s");
        assert_eq!(st.from().unwrap(), "s");
        assert_eq!(st.to().unwrap(), "b@x");
        assert_eq!(
            st.bytes(),
            one(std::str::from_utf8(st.bytes()).unwrap()).bytes()
        );
    }
}

#[test]
fn stamping_within_spare_capacity_edits_the_same_bytes_without_a_new_buffer() {
    for input in [
        "<message to='a@x' from='old@y' type='chat'><body>hi &amp; bye</body></message>",
        "<message from=\"a-much-longer-old-value@example.org/r\" to=\"a@x\"><body/></message>",
        "<message><body/></message>",
        "<message/>",
        "<message from=''\n/>",
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
    ] {
        for (from, to) in [("new@y/r", "b@x"), ("s", "bob@example.com/phone"), ("", "")] {
            let mut tight = one(input);
            let mut roomy = Vec::with_capacity(input.len() + 64);
            roomy.extend_from_slice(input.as_bytes());
            let mut roomy = Stanza::parse(roomy).unwrap();
            let at = roomy.bytes().as_ptr();
            for st in [&mut tight, &mut roomy] {
                st.set_from(from);
                st.set_to(to);
            }
            assert_eq!(roomy.bytes(), tight.bytes(), "{input} {from} {to}");
            assert_eq!(roomy.bytes().as_ptr(), at, "{input}: edited in place");
            let re = one(std::str::from_utf8(roomy.bytes()).unwrap());
            let seen = |s: &Stanza| {
                (
                    s.from().map(|v| v.into_owned()),
                    s.to().map(|v| v.into_owned()),
                    s.type_().map(|v| v.into_owned()),
                    s.id().map(|v| v.into_owned()),
                    s.child_name().map(str::to_owned),
                    s.kind(),
                )
            };
            assert_eq!(seen(&roomy), seen(&re), "{input} {from} {to}");
            assert_eq!(roomy.from().as_deref(), Some(from));
        }
    }
    // A value that needs escaping, or an edit larger than the room, takes a new buffer.
    let mut roomy = Vec::with_capacity(64);
    roomy.extend_from_slice(b"<message/>");
    let mut st = Stanza::parse(roomy).unwrap();
    st.set_from("o'neil@x");
    assert_eq!(st.bytes(), b"<message from='o&apos;neil@x'/>");
    st.set_to(&"x".repeat(100));
    assert_eq!(st.to().unwrap().len(), 100);
}

#[test]
fn a_scanner_with_headroom_leaves_room_to_stamp_from() {
    let mut sc = Scanner::new(Limits::default(), ns::CLIENT);
    sc.set_headroom(attr_len("from", "romeo@example.com/balcony"));
    sc.feed(HEADER.as_bytes());
    sc.feed(b"<message to='juliet@example.com'><body>1</body></message><message to='juliet@example.com'><body>2</body></message>");
    let mut n = 0;
    while let Ok(Some(ev)) = sc.next_event() {
        if let Event::Stanza(mut st) = ev {
            let at = st.bytes().as_ptr();
            st.set_from("romeo@example.com/balcony");
            assert_eq!(st.bytes().as_ptr(), at, "stamped in place");
            assert_eq!(st.from().as_deref(), Some("romeo@example.com/balcony"));
            n += 1;
        }
    }
    assert_eq!(n, 2);
}

#[test]
fn remove_attr_in_place() {
    let mut st = one("<iq type='get' id='1' to='x'><query xmlns='jabber:iq:version'/></iq>");
    st.remove_attr("id");
    assert_eq!(
        st.bytes(),
        b"<iq type='get' to='x'><query xmlns='jabber:iq:version'/></iq>"
    );
    assert_eq!(
        (st.id(), st.to().as_deref(), st.child_name()),
        (None, Some("x"), Some("query"))
    );
    st.remove_attr("nope");
    st.remove_attr("type");
    assert_eq!(
        st.bytes(),
        b"<iq to='x'><query xmlns='jabber:iq:version'/></iq>"
    );
    let mut st = one("<iq xmlns='jabber:client' to='x'><query/></iq>");
    st.remove_attr("xmlns");
    assert_eq!(st.bytes(), b"<iq to='x'><query/></iq>");
    assert_eq!(
        (st.xmlns(), st.child_ns().as_deref()),
        (None, Some(ns::CLIENT))
    );
}

#[test]
fn tree_round_trip() {
    let src = "<iq type='result' id='r&amp;1' xml:lang='en'><query xmlns='jabber:iq:roster' ver='v1'>\
        <item jid='a@x' name='A &lt;B&gt;'><group>Friends</group></item><p:ext xmlns:p='urn:p'>t&#x41;</p:ext></query></iq>";
    let st = one(src);
    let t = st.tree().unwrap();
    assert_eq!((t.name.as_str(), t.ns.as_str()), ("iq", ns::CLIENT));
    assert_eq!(
        t.attrs,
        [
            ("type".into(), "result".into()),
            ("id".into(), "r&1".into()),
            ("xml:lang".into(), "en".into())
        ]
    );
    let q = t.get_child("query", ns::ROSTER).unwrap();
    assert_eq!(q.attr("ver"), Some("v1"));
    let item = q.get_child("item", ns::ROSTER).unwrap();
    assert_eq!(item.attr("name"), Some("A <B>"));
    assert_eq!(
        item.get_child("group", ns::ROSTER).unwrap().text(),
        "Friends"
    );
    assert_eq!(q.get_child("ext", "urn:p").unwrap().text(), "tA");
    // Serialize, reparse: same tree.
    let again = Stanza::from_element(&t);
    assert_eq!(again.tree().unwrap(), t);
    assert_eq!(again.id().unwrap(), "r&1");
    assert_eq!(again.child_ns().unwrap(), ns::ROSTER);
}

#[test]
fn element_builder_and_write_to() {
    let el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("id", "1")
        .with_child(Element::new("ping", ns::PING))
        .with_child(
            Element::new("x", "urn:x").with_child(Element::new("y", "urn:x").with_text("a<b\u{1}")),
        );
    let mut out = Vec::new();
    el.write_to(&mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "<iq type='result' id='1'><ping xmlns='urn:xmpp:ping'/><x xmlns='urn:x'><y>a&lt;b</y></x></iq>"
    );
    let mut out = Vec::new();
    Element::new("features", ns::STREAMS).write_to(&mut out);
    assert_eq!(out, b"<features xmlns='http://etherx.jabber.org/streams'/>");
    let st = Stanza::from_element(&el);
    assert_eq!(
        (st.kind(), st.type_().as_deref(), st.child_name()),
        (StanzaKind::Iq, Some("result"), Some("ping"))
    );
    assert_eq!(el.child_elements().count(), 2);
}

#[test]
fn reset_expects_a_new_header() {
    let mut s = Scanner::new(Limits::default(), ns::CLIENT);
    s.feed(HEADER.as_bytes());
    s.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><leftover");
    assert!(matches!(s.next_event(), Ok(Some(Event::StreamOpen(_)))));
    assert!(matches!(s.next_event(), Ok(Some(Event::Stanza(_)))));
    assert!(s.has_buffered());
    s.reset();
    assert!(!s.has_buffered());
    // Stanzas are refused until a new header arrives; a new XML declaration is allowed again.
    s.feed(HEADER.as_bytes());
    assert!(matches!(s.next_event(), Ok(Some(Event::StreamOpen(_)))));
    s.feed(b"<presence/>");
    assert!(matches!(s.next_event(), Ok(Some(Event::Stanza(_)))));
    assert!(!s.has_buffered());
    s.reset();
    s.feed(b"<presence/>");
    assert_eq!(s.next_event().unwrap_err(), XmlError::NotStreamHeader);
}

#[test]
fn whitespace_before_a_restarted_streams_declaration_is_the_old_streams() {
    // go-xmpp sends `</auth>\n`, then (after `<success/>`) `<?xml …?><stream:stream …>`: the
    // newline is whitespace between the old stream's elements, the declaration starts the new one.
    let restart = format!("\n \r\n{HEADER}");
    for bytewise in [false, true] {
        let mut s = Scanner::new(Limits::default(), ns::CLIENT);
        s.feed(HEADER.as_bytes());
        assert!(matches!(s.next_event(), Ok(Some(Event::StreamOpen(_)))));
        s.reset();
        let mut got = None;
        if bytewise {
            for b in restart.as_bytes() {
                s.feed(std::slice::from_ref(b));
                if let Some(ev) = s.next_event().unwrap() {
                    got = Some(ev);
                }
            }
        } else {
            s.feed(restart.as_bytes());
            got = s.next_event().unwrap();
        }
        assert!(
            matches!(got, Some(Event::StreamOpen(_))),
            "bytewise={bytewise}"
        );
    }
    // A new document may not start with whitespace before its declaration.
    let mut s = Scanner::new(Limits::default(), ns::CLIENT);
    s.feed(restart.as_bytes());
    assert_eq!(s.next_event().unwrap_err(), XmlError::ProcessingInstruction);
}

#[test]
fn parse_rejects_partial_or_trailing() {
    assert_eq!(
        Stanza::parse(b"<message>".to_vec()).unwrap_err(),
        XmlError::Incomplete
    );
    assert_eq!(
        Stanza::parse(b"<message/> ".to_vec()).unwrap_err(),
        XmlError::TrailingData
    );
    assert_eq!(
        Stanza::parse(b" <message/>".to_vec()).unwrap_err(),
        XmlError::TextBetweenStanzas
    );
    assert_eq!(Stanza::parse(Vec::new()).unwrap_err(), XmlError::Incomplete);
    assert_eq!(
        Stanza::parse(b"<m>\x01</m>".to_vec()).unwrap_err(),
        XmlError::InvalidChar
    );
}

#[test]
fn stanza_is_send_and_buffer_handover_is_exact() {
    fn is_send<T: Send + Clone>() {}
    is_send::<Stanza>();
    is_send::<Event>();
    let mut s = Scanner::new(Limits::default(), ns::CLIENT);
    s.feed(HEADER.as_bytes());
    s.next_event().unwrap();
    s.feed(b"<presence/>");
    let Ok(Some(Event::Stanza(p))) = s.next_event() else {
        panic!("no stanza")
    };
    assert_eq!(p.bytes(), b"<presence/>");
    s.feed(b"<message/><iq");
    let Ok(Some(Event::Stanza(m))) = s.next_event() else {
        panic!("no stanza")
    };
    assert_eq!(m.bytes(), b"<message/>");
    assert!(matches!(s.next_event(), Ok(None)));
    s.feed(b"/>");
    let Ok(Some(Event::Stanza(iq))) = s.next_event() else {
        panic!("no stanza")
    };
    assert_eq!(iq.bytes(), b"<iq/>");
}

/// A stanza is moved from the scanner through the c2s event queue into the route's accumulator:
/// every byte of it is copied several times per message.
#[test]
fn stanza_and_index_stay_compact() {
    assert!(std::mem::size_of::<super::elem::Index>() <= 100);
    assert!(std::mem::size_of::<Option<super::elem::AttrRef>>() <= 12);
    assert!(std::mem::size_of::<super::Stanza>() <= 160);
}

/// An IQ get or set carries exactly one payload (RFC 6120 §8.2.3): the index says so without a
/// tree, whatever the text and nesting around it, and follows appended children.
#[test]
fn single_child_is_indexed() {
    for (xml, single) in [
        (
            "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
            true,
        ),
        (
            "<iq> <query xmlns='a'><item/><item/></query> text </iq>",
            true,
        ),
        ("<iq/>", false),
        ("<iq>text only</iq>", false),
        ("<iq><a xmlns='x'/><b xmlns='y'/></iq>", false),
        ("<iq><a xmlns='x'><c/></a>\n<b xmlns='y'/></iq>", false),
    ] {
        assert_eq!(one(xml).has_single_child(), single, "{xml}");
    }
    let mut s = Stanza::parse(b"<iq/>".to_vec()).unwrap();
    s.append_child(b"<x/>");
    assert!(s.has_single_child());
    s.append_child(b"<y/>");
    assert!(!s.has_single_child());
    let mut s = Stanza::parse(b"<message>text</message>".to_vec()).unwrap();
    s.append_child(b"<x/>");
    assert!(s.has_single_child());
}

/// The stanza's type is computed once, with its index, and follows every edit of the attribute.
#[test]
fn cached_type_follows_the_attribute() {
    use super::StanzaType;
    let mut s =
        Stanza::parse(b"<message type='&#x63;hat' to='a@b'><body/></message>".to_vec()).unwrap();
    assert_eq!(s.ty(), StanzaType::Chat);
    s.set_from("c@d/e");
    s.set_to("x@y");
    assert_eq!(s.ty(), StanzaType::Chat);
    s.append_child(b"<x/>");
    assert_eq!(s.ty(), StanzaType::Chat);
    s.remove_attr("type");
    assert_eq!(s.ty(), StanzaType::Absent);
    let s = Stanza::parse(b"<iq type='result' id='1'/>".to_vec()).unwrap();
    assert_eq!(s.ty(), StanzaType::Result);
    assert!(s.forbids_error_reply());
}

#[test]
fn prefixed_attributes_keep_their_declarations_when_written_alone() {
    // Declared on the element itself, on an ancestor, and on the stream header.
    let header =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                  xmlns:h='urn:h' version='1.0'>";
    let body = "<message to='a@x'><body>hi</body><x xmlns='urn:ext' xmlns:y='urn:y' y:z='1'>\
                <c y:w='2' h:v='3' xml:lang='en'/></x></message>";
    let st = stanzas(&format!("{header}{body}")).remove(0);
    let t = st.tree().unwrap();
    let x = t.get_child("x", "urn:ext").unwrap();
    let c = x.get_child("c", "urn:ext").unwrap();
    assert_eq!(c.attr("xmlns:y"), Some("urn:y"));
    assert_eq!(c.attr("xmlns:h"), Some("urn:h"));
    assert_eq!(c.attr("xmlns:xml"), None, "xml is bound everywhere");
    // Each part, written out on its own (stored, archived, forwarded), is namespace well-formed
    // and reads back as the same tree.
    for el in [&t, x, c] {
        let mut bytes = Vec::new();
        el.write_to(&mut bytes);
        let again = Stanza::parse(bytes.clone())
            .and_then(|s| s.tree())
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(&again, el, "{}", String::from_utf8_lossy(&bytes));
    }
}
