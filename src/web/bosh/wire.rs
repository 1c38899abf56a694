//! Response `<body/>`s and the synthetic stream header fed to the `C2s`.

use super::{NS_HTTPBIND, NS_XBOSH};
use crate::xml::escape::escape_attr_into;
use crate::xmpp::ns;

/// Terminal binding conditions (XEP-0124 §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The request's format is unacceptable.
    BadRequest,
    /// The target domain is no longer served.
    HostGone,
    /// The target domain is unknown.
    HostUnknown,
    /// The initial request lacks `to` or names it wrongly.
    ImproperAddressing,
    /// The server failed.
    InternalServerError,
    /// Unknown `sid`, `rid` out of the window, or a response that can no longer be replayed.
    ItemNotFound,
    /// Another request on the session made this one pointless.
    OtherRequest,
    /// The client broke the session rules (too many requests, too large).
    PolicyViolation,
    /// The XMPP server could not be reached.
    RemoteConnectionFailed,
    /// The XMPP stream ended with an error (the `<stream:error/>` is inside the body).
    RemoteStreamError,
    /// The server is shutting down.
    SystemShutdown,
    /// Anything else.
    UndefinedCondition,
}

impl Condition {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::HostGone => "host-gone",
            Condition::HostUnknown => "host-unknown",
            Condition::ImproperAddressing => "improper-addressing",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::OtherRequest => "other-request",
            Condition::PolicyViolation => "policy-violation",
            Condition::RemoteConnectionFailed => "remote-connection-failed",
            Condition::RemoteStreamError => "remote-stream-error",
            Condition::SystemShutdown => "system-shutdown",
            Condition::UndefinedCondition => "undefined-condition",
        }
    }

    /// The HTTP status: 200 for clients that sent `ver` (§17.1), the legacy codes of §17.2 for
    /// those that did not.
    pub fn status(self, legacy: bool) -> u16 {
        match (legacy, self) {
            (true, Condition::BadRequest) => 400,
            (true, Condition::PolicyViolation) => 403,
            (true, Condition::ItemNotFound) => 404,
            _ => 200,
        }
    }
}

/// The attributes of a session creation response (§7.1, XEP-0206 §5).
#[derive(Debug, Clone)]
pub(super) struct Creation<'a> {
    pub sid: &'a str,
    pub wait: u64,
    pub hold: u32,
    pub requests: u64,
    pub inactivity: u64,
    pub polling: u64,
    pub maxpause: Option<u64>,
    pub from: &'a str,
    pub authid: Option<&'a str>,
    /// The BOSH version the session speaks (see [`session_version`]).
    pub ver: &'a str,
}

/// The highest BOSH version the connection manager speaks.
const VERSION: (u32, u32) = (1, 11);

/// The `ver` of the creation response (§7.1): ours or the client's, whichever is lower (ours
/// when the client's is missing or unreadable).
pub(super) fn session_version(client: Option<&str>) -> String {
    let parsed = client.and_then(|v| {
        let (major, minor) = v.trim().split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    let (major, minor) = parsed.map_or(VERSION, |v| v.min(VERSION));
    format!("{major}.{minor}")
}

/// Appends `<body xmlns=...` with the namespaces any child may need.
fn open(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<body xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    // stream:features and stream:error use the prefix the server's header declared.
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(ns::STREAMS.as_bytes());
    out.push(b'\'');
}

fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr_into(value, out);
    out.push(b'\'');
}

fn close(out: &mut Vec<u8>, children: &[u8]) {
    if children.is_empty() {
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
        out.extend_from_slice(children);
        out.extend_from_slice(b"</body>");
    }
}

/// A response body carrying `children` (complete elements).
pub(super) fn body(children: &[u8], creation: Option<&Creation<'_>>) -> Vec<u8> {
    body_reporting(children, creation, None)
}

/// [`body`], telling the client (§9.2) that the response to rid `report.0`, sent `report.1`
/// milliseconds ago, has not been acknowledged.
pub(super) fn body_reporting(
    children: &[u8],
    creation: Option<&Creation<'_>>,
    report: Option<(u64, u64)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(children.len() + 400);
    open(&mut out);
    if let Some((rid, ms)) = report {
        attr(&mut out, "report", &rid.to_string());
        attr(&mut out, "time", &ms.to_string());
    }
    if let Some(c) = creation {
        attr(&mut out, "sid", c.sid);
        attr(&mut out, "wait", &c.wait.to_string());
        attr(&mut out, "hold", &c.hold.to_string());
        attr(&mut out, "requests", &c.requests.to_string());
        attr(&mut out, "inactivity", &c.inactivity.to_string());
        attr(&mut out, "polling", &c.polling.to_string());
        if let Some(p) = c.maxpause {
            attr(&mut out, "maxpause", &p.to_string());
        }
        attr(&mut out, "ver", c.ver);
        attr(&mut out, "from", c.from);
        if let Some(id) = c.authid {
            attr(&mut out, "authid", id);
        }
        attr(&mut out, "xmlns:xmpp", NS_XBOSH);
        attr(&mut out, "xmpp:version", "1.0");
        attr(&mut out, "xmpp:restartlogic", "true");
    }
    close(&mut out, children);
    out
}

/// A recoverable binding error (§17.3): `type='error'`, the session lives on and the client sends
/// its requests again.
pub fn recoverable() -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    open(&mut out);
    attr(&mut out, "type", "error");
    close(&mut out, &[]);
    out
}

/// A `type='terminate'` body, with a condition when the session ended on an error.
pub fn terminate(cond: Option<Condition>, children: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(children.len() + 128);
    open(&mut out);
    attr(&mut out, "type", "terminate");
    if let Some(c) = cond {
        attr(&mut out, "condition", c.as_str());
    }
    close(&mut out, children);
    out
}

/// The stream header the client would have sent (at creation and after each restart).
pub(super) fn stream_header(to: &str, lang: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<stream:stream");
    attr(&mut out, "to", to);
    attr(&mut out, "xmlns", ns::CLIENT);
    attr(&mut out, "xmlns:stream", ns::STREAMS);
    attr(&mut out, "version", "1.0");
    if let Some(lang) = lang {
        attr(&mut out, "xml:lang", lang);
    }
    out.push(b'>');
    out
}
