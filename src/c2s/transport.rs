//! The byte layer under a stream: plaintext or a sans-IO rustls connection (server side for c2s and
//! incoming s2s, client side for outgoing s2s).

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, ProtocolVersion, ServerConfig, ServerConnection,
};

use crate::auth::{ChannelBinding, EndPointHash};

/// RFC 9266 label for the `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The TLS layer failed; the connection cannot continue.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsFailure {
    /// rustls rejected the peer's records (handshake or record error).
    #[error("tls: {0}")]
    Protocol(#[from] rustls::Error),
    /// rustls refused to buffer more input (cannot happen while plaintext is drained after each read).
    #[error("tls input: {0}")]
    Input(#[from] std::io::Error),
}

/// What one plaintext read from the TLS layer gave.
pub(crate) enum PlainRead {
    /// This many plaintext bytes were written to the buffer.
    Data(usize),
    /// No plaintext is available until more records arrive.
    Empty,
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
}

/// Most plaintext bytes in one TLS record (RFC 8446 §5.1, RFC 5246 §6.2.1: 2^14).
const TLS_RECORD_PLAINTEXT: usize = 16 * 1024;

/// Where a piece of plaintext went on the wire (reported by [`Transport::transmit_placed`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    /// Plaintext bytes taken from the start of `out` so far in this call.
    pub used: usize,
    /// Length of `dst` once those bytes were encoded.
    pub end: usize,
    /// Plaintext on the wire as is: plaintext byte `i < used` is wire byte `end - (used - i)`.
    /// Otherwise the piece is a TLS record, which the peer reads only once all of it (to `end`)
    /// arrived.
    pub exact: bool,
}

/// Plaintext TCP or TLS (boxed: a `Connection` is several KiB and idle plaintext sessions must stay small).
pub(crate) enum Transport {
    /// Bytes on the socket are the XML stream.
    Plain,
    /// Bytes on the socket are TLS records.
    Tls(Box<Connection>),
}

impl Transport {
    /// Starts a server-side TLS session.
    pub(crate) fn tls(config: Arc<ServerConfig>) -> Result<Transport, rustls::Error> {
        let conn = ServerConnection::new(config)?;
        Ok(Transport::Tls(Box::new(Connection::Server(conn))))
    }

    /// Starts a client-side TLS session to `name`; its ClientHello is queued (see `encode`).
    pub(crate) fn tls_client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Transport, rustls::Error> {
        let conn = ClientConnection::new(config, name)?;
        Ok(Transport::Tls(Box::new(Connection::Client(conn))))
    }

    /// The certificate chain the peer presented (end entity first), once the handshake is done.
    pub(crate) fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        match self {
            Transport::Tls(conn) => conn.peer_certificates().unwrap_or(&[]),
            Transport::Plain => &[],
        }
    }

    /// Whether the stream runs over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Whether a TLS handshake is still under way (no application data can flow yet).
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(conn) => conn.is_handshaking(),
        }
    }

    /// The channel binding data once a TLS 1.3 handshake is done: `tls-exporter` (RFC 9266 §3)
    /// and `end_point`, our certificate's hash (RFC 5929).
    ///
    /// None on TLS 1.2, although `tls-server-end-point` would exist there: a client that does
    /// not read XEP-0440's list binds to `tls-unique` on TLS 1.2 (RFC 5802's default; slixmpp
    /// does), which rustls cannot give, so offering -PLUS there turns its login into failures
    /// before a retry without -PLUS, or into no login at all.
    pub(crate) fn channel_binding(&self, end_point: Option<EndPointHash>) -> ChannelBinding {
        match self {
            Transport::Tls(conn)
                if !conn.is_handshaking()
                    && conn.protocol_version() == Some(ProtocolVersion::TLSv1_3) =>
            {
                ChannelBinding {
                    tls_exporter: conn
                        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
                        .ok(),
                    tls_server_end_point: end_point,
                }
            }
            _ => ChannelBinding::default(),
        }
    }

    /// Feeds TLS records from `input` (consuming part of it) and queues any handshake/alert output in `wire`.
    /// Call [`Transport::read_plain`] until it is empty after each call, then call again while input remains.
    pub(crate) fn read_tls(
        &mut self,
        input: &mut &[u8],
        wire: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let Transport::Tls(conn) = self else {
            return Ok(());
        };
        let res = conn
            .read_tls(input)
            .map_err(TlsFailure::from)
            .and_then(|_| {
                conn.process_new_packets()
                    .map(|_| ())
                    .map_err(TlsFailure::from)
            });
        // Send whatever rustls queued, including the alert that describes an error.
        drain_tls(conn, wire);
        res
    }

    /// Frees rustls' record read buffer (4 KiB) when no partial record is pending: for a stream
    /// that went quiet. True if memory was freed.
    pub(crate) fn release_idle(&mut self) -> bool {
        match self {
            Transport::Tls(conn) => conn.release_idle_buffers(),
            Transport::Plain => false,
        }
    }

    /// Reads decrypted plaintext into `buf`.
    pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> PlainRead {
        let Transport::Tls(conn) = self else {
            return PlainRead::Empty;
        };
        match conn.reader().read(buf) {
            Ok(0) => PlainRead::Closed,
            Ok(n) => PlainRead::Data(n),
            // WouldBlock: wait for more records; UnexpectedEof cannot happen as we never feed EOF.
            Err(e) if e.kind() == ErrorKind::WouldBlock => PlainRead::Empty,
            Err(_) => PlainRead::Closed,
        }
    }

    /// Moves plaintext `out` onto the wire: as is, or encrypted into `dst`. Under TLS, bytes the connection
    /// cannot take yet (handshake not done) stay in `out`.
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>, dst: &mut Vec<u8>) {
        self.encode_placed(out, dst, &mut |_| {});
    }

    /// [`Transport::encode`], telling `placed` where the plaintext went (see [`Placed`]); returns
    /// the plaintext bytes taken from `out`.
    pub(crate) fn encode_placed(
        &mut self,
        out: &mut Vec<u8>,
        dst: &mut Vec<u8>,
        placed: &mut dyn FnMut(Placed),
    ) -> usize {
        match self {
            Transport::Plain => {
                let used = out.len();
                if dst.is_empty() {
                    std::mem::swap(dst, out);
                } else {
                    dst.append(out);
                }
                placed(Placed {
                    used,
                    end: dst.len(),
                    exact: true,
                });
                used
            }
            Transport::Tls(conn) => {
                if conn.is_handshaking() {
                    // A client's first flight is queued before any input arrived.
                    drain_tls(conn, dst);
                    return 0;
                }
                let mut pos = 0;
                while pos < out.len() {
                    // At most one record's plaintext per write, so each write is one record and a
                    // stanza counts as on the wire exactly when the record holding its end is. The
                    // writer takes what fits its buffer limit; write_tls then empties that buffer.
                    let piece = (out.len() - pos).min(TLS_RECORD_PLAINTEXT);
                    let n = conn.writer().write(&out[pos..pos + piece]).unwrap_or(0);
                    drain_tls(conn, dst);
                    if n == 0 {
                        break;
                    }
                    pos += n;
                    placed(Placed {
                        used: pos,
                        end: dst.len(),
                        exact: false,
                    });
                }
                out.drain(..pos);
                pos
            }
        }
    }

    /// Appends to `dst` the records queued in `wire`, then `out` encoded (see `encode`), telling
    /// `placed` where `out`'s plaintext went; returns the plaintext bytes taken from `out`. Drained
    /// buffers give their capacity back (idle streams hold none).
    pub(crate) fn transmit_placed(
        &mut self,
        out: &mut Vec<u8>,
        wire: &mut Vec<u8>,
        dst: &mut Vec<u8>,
        placed: &mut dyn FnMut(Placed),
    ) -> usize {
        if dst.is_empty() {
            // Hand the buffer over instead of copying it.
            std::mem::swap(dst, wire);
        } else {
            dst.append(wire);
        }
        let used = self.encode_placed(out, dst, placed);
        shrink(wire);
        shrink(out);
        used
    }

    /// The end of the connection: encodes what `out` holds (dropped while the handshake is not
    /// done: it cannot be sent), then a close_notify when `notify`; tells `placed` where `out`'s
    /// plaintext went and returns the plaintext bytes taken (none over plaintext: it stays in `out`
    /// for the next `transmit_placed`).
    pub(crate) fn finish_placed(
        &mut self,
        out: &mut Vec<u8>,
        dst: &mut Vec<u8>,
        notify: bool,
        placed: &mut dyn FnMut(Placed),
    ) -> usize {
        if !self.is_tls() {
            return 0;
        }
        if self.is_handshaking() {
            out.clear();
        }
        let used = self.encode_placed(out, dst, placed);
        if notify {
            self.close_notify(dst);
        }
        used
    }

    /// Queues a TLS close_notify after everything encoded so far.
    pub(crate) fn close_notify(&mut self, dst: &mut Vec<u8>) {
        if let Transport::Tls(conn) = self {
            conn.send_close_notify();
            drain_tls(conn, dst);
        }
    }
}

/// Frees a drained buffer.
pub(crate) fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = Vec::new();
    }
}

/// Appends every TLS record rustls has queued to `dst`.
fn drain_tls(conn: &mut Connection, dst: &mut Vec<u8>) {
    while conn.wants_write() {
        // Writing to a Vec cannot fail; stop on Ok(0) to be safe against a rustls that queued nothing.
        match conn.write_tls(dst) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
