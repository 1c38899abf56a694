//! Per-address slots on one shard thread: how many connections (or sessions) of a kind one remote
//! address holds, so that a single address cannot take every slot of a listener from the others.

use std::cell::RefCell;
use std::net::IpAddr;
use std::thread::LocalKey;

use ahash::HashMap;

/// The counts of one kind of slot on this thread (a `thread_local!` each: one shard per thread).
#[derive(Default)]
pub(crate) struct AddressSlots(RefCell<HashMap<IpAddr, usize>>);

/// One slot of `ip`, given back when dropped.
pub(crate) struct AddressSlot {
    slots: &'static LocalKey<AddressSlots>,
    ip: IpAddr,
}

impl AddressSlots {
    /// A slot for `ip`, or `None` when it holds `max` already.
    pub(crate) fn take(
        slots: &'static LocalKey<AddressSlots>,
        ip: IpAddr,
        max: usize,
    ) -> Option<AddressSlot> {
        slots.with(|s| {
            let mut m = s.0.borrow_mut();
            let n = m.entry(ip).or_insert(0);
            (*n < max).then(|| {
                *n += 1;
                AddressSlot { slots, ip }
            })
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.slots.with(|s| {
            let mut m = s.0.borrow_mut();
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOTS: AddressSlots = AddressSlots::default();
    }

    #[test]
    fn an_address_holds_at_most_max_and_gets_them_back() {
        let a: IpAddr = "192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or_else(|e| panic!("{e}"));
        let held: Vec<_> = (0..3)
            .filter_map(|_| AddressSlots::take(&SLOTS, a, 3))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(AddressSlots::take(&SLOTS, a, 3).is_none());
        assert!(
            AddressSlots::take(&SLOTS, b, 3).is_some(),
            "another address"
        );
        drop(held);
        assert!(AddressSlots::take(&SLOTS, a, 3).is_some());
        assert!(
            SLOTS.with(|s| s.0.borrow().is_empty()),
            "no entry is left behind"
        );
    }
}
