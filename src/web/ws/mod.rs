//! XMPP over WebSocket (RFC 7395) as a sans-IO link between a socket and a `C2s`: WebSocket
//! frames are decoded and encoded by tungstenite's `WebSocketContext` over in-memory buffers (no
//! socket), the RFC 7395 framing is translated by [`framing`]. The driver feeds socket bytes to
//! [`WsLink::input`] and writes what [`WsLink::output`] gives.

pub mod framing;
pub mod handshake;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::c2s::C2s;
use crate::web::split::{Piece, Splitter};
use crate::xmpp::StreamErrorCondition;

/// Bytes tungstenite reads from the buffers at a time (its read buffer's size): small, idle
/// sessions must stay small.
const READ_CHUNK: usize = 4096;

/// The socket side of tungstenite with no socket: what was read and not yet decoded, what was
/// encoded and not yet taken by the driver (reads past the end are `WouldBlock`).
#[derive(Debug, Default)]
pub struct MemIo {
    /// Received bytes, from `read` on.
    pub input: Vec<u8>,
    /// How much of `input` tungstenite has read.
    pub read: usize,
    /// Bytes tungstenite wrote.
    pub output: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            self.input.clear();
            self.read = 0;
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `piece` as one text frame, masked with `mask` when given (a client's frames). Data
/// frames are written here with tungstenite's header encoder, straight from the stream's bytes:
/// going through `WebSocketContext::write` would copy each message twice and check its UTF-8
/// again (measured: WebSocket reached 0.62 of TCP throughput that way).
pub fn frame_piece(piece: Piece<'_>, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(Data::Text),
        mask,
    };
    // An element: its bytes, with the declaration it lacks inserted after its name.
    let mut small = Vec::new();
    let (head, insert, tail): (&[u8], &[u8], &[u8]) = match piece {
        Piece::Element(e) => match framing::missing_declaration(e) {
            Some((at, decl)) => (&e[..at], decl.as_bytes(), &e[at..]),
            None => (e, b"", b""),
        },
        other => {
            framing::piece_to_message(other, &mut small);
            (&small, b"", b"")
        }
    };
    let len = head.len() + insert.len() + tail.len();
    // Formatting into a Vec cannot fail.
    let _ = header.format(len as u64, out);
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(head);
    out.extend_from_slice(insert);
    out.extend_from_slice(tail);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// RFC 6455 §5.3 masking (XOR with the 4-byte key), a word at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// One WebSocket connection's framing state.
pub struct WsLink {
    ws: WebSocketContext,
    io: MemIo,
    split: Splitter,
    /// The c2s's bytes taken but not yet framed, reused.
    scratch: Vec<u8>,
    /// Stream bytes decoded from the client's messages, fed to the c2s in one call, reused.
    stream: Vec<u8>,
    /// The close code of our close frame, once the stream must end at the WebSocket level too.
    close_code: CloseCode,
    close_sent: bool,
    /// Bytes taken from the c2s (`take_transmit`) so far.
    taken: u64,
    /// Bytes given to the driver so far.
    given: u64,
    /// Frames of stream pieces not yet reported written, oldest first: where the piece ends in the
    /// c2s's count and where its frame ends in the driver's (see [`WsLink::written`]).
    frames: VecDeque<(u64, u64)>,
}

impl WsLink {
    /// A link for a connection whose handshake is done; `preread` holds bytes read past it.
    pub fn new(max_message: usize, preread: &[u8]) -> WsLink {
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = READ_CHUNK;
        config.write_buffer_size = 0;
        config.max_message_size = Some(max_message);
        config.max_frame_size = Some(max_message);
        let mut io = MemIo::default();
        io.input.extend_from_slice(preread);
        WsLink {
            ws: WebSocketContext::new(Role::Server, Some(config)),
            io,
            split: Splitter::default(),
            scratch: Vec::new(),
            stream: Vec::new(),
            close_code: CloseCode::Normal,
            close_sent: false,
            taken: 0,
            given: 0,
            frames: VecDeque::new(),
        }
    }

    /// Decodes socket bytes and hands the c2s what they carry (consecutive text messages in one
    /// call).
    pub fn input(&mut self, bytes: &[u8], c2s: &mut C2s, now: Instant) {
        self.io.input.extend_from_slice(bytes);
        while !c2s.is_closed() {
            let read = self.ws.read(&mut self.io);
            if let Ok(Message::Text(text)) = &read {
                if framing::message_to_stream(text.as_bytes(), &mut self.stream)
                    == framing::Framed::Close
                {
                    // The stream ends here: what follows (the client's close frame) is not read,
                    // so our `<close/>` and our close frame answer it in that order.
                    self.feed(c2s, now);
                }
                continue;
            }
            self.feed(c2s, now);
            match read {
                Ok(Message::Text(_)) => {}
                Ok(Message::Binary(_)) => self.fail(
                    c2s,
                    CloseCode::Unsupported,
                    StreamErrorCondition::BadFormat,
                    "binary WebSocket messages do not carry XMPP (RFC 7395: text only)",
                ),
                Ok(Message::Close(_)) => {
                    // The client ended the WebSocket (tungstenite queued our close reply).
                    self.close_sent = true;
                    c2s.peer_closed();
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(WsError::Utf8) => self.fail(
                    c2s,
                    CloseCode::Invalid,
                    StreamErrorCondition::UnsupportedEncoding,
                    "text message is not UTF-8",
                ),
                Err(WsError::Capacity(_)) => self.fail(
                    c2s,
                    CloseCode::Size,
                    StreamErrorCondition::PolicyViolation,
                    "message larger than the stanza size limit",
                ),
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    c2s.peer_closed();
                }
                Err(_) => self.fail(
                    c2s,
                    CloseCode::Protocol,
                    StreamErrorCondition::BadFormat,
                    "WebSocket protocol error",
                ),
            }
        }
        self.feed(c2s, now);
    }

    /// Hands the decoded stream bytes to the c2s.
    fn feed(&mut self, c2s: &mut C2s, now: Instant) {
        if !self.stream.is_empty() {
            c2s.handle_input(&self.stream, now);
            self.stream.clear();
        }
    }

    /// The stream cannot go on: a stream error for the client, then our close frame with `code`.
    fn fail(&mut self, c2s: &mut C2s, code: CloseCode, cond: StreamErrorCondition, text: &str) {
        self.close_code = code;
        c2s.close(Some(cond), Some(text));
    }

    /// Moves the c2s's output, framed, to `out` (socket bytes); after the stream's end, the close
    /// frame.
    pub fn output(&mut self, c2s: &mut C2s, out: &mut Vec<u8>) {
        let start = out.len();
        // Control frames tungstenite queued while reading (pongs, the reply to a close) first.
        let _ = self.ws.flush(&mut self.io);
        out.append(&mut self.io.output);
        self.scratch.clear();
        c2s.take_transmit(&mut self.scratch);
        let taken = self.taken;
        self.taken += self.scratch.len() as u64;
        if !self.close_sent && !self.scratch.is_empty() {
            // The driver counts `out[start..]` from `given` on.
            let given = self.given;
            let frames = &mut self.frames;
            // Our own output is UTF-8 (the scanner checked what clients sent; we write ASCII
            // markup), as a text frame must be.
            self.split.push_ends(&self.scratch, |piece, end| {
                frame_piece(piece, None, out);
                frames.push_back((taken + end as u64, given + (out.len() - start) as u64));
            });
        }
        if c2s.is_closed() && !self.close_sent && c2s.pending_transmit() == 0 {
            self.close_sent = true;
            let frame = CloseFrame {
                code: self.close_code,
                reason: "".into(),
            };
            let _ = self.ws.close(&mut self.io, Some(frame));
        }
        let _ = self.ws.flush(&mut self.io);
        out.append(&mut self.io.output);
        self.given += (out.len() - start) as u64;
    }

    /// Control frames (pongs, a close reply) written while reading, not yet taken by
    /// [`WsLink::output`].
    pub fn pending_output(&self) -> usize {
        self.io.output.len()
    }

    /// The socket took the first `total` bytes [`WsLink::output`] gave: the c2s learns how much
    /// of its output is in whole frames on their way (a stanza in a frame cut short is not).
    pub fn written(&mut self, c2s: &mut C2s, total: u64) {
        let mut taken = None;
        while let Some(&(c2s_end, frame_end)) = self.frames.front() {
            if frame_end > total {
                break;
            }
            taken = Some(c2s_end);
            self.frames.pop_front();
        }
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // A quiet connection keeps no slots.
            self.frames = VecDeque::new();
        }
        if let Some(taken) = taken {
            c2s.wire_written(taken);
        }
    }
}
