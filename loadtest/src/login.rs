//! Sans-IO client login: stream header, optional STARTTLS, SASL (PLAIN,
//! SCRAM-SHA-1, SCRAM-SHA-256), stream restart, resource bind, legacy session
//! (when advertised and not marked optional), XEP-0198 enable (or resume
//! instead of binding), initial presence; or XEP-0077 in-band registration
//! instead of authentication.

use crate::frame::{attr, inner, name, FrameKind};
use crate::scram::{ScramCache, ScramClient, ScramError, ScramHash};
use crate::sm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use memchr::memmem;

/// A SASL mechanism the client can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// SASL PLAIN (RFC 4616).
    Plain,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
}

impl Mech {
    /// SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Parse a SASL name (case-insensitive).
    pub fn parse(s: &str) -> Option<Mech> {
        [Mech::Plain, Mech::ScramSha1, Mech::ScramSha256]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

/// What the login is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Authenticate, bind, optionally send initial presence.
    Session,
    /// Register the account with XEP-0077 and stop.
    Register,
}

/// Settings shared by all logins of a run.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// XMPP domain (stream `to`).
    pub domain: String,
    /// Password of every load user.
    pub password: String,
    /// Resource to bind.
    pub resource: String,
    /// Negotiate STARTTLS (and fail if the server does not offer it).
    pub starttls: bool,
    /// Mechanisms in order of preference; the first one the server offers wins.
    pub mechs: Vec<Mech>,
    /// Send `<presence/>` after binding.
    pub presence: bool,
    /// Enable XEP-0198 stream management (with resumption) after binding.
    pub sm: bool,
    /// Log in with SASL2 (XEP-0388) and Bind 2 (XEP-0386) when the server offers them: one
    /// exchange authenticates, binds (the resource becomes `resource/ID`) and enables stream
    /// management, with no stream restart.
    pub sasl2: bool,
    /// Session or registration.
    pub goal: Goal,
    /// SCRAM keys already derived, shared by every login of the run.
    pub scram_cache: std::sync::Arc<ScramCache>,
}

/// What the caller must do after feeding a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send; wait for the next frame.
    Wait,
    /// Send these bytes.
    Send(Vec<u8>),
    /// Run the TLS handshake, reset the framer, then send [`Login::header`].
    StartTls,
    /// Reset the framer (stream restart) and send these bytes (a new header).
    Restart(Vec<u8>),
    /// Logged in (or registered); send these bytes (maybe empty) and go.
    Done(Vec<u8>),
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The server sent a stream error (condition element name).
    #[error("stream error: {0}")]
    Stream(String),
    /// The server closed the stream.
    #[error("stream closed by server")]
    Closed,
    /// STARTTLS was requested but not offered, or refused.
    #[error("server does not offer STARTTLS")]
    NoTls,
    /// None of our mechanisms is offered.
    #[error("no common SASL mechanism")]
    NoMechanism,
    /// SASL failure (condition element name).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// SCRAM protocol problem.
    #[error("SCRAM: {0}")]
    Scram(#[from] ScramError),
    /// Resource binding failed or was not offered.
    #[error("resource binding failed")]
    Bind,
    /// Legacy session establishment failed.
    #[error("session establishment failed")]
    Session,
    /// In-band registration failed (condition element name).
    #[error("registration failed: {0}")]
    Register(String),
    /// Stream management was asked for but is not offered, or `<enable/>` failed.
    #[error("stream management not available")]
    Sm,
    /// A frame arrived that makes no sense in this state.
    #[error("unexpected <{0}> during login")]
    Unexpected(String),
}

#[derive(Debug)]
enum State {
    /// Waiting for the server's stream header.
    Header {
        authed: bool,
    },
    /// Waiting for stream features.
    Features {
        authed: bool,
    },
    TlsProceed,
    /// `<auth/>` sent, or with `sasl2` a SASL2 `<authenticate/>` (with a Bind 2 request).
    Sasl {
        scram: Option<ScramClient>,
        sasl2: bool,
    },
    Bind,
    Session,
    /// `<resume/>` sent, waiting for `<resumed/>` or `<failed/>`.
    Resume,
    /// `<enable/>` sent, waiting for `<enabled/>`.
    Enable,
    Register,
    Done,
}

/// What became of stream management at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmOutcome {
    /// Not asked for.
    Off,
    /// A new SM session (resumable under this id if the server gave one).
    Enabled(Option<String>),
    /// The old session resumed; the server had handled `h` of our stanzas.
    Resumed(u32),
}

/// Outcome of a registration that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The account was created.
    Created,
    /// The server said the account exists already (`<conflict/>`).
    Existed,
}

/// One client login in progress.
#[derive(Debug)]
pub struct Login<'a> {
    cfg: &'a LoginConfig,
    user: String,
    state: State,
    tls_done: bool,
    session_wanted: bool,
    sm_offered: bool,
    /// `(previd, h)` to try `<resume/>` with instead of binding.
    resume: Option<(String, u32)>,
    /// Set when a registration succeeded.
    pub registered: Option<Registered>,
    /// Stream management result, once done.
    pub sm: SmOutcome,
    /// A `<resume/>` was refused (the session is gone): the login went on with a fresh bind.
    pub resume_failed: bool,
    /// The full JID the server bound, when SASL2 + Bind 2 chose it (`resource/ID`).
    pub bound: Option<String>,
}

impl<'a> Login<'a> {
    /// A login for `user` (localpart); send [`Self::header`] first.
    pub fn new(cfg: &'a LoginConfig, user: String) -> Self {
        Login {
            cfg,
            user,
            state: State::Header { authed: false },
            tls_done: false,
            session_wanted: false,
            sm_offered: false,
            resume: None,
            registered: None,
            sm: SmOutcome::Off,
            resume_failed: false,
            bound: None,
        }
    }

    /// Try to resume SM session `previd` (having handled `h` inbound stanzas) instead of binding.
    pub fn with_resume(mut self, previd: String, h: u32) -> Self {
        self.resume = Some((previd, h));
        self
    }

    /// The stream header to open (or reopen) the stream with.
    pub fn header(&self) -> Vec<u8> {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.cfg.domain
        )
        .into_bytes()
    }

    /// Whether the login finished.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feed one frame from the server.
    pub fn on_frame(&mut self, kind: FrameKind, el: &[u8]) -> Result<Step, LoginError> {
        match kind {
            FrameKind::StreamClose => return Err(LoginError::Closed),
            FrameKind::StreamOpen => {
                return match self.state {
                    State::Header { authed } => {
                        self.state = State::Features { authed };
                        Ok(Step::Wait)
                    }
                    _ => Err(LoginError::Unexpected("stream:stream".into())),
                }
            }
            FrameKind::Element => {}
        }
        let n = name(el);
        if n == b"stream:error" {
            return Err(LoginError::Stream(first_child(el)));
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Features { authed: false } if n == b"stream:features" => self.features(el),
            State::Features { authed: true } if n == b"stream:features" => self.features2(el),
            State::TlsProceed if n == b"proceed" => {
                self.tls_done = true;
                self.state = State::Header { authed: false };
                Ok(Step::StartTls)
            }
            State::TlsProceed => Err(LoginError::NoTls),
            State::Sasl { scram, sasl2 } => self.sasl(scram, sasl2, n, el),
            State::Bind if n == b"iq" => {
                if attr(el, b"type") != Some(b"result") {
                    return Err(LoginError::Bind);
                }
                self.after_bind_or_session(false)
            }
            State::Session if n == b"iq" => {
                if attr(el, b"type") != Some(b"result") {
                    return Err(LoginError::Session);
                }
                self.after_bind_or_session(true)
            }
            State::Resume if n == b"resumed" => {
                self.sm = SmOutcome::Resumed(sm::h_of(el).ok_or(LoginError::Sm)?);
                self.state = State::Done;
                Ok(Step::Done(Vec::new()))
            }
            State::Resume if n == b"failed" => {
                self.resume_failed = true;
                self.bind()
            }
            State::Enable if n == b"enabled" => {
                self.sm = sm_enabled(el);
                Ok(self.done())
            }
            State::Enable if n == b"failed" => Err(LoginError::Sm),
            State::Register if n == b"iq" => match attr(el, b"type") {
                Some(b"result") => {
                    self.registered = Some(Registered::Created);
                    Ok(Step::Done(Vec::new()))
                }
                _ if memmem::find(el, b"<conflict").is_some() => {
                    self.registered = Some(Registered::Existed);
                    Ok(Step::Done(Vec::new()))
                }
                _ => Err(LoginError::Register(error_condition(el))),
            },
            other => {
                // Anything else (e.g. a server ping) before we are done: keep state.
                let wait_ok = matches!(
                    other,
                    State::Bind | State::Session | State::Register | State::Resume | State::Enable
                ) && n != b"stream:features";
                self.state = other;
                if wait_ok {
                    Ok(Step::Wait)
                } else {
                    Err(LoginError::Unexpected(
                        String::from_utf8_lossy(n).into_owned(),
                    ))
                }
            }
        }
    }

    fn features(&mut self, el: &[u8]) -> Result<Step, LoginError> {
        if self.cfg.starttls && !self.tls_done {
            if memmem::find(el, b"urn:ietf:params:xml:ns:xmpp-tls").is_none() {
                return Err(LoginError::NoTls);
            }
            self.state = State::TlsProceed;
            return Ok(Step::Send(
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec(),
            ));
        }
        if self.cfg.goal == Goal::Register {
            self.state = State::Register;
            return Ok(Step::Send(
                format!(
                    "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query></iq>",
                    self.user, self.cfg.password
                )
                .into_bytes(),
            ));
        }
        let offered = mechanisms(el);
        let mech = self
            .cfg
            .mechs
            .iter()
            .copied()
            .find(|m| offered.iter().any(|o| *o == m.name().as_bytes()))
            .ok_or(LoginError::NoMechanism)?;
        let sasl2 = self.cfg.sasl2
            && self.resume.is_none()
            && memmem::find(el, b"urn:xmpp:sasl:2").is_some();
        let (payload, scram) = match mech {
            Mech::Plain => (
                format!("\0{}\0{}", self.user, self.cfg.password).into_bytes(),
                None,
            ),
            Mech::ScramSha1 | Mech::ScramSha256 => {
                let h = if mech == Mech::ScramSha1 {
                    ScramHash::Sha1
                } else {
                    ScramHash::Sha256
                };
                let c = ScramClient::with_random_nonce(h, &self.user, &self.cfg.password);
                (c.client_first().into_bytes(), Some(c))
            }
        };
        self.state = State::Sasl { scram, sasl2 };
        if sasl2 {
            let enable = if self.cfg.sm {
                std::str::from_utf8(sm::ENABLE).unwrap_or_default()
            } else {
                ""
            };
            return Ok(Step::Send(
                format!(
                    "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='{}'><initial-response>{}</initial-response>\
                     <bind xmlns='urn:xmpp:bind:0'><tag>{}</tag>{enable}</bind></authenticate>",
                    mech.name(),
                    B64.encode(payload),
                    self.cfg.resource
                )
                .into_bytes(),
            ));
        }
        Ok(Step::Send(
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
                mech.name(),
                B64.encode(payload)
            )
            .into_bytes(),
        ))
    }

    /// The SASL exchange in RFC 6120 framing, or with `sasl2` in SASL2 framing (XEP-0388), where
    /// `<success/>` carries the bound JID and `<enabled/>` and no restart follows.
    fn sasl(
        &mut self,
        mut scram: Option<ScramClient>,
        sasl2: bool,
        n: &[u8],
        el: &[u8],
    ) -> Result<Step, LoginError> {
        match n {
            b"challenge" => {
                let c = scram
                    .as_mut()
                    .ok_or_else(|| LoginError::Unexpected("challenge".into()))?;
                let data = B64.decode(inner(el)).map_err(|_| ScramError::Base64)?;
                let reply = B64.encode(c.server_first(&data, &self.cfg.scram_cache)?);
                let ns = if sasl2 {
                    "urn:xmpp:sasl:2"
                } else {
                    "urn:ietf:params:xml:ns:xmpp-sasl"
                };
                self.state = State::Sasl { scram, sasl2 };
                Ok(Step::Send(
                    format!("<response xmlns='{ns}'>{reply}</response>").into_bytes(),
                ))
            }
            b"success" => {
                if let Some(c) = &scram {
                    let data = if sasl2 {
                        child_text(el, b"additional-data").unwrap_or_default()
                    } else {
                        inner(el)
                    };
                    let data = B64.decode(data).map_err(|_| ScramError::Base64)?;
                    c.server_final(&data)?;
                }
                if !sasl2 {
                    self.state = State::Header { authed: true };
                    return Ok(Step::Restart(self.header()));
                }
                if memmem::find(el, b"<bound").is_none() {
                    return Err(LoginError::Bind);
                }
                let jid = child_text(el, b"authorization-identifier").ok_or(LoginError::Bind)?;
                self.bound = Some(String::from_utf8_lossy(jid).into_owned());
                if self.cfg.sm {
                    let enabled = memmem::find(el, b"<enabled")
                        .map(|i| &el[i..])
                        .ok_or(LoginError::Sm)?;
                    self.sm = sm_enabled(enabled);
                }
                Ok(self.done())
            }
            b"failure" => Err(LoginError::Auth(first_child(el))),
            other => Err(LoginError::Unexpected(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    fn features2(&mut self, el: &[u8]) -> Result<Step, LoginError> {
        if memmem::find(el, b"urn:ietf:params:xml:ns:xmpp-bind").is_none() {
            return Err(LoginError::Bind);
        }
        self.session_wanted = session_required(el);
        self.sm_offered = memmem::find(el, b"urn:xmpp:sm:3").is_some();
        if self.cfg.sm && !self.sm_offered {
            return Err(LoginError::Sm);
        }
        if let Some((previd, h)) = self.resume.take() {
            let mut out = Vec::new();
            sm::write_resume(&mut out, &previd, h);
            self.state = State::Resume;
            return Ok(Step::Send(out));
        }
        self.bind()
    }

    fn bind(&mut self) -> Result<Step, LoginError> {
        self.state = State::Bind;
        Ok(Step::Send(
            format!(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{}</resource></bind></iq>",
                self.cfg.resource
            )
            .into_bytes(),
        ))
    }

    fn after_bind_or_session(&mut self, session_done: bool) -> Result<Step, LoginError> {
        if !session_done && self.session_wanted {
            self.state = State::Session;
            return Ok(Step::Send(
                b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
                    .to_vec(),
            ));
        }
        if self.cfg.sm {
            self.state = State::Enable;
            return Ok(Step::Send(sm::ENABLE.to_vec()));
        }
        Ok(self.done())
    }

    fn done(&mut self) -> Step {
        self.state = State::Done;
        Step::Done(if self.cfg.presence {
            b"<presence/>".to_vec()
        } else {
            Vec::new()
        })
    }
}

/// What an `<enabled/>` element says: resumable under its id, or not.
fn sm_enabled(enabled: &[u8]) -> SmOutcome {
    let resumable = matches!(attr(enabled, b"resume"), Some(b"true" | b"1"));
    let id = attr(enabled, b"id")
        .filter(|_| resumable)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    SmOutcome::Enabled(id)
}

/// The text of the first `<name>` child anywhere in `el` (no nested elements expected).
fn child_text<'e>(el: &'e [u8], name: &[u8]) -> Option<&'e [u8]> {
    let open = [b"<", name, b">"].concat();
    let close = [b"</", name, b">"].concat();
    let start = memmem::find(el, &open)? + open.len();
    let len = memmem::find(&el[start..], &close)?;
    Some(&el[start..start + len])
}

/// Offered SASL mechanism names in a features element.
fn mechanisms(el: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = el;
    while let Some(i) = memmem::find(rest, b"<mechanism>") {
        rest = &rest[i + b"<mechanism>".len()..];
        let Some(j) = memchr::memchr(b'<', rest) else {
            break;
        };
        out.push(&rest[..j]);
        rest = &rest[j..];
    }
    out
}

/// Whether features advertise a legacy session that is not `<optional/>`.
fn session_required(el: &[u8]) -> bool {
    let Some(i) = memmem::find(el, b"urn:ietf:params:xml:ns:xmpp-session") else {
        return false;
    };
    let rest = &el[i..];
    // The session element is either empty or holds <optional/> before its end tag.
    let end = memmem::find(rest, b"</session>")
        .or_else(|| memmem::find(rest, b"/>"))
        .unwrap_or(rest.len());
    memmem::find(&rest[..end], b"optional").is_none()
}

/// Name of the first child element (the condition of errors and failures).
fn first_child(el: &[u8]) -> String {
    let body = inner(el);
    match memchr::memchr(b'<', body) {
        Some(i) => String::from_utf8_lossy(name(&body[i..])).into_owned(),
        None => String::new(),
    }
}

/// Condition of a stanza error (`<iq type='error'><error><cond/>...`).
fn error_condition(el: &[u8]) -> String {
    match memmem::find(el, b"<error") {
        Some(i) => first_child(&el[i..]),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mechs: Vec<Mech>, starttls: bool, goal: Goal) -> LoginConfig {
        LoginConfig {
            domain: "d".into(),
            password: "pencil".into(),
            resource: "r".into(),
            starttls,
            mechs,
            presence: true,
            sm: false,
            sasl2: false,
            goal,
            scram_cache: Default::default(),
        }
    }

    #[test]
    fn sasl2_login_binds_and_enables_sm_in_one_exchange() {
        let mut c = cfg(vec![Mech::Plain], false, Goal::Session);
        c.sasl2 = true;
        c.sm = true;
        let mut l = Login::new(&c, "user1".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let feats = b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms><authentication xmlns='urn:xmpp:sasl:2'><mechanism>PLAIN</mechanism></authentication></stream:features>";
        let Ok(Step::Send(auth)) = l.on_frame(FrameKind::Element, feats) else {
            panic!("expected authenticate");
        };
        let auth = String::from_utf8(auth).expect("utf8");
        assert!(
            auth.starts_with("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>")
                && auth.contains("<bind xmlns='urn:xmpp:bind:0'><tag>r</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"),
            "{auth}"
        );
        let success = b"<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>user1@d/r/abc</authorization-identifier><bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='s1' resume='true'/></bound></success>";
        assert_eq!(
            l.on_frame(FrameKind::Element, success),
            Ok(Step::Done(b"<presence/>".to_vec()))
        );
        assert_eq!(l.bound.as_deref(), Some("user1@d/r/abc"));
        assert_eq!(l.sm, SmOutcome::Enabled(Some("s1".into())));
        // A server without SASL2: the RFC 6120 way.
        let mut l = Login::new(&c, "user1".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let Ok(Step::Send(auth)) = l.on_frame(FrameKind::Element, FEATS) else {
            panic!("expected auth");
        };
        assert!(String::from_utf8_lossy(&auth).starts_with("<auth "));
    }

    const FEATS: &[u8] = b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>";

    #[test]
    fn plain_login_with_required_session() {
        let c = cfg(vec![Mech::ScramSha256, Mech::Plain], false, Goal::Session);
        let mut l = Login::new(&c, "user1".into());
        assert_eq!(
            l.on_frame(FrameKind::StreamOpen, b"<stream:stream>"),
            Ok(Step::Wait)
        );
        let Ok(Step::Send(auth)) = l.on_frame(FrameKind::Element, FEATS) else {
            panic!("expected auth");
        };
        let auth = String::from_utf8(auth).expect("utf8");
        assert!(auth.contains("mechanism='PLAIN'"), "{auth}");
        assert!(auth.contains(&B64.encode("\0user1\0pencil")));
        assert!(matches!(
            l.on_frame(
                FrameKind::Element,
                b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
            ),
            Ok(Step::Restart(_))
        ));
        assert_eq!(
            l.on_frame(FrameKind::StreamOpen, b"<stream:stream>"),
            Ok(Step::Wait)
        );
        let f2 = b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>";
        assert!(matches!(
            l.on_frame(FrameKind::Element, f2),
            Ok(Step::Send(_))
        ));
        let Ok(Step::Send(sess)) =
            l.on_frame(FrameKind::Element, b"<iq type='result' id='bind1'/>")
        else {
            panic!("expected session iq");
        };
        assert!(String::from_utf8_lossy(&sess).contains("xmpp-session"));
        assert_eq!(
            l.on_frame(FrameKind::Element, b"<iq type='result' id='sess1'/>"),
            Ok(Step::Done(b"<presence/>".to_vec()))
        );
        assert!(l.is_done());
    }

    #[test]
    fn optional_session_is_skipped_and_failure_reported() {
        let c = cfg(vec![Mech::ScramSha1], false, Goal::Session);
        let mut l = Login::new(&c, "user1".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let Ok(Step::Send(auth)) = l.on_frame(FrameKind::Element, FEATS) else {
            panic!("expected auth");
        };
        assert!(String::from_utf8_lossy(&auth).contains("SCRAM-SHA-1"));
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
            ),
            Err(LoginError::Auth("not-authorized".into()))
        );
        assert!(!session_required(
            b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
        ));
        assert!(session_required(
            b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/><x><optional/></x>"
        ));
    }

    #[test]
    fn starttls_required_but_missing() {
        let c = cfg(vec![Mech::Plain], true, Goal::Session);
        let mut l = Login::new(&c, "u".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        assert_eq!(
            l.on_frame(FrameKind::Element, FEATS),
            Err(LoginError::NoTls)
        );
        let mut l = Login::new(&c, "u".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let tls = b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
        assert!(matches!(
            l.on_frame(FrameKind::Element, tls),
            Ok(Step::Send(_))
        ));
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
            ),
            Ok(Step::StartTls)
        );
        // After TLS the same features no longer trigger STARTTLS.
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let Ok(Step::Send(auth)) = l.on_frame(FrameKind::Element, FEATS) else {
            panic!("expected auth");
        };
        assert!(String::from_utf8_lossy(&auth).starts_with("<auth"));
    }

    #[test]
    fn register_conflict_counts_as_existing() {
        let c = cfg(vec![Mech::Plain], false, Goal::Register);
        let mut l = Login::new(&c, "u".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        let Ok(Step::Send(iq)) = l.on_frame(FrameKind::Element, FEATS) else {
            panic!("expected register iq");
        };
        assert!(String::from_utf8_lossy(&iq).contains("<username>u</username>"));
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<iq type='error' id='reg1'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
            Ok(Step::Done(Vec::new()))
        );
        assert_eq!(l.registered, Some(Registered::Existed));
    }

    /// Post-auth features offering SM.
    const F2_SM: &[u8] = b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>";

    /// Runs a PLAIN login up to the post-auth features `f2`, returning the reply to them.
    fn to_features2<'a>(
        c: &'a LoginConfig,
        resume: Option<(&str, u32)>,
        f2: &[u8],
    ) -> (Login<'a>, Result<Step, LoginError>) {
        let mut l = Login::new(c, "u".into());
        if let Some((id, h)) = resume {
            l = l.with_resume(id.into(), h);
        }
        l.on_frame(FrameKind::StreamOpen, b"<s>").expect("open");
        l.on_frame(FrameKind::Element, FEATS).expect("auth");
        l.on_frame(
            FrameKind::Element,
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        )
        .expect("success");
        l.on_frame(FrameKind::StreamOpen, b"<s>").expect("reopen");
        let step = l.on_frame(FrameKind::Element, f2);
        (l, step)
    }

    #[test]
    fn failed_resume_binds_and_enables_afresh() {
        let mut c = cfg(vec![Mech::Plain], false, Goal::Session);
        c.sm = true;
        let (mut l, step) = to_features2(&c, Some(("abc", 7)), F2_SM);
        assert_eq!(
            step,
            Ok(Step::Send(
                b"<resume xmlns='urn:xmpp:sm:3' previd='abc' h='7'/>".to_vec()
            ))
        );
        let failed = b"<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>";
        let Ok(Step::Send(bind)) = l.on_frame(FrameKind::Element, failed) else {
            panic!("expected bind");
        };
        assert!(String::from_utf8_lossy(&bind).contains("xmpp-bind"));
        assert_eq!(
            l.on_frame(FrameKind::Element, b"<iq type='result' id='bind1'/>"),
            Ok(Step::Send(sm::ENABLE.to_vec()))
        );
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<enabled xmlns='urn:xmpp:sm:3' id='new' resume='true'/>"
            ),
            Ok(Step::Done(b"<presence/>".to_vec()))
        );
        assert_eq!(l.sm, SmOutcome::Enabled(Some("new".into())));
        assert!(l.resume_failed);
    }

    #[test]
    fn resumed_needs_no_bind_nor_presence() {
        let mut c = cfg(vec![Mech::Plain], false, Goal::Session);
        c.sm = true;
        let (mut l, _) = to_features2(&c, Some(("abc", 7)), F2_SM);
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<resumed xmlns='urn:xmpp:sm:3' previd='abc' h='3'/>"
            ),
            Ok(Step::Done(Vec::new()))
        );
        assert_eq!(l.sm, SmOutcome::Resumed(3));
        assert!(!l.resume_failed);
    }

    #[test]
    fn sm_wanted_but_not_offered_fails() {
        let mut c = cfg(vec![Mech::Plain], false, Goal::Session);
        c.sm = true;
        let f2 =
            b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
        assert_eq!(to_features2(&c, None, f2).1, Err(LoginError::Sm));
    }

    #[test]
    fn stream_error_is_reported() {
        let c = cfg(vec![Mech::Plain], false, Goal::Session);
        let mut l = Login::new(&c, "u".into());
        l.on_frame(FrameKind::StreamOpen, b"<stream:stream>")
            .expect("open");
        assert_eq!(
            l.on_frame(
                FrameKind::Element,
                b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
            ),
            Err(LoginError::Stream("host-unknown".into()))
        );
    }
}
