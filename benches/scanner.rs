//! Stanza scanning throughput: petrel's Scanner vs quick-xml and rxml on the same ~1 MiB chat stream.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use petrel::xml::{Event, Limits, Scanner};
use petrel::xmpp::ns;

/// A stream header followed by messages, presences and iqs of varying size, then the close tag.
fn chat_stream() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>",
    );
    // Deterministic LCG so every run scans the same bytes.
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let words = [
        "hello",
        "world",
        "caf\u{e9}",
        "&lt;b&gt;",
        "meeting",
        "at",
        "noon",
        "&amp;",
        "ok",
        "\u{263A}",
    ];
    let mut i = 0u64;
    while out.len() < (1 << 20) - 4096 {
        i += 1;
        let s = match rnd(10) {
            0..=5 => {
                let mut body = String::new();
                let max_words = if rnd(10) == 0 { 300 } else { 20 };
                for _ in 0..1 + rnd(max_words) {
                    body.push_str(words[rnd(words.len() as u64) as usize]);
                    body.push(' ');
                }
                format!(
                    "<message to='user{}@example.com/res' from='user{}@example.com/phone' type='chat' id='m{i}' xml:lang='en'>\
                     <body>{body}</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
                     <request xmlns='urn:xmpp:receipts'/></message>",
                    rnd(1000),
                    rnd(1000)
                )
            }
            6 | 7 => format!(
                "<presence from='user{}@example.com/laptop' id='p{i}'><show>away</show><status>Be right back</status>\
                 <priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
                 node='https://example.org/client' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>",
                rnd(1000)
            ),
            8 => format!("<iq type='get' id='ping{i}' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"),
            _ => {
                let mut items = String::new();
                for k in 0..rnd(12) {
                    items.push_str(&format!(
                        "<item jid='contact{k}@example.org' name='Contact {k}' subscription='both'><group>Friends</group></item>"
                    ));
                }
                format!("<iq type='result' id='r{i}'><query xmlns='jabber:iq:roster' ver='v{i}'>{items}</query></iq>")
            }
        };
        out.extend_from_slice(s.as_bytes());
        if rnd(4) == 0 {
            out.extend_from_slice(b"\n");
        }
    }
    out.extend_from_slice(b"</stream:stream>");
    out
}

fn petrel(input: &[u8], chunk: usize) -> usize {
    let mut s = Scanner::new(Limits::default(), ns::CLIENT);
    let mut n = 0;
    for part in input.chunks(chunk) {
        s.feed(part);
        while let Some(ev) = s.next_event().expect("valid stream") {
            if let Event::Stanza(st) = ev {
                black_box(st.to());
                n += 1;
            }
        }
    }
    n
}

fn quick_xml(input: &[u8]) -> usize {
    use quick_xml::events::Event as Q;
    let mut r = quick_xml::Reader::from_reader(input);
    let (mut depth, mut n) = (0usize, 0usize);
    loop {
        match r.read_event().expect("valid stream") {
            Q::Start(_) => {
                depth += 1;
                if depth == 2 {
                    n += 1;
                }
            }
            Q::Empty(_) if depth == 1 => n += 1,
            Q::End(_) => depth -= 1,
            Q::Eof => return n,
            _ => {}
        }
    }
}

fn rxml(input: &[u8]) -> usize {
    use rxml::{Event as R, Parse, Parser};
    let mut p = Parser::new();
    let mut rest = input;
    let (mut depth, mut n) = (0usize, 0usize);
    while let Some(ev) = p.parse(&mut rest, true).expect("valid stream") {
        match ev {
            R::StartElement(..) => depth += 1,
            R::EndElement(..) => {
                if depth == 2 {
                    n += 1;
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let input = chat_stream();
    let want = petrel(&input, input.len());
    assert_eq!(quick_xml(&input), want);
    assert_eq!(rxml(&input), want);
    assert_eq!(petrel(&input, 1500), want);
    let mut g = c.benchmark_group("scan_chat_stream");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("petrel_16k_reads", |b| {
        b.iter(|| petrel(black_box(&input), 16 * 1024))
    });
    g.bench_function("petrel_1500b_reads", |b| {
        b.iter(|| petrel(black_box(&input), 1500))
    });
    g.bench_function("quick_xml", |b| b.iter(|| quick_xml(black_box(&input))));
    g.bench_function("rxml", |b| b.iter(|| rxml(black_box(&input))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
