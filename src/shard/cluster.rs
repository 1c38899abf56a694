//! Several shards in one thread with synchronous mesh delivery: for tests and benchmarks of the route
//! without executors or sockets.

use ahash::HashSet;
use std::rc::Rc;

use crate::c2s::route::{bind, user_send, Session};
use crate::config::RoutingModule;
use crate::jid::FullJid;
use crate::shard::{ConnMsg, Mailbox, Shard, ShardId};
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
            }
            if !moved {
                return;
            }
        }
    }

    /// Opens a connection on shard `on`, binds `jid` and, with `Some(priority)`, sends initial presence.
    pub fn connect(
        &mut self,
        on: usize,
        jid: &FullJid,
        priority: Option<i8>,
    ) -> (Session, Rc<Mailbox>) {
        let (conn, mb) = self.shards[on].open_conn();
        let sref = self.shards[on].session_ref(conn);
        bind(&mut self.shards[on], jid.clone(), sref);
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
        }
        (sess, mb)
    }
}
