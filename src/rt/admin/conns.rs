//! What the admin API lists about a shard's connections that the route does not know: the
//! client's address, the transport, when it connected, and its session (kept in the shard's
//! extensions by `conn::run`), or the session stream management keeps after the client left.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use ahash::HashMap;

use crate::admin::shapes::SessionInfo;
use crate::c2s::route::Session;
use crate::jid::FullJid;
use crate::shard::{ConnId, Shard};

/// One open connection.
pub(crate) struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// `tcp`, `websocket` or `bosh`.
    pub transport: &'static str,
    /// Seconds since the Unix epoch at accept.
    pub since: u64,
    /// The connection's session once bound (shared with its driver).
    pub session: Rc<RefCell<Option<Session>>>,
}

/// The open connections of a shard, by id.
#[derive(Default)]
struct ConnTable(HashMap<ConnId, ConnInfo>);

/// A session parked by stream management on one of the shard's connections (which no longer
/// holds it): kept apart, so a connected session's entry costs nothing for it.
struct ParkedInfo {
    jid: FullJid,
    priority: Option<i8>,
    since: u64,
}

/// The parked sessions of a shard, by connection.
#[derive(Default)]
struct ParkedTable(HashMap<ConnId, ParkedInfo>);

/// Records that `conn`'s session (`jid`, with `priority`) is parked, its client gone.
pub(crate) fn parked(shard: &mut Shard, conn: ConnId, jid: &FullJid, priority: Option<i8>) {
    let info = ParkedInfo {
        jid: jid.clone(),
        priority,
        since: crate::store::unix_now().max(0) as u64,
    };
    shard
        .ext
        .get_or_default::<ParkedTable>()
        .0
        .insert(conn, info);
}

/// Records a new connection.
pub(crate) fn opened(shard: &mut Shard, conn: ConnId, info: ConnInfo) {
    shard.ext.get_or_default::<ConnTable>().0.insert(conn, info);
}

/// Forgets a closed connection; what was listed for it.
pub(crate) fn closed(shard: &mut Shard, conn: ConnId) -> Option<ConnInfo> {
    if let Some(p) = shard.ext.get_mut::<ParkedTable>() {
        p.0.remove(&conn);
    }
    shard.ext.get_or_default::<ConnTable>().0.remove(&conn)
}

/// The sessions of this shard's connections: bound, or parked since their client left.
pub(super) fn sessions(shard: &Shard) -> Vec<SessionInfo> {
    let Some(table) = shard.ext.get::<ConnTable>() else {
        return Vec::new();
    };
    let parked = shard.ext.get::<ParkedTable>();
    table
        .0
        .iter()
        .filter_map(|(id, c)| {
            let info = |jid: &FullJid, priority, detached_since| SessionInfo {
                jid: jid.to_string(),
                shard: shard.id.0,
                peer: c.peer.to_string(),
                transport: c.transport.to_owned(),
                priority,
                since: c.since,
                detached_since,
            };
            if let Some(sess) = c.session.borrow().as_ref() {
                return Some(info(&sess.jid, sess.presence, None));
            }
            let p = parked?.0.get(id)?;
            Some(info(&p.jid, p.priority, Some(p.since)))
        })
        .collect()
}
