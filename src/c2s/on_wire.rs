//! Items written to a stream's output, each kept with where its last byte lies in the bytes handed
//! to the driver, until the driver reports that its socket took that byte: a stream cut off with
//! bytes it never wrote knows exactly which items those were. The c2s keeps its routed stanzas
//! here (`T = Acc`); an outgoing s2s stream keeps only the positions (`T = ()`), its driver the
//! stanzas, in the same order.

use std::collections::VecDeque;

use super::transport::Placed;

/// See the module documentation.
pub(crate) struct OnTheWire<T> {
    /// Oldest first. A placed item's position is the count of bytes handed to the driver that ends
    /// with its last one; the last `unplaced` are still in the plaintext output, their position the
    /// offset just past them there.
    items: VecDeque<(u64, T)>,
    /// How many items at the back are not on the wire yet.
    unplaced: usize,
    /// Bytes handed to the driver so far (the driver counts the bytes it wrote the same way).
    handed: u64,
}

impl<T> Default for OnTheWire<T> {
    fn default() -> Self {
        OnTheWire {
            items: VecDeque::new(),
            unplaced: 0,
            handed: 0,
        }
    }
}

impl<T> OnTheWire<T> {
    /// `item` was written to the plaintext output, ending at offset `end`.
    pub(crate) fn mark(&mut self, end: usize, item: T) {
        self.items.push_back((end as u64, item));
        self.unplaced += 1;
    }

    /// Plaintext up to `p.used` is now in the driver's buffer, ending at its offset `p.end` counted
    /// from where this call's bytes begin.
    pub(crate) fn place(&mut self, p: Placed) {
        let len = self.items.len();
        for (pos, _) in self.items.range_mut(len - self.unplaced..) {
            if *pos > p.used as u64 {
                break;
            }
            let end = if p.exact {
                p.end as u64 - (p.used as u64 - *pos)
            } else {
                p.end as u64
            };
            *pos = self.handed + end;
            self.unplaced -= 1;
        }
    }

    /// The call handed `n` bytes to the driver and took `used` plaintext bytes: the offsets of
    /// what is still unplaced move to the front of the remaining plaintext.
    pub(crate) fn handed(&mut self, n: usize, used: usize) {
        if n == 0 && self.items.is_empty() && self.items.capacity() > 0 {
            // A turn with nothing to write: the stream is idle and keeps no slots (a busy one keeps
            // them from chunk to chunk).
            self.items = VecDeque::new();
        }
        self.handed += n as u64;
        let len = self.items.len();
        for (pos, _) in self.items.range_mut(len - self.unplaced..) {
            *pos -= used as u64;
        }
    }

    /// The socket took the first `total` bytes handed: the items that end there are delivered.
    /// Returns how many.
    pub(crate) fn written(&mut self, total: u64) -> usize {
        let mut n = 0;
        while self.items.len() > self.unplaced {
            match self.items.front() {
                Some((pos, _)) if *pos <= total => {
                    self.items.pop_front();
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }

    /// How many items wait for the socket to take them.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True while items wait for the socket to take them.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every item not delivered, oldest first: the driver gave up on its socket.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.unplaced = 0;
        let items = std::mem::take(&mut self.items);
        items.into_iter().map(|(_, item)| item).collect()
    }
}
