//! Connections on a glommio executor: connect from a chosen source address,
//! optional rustls session, split into a reading half and a writing half that
//! share the socket (glommio keeps separate read and write readiness sources,
//! and the `RefCell` is only borrowed inside a single poll, never across an await),
//! plus an [`Outbox`] that batches writes from any task into one writer task.

use crate::frame::Framer;
use crate::ws::WsClient;
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// TLS error.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Invalid server name for TLS.
    #[error("invalid TLS server name")]
    ServerName,
    /// The server refused the WebSocket upgrade.
    #[error("websocket upgrade refused: {0}")]
    Upgrade(String),
}

/// Start a non-blocking connect to `addr`, bound to `source` first if given (to
/// get past one source address's ephemeral ports). The connection completes in
/// the background; the first write waits for it.
pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    if let Some(ip) = source {
        // The kernel picks the port at connect time, per (source, destination).
        s.set_reuse_address(true)?;
        s.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match s.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc_einprogress()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from(s))
}

/// EINPROGRESS on Linux.
const fn libc_einprogress() -> i32 {
    115
}

type Shared<T> = Rc<RefCell<T>>;

/// Socket plus optional TLS session or WebSocket framing, before splitting.
pub struct Conn {
    sock: Shared<TcpStream>,
    tls: Option<Shared<ClientConnection>>,
    ws: Option<Shared<WsClient>>,
}

impl Conn {
    /// Wrap a connected (or connecting) socket.
    pub fn new(sock: TcpStream) -> Self {
        Conn {
            sock: Rc::new(RefCell::new(sock)),
            tls: None,
            ws: None,
        }
    }

    /// Reading and writing halves (share the socket and TLS state).
    pub fn halves(&self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                sock: self.sock.clone(),
                tls: self.tls.clone(),
                ws: self.ws.clone(),
                plain: Vec::new(),
                netbuf: if self.tls.is_some() || self.ws.is_some() {
                    vec![0; 16 * 1024]
                } else {
                    Vec::new()
                },
            },
            WriteHalf {
                sock: self.sock.clone(),
                tls: self.tls.clone(),
                ws: self.ws.clone(),
                tlsbuf: Vec::new(),
            },
        )
    }

    /// Upgrade the (plaintext) connection to an XMPP WebSocket at `path`; later halves frame.
    pub async fn upgrade_ws(&mut self, host: &str, path: &str) -> Result<(), ConnError> {
        sock_write_all(&self.sock, crate::ws::request(host, path).as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = vec![0u8; 4096];
        let end = loop {
            let n = sock_read(&self.sock, &mut buf).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = memchr::memmem::find(&head, b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > 16 * 1024 {
                return Err(ConnError::Upgrade("response head too large".into()));
            }
        };
        if !crate::ws::accepted(&head[..end]) {
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            return Err(ConnError::Upgrade(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
        self.ws = Some(Rc::new(RefCell::new(WsClient::new(&head[end..]))));
        Ok(())
    }

    /// Run a TLS client handshake over the socket; later halves encrypt.
    pub async fn start_tls(
        &mut self,
        cfg: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<(), ConnError> {
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|_| ConnError::ServerName)?;
        let mut tls = ClientConnection::new(cfg, name)?;
        let mut net = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        loop {
            out.clear();
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
            if !out.is_empty() {
                sock_write_all(&self.sock, &out).await?;
            }
            if !tls.is_handshaking() {
                break;
            }
            if tls.wants_read() {
                let n = sock_read(&self.sock, &mut net).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
                let mut rd = &net[..n];
                while !rd.is_empty() {
                    tls.read_tls(&mut rd)?;
                    tls.process_new_packets()?;
                }
            }
        }
        // Each write drains everything rustls produced, so its buffer cap only
        // gets in the way of large batches.
        tls.set_buffer_limit(None);
        // Records the reader side would have to answer (a TLS 1.3 KeyUpdate request)
        // go out with the next write; servers do not send them in these short runs.
        self.tls = Some(Rc::new(RefCell::new(tls)));
        Ok(())
    }
}

async fn sock_read(sock: &Shared<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *sock.borrow_mut()).poll_read(cx, buf)).await
}

async fn sock_write_all(sock: &Shared<TcpStream>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *sock.borrow_mut()).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// The reading side: appends plaintext into a [`Framer`].
pub struct ReadHalf {
    sock: Shared<TcpStream>,
    tls: Option<Shared<ClientConnection>>,
    ws: Option<Shared<WsClient>>,
    /// Stream bytes decoded from WebSocket messages.
    plain: Vec<u8>,
    netbuf: Vec<u8>,
}

impl ReadHalf {
    /// Read more plaintext into `framer`; `Ok(0)` means the peer closed.
    pub async fn read_into(&mut self, framer: &mut Framer) -> Result<usize, ConnError> {
        if let Some(ws) = self.ws.clone() {
            while self.plain.is_empty() {
                let n = sock_read(&self.sock, &mut self.netbuf).await?;
                if n == 0
                    || ws
                        .borrow_mut()
                        .decode(&self.netbuf[..n], &mut self.plain)
                        .is_err()
                {
                    return Ok(0);
                }
            }
            let n = self.plain.len();
            let space = framer.read_space(n);
            space[..n].copy_from_slice(&self.plain);
            framer.commit(n);
            self.plain.clear();
            return Ok(n);
        }
        let Some(tls) = self.tls.clone() else {
            let space = framer.read_space(4096);
            let n = sock_read(&self.sock, space).await?;
            framer.commit(n);
            return Ok(n);
        };
        loop {
            if let Some(n) = drain_plaintext(&mut tls.borrow_mut(), framer)? {
                return Ok(n);
            }
            let n = sock_read(&self.sock, &mut self.netbuf).await?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = tls.borrow_mut();
            let mut rd = &self.netbuf[..n];
            let mut got = 0;
            while !rd.is_empty() {
                conn.read_tls(&mut rd)?;
                conn.process_new_packets()?;
                // Drain as we go: rustls caps buffered plaintext.
                got += drain_plaintext(&mut conn, framer)?.unwrap_or(0);
            }
            if got > 0 {
                return Ok(got);
            }
        }
    }
}

/// Move decrypted bytes into the framer: `Some(n>0)` data, `Some(0)` clean close,
/// `None` nothing buffered.
fn drain_plaintext(conn: &mut ClientConnection, framer: &mut Framer) -> io::Result<Option<usize>> {
    let mut total = 0;
    loop {
        let space = framer.read_space(4096);
        match conn.reader().read(space) {
            Ok(0) => return Ok(Some(total)),
            Ok(n) => {
                framer.commit(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((total > 0).then_some(total));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The writing side.
pub struct WriteHalf {
    sock: Shared<TcpStream>,
    tls: Option<Shared<ClientConnection>>,
    ws: Option<Shared<WsClient>>,
    tlsbuf: Vec<u8>,
}

impl WriteHalf {
    /// Write all of `data` (framing it, or encrypting it, first when WebSocket or TLS is on).
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if let Some(ws) = &self.ws {
            self.tlsbuf.clear();
            ws.borrow_mut().encode(data, &mut self.tlsbuf);
            return Ok(sock_write_all(&self.sock, &self.tlsbuf).await?);
        }
        let Some(tls) = &self.tls else {
            return Ok(sock_write_all(&self.sock, data).await?);
        };
        {
            let mut conn = tls.borrow_mut();
            conn.writer().write_all(data)?;
            self.tlsbuf.clear();
            while conn.wants_write() {
                conn.write_tls(&mut self.tlsbuf)?;
            }
        }
        Ok(sock_write_all(&self.sock, &self.tlsbuf).await?)
    }
}

/// A per-connection write queue: any task appends, one writer task flushes, so
/// everything queued between two flushes goes out in one syscall.
#[derive(Default)]
pub struct Outbox {
    buf: RefCell<Vec<u8>>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl Outbox {
    /// Append bytes built by `f` and wake the writer.
    pub fn push_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.buf.borrow_mut());
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Append bytes and wake the writer.
    pub fn push(&self, data: &[u8]) {
        self.push_with(|b| b.extend_from_slice(data));
    }

    /// Stop the writer after it flushed what is queued.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Wait for queued bytes and swap them into `spare`; `false` once closed and empty.
    fn take<'a>(&'a self, spare: &'a mut Vec<u8>) -> impl Future<Output = bool> + 'a {
        poll_fn(move |cx: &mut Context<'_>| {
            let mut buf = self.buf.borrow_mut();
            if !buf.is_empty() {
                std::mem::swap(&mut *buf, spare);
                Poll::Ready(true)
            } else if self.closed.get() {
                Poll::Ready(false)
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// The writer task body: flush until closed or a write fails.
    pub async fn run_writer(self: Rc<Self>, mut w: WriteHalf) -> Result<(), ConnError> {
        let mut spare = Vec::with_capacity(1024);
        while self.take(&mut spare).await {
            let res = w.write_all(&spare).await;
            spare.clear();
            if let Err(e) = res {
                self.closed.set(true);
                return Err(e);
            }
        }
        Ok(())
    }
}
