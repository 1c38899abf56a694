//! Requests between nodes for modules (the core names no module): a module registers a handler
//! for a kind of request on every shard; another node's request runs it on the home shard of the
//! request's bare JID here; an answer goes to the asking shard's inbox (`INBOX.q.ID`), where the
//! asker's callback takes it, or takes `None` when no answer came in time or NATS returned the
//! request (no one listens: the node is gone). An answer may itself expect an answer (a hand-over
//! that the receiver confirms). Sans-IO: the driver calls [`expire`] now and then.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::HashMap;

use super::link::{link_of, LinkRc};
use super::wire::Record;
use crate::shard::{home_shard_of, Shard};

/// Pending requests per shard; one more is refused (the caller answers as for no answer).
pub const MAX_PENDING: usize = 4096;

/// Largest payload published (NATS's default `max_payload` is 1 MiB; headers and the record's
/// own fields stay below the rest).
pub const MAX_BODY: usize = 1_000_000;

/// A request from another node, on the home shard of its `key`.
#[derive(Debug)]
pub struct Request {
    /// The bare JID the request is about.
    pub key: String,
    /// The module's bytes.
    pub body: Vec<u8>,
    /// Where the answer goes (`None`: no answer expected).
    pub reply: Option<String>,
}

/// What came back to a request (or an answer expecting one).
#[derive(Debug)]
pub struct Answer {
    /// The answering module's bytes.
    pub body: Vec<u8>,
    /// Where an answer to this answer goes, when the other side expects one.
    pub reply: Option<String>,
}

/// A module's handler of requests of one kind.
pub type RequestHandler = Rc<dyn Fn(&mut Shard, Request)>;

/// Takes the answer, or `None` (no answer in time, the node is gone, or nothing was sent).
pub type OnAnswer = Box<dyn FnOnce(&mut Shard, Option<Answer>)>;

/// Why nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// This process runs no cluster.
    #[error("no cluster")]
    NoCluster,
    /// The body is over [`MAX_BODY`].
    #[error("request too large")]
    TooLarge,
    /// Too many requests wait for answers, or the connection's output is full or down.
    #[error("cluster busy or disconnected")]
    Busy,
}

/// One shard's handlers and pending requests (in `Shard::ext`).
#[derive(Default)]
struct Rpc {
    handlers: HashMap<&'static str, RequestHandler>,
    pending: HashMap<u64, (Instant, OnAnswer)>,
    next: u64,
}

/// Registers `handler` for requests of `kind` on this shard (a module's start, on every shard).
pub fn set_handler(shard: &mut Shard, kind: &'static str, handler: RequestHandler) {
    shard
        .ext
        .get_or_default::<Rpc>()
        .handlers
        .insert(kind, handler);
}

/// This node's name, when it runs in a cluster.
pub fn node_name(shard: &Shard) -> Option<String> {
    link_of(shard).map(|l| l.borrow().node.me.node.clone())
}

/// True when `node` is a live member (as this shard's copy of the member table says).
pub fn is_member(shard: &Shard, node: &str) -> bool {
    link_of(shard).is_some_and(|l| l.borrow().table.has_node(node))
}

/// Sends a request of `kind` about the bare JID `key` to node `node` (its shard 0, which hands it
/// to the home shard of `key`); `on_answer` takes the answer, or `None` after `wait`.
pub fn request(
    shard: &mut Shard,
    node: &str,
    kind: &str,
    key: &str,
    body: Vec<u8>,
    wait: Duration,
    on_answer: OnAnswer,
) -> Result<(), RpcError> {
    let link = link_of(shard).ok_or(RpcError::NoCluster)?;
    let subject = format!("{}.n.{node}.0", link.borrow().node.prefix);
    let rec = Record::Module {
        kind: kind.to_owned(),
        key: key.to_owned(),
        body,
    };
    publish(shard, &link, &subject, &rec, Some((wait, on_answer)))
}

/// Answers a request (or an answer) at `to`; with `expect`, the other side's answer to this one
/// goes to its callback (or `None` after the wait).
pub fn answer(
    shard: &mut Shard,
    to: &str,
    body: Vec<u8>,
    expect: Option<(Duration, OnAnswer)>,
) -> Result<(), RpcError> {
    let link = link_of(shard).ok_or(RpcError::NoCluster)?;
    let rec = Record::Module {
        kind: String::new(),
        key: String::new(),
        body,
    };
    publish(shard, &link, to, &rec, expect)
}

/// Publishes `rec`; on an error, `expect`'s callback takes `None` at once.
fn publish(
    shard: &mut Shard,
    link: &LinkRc,
    subject: &str,
    rec: &Record,
    expect: Option<(Duration, OnAnswer)>,
) -> Result<(), RpcError> {
    match try_publish(shard, link, subject, rec, expect) {
        Ok(()) => Ok(()),
        Err((e, f)) => {
            if let Some(f) = f {
                f(shard, None);
            }
            Err(e)
        }
    }
}

type Failed = (RpcError, Option<OnAnswer>);

/// Why a payload of `len` bytes would not be published now (`expect`: with an answer awaited).
fn room(shard: &mut Shard, link: &LinkRc, len: usize, expect: bool) -> Result<(), RpcError> {
    if len > MAX_BODY {
        return Err(RpcError::TooLarge);
    }
    let waiting = shard.ext.get_or_default::<Rpc>().pending.len();
    let l = link.borrow();
    // The same bound `NatsCore::publish` applies.
    let output_full = l.nats.output_len() + len > super::link::OUTPUT_LIMIT;
    if (expect && waiting >= MAX_PENDING) || !l.connected || output_full {
        return Err(RpcError::Busy);
    }
    Ok(())
}

/// Checks that an answer with a body of `body_len` bytes, awaiting an answer, would be published
/// now: [`answer`] then cannot fail in the same turn of the shard.
pub fn can_answer(shard: &mut Shard, body_len: usize) -> Result<(), RpcError> {
    let link = link_of(shard).ok_or(RpcError::NoCluster)?;
    // The record's own fields: "M", an empty kind and an empty key, each with its newline.
    room(shard, &link, body_len + 4, true)
}

fn try_publish(
    shard: &mut Shard,
    link: &LinkRc,
    subject: &str,
    rec: &Record,
    expect: Option<(Duration, OnAnswer)>,
) -> Result<(), Failed> {
    let give_back = |e, expect: Option<(Duration, OnAnswer)>| (e, expect.map(|(_, f)| f));
    let payload = rec.encode();
    if let Err(e) = room(shard, link, payload.len(), expect.is_some()) {
        return Err(give_back(e, expect));
    }
    let rpc = shard.ext.get_or_default::<Rpc>();
    let mut l = link.borrow_mut();
    let reply = expect
        .as_ref()
        .map(|_| format!("{}.q.{}", l.inbox, rpc.next));
    if l.nats.publish(subject, reply.as_deref(), &payload).is_err() {
        return Err(give_back(RpcError::Busy, expect));
    }
    l.wake();
    if let Some((wait, on_answer)) = expect {
        let id = rpc.next;
        rpc.next += 1;
        rpc.pending.insert(id, (Instant::now() + wait, on_answer));
    }
    Ok(())
}

/// The id of an answer's subject `INBOX.q.ID`.
pub(super) fn answer_id(inbox: &str, subject: &str) -> Option<u64> {
    subject
        .strip_prefix(inbox)?
        .strip_prefix(".q.")?
        .parse()
        .ok()
}

/// An answer (or NATS's return of our request: `status` 503) reached this shard's inbox.
pub(super) fn on_answer(shard: &mut Shard, id: u64, rec: Option<Record>, reply: Option<String>) {
    let Some((_, f)) = shard.ext.get_or_default::<Rpc>().pending.remove(&id) else {
        // Too late (given up already): the other side gets no answer to its answer and acts on
        // that (see the module's protocol).
        return;
    };
    let answer = match rec {
        Some(Record::Module { body, .. }) => Some(Answer { body, reply }),
        _ => None,
    };
    f(shard, answer);
}

/// A request from another node (on the shard it was published to): to the home shard of its key.
pub(super) fn on_request(shard: &mut Shard, rec: Record, reply: Option<String>) {
    let Record::Module { kind, key, body } = rec else {
        return;
    };
    let home = home_shard_of(&key, shard.shards);
    crate::sm::run_on(
        shard,
        home,
        Box::new(move |s| {
            let handler = s
                .ext
                .get_or_default::<Rpc>()
                .handlers
                .get(kind.as_str())
                .cloned();
            match (handler, reply) {
                (Some(h), reply) => h(s, Request { key, body, reply }),
                // The module is off here: an empty answer, which no module takes for a yes, spares
                // the asker its wait.
                (None, Some(reply)) => {
                    tracing::debug!(kind, "cluster: request of a kind not handled here");
                    let _ = answer(s, &reply, Vec::new(), None);
                }
                (None, None) => {}
            }
        }),
    );
}

/// Gives up on the requests whose wait is over (their callbacks take `None`).
pub fn expire(shard: &mut Shard, now: Instant) {
    let Some(rpc) = shard.ext.get_mut::<Rpc>() else {
        return;
    };
    if rpc.pending.is_empty() {
        return;
    }
    let over: Vec<u64> = rpc
        .pending
        .iter()
        .filter(|(_, (at, _))| *at <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in over {
        if let Some((_, f)) = shard.ext.get_or_default::<Rpc>().pending.remove(&id) {
            f(shard, None);
        }
    }
    shard.drain_to_route();
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::cluster::link::{on_msg, test_shard};
    use crate::cluster::nats::Msg;
    use crate::cluster::sid;

    fn shard_and_link(name: &str) -> (Shard, LinkRc) {
        let (shard, link) = test_shard(name);
        link.borrow_mut().reset();
        link.borrow_mut().connected = true;
        link.borrow_mut().nats.take_output();
        (shard, link)
    }

    fn output(link: &LinkRc) -> String {
        String::from_utf8_lossy(&link.borrow_mut().nats.take_output()).into_owned()
    }

    type Got = Rc<RefCell<Vec<Option<Vec<u8>>>>>;

    fn recorder(got: &Got) -> OnAnswer {
        let got = got.clone();
        Box::new(move |_, a| got.borrow_mut().push(a.map(|a| a.body)))
    }

    #[test]
    fn a_request_is_handled_on_the_other_node_and_its_answer_taken_once() {
        let (mut a, la) = shard_and_link("a");
        let (mut b, lb) = shard_and_link("b");
        // b answers "pong:" + the request's bytes.
        set_handler(
            &mut b,
            "echo",
            Rc::new(|s: &mut Shard, r: Request| {
                let mut body = b"pong:".to_vec();
                body.extend_from_slice(&r.body);
                assert_eq!(r.key, "alice@localhost");
                answer(s, r.reply.as_deref().unwrap(), body, None).unwrap();
            }),
        );
        let got: Got = Rc::default();
        let wait = Duration::from_secs(5);
        request(
            &mut a,
            "b",
            "echo",
            "alice@localhost",
            b"x\ny".to_vec(),
            wait,
            recorder(&got),
        )
        .unwrap();
        let out = output(&la);
        assert!(
            out.starts_with("PUB petrel.t.n.b.0 petrel.t.r.a.1.0.q.0 "),
            "{out}"
        );
        let payload = Record::Module {
            kind: "echo".into(),
            key: "alice@localhost".into(),
            body: b"x\ny".to_vec(),
        }
        .encode();
        let req = Msg {
            subject: "petrel.t.n.b.0".into(),
            sid: sid::STANZAS,
            reply: Some("petrel.t.r.a.1.0.q.0".into()),
            status: None,
            payload,
        };
        on_msg(&lb, &mut b, req);
        let out = output(&lb);
        assert!(out.starts_with("PUB petrel.t.r.a.1.0.q.0 "), "{out}");
        let answer_payload = Record::Module {
            kind: String::new(),
            key: String::new(),
            body: b"pong:x\ny".to_vec(),
        }
        .encode();
        let ans = |payload: Vec<u8>| Msg {
            subject: "petrel.t.r.a.1.0.q.0".into(),
            sid: sid::INBOX,
            reply: None,
            status: None,
            payload,
        };
        on_msg(&la, &mut a, ans(answer_payload.clone()));
        // A second copy (or a late one) finds no one waiting.
        on_msg(&la, &mut a, ans(answer_payload));
        assert_eq!(*got.borrow(), vec![Some(b"pong:x\ny".to_vec())]);
        // Nothing left to expire.
        expire(&mut a, Instant::now() + Duration::from_secs(60));
        assert_eq!(got.borrow().len(), 1);
    }

    #[test]
    fn a_kind_not_handled_is_answered_empty() {
        let (mut b, lb) = shard_and_link("b");
        let req = Msg {
            subject: "petrel.t.n.b.0".into(),
            sid: sid::STANZAS,
            reply: Some("petrel.t.r.a.1.0.q.7".into()),
            status: None,
            payload: Record::Module {
                kind: "nope".into(),
                key: "alice@localhost".into(),
                body: b"?".to_vec(),
            }
            .encode(),
        };
        on_msg(&lb, &mut b, req);
        let out = output(&lb);
        assert!(
            out.starts_with("PUB petrel.t.r.a.1.0.q.7 4\r\nM\n\n\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn no_answer_in_time_or_a_returned_request_gives_none() {
        let (mut a, la) = shard_and_link("a");
        let got: Got = Rc::default();
        let wait = Duration::from_secs(5);
        for _ in 0..2 {
            request(
                &mut a,
                "b",
                "echo",
                "bob@localhost",
                Vec::new(),
                wait,
                recorder(&got),
            )
            .unwrap();
        }
        // NATS returns the first (no responders).
        let returned = Msg {
            subject: "petrel.t.r.a.1.0.q.0".into(),
            sid: sid::INBOX,
            reply: None,
            status: Some(503),
            payload: Vec::new(),
        };
        on_msg(&la, &mut a, returned);
        assert_eq!(*got.borrow(), vec![None]);
        expire(&mut a, Instant::now());
        assert_eq!(got.borrow().len(), 1, "not yet due");
        expire(&mut a, Instant::now() + wait);
        assert_eq!(*got.borrow(), vec![None, None]);
        // Too large, or disconnected: refused at once.
        let big = vec![b'x'; MAX_BODY + 1];
        let r = request(&mut a, "b", "echo", "", big, wait, recorder(&got));
        assert_eq!(r, Err(RpcError::TooLarge));
        la.borrow_mut().connected = false;
        let r = request(&mut a, "b", "echo", "", Vec::new(), wait, recorder(&got));
        assert_eq!(r, Err(RpcError::Busy));
    }
}
