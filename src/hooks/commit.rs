//! Answers that wait for the writes they report.
//!
//! A module that keeps its state in memory and writes it behind (PEP, PubSub, MUC rooms) makes a
//! change visible at once (notifications, broadcasts), but answers the request that made it only
//! once the writes it queued have committed: `result` promises the change survives a crash. When
//! a write fails (the store is down), the answer is `internal-server-error` of type `wait`
//! instead, where a `result` would have hidden the loss.
//!
//! Use: [`begin`] before the request is carried out, [`track`] in the module's write helper (it
//! hands back the flag the write sets when it fails), [`finish`] with the answers. Writes queued
//! while no request is being answered (clean-ups, expiry) are not tracked.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{Acc, HookCtx, JobDone};
use crate::shard::{Extensions, ShardId};
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, ErrorType, StanzaErrorCondition};

/// The writes the request being answered on this shard queued so far.
#[derive(Default)]
struct Commit {
    active: bool,
    /// Store job keys the writes went to (their jobs run in order per key).
    keys: Vec<u64>,
    failed: Option<Arc<AtomicBool>>,
}

/// Starts (or goes on) tracking the writes of the request about to be carried out on this shard.
pub fn begin(ext: &mut Extensions) {
    ext.get_or_default::<Commit>().active = true;
}

/// For a write about to be queued under `key`: the flag its job must set when it fails, if a
/// request is being answered (None: nobody waits for this write).
pub fn track(ext: &mut Extensions, key: Option<u64>) -> Option<Arc<AtomicBool>> {
    let c = ext.get_mut::<Commit>().filter(|c| c.active)?;
    // An unkeyed job runs in no particular order: nothing could wait behind it.
    let key = key?;
    if !c.keys.contains(&key) {
        c.keys.push(key);
    }
    Some(c.failed.get_or_insert_with(Arc::default).clone())
}

/// Ends the request: `answers` are routed now when it queued no write, else once every write it
/// queued has run, with each IQ `result` among them turned into an `internal-server-error`
/// (`wait`) if one of them failed.
pub fn finish(ctx: &mut HookCtx<'_>, answers: Vec<Acc>) {
    let c = std::mem::take(ctx.ext.get_or_default::<Commit>());
    if c.keys.is_empty() || answers.is_empty() {
        for a in answers {
            ctx.route(a);
        }
        return;
    }
    let failed = c.failed.unwrap_or_default();
    let shard = ctx.shard;
    // One job behind the writes of each key; the last of them to run sends the answers.
    let answers = Arc::new(Mutex::new(answers));
    let left = Arc::new(AtomicUsize::new(c.keys.len()));
    for key in c.keys {
        let (answers, left, failed) = (answers.clone(), left.clone(), failed.clone());
        ctx.store(Some(key), move |_| {
            if left.fetch_sub(1, Ordering::AcqRel) != 1 {
                return JobDone::default();
            }
            // Only this job, the last, takes them; a poisoned lock still holds the answers.
            let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|p| p.into_inner()));
            if !failed.load(Ordering::Acquire) {
                return answers.into();
            }
            answers
                .into_iter()
                .map(|a| match iq_result_id(&a) {
                    Some(id) => not_stored(&a, &id, shard),
                    None => a,
                })
                .collect::<Vec<_>>()
                .into()
        });
    }
}

/// The id of `acc` if it is an IQ `result`.
fn iq_result_id(acc: &Acc) -> Option<String> {
    let s = &acc.stanza;
    (s.name() == "iq" && s.type_().as_deref() == Some("result"))
        .then(|| s.id().unwrap_or_default().to_string())
}

/// The error that replaces the IQ result `result` (same id, same addresses) when its change
/// could not be stored.
fn not_stored(result: &Acc, id: &str, shard: ShardId) -> Acc {
    let cond = StanzaErrorCondition::InternalServerError;
    let error = Element::new("error", ns::CLIENT)
        .with_attr("type", ErrorType::Wait.as_str())
        .with_child(Element::new(cond.as_str(), ns::STANZAS));
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("id", id)
        .with_attr("from", result.from.as_str())
        .with_attr("to", result.to.as_str())
        .with_child(error);
    Acc::new(
        Stanza::from_element(&iq),
        result.from.clone(),
        result.to.clone(),
        shard,
    )
}
