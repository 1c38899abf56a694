//! SIGINT/SIGTERM: a flag every shard polls (cheaply, a few times a second) to stop gracefully.
//! SIGHUP (`ExecReload=kill -HUP`, a certificate renewal's hook, logrotate's postrotate, a closed
//! terminal) reads the TLS certificates again: its default action would kill the process without a
//! word to clients or stream management.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Set once a stop was asked for; also counts the shards whose sessions are closed (so that each
/// shard's outgoing s2s streams wait for what every shard's closing sessions sent), and the mesh
/// markers of the stop's barrier rounds (see [`ShutdownFlag::marker`]).
#[derive(Clone, Default)]
pub struct ShutdownFlag(
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    Arc<[AtomicUsize; BARRIER_ROUNDS]>,
);

/// Barrier rounds at a stop: a stanza that crosses up to this many shards (a room's goodbye to a
/// remote occupant: the room's shard, the shard of his incoming stream, the remote domain's home
/// shard) reaches its last shard before the outgoing streams close.
pub(crate) const BARRIER_ROUNDS: usize = 3;

impl ShutdownFlag {
    /// Asks every shard to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// This shard's sessions are closed (at shutdown).
    pub(crate) fn sessions_closed(&self) {
        self.1.fetch_add(1, Ordering::AcqRel);
    }

    /// Shards whose sessions are closed.
    pub(crate) fn shards_quiet(&self) -> usize {
        self.1.load(Ordering::Acquire)
    }

    /// A marker of barrier round `round` was handled by the shard it was sent to. Every shard
    /// sends one to every other shard behind what it sent before; the rings keep order, so once
    /// all `n * (n - 1)` markers of a round are handled, so is everything sent before them.
    pub(crate) fn marker(&self, round: usize) {
        self.3[round].fetch_add(1, Ordering::AcqRel);
    }

    /// Markers of barrier round `round` handled so far (by every shard).
    pub(crate) fn markers(&self, round: usize) -> usize {
        self.3[round].load(Ordering::Acquire)
    }

    /// True once a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// True once after each SIGHUP, for one shard (the caller reloads the certificates, which
    /// every shard shares).
    pub(crate) fn take_hangup(&self) -> bool {
        self.2.swap(false, Ordering::AcqRel)
    }

    /// Sets the flag on SIGINT or SIGTERM, notes SIGHUP (signal-hook: async-signal-safe, no
    /// handler code of ours).
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, self.0.clone())?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, self.2.clone())?;
        Ok(())
    }
}
