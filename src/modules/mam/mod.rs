//! `mod_mam`: message archive management (XEP-0313) with unique stanza ids (XEP-0359).
//!
//! - [`archive`]: on the route. A chat or normal message with a body (or a `<store/>` hint) is
//!   archived for its sender (`user_send_message`, on the sender's shard) and for its local
//!   recipient (`filter_local_packet`), under one time-ordered id ([`id`]); the recipient's copy
//!   carries `<stanza-id by='recipient' id='…'/>`, and stanza ids a client wrote itself are
//!   removed; a message the recipient's server then refuses (a block, offline storage full, too
//!   large for it, or none: the sender gets an error) leaves the archive again (the refusing
//!   module emits `hooks::MessageRefused`). Rows are buffered per shard, handed to the store once
//!   per scheduler turn and written in coalesced transactions, so the route never waits for the
//!   disk. Groupchat messages of MUC rooms are archived under the room's JID
//!   (`filter_room_packet`).
//! - [`prefs`]: archiving preferences, replicated on every shard.
//! - queries (`urn:xmpp:mam:2`, [`iq`]): the form ([`form`]), paging ([`rsm`], [`query`]) and
//!   results ([`results`]) answered from the store; preferences ([`prefs_iq`]); archive metadata.

pub mod archive;
pub mod id;
mod options;
pub mod prefs;
#[cfg(test)]
mod tests_archive;

pub use options::{MamOptions, NAME};

// The query side.
mod form;
mod iq;
mod prefs_iq;
mod query;
mod results;
mod rsm;
pub use iq::{query_archive, register, register_rooms, RealJids};

use crate::shard::Shard;

/// The ordering key of every archive store job (writes, queries, preferences): they all run on one
/// pool thread in the order shards queued them, so a query sees every message archived before it
/// was sent (a shard queues its batch before the messages leave over the mesh), and a shard's
/// batches commit in order. The archive's writes are one stream anyway (SQLite has one writer).
pub(crate) const STORE_KEY: u64 = 0x6d61_6d00;

/// Namespaces.
pub mod ns {
    /// XEP-0313 version 2.
    pub const MAM: &str = "urn:xmpp:mam:2";
    /// XEP-0313 extended queries (`before-id`, `after-id`, `ids`).
    pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
    /// XEP-0359 unique and stable stanza ids.
    pub const SID: &str = crate::xmpp::ns::STANZA_ID;
    /// XEP-0297 forwarding.
    pub const FORWARD: &str = "urn:xmpp:forward:0";
    /// XEP-0203 delayed delivery.
    pub const DELAY: &str = "urn:xmpp:delay";
    /// XEP-0334 processing hints.
    pub const HINTS: &str = "urn:xmpp:hints";
    /// XEP-0059 result set management.
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    /// XEP-0004 data forms.
    pub const DATA: &str = "jabber:x:data";
}

/// The retention task: every `retention_interval`, messages past `max_age` and past each
/// archive's newest `max_messages` are deleted (`None` when neither limit is set).
pub fn retention(opts: &MamOptions) -> Option<crate::modules::Periodic> {
    if opts.max_messages == 0 && opts.max_age.is_zero() {
        return None;
    }
    let (keep, age) = (opts.max_messages, opts.max_age);
    Some(crate::modules::Periodic {
        name: "mam retention",
        every: opts.retention_interval,
        run: std::sync::Arc::new(move |store| {
            if !age.is_zero() {
                let now = crate::store::unix_now() * 1_000_000;
                let cutoff = now - i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
                match store.mam_purge_before(cutoff) {
                    Ok(n) if n > 0 => {
                        tracing::info!(deleted = n, "archive: messages past max_age removed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "archive retention (age) failed"),
                }
            }
            if keep > 0 {
                match store.mam_trim(keep) {
                    Ok(n) if n > 0 => {
                        tracing::info!(deleted = n, "archive: messages past max_messages removed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "archive retention (count) failed"),
                }
            }
        }),
    })
}

/// Registers the archive on the route, the query handlers and the disco features on `shard`.
pub fn start(shard: &mut Shard, hosts: &[String], opts: MamOptions) {
    shard
        .ext
        .insert(prefs::PrefsTable::new(opts.default_mode, shard.shards));
    prefs::load(shard);
    crate::hooks::Events::<crate::modules::register::AccountRemoved>::listen(
        shard,
        50,
        NAME,
        |shard, ev| prefs::account_removed(shard, &ev.jid),
    );
    crate::hooks::Events::<crate::hooks::MessageRefused>::listen(
        shard,
        50,
        NAME,
        archive::on_refused,
    );
    archive::start(shard, &opts);
    register(shard, hosts, &opts);
    // Rooms of the MUC service (started before this module) keep their archive too.
    let services: Vec<String> = shard
        .ext
        .get::<crate::modules::muc::Services>()
        .map(|s| s.0.iter().cloned().collect())
        .unwrap_or_default();
    register_rooms(shard, &services, &opts);
    for host in hosts {
        // The account is the `by` of the stanza ids its archive stamps: it announces them (XEP-0359
        // §5; a client checks this before trusting them).
        for f in [ns::MAM, ns::MAM_EXTENDED, ns::SID] {
            crate::modules::disco::add_account_feature(&mut shard.ext, host, f);
        }
        crate::modules::disco::add_server_feature(&mut shard.ext, host, ns::SID);
    }
}
