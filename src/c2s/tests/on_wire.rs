//! Routed stanzas handed to the driver stay the stream's until the driver reports that its socket
//! took their last byte: what a cut-off stream never wrote goes back, what it wrote does not.

use super::*;

/// The body numbers of `accs`, in order.
fn bodies(accs: &[crate::hooks::Acc]) -> Vec<usize> {
    accs.iter()
        .map(|acc| {
            let text = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
            let body = text.split("<body>").nth(1).unwrap();
            body.split(':').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// Queues stanzas `0..n` of about `size` bytes each and takes one chunk for the wire; returns the
/// bytes taken and where they start in the driver's count.
fn hand_over(c: &mut Client, n: usize, size: usize) -> (Vec<u8>, u64) {
    let pad = "p".repeat(size.saturating_sub(110));
    for i in 0..n {
        c.c2s.deliver_routed(routed(&format!("{i}:{pad}"))).unwrap();
    }
    let start = c.taken;
    let mut wire = Vec::new();
    c.c2s.take_transmit(&mut wire);
    c.taken += wire.len() as u64;
    (wire, start)
}

#[test]
fn a_stanza_is_delivered_only_once_its_last_byte_is_written() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    let (wire, start) = hand_over(&mut c, 10, 200);
    let text = String::from_utf8(wire).unwrap();
    let ends: Vec<u64> = text
        .match_indices("</message>")
        .map(|(at, m)| start + (at + m.len()) as u64)
        .collect();
    assert_eq!(ends.len(), 10);
    assert!(c.c2s.has_unwritten());

    // The socket took stanzas 0-3 and all of 4 but its last byte.
    c.c2s.wire_written(ends[4] - 1);
    assert_eq!(c.c2s.unwritten(), 6);
    // The peer stops reading: the driver gives up, the rest comes back in order.
    c.c2s.peer_closed();
    assert!(c.c2s.take_unsent().is_empty());
    assert_eq!(bodies(&c.c2s.take_unwritten()), (4..10).collect::<Vec<_>>());
    assert!(!c.c2s.has_unwritten());
}

#[test]
fn written_stanzas_are_forgotten_across_chunks() {
    let mut c = Client::new(config(TlsMode::None), REMOTE);
    login(&mut c, Some("r"));
    let (_, _) = hand_over(&mut c, 3, 150);
    c.c2s.wire_written(c.taken);
    assert!(!c.c2s.has_unwritten());
    assert!(c.c2s.take_unwritten().is_empty());
    // Counting goes on across chunks.
    let (wire, start) = hand_over(&mut c, 4, 150);
    c.c2s.wire_written(start + wire.len() as u64 / 2);
    let back = bodies(&c.c2s.take_unwritten());
    assert!(!back.is_empty() && back.len() < 4, "{back:?}");
    assert_eq!(*back.last().unwrap(), 3);
}

#[test]
fn over_tls_a_stanza_is_delivered_with_the_whole_record_holding_its_end() {
    let mut cfg = config(TlsMode::DirectTls);
    cfg.outbound_queue_bytes = 1 << 20;
    let mut c = Client::new(cfg, REMOTE);
    login_direct_tls(&mut c, Some("r"));
    // 40 stanzas of 1 000 bytes: three records of 16 KiB of plaintext at most.
    let (wire, start) = hand_over(&mut c, 40, 1000);
    let mut records = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = u16::from_be_bytes([wire[at + 3], wire[at + 4]]) as usize;
        at += 5 + len;
        records.push(start + at as u64);
    }
    assert_eq!(at, wire.len());
    assert!(records.len() >= 3, "{} records", records.len());
    let stanza_len = routed(&format!("0:{}", "p".repeat(890)))
        .stanza
        .bytes()
        .len();
    let in_first = 16 * 1024 / stanza_len;

    // All of the first record but one byte: nothing is readable yet.
    c.c2s.wire_written(records[0] - 1);
    assert_eq!(c.c2s.unwritten(), 40);
    // The first record: the stanzas that end in it are delivered, the one it splits is not.
    c.c2s.wire_written(records[0]);
    c.c2s.peer_closed();
    let back = bodies(&c.c2s.take_unwritten());
    assert_eq!(back, (in_first..40).collect::<Vec<_>>());
}

#[test]
fn a_server_close_writes_the_queue_and_keeps_it_until_written() {
    let mut c = Client::new(config(TlsMode::DirectTls), REMOTE);
    login_direct_tls(&mut c, Some("r"));
    for i in 0..3 {
        c.c2s.deliver_routed(routed(&format!("{i}:x"))).unwrap();
    }
    c.c2s
        .close(Some(StreamErrorCondition::SystemShutdown), None);
    // The queue, then the error, then close_notify, all in what the driver takes next.
    let out = c.recv();
    assert_eq!(out.matches("<message").count(), 3, "{out}");
    assert!(out.ends_with("</stream:error></stream:stream>"), "{out}");
    let mut buf = [0u8; 1];
    assert_eq!(c.tls.as_mut().unwrap().reader().read(&mut buf).unwrap(), 0);
    // Until the socket took them they can come back.
    assert!(c.c2s.has_unwritten());
    c.c2s.wire_written(c.taken);
    assert!(c.c2s.take_unwritten().is_empty());
}
