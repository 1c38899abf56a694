//! A sans-IO client core for the NATS core protocol (the text protocol of `nats-server`): bytes
//! from the server in, [`Event`]s out; commands in, bytes to write out. No socket, no runtime: each
//! shard drives its own one from its glommio executor (`rt::cluster`), and the tests drive it from
//! byte strings.
//!
//! Spoken: `CONNECT` (with `headers` and `no_responders`, so a publish with a reply subject to a
//! subject nobody subscribes comes back as a `503` status), `PUB`, `SUB`, `PING`/`PONG` (a server
//! `PING` is answered here); understood from the server: `INFO`, `MSG`, `HMSG` (the status line of
//! its headers only), `PING`, `PONG`, `+OK`, `-ERR`.
//!
//! Why not a crate: async-nats needs a tokio runtime (a thread hop per stanza from a glommio
//! shard); the NATS crates that parse without a runtime are parts of other clients, not kept on
//! their own. The subset used here is small and fully specified by the protocol document.

#[cfg(test)]
mod tests;

use crate::config::NatsAuth;

/// Longest control line accepted from the server (`MSG` with long subjects, or `INFO`).
const MAX_LINE: usize = 64 * 1024;

/// Largest message payload accepted from the server (the server's own default is 1 MiB).
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `INFO`: the server's JSON description (sent first, and again when the cluster changes).
    Info(String),
    /// A message on a subscription.
    Msg(Msg),
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `-ERR`: the server's error text (most close the connection).
    Err(String),
}

/// One message delivered on a subscription (`MSG`, or `HMSG` reduced to its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The subject it was published on.
    pub subject: String,
    /// The subscription it matched.
    pub sid: u64,
    /// The reply subject, if the publisher gave one.
    pub reply: Option<String>,
    /// The status code of an `HMSG` header block (`503`: no responders).
    pub status: Option<u16>,
    /// The payload (after the headers, if any).
    pub payload: Vec<u8>,
}

/// The server broke the protocol: the connection must be dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// A control line longer than [`MAX_LINE`].
    #[error("control line too long")]
    LineTooLong,
    /// A payload larger than [`MAX_PAYLOAD`].
    #[error("payload too large")]
    PayloadTooLarge,
    /// An unknown or malformed control line.
    #[error("malformed line: {0}")]
    Malformed(String),
}

/// A publish refused because the output waiting to be written is over its bound.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("NATS output buffer full")]
pub struct OutputFull;

/// One connection's protocol state.
pub struct NatsCore {
    input: Vec<u8>,
    /// Start of the unparsed input.
    pos: usize,
    output: Vec<u8>,
    /// Bytes of output beyond which a publish is refused (control lines are always queued).
    output_limit: usize,
}

impl NatsCore {
    /// A connection whose publishes are refused past `output_limit` bytes of unwritten output.
    pub fn new(output_limit: usize) -> NatsCore {
        NatsCore {
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
            output_limit,
        }
    }

    /// Queues `CONNECT` (to be written first): verbose off, headers and no-responders on, no echo of
    /// our own publishes, and the credentials if any.
    pub fn connect(&mut self, name: &str, auth: &NatsAuth) {
        let mut fields = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "lang": "rust",
            "version": "petrel",
            "name": name,
            "protocol": 1,
            "headers": true,
            "no_responders": true,
            "echo": false,
        });
        match auth {
            NatsAuth::None => {}
            NatsAuth::Token(t) => fields["auth_token"] = t.as_str().into(),
            NatsAuth::UserPassword { user, password } => {
                fields["user"] = user.as_str().into();
                fields["pass"] = password.as_str().into();
            }
        }
        self.output.extend_from_slice(b"CONNECT ");
        self.output.extend_from_slice(fields.to_string().as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Queues `SUB subject [queue] sid`.
    pub fn subscribe(&mut self, subject: &str, sid: u64) {
        self.output
            .extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
    }

    /// Queues `PING` (the answer comes as [`Event::Pong`]).
    pub fn ping(&mut self) {
        self.output.extend_from_slice(b"PING\r\n");
    }

    /// Queues `PUB subject [reply] len` and the payload; refused past the output bound.
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), OutputFull> {
        if self.output.len() + payload.len() > self.output_limit {
            return Err(OutputFull);
        }
        self.publish_control(subject, reply, payload);
        Ok(())
    }

    /// Queues `PUB subject reply len` with the reply subject given in parts (a cached prefix and
    /// a number) and the payload in parts (no intermediate buffer, no formatting); refused past
    /// the output bound.
    pub fn publish_parts(
        &mut self,
        subject: &[u8],
        reply: &[&[u8]],
        payload: &[&[u8]],
    ) -> Result<(), OutputFull> {
        let len: usize = payload.iter().map(|p| p.len()).sum();
        if self.output.len() + len > self.output_limit {
            return Err(OutputFull);
        }
        let out = &mut self.output;
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject);
        out.push(b' ');
        for r in reply {
            out.extend_from_slice(r);
        }
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
        for p in payload {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Queues a publish whatever the output bound (the caller bounds these itself).
    pub fn publish_control(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let out = &mut self.output;
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject.as_bytes());
        out.push(b' ');
        if let Some(r) = reply {
            out.extend_from_slice(r.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(itoa::Buffer::new().format(payload.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    /// True when output waits to be written.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Bytes of output waiting to be written.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Everything queued since the last call, to write in one go.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Gives back a written output buffer, to reuse its allocation (when nothing was queued since).
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.output.is_empty() {
            buf.clear();
            self.output = buf;
        }
    }

    /// Bytes read from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next complete event in the input, if any; a server `PING` is answered with `PONG`.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtoError> {
        loop {
            let rest = &self.input[self.pos..];
            // The first `\n` ends the line (memchr: this runs per message); a control line holds
            // no bare `\n`, so `\r` must come before it.
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                if rest.len() > MAX_LINE {
                    return Err(ProtoError::LineTooLong);
                }
                self.compact();
                return Ok(None);
            };
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(ProtoError::Malformed("a line ends without CR".to_owned()));
            }
            let eol = nl - 1;
            if eol > MAX_LINE {
                return Err(ProtoError::LineTooLong);
            }
            let line = std::str::from_utf8(&rest[..eol])
                .map_err(|_| ProtoError::Malformed("not UTF-8".to_owned()))?;
            let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
            let after = self.pos + eol + 2;
            // Verbs are case-insensitive; compared without allocating (this runs per message).
            let is = |v: &str| verb.eq_ignore_ascii_case(v);
            match () {
                _ if is("PING") => {
                    self.pos = after;
                    self.output.extend_from_slice(b"PONG\r\n");
                }
                _ if is("PONG") => {
                    self.pos = after;
                    return Ok(Some(Event::Pong));
                }
                _ if is("+OK") => self.pos = after,
                _ if is("-ERR") => {
                    let text = args.trim().trim_matches('\'').to_owned();
                    self.pos = after;
                    return Ok(Some(Event::Err(text)));
                }
                _ if is("INFO") => {
                    let text = args.to_owned();
                    self.pos = after;
                    return Ok(Some(Event::Info(text)));
                }
                _ if is("MSG") || is("HMSG") => {
                    let head = parse_msg_line(args, verb.eq_ignore_ascii_case("HMSG"))?;
                    if head.total > MAX_PAYLOAD {
                        return Err(ProtoError::PayloadTooLarge);
                    }
                    let body_end = after + head.total;
                    if self.input.len() < body_end + 2 {
                        // The payload is not all here yet: wait for more input.
                        return Ok(None);
                    }
                    let body = &self.input[after..body_end];
                    let (status, payload) = match head.headers {
                        Some(h) if h <= body.len() => (status_of(&body[..h]), body[h..].to_vec()),
                        Some(_) => return Err(ProtoError::Malformed(line.to_owned())),
                        None => (None, body.to_vec()),
                    };
                    let msg = Msg {
                        subject: head.subject,
                        sid: head.sid,
                        reply: head.reply,
                        status,
                        payload,
                    };
                    self.pos = body_end + 2;
                    return Ok(Some(Event::Msg(msg)));
                }
                _ => return Err(ProtoError::Malformed(line.to_owned())),
            }
        }
    }

    /// Drops consumed input once it is most of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 && self.pos * 2 >= self.input.len() {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// The arguments of a `MSG`/`HMSG` line.
struct MsgHead {
    subject: String,
    sid: u64,
    reply: Option<String>,
    /// Header bytes (HMSG only).
    headers: Option<usize>,
    /// Bytes after the line (headers and payload).
    total: usize,
}

/// `MSG subject sid [reply] len` or `HMSG subject sid [reply] hlen tlen`.
fn parse_msg_line(args: &str, with_headers: bool) -> Result<MsgHead, ProtoError> {
    let bad = || ProtoError::Malformed(args.to_owned());
    // At most five fields: a fixed array, no allocation per message.
    let mut parts = [""; 5];
    let mut n = 0;
    for f in args.split_ascii_whitespace() {
        if n == parts.len() {
            return Err(bad());
        }
        parts[n] = f;
        n += 1;
    }
    let parts = &parts[..n];
    let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
    let (fixed, sizes) = if with_headers {
        match parts.len() {
            4 | 5 => parts.split_at(parts.len() - 2),
            _ => return Err(bad()),
        }
    } else {
        match parts.len() {
            3 | 4 => parts.split_at(parts.len() - 1),
            _ => return Err(bad()),
        }
    };
    let subject = fixed[0].to_owned();
    let sid = fixed[1].parse::<u64>().map_err(|_| bad())?;
    let reply = fixed.get(2).map(|r| r.to_string());
    let (headers, total) = if with_headers {
        (Some(num(sizes[0])?), num(sizes[1])?)
    } else {
        (None, num(sizes[0])?)
    };
    if headers.is_some_and(|h| h > total) {
        return Err(bad());
    }
    Ok(MsgHead {
        subject,
        sid,
        reply,
        headers,
        total,
    })
}

/// The status code of a header block's first line (`NATS/1.0 503`), if it has one.
fn status_of(headers: &[u8]) -> Option<u16> {
    let first = headers.split(|&b| b == b'\r').next()?;
    let first = std::str::from_utf8(first).ok()?;
    let code = first.strip_prefix("NATS/1.0")?.trim_start();
    code.get(..3)?.parse().ok()
}
