//! The HTTP listener `[[listen.http]]`: hyper (HTTP/1.1, no runtime of its own) on the shard's
//! glommio executor through smol-hyper's futures-io adapter. A WebSocket upgrade at `/ws-xmpp`
//! becomes a c2s connection on this shard, driven by `conn` like a TCP one, with the
//! RFC 7395 framing (`web::ws`) between its socket and its c2s. `/upload/` is XEP-0363's file
//! store (`http_upload`).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpStream;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;

use super::conn::{self, Io};
use super::listeners::HttpListener;
use super::ShardCtx;
use crate::config::HttpHandler;
use crate::web::ws::{handshake, WsLink};
use crate::web::Link;

/// Largest request head hyper buffers (it answers 431 past it).
const MAX_HEAD: usize = 16 * 1024;

/// Time a client has to send a whole request head (slow-header attacks hold connections open).
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// hyper's timer: async-io's, whose futures are `Send` (glommio's are not).
#[derive(Clone, Copy)]
struct HyperTimer;

/// One async-io timer as a hyper `Sleep`.
struct HyperSleep(async_io::Timer);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(async_io::Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(async_io::Timer::at(deadline)))
    }
}

/// Serves one HTTP connection to its end.
pub(super) async fn run(stream: TcpStream, ctx: Rc<ShardCtx>, l: Arc<HttpListener>) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    match l.tls.clone() {
        None => serve(stream, peer, ctx, l).await,
        Some(acceptor) => match within(HEAD_TIMEOUT, acceptor.accept(stream)).await {
            Some(Ok(tls)) => serve(tls, peer, ctx, l).await,
            Some(Err(e)) => tracing::debug!(%peer, error = %e, "https: TLS handshake failed"),
            None => tracing::debug!(%peer, "https: no TLS handshake within the head timeout"),
        },
    }
}

/// `fut`'s output, or `None` when it takes longer than `limit` (a client that sends nothing or
/// trickles must not hold a connection open: the TLS handshake, a request body).
pub(super) async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

async fn serve<S: Io + 'static>(io: S, peer: SocketAddr, ctx: Rc<ShardCtx>, l: Arc<HttpListener>) {
    // Set by the `/ws-xmpp` handler when it answered 101: the connection then leaves hyper.
    let upgrade: Rc<Cell<bool>> = Rc::default();
    let service = {
        let (ctx, l, upgrade) = (ctx.clone(), l.clone(), upgrade.clone());
        hyper::service::service_fn(move |req| {
            let (ctx, l, upgrade) = (ctx.clone(), l.clone(), upgrade.clone());
            async move { Ok::<_, Infallible>(dispatch(req, peer, &ctx, &l, &upgrade).await) }
        })
    };
    // Not `with_upgrades` (it needs a `Send` stream, and glommio's are not): after a 101 the
    // connection ends and hands its stream back with what it read past the request.
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .timer(HyperTimer)
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(FuturesIo::new(io), service)
        .without_shutdown();
    let parts = match conn.await {
        Ok(parts) => parts,
        Err(e) => return tracing::debug!(%peer, error = %e, "http connection ended"),
    };
    if upgrade.get() {
        let cfg = l.session.clone();
        let max = cfg.limits.max_stanza_bytes + 1024;
        let link = Link::Ws(Box::new(WsLink::new(max, &parts.read_buf)));
        conn::run(parts.io.into_inner(), peer, link, ctx, cfg).await;
    }
}

/// Routes a request by path to the handlers this listener serves. Handlers may wait (store, other
/// shards); a connection serves its requests one at a time (HTTP/1.1).
async fn dispatch(
    req: Request<Incoming>,
    peer: SocketAddr,
    ctx: &Rc<ShardCtx>,
    l: &Arc<HttpListener>,
    upgrade: &Cell<bool>,
) -> Response<Body> {
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400, whatever it asks.
    if req.version() == hyper::Version::HTTP_11 && !req.headers().contains_key(hyper::header::HOST)
    {
        return text(StatusCode::BAD_REQUEST, "Host header required\n").map(Body::Full);
    }
    let path = req.uri().path();
    // The admin API, route explain included.
    if (path == "/api" || path.starts_with("/api/")) && l.serves(HttpHandler::Api) {
        return super::admin::serve(req, ctx).await.map(Body::Full);
    }
    if path.starts_with(UPLOAD_PREFIX) && l.serves(HttpHandler::Upload) {
        let files = crate::modules::http_upload::files(&ctx.shard.borrow());
        if let Some(files) = files {
            return super::http_upload::handle(req, files).await;
        }
    }
    match path {
        "/ws-xmpp" if l.serves(HttpHandler::Websocket) => websocket(&req, upgrade),
        "/http-bind" if l.serves(HttpHandler::Bosh) => {
            super::bosh::http_bind(req, ctx, &l.bosh, peer).await
        }
        "/metrics" if l.serves(HttpHandler::Metrics) => metrics(&req),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
    .map(Body::Full)
}

/// Where `[modules.http_upload]` files are served.
const UPLOAD_PREFIX: &str = crate::modules::http_upload::web::PREFIX;

/// A response body: in memory, or a file streamed from disk.
pub(super) enum Body {
    /// The whole body.
    Full(Full<Bytes>),
    /// A file, read as the connection takes it.
    File(super::http_upload::FileBody),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Body::File(file) => file.poll_frame(cx),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::File(file) => file.size_hint(),
        }
    }
}

/// A 405 with the `Allow` header RFC 9110 §15.5.6 requires.
pub(super) fn not_allowed(allow: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, body);
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A plain-text response.
pub(super) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `/metrics`: every shard's counters in the Prometheus text format.
fn metrics(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return not_allowed("GET, HEAD", "GET only\n");
    }
    let mut r = text(StatusCode::OK, crate::metrics::render());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// `/ws-xmpp`: checks the handshake and answers 101; the connection then becomes a c2s one.
fn websocket(req: &Request<Incoming>, upgrade: &Cell<bool>) -> Response<Full<Bytes>> {
    let http11 = req.version() >= hyper::Version::HTTP_11;
    let checked = handshake::check(req.method().as_str(), http11, |name| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    });
    let accept = match checked {
        Ok(accept) => accept,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = text(status, format!("{e}\n"));
            let h = r.headers_mut();
            match status {
                StatusCode::METHOD_NOT_ALLOWED => {
                    h.insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
                }
                // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
                StatusCode::UPGRADE_REQUIRED => {
                    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                }
                _ => {}
            }
            if e == handshake::HandshakeError::Version {
                h.insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            return r;
        }
    };
    upgrade.set(true);
    let mut r = Response::new(Full::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(handshake::SUBPROTOCOL),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Larger than the handler's limit.
    TooLarge,
    /// The client broke it off, or sent it slower than [`HEAD_TIMEOUT`] allows (a trickling
    /// client must not hold the connection).
    Broken,
}

/// The whole body of a request, at most `limit` bytes, within [`HEAD_TIMEOUT`].
pub(super) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    // A `Content-Length` over the limit is refused at once, not after waiting for the bytes.
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let collect = http_body_util::Limited::new(body, limit).collect();
    match within(HEAD_TIMEOUT, collect).await {
        Some(Ok(collected)) => Ok(collected.to_bytes()),
        Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        _ => Err(BodyError::Broken),
    }
}

/// Lets pages of any origin read this response (the session itself is the credential: a BOSH sid,
/// an upload slot's token).
pub(super) fn allow_any_origin(r: &mut Response<Full<Bytes>>) {
    r.headers_mut().insert(
        hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// The answer to a CORS preflight (`OPTIONS`) for `methods`.
pub(super) fn preflight(methods: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cors(r.headers_mut(), methods);
    r
}

/// Every CORS header for pages of any origin using `methods` (a preflight's answer; the upload
/// handler puts them on all its answers).
pub(super) fn cors(h: &mut hyper::HeaderMap, methods: &'static str) {
    h.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    h.insert(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}
