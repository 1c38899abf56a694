//! What two nodes say about a session moving between them (`cluster::rpc` bodies of kind `sm`):
//! the request on its way to the old session, the answer carrying the session's state, and their
//! byte encoding (lines, and length-prefixed blobs for stanzas). Sans-IO.

use crate::c2s::ResumeError;
use crate::jid::{FullJid, Jid};

/// A request from another node, on its way to the old session.
#[derive(Debug)]
pub struct NodeAsk {
    /// The asking node's name.
    pub node: String,
    /// Where the answer goes.
    pub reply: String,
    /// The session's last available presence (from the home shard), empty when none.
    pub last: Vec<u8>,
}

/// What a session from another node brings besides its counters and stanzas.
#[derive(Debug)]
pub struct FromNode {
    /// Its last available presence.
    pub last: Option<crate::xml::Stanza>,
}

/// One unacknowledged stanza carried to the other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// For a routed stanza, its route's `from` and `to` (routed again if the session ends there);
    /// `None` for one the stream wrote itself.
    pub route: Option<(Jid, Jid)>,
    /// Its bytes as written to the client.
    pub bytes: Vec<u8>,
}

/// A session's state on its way to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The session's full JID.
    pub jid: FullJid,
    /// `Some(priority)` when available.
    pub priority: Option<i8>,
    /// Its last available presence, empty when none.
    pub last: Vec<u8>,
    /// Inbound stanzas handled (the `h` of `<resumed/>`).
    pub h_in: u32,
    /// Outbound stanzas counted.
    pub h_out: u32,
    /// The unacknowledged stanzas, oldest first.
    pub items: Vec<Item>,
}

/// The messages of the protocol (bodies of `cluster::rpc` records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// B -> A: resume session `id` (of the user named by the request's key) with the client's `h`.
    Ask {
        /// The resumption id.
        id: String,
        /// The client's handled count.
        h: u32,
        /// The asking node.
        node: String,
    },
    /// A -> B: the session moved on to node `0` by an earlier resumption there: ask it.
    MovedTo(String),
    /// A -> B: no such session, or the client's `h` is impossible.
    Failed(ResumeError),
    /// A -> B: the session.
    Handover(Box<Moved>),
    /// B -> A: the state is taken (A drops its copies).
    Taken,
}

/// A body that is not one of [`Msg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed resumption message")]
pub struct Malformed;

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

fn blob(out: &mut Vec<u8>, b: &[u8]) {
    line(out, &b.len().to_string());
    out.extend_from_slice(b);
}

impl Msg {
    /// The body's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Ask { id, h, node } => {
                line(&mut out, "ask");
                line(&mut out, id);
                line(&mut out, &h.to_string());
                line(&mut out, node);
            }
            Msg::MovedTo(node) => {
                line(&mut out, "moved");
                line(&mut out, node);
            }
            Msg::Failed(ResumeError::ItemNotFound) => line(&mut out, "failed"),
            Msg::Failed(ResumeError::HandledCountTooHigh { h, sent }) => {
                line(&mut out, "too-high");
                line(&mut out, &h.to_string());
                line(&mut out, &sent.to_string());
            }
            Msg::Handover(m) => {
                line(&mut out, "handover");
                line(&mut out, m.jid.as_str());
                line(&mut out, &m.priority.map_or("-".into(), |p| p.to_string()));
                line(&mut out, &m.h_in.to_string());
                line(&mut out, &m.h_out.to_string());
                blob(&mut out, &m.last);
                line(&mut out, &m.items.len().to_string());
                for it in &m.items {
                    match &it.route {
                        Some((from, to)) => {
                            line(&mut out, "R");
                            line(&mut out, from.as_str());
                            line(&mut out, to.as_str());
                        }
                        None => line(&mut out, "L"),
                    }
                    blob(&mut out, &it.bytes);
                }
            }
            Msg::Taken => line(&mut out, "taken"),
        }
        out
    }

    /// Reads a body.
    pub fn decode(body: &[u8]) -> Result<Msg, Malformed> {
        let mut r = Reader(body);
        let msg = match r.line()? {
            "ask" => Msg::Ask {
                id: r.line()?.to_owned(),
                h: r.num()?,
                node: r.line()?.to_owned(),
            },
            "moved" => Msg::MovedTo(r.line()?.to_owned()),
            "failed" => Msg::Failed(ResumeError::ItemNotFound),
            "too-high" => Msg::Failed(ResumeError::HandledCountTooHigh {
                h: r.num()?,
                sent: r.num()?,
            }),
            "handover" => {
                let jid = FullJid::parse(r.line()?).map_err(|_| Malformed)?;
                let priority = match r.line()? {
                    "-" => None,
                    p => Some(p.parse().map_err(|_| Malformed)?),
                };
                let h_in = r.num()?;
                let h_out = r.num()?;
                let last = r.blob()?.to_vec();
                let n: usize = r.num()?;
                // Bounded by the body's size: every item takes at least a few bytes.
                let mut items = Vec::with_capacity(n.min(body.len()));
                for _ in 0..n {
                    let route = match r.line()? {
                        "R" => {
                            let from = Jid::parse(r.line()?).map_err(|_| Malformed)?;
                            let to = Jid::parse(r.line()?).map_err(|_| Malformed)?;
                            Some((from, to))
                        }
                        "L" => None,
                        _ => return Err(Malformed),
                    };
                    let bytes = r.blob()?.to_vec();
                    items.push(Item { route, bytes });
                }
                Msg::Handover(Box::new(Moved {
                    jid,
                    priority,
                    last,
                    h_in,
                    h_out,
                    items,
                }))
            }
            "taken" => Msg::Taken,
            _ => return Err(Malformed),
        };
        Ok(msg)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn line(&mut self) -> Result<&'a str, Malformed> {
        let at = memchr::memchr(b'\n', self.0).ok_or(Malformed)?;
        let s = std::str::from_utf8(&self.0[..at]).map_err(|_| Malformed)?;
        self.0 = &self.0[at + 1..];
        Ok(s)
    }

    fn num<T: std::str::FromStr>(&mut self) -> Result<T, Malformed> {
        self.line()?.parse().map_err(|_| Malformed)
    }

    fn blob(&mut self) -> Result<&'a [u8], Malformed> {
        let n: usize = self.num()?;
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }
}
