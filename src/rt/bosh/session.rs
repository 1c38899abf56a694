//! The task running one BOSH session: HTTP requests in through its inbox, the sans-IO
//! `BoshSession` in the middle, its c2s stream in a `conn` driver task behind an in-memory pipe.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use ahash::HashMap;
use glommio::timer::Timer;

use super::pipe::{pipe, SessionEnd};
use super::{Reply, Sessions};
use crate::c2s::C2sConfig;
use crate::rt::address_slots::AddressSlot;
use crate::rt::ShardCtx;
use crate::store::oneshot::Sender;
use crate::web::bosh::{self, Action, BoshSession, Condition, Request, RequestId};
use crate::web::{Confirmed, Link};

/// Requests queued for a session before its task takes them; past it a request is refused with
/// `policy-violation` (a client keeps at most `requests` open, so only a misbehaving one gets there).
const INBOX_MAX: usize = 16;

/// Requests on their way to a session task.
#[derive(Default)]
pub(super) struct Inbox {
    queue: VecDeque<(Incoming, Sender<Reply>)>,
    waker: Option<Waker>,
}

/// What reaches a session from its HTTP requests.
pub(super) enum Incoming {
    /// A request that parsed (boxed: the other variant is one byte).
    Request(Box<Request>),
    /// A request naming the session that did not parse: the session ends with this condition.
    Broken(Condition),
}

impl Incoming {
    /// The answer when no session has its sid: `item-not-found`, or the request's own error.
    pub(super) fn unknown_sid(&self) -> Condition {
        match self {
            Incoming::Request(_) => Condition::ItemNotFound,
            Incoming::Broken(cond) => *cond,
        }
    }
}

impl Inbox {
    /// Queues a request (or refuses it when the inbox is full).
    pub(super) fn push(&mut self, req: Incoming, tx: Sender<Reply>) {
        if self.queue.len() >= INBOX_MAX {
            return tx.send(Reply::terminate(Condition::PolicyViolation));
        }
        self.queue.push_back((req, tx));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a session task needs besides its core.
pub(super) struct Start {
    pub ctx: Rc<ShardCtx>,
    pub c2s: Arc<C2sConfig>,
    pub peer: SocketAddr,
    pub max_queued: usize,
    pub inbox: Rc<RefCell<Inbox>>,
    /// The creation request's reply (its `RequestId` is 0).
    pub first: Sender<Reply>,
    /// The address's slot for a session not authenticated yet, given back once the stream binds.
    pub unauthenticated: Option<AddressSlot>,
}

/// Runs the session to its end, then forgets it on this shard.
pub(super) async fn run(mut core: BoshSession, mut st: Start) {
    let (link, c2s_end) = pipe(st.max_queued);
    // What the client showed it received: the c2s holds the rest as not delivered.
    let confirmed = Rc::new(Confirmed::default());
    let driver = glommio::spawn_local(crate::rt::conn::run(
        c2s_end,
        st.peer,
        Link::Bosh(confirmed.clone()),
        st.ctx.clone(),
        st.c2s.clone(),
    ));
    let mut replies: HashMap<RequestId, Sender<Reply>> = HashMap::default();
    replies.insert(RequestId(0), st.first);
    let mut next_id = 1;
    let mut timer: Option<(Instant, Timer)> = None;
    let mut out = Vec::new();
    let mut gone_seen = false;
    loop {
        let now = Instant::now();
        if st.unauthenticated.is_some() && confirmed.is_bound() {
            st.unauthenticated = None;
        }
        let taken: Vec<_> = st.inbox.borrow_mut().queue.drain(..).collect();
        for (req, tx) in taken {
            let id = RequestId(next_id);
            next_id += 1;
            replies.insert(id, tx);
            match req {
                Incoming::Request(req) => core.handle_request(id, *req, now),
                Incoming::Broken(cond) => core.broken_request(id, cond, now),
            }
        }
        // Once the c2s is gone its last output is taken whatever the queue holds (the pipe bounds
        // it): waiting for room would wait on a client that may never come back.
        if link.has_output() && (core.queued_bytes() < st.max_queued || link.c2s_gone()) {
            link.take_output(&mut out);
            core.c2s_output(&out, now);
            out.clear();
        }
        if link.c2s_gone() && !link.has_output() && !gone_seen {
            gone_seen = true;
            core.c2s_closed(now);
        }
        if core.next_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        let done = carry_out(&mut core, &link, &mut replies);
        confirmed.set(core.delivered());
        if done {
            break;
        }
        arm(&mut timer, core.next_timeout());
        wait(
            &st.inbox,
            &link,
            &mut timer,
            st.max_queued,
            &core,
            gone_seen,
        )
        .await;
    }
    link.end();
    st.ctx
        .shard
        .borrow_mut()
        .ext
        .get_or_default::<Sessions>()
        .map
        .remove(core.sid());
    // Requests still in the inbox or unanswered: the session is gone.
    for (_, tx) in st.inbox.borrow_mut().queue.drain(..) {
        tx.send(Reply::terminate(Condition::ItemNotFound));
    }
    drop(replies);
    // The c2s driver reads EOF and ends on its own (unbinding the session).
    driver.detach();
}

/// Carries out the core's actions; true once the session is over.
fn carry_out(
    core: &mut BoshSession,
    link: &SessionEnd,
    replies: &mut HashMap<RequestId, Sender<Reply>>,
) -> bool {
    let mut done = false;
    while let Some(a) = core.poll_action() {
        match a {
            Action::Respond {
                request_id,
                status,
                body,
            } => {
                if let Some(tx) = replies.remove(&request_id) {
                    tx.send(Reply { status, body });
                }
            }
            Action::FeedC2s(bytes) => link.feed(&bytes),
            Action::Terminate => done = true,
        }
    }
    done
}

fn arm(timer: &mut Option<(Instant, Timer)>, want: Option<Instant>) {
    match (want, &timer) {
        (Some(at), Some((cur, _))) if *cur == at => {}
        (Some(at), _) => {
            let dur = at.saturating_duration_since(Instant::now());
            *timer = Some((at, Timer::new(dur)));
        }
        (None, _) => *timer = None,
    }
}

/// Waits for a request, output from the c2s (when there is room for it), its close, or the timer.
async fn wait(
    inbox: &RefCell<Inbox>,
    link: &SessionEnd,
    timer: &mut Option<(Instant, Timer)>,
    max_queued: usize,
    core: &BoshSession,
    gone_seen: bool,
) {
    std::future::poll_fn(|cx| {
        {
            let mut inbox = inbox.borrow_mut();
            if !inbox.queue.is_empty() {
                return Poll::Ready(());
            }
            inbox.waker = Some(cx.waker().clone());
        }
        link.set_waker(cx);
        if (link.has_output() && (core.queued_bytes() < max_queued || link.c2s_gone()))
            || (link.c2s_gone() && !gone_seen)
        {
            return Poll::Ready(());
        }
        if let Some((_, t)) = timer.as_mut() {
            if std::pin::Pin::new(t).poll(cx).is_ready() {
                *timer = None;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

impl Reply {
    /// A `type='terminate'` reply with `cond` (HTTP 200: the client's version is unknown here).
    pub(super) fn terminate(cond: Condition) -> Reply {
        Reply {
            status: 200,
            body: bosh::terminate(Some(cond), &[]),
        }
    }
}
