//! `--transport ws`: XMPP over WebSocket (RFC 7395) for the load generator. The client speaks
//! the same stream bytes as over TCP; this layer frames each element of what it writes as one
//! masked text message and turns the server's messages back into stream bytes, with petrel's
//! own sans-IO pieces (tungstenite's context over memory buffers, the RFC 7395 translation and the
//! element splitter), which are symmetric.

use petrel::web::split::Splitter;
use petrel::web::ws::{frame_piece, framing, MemIo};
use std::io::ErrorKind;
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message;

/// One connection's WebSocket framing.
pub struct WsClient {
    ctx: WebSocketContext,
    io: MemIo,
    split: Splitter,
    /// xorshift state for the frames' masks (RFC 6455 wants them unpredictable to proxies, not
    /// secret).
    mask: u64,
}

/// The server ended the WebSocket (close frame or protocol error).
#[derive(Debug, thiserror::Error)]
#[error("websocket: {0}")]
pub struct WsClosed(String);

impl WsClient {
    /// Framing for a connection whose handshake is done; `preread` came after the response head.
    pub fn new(preread: &[u8]) -> WsClient {
        let mut io = MemIo::default();
        io.input.extend_from_slice(preread);
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        WsClient {
            ctx: WebSocketContext::new(Role::Client, None),
            io,
            split: Splitter::default(),
            mask: u64::from_ne_bytes(seed) | 1,
        }
    }

    /// Frames the elements completed by `stream` into `wire`.
    pub fn encode(&mut self, stream: &[u8], wire: &mut Vec<u8>) {
        let state = &mut self.mask;
        self.split.push(stream, |piece| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let [a, b, c, d, ..] = state.to_ne_bytes();
            frame_piece(piece, Some([a, b, c, d]), wire);
        });
    }

    /// Decodes `wire` and appends the stream bytes it carries.
    pub fn decode(&mut self, wire: &[u8], stream: &mut Vec<u8>) -> Result<(), WsClosed> {
        self.io.input.extend_from_slice(wire);
        loop {
            match self.ctx.read(&mut self.io) {
                Ok(Message::Text(t)) => {
                    framing::message_to_stream(t.as_bytes(), stream);
                }
                Ok(Message::Close(c)) => return Err(WsClosed(format!("closed: {c:?}"))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(e) => return Err(WsClosed(e.to_string())),
            }
        }
    }
}

/// The upgrade request for `path` on `host`.
pub fn request(host: &str, path: &str) -> String {
    let mut key = [0u8; 16];
    // A weak key only weakens the proxy-cache protection the key is for, not this client.
    let _ = getrandom::getrandom(&mut key);
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
    )
}

/// Whether a response head accepts the upgrade with the `xmpp` subprotocol.
pub fn accepted(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.starts_with("http/1.1 101")
        && head
            .lines()
            .any(|l| l.starts_with("sec-websocket-protocol:") && l.contains("xmpp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_petrels_link_pieces() {
        let mut c = WsClient::new(&[]);
        let mut wire = Vec::new();
        c.encode(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='localhost' version='1.0'><presence/>",
            &mut wire,
        );
        // Two masked text frames: <open/> and the presence.
        assert_eq!(wire[0], 0x81);
        assert!(wire[1] & 0x80 != 0, "client frames are masked");
        assert!(accepted(
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
        ));
        assert!(!accepted(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    }
}
