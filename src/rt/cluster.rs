//! The cluster's glommio driver: each shard's own NATS connection (a reader and a writer over one
//! TCP stream, reconnecting), and shard 0's heartbeat. The protocol and what arrives are handled
//! sans-IO by `cluster::link`; this only moves bytes and wakes.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::ShardCtx;
use crate::cluster::link::{self, Link, LinkRc};
use crate::cluster::nats::Event;
use crate::cluster::Node;
use crate::config::NatsUrl;

/// Wait between connection attempts.
const RETRY: Duration = Duration::from_millis(100);

/// Longest wait after connections that end at once.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Plugs this shard into the cluster and starts its tasks.
pub(super) fn install(
    node: &Arc<Node>,
    urls: &[NatsUrl],
    ctx: &Rc<ShardCtx>,
) -> Vec<glommio::Task<()>> {
    let id = ctx.shard.borrow().id.0;
    let link: LinkRc = Rc::new(RefCell::new(Link::new(Rc::new((**node).clone()), id)));
    link::install(&mut ctx.shard.borrow_mut(), &link);
    let mut tasks = vec![
        glommio::spawn_local(run(link.clone(), ctx.clone(), urls.to_vec())),
        glommio::spawn_local(expire_requests(ctx.clone())),
    ];
    if id == 0 {
        let every = node.heartbeat;
        let ctx = ctx.clone();
        tasks.push(glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(every).await;
                if !link.borrow().connected {
                    continue;
                }
                {
                    let mut shard = ctx.shard.borrow_mut();
                    crate::cluster::tick(&link, &mut shard);
                    shard.drain_to_route();
                }
                ctx.flush();
            }
        }));
    }
    tasks
}

/// How often a shard gives up on requests to other nodes whose wait is over.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// Gives up on this shard's requests to other nodes that got no answer in time.
async fn expire_requests(ctx: Rc<ShardCtx>) {
    loop {
        glommio::timer::sleep(EXPIRE_EVERY).await;
        crate::cluster::rpc::expire(&mut ctx.shard.borrow_mut(), std::time::Instant::now());
        ctx.flush();
    }
}

/// The addresses of `url`: an IP address as it is; a host name resolved on a thread of its own
/// (the system resolver blocks, the shard must not), once per connection attempt.
async fn addresses(url: &NatsUrl) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = url.host.parse::<std::net::IpAddr>() {
        return vec![(ip, url.port).into()];
    }
    let (tx, rx) = crate::store::oneshot::channel();
    let (host, port) = (url.host.clone(), url.port);
    let spawned = std::thread::Builder::new()
        .name("petrel-nats-dns".into())
        .spawn(move || {
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            tx.send(found.unwrap_or_default());
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Connects to the first NATS server that answers; returns the stream and the address used.
async fn connect(urls: &[NatsUrl]) -> Option<(glommio::net::TcpStream, &NatsUrl)> {
    for u in urls {
        for a in addresses(u).await {
            if let Ok(s) = glommio::net::TcpStream::connect(a).await {
                let _ = s.set_nodelay(true);
                return Some((s, u));
            }
        }
    }
    None
}

/// Why a `tls://` connection could not start.
#[derive(Debug, thiserror::Error)]
enum StartTlsError {
    /// The server closed, or sent more than a line, before its `INFO`.
    #[error("no INFO line before TLS")]
    NoInfo,
    /// The host is not a name a certificate can show.
    #[error("{0:?} is not a TLS server name")]
    Name(String),
    /// The handshake failed (certificate not trusted, server without TLS, ...).
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
}

/// NATS TLS as nats-server 2.9 does it: the `INFO` line in the clear, then the handshake.
async fn start_tls(
    mut stream: glommio::net::TcpStream,
    url: &NatsUrl,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<futures_rustls::client::TlsStream<glommio::net::TcpStream>, StartTlsError> {
    // The server says nothing more until the handshake: read its line and nothing past it.
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        match stream.read(&mut b).await {
            Ok(1) if line.len() < 64 * 1024 => line.push(b[0]),
            _ => return Err(StartTlsError::NoInfo),
        }
    }
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|_| StartTlsError::Name(url.host.clone()))?;
    futures_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(StartTlsError::Handshake)
}

/// One shard's connection, for the life of the shard.
async fn run(link: LinkRc, ctx: Rc<ShardCtx>, urls: Vec<NatsUrl>) {
    let shard = link.borrow().shard;
    let mut warned = false;
    // Connections that end at once (refused credentials or certificate, a server shutting down)
    // are retried after a doubling delay, up to RETRY_MAX, not ten times a second.
    let mut backoff = RETRY;
    loop {
        let Some((stream, url)) = connect(&urls).await else {
            if !warned {
                tracing::warn!(shard, "cluster: no NATS server answers; retrying");
                warned = true;
            }
            glommio::timer::sleep(RETRY).await;
            continue;
        };
        warned = false;
        let began = std::time::Instant::now();
        let tls = url.tls.then(|| link.borrow().node.tls.clone()).flatten();
        match tls {
            Some(config) => match start_tls(stream, url, config).await {
                Ok(stream) => serve(stream, &link, &ctx).await,
                Err(e) => tracing::warn!(shard, error = %e, "cluster: NATS TLS failed"),
            },
            None => serve(stream, &link, &ctx).await,
        }
        link.borrow_mut().connected = false;
        if began.elapsed() < RETRY_MAX {
            tracing::warn!(shard, retry_in = ?backoff, "cluster: NATS connection ended at once");
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        } else {
            tracing::warn!(shard, "cluster: NATS connection lost; reconnecting");
            backoff = RETRY;
        }
    }
}

/// One connection's life: the protocol starts afresh, what the last one may have lost is
/// routed again and announced again, then it reads and writes until it fails.
async fn serve<S>(stream: S, link: &LinkRc, ctx: &Rc<ShardCtx>)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let shard = link.borrow().shard;
    let lost = link.borrow_mut().reset();
    link.borrow_mut().connected = true;
    tracing::info!(shard, "cluster: connected to NATS");
    {
        let mut s = ctx.shard.borrow_mut();
        for acc in lost {
            s.reroute(acc);
        }
        s.drain_to_route();
        // After a reconnection: session records written into the lost connection may not have
        // reached the others; announce again every session this shard is home for, framed so
        // that they also drop the ones that ended meanwhile.
        crate::cluster::announce_sessions(link, &s);
    }
    if shard == 0 {
        crate::cluster::request_sync(link);
    }
    ctx.flush();
    let (r, w) = futures_lite::io::split(stream);
    futures_lite::future::or(read(r, link, ctx), write(w, link)).await;
}

/// Reads, hands what arrived to the shard batch by batch, acknowledges each batch.
async fn read<R: futures_lite::AsyncRead + Unpin>(mut r: R, link: &LinkRc, ctx: &Rc<ShardCtx>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut events = Vec::new();
        {
            let mut l = link.borrow_mut();
            l.nats.feed(&buf[..n]);
            loop {
                match l.nats.next_event() {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(shard = l.shard, error = %e, "cluster: NATS protocol error");
                        return;
                    }
                }
            }
            if l.nats.has_output() {
                l.wake();
            }
        }
        if events.is_empty() {
            continue;
        }
        crate::hooks::clock::set_now(std::time::Instant::now());
        {
            let mut shard = ctx.shard.borrow_mut();
            for e in events {
                match e {
                    Event::Msg(m) => link::on_msg(link, &mut shard, m),
                    Event::Err(e) => {
                        tracing::warn!(shard = shard.id.0, error = e, "cluster: NATS error")
                    }
                    Event::Info(_) | Event::Pong => {}
                }
            }
            shard.drain_to_route();
        }
        ctx.flush();
        // Backpressure, as for a mesh ring: a local recipient that cannot keep up holds this
        // connection (NATS then drops for this slow consumer past its own bound; see CLUSTER.md).
        ctx.wait_for_room().await;
    }
}

/// Writes whatever the shard queued, all of it in one write per wake-up.
async fn write<W: futures_lite::AsyncWrite + Unpin>(mut w: W, link: &LinkRc) {
    loop {
        let out = std::future::poll_fn(|cx| {
            let mut l = link.borrow_mut();
            if l.nats.has_output() {
                std::task::Poll::Ready(l.nats.take_output())
            } else {
                l.set_waker(cx.waker());
                std::task::Poll::Pending
            }
        })
        .await;
        if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
            return;
        }
        link.borrow_mut().nats.recycle(out);
    }
}
