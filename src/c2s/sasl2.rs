//! SASL2 (XEP-0388) and Bind 2 (XEP-0386): authentication and resource binding in one exchange.
//!
//! The client sends `<authenticate/>` with its initial response, a `<user-agent/>` and, optionally,
//! a `<bind xmlns='urn:xmpp:bind:0'/>` request (with inline features such as XEP-0198 `<enable/>`).
//! The same `auth::SaslServer` runs the mechanism as for RFC 6120 SASL; only the framing differs.
//! On success there is no stream restart: with a bind request the session is bound before
//! `<success/>` is written, and `<success/>` names the full JID and carries `<bound/>`; without
//! one it names the bare JID and the post-authentication features follow, as after a restart.
//! A `<resume/>` inside `<authenticate/>` (XEP-0198 with SASL2) is tried first: `<resumed/>` goes
//! into `<success/>` and the bind request is ignored; a `<failed/>` goes there too, and the bind
//! runs. A login costs two round trips fewer than SASL + restart + bind (three with SM inline).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::features::{self, Offer};
use super::stream::{random_token, Auth, C2s, Wait};
use super::C2sEvent;
use crate::auth::SaslFailure;
use crate::jid::{BareJid, FullJid};
use crate::xml::escape::escape_text_into;
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StreamErrorCondition};

/// Longest `<tag/>` kept as a resource prefix (a client name, not a place for data).
const MAX_TAG_CHARS: usize = 64;
/// Inline feature requests kept from one `<bind/>` (more are ignored: the server offers two).
const MAX_INLINE_REQUESTS: usize = 8;
/// Longest `<user-agent id=''/>` accepted (a UUID is 36 characters).
const MAX_USER_AGENT_ID: usize = 256;

/// A SASL2 element sent by the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sasl2Request {
    /// `<authenticate mechanism='..'>` with what it asks for besides authentication.
    Authenticate {
        /// The mechanism name as sent.
        mechanism: String,
        /// The decoded `<initial-response/>` (`None` when absent; an empty element is empty data).
        initial: Option<Vec<u8>>,
        /// The `<user-agent/>` and `<bind/>` requests.
        inline: Box<Sasl2Inline>,
    },
    /// `<response>`: the decoded data.
    Response(Vec<u8>),
    /// `<abort/>`.
    Abort,
}

/// What an `<authenticate/>` asks for besides authentication; kept until `<success/>` is written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sasl2Inline {
    /// `<user-agent id='..'/>`: identifies the client installation (never shown to others).
    pub(crate) user_agent: Option<String>,
    /// `<bind xmlns='urn:xmpp:bind:0'/>`.
    pub(crate) bind: Option<Bind2Request>,
    /// XEP-0198 `<resume previd h/>` inline: `(previd, h)`.
    pub(crate) resume: Option<(String, u32)>,
    /// `<additional-data/>` of the mechanism, kept while the bind runs.
    pub(crate) additional_data: Option<Vec<u8>>,
    /// The `<failed/>` of an inline resumption that failed, for `<success/>`.
    pub(crate) sm_failed: Option<Vec<u8>>,
}

/// A Bind 2 request (XEP-0386 §3.2).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Bind2Request {
    /// `<tag/>`: the client's name, the prefix of the generated resource.
    pub(crate) tag: Option<String>,
    /// XEP-0198 `<enable/>` inline: `Some(resume)`.
    pub(crate) sm_enable: Option<bool>,
    /// The other children (carbons' `<enable/>`, CSI's `<inactive/>`...), for the modules.
    pub(crate) requests: Vec<Element>,
}

/// Parses a top-level element in the SASL2 namespace.
pub(crate) fn parse(stanza: &Stanza) -> Result<Sasl2Request, SaslFailure> {
    let el = stanza.tree().map_err(|_| SaslFailure::MalformedRequest)?;
    match stanza.name() {
        "authenticate" => {
            let mechanism = el
                .attr("mechanism")
                .ok_or(SaslFailure::InvalidMechanism)?
                .to_string();
            if el.attr("upgrade").is_some() {
                // §2.3: an upgrade the server did not announce (petrel announces none) fails.
                return Err(SaslFailure::InvalidMechanism);
            }
            let initial = match el.get_child("initial-response", ns::SASL2) {
                Some(r) => Some(decode(&r.text())?),
                None => None,
            };
            let user_agent = match el.get_child("user-agent", ns::SASL2) {
                Some(ua) => match ua.attr("id") {
                    Some(id) if id.is_empty() || id.len() > MAX_USER_AGENT_ID => {
                        return Err(SaslFailure::MalformedRequest)
                    }
                    id => id.map(str::to_owned),
                },
                None => None,
            };
            let bind = el.get_child("bind", ns::BIND2).map(parse_bind);
            let resume = match el.get_child("resume", super::NS_SM) {
                Some(r) => {
                    let previd = r.attr("previd").filter(|p| !p.is_empty());
                    let h = r.attr("h").and_then(|h| h.trim().parse::<u32>().ok());
                    match (previd, h) {
                        (Some(p), Some(h)) => Some((p.to_string(), h)),
                        _ => return Err(SaslFailure::MalformedRequest),
                    }
                }
                None => None,
            };
            let inline = Box::new(Sasl2Inline {
                user_agent,
                bind,
                resume,
                ..Default::default()
            });
            Ok(Sasl2Request::Authenticate {
                mechanism,
                initial,
                inline,
            })
        }
        "response" => Ok(Sasl2Request::Response(decode(&el.text())?)),
        "abort" => Ok(Sasl2Request::Abort),
        _ => Err(SaslFailure::MalformedRequest),
    }
}

/// The parts of `<bind/>` petrel acts on; unknown inline requests are ignored (XEP-0386 lets the
/// server enable only what it advertised).
fn parse_bind(bind: &Element) -> Bind2Request {
    let tag = bind
        .get_child("tag", ns::BIND2)
        .map(|t| t.text().trim().to_string())
        .filter(|t| !t.is_empty());
    let sm_enable = bind
        .get_child("enable", super::NS_SM)
        .map(|e| matches!(e.attr("resume"), Some("true") | Some("1")));
    let requests = bind
        .child_elements()
        .filter(|e| e.ns != ns::BIND2 && e.ns != super::NS_SM)
        .take(MAX_INLINE_REQUESTS)
        .cloned()
        .collect();
    Bind2Request {
        tag,
        sm_enable,
        requests,
    }
}

/// SASL2 data is plain base64; an empty element is empty data (no `=` special case).
fn decode(text: &str) -> Result<Vec<u8>, SaslFailure> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    B64.decode(text).map_err(|_| SaslFailure::IncorrectEncoding)
}

/// The resource a Bind 2 request gets: `tag/ID` (XEP-0386 §3.2.1), or `ID` without a usable tag.
/// With a `<user-agent id/>`, ID is derived from it, the account and the tag, so the same client
/// installation gets the same resource at every login (its previous session is replaced); the id
/// itself is not exposed (a hash of it is). Without one, ID is random.
pub(crate) fn bind2_resource(
    bare: &BareJid,
    user_agent: Option<&str>,
    tag: Option<&str>,
) -> Option<FullJid> {
    let id = match user_agent {
        Some(ua) => stable_id(bare, ua, tag.unwrap_or("")),
        None => random_token().ok()?,
    };
    let tagged = tag
        .filter(|t| t.chars().count() <= MAX_TAG_CHARS)
        .and_then(|t| bare.with_resource(&format!("{t}/{id}")).ok());
    // `id` alone (16 characters of the token alphabet) is always a valid resource.
    tagged.or_else(|| bare.with_resource(&id).ok())
}

/// 16 characters of SHA-256(account, user agent, tag) in the token alphabet (80 bits).
fn stable_id(bare: &BareJid, user_agent: &str, tag: &str) -> String {
    let mut h = Sha256::new();
    for part in [bare.as_str(), user_agent, tag] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    super::stream::token_from_bytes(&digest[..16])
}

/// Appends `<authentication xmlns='urn:xmpp:sasl:2'>` with `mechanisms` and the inline features.
pub(crate) fn write_feature(
    out: &mut Vec<u8>,
    mechanisms: &[crate::auth::Mechanism],
    sm: bool,
    bind2_features: &[u8],
) {
    out.extend_from_slice(b"<authentication xmlns='");
    out.extend_from_slice(ns::SASL2.as_bytes());
    out.extend_from_slice(b"'>");
    for m in mechanisms {
        out.extend_from_slice(b"<mechanism>");
        out.extend_from_slice(m.name().as_bytes());
        out.extend_from_slice(b"</mechanism>");
    }
    out.extend_from_slice(b"<inline><bind xmlns='");
    out.extend_from_slice(ns::BIND2.as_bytes());
    out.extend_from_slice(b"'>");
    if sm || !bind2_features.is_empty() {
        out.extend_from_slice(b"<inline>");
        if sm {
            out.extend_from_slice(b"<feature var='");
            out.extend_from_slice(super::NS_SM.as_bytes());
            out.extend_from_slice(b"'/>");
        }
        out.extend_from_slice(bind2_features);
        out.extend_from_slice(b"</inline>");
    }
    out.extend_from_slice(b"</bind>");
    if sm {
        // XEP-0198 resumption inside <authenticate/>.
        out.extend_from_slice(b"<sm xmlns='");
        out.extend_from_slice(super::NS_SM.as_bytes());
        out.extend_from_slice(b"'/>");
    }
    out.extend_from_slice(b"</inline></authentication>");
}

/// Appends `<challenge xmlns='urn:xmpp:sasl:2'>` with base64 `data`.
pub(crate) fn write_challenge(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"<challenge xmlns='");
    out.extend_from_slice(ns::SASL2.as_bytes());
    out.extend_from_slice(b"'>");
    super::sasl::b64_into(out, data);
    out.extend_from_slice(b"</challenge>");
}

/// Appends the opening of `<success/>` up to and including the authorization identifier; the
/// caller adds inline answers and [`write_success_end`].
pub(super) fn write_success_start(
    out: &mut Vec<u8>,
    additional_data: Option<&[u8]>,
    authzid: &str,
) {
    out.extend_from_slice(b"<success xmlns='");
    out.extend_from_slice(ns::SASL2.as_bytes());
    out.extend_from_slice(b"'>");
    if let Some(data) = additional_data {
        out.extend_from_slice(b"<additional-data>");
        super::sasl::b64_into(out, data);
        out.extend_from_slice(b"</additional-data>");
    }
    out.extend_from_slice(b"<authorization-identifier>");
    escape_text_into(authzid, out);
    out.extend_from_slice(b"</authorization-identifier>");
}

/// Closes `<success/>`.
pub(super) fn write_success_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"</success>");
}

/// Appends `<failure xmlns='urn:xmpp:sasl:2'><COND xmlns='..xmpp-sasl'/></failure>`.
pub(crate) fn write_failure(out: &mut Vec<u8>, condition: &str) {
    out.extend_from_slice(b"<failure xmlns='");
    out.extend_from_slice(ns::SASL2.as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(condition.as_bytes());
    out.extend_from_slice(b" xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    out.extend_from_slice(b"'/></failure>");
}

impl C2s {
    /// A top-level element in the SASL2 namespace before authentication.
    pub(super) fn on_sasl2(&mut self, s: &Stanza) {
        self.sasl2_framing = true;
        let req = match parse(s) {
            Ok(req) => req,
            Err(f) => return self.sasl_failure(f),
        };
        match req {
            Sasl2Request::Authenticate {
                mechanism,
                initial,
                inline,
            } => {
                self.sasl2 = Some(inline);
                self.on_auth(&mechanism, initial.as_deref())
            }
            Sasl2Request::Response(data) => {
                let step = match (&mut self.auth, &self.sasl2) {
                    (Auth::None(Some(server)), Some(_)) => server.step(&data),
                    // A response without an <authenticate/> (or to an RFC 6120 exchange).
                    _ => return self.sasl_failure(SaslFailure::MalformedRequest),
                };
                self.on_sasl_step(step);
            }
            Sasl2Request::Abort => self.sasl_failure(SaslFailure::Aborted),
        }
    }

    /// SASL succeeded inside `<authenticate/>`: an inline resumption first, else the bind when
    /// asked for, then `<success/>`.
    pub(super) fn sasl2_success(
        &mut self,
        jid: BareJid,
        mut inline: Box<Sasl2Inline>,
        additional_data: Option<Vec<u8>>,
    ) {
        inline.additional_data = additional_data;
        if let (Some((previd, h)), true) = (inline.resume.take(), self.sm_offered()) {
            self.wait = Wait::Resume(previd.clone(), Some(inline));
            self.events
                .push_back(C2sEvent::ResumeRequest { jid, previd, h });
            return;
        }
        self.sasl2_continue(jid, inline);
    }

    /// After authentication (and a failed inline resumption): the Bind 2 request, or `<success/>`
    /// with the bare JID and the features to bind the RFC 6120 way.
    pub(super) fn sasl2_continue(&mut self, jid: BareJid, inline: Box<Sasl2Inline>) {
        let Some(bind) = inline.bind.as_ref() else {
            self.open_success(&inline, jid.as_str());
            write_success_end(&mut self.out);
            // No restart: the features of the authenticated stream follow at once (XEP-0388 §2.6.1).
            self.write_post_auth_features();
            return;
        };
        if self.served_host(jid.domain()).is_none() {
            // Its domain was removed at run time after the stream opened: no session may start.
            return self.stream_error(StreamErrorCondition::HostGone, None);
        }
        let full = match bind2_resource(&jid, inline.user_agent.as_deref(), bind.tag.as_deref()) {
            Some(full) => full,
            None => {
                return self.stream_error(
                    StreamErrorCondition::InternalServerError,
                    Some("no randomness"),
                )
            }
        };
        self.wait = Wait::Bind2(inline);
        self.events.push_back(C2sEvent::BindRequest { jid: full });
    }

    /// The session manager's answer to a Bind 2 request: `<success/>` with the full JID and
    /// `<bound/>` (and the inline features' answers), or, when the session was refused, with the
    /// bare JID, `<failed xmlns='urn:xmpp:bind:0'/>` and the features to bind the RFC 6120 way.
    pub(super) fn bind2_result(
        &mut self,
        inline: Sasl2Inline,
        r: Result<FullJid, super::BindError>,
    ) {
        let bare = match &self.auth {
            Auth::Authed(bare) => bare.clone(),
            _ => return,
        };
        match r {
            Ok(jid) => {
                self.open_success(&inline, jid.as_str());
                self.out.extend_from_slice(b"<bound xmlns='");
                self.out.extend_from_slice(ns::BIND2.as_bytes());
                self.out.extend_from_slice(b"'>");
                self.bound(jid);
                self.auth_deadline = None;
                let sm = inline.bind.as_ref().and_then(|b| b.sm_enable);
                if let (Some(resume), Some(cfg)) = (sm, self.cfg.sm) {
                    self.enable_sm(resume, cfg);
                }
                self.out.extend_from_slice(b"</bound>");
                write_success_end(&mut self.out);
                // XEP-0388 §2.6.1: features follow <success/>; a bound stream has none left to
                // negotiate (the spec's own example sends them empty).
                self.out.extend_from_slice(b"<stream:features/>");
                // Even with no request: handlers also act on the bind itself (offline storage
                // leaves archived messages to the archive, XEP-0386 §3.2).
                let requests = inline.bind.map(|b| b.requests).unwrap_or_default();
                self.events.push_back(C2sEvent::Bind2Enable { requests });
            }
            Err(e) => {
                self.open_success(&inline, bare.as_str());
                self.out.extend_from_slice(b"<failed xmlns='");
                self.out.extend_from_slice(ns::BIND2.as_bytes());
                self.out.extend_from_slice(b"'>");
                e.condition().write_error_element(&mut self.out);
                self.out.extend_from_slice(b"</failed>");
                write_success_end(&mut self.out);
                self.write_post_auth_features();
            }
        }
    }

    /// Opens `<success/>` for `authzid` with the mechanism's additional data and the `<failed/>` of
    /// an inline resumption that failed, if any; the caller adds the rest and closes it.
    fn open_success(&mut self, inline: &Sasl2Inline, authzid: &str) {
        write_success_start(&mut self.out, inline.additional_data.as_deref(), authzid);
        if let Some(failed) = &inline.sm_failed {
            self.out.extend_from_slice(failed);
        }
    }

    /// `<stream:features/>` of an authenticated stream that is not bound yet.
    fn write_post_auth_features(&mut self) {
        features::write_features(
            &mut self.out,
            &Offer::Bind {
                extra: &self.cfg.post_auth_features,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Event, Limits, Scanner};

    fn stanza(xml: &str) -> Stanza {
        let mut sc = Scanner::new(Limits::default(), ns::CLIENT);
        sc.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        sc.feed(xml.as_bytes());
        loop {
            match sc.next_event().unwrap() {
                Some(Event::Stanza(s)) => return s,
                Some(_) => continue,
                None => panic!("no element in {xml}"),
            }
        }
    }

    #[test]
    fn parses_authenticate_with_bind_and_sm() {
        let s = stanza(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>\
             <initial-response>biwsbj11c2VyLHI9YWJj</initial-response>\
             <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>X</software></user-agent>\
             <bind xmlns='urn:xmpp:bind:0'><tag> AwesomeXMPP </tag>\
             <enable xmlns='urn:xmpp:sm:3' resume='true'/><enable xmlns='urn:xmpp:carbons:2'/></bind>\
             </authenticate>",
        );
        let Sasl2Request::Authenticate {
            mechanism,
            initial,
            inline,
        } = parse(&s).unwrap()
        else {
            panic!("not authenticate")
        };
        assert_eq!(mechanism, "SCRAM-SHA-256");
        assert_eq!(initial.as_deref(), Some(&b"n,,n=user,r=abc"[..]));
        assert_eq!(
            inline.user_agent.as_deref(),
            Some("d4565fa7-4d72-4749-b3d3-740edbf87770")
        );
        let bind = inline.bind.unwrap();
        assert_eq!(bind.tag.as_deref(), Some("AwesomeXMPP"));
        assert_eq!(bind.sm_enable, Some(true));
        let names: Vec<_> = bind.requests.iter().map(|e| (&*e.name, &*e.ns)).collect();
        assert_eq!(names, [("enable", "urn:xmpp:carbons:2")], "for the modules");
    }

    #[test]
    fn parses_responses_and_refuses_bad_input() {
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'/>");
        let Sasl2Request::Authenticate {
            initial, inline, ..
        } = parse(&s).unwrap()
        else {
            panic!()
        };
        assert_eq!(initial, None, "no <initial-response/>: no initial data");
        assert_eq!(inline.bind, None);
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response/></authenticate>");
        let Sasl2Request::Authenticate { initial, .. } = parse(&s).unwrap() else {
            panic!()
        };
        assert_eq!(initial, Some(vec![]), "an empty element is empty data");
        let s = stanza("<response xmlns='urn:xmpp:sasl:2'>aGVsbG8=</response>");
        assert_eq!(parse(&s), Ok(Sasl2Request::Response(b"hello".to_vec())));
        let s = stanza("<abort xmlns='urn:xmpp:sasl:2'/>");
        assert_eq!(parse(&s), Ok(Sasl2Request::Abort));
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2'/>");
        assert_eq!(parse(&s), Err(SaslFailure::InvalidMechanism));
        let s = stanza("<response xmlns='urn:xmpp:sasl:2'>***</response>");
        assert_eq!(parse(&s), Err(SaslFailure::IncorrectEncoding));
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><user-agent id=''/></authenticate>");
        assert_eq!(parse(&s), Err(SaslFailure::MalformedRequest));
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><resume xmlns='urn:xmpp:sm:3' previd='x'/></authenticate>");
        assert_eq!(
            parse(&s),
            Err(SaslFailure::MalformedRequest),
            "resume without h"
        );
        let s = stanza("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><resume xmlns='urn:xmpp:sm:3' previd='x' h='4'/></authenticate>");
        let Ok(Sasl2Request::Authenticate { inline, .. }) = parse(&s) else {
            panic!()
        };
        assert_eq!(inline.resume, Some(("x".to_string(), 4)));
        let s = stanza(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN' upgrade='SCRAM-SHA-256'/>",
        );
        assert_eq!(
            parse(&s),
            Err(SaslFailure::InvalidMechanism),
            "no upgrade announced"
        );
        let s = stanza("<next xmlns='urn:xmpp:sasl:2' task='X'/>");
        assert_eq!(parse(&s), Err(SaslFailure::MalformedRequest));
    }

    #[test]
    fn resources_are_tagged_and_stable_per_user_agent() {
        let bare = BareJid::new(Some("alice"), "example.com").unwrap();
        let a = bind2_resource(&bare, Some("ua-1"), Some("Conv")).unwrap();
        let b = bind2_resource(&bare, Some("ua-1"), Some("Conv")).unwrap();
        let c = bind2_resource(&bare, Some("ua-2"), Some("Conv")).unwrap();
        assert_eq!(a, b, "same installation, same resource");
        assert_ne!(a, c);
        let res = a.resource();
        assert!(res.starts_with("Conv/") && res.len() == 5 + 16, "{res}");
        assert!(!res.contains("ua-1"), "the user agent id is not exposed");
        let r1 = bind2_resource(&bare, None, None).unwrap();
        let r2 = bind2_resource(&bare, None, None).unwrap();
        assert_ne!(r1, r2, "no user agent: random");
        assert_eq!(r1.resource().len(), 16);
        // A tag that cannot be part of a resource (or is too long) is left out.
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        let r = bind2_resource(&bare, Some("ua"), Some(&long)).unwrap();
        assert_eq!(r.resource().len(), 16);
        let r = bind2_resource(&bare, Some("ua"), Some("bad\u{7}tag")).unwrap();
        assert_eq!(r.resource().len(), 16);
    }

    #[test]
    fn writes_protocol_elements() {
        let mut out = Vec::new();
        write_feature(
            &mut out,
            &[
                crate::auth::Mechanism::ScramSha256,
                crate::auth::Mechanism::Plain,
            ],
            true,
            b"<feature var='urn:xmpp:csi:0'/>",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256</mechanism>\
             <mechanism>PLAIN</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline>\
             <feature var='urn:xmpp:sm:3'/><feature var='urn:xmpp:csi:0'/></inline></bind>\
             <sm xmlns='urn:xmpp:sm:3'/></inline></authentication>"
        );
        let mut out = Vec::new();
        write_success_start(&mut out, Some(b"v=x"), "a@b/c<");
        write_success_end(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>dj14</additional-data>\
             <authorization-identifier>a@b/c&lt;</authorization-identifier></success>"
        );
        let mut out = Vec::new();
        write_failure(&mut out, "not-authorized");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<failure xmlns='urn:xmpp:sasl:2'><not-authorized \
             xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>"
        );
    }
}
