//! `mod_muc`: multi-user chat (XEP-0045), served at `conference.@HOST@` for every hosted domain.
//!
//! A room is to the service what a bare JID is to the session manager: it lives on one home shard
//! (hash of the room's bare JID) and occupants may sit on any shard.
//!
//! - [`service`]: the packet handler of the service's local route, on whichever shard the sender's
//!   stanza is routed; it answers the service itself (disco) and passes room stanzas to the room's
//!   home shard.
//! - [`home`]: the rooms homed on a shard: creation (with the per-user quota kept on the creator's
//!   home shard, [`quota`]), the sans-IO [`room::Room`] fed and its outputs carried out — a
//!   groupchat message leaves as one mesh message per destination shard
//!   ([`crate::shard::Shard::multicast`]) — and persistence in the store.
//! - [`directory`]: the public room list of disco#items, gathered from every shard.
//! - [`tracker`]: on each occupant's connection shard, the rooms its session joined, so a session
//!   that ends without leaving (crash, lost connection) leaves its rooms (`session_end` hook).

mod directory;
mod home;
pub mod options;
mod quota;
pub mod room;
mod service;
#[cfg(test)]
mod tests;
pub mod tracker;

pub use home::live_rooms;
pub use options::{MucOptions, NAME};

use std::rc::Rc;

use ahash::HashSet;

use crate::shard::Shard;
use room::occupant_id::OccupantIds;

/// The service domains of this server, shared by the module's handlers on a shard.
#[derive(Debug, Default)]
pub(crate) struct Services(pub HashSet<String>);

/// Registers the service's local route on every host, its disco item, the session tracker and the
/// room registry, and queues the loading of this shard's persistent rooms.
///
/// In a cluster (`clustered`), a room lives on one node (docs/CLUSTER.md, "Objects on one node"):
/// the service registers with [`crate::cluster::objects`] what to do when its copy of a room
/// gives way to another node's, and when a room's node dies.
pub fn start(
    shard: &mut Shard,
    hosts: &[String],
    opts: MucOptions,
    clustered: bool,
    ids: Option<OccupantIds>,
) {
    let opts = Rc::new(opts);
    let mut services = HashSet::default();
    for host in hosts {
        let domain = opts.service_for(host);
        shard.register_route(&domain, Rc::new(service::route));
        crate::modules::disco::add_server_item(&mut shard.ext, host, &domain, "Chatrooms");
        if clustered {
            let callbacks = crate::cluster::objects::Callbacks {
                evict: Rc::new(home::evict),
                lost: Rc::new(rooms_lost),
                left: Rc::new(home::member_left),
            };
            crate::cluster::objects::register(shard, &domain, callbacks);
        }
        services.insert(domain);
    }
    shard.ext.insert(Services(services));
    crate::hooks::Events::<crate::hooks::NodeStopping>::listen(shard, 50, NAME, |shard, _| {
        tracker::node_stopping(shard);
        home::node_stopping(shard)
    });
    crate::hooks::Events::<crate::modules::register::AccountRemoved>::listen(
        shard,
        50,
        NAME,
        |shard, ev| home::account_removed(shard, &ev.jid),
    );
    tracker::start(shard, clustered);
    home::start(shard, &opts, clustered, ids);
}

/// The XEP-0421 secret, read from the store (created at first start; the same for every shard
/// and cluster node): a synchronous read at start-up, before the shard serves. Without a store
/// the rooms give no occupant ids (and do not advertise them).
pub fn occupant_ids(config: &crate::config::Config) -> Option<OccupantIds> {
    use crate::store::{Backend, Store};
    let key = Backend::from_config(config)
        .and_then(|b| Store::connect(&b))
        .and_then(|store| store.secret(OCCUPANT_ID_SECRET));
    match key {
        Ok(key) => Some(OccupantIds::new(key)),
        Err(e) => {
            tracing::error!(error = %e, "muc: cannot read the occupant id secret; rooms give no occupant ids");
            None
        }
    }
}

/// The name of the XEP-0421 secret in the store.
const OCCUPANT_ID_SECRET: &str = "muc occupant-id";

/// Rooms whose node died (on their home shard here): every shard tells its sessions in them.
fn rooms_lost(shard: &mut Shard, keys: Vec<String>) {
    let lost: std::sync::Arc<[crate::jid::BareJid]> = keys
        .iter()
        .filter_map(|k| crate::jid::BareJid::parse(k).ok())
        .collect();
    for i in 0..shard.shards {
        let lost = lost.clone();
        crate::sm::run_on(
            shard,
            crate::shard::ShardId(i as u16),
            Box::new(move |s| tracker::rooms_lost(s, &lost)),
        );
    }
}
