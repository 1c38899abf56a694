//! `route explain`: the path one stanza takes through the route, step by step (sans-IO part).
//!
//! A [`Trace`] rides on the stanza's accumulator (`Acc::trace`, `None` for every ordinary stanza:
//! the route pays one pointer check per hook run and per stage, and allocates nothing). When it is
//! present, each stage appends a [`Step`]: every handler of every hook run (by the name it was
//! registered under), each routing module's filter and route, local delivery, the session
//! manager's choice on the home shard, the receive side. Copies of the stanza (fan-out to several
//! resources, error and IQ replies, stanzas a handler derives from it) carry a clone of the trace
//! so far.
//!
//! A path ends where its trace is dropped: written to a recipient's connection (the receive side
//! ends it explicitly, see [`Acc::end_trace`]), stored, bounced, stopped by a handler, answered.
//! Wherever that happens (any shard, a store thread), the finished path goes into the request's
//! [`Sink`]; the request knows every path has ended when it holds the sink's last reference. The
//! sink is shared through an `Arc` and a mutex: both are touched only by traced stanzas, never by
//! the ordinary route.
//!
//! The core names no module: handler names are those given to `Hook::add`.

mod render;
mod start;
#[cfg(test)]
mod tests;

pub use start::{start, ExplainError, Pending, EXPLAIN_RESOURCE};

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::hooks::Acc;
use crate::shard::ShardId;

/// Steps kept per path; later ones are counted in [`Path::steps_dropped`] (a handler looping over
/// its own output must not grow a trace without bound).
pub const MAX_STEPS: usize = 256;

/// Paths kept per request; later ones are counted in [`Explanation::paths_dropped`].
pub const MAX_PATHS: usize = 64;

/// What a stage did with the stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A handler let the run go on.
    Ok,
    /// A handler stopped the run (the stanza goes no further on this path).
    Stop,
    /// A routing module's filter or route passed it on.
    Pass,
    /// A routing module, a packet handler or the session manager took it.
    Took,
    /// Sent to another shard over the mesh.
    Forwarded,
    /// Handed to a session's connection (on its shard).
    Delivered,
    /// No resource can take it: the offline hook runs.
    Offline,
    /// Answered with an error (the error reply carries the trace on).
    Bounced,
    /// Answered by the server (the answer carries the trace on).
    Answered,
    /// Dropped by the route (RFC 6121 says so, or nothing handles it).
    Dropped,
    /// Written to the recipient's connection: the end of this path.
    Written,
    /// A new stanza derived from the traced one (an error or result reply) starts here.
    Reply,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Shard where it happened.
    pub shard: u16,
    /// The hook (`user_send_message`) or core stage (`router`, `local`, `sm`, `c2s`).
    pub stage: Cow<'static, str>,
    /// The handler or routing module, by its registered name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub handler: Option<Cow<'static, str>>,
    /// What it did.
    pub outcome: Outcome,
    /// Details (chosen resources, error condition, destination shard).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// Microseconds since the request started.
    pub at_us: u64,
}

/// One end of the route: the steps from the sender to where the stanza (or a copy) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Path {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Steps past [`MAX_STEPS`], not kept.
    #[serde(default)]
    pub steps_dropped: usize,
}

/// What a request collects: paths as their traces end, anywhere.
#[derive(Debug)]
pub struct Sink {
    start: Instant,
    paths: Mutex<(Vec<Path>, usize)>,
}

impl Sink {
    /// An empty sink; times are counted from now.
    pub fn new() -> Arc<Sink> {
        Arc::new(Sink {
            start: Instant::now(),
            paths: Mutex::new((Vec::new(), 0)),
        })
    }

    fn put(&self, path: Path) {
        // A poisoned lock only means another path's push panicked: the data is still a Vec.
        let mut g = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() < MAX_PATHS {
            g.0.push(path);
        } else {
            g.1 += 1;
        }
    }

    /// Takes the paths ended so far and how many were not kept.
    pub fn take(&self) -> (Vec<Path>, usize) {
        let mut g = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *g)
    }

    /// Traces still alive somewhere (the caller holds one more reference to `this`).
    pub fn in_flight(this: &Arc<Sink>) -> usize {
        Arc::strong_count(this).saturating_sub(1)
    }
}

/// The trace a stanza carries while it is being explained.
#[derive(Debug)]
pub struct Trace {
    sink: Arc<Sink>,
    steps: Vec<Step>,
    steps_dropped: usize,
}

impl Clone for Trace {
    fn clone(&self) -> Trace {
        Trace {
            sink: self.sink.clone(),
            steps: self.steps.clone(),
            steps_dropped: self.steps_dropped,
        }
    }
}

impl Trace {
    /// A trace reporting into `sink`.
    pub fn new(sink: Arc<Sink>) -> Trace {
        Trace {
            sink,
            steps: Vec::new(),
            steps_dropped: 0,
        }
    }

    /// Appends a step.
    pub fn push(
        &mut self,
        shard: ShardId,
        stage: &'static str,
        handler: Option<&'static str>,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        if self.steps.len() >= MAX_STEPS {
            self.steps_dropped += 1;
            return;
        }
        self.steps.push(Step {
            shard: shard.0,
            stage: Cow::Borrowed(stage),
            handler: handler.map(Cow::Borrowed),
            outcome,
            detail,
            at_us: self.sink.start.elapsed().as_micros() as u64,
        });
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        self.sink.put(Path {
            steps: std::mem::take(&mut self.steps),
            steps_dropped: self.steps_dropped,
        });
    }
}

impl crate::hooks::AccData {
    /// True when this stanza is being explained.
    #[inline]
    pub fn traced(&self) -> bool {
        self.trace.is_some()
    }

    /// Records a core step (no handler) when the stanza is traced; `detail` is only computed then.
    #[inline]
    pub fn note(
        &mut self,
        shard: ShardId,
        stage: &'static str,
        outcome: Outcome,
        detail: impl FnOnce(&Self) -> Option<String>,
    ) {
        if self.trace.is_some() {
            let detail = detail(self);
            if let Some(t) = self.trace.as_deref_mut() {
                t.push(shard, stage, None, outcome, detail);
            }
        }
    }

    /// Records a step of a named handler or routing module when the stanza is traced.
    #[inline]
    pub fn note_handler(
        &mut self,
        shard: ShardId,
        stage: &'static str,
        handler: &'static str,
        outcome: Outcome,
    ) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(shard, stage, Some(handler), outcome, None);
        }
    }

    /// Sets the outcome of the last step of `handler` at `stage` (a step recorded before the
    /// handler ran, once its verdict is known).
    #[inline]
    pub fn amend_note(&mut self, stage: &'static str, handler: &'static str, outcome: Outcome) {
        if let Some(t) = self.trace.as_deref_mut() {
            let last = t
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.stage == stage && s.handler.as_deref() == Some(handler));
            if let Some(step) = last {
                step.outcome = outcome;
            }
        }
    }
}

impl Acc {
    /// Ends this stanza's path at the connection of `receiver` (its `to` when not given) with
    /// `outcome`. The trace is reported now rather than when the stanza's buffer dies (a
    /// stream-managed session keeps it until the client acknowledges it).
    #[inline]
    pub fn end_trace(
        &mut self,
        shard: ShardId,
        receiver: Option<&crate::jid::FullJid>,
        outcome: Outcome,
    ) {
        if let Some(mut t) = self.trace.take() {
            let to = receiver.map_or(self.to.as_str(), |r| r.as_str()).to_owned();
            t.push(shard, "c2s", None, outcome, Some(to));
        }
    }
}

/// Everything one request learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The sender, as the stanza entered the route.
    pub from: String,
    /// The stanza's `to` (the sender's bare JID when it has none).
    pub to: String,
    /// `message`, `presence`, `iq` or the element's name.
    pub kind: String,
    /// Shard that took the request (the stanza enters where the sender's session lives: see
    /// the first steps).
    pub shard: u16,
    /// Every end of the route, in the order they ended.
    pub paths: Vec<Path>,
    /// Paths past [`MAX_PATHS`], not kept.
    pub paths_dropped: usize,
    /// Copies still on their way when the request stopped waiting (held by a handler, e.g. a
    /// client-state queue, or slower than the timeout).
    pub in_flight: usize,
}

impl Explanation {
    /// Builds the explanation from the ended paths: a path that is the beginning of another one
    /// is not an end of its own (the stanza went on as a copy, e.g. its error reply), so it is left
    /// out.
    pub fn new(head: Head, mut paths: Vec<Path>, paths_dropped: usize, in_flight: usize) -> Self {
        paths.sort_by_key(|p| p.steps.last().map(|s| s.at_us));
        let keep: Vec<bool> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                !paths.iter().enumerate().any(|(j, q)| {
                    j != i
                        && q.steps.len() > p.steps.len()
                        && q.steps[..p.steps.len()] == p.steps[..]
                })
            })
            .collect();
        let mut keep = keep.into_iter();
        paths.retain(|_| keep.next().unwrap_or(true));
        Explanation {
            from: head.from,
            to: head.to,
            kind: head.kind,
            shard: head.shard,
            paths,
            paths_dropped,
            in_flight,
        }
    }
}

/// What is known about a request before its paths end.
#[derive(Debug, Clone)]
pub struct Head {
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Stanza kind.
    pub kind: String,
    /// Shard that took the request.
    pub shard: u16,
}
