//! Prometheus metrics: one process-wide registry, rendered in the Prometheus text format (0.0.4)
//! for `GET /metrics` (see docs/METRICS.md for every metric).
//!
//! No lock on the route: each shard takes its own handles (atomics) once at start-up
//! ([`Metrics::shard`], kept in `Shard::metrics`) and only ever bumps them; the registry's mutex is
//! taken when a shard or module registers (start-up) and when a scrape renders.

mod families;
mod histogram;
mod shard;

pub use histogram::Histogram;
/// A counter handle (one atomic), as [`ShardMetrics::counter`] gives modules.
pub use prometheus_client::metrics::counter::Counter;
pub use shard::{PeerMetrics, ShardMetrics};

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ahash::HashMap;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::shard::ShardId;
use crate::store::StorePool;
use families::{Families, ShardLabel};

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A registry of petrel's metrics and the families shards take their handles from.
pub struct Metrics {
    registry: Mutex<Registry>,
    families: Families,
    /// Counters registered by modules ([`ShardMetrics::counter`]), by name.
    module_counters: Mutex<HashMap<&'static str, Family<ShardLabel, Counter>>>,
    /// The store pool sampled at scrape time (queue depth), once the server attached one.
    store: Arc<Mutex<Option<StorePool>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();

/// The process-wide registry, created on first call (the runtime calls it when the server starts).
pub fn init() -> Arc<Metrics> {
    GLOBAL.get_or_init(|| Arc::new(Metrics::new())).clone()
}

/// The process-wide metrics in the Prometheus text format (`Content-Type:` [`CONTENT_TYPE`]).
pub fn render() -> String {
    init().render()
}

impl Metrics {
    /// A registry with petrel's core metric families (no series until shards take handles).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let store = Arc::new(Mutex::new(None));
        let families = Families::register(&mut registry, store.clone());
        Metrics {
            registry: Mutex::new(registry),
            families,
            module_counters: Mutex::new(HashMap::default()),
            store,
        }
    }

    /// Shard `id`'s handles (created here, once per shard: keep them, do not call per stanza).
    pub fn shard(self: &Arc<Self>, id: ShardId) -> ShardMetrics {
        ShardMetrics::new(self.clone(), &self.families, id)
    }

    /// Samples `pool`'s queue depth at each scrape and records its jobs' latency.
    pub fn attach_store(&self, pool: &StorePool) {
        pool.record_job_latency(self.families.store_latency.clone());
        *lock(&self.store) = Some(pool.clone());
    }

    /// Everything registered, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, nor can petrel's own encoders.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &lock(&self.registry))
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// The counter family `name` for modules, registered on first use.
    fn module_counter(&self, name: &'static str, help: &str) -> Family<ShardLabel, Counter> {
        let mut counters = lock(&self.module_counters);
        counters
            .entry(name)
            .or_insert_with(|| {
                let family = Family::<ShardLabel, Counter>::default();
                lock(&self.registry).register(name, help, family.clone());
                family
            })
            .clone()
    }
}

/// Locks `m`, going on after a panic elsewhere (metrics state stays consistent: plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
