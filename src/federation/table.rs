//! The outgoing stream table of one shard, sans-IO: per (local domain, remote domain) the state of
//! the one outgoing stream, the stanzas waiting for it and the dialback verifications asked of it.
//! It lives on the home shard of the remote domain; the runtime (`rt::s2s_out`) opens a stream when
//! [`Queued::open`] says so, reports its progress, and pulls what waits.
//!
//! Bounds and policies: at most `max_queue` stanzas and `max_queue_bytes` bytes wait per pair, and
//! at most `max_queue_bytes_total` bytes over all the shard's pairs (memory is bounded per shard
//! while a burst towards one domain fits); a new stanza past any of them is refused
//! (`resource-constraint`). At most [`MAX_VERIFIES`] verifications
//! (past it the request is answered invalid). A stream not ready within `connect_timeout` fails with
//! `remote-server-timeout`; at most `max_links` pairs exist at once (each is a task and a DNS
//! lookup, and remotes choose the domains of dialback requests): a new pair past it is refused
//! with `resource-constraint` (a stanza bounces, a verification is answered failed); a failed pair is remembered for [`FAIL_MEMORY`] so that a flood of
//! stanzas does not reconnect once per stanza: they bounce at once with the same condition.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::HashMap;

use crate::xmpp::StanzaErrorCondition;

/// How long a failed pair answers new stanzas with its failure before trying again.
pub const FAIL_MEMORY: Duration = Duration::from_secs(5);
/// Dialback verifications waiting per pair.
pub const MAX_VERIFIES: usize = 256;

/// One outgoing stream's key: the local domain it authenticates as, the remote domain it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// Our domain.
    pub local: String,
    /// The remote domain.
    pub remote: String,
}

impl Pair {
    /// The pair (`local`, `remote`).
    pub fn new(local: &str, remote: &str) -> Pair {
        Pair {
            local: local.to_owned(),
            remote: remote.to_owned(),
        }
    }
}

/// Where a pair's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Asking DNS where the remote is.
    Resolving,
    /// Opening a TCP connection.
    Connecting,
    /// TLS and authentication.
    Negotiating,
    /// Authenticated: stanzas flow.
    Ready,
    /// Given up until `until`; new stanzas bounce with `cond`.
    Failed {
        /// When the pair may be tried again.
        until: Instant,
        /// What new stanzas bounce with meanwhile.
        cond: StanzaErrorCondition,
    },
}

/// The table's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stanzas waiting per pair.
    pub max_queue: usize,
    /// Bytes of stanzas waiting per pair.
    pub max_queue_bytes: usize,
    /// Bytes of stanzas waiting over all pairs of the table (the shard).
    pub max_queue_bytes_total: usize,
    /// Time from the first stanza until the stream must be ready.
    pub connect_timeout: Duration,
    /// Time without a stanza after which a ready stream is closed.
    pub idle_timeout: Duration,
    /// Time a ready stream may leave stanzas waiting (in the table or in its own output) while its
    /// socket takes nothing, before it is closed and the pair starts over (zero: never).
    pub send_timeout: Duration,
    /// Pairs (streams being set up, ready or remembered failed) at once.
    pub max_links: usize,
}

/// A stanza was accepted into a pair's queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Queued {
    /// No stream exists for the pair: the caller starts one.
    pub open: bool,
}

/// Something the table handed back because it cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused<T> {
    /// The item.
    pub item: T,
    /// What to answer.
    pub cond: StanzaErrorCondition,
}

/// Everything a pair held when its stream failed, to answer.
#[derive(Debug)]
pub struct Failed<T, V> {
    /// The pair.
    pub pair: Pair,
    /// Stanzas to bounce with `cond`.
    pub stanzas: Vec<T>,
    /// Verifications to answer invalid.
    pub verifies: Vec<V>,
    /// What the stanzas bounce with.
    pub cond: StanzaErrorCondition,
}

/// What [`OutTable::closed`] decided.
#[derive(Debug)]
pub enum Closed<T, V> {
    /// Nothing waits: the pair is forgotten (or it had failed already).
    Forgotten,
    /// Things wait and the stream made progress: open a new one.
    Again,
    /// Things wait but the stream took nothing: failed, answer these.
    Failed(Failed<T, V>),
}

/// What a periodic [`OutTable::tick`] found.
#[derive(Debug)]
pub struct Tick<T, V> {
    /// Pairs that were not ready in time.
    pub timed_out: Vec<Failed<T, V>>,
    /// Ready pairs idle for `idle_timeout`: the caller closes their streams.
    pub idle: Vec<Pair>,
    /// Ready pairs whose remote read nothing for `send_timeout` while stanzas waited: the caller
    /// closes their streams, and what their sockets never took goes first on a new one.
    pub stalled: Vec<Pair>,
}

struct Link<T, V> {
    state: State,
    queue: VecDeque<(T, usize)>,
    bytes: usize,
    verifies: VecDeque<V>,
    /// Ready by then, or time out (while not ready).
    deadline: Instant,
    /// Last stanza taken or bytes taken by the stream's socket (ready), or created.
    active: Instant,
    /// The stream holds stanzas its socket has not taken (as last reported by [`OutTable::wire`]).
    sending: bool,
    /// Listed idle or stalled by a tick: its stream is closing, later ticks leave it alone.
    closing: bool,
    /// Something was taken (a stanza or a verification) by the current stream: a clean close
    /// without that is a failure, not a reason to reconnect at once.
    progress: bool,
}

/// The outgoing streams homed on this shard. `T` is a stanza, `V` a verification request.
pub struct OutTable<T, V> {
    limits: Limits,
    links: HashMap<Pair, Link<T, V>>,
    /// The sum of every link's `bytes`: kept in step wherever a stanza enters or leaves a queue.
    bytes: usize,
}

impl<T, V> OutTable<T, V> {
    /// An empty table.
    pub fn new(limits: Limits) -> OutTable<T, V> {
        OutTable {
            limits,
            links: HashMap::default(),
            bytes: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The link of `pair`, created (state resolving) when absent or when its failure is
    /// forgotten; the bool says it is new (the caller opens a stream). `Err` while failed.
    fn link(
        &mut self,
        pair: &Pair,
        now: Instant,
    ) -> Result<(&mut Link<T, V>, bool), StanzaErrorCondition> {
        let fresh = match self.links.get(pair).map(|l| l.state) {
            None => true,
            Some(State::Failed { until, cond }) if until > now => return Err(cond),
            Some(State::Failed { .. }) => true,
            Some(_) => false,
        };
        if fresh && !self.links.contains_key(pair) && self.links.len() >= self.limits.max_links {
            return Err(StanzaErrorCondition::ResourceConstraint);
        }
        if fresh {
            self.links.insert(
                pair.clone(),
                Link {
                    state: State::Resolving,
                    queue: VecDeque::new(),
                    bytes: 0,
                    verifies: VecDeque::new(),
                    deadline: now + self.limits.connect_timeout,
                    active: now,
                    sending: false,
                    closing: false,
                    progress: false,
                },
            );
        }
        // Inserted just above when absent.
        let link = self.links.get_mut(pair).expect("link present");
        Ok((link, fresh))
    }

    /// Bytes of stanzas waiting over all pairs.
    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a stanza of `len` bytes for `pair`; refused past the pair's bounds or the table's
    /// byte budget.
    pub fn push(
        &mut self,
        pair: &Pair,
        item: T,
        len: usize,
        now: Instant,
    ) -> Result<Queued, Refused<T>> {
        let limits = self.limits;
        let total = self.bytes;
        let (link, open) = match self.link(pair, now) {
            Ok(l) => l,
            Err(cond) => return Err(Refused { item, cond }),
        };
        if link.queue.len() >= limits.max_queue
            || link.bytes.saturating_add(len) > limits.max_queue_bytes
            || total.saturating_add(len) > limits.max_queue_bytes_total
        {
            return Err(Refused {
                item,
                cond: StanzaErrorCondition::ResourceConstraint,
            });
        }
        link.queue.push_back((item, len));
        link.bytes += len;
        self.bytes += len;
        Ok(Queued { open })
    }

    /// Queues a dialback verification for `pair`'s stream (the remote is the authoritative
    /// server asked); refused while the pair is failed or past [`MAX_VERIFIES`].
    pub fn push_verify(&mut self, pair: &Pair, v: V, now: Instant) -> Result<Queued, Refused<V>> {
        let (link, open) = match self.link(pair, now) {
            Ok(l) => l,
            Err(cond) => return Err(Refused { item: v, cond }),
        };
        if link.verifies.len() >= MAX_VERIFIES {
            return Err(Refused {
                item: v,
                cond: StanzaErrorCondition::ResourceConstraint,
            });
        }
        link.verifies.push_back(v);
        Ok(Queued { open })
    }

    /// The stream of `pair` moved on (resolving, connecting, negotiating).
    pub fn set_state(&mut self, pair: &Pair, state: State) {
        if let Some(link) = self.links.get_mut(pair) {
            if !matches!(link.state, State::Failed { .. }) {
                link.state = state;
            }
        }
    }

    /// The stream of `pair` is authenticated (ignored once failed: a late report of a stream the
    /// pair already gave up on).
    pub fn ready(&mut self, pair: &Pair, now: Instant) {
        if let Some(link) = self.links.get_mut(pair) {
            if matches!(link.state, State::Failed { .. }) {
                return;
            }
            link.state = State::Ready;
            link.active = now;
            link.sending = false;
            link.closing = false;
        }
    }

    /// The stream of `pair` reports its socket: whether it took bytes since the last report, and
    /// whether stanzas it pushed still wait for it. A socket that takes nothing for
    /// `send_timeout` while stanzas wait stalls the stream (see [`OutTable::tick`]).
    pub fn wire(&mut self, pair: &Pair, now: Instant, progressed: bool, sending: bool) {
        if let Some(link) = self.links.get_mut(pair) {
            if link.state == State::Ready {
                if progressed {
                    link.active = now;
                }
                link.sending = sending;
            }
        }
    }

    /// The state of `pair`, if the table knows it.
    pub fn state(&self, pair: &Pair) -> Option<State> {
        self.links.get(pair).map(|l| l.state)
    }

    /// Takes waiting stanzas for a ready stream, in order, while their lengths add up to at most
    /// `room` bytes (what the stream's outbound queue still holds).
    pub fn take(&mut self, pair: &Pair, now: Instant, room: usize) -> Vec<T> {
        let Some(link) = self.links.get_mut(pair) else {
            return Vec::new();
        };
        if link.state != State::Ready {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut taken = 0usize;
        while let Some((_, len)) = link.queue.front() {
            if taken.saturating_add(*len) > room {
                break;
            }
            taken += *len;
            // front() just matched.
            let (item, len) = link.queue.pop_front().expect("front present");
            link.bytes -= len;
            out.push(item);
        }
        self.bytes -= taken;
        if !out.is_empty() {
            link.active = now;
            link.progress = true;
        }
        out
    }

    /// Puts stanzas a stream took back at the front of `pair`'s queue, in their order (the oldest
    /// first): its socket never took them, and the pair's next stream sends them before what came
    /// later. Not bounded (they were taken within the bounds, and the queue had room for them);
    /// handed back when the pair is failed or forgotten (the caller answers them).
    pub fn put_back(&mut self, pair: &Pair, items: Vec<(T, usize)>) -> Result<(), Vec<T>> {
        let link = match self.links.get_mut(pair) {
            Some(link) if !matches!(link.state, State::Failed { .. }) => link,
            _ => return Err(items.into_iter().map(|(t, _)| t).collect()),
        };
        for (item, len) in items.into_iter().rev() {
            link.bytes += len;
            self.bytes += len;
            link.queue.push_front((item, len));
        }
        Ok(())
    }

    /// Takes the waiting verifications (any state: dialback verification needs no authentication
    /// of this stream, only its connection).
    pub fn take_verifies(&mut self, pair: &Pair) -> Vec<V> {
        let Some(link) = self.links.get_mut(pair) else {
            return Vec::new();
        };
        if !link.verifies.is_empty() {
            link.progress = true;
        }
        link.verifies.drain(..).collect()
    }

    /// True when something waits for `pair`'s stream.
    pub fn has_waiting(&self, pair: &Pair) -> bool {
        self.links
            .get(pair)
            .is_some_and(|l| !l.queue.is_empty() || !l.verifies.is_empty())
    }

    /// The stream of `pair` failed with `cond`: remembered for [`FAIL_MEMORY`]; what waited is
    /// handed back to answer.
    pub fn failed(
        &mut self,
        pair: &Pair,
        cond: StanzaErrorCondition,
        now: Instant,
    ) -> Failed<T, V> {
        let (stanzas, verifies) = match self.links.get_mut(pair) {
            Some(link) => {
                link.state = State::Failed {
                    until: now + FAIL_MEMORY,
                    cond,
                };
                self.bytes -= link.bytes;
                link.bytes = 0;
                (
                    link.queue.drain(..).map(|(t, _)| t).collect(),
                    link.verifies.drain(..).collect(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        Failed {
            pair: pair.clone(),
            stanzas,
            verifies,
            cond,
        }
    }

    /// The stream of `pair` ended without failing (idle close, clean close by the remote). When
    /// stanzas or verifications still wait, the pair starts over (resolving: [`Closed::Again`],
    /// the caller opens a new stream), unless the stream took nothing at all (a remote closing
    /// right after authentication): that is a failure, remembered like one, so such a remote is
    /// not reconnected to in a loop. Otherwise the pair is forgotten.
    pub fn closed(&mut self, pair: &Pair, now: Instant) -> Closed<T, V> {
        let Some(link) = self.links.get_mut(pair) else {
            return Closed::Forgotten;
        };
        if matches!(link.state, State::Failed { .. }) {
            return Closed::Forgotten;
        }
        if link.queue.is_empty() && link.verifies.is_empty() {
            self.links.remove(pair);
            return Closed::Forgotten;
        }
        if !link.progress {
            return Closed::Failed(self.failed(
                pair,
                StanzaErrorCondition::RemoteServerTimeout,
                now,
            ));
        }
        link.state = State::Resolving;
        link.deadline = now + self.limits.connect_timeout;
        link.active = now;
        link.sending = false;
        link.closing = false;
        link.progress = false;
        Closed::Again
    }

    /// Periodic work: pairs not ready by their deadline fail with `remote-server-timeout`, failures
    /// older than [`FAIL_MEMORY`] are forgotten, ready pairs idle for `idle_timeout` are listed, and
    /// so are ready pairs whose stanzas waited `send_timeout` without their socket taking a byte.
    pub fn tick(&mut self, now: Instant) -> Tick<T, V> {
        let Limits {
            idle_timeout,
            send_timeout,
            ..
        } = self.limits;
        let mut late = Vec::new();
        let mut idle = Vec::new();
        let mut stalled = Vec::new();
        self.links.retain(|pair, link| match link.state {
            State::Failed { until, .. } => until > now,
            State::Ready if link.closing => true,
            State::Ready => {
                let quiet = now.saturating_duration_since(link.active);
                let waiting = !link.queue.is_empty() || link.sending;
                if waiting && !send_timeout.is_zero() && quiet >= send_timeout {
                    stalled.push(pair.clone());
                    link.closing = true;
                } else if link.queue.is_empty() && quiet >= idle_timeout {
                    idle.push(pair.clone());
                    link.closing = true;
                }
                true
            }
            _ => {
                if link.deadline <= now {
                    late.push(pair.clone());
                }
                true
            }
        });
        let timed_out = late
            .iter()
            .map(|p| self.failed(p, StanzaErrorCondition::RemoteServerTimeout, now))
            .collect();
        Tick {
            timed_out,
            idle,
            stalled,
        }
    }

    /// Every pair with its state and number of waiting stanzas (admin API, metrics).
    pub fn list(&self) -> Vec<(Pair, State, usize)> {
        let mut v: Vec<_> = self
            .links
            .iter()
            .map(|(p, l)| (p.clone(), l.state, l.queue.len()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StanzaErrorCondition as C;

    const LIMITS: Limits = Limits {
        max_queue: 3,
        max_queue_bytes: 100,
        max_queue_bytes_total: 150,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(30),
        max_links: 2,
    };

    fn table() -> OutTable<u32, &'static str> {
        OutTable::new(LIMITS)
    }

    fn pair() -> Pair {
        Pair::new("petrel.test", "other.test")
    }

    #[test]
    fn first_stanza_opens_the_rest_wait() {
        let mut t = table();
        let now = Instant::now();
        assert_eq!(t.push(&pair(), 1, 10, now), Ok(Queued { open: true }));
        assert_eq!(t.push(&pair(), 2, 10, now), Ok(Queued { open: false }));
        assert_eq!(t.state(&pair()), Some(State::Resolving));
        // Another pair is another stream.
        let other = Pair::new("petrel.test", "third.test");
        assert_eq!(t.push(&other, 9, 10, now), Ok(Queued { open: true }));
        // Nothing is taken before the stream is ready.
        assert!(t.take(&pair(), now, usize::MAX).is_empty());
        t.set_state(&pair(), State::Negotiating);
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![1, 2]);
        assert!(!t.has_waiting(&pair()));
    }

    #[test]
    fn stanzas_put_back_go_first_on_the_next_stream() {
        let mut t = table();
        let now = Instant::now();
        for i in 0..3 {
            t.push(&pair(), i, 10, now).unwrap();
        }
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![0, 1, 2]);
        assert_eq!(t.queued_bytes(), 0);
        t.push(&pair(), 3, 10, now).unwrap();
        // The stream's socket took only the first: the other two were never sent.
        assert_eq!(t.put_back(&pair(), vec![(1, 10), (2, 10)]), Ok(()));
        assert_eq!(t.queued_bytes(), 30);
        assert!(matches!(t.closed(&pair(), now), Closed::Again));
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![1, 2, 3]);
        // A failed pair answers them instead.
        t.push(&pair(), 4, 10, now).unwrap();
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![4]);
        let _ = t.failed(&pair(), C::RemoteServerTimeout, now);
        assert_eq!(t.put_back(&pair(), vec![(4, 10)]), Err(vec![4]));
        assert_eq!(t.queued_bytes(), 0);
    }

    #[test]
    fn take_stops_where_the_stream_has_no_room() {
        let mut t = table();
        let now = Instant::now();
        for i in 0..3 {
            t.push(&pair(), i, 30, now).unwrap();
        }
        t.ready(&pair(), now);
        // The batch counts what it already took: 30 + 30 > 50.
        assert_eq!(t.take(&pair(), now, 50), vec![0]);
        assert!(t.has_waiting(&pair()));
        assert_eq!(t.take(&pair(), now, 60), vec![1, 2]);
        assert!(!t.has_waiting(&pair()));
    }

    #[test]
    fn full_queue_refuses_with_resource_constraint() {
        let mut t = table();
        let now = Instant::now();
        for i in 0..3 {
            t.push(&pair(), i, 10, now).unwrap();
        }
        assert_eq!(
            t.push(&pair(), 4, 10, now),
            Err(Refused {
                item: 4,
                cond: C::ResourceConstraint
            })
        );
        let mut t = table();
        t.push(&pair(), 1, 95, now).unwrap();
        assert_eq!(
            t.push(&pair(), 2, 6, now).unwrap_err().cond,
            C::ResourceConstraint
        );
        // The bytes bound counts what is still queued only.
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![1]);
        assert!(t.push(&pair(), 3, 100, now).is_ok());
    }

    #[test]
    fn the_byte_budget_spans_pairs_and_comes_back_exactly() {
        let mut t = table();
        let now = Instant::now();
        let b = Pair::new("petrel.test", "b.test");
        let fill = |t: &mut OutTable<u32, &'static str>, now| {
            // 60 + 40 + 50: the budget to the byte, each pair within its own bounds.
            t.push(&pair(), 1, 60, now).unwrap();
            t.push(&pair(), 2, 40, now).unwrap();
            t.push(&b, 3, 50, now).unwrap();
            assert_eq!(t.queued_bytes(), 150);
            // b is far from its own bounds, the shard is not.
            assert_eq!(
                t.push(&b, 4, 1, now),
                Err(Refused {
                    item: 4,
                    cond: C::ResourceConstraint
                })
            );
        };
        fill(&mut t, now);
        // Taken by the stream (part of the queue): exactly that much is free again.
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, 60), vec![1]);
        assert_eq!(t.queued_bytes(), 90);
        t.push(&b, 5, 50, now).unwrap();
        assert_eq!(
            t.push(&pair(), 6, 11, now).unwrap_err().cond,
            C::ResourceConstraint
        );
        t.push(&pair(), 6, 10, now).unwrap();
        assert_eq!(t.queued_bytes(), 150);
        // Bounced on failure.
        let f = t.failed(&b, C::RemoteServerNotFound, now);
        assert_eq!(f.stanzas, vec![3, 5]);
        assert_eq!(t.queued_bytes(), 50);
        // Bounced on timeout: the stream of the first pair starts over and is not ready in time.
        assert!(matches!(t.closed(&pair(), now), Closed::Again));
        let late = now + Duration::from_secs(10);
        let tick = t.tick(late);
        assert_eq!(tick.timed_out[0].stanzas, vec![2, 6]);
        assert_eq!(t.queued_bytes(), 0);
        // Both failures forgotten: the whole budget holds again, to the byte.
        let again = late + FAIL_MEMORY;
        t.tick(again);
        assert!(t.list().is_empty());
        fill(&mut t, again);
    }

    #[test]
    fn timeout_fails_the_waiting_and_is_remembered() {
        let mut t = table();
        let now = Instant::now();
        t.push(&pair(), 1, 10, now).unwrap();
        t.push_verify(&pair(), "v", now).unwrap();
        let tick = t.tick(now + Duration::from_secs(9));
        assert!(tick.timed_out.is_empty());
        let later = now + Duration::from_secs(10);
        let mut tick = t.tick(later);
        assert_eq!(tick.timed_out.len(), 1);
        let f = tick.timed_out.pop().unwrap();
        assert_eq!(
            (f.stanzas, f.verifies, f.cond),
            (vec![1], vec!["v"], C::RemoteServerTimeout)
        );
        // A flood meanwhile bounces at once, without a new stream.
        assert_eq!(
            t.push(&pair(), 2, 10, later + Duration::from_secs(1)),
            Err(Refused {
                item: 2,
                cond: C::RemoteServerTimeout
            })
        );
        assert_eq!(t.push_verify(&pair(), "w", later).unwrap_err().item, "w");
        // After FAIL_MEMORY the pair is tried again.
        let again = later + FAIL_MEMORY;
        t.tick(again);
        assert_eq!(t.state(&pair()), None);
        assert_eq!(t.push(&pair(), 3, 10, again), Ok(Queued { open: true }));
    }

    #[test]
    fn failure_hands_back_everything_and_expired_failure_reopens_on_push() {
        let mut t = table();
        let now = Instant::now();
        t.push(&pair(), 1, 10, now).unwrap();
        t.push(&pair(), 2, 10, now).unwrap();
        let f = t.failed(&pair(), C::RemoteServerNotFound, now);
        assert_eq!((f.stanzas, f.cond), (vec![1, 2], C::RemoteServerNotFound));
        assert_eq!(
            t.push(&pair(), 3, 10, now).unwrap_err().cond,
            C::RemoteServerNotFound
        );
        // A late report from the failed stream changes nothing.
        t.set_state(&pair(), State::Connecting);
        t.ready(&pair(), now);
        assert!(matches!(t.closed(&pair(), now), Closed::Forgotten));
        assert!(matches!(t.state(&pair()), Some(State::Failed { .. })));
        assert!(t.take(&pair(), now, usize::MAX).is_empty());
        // Without a tick in between, the first push after FAIL_MEMORY opens again.
        assert_eq!(
            t.push(&pair(), 4, 10, now + FAIL_MEMORY),
            Ok(Queued { open: true })
        );
    }

    #[test]
    fn idle_ready_streams_are_listed_and_close_cleanly() {
        let mut t = table();
        let now = Instant::now();
        t.push(&pair(), 1, 10, now).unwrap();
        t.ready(&pair(), now);
        t.take(&pair(), now, usize::MAX);
        assert!(t.tick(now + Duration::from_secs(59)).idle.is_empty());
        assert_eq!(t.tick(now + Duration::from_secs(60)).idle, vec![pair()]);
        assert!(t.tick(now + Duration::from_secs(61)).idle.is_empty());
        // Closed with nothing waiting: forgotten.
        assert!(matches!(
            t.closed(&pair(), now + Duration::from_secs(60)),
            Closed::Forgotten
        ));
        assert_eq!(t.state(&pair()), None);
    }

    #[test]
    fn a_stream_whose_socket_takes_nothing_while_stanzas_wait_stalls() {
        let s = |secs| Instant::now() + Duration::from_secs(secs);
        let mut t = table();
        let t0 = s(0);
        t.push(&pair(), 1, 10, t0).unwrap();
        t.ready(&pair(), t0);
        assert_eq!(t.take(&pair(), t0, 10), vec![1]);
        // The socket has not taken stanza 1 yet; 2 waits in the table, the stream has no room.
        t.wire(&pair(), s(1), true, true);
        t.push(&pair(), 2, 10, s(1)).unwrap();
        assert!(t.take(&pair(), s(1), 0).is_empty());
        // Bytes going out keep it alive, however slowly.
        t.wire(&pair(), s(20), true, true);
        let tick = t.tick(s(49));
        assert!(tick.stalled.is_empty() && tick.idle.is_empty());
        // Reports without progress do not.
        t.wire(&pair(), s(40), false, true);
        assert_eq!(t.tick(s(50)).stalled, vec![pair()]);
        // Listed once: its stream is closing.
        assert!(t.tick(s(51)).stalled.is_empty());
        // Closing it starts over with what waits, under a fresh connect deadline.
        assert!(matches!(t.closed(&pair(), s(50)), Closed::Again));
        assert!(t.tick(s(85)).stalled.is_empty());
    }

    #[test]
    fn stanzas_waiting_only_in_the_streams_output_stall_it_too() {
        let s = |secs| Instant::now() + Duration::from_secs(secs);
        let mut t = table();
        t.push(&pair(), 1, 10, s(0)).unwrap();
        t.ready(&pair(), s(0));
        assert_eq!(t.take(&pair(), s(0), usize::MAX), vec![1]);
        t.wire(&pair(), s(0), false, true);
        // Stalled at send_timeout (30 s), long before idle_timeout (60 s).
        assert!(t.tick(s(29)).stalled.is_empty());
        let tick = t.tick(s(30));
        assert_eq!((tick.stalled, tick.idle), (vec![pair()], vec![]));
        // A stream whose socket took everything is merely idle, later.
        let mut t = table();
        t.push(&pair(), 1, 10, s(0)).unwrap();
        t.ready(&pair(), s(0));
        t.take(&pair(), s(0), usize::MAX);
        t.wire(&pair(), s(0), true, false);
        let tick = t.tick(s(59));
        assert!(tick.stalled.is_empty() && tick.idle.is_empty());
        assert_eq!(t.tick(s(60)).idle, vec![pair()]);
        // Zero disables the stall.
        let mut t = OutTable::<u32, &str>::new(Limits {
            send_timeout: Duration::ZERO,
            ..LIMITS
        });
        t.push(&pair(), 1, 10, s(0)).unwrap();
        t.ready(&pair(), s(0));
        t.take(&pair(), s(0), usize::MAX);
        t.wire(&pair(), s(0), false, true);
        assert!(t.tick(s(3600)).stalled.is_empty());
    }

    #[test]
    fn close_with_waiting_stanzas_starts_over() {
        let mut t = table();
        let now = Instant::now();
        t.push(&pair(), 1, 10, now).unwrap();
        t.ready(&pair(), now);
        assert_eq!(t.take(&pair(), now, usize::MAX), vec![1]);
        t.push(&pair(), 2, 10, now).unwrap();
        t.push(&pair(), 3, 10, now).unwrap();
        assert!(matches!(t.closed(&pair(), now), Closed::Again));
        assert_eq!(t.state(&pair()), Some(State::Resolving));
        // The new stream gets a fresh connect deadline.
        let f = t.tick(now + Duration::from_secs(10)).timed_out;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].stanzas, vec![2, 3]);
    }

    #[test]
    fn a_stream_closed_before_taking_anything_is_a_failure() {
        let mut t = table();
        let now = Instant::now();
        t.push(&pair(), 1, 10, now).unwrap();
        // The remote closes right after ready, before anything was taken: no reconnection loop.
        t.ready(&pair(), now);
        match t.closed(&pair(), now) {
            Closed::Failed(f) => assert_eq!((f.stanzas, f.cond), (vec![1], C::RemoteServerTimeout)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.push(&pair(), 3, 10, now).unwrap_err().cond,
            C::RemoteServerTimeout
        );
    }

    #[test]
    fn verifies_wait_in_any_state_and_are_bounded() {
        let mut t = table();
        let now = Instant::now();
        assert_eq!(t.push_verify(&pair(), "a", now), Ok(Queued { open: true }));
        for _ in 1..MAX_VERIFIES {
            t.push_verify(&pair(), "b", now).unwrap();
        }
        assert_eq!(
            t.push_verify(&pair(), "c", now).unwrap_err().cond,
            C::ResourceConstraint
        );
        assert_eq!(t.take_verifies(&pair()).len(), MAX_VERIFIES);
        assert!(!t.has_waiting(&pair()));
        assert_eq!(t.list(), vec![(pair(), State::Resolving, 0)]);
    }

    #[test]
    fn new_pairs_past_max_links_are_refused() {
        let mut t = table();
        let now = Instant::now();
        let third = Pair::new("petrel.test", "third.test");
        let fourth = Pair::new("petrel.test", "fourth.test");
        t.push(&pair(), 1, 10, now).unwrap();
        t.push_verify(&third, "v", now).unwrap();
        assert_eq!(
            t.push(&fourth, 2, 10, now).unwrap_err().cond,
            C::ResourceConstraint
        );
        assert_eq!(
            t.push_verify(&fourth, "w", now).unwrap_err().cond,
            C::ResourceConstraint
        );
        // Existing pairs go on.
        assert_eq!(t.push(&pair(), 3, 10, now), Ok(Queued { open: false }));
        // A forgotten pair makes room.
        t.take_verifies(&third);
        assert!(matches!(t.closed(&third, now), Closed::Forgotten));
        assert_eq!(t.push(&fourth, 4, 10, now), Ok(Queued { open: true }));
    }
}
