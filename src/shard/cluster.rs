//! Several shards in one thread with synchronous mesh delivery: for tests and benchmarks of the route
//! without executors or sockets.

use ahash::{HashMap, HashSet};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::c2s::route::{bind, user_send, Session};
use crate::config::RoutingModule;
use crate::jid::FullJid;
use crate::shard::{ConnMsg, Mailbox, Shard, ShardId, ShardMsg};
use crate::xml::Stanza;

/// MongooseIM's default routing chain (the config's default, [`RoutingModule::DEFAULT_CHAIN`]).
pub const DEFAULT_ROUTING: [RoutingModule; 6] = RoutingModule::DEFAULT_CHAIN;

/// `n` shards serving `hosts`, wired by [`Cluster::pump`].
pub struct Cluster {
    /// The shards, by index.
    pub shards: Vec<Shard>,
    /// Store for the jobs handlers queue (run synchronously by `pump`); jobs are dropped without one.
    pub store: Option<crate::store::Store>,
}

impl Cluster {
    /// `n` shards with the default routing chain and unbounded mailboxes.
    pub fn new(n: usize, hosts: &[&str]) -> Cluster {
        let hosts: Rc<HashSet<String>> = Rc::new(hosts.iter().map(|h| h.to_string()).collect());
        let shards = (0..n)
            .map(|i| {
                Shard::new(
                    ShardId(i as u16),
                    n,
                    hosts.clone(),
                    DEFAULT_ROUTING.to_vec().into(),
                    usize::MAX / 2,
                )
            })
            .collect();
        Cluster {
            shards,
            store: None,
        }
    }

    /// Delivers queued mesh messages until no shard has any left.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.shards.len() {
                for (to, msg) in self.shards[i].take_outgoing() {
                    moved = true;
                    self.shards[to.index()].handle_msg(msg);
                }
                for job in self.shards[i].take_jobs() {
                    moved = true;
                    if let Some(store) = &self.store {
                        let done = (job.run)(store);
                        self.shards[i].job_done(done);
                    }
                }
                // `take_jobs` also runs the work of guards that died (`hooks::on_drop`), which may
                // send to other shards.
                moved |= self.shards[i].has_outgoing();
            }
            if !moved {
                return;
            }
        }
    }

    /// Registers the account `jid` in the store, if there is one and it has none, as a login
    /// needs: the store keeps no per-user data for an account that does not exist.
    pub fn add_account(&self, jid: &crate::jid::BareJid) {
        let Some(store) = &self.store else {
            return;
        };
        let secrets = crate::auth::ScramSecrets::derive("pw", 4096);
        match store.add_user(jid, &secrets) {
            Ok(()) | Err(crate::store::StoreError::UserExists) => {}
            Err(e) => panic!("account {jid}: {e}"),
        }
    }

    /// Opens a connection on shard `on`, binds `jid` and, with `Some(priority)`, sends initial presence.
    pub fn connect(
        &mut self,
        on: usize,
        jid: &FullJid,
        priority: Option<i8>,
    ) -> (Session, Rc<Mailbox>) {
        self.add_account(&jid.bare());
        let (conn, mb) = self.shards[on].open_conn();
        let sref = self.shards[on].session_ref(conn);
        bind(
            &mut self.shards[on],
            jid.clone(),
            sref,
            std::time::Instant::now(),
        );
        self.pump();
        match mb.pop() {
            Some(ConnMsg::Bound(Ok(()))) => {}
            other => panic!("bind of {jid} failed: {other:?}"),
        }
        self.shards[on].local_bind(jid.clone(), conn);
        let mut sess = Session::new(jid.clone(), sref);
        if let Some(p) = priority {
            let presence = Stanza::parse(
                format!("<presence><priority>{p}</priority></presence>").into_bytes(),
            )
            .expect("valid presence");
            user_send(&mut self.shards[on], &mut sess, presence);
            self.pump();
            // The release of the input the broadcast held is the connection driver's business;
            // tests read the mailbox for what the client would be sent.
            let kept: Vec<ConnMsg> = std::iter::from_fn(|| mb.pop())
                .filter(|m| !matches!(m, ConnMsg::InputReleased))
                .collect();
            for m in kept {
                let _ = mb.push(m);
            }
        }
        (sess, mb)
    }
}

/// The mesh of a [`Cluster`] as FIFO rings per ordered pair of shards that a test drains in the
/// order it chooses (`Cluster::pump` delivers at once): the interleavings the runtime may produce.
#[derive(Default)]
pub struct Rings {
    queues: HashMap<(usize, usize), VecDeque<ShardMsg>>,
    /// Messages pushed per ring, for fences (`shard::fence`), as the runtime's mesh counts them.
    sent: HashMap<(usize, usize), u64>,
}

impl Rings {
    /// Moves what every shard queued for other shards onto the rings.
    pub fn collect(&mut self, c: &mut Cluster) {
        for i in 0..c.shards.len() {
            for (to, mut msg) in c.shards[i].take_outgoing() {
                let sent = &mut self.sent;
                crate::shard::fence::stamp(&mut msg, ShardId(i as u16), |on| {
                    sent.get(&(i, on.index())).copied().unwrap_or(0)
                });
                *sent.entry((i, to.index())).or_default() += 1;
                self.queues
                    .entry((i, to.index()))
                    .or_default()
                    .push_back(msg);
            }
        }
    }

    /// Delivers the oldest message of ring `from` -> `to` and collects what that caused; false
    /// when the ring is empty.
    pub fn step(&mut self, c: &mut Cluster, from: usize, to: usize) -> bool {
        self.collect(c);
        let Some(msg) = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return false;
        };
        c.shards[to].handle_from(ShardId(from as u16), msg);
        self.collect(c);
        true
    }

    /// Delivers the oldest message of the busy ring `pick` chooses (given how many are busy, it
    /// returns an index below that); false when every ring is empty.
    pub fn step_any(&mut self, c: &mut Cluster, pick: impl FnOnce(usize) -> usize) -> bool {
        self.collect(c);
        let busy = self.busy();
        if busy.is_empty() {
            return false;
        }
        let (from, to) = busy[pick(busy.len()) % busy.len()];
        self.step(c, from, to)
    }

    /// Runs the store jobs and delivers the rings' messages one at a time (the first busy ring's
    /// oldest first), calling `check` after each step, until nothing moves: a test looks at every
    /// intermediate state (what a client may read before the rest happened).
    pub fn run_stepwise(&mut self, c: &mut Cluster, mut check: impl FnMut(&mut Cluster)) {
        loop {
            let mut moved = false;
            for i in 0..c.shards.len() {
                for job in c.shards[i].take_jobs() {
                    moved = true;
                    if let Some(store) = &c.store {
                        let done = (job.run)(store);
                        c.shards[i].job_done(done);
                    }
                }
            }
            check(c);
            moved |= self.step_any(c, |_| 0);
            check(c);
            if !moved {
                return;
            }
        }
    }

    /// The rings with something queued, in order.
    pub fn busy(&self) -> Vec<(usize, usize)> {
        let mut v: Vec<(usize, usize)> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }
}
