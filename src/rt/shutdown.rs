//! SIGINT/SIGTERM: a flag every shard polls (cheaply, a few times a second) to stop gracefully.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once a stop was asked for.
#[derive(Clone, Default)]
pub struct ShutdownFlag(Arc<AtomicBool>);

impl ShutdownFlag {
    /// Asks every shard to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sets the flag on SIGINT or SIGTERM (signal-hook: async-signal-safe, no handler code of ours).
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, self.0.clone())?;
        }
        Ok(())
    }
}
