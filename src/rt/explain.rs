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
const POLL: Duration = Duration::from_millis(1);

/// Sends `stanza_xml` from `from` through the route of this shard and explains its path. The
/// stanza is really sent (see [`crate::explain::start`]).
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use super::{explain, ShardCtx};
    use crate::config::Config;
    use crate::explain::Outcome;
    use crate::jid::{BareJid, Jid};
    use crate::shard::cluster::DEFAULT_ROUTING;
    use crate::shard::{Shard, ShardId};
    use crate::store::{LoginGuard, Store, StorePool};

    /// The driver on one shard of a glommio executor with its store pool: a message to an offline
    /// user is explained down to the offline hook.
    #[test]
    fn explains_on_a_running_shard() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let bob = BareJid::parse("bob@localhost").unwrap_or_else(|e| panic!("{e}"));
        store
            .add_user(&bob, &crate::auth::ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let pool = StorePool::start(dir.path(), 1, 16).unwrap_or_else(|e| panic!("{e}"));
        let text = "[general]\nhosts = [\"localhost\"]\n[[listen.c2s]]\nport = 5222\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        let login = LoginGuard::new(config.auth.throttle.clone());
        let (pool2, login2) = (pool.clone(), login.clone());
        let admin = super::super::admin::AdminState::new(&config);
        let e = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 * 1024)
            .ring_depth(8)
            .spawn(move || async move {
                let ends = super::super::mesh::build(1, 4)
                    .pop()
                    .unwrap_or_else(|| panic!("one shard"));
                let metrics = crate::metrics::ShardMetrics::detached(ShardId(0));
                let (mesh, _rx) = super::super::mesh::Mesh::connect(ends, 64, &metrics).await;
                let hosts = Rc::new(["localhost".to_string()].into_iter().collect());
                let mut shard = Shard::new(
                    ShardId(0),
                    1,
                    hosts,
                    DEFAULT_ROUTING.to_vec().into(),
                    1 << 20,
                );
                crate::modules::offline::start(
                    &mut shard,
                    &crate::modules::offline::Options::default(),
                );
                let ctx = Rc::new(ShardCtx {
                    shard: RefCell::new(shard),
                    mesh,
                    store: pool2,
                    login: login2.clone(),
                    component_login: login2,
                    read_buf: RefCell::new(vec![0u8; 1024].into_boxed_slice()),
                    jobs: Default::default(),
                    admin,
                    outgoing: Default::default(),
                });
                let from = Jid::parse("alice@localhost").unwrap_or_else(|e| panic!("{e}"));
                explain(
                    &ctx,
                    from,
                    "<message to='bob@localhost' type='chat'><body>hi</body></message>",
                )
                .await
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .join()
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        pool.shutdown();
        assert_eq!(e.in_flight, 0, "{}", e.render_text());
        assert_eq!(e.paths.len(), 1, "{}", e.render_text());
        let last = e.paths[0].steps.last().unwrap_or_else(|| panic!("no step"));
        assert_eq!(
            (last.stage.as_ref(), last.handler.as_deref(), last.outcome),
            ("offline_message", Some("offline"), Outcome::Stop),
            "{}",
            e.render_text()
        );
    }
}
