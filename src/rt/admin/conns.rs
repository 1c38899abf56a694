//! What the admin API lists about a shard's connections that the route does not know: the
//! client's address, the transport, when it connected, and its session (kept in the shard's
//! extensions by `conn::run`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use ahash::HashMap;

use crate::admin::shapes::SessionInfo;
use crate::c2s::route::Session;
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

/// Records a new connection.
pub(crate) fn opened(shard: &mut Shard, conn: ConnId, info: ConnInfo) {
    shard.ext.get_or_default::<ConnTable>().0.insert(conn, info);
}

/// Forgets a closed connection; what was listed for it.
pub(crate) fn closed(shard: &mut Shard, conn: ConnId) -> Option<ConnInfo> {
    shard.ext.get_or_default::<ConnTable>().0.remove(&conn)
}

/// The bound sessions of this shard's connections.
pub(super) fn sessions(shard: &Shard) -> Vec<SessionInfo> {
    let Some(table) = shard.ext.get::<ConnTable>() else {
        return Vec::new();
    };
    table
        .0
        .values()
        .filter_map(|c| {
            let sess = c.session.borrow();
            let sess = sess.as_ref()?;
            Some(SessionInfo {
                jid: sess.jid.to_string(),
                shard: shard.id.0,
                peer: c.peer.to_string(),
                transport: c.transport.to_owned(),
                priority: sess.presence,
                since: c.since,
            })
        })
        .collect()
}
