//! One BOSH session: request ids, held requests, timeouts, and the glue to its `C2s`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::body::Request;
use super::out::{OutItem, Outbound};
use super::wire::{self, Condition, Creation};
use super::BoshConfig;

/// Responses a client that acknowledges (§9.2) may leave unacknowledged, per request it may keep
/// open (`requests`): older ones count as delivered whatever its `ack` says, so what is kept for
/// it stays bounded (each response carries at most `max_queued_bytes`).
const UNACKED_PER_REQUEST: u64 = 4;

/// How long after a response went out a client's `ack` that lacks it counts as a loss worth
/// reporting (§9.2: "if some time has passed since it responded").
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// The driver's handle on one HTTP request waiting for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Something the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer an HTTP request (every request is answered exactly once).
    Respond {
        /// The request answered.
        request_id: RequestId,
        /// The HTTP status.
        status: u16,
        /// The response `<body/>`.
        body: Vec<u8>,
    },
    /// Feed these bytes to the session's `C2s` as input, then hand its output to `c2s_output`.
    FeedC2s(Vec<u8>),
    /// The session is over: close the `C2s` if it is still open and forget the session.
    Terminate,
}

/// A request processed (in rid order) and waiting for data or its `wait`.
#[derive(Debug)]
struct Held {
    rid: u64,
    id: RequestId,
    deadline: Instant,
}

/// One BOSH session, sans-IO: requests and C2s output in, [`Action`]s out.
pub struct BoshSession {
    cfg: Arc<BoshConfig>,
    sid: String,
    domain: String,
    lang: Option<String>,
    wait: Duration,
    hold: usize,
    requests: u64,
    /// The client sent no `ver`: errors use the legacy HTTP codes (§17.2).
    legacy: bool,
    /// The BOSH version answered at creation: the client's or ours, the lower.
    ver: String,
    /// The creation request, answered with the session attributes.
    creation_rid: Option<u64>,
    /// The server's stream id (XEP-0206 `authid`).
    authid: Option<String>,
    /// The next rid to process.
    next_rid: u64,
    /// The highest rid answered: the window is `answered + 1 ..= answered + requests`.
    answered: u64,
    /// Requests that arrived ahead of a gap, processed once it fills (at most `requests`).
    ahead: BTreeMap<u64, (RequestId, Request)>,
    held: VecDeque<Held>,
    /// Elements from the C2s not yet sent, concatenated.
    queue: Vec<u8>,
    /// The last responses by rid, for replay (§14.3): the last `requests`, and with acknowledgements
    /// every one not acknowledged yet.
    sent: VecDeque<(u64, Vec<u8>, Instant)>,
    out: Outbound,
    /// Bytes of C2s output taken so far (`c2s_output`), counted as the C2s counts what it wrote.
    fed: u64,
    /// Answered responses not known to have reached the client: each rid, with the C2s output
    /// offset its payload ends at (only responses that carried new output).
    unconfirmed: VecDeque<(u64, u64)>,
    /// C2s output the client is known to have received (see [`BoshSession::delivered`]).
    delivered: u64,
    /// The client acknowledges responses (`ack` on its creation request, §9.2).
    client_acks: bool,
    /// The highest rid whose response, and every one before it, the client is known to have.
    acked: u64,
    /// A response the client's `ack` says it is missing (rid, milliseconds since it was sent),
    /// told on the next response, which goes at once (§9.2).
    report: Option<(u64, u64)>,
    /// The last rid reported missing.
    reported: u64,
    /// When the session last had no request (the inactivity clock runs from there).
    idle_since: Option<Instant>,
    /// A client `pause` (§12) stretches inactivity to this.
    pause: Option<Duration>,
    /// The session ended on the server side with nobody to tell yet: the next request gets this.
    ending: Option<(Option<Condition>, Vec<u8>, Instant)>,
    terminated: bool,
    /// Set when held requests must be looked at once the C2s has had its input.
    flush_due: bool,
    now: Instant,
    actions: VecDeque<Action>,
}

impl BoshSession {
    /// A new session from its creation request (`req.sid` is `None`). `sid` comes from the driver
    /// (it names the shard). On a request that cannot open a session the error is the response.
    pub fn create(
        cfg: Arc<BoshConfig>,
        sid: String,
        id: RequestId,
        req: Request,
        now: Instant,
    ) -> Result<BoshSession, Action> {
        let legacy = req.ver.is_none();
        let Some(domain) = req.to.clone().filter(|d| !d.is_empty()) else {
            let cond = Condition::ImproperAddressing;
            return Err(Action::Respond {
                request_id: id,
                status: cond.status(legacy),
                body: wire::terminate(Some(cond), &[]),
            });
        };
        let wait = req.wait.map_or(cfg.max_wait, Duration::from_secs);
        let hold = req.hold.unwrap_or(1).min(cfg.max_hold) as usize;
        let mut s = BoshSession {
            sid,
            domain,
            lang: req.lang.clone(),
            wait: wait.min(cfg.max_wait),
            hold,
            requests: hold as u64 + 1,
            legacy,
            ver: wire::session_version(req.ver.as_deref()),
            creation_rid: Some(req.rid),
            authid: None,
            next_rid: req.rid + 1,
            answered: req.rid.saturating_sub(1),
            ahead: BTreeMap::new(),
            held: VecDeque::new(),
            queue: Vec::new(),
            sent: VecDeque::new(),
            out: Outbound::default(),
            fed: 0,
            unconfirmed: VecDeque::new(),
            delivered: 0,
            client_acks: req.ack.is_some(),
            acked: 0,
            report: None,
            reported: 0,
            idle_since: None,
            pause: None,
            ending: None,
            terminated: false,
            flush_due: false,
            now,
            actions: VecDeque::new(),
            cfg,
        };
        let mut input = wire::stream_header(&s.domain, s.lang.as_deref());
        input.extend_from_slice(&req.payload);
        s.actions.push_back(Action::FeedC2s(input));
        s.hold_request(req.rid, id);
        Ok(s)
    }

    /// A request for this session (the driver matched its `sid`).
    pub fn handle_request(&mut self, id: RequestId, req: Request, now: Instant) {
        self.now = now;
        self.take_request(id, req);
        // A request is activity; the inactivity clock runs again whenever none is held (one
        // waiting for an earlier rid that never comes does not keep the session alive).
        self.idle_since = self.held.is_empty().then_some(now);
    }

    fn take_request(&mut self, id: RequestId, req: Request) {
        let rid = req.rid;
        if self.terminated {
            return self.respond_cond(id, Condition::ItemNotFound);
        }
        if let Some((cond, children, _)) = self.ending.take() {
            self.respond(id, wire::terminate(cond, &children));
            return self.end();
        }
        if rid < self.next_rid {
            return self.repeat(id, rid);
        }
        if rid > self.answered + self.requests {
            return self.fail(id, Condition::ItemNotFound);
        }
        if let Some((old, _)) = self.ahead.insert(rid, (id, req)) {
            // The same rid sent again before its turn: the newer connection carries it.
            self.respond(old, wire::body(&[], None));
        }
        while let Some((id, req)) = self.ahead.remove(&self.next_rid) {
            self.process(id, req);
            if self.terminated {
                return;
            }
        }
    }

    /// Output the `C2s` wrote (from `take_transmit`), to be sent on held requests.
    pub fn c2s_output(&mut self, bytes: &[u8], now: Instant) {
        self.now = now;
        // Ending already (a stream error waits for the next request): nothing may replace it.
        if self.terminated || self.ending.is_some() || bytes.is_empty() {
            return;
        }
        self.fed += bytes.len() as u64;
        let mut items = Vec::new();
        self.out.feed(bytes, &mut self.queue, &mut items);
        for item in items {
            match item {
                OutItem::Header(id) => self.authid = id,
                OutItem::StreamError(e) => {
                    self.queue.extend_from_slice(&e);
                    return self.end_by_server(Some(Condition::RemoteStreamError));
                }
                OutItem::Close => return self.end_by_server(None),
            }
        }
        self.flush_due = true;
    }

    /// The `C2s` closed (its `Closed` event), whatever it wrote last.
    pub fn c2s_closed(&mut self, now: Instant) {
        self.now = now;
        if !self.terminated && self.ending.is_none() {
            self.end_by_server(None);
        }
    }

    /// The server ends the session (shutdown, replaced): held requests get `cond`.
    pub fn close(&mut self, cond: Option<Condition>, now: Instant) {
        self.now = now;
        if !self.terminated {
            self.end_by_server(cond);
        }
    }

    /// The next action; held requests over `hold` are answered once earlier actions are done.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() && self.flush_due {
            self.flush_due = false;
            self.flush();
        }
        self.actions.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.terminated {
            return None;
        }
        if let Some((_, _, deadline)) = &self.ending {
            return Some(*deadline);
        }
        let held = self.held.iter().map(|h| h.deadline).min();
        let idle = self.idle_since.map(|t| t + self.idle_limit());
        held.into_iter().chain(idle).min()
    }

    /// Fires what is due: held requests past `wait` are answered empty; a session without
    /// requests for `inactivity` (or its `pause`) ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.terminated {
            return;
        }
        if self.ending.as_ref().is_some_and(|(_, _, d)| now >= *d) {
            self.ending = None;
            return self.end();
        }
        while self.held.front().is_some_and(|h| now >= h.deadline) {
            self.answer_oldest();
        }
        if self
            .idle_since
            .is_some_and(|t| now >= t + self.idle_limit())
        {
            self.end();
        }
    }

    /// Bytes of C2s output waiting for a request: the driver takes no more output from the C2s
    /// past [`BoshConfig::max_queued_bytes`], leaving the C2s's own bound to act on a slow client.
    pub fn queued_bytes(&self) -> usize {
        self.queue.len()
    }

    /// How many bytes of the C2s's output (counted from the first `c2s_output`, as the C2s counts
    /// what it wrote) the client is known to have received. A response counts once the client
    /// acknowledged it (`ack`, §9.2), or, from a client that does not acknowledge, once a request
    /// so far past it arrived that it can no longer be asked for again (its rid left the window of
    /// `requests`). The rest of the output (in
    /// responses not acknowledged, queued, or left on a session that ended) is not delivered: the
    /// C2s hands the stanzas in it back to the session manager when its stream ends.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The session is over (after [`Action::Terminate`]).
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    // ---- requests ----

    /// A rid already processed: the held request takes the new connection, an answered one is
    /// replayed (§14.3), an older one is lost.
    fn repeat(&mut self, id: RequestId, rid: u64) {
        if let Some(h) = self.held.iter_mut().find(|h| h.rid == rid) {
            // §14.3: the new connection takes the request over; the old one is told at once with
            // a recoverable error (the client may already have given up on it).
            let old = std::mem::replace(&mut h.id, id);
            self.respond(old, wire::recoverable());
            return;
        }
        match self.sent.iter().find(|(r, _, _)| *r == rid) {
            Some((_, body, _)) => {
                let body = body.clone();
                self.respond(id, body);
            }
            None => self.fail(id, Condition::ItemNotFound),
        }
    }

    /// Handles the request whose turn it is.
    fn process(&mut self, id: RequestId, req: Request) {
        self.next_rid = req.rid + 1;
        self.confirm(req.rid, req.ack);
        self.check_missing(req.ack);
        if let Some(p) = req.pause.filter(|_| self.cfg.max_pause.is_some()) {
            // §10: its stanzas go to the server like any request's (only its answer carries
            // none, §12). §12: answer everything now; the session then lives without requests for
            // `pause`.
            if !req.payload.is_empty() {
                self.actions.push_back(Action::FeedC2s(req.payload));
            }
            let max = self.cfg.max_pause.unwrap_or_default();
            self.pause = Some(Duration::from_secs(p).min(max));
            self.respond(id, wire::body(&[], None));
            self.answered = self.answered.max(req.rid);
            while !self.held.is_empty() {
                self.answer_oldest();
            }
            return;
        }
        self.pause = None;
        if req.terminate {
            let mut input = req.payload;
            input.extend_from_slice(b"</stream:stream>");
            self.actions.push_back(Action::FeedC2s(input));
            // §13: the answer is an empty terminate body (clients end their stream on it, and
            // StanzaJS threw on stanzas inside). What was queued for the client is not delivered:
            // the C2s hands those stanzas back to the session manager as its stream ends.
            self.queue.clear();
            self.respond(id, wire::terminate(None, &[]));
            return self.end();
        }
        if req.restart {
            let mut input = wire::stream_header(&self.domain, self.lang.as_deref());
            input.extend_from_slice(&req.payload);
            self.actions.push_back(Action::FeedC2s(input));
        } else if !req.payload.is_empty() {
            self.actions.push_back(Action::FeedC2s(req.payload));
        }
        self.hold_request(req.rid, id);
    }

    fn hold_request(&mut self, rid: u64, id: RequestId) {
        self.held.push_back(Held {
            rid,
            id,
            deadline: self.now + self.wait,
        });
        self.flush_due = true;
    }

    /// Sends queued output (or a report) on the oldest held request, then answers the oldest ones
    /// over `hold`.
    fn flush(&mut self) {
        if (!self.queue.is_empty() || self.report.is_some()) && !self.held.is_empty() {
            self.answer_oldest();
        }
        while self.held.len() > self.hold && !self.creation_waits() {
            self.answer_oldest();
        }
    }

    /// The creation response waits for the server's first header and features (XEP-0206 §5),
    /// even for a client that holds nothing (`hold='0'`); `wait` still bounds it.
    fn creation_waits(&self) -> bool {
        self.authid.is_none() && self.held.front().map(|h| h.rid) == self.creation_rid
    }

    /// Answers the oldest held request with whatever is queued.
    fn answer_oldest(&mut self) {
        let Some(h) = self.held.pop_front() else {
            return;
        };
        let creation = (self.creation_rid == Some(h.rid)).then(|| Creation {
            sid: &self.sid,
            wait: self.wait.as_secs(),
            hold: self.hold as u32,
            requests: self.requests,
            inactivity: self.cfg.inactivity.as_secs(),
            polling: self.cfg.polling.as_secs(),
            maxpause: self.cfg.max_pause.map(|d| d.as_secs()),
            from: &self.domain,
            authid: self.authid.as_deref(),
            ver: &self.ver,
        });
        let body = wire::body_reporting(&self.queue, creation.as_ref(), self.report.take());
        if creation.is_some() {
            self.creation_rid = None;
        }
        let end = self.queue_end();
        if end > self.unconfirmed.back().map_or(self.delivered, |u| u.1) {
            self.unconfirmed.push_back((h.rid, end));
        }
        self.queue.clear();
        if self.queue.capacity() > 64 * 1024 {
            // An idle session keeps no burst-sized buffer.
            self.queue = Vec::new();
        }
        self.answered = self.answered.max(h.rid);
        // A client that acknowledges gets every response it has not acknowledged again if it asks
        // (§14.3; at most 4 x `requests` of them, see `confirm`), one that does not the last
        // `requests`.
        while self.sent.len() as u64 >= self.requests
            && self
                .sent
                .front()
                .is_some_and(|(r, _, _)| !self.client_acks || *r <= self.acked)
        {
            self.sent.pop_front();
        }
        self.sent.push_back((h.rid, body.clone(), self.now));
        self.respond(h.id, body);
        if self.held.is_empty() {
            self.idle_since = Some(self.now);
        }
    }

    /// The C2s output offset where the queued elements end (an element still cut by a read is not
    /// queued yet).
    fn queue_end(&self) -> u64 {
        self.fed - self.out.pending() as u64
    }

    /// Request `rid` (with `ack`) is processed: the responses it shows the client received count
    /// as delivered. With acknowledgements, `ack` names the last response received with all before
    /// it, and a request without one received everything before it (§9.2). Without, a response
    /// whose rid is `requests` or more behind can no longer be asked for again (§14.3).
    fn confirm(&mut self, rid: u64, ack: Option<u64>) {
        let through = if self.client_acks {
            // A client whose `ack` stays behind (a bug, or a response it never asks for again)
            // does not keep its stanzas, and their replays, for ever: past a wider window they
            // count as delivered, as without acknowledgements.
            let floor = rid.saturating_sub(UNACKED_PER_REQUEST * self.requests);
            ack.unwrap_or(rid.saturating_sub(1)).max(floor)
        } else {
            rid.saturating_sub(self.requests)
        };
        self.acked = self.acked.max(through);
        while let Some(&(r, end)) = self.unconfirmed.front() {
            if r > through {
                break;
            }
            self.delivered = end;
            self.unconfirmed.pop_front();
        }
    }

    /// The client acknowledged up to `ack` while a later response went out a while ago: it is
    /// probably lost, and the next response says so (`report`, `time`), so the client can ask for
    /// it again. A response sent under [`REPORT_AFTER`] ago may still be on its way.
    fn check_missing(&mut self, ack: Option<u64>) {
        let Some(ack) = ack.filter(|a| self.client_acks && *a < self.answered) else {
            return;
        };
        let missing = ack + 1;
        if missing <= self.reported {
            // Told once: a client that does not ask again is not answered early at every request.
            return;
        }
        if let Some((_, _, at)) = self.sent.iter().find(|(r, _, _)| *r == missing) {
            let ago = self.now.saturating_duration_since(*at);
            if ago >= REPORT_AFTER {
                self.reported = missing;
                self.report = Some((missing, ago.as_millis() as u64));
            }
        }
    }

    // ---- ending ----

    /// A request naming this session did not parse (a terminal binding condition, XEP-0124 §17.2):
    /// it and every waiting request get `cond`, and the session ends.
    pub fn broken_request(&mut self, id: RequestId, cond: Condition, now: Instant) {
        self.now = now;
        if self.terminated {
            return self.respond_cond(id, Condition::ItemNotFound);
        }
        self.fail(id, cond);
    }

    /// The session ends on a client error: this request and every waiting one get `cond`.
    fn fail(&mut self, id: RequestId, cond: Condition) {
        self.respond_cond(id, cond);
        self.terminate_waiting(Some(cond));
        self.end();
    }

    /// The C2s ended the stream: held requests carry the end (with what is queued); with none
    /// held, the next request does, or nobody after `wait`.
    fn end_by_server(&mut self, cond: Option<Condition>) {
        let children = std::mem::take(&mut self.queue);
        if self.held.is_empty() {
            let deadline = self.now + self.wait;
            self.ending = Some((cond, children, deadline));
            self.flush_due = false;
            return;
        }
        if let Some(h) = self.held.pop_front() {
            let status = cond.map_or(200, |c| c.status(self.legacy));
            self.actions.push_back(Action::Respond {
                request_id: h.id,
                status,
                body: wire::terminate(cond, &children),
            });
        }
        self.terminate_waiting(cond);
        self.end();
    }

    /// Answers every held and early request with a terminate body.
    fn terminate_waiting(&mut self, cond: Option<Condition>) {
        let ids: Vec<RequestId> = self
            .held
            .drain(..)
            .map(|h| h.id)
            .chain(
                std::mem::take(&mut self.ahead)
                    .into_values()
                    .map(|(id, _)| id),
            )
            .collect();
        for id in ids {
            match cond {
                Some(c) => self.respond_cond(id, c),
                None => self.respond(id, wire::terminate(None, &[])),
            }
        }
    }

    fn end(&mut self) {
        if self.terminated {
            return;
        }
        self.terminate_waiting(None);
        self.terminated = true;
        self.queue = Vec::new();
        self.sent.clear();
        self.unconfirmed = VecDeque::new();
        self.actions.push_back(Action::Terminate);
    }

    fn respond(&mut self, id: RequestId, body: Vec<u8>) {
        self.actions.push_back(Action::Respond {
            request_id: id,
            status: 200,
            body,
        });
    }

    fn respond_cond(&mut self, id: RequestId, cond: Condition) {
        self.actions.push_back(Action::Respond {
            request_id: id,
            status: cond.status(self.legacy),
            body: wire::terminate(Some(cond), &[]),
        });
    }

    fn idle_limit(&self) -> Duration {
        self.pause.unwrap_or(self.cfg.inactivity)
    }
}
