//! The core metric families, their labels, and the scrape-time store sampler.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

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
    pub sessions: Family<ShardLabel, Gauge>,
    pub connections: Family<ShardLabel, Gauge>,
    pub logins: Family<ResultLabel, Counter>,
    pub stanzas_in: Family<KindLabel, Counter>,
    pub stanzas_out: Family<KindLabel, Counter>,
    pub route_latency: Family<ShardLabel, Histogram>,
    pub mesh_outbox: Family<PeerLabel, Gauge>,
    pub mesh_ring_full: Family<PeerLabel, Counter>,
    pub mesh_rejected: Family<PeerLabel, Counter>,
    pub mesh_congested: Family<PeerLabel, Counter>,
    pub store_latency: Histogram,
}

impl Families {
    /// Creates the families and registers them (names as in docs/METRICS.md; the encoder appends
    /// `_total` to counters).
    pub fn register(r: &mut Registry, store: Arc<Mutex<Option<StorePool>>>) -> Families {
        let f = Families {
            sessions: Family::default(),
            connections: Family::default(),
            logins: Family::default(),
            stanzas_in: Family::default(),
            stanzas_out: Family::default(),
            route_latency: Family::default(),
            mesh_outbox: Family::default(),
            mesh_ring_full: Family::default(),
            mesh_rejected: Family::default(),
            mesh_congested: Family::default(),
            store_latency: Histogram::default(),
        };
        let sessions = "Sessions bound on this shard's connections";
        r.register("petrel_sessions", sessions, f.sessions.clone());
        let conns = "Open client connections on this shard";
        r.register("petrel_connections", conns, f.connections.clone());
        let logins = "SASL logins by result (failed: wrong credentials)";
        r.register("petrel_logins", logins, f.logins.clone());
        let s_in = "Stanzas received from this shard's clients, by kind";
        r.register("petrel_stanzas_in", s_in, f.stanzas_in.clone());
        let s_out = "Stanzas handed to this shard's client connections, by kind";
        r.register("petrel_stanzas_out", s_out, f.stanzas_out.clone());
        let lat = "Seconds from a stanza entering the route to its hand-over to the recipient's connection or to offline storage, by the shard handing it over";
        r.register("petrel_route_latency_seconds", lat, f.route_latency.clone());
        let outbox = "Mesh messages waiting in this shard's outbox towards shard `to` (its ring was full)";
        r.register("petrel_mesh_outbox", outbox, f.mesh_outbox.clone());
        let full = "Sends that found the ring towards shard `to` full (the message waited in the outbox)";
        r.register("petrel_mesh_ring_full", full, f.mesh_ring_full.clone());
        let rejected = "Stanzas refused because the outbox towards shard `to` was over its hard bound";
        r.register("petrel_mesh_rejected", rejected, f.mesh_rejected.clone());
        let congested = "Times the outbox towards shard `to` became congested (client reads paused)";
        r.register("petrel_mesh_congested", congested, f.mesh_congested.clone());
        let store_lat = "Seconds from queueing a store job to its end (queue wait plus run)";
        r.register("petrel_store_job_seconds", store_lat, f.store_latency.clone());
        r.register_collector(Box::new(StoreQueue(store)));
        f
    }
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
        let depth = super::lock(&self.0).as_ref().map_or(0, StorePool::queue_depth);
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
