//! Routed stanzas waiting for the socket on a stream without XEP-0198. They stay route accumulators
//! until the driver takes them for the wire, a chunk at a time, so a stream that closes (slow reader,
//! client gone, conflict, shutdown) hands every stanza not yet on the wire back to the session manager
//! ([`C2s::take_unsent`]) instead of losing it with its buffers. A stanza taken for the wire stays
//! here (`on_wire::OnTheWire`) until the driver reports that the socket took its last byte
//! ([`C2s::wire_written`]): if the peer stops reading and the driver gives up, what the socket never
//! took goes back too ([`C2s::take_unwritten`]). With stream management on, a stanza is counted (`h`)
//! and moves to the unacknowledged buffer when it is written, so the counters follow the order on
//! the wire, and the client's acknowledgements decide instead.

use std::collections::VecDeque;

use super::C2s;
use crate::hooks::Acc;

/// Plaintext handed to the driver per `take_transmit`: what may already be on its way to the socket
/// when the stream is cut off (and must be finished before the stream error).
pub(super) const TRANSMIT_CHUNK: usize = 64 * 1024;

/// Routed stanzas in arrival order, with their total size.
#[derive(Default)]
pub(super) struct OutQueue {
    items: VecDeque<Acc>,
    bytes: usize,
}

impl OutQueue {
    /// Queues a stanza.
    pub(super) fn push(&mut self, acc: Acc) {
        self.bytes += acc.stanza.bytes().len();
        self.items.push_back(acc);
    }

    /// Bytes queued.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the oldest stanza.
    pub(super) fn pop(&mut self) -> Option<Acc> {
        let acc = self.items.pop_front();
        match &acc {
            Some(acc) => self.bytes -= acc.stanza.bytes().len(),
            // Idle sessions keep no queue capacity.
            None if self.items.capacity() > 0 => self.items = VecDeque::new(),
            None => {}
        }
        acc
    }

    /// Number of stanzas queued.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes every queued stanza.
    pub(super) fn take(&mut self) -> Vec<Acc> {
        self.bytes = 0;
        std::mem::take(&mut self.items).into()
    }
}

impl C2s {
    /// Writes queued routed stanzas into the plaintext output while it holds less than `chunk`
    /// bytes (with stream management: counted and kept until acknowledged; without: kept until the
    /// socket took them, see `on_wire::OnTheWire`).
    pub(super) fn write_queued(&mut self, chunk: usize) {
        if self.routed.len() > 0 {
            self.out.reserve(self.routed.bytes().min(chunk));
        }
        while self.out.len() < chunk {
            if self.sm.as_ref().is_some_and(|sm| sm.is_full()) {
                // XEP-0198 window closed: the rest waits for the client's `<a/>`, asked for once.
                if self.routed.len() > 0 && self.sm.as_mut().is_some_and(|sm| sm.ask()) {
                    super::sm_xep198::write_r(&mut self.out);
                }
                break;
            }
            let Some(acc) = self.routed.pop() else {
                break;
            };
            self.out.extend_from_slice(acc.stanza.bytes());
            if self.sm.is_none() {
                self.on_wire.mark(self.out.len(), acc);
                continue;
            }
            // Not full (checked above): the buffer takes it.
            if let Some(super::Unacked::Routed(acc)) = self.sm_outbound(super::Unacked::Routed(acc))
            {
                self.routed.push(acc);
                break;
            }
        }
        // A sender waits for our client's ack of what was just written: ask now rather than after
        // `ack_freq` stanzas.
        if self.sm.as_mut().is_some_and(|sm| sm.ack_wanted()) {
            super::sm_xep198::write_r(&mut self.out);
        }
    }

    /// The driver's socket took the first `total` bytes it was handed by `take_transmit` (it
    /// counts them the same way): the routed stanzas among them are delivered.
    pub fn wire_written(&mut self, total: u64) {
        self.on_wire.written(total);
    }

    /// How many routed stanzas handed to the driver wait for the socket to take them.
    #[cfg(test)]
    pub(super) fn unwritten(&self) -> usize {
        self.on_wire.len()
    }

    /// True while routed stanzas handed to the driver wait for the socket to take them.
    pub fn has_unwritten(&self) -> bool {
        !self.on_wire.is_empty()
    }

    /// The routed stanzas the driver was handed and never wrote, oldest first: the driver gave up
    /// on its socket (the peer stopped reading or went away). It sends them back through the
    /// session manager, before what `take_unsent` gave it.
    pub fn take_unwritten(&mut self) -> Vec<Acc> {
        self.on_wire.take()
    }

    /// The routed stanzas that never reached the wire, once the stream is closed: the driver sends
    /// them back through the session manager (another resource, offline storage, or an error to
    /// their sender). Empty while the stream is open.
    pub fn take_unsent(&mut self) -> Vec<Acc> {
        if !self.closed {
            return Vec::new();
        }
        self.routed.take()
    }
}
