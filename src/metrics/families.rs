//! The core metric families, their labels, and the scrape-time store sampler.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Metric, Registry};

use super::Histogram;
use crate::store::StorePool;

/// `shard="N"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard index.
    pub shard: u16,
}

/// `shard="N",kind="message|presence|iq|other"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Shard index.
    pub shard: u16,
    /// Stanza kind.
    pub kind: &'static str,
}

/// `shard="N",result="ok|failed"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Shard index.
    pub shard: u16,
    /// Outcome.
    pub result: &'static str,
}

/// `shard="N",to="M"`: the mesh from shard N towards shard M.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// Sending shard.
    pub shard: u16,
    /// Destination shard.
    pub to: u16,
}

/// The core families (modules add counters of their own, see `ShardMetrics::counter`).
pub struct Families {
    /// `petrel_sessions`.
    pub sessions: Family<ShardLabel, Gauge>,
    /// `petrel_connections`.
    pub connections: Family<ShardLabel, Gauge>,
    /// `petrel_logins_total`.
    pub logins: Family<ResultLabel, Counter>,
    /// `petrel_stanzas_in_total`.
    pub stanzas_in: Family<KindLabel, Counter>,
    /// `petrel_stanzas_out_total`.
    pub stanzas_out: Family<KindLabel, Counter>,
    /// `petrel_route_latency_seconds`.
    pub route_latency: Family<ShardLabel, Histogram>,
    /// `petrel_mesh_outbox`.
    pub mesh_outbox: Family<PeerLabel, Gauge>,
    /// `petrel_mesh_ring_full_total`.
    pub mesh_ring_full: Family<PeerLabel, Counter>,
    /// `petrel_mesh_rejected_total`.
    pub mesh_rejected: Family<PeerLabel, Counter>,
    /// `petrel_mesh_congested_total`.
    pub mesh_congested: Family<PeerLabel, Counter>,
    /// `petrel_errors_dropped_total`.
    pub errors_dropped: Family<ShardLabel, Counter>,
    /// `petrel_stanzas_direct_total`.
    pub stanzas_direct: Family<ShardLabel, Counter>,
    /// `petrel_stanzas_rerouted_total`.
    pub stanzas_rerouted: Family<ShardLabel, Counter>,
    /// `petrel_store_job_seconds` (one pool: no labels).
    pub store_latency: Histogram,
}

impl Families {
    /// Creates the families and registers them (names as in docs/METRICS.md; the encoder appends
    /// `_total` to counters).
    pub fn register(r: &mut Registry, store: Arc<Mutex<Option<StorePool>>>) -> Families {
        use self::metric as m;
        let f = Families {
            sessions: m(r, "petrel_sessions", "Sessions bound on this shard's connections"),
            connections: m(r, "petrel_connections", "Open client connections on this shard"),
            logins: m(r, "petrel_logins", "SASL logins by result (failed: wrong credentials)"),
            stanzas_in: m(r, "petrel_stanzas_in", "Stanzas received from this shard's clients, by kind"),
            stanzas_out: m(r, "petrel_stanzas_out", "Stanzas handed to this shard's client connections, by kind"),
            route_latency: m(r, "petrel_route_latency_seconds", "Seconds from a stanza entering the route to its hand-over to the recipient's connection or to offline storage, by the shard handing it over"),
            mesh_outbox: m(r, "petrel_mesh_outbox", "Mesh messages waiting in this shard's outbox towards shard `to` (its ring was full)"),
            mesh_ring_full: m(r, "petrel_mesh_ring_full", "Sends that found the ring towards shard `to` full (the message waited in the outbox)"),
            mesh_rejected: m(r, "petrel_mesh_rejected", "Stanzas refused because the outbox towards shard `to` was over its hard bound"),
            mesh_congested: m(r, "petrel_mesh_congested", "Times the outbox towards shard `to` became congested (client reads paused)"),
            errors_dropped: m(r, "petrel_errors_dropped", "Error stanzas dropped: the mesh towards their recipient was full, or their recipient's sessions kept refusing them (errors are never answered)"),
            stanzas_direct: m(r, "petrel_stanzas_direct", "Messages to a full JID sent straight to the shard of its session, which this shard had learnt (no home-shard hop)"),
            stanzas_rerouted: m(r, "petrel_stanzas_rerouted", "Stanzas whose session was gone (or refused them) when they reached it, routed again by the session manager or the router"),
            store_latency: m(r, "petrel_store_job_seconds", "Seconds from queueing a store job to its end (queue wait plus run)"),
        };
        r.register_collector(Box::new(StoreQueue(store)));
        f
    }
}

/// A new metric registered as `name`; the registry keeps a clone (handles share their atomics).
fn metric<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let m = M::default();
    r.register(name, help, m.clone());
    m
}

/// Samples the store pool's queue depth at scrape time.
struct StoreQueue(Arc<Mutex<Option<StorePool>>>);

impl std::fmt::Debug for StoreQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreQueue")
    }
}

impl Collector for StoreQueue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depth = super::lock(&self.0)
            .as_ref()
            .map_or(0, StorePool::queue_depth);
        let gauge = ConstGauge::new(i64::try_from(depth).unwrap_or(i64::MAX));
        let help = "Store jobs queued and not yet started (all workers)";
        let metric = encoder.encode_descriptor(
            "petrel_store_queue_depth",
            help,
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
