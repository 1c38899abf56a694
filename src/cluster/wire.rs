//! What the nodes of a cluster say to each other over NATS: the payloads, encoded as fields
//! separated by `\n` (a JID cannot hold a control character, RFC 7622 and PRECIS), records of a
//! batch separated by `\x1e`. Sans-IO: bytes in, typed records out.

use crate::jid::{FullJid, Jid};

/// Separates the records of one payload.
const RS: u8 = 0x1e;

/// A node's identity: its name and the random id of this start of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Incarnation {
    /// The node's configured name.
    pub node: String,
    /// Random per start: a new one means the node restarted (the old one died).
    pub id: u64,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Shard 0's heartbeat (`petrel.C.hb`).
    Heartbeat {
        /// Who.
        from: Incarnation,
        /// Its shard count.
        shards: u16,
        /// Its c2s address (for operators).
        c2s: String,
    },
    /// A session on `from` is bound or updated (`petrel.C.sm`, and sync answers).
    Bound {
        /// The node holding the session.
        from: Incarnation,
        /// The session's full JID.
        jid: FullJid,
        /// Its shard on that node.
        shard: u16,
        /// `Some` once available.
        priority: Option<i8>,
        /// Its last available presence (answers probes on the other nodes), empty when none. A
        /// stanza never holds the record separator (restricted XML has no such character).
        presence: Vec<u8>,
    },
    /// A session on `from` is gone.
    Gone {
        /// The node that held the session.
        from: Incarnation,
        /// The session's full JID.
        jid: FullJid,
        /// Its shard on that node.
        shard: u16,
    },
    /// A stanza for the full JID `target` bound on the receiving shard.
    Deliver {
        /// The bound session it is for.
        target: FullJid,
        /// The route's sender.
        from: Jid,
        /// The route's recipient (the bare JID when the sender wrote one).
        to: Jid,
        /// Times the stanza was already re-routed (bounds loops between nodes).
        reroutes: u8,
        /// The stanza's bytes.
        stanza: Vec<u8>,
    },
    /// These stanzas (sequence numbers, low 32 bits) reached the end of their route on the
    /// receiving node: delivered, stored or answered. Published to `INBOX.SLOT.SHARD.SEQ` with
    /// the highest of them.
    Ack {
        /// Who acknowledges.
        from: Incarnation,
        /// Its shard that sends the acknowledgement.
        shard: u16,
        /// The stanzas.
        seqs: Vec<u32>,
    },
    /// The receiving shard got a stanza whose sequence number (the last token of the subject this
    /// is published to) skips `from_seq` and the ones after it (NATS dropped them: a slow consumer
    /// cut off): the sender routes its copies of those again.
    Gap {
        /// The first missing sequence number.
        from_seq: u64,
    },
    /// Asks for the sessions of the receiving node (answered with `Bound` records).
    SyncRequest,
    /// Frames a shard's announcement of every local session it is home for (after its own NATS
    /// reconnection, `petrel.C.sm`): `done: false` opens it, the `Bound` records follow, `done:
    /// true` closes it. A receiver then drops the sessions of that home shard the frame did not
    /// name: their `Gone` may have been in the lost connection.
    Snapshot {
        /// Who announces.
        from: Incarnation,
        /// Its shard that is home for the sessions announced.
        home: u16,
        /// Its shard count (which of its home shards a bare JID belongs to).
        shards: u16,
        /// Closes the frame.
        done: bool,
    },
    /// A module's request to another node, or its answer (`cluster::rpc`): handled on the home
    /// shard of `key` there (a bare JID; empty for an answer, which goes to the asking shard).
    Module {
        /// Which module handler takes it (a token without `\n`).
        kind: String,
        /// The bare JID whose home shard handles it, or empty.
        key: String,
        /// The module's own bytes.
        body: Vec<u8>,
    },
    /// An object homed on one node (a MUC room: `key` is its bare JID) lives on `from`, on its
    /// shard `shard` (`petrel.C.sm`, and sync answers): the registry of `objects`.
    Owned {
        /// The node holding it.
        from: Incarnation,
        /// The object's key.
        key: String,
        /// Its shard on that node.
        shard: u16,
        /// When this copy went live there (ms since the Unix epoch): of two copies, the older
        /// stays.
        since: u64,
        /// What the service says of it to every node (MUC: the name of a public room, for the
        /// room list; empty when not listed); one line.
        info: String,
    },
    /// The object `key` no longer lives on `from` (destroyed, or dropped after a conflict).
    Disowned {
        /// The node that held it.
        from: Incarnation,
        /// The object's key.
        key: String,
    },
    /// A stanza for the object `key` homed on the receiving node (`petrel.C.n.NODE.0`), with the
    /// same acknowledgement as `Deliver`.
    ToObject {
        /// The object it is for.
        key: String,
        /// The route's sender.
        from: Jid,
        /// The route's recipient.
        to: Jid,
        /// Times the stanza was already re-routed (bounds loops between nodes).
        reroutes: u8,
        /// The stanza's bytes.
        stanza: Vec<u8>,
    },
}

/// A payload that is not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed cluster record")]
pub struct Malformed;

impl Incarnation {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.node.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(format!("{:x}", self.id).as_bytes());
        out.push(b'\n');
    }
}

fn prio(p: Option<i8>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

impl Record {
    /// Appends the record to `out` (a separator first when `out` is not empty).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if !out.is_empty() {
            out.push(RS);
        }
        let field = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        };
        match self {
            Record::Heartbeat { from, shards, c2s } => {
                field(out, "H");
                from.write(out);
                field(out, &shards.to_string());
                field(out, c2s);
            }
            Record::Bound {
                from,
                jid,
                shard,
                priority,
                presence,
            } => {
                field(out, "B");
                from.write(out);
                field(out, jid.as_str());
                field(out, &shard.to_string());
                field(out, &prio(*priority));
                out.extend_from_slice(presence);
            }
            Record::Gone { from, jid, shard } => {
                field(out, "G");
                from.write(out);
                field(out, jid.as_str());
                field(out, &shard.to_string());
            }
            Record::Deliver {
                target,
                from,
                to,
                reroutes,
                stanza,
            } => {
                let mut head = Vec::new();
                Record::deliver_header(
                    &mut head,
                    target.as_str(),
                    from.as_str(),
                    to.as_str(),
                    *reroutes,
                );
                out.extend_from_slice(&head);
                out.extend_from_slice(stanza);
            }
            Record::Ack { from, shard, seqs } => {
                field(out, "A");
                from.write(out);
                field(out, &shard.to_string());
                // One number per stanza acknowledged: written without `fmt` or a list of strings.
                let mut b = itoa::Buffer::new();
                for (i, n) in seqs.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b.format(*n).as_bytes());
                }
                out.push(b'\n');
            }
            Record::Gap { from_seq } => {
                field(out, "X");
                field(out, &from_seq.to_string());
            }
            Record::SyncRequest => field(out, "S"),
            Record::Snapshot {
                from,
                home,
                shards,
                done,
            } => {
                field(out, "P");
                from.write(out);
                field(out, &home.to_string());
                field(out, &shards.to_string());
                field(out, if *done { "e" } else { "b" });
            }
            Record::Module { kind, key, body } => {
                field(out, "M");
                field(out, kind);
                field(out, key);
                out.extend_from_slice(body);
            }
            Record::Owned {
                from,
                key,
                shard,
                since,
                info,
            } => {
                field(out, "O");
                from.write(out);
                field(out, key);
                field(out, &shard.to_string());
                field(out, &since.to_string());
                field(out, info);
            }
            Record::Disowned { from, key } => {
                field(out, "U");
                from.write(out);
                field(out, key);
            }
            Record::ToObject {
                key,
                from,
                to,
                reroutes,
                stanza,
            } => {
                let mut head = Vec::new();
                Record::object_header(&mut head, key, from.as_str(), to.as_str(), *reroutes);
                out.extend_from_slice(&head);
                out.extend_from_slice(stanza);
            }
        }
    }

    /// The header of a `ToObject` record (the stanza's bytes follow it), into `out`.
    pub fn object_header(out: &mut Vec<u8>, key: &str, from: &str, to: &str, reroutes: u8) {
        Record::deliver_header(out, key, from, to, reroutes);
        out[0] = b'R';
    }

    /// The header of a `Deliver` record (the stanza's bytes follow it), into `out`.
    pub fn deliver_header(out: &mut Vec<u8>, target: &str, from: &str, to: &str, reroutes: u8) {
        out.clear();
        for f in ["D", target, from, to] {
            out.extend_from_slice(f.as_bytes());
            out.push(b'\n');
        }
        // Per cross-node stanza: no allocation for the count.
        out.extend_from_slice(itoa::Buffer::new().format(reroutes).as_bytes());
        out.push(b'\n');
    }

    /// The record alone, as a payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// The records of a payload. A `Deliver`, `Module` or `ToObject` record is always alone in its payload
    /// (its stanza may hold any byte but the separator is not searched for in it).
    pub fn decode_all(payload: &[u8]) -> Result<Vec<Record>, Malformed> {
        if matches!(payload.first(), Some(b'D' | b'M' | b'R')) {
            return Ok(vec![Record::decode(payload)?]);
        }
        payload
            .split(|&b| b == RS)
            .filter(|r| !r.is_empty())
            .map(Record::decode)
            .collect()
    }

    /// One record.
    pub fn decode(rec: &[u8]) -> Result<Record, Malformed> {
        let mut f = Fields(rec);
        let full = |s: &str| FullJid::parse(s).map_err(|_| Malformed);
        let jid = |s: &str| Jid::parse(s).map_err(|_| Malformed);
        let num = |s: &str| s.parse::<u16>().map_err(|_| Malformed);
        // A key is not empty (it names an object).
        let key = |s: &str| (!s.is_empty()).then(|| s.to_owned()).ok_or(Malformed);
        let rec = match f.next()? {
            "H" => Record::Heartbeat {
                from: f.incarnation()?,
                shards: num(f.next()?)?,
                c2s: f.next()?.to_owned(),
            },
            "B" => Record::Bound {
                from: f.incarnation()?,
                jid: full(f.next()?)?,
                shard: num(f.next()?)?,
                priority: match f.next()? {
                    "-" => None,
                    p => Some(p.parse().map_err(|_| Malformed)?),
                },
                presence: f.0.to_vec(),
            },
            "G" => Record::Gone {
                from: f.incarnation()?,
                jid: full(f.next()?)?,
                shard: num(f.next()?)?,
            },
            "D" => {
                let (head, at) = DeliverHead::parse(rec)?;
                Record::Deliver {
                    target: full(head.target)?,
                    from: jid(head.from)?,
                    to: jid(head.to)?,
                    reroutes: head.reroutes,
                    stanza: rec[at..].to_vec(),
                }
            }
            "A" => Record::Ack {
                from: f.incarnation()?,
                shard: num(f.next()?)?,
                seqs: f
                    .next()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| Malformed))
                    .collect::<Result<_, _>>()?,
            },
            "X" => Record::Gap {
                from_seq: f.next()?.parse().map_err(|_| Malformed)?,
            },
            "S" => Record::SyncRequest,
            "P" => Record::Snapshot {
                from: f.incarnation()?,
                home: num(f.next()?)?,
                shards: num(f.next()?)?,
                done: match f.next()? {
                    "b" => false,
                    "e" => true,
                    _ => return Err(Malformed),
                },
            },
            "M" => Record::Module {
                kind: f.next()?.to_owned(),
                key: f.next()?.to_owned(),
                body: f.0.to_vec(),
            },
            "O" => Record::Owned {
                from: f.incarnation()?,
                key: key(f.next()?)?,
                shard: num(f.next()?)?,
                since: f.next()?.parse().map_err(|_| Malformed)?,
                info: f.next()?.to_owned(),
            },
            "U" => Record::Disowned {
                from: f.incarnation()?,
                key: key(f.next()?)?,
            },
            "R" => {
                let (head, at) = DeliverHead::parse_kind(rec, b'R')?;
                Record::ToObject {
                    key: key(head.target)?,
                    from: jid(head.from)?,
                    to: jid(head.to)?,
                    reroutes: head.reroutes,
                    stanza: rec[at..].to_vec(),
                }
            }
            _ => return Err(Malformed),
        };
        Ok(rec)
    }
}

/// A `Deliver` record's header, borrowed from the payload (the receiving shard's hot path: no
/// JID is parsed that is only looked up, and the stanza's bytes are not copied).
#[derive(Debug, PartialEq, Eq)]
pub struct DeliverHead<'a> {
    /// The bound session's full JID, as sent.
    pub target: &'a str,
    /// The route's sender, as sent.
    pub from: &'a str,
    /// The route's recipient, as sent.
    pub to: &'a str,
    /// Times the stanza was already re-routed.
    pub reroutes: u8,
}

impl<'a> DeliverHead<'a> {
    /// The header of a `Deliver` payload and where the stanza starts.
    pub fn parse(payload: &'a [u8]) -> Result<(DeliverHead<'a>, usize), Malformed> {
        DeliverHead::parse_kind(payload, b'D')
    }

    /// The header of a `Deliver` (`kind` `D`) or `ToObject` (`R`, whose `target` is the object's
    /// key) payload and where the stanza starts.
    pub fn parse_kind(payload: &'a [u8], kind: u8) -> Result<(DeliverHead<'a>, usize), Malformed> {
        let mut f = Fields(payload);
        if f.next()?.as_bytes() != [kind] {
            return Err(Malformed);
        }
        let head = DeliverHead {
            target: f.next()?,
            from: f.next()?,
            to: f.next()?,
            reroutes: f.next()?.parse().map_err(|_| Malformed)?,
        };
        Ok((head, payload.len() - f.0.len()))
    }
}

/// The `\n`-terminated fields of a record, then its rest.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a str, Malformed> {
        let at = memchr::memchr(b'\n', self.0).ok_or(Malformed)?;
        let f = std::str::from_utf8(&self.0[..at]).map_err(|_| Malformed)?;
        self.0 = &self.0[at + 1..];
        Ok(f)
    }

    fn incarnation(&mut self) -> Result<Incarnation, Malformed> {
        let node = self.next()?.to_owned();
        let id = u64::from_str_radix(self.next()?, 16).map_err(|_| Malformed)?;
        Ok(Incarnation { node, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc() -> Incarnation {
        Incarnation {
            node: "n1".into(),
            id: 0xdead_beef,
        }
    }

    #[test]
    fn records_round_trip() {
        let jid = FullJid::parse("alice@localhost/a b").unwrap();
        let recs = vec![
            Record::Heartbeat {
                from: inc(),
                shards: 4,
                c2s: "127.0.0.1:5222".into(),
            },
            Record::Bound {
                from: inc(),
                jid: jid.clone(),
                shard: 3,
                priority: Some(-5),
                presence: b"<presence><show>away</show>\n</presence>".to_vec(),
            },
            Record::Bound {
                from: inc(),
                jid: jid.clone(),
                shard: 0,
                priority: None,
                presence: Vec::new(),
            },
            Record::Gone {
                from: inc(),
                jid: jid.clone(),
                shard: 1,
            },
            Record::Ack {
                from: inc(),
                shard: 2,
                seqs: vec![3, 5, 4],
            },
            Record::Gap { from_seq: 42 },
            Record::SyncRequest,
            Record::Snapshot {
                from: inc(),
                home: 1,
                shards: 2,
                done: false,
            },
            Record::Snapshot {
                from: inc(),
                home: 0,
                shards: 2,
                done: true,
            },
            Record::Owned {
                from: inc(),
                key: "room@conference.localhost".into(),
                shard: 1,
                since: 1_700_000_000_123,
                info: "Kept Room".into(),
            },
            Record::Disowned {
                from: inc(),
                key: "room@conference.localhost".into(),
            },
        ];
        for r in &recs {
            assert_eq!(Record::decode_all(&r.encode()).unwrap(), vec![r.clone()]);
        }
        let mut batch = Vec::new();
        for r in &recs {
            r.encode_into(&mut batch);
        }
        assert_eq!(Record::decode_all(&batch).unwrap(), recs);
    }

    #[test]
    fn deliver_carries_any_bytes() {
        let r = Record::Deliver {
            target: FullJid::parse("bob@localhost/r").unwrap(),
            from: Jid::parse("alice@localhost/a").unwrap(),
            to: Jid::parse("bob@localhost").unwrap(),
            reroutes: 1,
            stanza: b"<message>\n\x1e\n</message>".to_vec(),
        };
        assert_eq!(Record::decode_all(&r.encode()).unwrap(), vec![r]);
    }

    #[test]
    fn module_records_carry_any_bytes() {
        for key in ["alice@localhost", ""] {
            let r = Record::Module {
                kind: "sm".into(),
                key: key.into(),
                body: b"resume\n\x1e\x00<m/>\n".to_vec(),
            };
            assert_eq!(Record::decode_all(&r.encode()).unwrap(), vec![r]);
        }
        assert_eq!(Record::decode_all(b"M\nsm\n"), Err(Malformed));
    }

    #[test]
    fn to_object_carries_any_bytes() {
        let r = Record::ToObject {
            key: "room@conference.localhost".into(),
            from: Jid::parse("alice@localhost/a").unwrap(),
            to: Jid::parse("room@conference.localhost/nick").unwrap(),
            reroutes: 2,
            stanza: b"<message>\n\x1e\n</message>".to_vec(),
        };
        let bytes = r.encode();
        assert!(bytes.starts_with(b"R\nroom@conference.localhost\n"));
        assert_eq!(Record::decode_all(&bytes).unwrap(), vec![r]);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"X\n"[..],
            b"B\nn1\nzz\nalice@localhost/r\n0\n-\n",
            b"H\nn1\n1\n",
            b"G\nn1\n1\nnot a jid@@/\n0\n",
            b"P\nn1\n1\n0\n2\nx\n",
            b"O\nn1\n1\n\n0\n5\n\n",
            b"O\nn1\n1\nroom@conference.localhost\nx\n5\n\n",
            b"O\nn1\n1\nroom@conference.localhost\n0\n5\n",
            b"R\nroom@c\nnot a jid@@/\nroom@c\n0\n<message/>",
        ] {
            assert_eq!(
                Record::decode_all(bad),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
