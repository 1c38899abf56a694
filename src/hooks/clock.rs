//! A per-thread "now" the runtime sets once per batch of input, so stamping every stanza with the
//! instant it entered the route costs no clock read per stanza.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Records the time of the input being processed on this thread (the shard's driver calls it per read).
pub fn set_now(now: Instant) {
    NOW.with(|n| n.set(Some(now)));
}

/// The instant set by [`set_now`], or the clock when nothing set one (tests, benches, other threads).
pub fn now() -> Instant {
    NOW.with(|n| n.get()).unwrap_or_else(Instant::now)
}
