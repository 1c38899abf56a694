//! Requests to typed commands: path, method, query and JSON body checked here, so the runtime
//! only carries out valid commands.

use percent_encoding::percent_decode_str;

use super::shapes::{NewDomain, NewMessage, NewPassword, NewStanza, NewUser};
use super::ApiError;
use crate::config::Domain;
use crate::jid::{BareJid, FullJid, Jid};
use crate::xml::{Stanza, StanzaKind};

/// Largest request body accepted (the biggest is a stanza, itself bounded far lower by clients).
pub const MAX_BODY: usize = 64 * 1024;

/// A valid admin request.
#[derive(Debug, Clone)]
pub enum Command {
    /// `GET /api/users[?domain=D]`.
    ListUsers(Option<Domain>),
    /// `POST /api/users`.
    AddUser(BareJid, String),
    /// `DELETE /api/users/{jid}`.
    DelUser(BareJid),
    /// `PUT /api/users/{jid}/password`.
    SetPassword(BareJid, String),
    /// `GET /api/sessions`.
    ListSessions,
    /// `DELETE /api/sessions/{full jid}`.
    KickSession(FullJid),
    /// `DELETE /api/sessions?jid=BARE`.
    KickUser(BareJid),
    /// `POST /api/messages` and `POST /api/stanzas`: a stanza routed from `from` (its `from` and
    /// `to` attributes set and checked).
    Route {
        /// Sender.
        from: Jid,
        /// Recipient.
        to: Jid,
        /// The stanza (boxed: the other commands are small).
        stanza: Box<Stanza>,
    },
    /// `GET /api/domains`.
    ListDomains,
    /// `POST /api/domains`.
    AddDomain(Domain),
    /// `DELETE /api/domains/{domain}`.
    DelDomain(Domain),
    /// `GET /api/rooms`.
    ListRooms,
    /// `GET /api/stats`.
    Stats,
    /// `GET /api/cluster`.
    Cluster,
    /// `POST /api/route/explain`: send `stanza` as `from` and trace its route.
    Explain {
        /// Sender (a bare JID enters as resource `explain` when it has no session).
        from: Jid,
        /// The stanza's XML, parsed by the explain core.
        stanza: String,
    },
}

impl Command {
    /// What a command changes, for the audit log (never a password); `None` for reads.
    pub fn audit(&self) -> Option<String> {
        Some(match self {
            Command::AddUser(jid, _) => format!("add account {jid}"),
            Command::DelUser(jid) => format!("delete account {jid}"),
            Command::SetPassword(jid, _) => format!("change the password of {jid}"),
            Command::KickSession(jid) => format!("kick session {jid}"),
            Command::KickUser(jid) => format!("kick every session of {jid}"),
            Command::Route { from, to, .. } => format!("send a stanza from {from} to {to}"),
            Command::AddDomain(d) => format!("add domain {}", d.as_str()),
            Command::DelDomain(d) => format!("remove domain {}", d.as_str()),
            Command::Explain { from, .. } => format!("send a traced stanza from {from}"),
            Command::ListUsers(_)
            | Command::ListSessions
            | Command::ListDomains
            | Command::ListRooms
            | Command::Stats
            | Command::Cluster => return None,
        })
    }
}

/// True when a request with this method carries a body to read.
pub fn has_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT")
}

/// Parses one request under `/api`. `body` is empty for methods without one.
pub fn parse(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Command, ApiError> {
    let not_found = || ApiError::NotFound(path.to_owned());
    let rest = path.strip_prefix("/api/").ok_or_else(not_found)?;
    let (head, tail) = match rest.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    let tail = tail.filter(|t| !t.is_empty()).map(decode);
    let q = |name: &str| query.and_then(|q| query_param(q, name));
    match (head, tail) {
        ("users", None) => match method {
            "GET" => Ok(Command::ListUsers(
                q("domain").map(|d| domain(&d)).transpose()?,
            )),
            "POST" => {
                let u: NewUser = json(body)?;
                Ok(Command::AddUser(
                    account("jid", &u.jid)?,
                    password(u.password)?,
                ))
            }
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        },
        ("users", Some(t)) => match t.strip_suffix("/password") {
            Some(jid) => match method {
                "PUT" => {
                    let p: NewPassword = json(body)?;
                    Ok(Command::SetPassword(
                        account("jid", jid)?,
                        password(p.password)?,
                    ))
                }
                _ => Err(ApiError::MethodNotAllowed("PUT")),
            },
            None => match method {
                "DELETE" => Ok(Command::DelUser(account("jid", &t)?)),
                _ => Err(ApiError::MethodNotAllowed("DELETE")),
            },
        },
        ("sessions", None) => match method {
            "GET" => Ok(Command::ListSessions),
            "DELETE" => {
                let jid = q("jid").unwrap_or_default();
                Ok(Command::KickUser(account("jid", &jid)?))
            }
            _ => Err(ApiError::MethodNotAllowed("GET, DELETE")),
        },
        ("sessions", Some(t)) => match method {
            "DELETE" => FullJid::parse(&t)
                .map(Command::KickSession)
                .map_err(|e| bad_jid("jid", &t, e)),
            _ => Err(ApiError::MethodNotAllowed("DELETE")),
        },
        ("messages", None) => match method {
            "POST" => message(json(body)?),
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        ("stanzas", None) => match method {
            "POST" => stanza(json(body)?),
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        ("domains", None) => match method {
            "GET" => Ok(Command::ListDomains),
            "POST" => {
                let d: NewDomain = json(body)?;
                Ok(Command::AddDomain(domain(&d.domain)?))
            }
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        },
        ("domains", Some(t)) => match method {
            "DELETE" => Ok(Command::DelDomain(domain(&t)?)),
            _ => Err(ApiError::MethodNotAllowed("DELETE")),
        },
        ("rooms", None) => match method {
            "GET" => Ok(Command::ListRooms),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        ("cluster", None) => match method {
            "GET" => Ok(Command::Cluster),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        ("stats", None) => match method {
            "GET" => Ok(Command::Stats),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        ("route", Some(t)) if t == "explain" => match method {
            "POST" => {
                let s: NewStanza = json(body)?;
                let from = Jid::parse(&s.from).map_err(|e| bad_jid("from", &s.from, e))?;
                Ok(Command::Explain {
                    from,
                    stanza: s.stanza,
                })
            }
            _ => Err(ApiError::MethodNotAllowed("POST")),
        },
        _ => Err(not_found()),
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The value of `name` in a query string (`+` is a space, as in HTML forms).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(&v.replace('+', " ")))
    })
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

fn bad_jid(field: &'static str, value: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::BadJid {
        field,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

fn domain(s: &str) -> Result<Domain, ApiError> {
    Domain::parse(s).map_err(|e| ApiError::BadDomain {
        value: s.to_owned(),
        reason: e.to_string(),
    })
}

/// A bare `user@domain`.
fn account(field: &'static str, s: &str) -> Result<BareJid, ApiError> {
    let jid = BareJid::parse(s).map_err(|e| bad_jid(field, s, e))?;
    if jid.node().is_none() {
        return Err(bad_jid(
            field,
            s,
            "an account needs a localpart (user@domain)",
        ));
    }
    Ok(jid)
}

fn password(p: String) -> Result<String, ApiError> {
    if p.is_empty() {
        return Err(ApiError::EmptyPassword);
    }
    Ok(p)
}

fn message(m: NewMessage) -> Result<Command, ApiError> {
    let from = Jid::parse(&m.from).map_err(|e| bad_jid("from", &m.from, e))?;
    let to = Jid::parse(&m.to).map_err(|e| bad_jid("to", &m.to, e))?;
    let kind = m.kind.unwrap_or_else(|| "chat".to_owned());
    if !matches!(kind.as_str(), "chat" | "normal" | "headline" | "groupchat") {
        return Err(ApiError::BadStanza(format!(
            "message type `{kind}`: chat, normal, headline or groupchat"
        )));
    }
    let el = crate::xml::Element::new("message", crate::xmpp::ns::CLIENT)
        .with_attr("type", kind)
        .with_child(crate::xml::Element::new("body", crate::xmpp::ns::CLIENT).with_text(&m.body));
    let mut stanza = Stanza::from_element(&el);
    stanza.set_from(from.as_str());
    stanza.set_to(to.as_str());
    Ok(Command::Route {
        from,
        to,
        stanza: Box::new(stanza),
    })
}

fn stanza(s: NewStanza) -> Result<Command, ApiError> {
    let from = Jid::parse(&s.from).map_err(|e| bad_jid("from", &s.from, e))?;
    let mut stanza =
        Stanza::parse(s.stanza.into_bytes()).map_err(|e| ApiError::BadStanza(e.to_string()))?;
    if stanza.kind() == StanzaKind::Other {
        return Err(ApiError::BadStanza(format!(
            "<{}/> is not a stanza: message, presence or iq",
            stanza.name()
        )));
    }
    let to = stanza
        .to()
        .ok_or_else(|| ApiError::BadStanza("the stanza needs a `to`".to_owned()))?
        .into_owned();
    let to = Jid::parse(&to).map_err(|e| bad_jid("to", &to, e))?;
    stanza.set_from(from.as_str());
    Ok(Command::Route {
        from,
        to,
        stanza: Box::new(stanza),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str, query: Option<&str>, body: &str) -> Result<Command, ApiError> {
        parse(method, path, query, body.as_bytes())
    }

    #[test]
    fn users() {
        assert!(matches!(
            p("GET", "/api/users", Some("domain=Example.COM"), ""),
            Ok(Command::ListUsers(Some(ref d))) if d.as_str() == "example.com"
        ));
        assert!(matches!(
            p("POST", "/api/users", None, r#"{"jid":"Alice@localhost","password":"pw"}"#),
            Ok(Command::AddUser(ref j, ref pw)) if j.as_str() == "alice@localhost" && pw == "pw"
        ));
        assert!(matches!(
            p(
                "POST",
                "/api/users",
                None,
                r#"{"jid":"localhost","password":"pw"}"#
            ),
            Err(ApiError::BadJid { .. })
        ));
        assert!(matches!(
            p(
                "POST",
                "/api/users",
                None,
                r#"{"jid":"a@localhost","password":""}"#
            ),
            Err(ApiError::EmptyPassword)
        ));
        assert!(matches!(
            p("POST", "/api/users", None, r#"{"jid":"a@localhost""#),
            Err(ApiError::BadJson(_))
        ));
        assert!(matches!(
            p("PUT", "/api/users/a%40localhost/password", None, r#"{"password":"x"}"#),
            Ok(Command::SetPassword(ref j, _)) if j.as_str() == "a@localhost"
        ));
        assert!(matches!(
            p("DELETE", "/api/users/a@localhost", None, ""),
            Ok(Command::DelUser(_))
        ));
        assert!(matches!(
            p("PATCH", "/api/users", None, ""),
            Err(ApiError::MethodNotAllowed("GET, POST"))
        ));
    }

    #[test]
    fn sessions_and_routing() {
        assert!(matches!(
            p("DELETE", "/api/sessions/a@localhost/phone/2", None, ""),
            Ok(Command::KickSession(ref j)) if j.resource() == "phone/2"
        ));
        assert!(matches!(
            p("DELETE", "/api/sessions", Some("jid=a%40localhost"), ""),
            Ok(Command::KickUser(_))
        ));
        assert!(matches!(
            p("DELETE", "/api/sessions/a@localhost", None, ""),
            Err(ApiError::BadJid { .. })
        ));
        let Ok(Command::Route { stanza, .. }) = p(
            "POST",
            "/api/messages",
            None,
            r#"{"from":"admin@localhost","to":"b@localhost","body":"hi <&>"}"#,
        ) else {
            panic!("message refused")
        };
        let text = String::from_utf8_lossy(stanza.bytes()).into_owned();
        assert!(
            text.contains("hi &lt;&amp;&gt;") && text.contains("to='b@localhost'"),
            "{text}"
        );
        assert!(matches!(
            p(
                "POST",
                "/api/stanzas",
                None,
                r#"{"from":"a@localhost","stanza":"<message to='b@localhost'><body>x</body></message>"}"#
            ),
            Ok(Command::Route { .. })
        ));
        for bad in [
            r#"{"from":"a@localhost","stanza":"<message to='b@localhost'>"}"#,
            r#"{"from":"a@localhost","stanza":"<message><body>x</body></message>"}"#,
            r#"{"from":"a@localhost","stanza":"<foo to='b@localhost'/>"}"#,
        ] {
            assert!(
                matches!(
                    p("POST", "/api/stanzas", None, bad),
                    Err(ApiError::BadStanza(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            p(
                "POST",
                "/api/messages",
                None,
                r#"{"from":"@x","to":"b@localhost","body":""}"#
            ),
            Err(ApiError::BadJid { field: "from", .. })
        ));
    }

    #[test]
    fn domains_and_unknown_paths() {
        assert!(matches!(
            p("POST", "/api/domains", None, r#"{"domain":"New.Example"}"#),
            Ok(Command::AddDomain(ref d)) if d.as_str() == "new.example"
        ));
        assert!(matches!(
            p("DELETE", "/api/domains/bad_domain", None, ""),
            Err(ApiError::BadDomain { .. })
        ));
        assert!(matches!(
            p("GET", "/api/nope", None, ""),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            p("GET", "/api", None, ""),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            p("GET", "/api/stats", None, ""),
            Ok(Command::Stats)
        ));
        assert!(matches!(
            p("POST", "/api/rooms", None, ""),
            Err(ApiError::MethodNotAllowed("GET"))
        ));
    }
}
