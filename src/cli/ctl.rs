//! `petrel ctl`: the command line of a running server through its admin API (like
//! mongooseimctl), one command per request. The URL defaults to the first `[[listen.http]]`
//! serving `api` in the configuration (on loopback when it listens on every address), the token to
//! its `[admin] token`.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::admin::shapes::{
    DomainInfo, Domains, Kicked, NewDomain, NewMessage, NewPassword, NewStanza, NewUser, Rooms,
    Routed, Sessions, Stats, UserDone, Users,
};
use crate::config::{Config, HttpHandler, TlsMode};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Characters kept as they are in a path segment (JIDs stay readable).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'@')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// `petrel ctl [--url URL] [--token T] [--json] COMMAND`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin API's base URL, e.g. http://127.0.0.1:5280 (default: the first [[listen.http]]
    /// serving "api" in the configuration).
    #[arg(long)]
    pub url: Option<String>,
    /// The bearer token (default: [admin] token of the configuration).
    #[arg(long)]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `petrel ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// List every session on every shard.
    Sessions,
    /// Close a session (full JID) or all of a user's sessions (bare JID).
    Kick {
        /// user@domain/resource or user@domain.
        jid: String,
    },
    /// Manage accounts.
    User {
        /// The user command.
        #[command(subcommand)]
        command: CtlUser,
    },
    /// Manage the domains served at run time.
    Domain {
        /// The domain command.
        #[command(subcommand)]
        command: CtlDomain,
    },
    /// Send a chat message from FROM to TO.
    Send {
        /// Sender JID.
        from: String,
        /// Recipient JID.
        to: String,
        /// Message text.
        body: String,
        /// Message type: chat, normal, headline or groupchat.
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Route one stanza (XML with a `to`) as sent by FROM.
    Stanza {
        /// Sender JID.
        from: String,
        /// The stanza, e.g. "<message to='a@localhost'><body>hi</body></message>".
        xml: String,
    },
    /// List the chat rooms in use.
    Rooms,
    /// Server statistics.
    Stats,
    /// This node's view of its cluster: members, their sessions, cross-node traffic.
    Cluster,
    /// The route of a stanza.
    Route {
        /// What to do with it.
        #[command(subcommand)]
        cmd: CtlRoute,
    },
}

/// `petrel ctl route ...`.
#[derive(Debug, Subcommand)]
pub enum CtlRoute {
    /// Send STANZA as FROM and show each step of its route (hooks and their handlers, routing
    /// modules, local delivery, home shard, resources chosen or offline, receive side) with its
    /// time. The stanza is really sent.
    Explain {
        /// Sender JID (a bare JID with no session enters as resource `explain`).
        from: String,
        /// The stanza, e.g. "<message to='bob@localhost' type='chat'><body>hi</body></message>".
        xml: String,
    },
}

/// `petrel ctl user ...`.
#[derive(Debug, Subcommand)]
pub enum CtlUser {
    /// Create an account.
    Add {
        /// user@domain.
        jid: String,
        /// Its password, or "-" to read one line from standard input.
        password: String,
    },
    /// Delete an account (its archive too) and close its sessions.
    Del {
        /// user@domain.
        jid: String,
    },
    /// List accounts.
    List {
        /// Only this domain's.
        domain: Option<String>,
    },
    /// Change a password.
    Passwd {
        /// user@domain.
        jid: String,
        /// The new password, or "-" to read one line from standard input.
        password: String,
    },
}

/// `petrel ctl domain ...`.
#[derive(Debug, Subcommand)]
pub enum CtlDomain {
    /// Serve a new domain (kept across restarts).
    Add {
        /// The domain.
        domain: String,
    },
    /// Stop serving a run-time domain (its sessions are closed).
    Del {
        /// The domain.
        domain: String,
    },
    /// List the served domains.
    List,
}

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No URL given and no `[[listen.http]]` serves `api`.
    #[error("no --url given and no [[listen.http]] serving \"api\" in {0}")]
    NoUrl(String),
    /// No token given and no `[admin]` in the configuration.
    #[error("no --token given and no [admin] token in {0}")]
    NoToken(String),
    /// The listener is HTTPS, which this client does not speak.
    #[error("petrel ctl speaks plain HTTP only: give --url http://... of a listener with tls = \"none\" (e.g. on 127.0.0.1)")]
    Https,
    /// The request did not get an answer.
    #[error("{url}: {source}")]
    Http {
        /// The request's URL.
        url: String,
        /// What went wrong.
        source: Box<ureq::Error>,
    },
    /// The API refused the request.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("unexpected answer: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
    /// The password is empty or could not be read.
    #[error(transparent)]
    Password(super::user::UserError),
}

/// Runs one `ctl` command against the server of `config`.
pub(super) fn run(config: &Config, args: CtlArgs) -> Result<(), CtlError> {
    let source = config.source.display().to_string();
    let base = match args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => default_url(config).ok_or_else(|| CtlError::NoUrl(source.clone()))??,
    };
    if base.starts_with("https:") {
        return Err(CtlError::Https);
    }
    let token = args
        .token
        .or_else(|| config.admin.as_ref().map(|a| a.token.clone()))
        .ok_or(CtlError::NoToken(source))?;
    let c = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into(),
        base,
        token,
    };
    let mut out = std::io::stdout().lock();
    let json = args.json;
    match args.command {
        CtlCommand::Sessions => {
            let s: Sessions = c.get("/api/sessions")?;
            show(&mut out, json, &s, |o| {
                table(
                    o,
                    &[
                        "JID",
                        "SHARD",
                        "PEER",
                        "TRANSPORT",
                        "PRIORITY",
                        "SINCE",
                        "DETACHED",
                    ],
                    s.sessions.iter().map(|x| {
                        vec![
                            x.jid.clone(),
                            x.shard.to_string(),
                            x.peer.clone(),
                            x.transport.clone(),
                            x.priority.map_or("-".to_owned(), |p| p.to_string()),
                            since(x.since),
                            x.detached_since.map_or("-".to_owned(), since),
                        ]
                    }),
                )
            })
        }
        CtlCommand::Kick { jid } => {
            let k: Kicked = if jid.contains('/') {
                c.send(
                    "DELETE",
                    &format!("/api/sessions/{}", seg(&jid)),
                    None::<()>,
                )?
            } else {
                c.send(
                    "DELETE",
                    &format!("/api/sessions?jid={}", seg(&jid)),
                    None::<()>,
                )?
            };
            show(&mut out, json, &k, |o| {
                writeln!(o, "{} session(s) closed", k.kicked)
            })
        }
        CtlCommand::User { command } => user(&c, &mut out, json, command),
        CtlCommand::Domain { command } => domain(&c, &mut out, json, command),
        CtlCommand::Send {
            from,
            to,
            body,
            kind,
        } => {
            let m = NewMessage {
                from,
                to,
                body,
                kind,
            };
            let r: Routed = c.send("POST", "/api/messages", Some(m))?;
            show(&mut out, json, &r, |o| writeln!(o, "routed: {}", r.stanza))
        }
        CtlCommand::Stanza { from, xml } => {
            let s = NewStanza { from, stanza: xml };
            let r: Routed = c.send("POST", "/api/stanzas", Some(s))?;
            show(&mut out, json, &r, |o| writeln!(o, "routed: {}", r.stanza))
        }
        CtlCommand::Rooms => {
            let r: Rooms = c.get("/api/rooms")?;
            show(&mut out, json, &r, |o| {
                if !r.muc {
                    return writeln!(o, "MUC is not enabled ([modules.muc])");
                }
                table(
                    o,
                    &["ROOM", "NAME", "PUBLIC", "OCCUPANTS", "SHARD"],
                    r.rooms.iter().map(|x| {
                        vec![
                            x.jid.clone(),
                            x.name.clone(),
                            yes_no(x.public),
                            x.occupants.to_string(),
                            x.shard.to_string(),
                        ]
                    }),
                )
            })
        }
        CtlCommand::Route {
            cmd: CtlRoute::Explain { from, xml },
        } => {
            let s = NewStanza { from, stanza: xml };
            let e: crate::explain::Explanation = c.send("POST", "/api/route/explain", Some(s))?;
            show(&mut out, json, &e, |o| write!(o, "{}", e.render_text()))
        }
        CtlCommand::Cluster => {
            let v: crate::admin::shapes::ClusterView = c.get("/api/cluster")?;
            show(&mut out, json, &v, |o| {
                let Some(node) = &v.node else {
                    return writeln!(o, "not in a cluster (no [cluster] in the configuration)");
                };
                writeln!(o, "node            {node}")?;
                writeln!(o, "local sessions  {}", v.local_sessions)?;
                let t = &v.traffic;
                writeln!(o, "stanzas out/in  {} / {}", t.stanzas_out, t.stanzas_in)?;
                writeln!(
                    o,
                    "refused {}, returned {}, rerouted {}, session records out/in {} / {} (dropped {})",
                    t.refused, t.returned, t.rerouted, t.sm_out, t.sm_in, t.sm_dropped
                )?;
                writeln!(o)?;
                table(
                    o,
                    &[
                        "MEMBER",
                        "INCARNATION",
                        "SHARDS",
                        "C2S",
                        "SESSIONS",
                        "AVAILABLE",
                    ],
                    v.members.iter().map(|m| {
                        vec![
                            m.node.clone(),
                            m.incarnation.clone(),
                            m.shards.to_string(),
                            m.c2s.clone(),
                            m.sessions.to_string(),
                            m.available.to_string(),
                        ]
                    }),
                )
            })
        }
        CtlCommand::Stats => {
            let s: Stats = c.get("/api/stats")?;
            show(&mut out, json, &s, |o| {
                writeln!(o, "uptime       {} s", s.uptime_secs)?;
                writeln!(o, "shards       {}", s.shards)?;
                writeln!(o, "sessions     {}", s.sessions)?;
                writeln!(o, "routed       {}", s.routed)?;
                writeln!(o, "store queue  {}", s.store_queue)?;
                writeln!(o)?;
                table(
                    o,
                    &["SHARD", "CONNECTIONS", "SESSIONS", "ROUTED", "DELIVERED"],
                    s.per_shard.iter().map(|x| {
                        vec![
                            x.shard.to_string(),
                            x.connections.to_string(),
                            x.sessions.to_string(),
                            x.routed.to_string(),
                            x.delivered.to_string(),
                        ]
                    }),
                )
            })
        }
    }
}

fn user(c: &Client, out: &mut impl Write, json: bool, cmd: CtlUser) -> Result<(), CtlError> {
    let done: UserDone = match cmd {
        CtlUser::List { domain } => {
            let path = match domain {
                Some(d) => format!("/api/users?domain={}", seg(&d)),
                None => "/api/users".to_owned(),
            };
            let u: Users = c.get(&path)?;
            return show(out, json, &u, |o| {
                for j in &u.users {
                    writeln!(o, "{j}")?;
                }
                Ok(())
            });
        }
        CtlUser::Add { jid, password } => {
            let password = stdin_password(&password)?;
            c.send("POST", "/api/users", Some(NewUser { jid, password }))?
        }
        CtlUser::Del { jid } => {
            c.send("DELETE", &format!("/api/users/{}", seg(&jid)), None::<()>)?
        }
        CtlUser::Passwd { jid, password } => {
            let password = stdin_password(&password)?;
            c.send(
                "PUT",
                &format!("/api/users/{}/password", seg(&jid)),
                Some(NewPassword { password }),
            )?
        }
    };
    show(out, json, &done, |o| {
        writeln!(o, "ok: {}", done.jid)?;
        if done.kicked > 0 {
            writeln!(o, "{} session(s) closed", done.kicked)?;
        }
        Ok(())
    })
}

fn domain(c: &Client, out: &mut impl Write, json: bool, cmd: CtlDomain) -> Result<(), CtlError> {
    let done: DomainInfo = match cmd {
        CtlDomain::List => {
            let d: Domains = c.get("/api/domains")?;
            return show(out, json, &d, |o| {
                table(
                    o,
                    &["DOMAIN", "KIND"],
                    d.domains.iter().map(|x| {
                        let kind = if x.dynamic { "run-time" } else { "configured" };
                        vec![x.domain.clone(), kind.to_owned()]
                    }),
                )
            });
        }
        CtlDomain::Add { domain } => c.send("POST", "/api/domains", Some(NewDomain { domain }))?,
        CtlDomain::Del { domain } => c.send(
            "DELETE",
            &format!("/api/domains/{}", seg(&domain)),
            None::<()>,
        )?,
    };
    show(out, json, &done, |o| writeln!(o, "ok: {}", done.domain))
}

/// The password argument, or for "-" one line of standard input (kept off the command line).
fn stdin_password(arg: &str) -> Result<String, CtlError> {
    super::user::read_password(arg, &mut std::io::stdin().lock()).map_err(CtlError::Password)
}

/// The admin API's base URL from the configuration.
fn default_url(config: &Config) -> Option<Result<String, CtlError>> {
    let l = config
        .listen
        .http
        .iter()
        .find(|l| l.handlers.contains(&HttpHandler::Api))?;
    if l.session.tls != TlsMode::None {
        return Some(Err(CtlError::Https));
    }
    let ip = match l.session.ip_address {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let port = l.session.port;
    Some(Ok(match ip {
        IpAddr::V4(a) => format!("http://{a}:{port}"),
        IpAddr::V6(a) => format!("http://[{a}]:{port}"),
    }))
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// A Unix time as RFC 3339 (UTC).
fn since(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Prints `value` as JSON, or as `human` renders it.
fn show<T: Serialize, W: Write>(
    out: &mut W,
    json: bool,
    value: &T,
    human: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> Result<(), CtlError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, value)?;
        writeln!(out)?;
    } else {
        human(out)?;
    }
    out.flush()?;
    Ok(())
}

/// Columns padded to their widest cell.
fn table(
    out: &mut impl Write,
    head: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(out, &mut head.iter().copied())?;
    for r in &rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

/// The admin API at one base URL.
struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CtlError> {
        self.send("GET", path, None::<()>)
    }

    /// One request; a JSON body when `body` is given; an error status becomes [`CtlError::Api`].
    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<impl Serialize>,
    ) -> Result<T, CtlError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let http = |source| CtlError::Http {
            url: url.clone(),
            source: Box::new(source),
        };
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            (m, body) => {
                let req = if m == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                req.header("authorization", &auth)
                    .header("content-type", "application/json")
                    .send(body.unwrap_or_default())
            }
        };
        let mut resp = result.map_err(http)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(http)?;
        if status >= 400 {
            let message = serde_json::from_str::<crate::admin::ErrorBody>(&text)
                .map(|e| e.message)
                .unwrap_or(text);
            return Err(CtlError::Api { status, message });
        }
        Ok(serde_json::from_str(&text)?)
    }
}
