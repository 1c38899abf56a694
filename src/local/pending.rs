//! IQs the server (or a service) sends from one of its domains, waiting for their answer
//! (MongooseIM's `ejabberd_local:route_iq`): an id -> callback registry per shard.
//!
//! The id carries the shard that waits (`pq-SHARD-SEQ`), so an answer that reaches local delivery
//! on another shard (the responder's connection lives there) is forwarded to it. An answer fires
//! the callback only when it comes from the JID the IQ was sent to and is addressed to the JID that
//! sent it: a result forged by someone else is dropped and the entry keeps waiting.
//!
//! Bounded: at most [`MAX_PENDING`] entries per shard; when full, [`Shard::send_iq`] refuses the
//! new request (the caller decides: caps simply does not ask). Entries time out: the shard's
//! runtime calls [`Shard::expire_iqs`] about once a second, and the callback gets
//! [`IqAnswer::Timeout`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ahash::HashMap;

use crate::hooks::Acc;
use crate::jid::Jid;
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::xml::{Element, Stanza, StanzaKind, StanzaType};
use crate::xmpp::ns;

/// Most IQs one shard waits for at a time.
pub const MAX_PENDING: usize = 10_000;

/// Prefix of the ids of the IQs the server sends (`pq-SHARD-SEQ`).
const ID_PREFIX: &str = "pq-";

/// What became of an IQ sent with [`Shard::send_iq`].
#[derive(Debug)]
pub enum IqAnswer {
    /// `type='result'` from the addressee.
    Result(Acc),
    /// `type='error'` from the addressee (or the server's bounce on its behalf).
    Error(Acc),
    /// No answer in time.
    Timeout,
}

/// Called once with the answer of an IQ, on the shard that sent it.
pub type IqCallback = Box<dyn FnOnce(&mut Shard, IqAnswer)>;

/// The shard waits for [`MAX_PENDING`] answers already.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many IQs waiting for an answer on this shard")]
pub struct PendingFull;

struct Entry {
    /// The IQ's `from` (the answer's `to` must be it).
    from: Jid,
    /// The IQ's `to` (the answer's `from` must be it).
    to: Jid,
    deadline: Instant,
    then: IqCallback,
}

/// The IQs one shard waits for (sans-IO: time comes in as arguments).
#[derive(Default)]
pub struct PendingIqs {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// (deadline, seq) of every entry, soonest first.
    deadlines: BTreeSet<(Instant, u64)>,
}

impl PendingIqs {
    /// Number of IQs waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no IQ waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers an IQ from `from` to `to`; returns its sequence number (the id is [`id_of`]).
    fn insert(
        &mut self,
        from: Jid,
        to: Jid,
        deadline: Instant,
        then: IqCallback,
    ) -> Result<u64, PendingFull> {
        if self.entries.len() >= MAX_PENDING {
            return Err(PendingFull);
        }
        self.next += 1;
        let seq = self.next;
        self.deadlines.insert((deadline, seq));
        self.entries.insert(
            seq,
            Entry {
                from,
                to,
                deadline,
                then,
            },
        );
        Ok(seq)
    }

    /// Takes the entry `seq` if `answer_from` / `answer_to` are the addressee and the sender of
    /// its IQ; a mismatch leaves it waiting.
    fn take(&mut self, seq: u64, answer_from: &Jid, answer_to: &Jid) -> Option<IqCallback> {
        let e = self.entries.get(&seq)?;
        if e.to != *answer_from || e.from != *answer_to {
            return None;
        }
        let e = self.entries.remove(&seq)?;
        self.deadlines.remove(&(e.deadline, seq));
        Some(e.then)
    }

    /// Takes every entry whose deadline is not after `now`, soonest first.
    fn expired(&mut self, now: Instant) -> Vec<IqCallback> {
        let mut out = Vec::new();
        while let Some(&(deadline, seq)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.remove(&seq) {
                out.push(e.then);
            }
        }
        out
    }
}

/// The id of the IQ `seq` sent by `shard`.
fn id_of(shard: ShardId, seq: u64) -> String {
    format!("{ID_PREFIX}{}-{seq}", shard.0)
}

/// The (shard, seq) an id of [`id_of`] names.
fn parse_id(id: &str) -> Option<(ShardId, u64)> {
    let (shard, seq) = id.strip_prefix(ID_PREFIX)?.split_once('-')?;
    Some((ShardId(shard.parse().ok()?), seq.parse().ok()?))
}

impl Shard {
    /// Sends the IQ `type` (get or set) with `payload` from `from` (a domain this server serves,
    /// or a JID under one) to `to`, and calls `then` on this shard with its answer, or with
    /// [`IqAnswer::Timeout`] after `timeout` (give or take the second of the expiry tick).
    pub fn send_iq(
        &mut self,
        type_: &str,
        payload: Element,
        from: Jid,
        to: Jid,
        timeout: Duration,
        then: IqCallback,
    ) -> Result<(), PendingFull> {
        let deadline = crate::hooks::clock::now() + timeout;
        let seq = self
            .iq_pending
            .insert(from.clone(), to.clone(), deadline, then)?;
        let el = Element::new("iq", ns::CLIENT)
            .with_attr("type", type_)
            .with_attr("id", id_of(self.id, seq))
            .with_attr("from", from.as_str())
            .with_attr("to", to.as_str())
            .with_child(payload);
        let acc = Acc::new(Stanza::from_element(&el), from, to, self.id);
        self.fx.to_route.push(acc);
        Ok(())
    }

    /// Calls the callbacks of the IQs whose time ran out (the runtime calls it periodically).
    pub fn expire_iqs(&mut self, now: Instant) {
        if self.iq_pending.is_empty() {
            return;
        }
        for then in self.iq_pending.expired(now) {
            then(self, IqAnswer::Timeout);
        }
        self.drain_to_route();
    }
}

/// If `acc` answers an IQ sent with [`Shard::send_iq`] (here or, by its id, on another shard),
/// hands it over and returns `None`; otherwise gives it back.
pub(super) fn answer(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    if acc.kind() != StanzaKind::Iq {
        return Some(acc);
    }
    let ty = acc.ty();
    let is_result = match ty {
        StanzaType::Result => true,
        StanzaType::Error => false,
        _ => return Some(acc),
    };
    let Some((owner, seq)) = acc.stanza.id().and_then(|id| parse_id(&id)) else {
        return Some(acc);
    };
    if owner != shard.id {
        if owner.index() < shard.shards {
            shard.send_to_shard(
                owner,
                ShardMsg::Run(Box::new(move |s| {
                    if let Some(acc) = answer(s, acc) {
                        drop_answer(s, acc);
                    }
                })),
            );
            return None;
        }
        return Some(acc);
    }
    let Some(then) = shard.iq_pending.take(seq, &acc.from, &acc.to) else {
        return Some(acc);
    };
    let answer = if is_result {
        IqAnswer::Result(acc)
    } else {
        IqAnswer::Error(acc)
    };
    then(shard, answer);
    None
}

/// An IQ answer nothing waits for (late, forged, or never asked): dropped.
pub(super) fn drop_answer(shard: &mut Shard, mut acc: Acc) {
    acc.note(
        shard.id,
        super::STAGE,
        crate::explain::Outcome::Dropped,
        |_| Some("an IQ answer nothing waits for".to_owned()),
    );
    tracing::debug!(
        from = acc.from.as_str(),
        id = acc.stanza.id().as_deref().unwrap_or(""),
        "IQ answer to the server dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn noop() -> IqCallback {
        Box::new(|_, _| {})
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_id(&id_of(ShardId(3), 42)), Some((ShardId(3), 42)));
        assert_eq!(parse_id("bind1"), None);
        assert_eq!(parse_id("pq-x-1"), None);
    }

    #[test]
    fn answer_from_someone_else_does_not_take_the_entry() {
        let mut p = PendingIqs::default();
        let now = Instant::now();
        let seq = p
            .insert(jid("localhost"), jid("a@localhost/r"), now, noop())
            .unwrap();
        assert!(p
            .take(seq, &jid("mallory@localhost/r"), &jid("localhost"))
            .is_none());
        assert!(p
            .take(seq, &jid("a@localhost/r"), &jid("other.test"))
            .is_none());
        assert_eq!(p.len(), 1);
        assert!(p
            .take(seq, &jid("a@localhost/r"), &jid("localhost"))
            .is_some());
        assert!(p.is_empty() && p.deadlines.is_empty());
    }

    #[test]
    fn entries_expire_soonest_first_and_the_registry_is_bounded() {
        let mut p = PendingIqs::default();
        let now = Instant::now();
        for i in 0..MAX_PENDING {
            let at = now + Duration::from_secs((MAX_PENDING - i) as u64);
            p.insert(jid("localhost"), jid("a@localhost/r"), at, noop())
                .unwrap();
        }
        assert_eq!(
            p.insert(jid("localhost"), jid("a@localhost/r"), now, noop())
                .err(),
            Some(PendingFull)
        );
        assert_eq!(p.expired(now).len(), 0);
        assert_eq!(p.expired(now + Duration::from_secs(2)).len(), 2);
        assert_eq!(p.len(), MAX_PENDING - 2);
        assert!(p
            .insert(jid("localhost"), jid("a@localhost/r"), now, noop())
            .is_ok());
    }
}
