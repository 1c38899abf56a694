//! XMPP over WebSocket (RFC 7395): a `WsLink` in front of a fresh c2s stream, fed client frames
//! built from the input, cut into reads at random. Checks: no panic, and everything the server
//! writes decodes as WebSocket frames whose text messages are each one element, `<open/>` or
//! `<close/>` in the framing namespace or an element declaring its namespace.
//!
//! Input: a control byte (seeds the read split), then segments separated by 0x00, each one frame:
//! first byte `b` binary, `p` ping, `r` raw bytes on the wire (not framed), anything else a text
//! message of the whole segment.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use petrel::c2s::{C2s, PeerInfo};
use petrel::web::ws::{MemIo, WsLink};
use petrel_fuzz::{control, Chunks};
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let Some((c, rest)) = control(data) else {
        return;
    };
    let mut client = WebSocketContext::new(Role::Client, None);
    let mut cio = MemIo::default();
    for seg in rest.split(|b| *b == 0) {
        let msg = match seg.first() {
            Some(b'b') => Message::binary(seg[1..].to_vec()),
            Some(b'p') => Message::Ping(seg[1..].to_vec().into()),
            Some(b'r') => {
                cio.output.extend_from_slice(&seg[1..]);
                continue;
            }
            _ => Message::text(String::from_utf8_lossy(seg).into_owned()),
        };
        let _ = client.write(&mut cio, msg);
    }
    let _ = client.flush(&mut cio);
    let wire = std::mem::take(&mut cio.output);

    let now = Instant::now();
    let peer = PeerInfo {
        addr: "127.0.0.1:4000"
            .parse()
            .unwrap_or_else(|_| unreachable!("a literal address")),
    };
    let mut c2s = C2s::new(petrel_fuzz::c2s::config(), peer, now);
    let mut link = WsLink::new(4096, &[]);
    let mut out = Vec::new();
    for read in Chunks::new(c, &wire) {
        link.input(read, &mut c2s, now);
        link.output(&mut c2s, &mut out);
        while c2s.poll_event().is_some() {}
        if c2s.is_closed() {
            break;
        }
    }
    link.output(&mut c2s, &mut out);

    // What the server wrote decodes, one element per text message.
    cio.input = out;
    cio.read = 0;
    loop {
        match client.read(&mut cio) {
            Ok(Message::Text(t)) => {
                let t = t.as_str();
                assert!(
                    t.starts_with('<') && t.ends_with('>'),
                    "not one element: {t:?}"
                );
                if !t.starts_with("<open ") && !t.starts_with("<close ") {
                    let start = &t[..t.find('>').unwrap_or(t.len())];
                    assert!(start.contains("xmlns"), "no namespace declared: {t:?}");
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
