//! A deleted account's subscriptions and affiliations on other users' PEP nodes go, so that
//! whoever registers the name next receives none of those contacts' events and reads none of their
//! whitelisted items (bans stay, as on the pubsub service).
//!
//! They may be in three places: states loaded on any shard (forgotten in memory and saved), states
//! being loaded, perhaps read before the deletion (forgotten when ready), and the store: a scan of
//! the stored metadata finds the owners whose nodes name the account, and each owner's home shard
//! has the store forget it in that owner's store order, so no later load reads it back.

use super::state;
use crate::hooks::{HookCtx, JobDone};
use crate::jid::BareJid;
use crate::modules::pubsub::core::node::NodeMeta;
use crate::shard::{home_shard_of, Shard, ShardId};
use crate::store::StoredMeta;

/// `gone`'s account was deleted (on this shard).
pub(super) fn account_removed(shard: &mut Shard, gone: &BareJid) {
    for i in 0..shard.shards {
        let g = gone.as_str().to_owned();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s: &mut Shard| state::forget_everywhere(s, &g)),
        );
    }
    // The JID as its JSON string begins, bare or with a resource: a superset of the metadata that
    // names it (each is checked once read).
    let mut text = serde_json::to_string(gone.as_str()).unwrap_or_default();
    text.pop();
    let g = gone.clone();
    let key = crate::modules::roster::user_key(gone);
    HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, move |store| {
        let found = store.pubsub_metas_containing(&text);
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| match found {
                Ok(found) => tell_owners(shard, &g, found),
                Err(e) => tracing::error!(error = %e, user = g.as_str(),
                    "pep: could not look for a deleted account's subscriptions"),
            })),
            ..JobDone::default()
        }
    });
}

/// Sends each PEP owner among `found` whose nodes name `gone` to its home shard to forget it.
fn tell_owners(shard: &mut Shard, gone: &BareJid, found: Vec<StoredMeta>) {
    let mut owners: Vec<BareJid> = found
        .into_iter()
        .filter(|m| names(&m.meta, gone.as_str()))
        // A PEP service is a user's bare JID; the pubsub service's nodes are its own module's.
        .filter_map(|m| BareJid::parse(&m.service).ok())
        .filter(|o| o.node().is_some() && o != gone)
        .collect();
    owners.dedup();
    for owner in owners {
        let g = gone.as_str().to_owned();
        let home = home_shard_of(owner.as_str(), shard.shards);
        crate::sm::run_on(
            shard,
            home,
            Box::new(move |s: &mut Shard| state::forget_on_owner(s, &owner, &g)),
        );
    }
}

/// True when the stored metadata `meta` gives `gone` a subscription or an affiliation that goes.
fn names(meta: &str, gone: &str) -> bool {
    serde_json::from_str::<NodeMeta>(meta).is_ok_and(|mut m| m.forget_account(gone))
}
