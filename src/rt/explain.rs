//! The driver of `route explain` (see [`crate::explain`]): starts the request on this shard, lets
//! the stanza run, and waits until every copy has reached an end or [`EXPLAIN_TIMEOUT`] passes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::ShardCtx;
use crate::explain::{ExplainError, Explanation};
use crate::jid::Jid;

/// How long a request waits for the ends of its route. Copies held longer (a client-state queue,
/// a store job behind a busy pool) are reported as still in flight.
pub const EXPLAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the request looks whether every path has ended (ends come from any shard or store
/// thread; polling spares them a cross-thread wake-up).
#[allow(dead_code)]
const POLL: Duration = Duration::from_millis(1);

/// Sends `stanza_xml` from `from` through the route of this shard and explains its path. The
/// stanza is really sent (see [`crate::explain::start`]).
// The admin API (built alongside, merged separately) is its caller.
#[allow(dead_code)]
pub(crate) async fn explain(
    ctx: &Rc<ShardCtx>,
    from: Jid,
    stanza_xml: &str,
) -> Result<Explanation, ExplainError> {
    crate::hooks::clock::set_now(Instant::now());
    let pending = crate::explain::start(&mut ctx.shard.borrow_mut(), from, stanza_xml)?;
    ctx.flush();
    let deadline = Instant::now() + EXPLAIN_TIMEOUT;
    while !pending.done() && Instant::now() < deadline {
        glommio::timer::sleep(POLL).await;
    }
    Ok(pending.finish())
}
