//! Sans-IO client side of XEP-0198 stream management for one user: the
//! inbound count (`h` the client reports), the outbound count and the queue of
//! stanzas the server has not acknowledged yet (each message kept, so it can
//! be resent after a resumption or a fresh login), and when to ask for acks.

use crate::frame::attr;
use crate::msg::Msg;
use std::collections::VecDeque;
use std::io::Write;

/// `<r/>`: ask the server how many of our stanzas it handled.
pub const REQUEST: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

/// `<enable/>` with resumption.
pub const ENABLE: &[u8] = b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>";

/// Append `<a h='h'/>`.
pub fn write_ack(out: &mut Vec<u8>, h: u32) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "<a xmlns='urn:xmpp:sm:3' h='{h}'/>");
}

/// Append `<resume previd h/>`.
pub fn write_resume(out: &mut Vec<u8>, previd: &str, h: u32) {
    let _ = write!(
        out,
        "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='{h}'/>"
    );
}

/// The `h` attribute of an `<a/>`, `<resumed/>` or `<failed/>`.
pub fn h_of(el: &[u8]) -> Option<u32> {
    std::str::from_utf8(attr(el, b"h")?).ok()?.parse().ok()
}

/// Whether a top-level element is a stanza XEP-0198 counts.
pub fn counts(name: &[u8]) -> bool {
    matches!(name, b"message" | b"presence" | b"iq")
}

/// One stanza we sent that the server has not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unacked {
    /// A load message (resent when the stream is resumed or replaced).
    Message(Msg),
    /// Anything else (presence, iq replies): counted, never resent.
    Other,
}

/// The server acknowledged more stanzas than we sent (XEP-0198 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server acknowledged {h} but only {sent} stanzas were sent")]
pub struct TooHigh {
    /// The server's `h`.
    pub h: u32,
    /// Our count.
    pub sent: u32,
}

/// Stream management state of one user, kept across its connections.
#[derive(Debug)]
pub struct Sm {
    /// Counting is on (after `<enabled/>` or `<resumed/>`, until the connection drops).
    pub on: bool,
    /// Inbound stanzas handled on this SM session (the `h` we report).
    pub h_in: u32,
    /// Outbound stanzas counted on this SM session.
    sent: u32,
    /// Outbound stanzas the server acknowledged (its last `h`).
    acked: u32,
    /// Stanzas `acked+1 ..= sent`, oldest first; messages stay here across a
    /// dropped connection until a resumption or a fresh login resends them.
    queue: VecDeque<Unacked>,
    /// Stanzas sent since our last `<r/>`.
    unrequested: u32,
    /// Ask for an ack after this many stanzas.
    every: u32,
    /// The server's resumption id of the current SM session.
    pub resume_id: Option<String>,
}

impl Sm {
    /// A fresh state asking for acks every `every` stanzas.
    pub fn new(every: u32) -> Self {
        Sm {
            on: false,
            h_in: 0,
            sent: 0,
            acked: 0,
            queue: VecDeque::new(),
            unrequested: 0,
            every: every.max(1),
            resume_id: None,
        }
    }

    /// Count an inbound element; `true` when it is a counted stanza.
    pub fn on_inbound(&mut self, name: &[u8]) -> bool {
        let c = self.on && counts(name);
        if c {
            self.h_in = self.h_in.wrapping_add(1);
        }
        c
    }

    /// Record an outbound stanza; `true` when an `<r/>` should follow it.
    pub fn on_sent(&mut self, s: Unacked) -> bool {
        if !self.on {
            return false;
        }
        self.sent = self.sent.wrapping_add(1);
        self.queue.push_back(s);
        self.unrequested += 1;
        self.take_request(self.every)
    }

    /// `true` (and the counter reset) when at least `min` stanzas went out since the last `<r/>`.
    pub fn take_request(&mut self, min: u32) -> bool {
        if self.on && self.unrequested >= min.max(1) {
            self.unrequested = 0;
            true
        } else {
            false
        }
    }

    /// Apply the server's `h`: `done` gets every message it newly covers, in order.
    pub fn on_ack(&mut self, h: u32, mut done: impl FnMut(Msg)) -> Result<(), TooHigh> {
        let n = h.wrapping_sub(self.acked) as usize;
        if n > self.queue.len() {
            return Err(TooHigh { h, sent: self.sent });
        }
        for s in self.queue.drain(..n) {
            if let Unacked::Message(m) = s {
                done(m);
            }
        }
        self.acked = h;
        Ok(())
    }

    /// Stanzas the server has not acknowledged.
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    /// The connection dropped: stop counting until the next `<resumed/>` or `<enabled/>`.
    pub fn suspend(&mut self) {
        self.on = false;
    }

    /// `<resumed h/>`: drop what `h` covers, go on counting from there, and
    /// return the messages to resend (their `Other` companions are dropped).
    pub fn resumed(&mut self, h: u32, done: impl FnMut(Msg)) -> Result<Vec<Msg>, TooHigh> {
        self.on_ack(h, done)?;
        self.sent = h;
        self.on = true;
        self.unrequested = 0;
        Ok(self.take_messages())
    }

    /// `<enabled/>` on a fresh session: counters restart at zero; returns the
    /// unacknowledged messages of the previous session to resend.
    pub fn enabled(&mut self, resume_id: Option<String>) -> Vec<Msg> {
        self.on = true;
        self.h_in = 0;
        self.sent = 0;
        self.acked = 0;
        self.unrequested = 0;
        self.resume_id = resume_id;
        self.take_messages()
    }

    fn take_messages(&mut self) -> Vec<Msg> {
        self.queue
            .drain(..)
            .filter_map(|s| match s {
                Unacked::Message(m) => Some(m),
                Unacked::Other => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Unacked {
        Unacked::Message(Msg {
            from: 1,
            to: 2,
            seq,
            ts: 0,
        })
    }

    #[test]
    fn counts_acks_and_requests() {
        let mut sm = Sm::new(3);
        assert!(!sm.on_sent(msg(0)), "nothing is counted before enable");
        assert!(sm.enabled(Some("id".into())).is_empty());
        assert!(!sm.on_sent(Unacked::Other));
        assert!(!sm.on_sent(msg(1)));
        assert!(sm.on_sent(msg(2)), "third stanza asks for an ack");
        assert!(!sm.take_request(1), "already asked");
        let mut acked = Vec::new();
        sm.on_ack(2, |m| acked.push(m.seq)).expect("ack");
        assert_eq!(acked, [1]);
        assert_eq!(sm.outstanding(), 1);
        assert_eq!(sm.on_ack(4, |_| {}), Err(TooHigh { h: 4, sent: 3 }));
        assert!(sm.on_inbound(b"message"));
        assert!(!sm.on_inbound(b"r"));
        assert_eq!(sm.h_in, 1);
    }

    #[test]
    fn resumed_resends_only_what_h_does_not_cover() {
        let mut sm = Sm::new(100);
        sm.enabled(None);
        for s in 0..4 {
            sm.on_sent(msg(s));
        }
        sm.on_ack(1, |_| {}).expect("ack");
        sm.suspend();
        assert!(!sm.on_inbound(b"message"), "not counted while down");
        let mut acked = Vec::new();
        let resend = sm.resumed(3, |m| acked.push(m.seq)).expect("resume");
        assert_eq!(acked, [1, 2]);
        assert_eq!(resend.iter().map(|m| m.seq).collect::<Vec<_>>(), [3]);
        // The resent message counts as the server's 4th.
        sm.on_sent(msg(3));
        let mut acked = Vec::new();
        sm.on_ack(4, |m| acked.push(m.seq)).expect("ack");
        assert_eq!(acked, [3]);
    }

    #[test]
    fn fresh_session_resends_everything_unacked_and_counters_wrap() {
        let mut sm = Sm::new(100);
        sm.enabled(None);
        sm.acked = u32::MAX;
        sm.sent = u32::MAX;
        sm.on_sent(msg(7));
        sm.on_sent(Unacked::Other);
        sm.on_ack(0, |_| {}).expect("h wraps to 0");
        assert_eq!(sm.outstanding(), 1);
        sm.on_sent(msg(8));
        sm.suspend();
        let resend = sm.enabled(None);
        assert_eq!(resend.iter().map(|m| m.seq).collect::<Vec<_>>(), [8]);
        assert_eq!(sm.outstanding(), 0);
        assert_eq!(h_of(b"<a xmlns='urn:xmpp:sm:3' h='12'/>"), Some(12));
        let mut out = Vec::new();
        write_ack(&mut out, 5);
        assert_eq!(out, b"<a xmlns='urn:xmpp:sm:3' h='5'/>");
    }
}
