//! The admin API's driver (`/api`): checks the token, reads the body, parses the request with the
//! sans-IO `crate::admin`, and carries the command out on the store (`ctx.store.call`) and on the
//! shards (a closure sent to every shard over the mesh, its answer back over a one-shot slot).

pub(crate) mod conns;
mod shards;

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};

use super::ShardCtx;
use crate::admin::shapes::{
    DomainInfo, Domains, Kicked, RoomInfo, Rooms, Routed, Sessions, Stats, UserDone, Users,
};
use crate::admin::{ApiError, Command};
use crate::auth::ScramSecrets;
use crate::config::Config;
use crate::hooks::Acc;
use crate::jid::BareJid;
use crate::store::{Store, StoreError};
use shards::on_every_shard;

/// What the admin API needs from the configuration, kept on every shard.
pub(crate) struct AdminState {
    /// `[admin] token`; `None`: the API answers 403.
    token: Option<String>,
    /// When the server started.
    started: Instant,
    /// PBKDF2 iterations for new secrets.
    iterations: u32,
    /// `general.hosts`.
    hosts: Vec<String>,
    /// `[modules.muc]` is on.
    muc: bool,
    /// `cluster.node`, if in a cluster.
    cluster_node: Option<String>,
}

impl AdminState {
    /// The admin settings of `config`.
    pub(crate) fn new(config: &Config) -> AdminState {
        AdminState {
            token: config.admin.as_ref().map(|a| a.token.clone()),
            started: Instant::now(),
            iterations: config.auth.scram_iterations,
            hosts: config.general.hosts.iter().map(|h| h.to_string()).collect(),
            muc: config.modules.contains_key(crate::modules::muc::NAME),
            cluster_node: config.cluster.as_ref().map(|c| c.node.clone()),
        }
    }
}

/// Serves one `/api` request.
pub(super) async fn serve(req: Request<Incoming>, ctx: &Rc<ShardCtx>) -> Response<Full<Bytes>> {
    match handle(req, ctx).await {
        Ok((status, body)) => json(status, body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = json(status, e.body());
            match e {
                ApiError::Unauthorized => {
                    r.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                ApiError::MethodNotAllowed(allowed) => {
                    r.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static(allowed));
                }
                _ => {}
            }
            r
        }
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

type Answer = Result<(StatusCode, Vec<u8>), ApiError>;

fn ok<T: serde::Serialize>(status: StatusCode, value: &T) -> Answer {
    // The shapes hold strings, numbers and lists only: they always serialize.
    Ok((status, serde_json::to_vec(value).unwrap_or_default()))
}

async fn handle(req: Request<Incoming>, ctx: &Rc<ShardCtx>) -> Answer {
    let auth = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    // Before the body is read: an unauthenticated client cannot make the server buffer it.
    crate::admin::check_token(ctx.admin.token.as_deref(), auth)?;
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = if crate::admin::has_body(&method) {
        super::http::read_body(req.into_body(), crate::admin::MAX_BODY)
            .await
            .map_err(|e| match e {
                super::http::BodyError::TooLarge => ApiError::TooLarge(crate::admin::MAX_BODY),
                super::http::BodyError::Broken => {
                    ApiError::BadJson("request body broken off".to_owned())
                }
            })?
    } else {
        Bytes::new()
    };
    let cmd = crate::admin::parse(&method, &path, query.as_deref(), &body)?;
    let audit = cmd.audit();
    let answer = run(cmd, ctx).await;
    // What an administrator changed, and whether it was done: the operator's audit trail.
    if let Some(action) = audit {
        match &answer {
            Ok((status, _)) => {
                tracing::info!(target: "petrel::audit", %action, status = status.as_u16(), "admin API")
            }
            Err(e) => {
                tracing::info!(target: "petrel::audit", %action, error = %e, "admin API: refused")
            }
        }
    }
    answer
}

/// Runs an account job on the store; its `UserExists` and `NoSuchUser` become the API's.
async fn account_job<T: Send + 'static>(
    ctx: &Rc<ShardCtx>,
    jid: &BareJid,
    job: impl FnOnce(&Store, &BareJid) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let j = jid.clone();
    match ctx.store.call(move |s| job(s, &j)).await? {
        Err(StoreError::UserExists) => Err(ApiError::UserExists(jid.to_string())),
        Err(StoreError::NoSuchUser) => Err(ApiError::NoSuchUser(jid.to_string())),
        other => Ok(other?),
    }
}

fn user_done(status: StatusCode, jid: &BareJid, kicked: usize) -> Answer {
    let done = UserDone {
        jid: jid.to_string(),
        kicked,
    };
    ok(status, &done)
}

/// Carries out one command.
async fn run(cmd: Command, ctx: &Rc<ShardCtx>) -> Answer {
    let st = &ctx.admin;
    match cmd {
        Command::ListUsers(domain) => {
            let users = ctx
                .store
                .call(move |s| s.list_users(domain.as_ref().map(|d| d.as_str())))
                .await??;
            let users = users.iter().map(|j| j.to_string()).collect();
            ok(StatusCode::OK, &Users { users })
        }
        Command::AddUser(jid, password) => {
            if !ctx.shard.borrow().is_hosted(jid.domain()) {
                return Err(ApiError::DomainNotServed(jid.domain().to_owned()));
            }
            let iterations = st.iterations;
            // PBKDF2 runs on the store thread, never on the shard.
            account_job(ctx, &jid, move |s, j| {
                s.add_user(j, &ScramSecrets::derive(&password, iterations))
            })
            .await?;
            user_done(StatusCode::CREATED, &jid, 0)
        }
        Command::DelUser(jid) => {
            let roster = account_job(ctx, &jid, |s, j| s.remove_user(j)).await?;
            crate::modules::register::account_removed(
                &mut ctx.shard.borrow_mut(),
                jid.clone(),
                roster,
            );
            ctx.flush();
            let bare = jid.clone();
            let kicked = on_every_shard(ctx, move |s| {
                shards::kick_home(s, &bare, |_| true, "account deleted by administrator")
            })
            .await;
            user_done(StatusCode::OK, &jid, kicked.into_iter().sum())
        }
        Command::SetPassword(jid, password) => {
            let iterations = st.iterations;
            account_job(ctx, &jid, move |s, j| {
                s.set_secrets(j, &ScramSecrets::derive(&password, iterations))
            })
            .await?;
            user_done(StatusCode::OK, &jid, 0)
        }
        Command::ListSessions => {
            let mut sessions: Vec<_> = on_every_shard(ctx, |s| conns::sessions(s))
                .await
                .into_iter()
                .flatten()
                .collect();
            sessions.sort_by(|a, b| a.jid.cmp(&b.jid));
            ok(StatusCode::OK, &Sessions { sessions })
        }
        Command::KickSession(full) => {
            let f = full.clone();
            let bare = full.bare();
            let kicked: usize = on_every_shard(ctx, move |s| {
                shards::kick_home(s, &bare, |j| *j == f, "kicked by administrator")
            })
            .await
            .into_iter()
            .sum();
            if kicked == 0 {
                return Err(ApiError::NoSuchSession(full.to_string()));
            }
            ok(StatusCode::OK, &Kicked { kicked })
        }
        Command::KickUser(bare) => {
            let kicked = on_every_shard(ctx, move |s| {
                shards::kick_home(s, &bare, |_| true, "kicked by administrator")
            })
            .await
            .into_iter()
            .sum();
            ok(StatusCode::OK, &Kicked { kicked })
        }
        Command::Route { from, to, stanza } => {
            let text = String::from_utf8_lossy(stanza.bytes()).into_owned();
            crate::hooks::clock::set_now(Instant::now());
            {
                let mut shard = ctx.shard.borrow_mut();
                // A server-originated packet (no session sent it): straight to the router, so
                // the recipient's side runs in full and the sender's `user_send_*` hooks do not.
                let acc = Acc::new(*stanza, from, to, shard.id);
                crate::router::route(&mut shard, acc);
                shard.drain_to_route();
            }
            ctx.flush();
            ok(StatusCode::ACCEPTED, &Routed { stanza: text })
        }
        Command::ListDomains => {
            let mut domains: Vec<DomainInfo> = st
                .hosts
                .iter()
                .map(|d| DomainInfo {
                    domain: d.clone(),
                    dynamic: false,
                })
                .collect();
            let dynamic = ctx.shard.borrow().dynamic_hosts.list();
            domains.extend(dynamic.into_iter().map(|domain| DomainInfo {
                domain,
                dynamic: true,
            }));
            ok(StatusCode::OK, &Domains { domains })
        }
        Command::AddDomain(domain) => {
            let d = domain.to_string();
            // A configured host, or a service's domain (conference., upload.): not an account domain.
            if st.hosts.contains(&d) || ctx.shard.borrow().service(&d).is_some() {
                return Err(ApiError::DomainExists(d));
            }
            let is_component = ctx
                .shard
                .borrow()
                .ext
                .get::<crate::component::Routes>()
                .is_some_and(|r| r.lookup(&d) != crate::component::routes::Lookup::Unknown);
            if is_component {
                return Err(ApiError::ComponentDomain(d));
            }
            let stored = d.clone();
            if !ctx.store.call(move |s| s.add_domain(&stored)).await?? {
                return Err(ApiError::DomainExists(d));
            }
            let each = d.clone();
            // Answered once every shard serves it: a client may connect right after.
            on_every_shard(ctx, move |s| {
                s.dynamic_hosts.insert(&each);
            })
            .await;
            tracing::info!(domain = %d, "domain added");
            let info = DomainInfo {
                domain: d,
                dynamic: true,
            };
            ok(StatusCode::CREATED, &info)
        }
        Command::DelDomain(domain) => {
            let d = domain.to_string();
            if st.hosts.contains(&d) {
                return Err(ApiError::ConfiguredDomain(d));
            }
            let stored = d.clone();
            if !ctx.store.call(move |s| s.remove_domain(&stored)).await?? {
                return Err(ApiError::NoSuchDomain(d));
            }
            let each = d.clone();
            on_every_shard(ctx, move |s| s.remove_dynamic_host(&each)).await;
            tracing::info!(domain = %d, "domain removed");
            let info = DomainInfo {
                domain: d,
                dynamic: true,
            };
            ok(StatusCode::OK, &info)
        }
        Command::ListRooms => {
            let mut rooms: Vec<RoomInfo> = Vec::new();
            if st.muc {
                let per_shard = on_every_shard(ctx, |s| {
                    let shard = s.id.0;
                    crate::modules::muc::live_rooms(s)
                        .into_iter()
                        .map(|(jid, name, public, occupants)| RoomInfo {
                            jid,
                            name,
                            public,
                            occupants,
                            shard,
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                rooms = per_shard.into_iter().flatten().collect();
                rooms.sort_by(|a, b| a.jid.cmp(&b.jid));
            }
            ok(StatusCode::OK, &Rooms { muc: st.muc, rooms })
        }
        Command::Explain { from, stanza } => match crate::rt::explain(ctx, from, &stanza).await {
            Ok(explanation) => ok(StatusCode::OK, &explanation),
            Err(e) => Err(ApiError::BadStanza(e.to_string())),
        },
        Command::Cluster => {
            let per_shard = on_every_shard(ctx, |s| {
                (
                    s.local_sessions().count(),
                    crate::cluster::link::shard_view(s),
                )
            })
            .await;
            let mut view = crate::admin::shapes::ClusterView {
                node: st.cluster_node.clone(),
                ..Default::default()
            };
            let mut per_slot: ahash::HashMap<u16, (usize, usize)> = Default::default();
            let mut members = Vec::new();
            for (local, link) in per_shard {
                view.local_sessions += local;
                if let Some((stats, slots, m)) = link {
                    view.traffic.add(&stats);
                    for (slot, (n, avail)) in slots {
                        let e = per_slot.entry(slot).or_default();
                        e.0 += n;
                        e.1 += avail;
                    }
                    members.extend(m);
                }
            }
            view.members = members
                .into_iter()
                .map(|(slot, m)| crate::admin::shapes::ClusterMember {
                    node: m.who.node,
                    incarnation: format!("{:x}", m.who.id),
                    shards: m.shards,
                    c2s: m.c2s,
                    sessions: per_slot.get(&slot).map_or(0, |e| e.0),
                    available: per_slot.get(&slot).map_or(0, |e| e.1),
                })
                .collect();
            view.members.sort_by(|a, b| a.node.cmp(&b.node));
            ok(StatusCode::OK, &view)
        }
        Command::Stats => {
            let mut per_shard = on_every_shard(ctx, shards::stats).await;
            per_shard.sort_by_key(|s| s.shard);
            let stats = Stats {
                uptime_secs: st.started.elapsed().as_secs(),
                shards: per_shard.len(),
                sessions: per_shard.iter().map(|s| s.sessions).sum(),
                routed: per_shard.iter().map(|s| s.routed).sum(),
                store_queue: ctx.store.queued(),
                per_shard,
            };
            ok(StatusCode::OK, &stats)
        }
    }
}
