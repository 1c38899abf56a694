//! The BOSH driver (XEP-0124/0206 at `/http-bind`): the HTTP layer hands each request body to
//! [`handle`], which answers it once its session has a response. A session lives on the shard that
//! created it (the shard is the prefix of its `sid`); requests reaching another shard are forwarded
//! over the mesh and answered through a one-shot slot.

mod pipe;
mod session;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ahash::HashMap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;

use super::address_slots::AddressSlots;
use super::ShardCtx;
use crate::c2s::C2sConfig;
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::store::oneshot::{self, Sender};
use crate::web::bosh::{self, Action, BoshConfig, BoshSession, Condition, Request, RequestId};
use session::{Inbox, Incoming};

/// An HTTP response to a BOSH request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `<body/>` (content type `text/xml; charset=utf-8`).
    pub body: Vec<u8>,
}

/// What a BOSH endpoint serves with.
#[derive(Debug, Clone)]
pub(crate) struct BoshEndpoint {
    /// The c2s settings of its streams (TLS mode `None`).
    pub c2s: Arc<C2sConfig>,
    /// The BOSH session parameters.
    pub bosh: Arc<BoshConfig>,
}

impl BoshEndpoint {
    /// An endpoint whose streams use `session` (an HTTP listener's c2s settings) minus what BOSH
    /// replaces: no idle timeout (BOSH's `inactivity` ends silent sessions; an idle client only
    /// sends empty bodies, which feed the c2s nothing). Bodies are bounded by the stanza limits;
    /// `max_wait` and `inactivity` are the listener's.
    pub(crate) fn new(
        session: &C2sConfig,
        max_wait: std::time::Duration,
        inactivity: std::time::Duration,
    ) -> BoshEndpoint {
        let mut c2s = session.clone();
        c2s.idle_timeout = std::time::Duration::ZERO;
        let defaults = BoshConfig::default();
        let bosh = BoshConfig {
            limits: bosh::BodyLimits {
                max_body_bytes: defaults
                    .limits
                    .max_body_bytes
                    .max(c2s.limits.max_stanza_bytes + 4096),
                stanza: c2s.limits,
                ..defaults.limits
            },
            max_queued_bytes: c2s.outbound_queue_bytes,
            max_wait,
            inactivity,
            ..defaults
        };
        BoshEndpoint {
            c2s: Arc::new(c2s),
            bosh: Arc::new(bosh),
        }
    }
}

/// `/http-bind`: reads the POSTed body (bounded) and answers it with its session's response.
pub(crate) async fn http_bind(
    req: hyper::Request<hyper::body::Incoming>,
    ctx: &Rc<ShardCtx>,
    ep: &BoshEndpoint,
    peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    // Web clients are served from other origins (XEP-0124 §18): answer their CORS preflight.
    if req.method() == hyper::Method::OPTIONS {
        return super::http::preflight("POST, OPTIONS");
    }
    if req.method() != hyper::Method::POST {
        return super::http::not_allowed("POST, OPTIONS", "POST a <body/> here\n");
    }
    let limit = ep.bosh.limits.max_body_bytes;
    let body = match super::http::read_body(req.into_body(), limit).await {
        Ok(b) => b,
        Err(e) => {
            // Too large breaks the session rules; a body that could not be read (a malformed
            // chunk, a trickle past the time-out) is a request of unacceptable format (§17.1).
            let cond = match e {
                super::http::BodyError::TooLarge => Condition::PolicyViolation,
                super::http::BodyError::Broken => Condition::BadRequest,
            };
            return xml(cond.status(false), bosh::terminate(Some(cond), &[]));
        }
    };
    let reply = handle(ctx, ep, peer, &body).await;
    xml(reply.status, reply.body)
}

/// A `text/xml` response.
fn xml(status: u16, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    super::http::allow_any_origin(&mut r);
    r
}

/// The sessions living on this shard, by sid (kept in `Shard::ext`, so a forwarded request finds
/// them from a `ShardMsg::Run`).
#[derive(Default)]
struct Sessions {
    map: HashMap<String, Rc<RefCell<Inbox>>>,
}

thread_local! {
    /// BOSH sessions not authenticated yet on this shard, per client address.
    static UNAUTHENTICATED: AddressSlots = AddressSlots::default();
}

/// Sessions one address may hold on a shard before they bind a resource (logins take a moment;
/// clients behind one NAT rarely start this many at once).
const UNAUTHENTICATED_PER_ADDRESS: usize = 32;

/// Answers one `POST /http-bind` body from `peer`.
pub(crate) async fn handle(
    ctx: &Rc<ShardCtx>,
    ep: &BoshEndpoint,
    peer: SocketAddr,
    body: &[u8],
) -> Reply {
    let (req, sid) = match bosh::parse(body, &ep.bosh.limits) {
        Ok(req) => {
            let sid = req.sid.clone();
            (Incoming::Request(Box::new(req)), sid)
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad BOSH request");
            // A terminal condition (XEP-0124 §17.2): the session it names ends too, instead of
            // waiting for this rid until its inactivity timeout.
            match bosh::sid_of(body) {
                Some(sid) => (Incoming::Broken(e.condition()), Some(sid)),
                None => return Reply::terminate(e.condition()),
            }
        }
    };
    let (tx, rx) = oneshot::channel();
    match sid {
        None => match req {
            Incoming::Request(req) => create(ctx, ep, peer, *req, tx),
            Incoming::Broken(cond) => tx.send(Reply::terminate(cond)),
        },
        Some(sid) => match bosh::sid_shard(&sid).filter(|&s| s < ctx.shard.borrow().shards) {
            Some(owner) => {
                let to = ShardId(owner as u16);
                let run = move |shard: &mut Shard| deliver(shard, &sid, req, tx);
                ctx.shard
                    .borrow_mut()
                    .send_to_shard(to, ShardMsg::Run(Box::new(run)));
                ctx.flush();
            }
            None => tx.send(Reply::terminate(req.unknown_sid())),
        },
    }
    // A dropped sender (the session ended meanwhile): the sid is no longer known.
    rx.await
        .unwrap_or_else(|| Reply::terminate(Condition::ItemNotFound))
}

/// On the owning shard: hands the request to its session.
fn deliver(shard: &mut Shard, sid: &str, req: Incoming, tx: Sender<Reply>) {
    match shard.ext.get_or_default::<Sessions>().map.get(sid) {
        Some(inbox) => inbox.borrow_mut().push(req, tx),
        None => tx.send(Reply::terminate(req.unknown_sid())),
    }
}

/// Opens a session on this shard and starts its task.
fn create(
    ctx: &Rc<ShardCtx>,
    ep: &BoshEndpoint,
    peer: SocketAddr,
    req: Request,
    tx: Sender<Reply>,
) {
    let shard = ctx.shard.borrow().id.index();
    let live = ctx
        .shard
        .borrow_mut()
        .ext
        .get_or_default::<Sessions>()
        .map
        .len();
    if live >= ep.bosh.max_sessions {
        tracing::warn!(
            shard,
            live,
            "BOSH session refused: this shard has its maximum"
        );
        return tx.send(Reply::terminate(Condition::PolicyViolation));
    }
    // A session costs its creator nothing (no socket is held): an address may hold a few not
    // yet authenticated on this shard, not all of `max_sessions` until the auth timeout.
    let Some(unauthenticated) =
        AddressSlots::take(&UNAUTHENTICATED, peer.ip(), UNAUTHENTICATED_PER_ADDRESS)
    else {
        tracing::warn!(
            shard,
            %peer,
            "BOSH session refused: too many unauthenticated sessions from one address"
        );
        return tx.send(Reply::terminate(Condition::PolicyViolation));
    };
    let Ok(sid) = bosh::new_sid(shard) else {
        return tx.send(Reply::terminate(Condition::InternalServerError));
    };
    let core = match BoshSession::create(
        ep.bosh.clone(),
        sid.clone(),
        RequestId(0),
        req,
        Instant::now(),
    ) {
        Ok(core) => core,
        Err(Action::Respond { status, body, .. }) => return tx.send(Reply { status, body }),
        Err(_) => return tx.send(Reply::terminate(Condition::InternalServerError)),
    };
    let inbox = Rc::new(RefCell::new(Inbox::default()));
    ctx.shard
        .borrow_mut()
        .ext
        .get_or_default::<Sessions>()
        .map
        .insert(sid.clone(), inbox.clone());
    let start = session::Start {
        ctx: ctx.clone(),
        c2s: ep.c2s.clone(),
        peer,
        max_queued: ep.bosh.max_queued_bytes,
        inbox,
        first: tx,
        unauthenticated: Some(unauthenticated),
    };
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        let run = std::panic::AssertUnwindSafe(session::run(core, start));
        if futures_lite::FutureExt::catch_unwind(run).await.is_err() {
            // Its requests' senders are dropped with it: they are answered item-not-found.
            tracing::error!(shard, sid, "BOSH session task panicked; session dropped");
            let mut sh = ctx.shard.borrow_mut();
            sh.ext.get_or_default::<Sessions>().map.remove(&sid);
        }
    })
    .detach();
}
