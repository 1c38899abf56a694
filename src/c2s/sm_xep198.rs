//! XEP-0198 stream management, sans-IO: the counters, the buffer of unacknowledged stanzas, and the
//! stream's handling of `<enable/>`, `<r/>`, `<a/>`, `<resume/>`.
//!
//! Counting (XEP-0198 §4): `h_in` counts the stanzas (message, presence, iq) the client sent since
//! `<enable/>`; `h_out` counts the stanzas written to the client since `<enable/>`, whoever generated
//! them (routed stanzas, the stream's own IQ replies and pings). Both wrap at 2^32. Every stanza
//! written is kept in the buffer until the client's `<a h=.../>` covers it; the buffer holds exactly
//! `h_out - acked` (mod 2^32) entries, so an `h` beyond that is "handled-count-too-high".
//!
//! Inbound acknowledgements wait for the stanza's fate (`hooks::handled`): `h_in` counts what was
//! received, [`SmState::h_handled`] what was handled (delivered, stored, answered), and `<a h/>`
//! reports the latter. An `<r/>` is answered once every stanza received before it is handled, or
//! after `ACK_WAIT` with what is handled by then.
//!
//! The state is a plain value ([`SmState`]): when the connection drops, the driver takes it out of the
//! stream ([`C2s::take_sm`]) and keeps it (detached session), or moves it to the connection that
//! resumes the session ([`C2s::resumed`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::stream::{random_token, Auth, C2s, Wait};
use super::{reply, C2sEvent, CloseReason};
use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::xml::escape::escape_attr_into;
use crate::xml::Stanza;
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

/// The XEP-0198 namespace (version 3).
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Stream management settings (`[modules.stream_management]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmConfig {
    /// Unacknowledged stanzas kept per session; one more closes the stream with policy-violation
    /// (a detached session past it is ended at once, its stanzas re-routed).
    pub buffer_max: usize,
    /// The server asks for an ack (`<r/>`) after this many stanzas (and when the buffer is half full).
    pub ack_freq: u32,
    /// How long a resumable session whose connection dropped waits for `<resume/>` (zero: never
    /// resumable).
    pub resume_timeout: Duration,
    /// Resumption ids start with this and a `.` (a cluster's node name: the node that holds the
    /// session); `None` on a single node.
    pub id_prefix: Option<&'static str>,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig {
            buffer_max: 500,
            ack_freq: 10,
            resume_timeout: Duration::from_secs(600),
            id_prefix: None,
        }
    }
}

/// How long an `<r/>` waits for the stanzas before it to be handled; then it is answered with the
/// `h` handled so far (the client sends the rest again if the session is lost).
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// After this long an acknowledgement still missing is taken as lost (a store job that died), and
/// the stanzas before the `<r/>` count as handled, so `h` does not stay stuck for the session's life.
pub const ACK_GIVE_UP: Duration = Duration::from_secs(120);
/// `<r/>` requests that may wait at once; one more is answered at once with the `h` handled so far.
const MAX_WAITING_REQUESTS: usize = 8;
/// How long a close asked with [`C2s::close_when_handled`] waits for the client's stanzas still on
/// their way (a server shutdown gives its connections a few seconds in all).
pub const CLOSE_ACK_WAIT: Duration = Duration::from_secs(2);

/// A stanza written to the client and not acknowledged yet.
#[derive(Debug)]
pub enum Unacked {
    /// A stanza that came over the route: re-routed if the session ends without an ack for it.
    Routed(Acc),
    /// A stanza the stream wrote itself (IQ replies, pings): only resent on resumption.
    Local(Vec<u8>),
}

impl Unacked {
    /// The bytes written to the client.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Unacked::Routed(acc) => acc.stanza.bytes(),
            Unacked::Local(b) => b,
        }
    }
}

/// A stream management violation by the client or a limit reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmError {
    /// `<a h/>` acknowledges stanzas that were never sent (XEP-0198 §4).
    #[error("handled count {h} is higher than the {sent} stanzas sent")]
    HandledCountTooHigh {
        /// The client's `h`.
        h: u32,
        /// The server's count of stanzas sent.
        sent: u32,
    },
    /// The buffer of unacknowledged stanzas is at `buffer_max`.
    #[error("too many unacknowledged stanzas")]
    BufferFull,
}

/// Counters and unacknowledged stanzas of one stream-managed session.
#[derive(Debug)]
pub struct SmState {
    /// The resumption id (`Some` when `<enable resume='true'/>` was accepted).
    pub id: Option<String>,
    cfg: SmConfig,
    h_in: u32,
    h_out: u32,
    acked: u32,
    buffer: VecDeque<Unacked>,
    since_request: u32,
    request_pending: bool,
    /// Inbound stanzas not all handled yet: `window[i]` is stanza `handled + 1 + i`, true once
    /// handled (acknowledgements come back in any order).
    window: VecDeque<bool>,
    /// Inbound stanzas handled, counted from the start without a gap (the `h` we report).
    handled: u32,
    /// `<r/>` requests waiting: the `h_in` each must see handled, and when it came.
    requests: VecDeque<(u32, Instant)>,
    /// A request answered before its stanzas were handled: (its target, when it came), to give up
    /// on them after `ACK_GIVE_UP`.
    overdue: Option<(u32, Instant)>,
    /// A close waiting for the inbound stanzas on their way: its condition and how long it waits
    /// (see [`C2s::close_when_handled`]).
    close_after: Option<(StreamErrorCondition, Instant)>,
}

impl SmState {
    /// Fresh counters (after `<enable/>`).
    pub fn new(cfg: SmConfig, id: Option<String>) -> SmState {
        Self::with_counters(cfg, id, 0, 0)
    }

    /// State with given counters (tests of the 2^32 wrap).
    pub fn with_counters(cfg: SmConfig, id: Option<String>, h_in: u32, h_out: u32) -> SmState {
        SmState {
            id,
            cfg,
            h_in,
            h_out,
            acked: h_out,
            buffer: VecDeque::new(),
            since_request: 0,
            request_pending: false,
            window: VecDeque::new(),
            handled: h_in,
            requests: VecDeque::new(),
            overdue: None,
            close_after: None,
        }
    }

    /// Stanzas received from the client (mod 2^32).
    pub fn h_in(&self) -> u32 {
        self.h_in
    }

    /// Stanzas sent to the client (mod 2^32).
    pub fn h_out(&self) -> u32 {
        self.h_out
    }

    /// The last `h` the client acknowledged.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Number of unacknowledged stanzas.
    pub fn unacked_len(&self) -> usize {
        self.buffer.len()
    }

    /// The settings this state runs with.
    pub fn config(&self) -> SmConfig {
        self.cfg
    }

    /// Counts one stanza from the client; returns its number (the `seq` of its [`crate::hooks::Handled`]).
    pub fn inbound(&mut self) -> u32 {
        self.h_in = self.h_in.wrapping_add(1);
        self.window.push_back(false);
        self.h_in
    }

    /// Inbound stanzas handled without a gap: the `h` to report.
    pub fn h_handled(&self) -> u32 {
        self.handled
    }

    /// Stanza `seq` from the client is handled.
    pub fn handle(&mut self, seq: u32) {
        let offset = seq.wrapping_sub(self.handled).wrapping_sub(1) as usize;
        if let Some(slot) = self.window.get_mut(offset) {
            *slot = true;
        }
        while self.window.front() == Some(&true) {
            self.window.pop_front();
            self.handled = self.handled.wrapping_add(1);
        }
        if self.window.is_empty() && self.window.capacity() > 16 {
            self.window = VecDeque::new();
        }
    }

    /// True when every inbound stanza counted so far is handled.
    pub fn all_handled(&self) -> bool {
        self.covers(self.h_in)
    }

    /// True when `target` (an `h_in` value) is handled.
    fn covers(&self, target: u32) -> bool {
        (target.wrapping_sub(self.handled) as i32) <= 0
    }

    /// An `<r/>` from the client at `now`: `Some(h)` to answer at once, `None` when it waits for
    /// stanzas still on their way ([`SmState::answers`] gives its answer later).
    pub fn request(&mut self, now: Instant) -> Option<u32> {
        if self.covers(self.h_in) || self.requests.len() >= MAX_WAITING_REQUESTS {
            return Some(self.handled);
        }
        self.requests.push_back((self.h_in, now));
        None
    }

    /// The `h` of every waiting `<r/>` that can be answered at `now`: its stanzas are handled, or it
    /// waited `ACK_WAIT`. Gives up on acknowledgements missing for `ACK_GIVE_UP`.
    pub fn answers(&mut self, now: Instant) -> Vec<u32> {
        if let Some((target, since)) = self.overdue {
            if self.covers(target) {
                self.overdue = None;
            } else if now.saturating_duration_since(since) >= ACK_GIVE_UP {
                // Acknowledgements that never came (a store job lost): count them, h moves on.
                while !self.covers(target) && self.window.pop_front().is_some() {
                    self.handled = self.handled.wrapping_add(1);
                }
                // Stanzas after the target that were handled meanwhile count too.
                while self.window.front() == Some(&true) {
                    self.window.pop_front();
                    self.handled = self.handled.wrapping_add(1);
                }
                self.overdue = None;
            }
        }
        let mut out = Vec::new();
        while let Some(&(target, since)) = self.requests.front() {
            let done = self.covers(target);
            if !done && now.saturating_duration_since(since) < ACK_WAIT {
                break;
            }
            if !done && self.overdue.is_none() {
                self.overdue = Some((target, since));
            }
            self.requests.pop_front();
            out.push(self.handled);
        }
        out
    }

    /// When [`SmState::answers`] (or a waiting close) must be asked again.
    pub fn next_deadline(&self) -> Option<Instant> {
        let wait = self.requests.front().map(|(_, t)| *t + ACK_WAIT);
        let give_up = self.overdue.map(|(_, t)| t + ACK_GIVE_UP);
        let close = self.close_after.map(|(_, t)| t);
        wait.into_iter().chain(give_up).chain(close).min()
    }

    /// True when an unacknowledged stanza carries a sender's acknowledgement (the sender waits for
    /// our client's ack) and no request of ours is out: time to ask.
    pub fn ack_wanted(&mut self) -> bool {
        if self.request_pending {
            return false;
        }
        let wanted = self.buffer.iter().any(|u| {
            matches!(u, Unacked::Routed(acc)
                    if acc.handled.is_some() || acc.get(crate::hooks::ACK_WANTED).is_some())
        });
        wanted && self.ask()
    }

    /// True when the buffer of unacknowledged stanzas is at `buffer_max`: what is routed to the
    /// client waits for its `<a/>`.
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= self.cfg.buffer_max
    }

    /// Keeps a stanza the stream had queued, not written, when its connection went: it goes out
    /// on resumption. Past `buffer_max` if need be: the stream took it within its output bound,
    /// and handing it back would reach this parked session again and end it.
    pub fn keep_unsent(&mut self, item: Unacked) {
        self.buffer.push_back(item);
        self.h_out = self.h_out.wrapping_add(1);
    }

    /// Asks for an ack unless one is asked already: true when `<r/>` is to be written.
    pub fn ask(&mut self) -> bool {
        if self.request_pending {
            return false;
        }
        self.request_pending = true;
        self.since_request = 0;
        true
    }

    /// Counts and keeps one stanza sent to the client. `Ok(true)` when an ack should be requested
    /// now; a full buffer hands the stanza back.
    pub fn outbound(&mut self, item: Unacked) -> Result<bool, (SmError, Unacked)> {
        if self.is_full() {
            return Err((SmError::BufferFull, item));
        }
        self.buffer.push_back(item);
        self.h_out = self.h_out.wrapping_add(1);
        self.since_request = self.since_request.saturating_add(1);
        let half_full = self.buffer.len() * 2 >= self.cfg.buffer_max;
        let due = self.since_request >= self.cfg.ack_freq.max(1) || half_full;
        Ok(due && self.ask())
    }

    /// Checks the client's `h` as [`SmState::ack`] does, without applying it: the stanzas it covers.
    pub fn check_ack(&self, h: u32) -> Result<usize, SmError> {
        let n = h.wrapping_sub(self.acked) as usize;
        if n > self.buffer.len() {
            return Err(SmError::HandledCountTooHigh {
                h,
                sent: self.h_out,
            });
        }
        Ok(n)
    }

    /// Applies the client's `h`: drops the stanzas it covers (returned, oldest first).
    pub fn ack(&mut self, h: u32) -> Result<usize, SmError> {
        let n = self.check_ack(h)?;
        self.buffer.drain(..n);
        self.acked = h;
        self.request_pending = false;
        // Only stanzas still unacknowledged count towards the next request.
        self.since_request = self.since_request.min(self.buffer.len() as u32);
        Ok(n)
    }

    /// The unacknowledged stanzas, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Unacked> {
        self.buffer.iter()
    }

    /// The unacknowledged stanzas, oldest first, to annotate (their bytes are already written).
    pub fn unacked_mut(&mut self) -> impl Iterator<Item = &mut Unacked> {
        self.buffer.iter_mut()
    }

    /// Takes the unacknowledged stanzas (the session ends: the caller re-routes them).
    pub fn take_unacked(&mut self) -> Vec<Unacked> {
        self.buffer.drain(..).collect()
    }
}

/// Why a `<resume/>` failed (sent as `<failed/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// Unknown, expired, already resumed, or another user's id.
    ItemNotFound,
    /// The client's `h` acknowledges more than the old session sent.
    HandledCountTooHigh {
        /// The client's `h`.
        h: u32,
        /// What the old session sent.
        sent: u32,
    },
}

/// Appends `<a xmlns='urn:xmpp:sm:3' h='H'/>`.
fn write_a(out: &mut Vec<u8>, h: u32) {
    out.extend_from_slice(format!("<a xmlns='{NS_SM}' h='{h}'/>").as_bytes());
}

/// Appends `<r xmlns='urn:xmpp:sm:3'/>`.
pub(super) fn write_r(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<r xmlns='urn:xmpp:sm:3'/>");
}

/// Appends `<failed xmlns='urn:xmpp:sm:3' [h]><COND xmlns=stanzas/>[extra]</failed>`.
fn write_failed(out: &mut Vec<u8>, h: Option<u32>, cond: StanzaErrorCondition, extra: &[u8]) {
    out.extend_from_slice(b"<failed xmlns='urn:xmpp:sm:3'");
    if let Some(h) = h {
        out.extend_from_slice(format!(" h='{h}'").as_bytes());
    }
    out.extend_from_slice(b"><");
    out.extend_from_slice(cond.as_str().as_bytes());
    out.extend_from_slice(b" xmlns='");
    out.extend_from_slice(ns::STANZAS.as_bytes());
    out.extend_from_slice(b"'/>");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"</failed>");
}

/// An `h` attribute: a decimal u32.
fn parse_h(s: &Stanza) -> Option<u32> {
    s.attr("h").and_then(|h| h.trim().parse::<u32>().ok())
}

impl C2s {
    /// Stream management is configured for this stream.
    pub(super) fn sm_offered(&self) -> bool {
        self.cfg.sm.is_some()
    }

    /// A top-level element in the XEP-0198 namespace from an authenticated client.
    pub(super) fn on_sm(&mut self, s: &Stanza) {
        let Some(cfg) = self.cfg.sm else {
            return self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
        };
        match s.name() {
            "enable" => self.on_enable(s, cfg),
            "r" => match self.sm.as_mut() {
                Some(sm) => {
                    if let Some(h) = sm.request(self.last_input) {
                        write_a(&mut self.out, h);
                    }
                }
                None => write_failed(
                    &mut self.out,
                    None,
                    StanzaErrorCondition::UnexpectedRequest,
                    b"",
                ),
            },
            "a" => self.on_ack(s),
            "resume" => self.on_resume(s),
            _ => self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None),
        }
    }

    fn on_enable(&mut self, s: &Stanza, cfg: SmConfig) {
        let bound = matches!(self.auth, Auth::Bound(_));
        if !bound || self.sm.is_some() {
            // XEP-0198 §3: enable comes after binding, once.
            return write_failed(
                &mut self.out,
                None,
                StanzaErrorCondition::UnexpectedRequest,
                b"",
            );
        }
        let wants_resume = matches!(s.attr("resume").as_deref(), Some("true") | Some("1"));
        let mut cfg = cfg;
        // §3: the client's preferred maximum resumption time; the server's bounds it.
        if let Some(max) = s.attr("max").and_then(|m| m.trim().parse::<u64>().ok()) {
            if max > 0 {
                cfg.resume_timeout = cfg.resume_timeout.min(Duration::from_secs(max));
            }
        }
        self.enable_sm(wants_resume, cfg);
    }

    /// Switches stream management on for the bound stream and writes `<enabled/>` (a top-level
    /// `<enable/>`, or one inside a Bind 2 request).
    pub(super) fn enable_sm(&mut self, wants_resume: bool, cfg: SmConfig) {
        let id = if wants_resume && !cfg.resume_timeout.is_zero() {
            match random_token() {
                Ok(t) => {
                    let t2 = random_token().unwrap_or_default();
                    Some(match cfg.id_prefix {
                        Some(p) => format!("{p}.{t}{t2}"),
                        None => format!("{t}{t2}"),
                    })
                }
                Err(_) => None,
            }
        } else {
            None
        };
        self.out
            .extend_from_slice(b"<enabled xmlns='urn:xmpp:sm:3'");
        if let Some(id) = &id {
            self.out.extend_from_slice(b" id='");
            escape_attr_into(id, &mut self.out);
            self.out.extend_from_slice(
                format!("' resume='true' max='{}'", cfg.resume_timeout.as_secs()).as_bytes(),
            );
        }
        self.out.extend_from_slice(b"/>");
        self.events
            .push_back(C2sEvent::SmEnabled { id: id.clone() });
        self.sm = Some(Box::new(SmState::new(cfg, id)));
    }

    fn on_ack(&mut self, s: &Stanza) {
        let Some(sm) = self.sm.as_mut() else {
            return write_failed(
                &mut self.out,
                None,
                StanzaErrorCondition::UnexpectedRequest,
                b"",
            );
        };
        let Some(h) = parse_h(s) else {
            return self.stream_error(StreamErrorCondition::BadFormat, Some("bad h"));
        };
        if let Err(SmError::HandledCountTooHigh { h, sent }) = sm.ack(h) {
            self.handled_count_too_high(h, sent);
        }
    }

    /// XEP-0198 §4: an `h` beyond what was sent closes the stream with undefined-condition and
    /// the application condition `<handled-count-too-high/>`.
    fn handled_count_too_high(&mut self, h: u32, sent: u32) {
        // The last `<a/>` first, as every other close writes it.
        self.write_last_ack();
        self.out.extend_from_slice(
            format!(
                "<stream:error><undefined-condition xmlns='{}'/><handled-count-too-high \
                 xmlns='{NS_SM}' h='{h}' send-count='{sent}'/></stream:error></stream:stream>",
                ns::STREAM_ERRORS
            )
            .as_bytes(),
        );
        self.finish(
            CloseReason::StreamError(StreamErrorCondition::UndefinedCondition),
            true,
        );
    }

    fn on_resume(&mut self, s: &Stanza) {
        let Auth::Authed(bare) = &self.auth else {
            // Already bound (or resumed): XEP-0198 §5 allows resumption instead of binding only.
            return write_failed(
                &mut self.out,
                None,
                StanzaErrorCondition::UnexpectedRequest,
                b"",
            );
        };
        let (Some(previd), Some(h)) = (s.attr("previd"), parse_h(s)) else {
            return write_failed(&mut self.out, None, StanzaErrorCondition::BadRequest, b"");
        };
        let (jid, previd) = (bare.clone(), previd.into_owned());
        self.wait = Wait::Resume(previd.clone(), None);
        self.events
            .push_back(C2sEvent::ResumeRequest { jid, previd, h });
    }

    /// The answer to `C2sEvent::ResumeRequest`: the old session's state moved here. Writes
    /// `<resumed/>` and every stanza the client did not acknowledge (the state's buffer, already
    /// trimmed to the client's `h`), in order.
    pub fn resumed(&mut self, jid: FullJid, sm: Box<SmState>) {
        let (previd, sasl2) = match std::mem::replace(&mut self.wait, Wait::Nothing) {
            Wait::Resume(previd, sasl2) => (previd, sasl2),
            other => {
                self.wait = other;
                return;
            }
        };
        // Inside SASL2, <resumed/> is part of <success/>, which names the resumed full JID.
        let data = sasl2.as_ref().map(|s| s.additional_data.as_deref());
        if let Some(data) = data {
            super::sasl2::write_success_start(&mut self.out, data, jid.as_str());
        }
        self.out
            .extend_from_slice(b"<resumed xmlns='urn:xmpp:sm:3' previd='");
        escape_attr_into(&previd, &mut self.out);
        self.out
            .extend_from_slice(format!("' h='{}'/>", sm.h_handled()).as_bytes());
        if sasl2.is_some() {
            super::sasl2::write_success_end(&mut self.out);
            // XEP-0388 §2.6.1: features follow <success/>, here as after an inline bind (the
            // stream is bound: none left to negotiate); clients wait for them.
            self.out.extend_from_slice(b"<stream:features/>");
        }
        for item in sm.unacked() {
            self.out.extend_from_slice(item.bytes());
        }
        if sm.unacked_len() > 0 {
            write_r(&mut self.out);
        }
        self.bound(jid);
        self.auth_deadline = None;
        self.sm = Some(sm);
        self.run();
    }

    /// The answer to `C2sEvent::ResumeRequest`: no session to resume. The stream stays
    /// authenticated; the client may bind a new resource.
    pub fn resume_failed(&mut self, e: ResumeError) {
        let sasl2 = match std::mem::replace(&mut self.wait, Wait::Nothing) {
            Wait::Resume(_, sasl2) => sasl2,
            other => {
                self.wait = other;
                return;
            }
        };
        let mut failed = Vec::new();
        match e {
            ResumeError::ItemNotFound => {
                write_failed(&mut failed, None, StanzaErrorCondition::ItemNotFound, b"")
            }
            ResumeError::HandledCountTooHigh { h, sent } => write_failed(
                &mut failed,
                None,
                StanzaErrorCondition::UndefinedCondition,
                format!("<handled-count-too-high xmlns='{NS_SM}' h='{h}' send-count='{sent}'/>")
                    .as_bytes(),
            ),
        }
        match sasl2 {
            None => self.out.extend_from_slice(&failed),
            // XEP-0198 §4 with SASL2: <failed/> goes into <success/>, and the Bind 2 request (if
            // any) is processed instead.
            Some(mut inline) => {
                inline.sm_failed = Some(failed);
                if let Auth::Authed(bare) = &self.auth {
                    let bare = bare.clone();
                    self.sasl2_continue(bare, inline);
                }
            }
        }
        self.run();
    }

    /// True while a `<resume/>` waits for [`C2s::resumed`] or [`C2s::resume_failed`].
    pub fn resume_pending(&self) -> bool {
        matches!(self.wait, Wait::Resume(..))
    }

    /// The stream management settings of this stream, if it offers stream management.
    pub fn sm_config(&self) -> Option<SmConfig> {
        self.cfg.sm
    }

    /// Stream management state, if `<enable/>` (or a resumption) switched it on.
    pub fn sm(&self) -> Option<&SmState> {
        self.sm.as_deref()
    }

    /// Takes the stream management state out (the connection ended; the driver keeps the session
    /// for resumption or re-routes the unacknowledged stanzas).
    pub fn take_sm(&mut self) -> Option<Box<SmState>> {
        self.sm.take()
    }

    /// Counts a stanza received from the client (called for every message/presence/iq once bound);
    /// returns its number when stream management is on.
    pub(super) fn sm_inbound(&mut self) -> Option<u32> {
        self.sm.as_mut().map(|sm| sm.inbound())
    }

    /// Stanzas from the client are handled (see `hooks::handled`): answers the `<r/>` requests that
    /// waited for them, and closes a stream that waited for them to close.
    pub fn sm_handled(&mut self, seqs: &[u32], now: std::time::Instant) {
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        for &seq in seqs {
            sm.handle(seq);
        }
        self.sm_answer(now);
        self.close_if_due(now);
    }

    /// Closes with `cond` once the client's stanzas still on their way are handled, at most
    /// [`CLOSE_ACK_WAIT`] after `now`: the last `<a/>` then counts them, and the client sends none
    /// of them again after it reconnects (a server shutdown). At once without stream management or
    /// when nothing is on its way. Meanwhile what is queued goes out, and input is not taken: it is
    /// not counted, so the client sends it again.
    pub fn close_when_handled(&mut self, cond: StreamErrorCondition, now: std::time::Instant) {
        match self.sm.as_mut() {
            Some(sm) if !self.closed && !sm.all_handled() => {
                sm.close_after = Some((cond, now + CLOSE_ACK_WAIT));
                self.write_queued(usize::MAX);
            }
            _ => self.close(Some(cond), None),
        }
    }

    /// True while a close waits for the client's stanzas (input is not taken).
    pub(super) fn closing_when_handled(&self) -> bool {
        self.sm.as_ref().is_some_and(|sm| sm.close_after.is_some())
    }

    /// Performs a waiting close once its stanzas are handled or its wait is over.
    pub(super) fn close_if_due(&mut self, now: std::time::Instant) {
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        if let Some((cond, until)) = sm.close_after {
            if sm.all_handled() || now >= until {
                sm.close_after = None;
                self.close(Some(cond), None);
            }
        }
    }

    /// XEP-0198 (since 1.5.2): the last `<a/>` before the stream closes tells the client which of
    /// its stanzas were handled, so that it sends only the others again.
    pub(super) fn write_last_ack(&mut self) {
        if let Some(sm) = &self.sm {
            write_a(&mut self.out, sm.h_handled());
        }
    }

    /// Writes the `<a/>` of every `<r/>` that can be answered at `now`.
    pub(super) fn sm_answer(&mut self, now: std::time::Instant) {
        if self.closed {
            return;
        }
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        for h in sm.answers(now) {
            write_a(&mut self.out, h);
        }
    }

    /// When the stream management state needs `handle_timeout`.
    pub(super) fn sm_deadline(&self) -> Option<std::time::Instant> {
        self.sm.as_ref().and_then(|sm| sm.next_deadline())
    }

    /// Writes a stanza the stream generates itself (IQ replies, pings) through `write`: counted and
    /// kept for resumption when stream management is on.
    pub(super) fn write_local_stanza(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.sm.is_none() {
            return write(&mut self.out);
        }
        let mut bytes = Vec::new();
        write(&mut bytes);
        self.out.extend_from_slice(&bytes);
        self.sm_outbound(Unacked::Local(bytes));
    }

    /// Counts and buffers a stanza already written to `out`; asks for an ack when due. A full
    /// buffer closes the stream (policy-violation) and hands the stanza back.
    pub(super) fn sm_outbound(&mut self, item: Unacked) -> Option<Unacked> {
        let sm = self.sm.as_mut()?;
        match sm.outbound(item) {
            Ok(true) => {
                write_r(&mut self.out);
                None
            }
            Ok(false) => None,
            Err((_, item)) => {
                self.stream_error(
                    StreamErrorCondition::PolicyViolation,
                    Some("too many unacknowledged stanzas"),
                );
                Some(item)
            }
        }
    }

    /// Bytes of routed stanzas that wait for the client's XEP-0198 acknowledgements (the buffer of
    /// unacknowledged ones is full): the driver keeps reading while only these wait, since the
    /// client's `<a/>` that lets them out comes on its input.
    pub fn awaiting_acks(&self) -> usize {
        match &self.sm {
            Some(sm) if sm.is_full() && !self.closed => self.routed.bytes(),
            _ => 0,
        }
    }

    /// Queues a routed stanza for the client; with stream management on it is counted and kept
    /// until acknowledged. `Err` hands the stanza back when the stream cannot take it (slow reader,
    /// full buffer, closed): the stream is closing and the caller re-routes it.
    pub fn deliver_routed(&mut self, acc: Acc) -> Result<(), Acc> {
        if self.closed {
            return Err(acc);
        }
        // An empty queue takes any stanza (one larger than the bound must not be a verdict).
        if self.pending_transmit() > 0 && !self.has_room(acc.stanza.bytes().len()) {
            // Slow reader: the error goes out right behind the chunk the driver already holds; the
            // queued stanzas wait for `take_unsent` (or stay unacknowledged with stream management).
            self.stream_error(StreamErrorCondition::PolicyViolation, Some("slow reader"));
            return Err(acc);
        }
        // With stream management, what does not fit the unacknowledged buffer waits here for the
        // client's `<a/>` (`write_queued`), bounded by the bytes above: a client that sends a
        // burst of requests gets every answer, its acks opening the window as it reads them (the
        // buffer used to overflow with answers it had not been sent yet, closing the stream).
        self.routed.push(acc);
        Ok(())
    }
}

/// Reply helpers the rest of the stream uses for its own stanzas.
impl C2s {
    /// The legacy session result, counted when stream management is on.
    pub(super) fn reply_empty_result(&mut self, id: Option<&str>) {
        self.write_local_stanza(|out| reply::write_empty_result(out, id));
    }

    /// An IQ error reply, counted when stream management is on.
    pub(super) fn reply_iq_error(&mut self, id: Option<&str>, cond: StanzaErrorCondition) {
        self.write_local_stanza(|out| reply::write_iq_error(out, id, cond));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::Jid;
    use crate::shard::ShardId;

    fn cfg(max: usize, freq: u32) -> SmConfig {
        SmConfig {
            buffer_max: max,
            ack_freq: freq,
            resume_timeout: Duration::from_secs(60),
            id_prefix: None,
        }
    }

    fn local(n: u8) -> Unacked {
        Unacked::Local(vec![n])
    }

    fn routed(body: &str) -> Unacked {
        let s =
            Stanza::parse(format!("<message><body>{body}</body></message>").into_bytes()).unwrap();
        let j = Jid::parse("a@b").unwrap();
        Unacked::Routed(Acc::new(s, j.clone(), j, ShardId(0)))
    }

    #[test]
    fn counts_and_acks() {
        let mut sm = SmState::new(cfg(10, 100), None);
        sm.inbound();
        sm.inbound();
        assert_eq!(sm.h_in(), 2);
        for i in 0..4 {
            sm.outbound(local(i)).unwrap();
        }
        assert_eq!((sm.h_out(), sm.unacked_len()), (4, 4));
        assert_eq!(sm.ack(3), Ok(3));
        let left: Vec<&[u8]> = sm.unacked().map(Unacked::bytes).collect();
        assert_eq!(left, vec![&[3u8][..]]);
        // A repeated ack changes nothing.
        assert_eq!(sm.ack(3), Ok(0));
        assert_eq!(sm.ack(4), Ok(1));
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn h_too_high_is_refused_and_changes_nothing() {
        let mut sm = SmState::new(cfg(10, 100), None);
        sm.outbound(local(1)).unwrap();
        sm.outbound(local(2)).unwrap();
        assert_eq!(
            sm.ack(3),
            Err(SmError::HandledCountTooHigh { h: 3, sent: 2 })
        );
        assert_eq!(sm.unacked_len(), 2);
        // An h behind the last ack is as impossible as one ahead (it wraps to a huge count).
        sm.ack(2).unwrap();
        assert!(sm.ack(1).is_err());
    }

    #[test]
    fn counters_wrap_at_2_pow_32() {
        let mut sm = SmState::with_counters(cfg(10, 100), None, u32::MAX, u32::MAX - 1);
        sm.inbound();
        assert_eq!(sm.h_in(), 0);
        for i in 0..4 {
            sm.outbound(local(i)).unwrap();
        }
        // Sent: MAX, 0, 1, 2.
        assert_eq!(sm.h_out(), 2);
        assert_eq!(sm.ack(u32::MAX), Ok(1));
        assert_eq!(sm.ack(1), Ok(2));
        assert_eq!(sm.unacked().next().map(Unacked::bytes), Some(&[3u8][..]));
        assert!(sm.ack(3).is_err());
        assert_eq!(sm.ack(2), Ok(1));
    }

    #[test]
    fn buffer_is_bounded_and_hands_the_stanza_back() {
        let mut sm = SmState::new(cfg(3, 100), None);
        for _ in 0..3 {
            sm.outbound(routed("x")).unwrap();
        }
        match sm.outbound(routed("over")) {
            Err((SmError::BufferFull, Unacked::Routed(acc))) => {
                assert!(String::from_utf8_lossy(acc.stanza.bytes()).contains("over"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((sm.h_out(), sm.unacked_len()), (3, 3));
        sm.ack(1).unwrap();
        assert!(sm.outbound(routed("fits")).is_ok());
        let taken = sm.take_unacked();
        assert_eq!(taken.len(), 3);
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn requests_every_ack_freq_and_at_half_full_once_until_answered() {
        let mut sm = SmState::new(cfg(100, 3), None);
        let asks: Vec<bool> = (0..7).map(|i| sm.outbound(local(i)).unwrap()).collect();
        // Third stanza asks; the request is outstanding, so no more asks until an ack.
        assert_eq!(asks, vec![false, false, true, false, false, false, false]);
        sm.ack(7).unwrap();
        let asks: Vec<bool> = (0..3).map(|i| sm.outbound(local(i)).unwrap()).collect();
        assert_eq!(asks, vec![false, false, true]);
        let mut sm = SmState::new(cfg(4, 1000), None);
        let asks: Vec<bool> = (0..3).map(|i| sm.outbound(local(i)).unwrap()).collect();
        assert_eq!(asks, vec![false, true, false]);
    }
}
