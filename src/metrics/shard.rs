//! One shard's handles: atomics taken from the families once, at start-up.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::families::{Families, KindLabel, PeerLabel, ResultLabel, ShardLabel};
use super::{Histogram, Metrics};
use crate::shard::ShardId;
use crate::xml::StanzaKind;

/// Label values of [`StanzaKind`], indexed by [`kind_index`].
const KINDS: [&str; 4] = ["message", "presence", "iq", "other"];

fn kind_index(kind: StanzaKind) -> usize {
    match kind {
        StanzaKind::Message => 0,
        StanzaKind::Presence => 1,
        StanzaKind::Iq => 2,
        StanzaKind::Other => 3,
    }
}

/// A shard's metric handles (kept in `Shard::metrics`); bumping one is a relaxed atomic add.
#[derive(Clone)]
pub struct ShardMetrics {
    registry: Arc<Metrics>,
    id: ShardId,
    /// Sessions bound on this shard's connections (set on bind/unbind).
    pub sessions: Gauge,
    /// Open client connections on this shard.
    pub connections: Gauge,
    /// Successful SASL logins.
    pub logins_ok: Counter,
    /// SASL logins refused for wrong credentials.
    pub logins_failed: Counter,
    stanzas_in: [Counter; 4],
    stanzas_out: [Counter; 4],
    /// Route latency, observed on the shard that hands the stanza over.
    pub route_latency: Histogram,
    /// Error stanzas dropped (see [`crate::shard::ShardStats::errors_dropped`]).
    pub errors_dropped: Counter,
    /// Messages sent straight to their recipient's shard (see [`crate::shard::ShardStats::direct`]).
    pub stanzas_direct: Counter,
    /// Stanzas routed again (see [`crate::shard::ShardStats::rerouted`]).
    pub stanzas_rerouted: Counter,
}

impl std::fmt::Debug for ShardMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMetrics")
            .field("shard", &self.id)
            .finish_non_exhaustive()
    }
}

impl ShardMetrics {
    pub(super) fn new(registry: Arc<Metrics>, f: &Families, id: ShardId) -> ShardMetrics {
        let shard = id.0;
        let l = ShardLabel { shard };
        let kinds = |family: &prometheus_client::metrics::family::Family<KindLabel, Counter>| {
            KINDS.map(|kind| family.get_or_create(&KindLabel { shard, kind }).clone())
        };
        let result = |result| {
            f.logins
                .get_or_create(&ResultLabel { shard, result })
                .clone()
        };
        ShardMetrics {
            sessions: f.sessions.get_or_create(&l).clone(),
            connections: f.connections.get_or_create(&l).clone(),
            logins_ok: result("ok"),
            logins_failed: result("failed"),
            stanzas_in: kinds(&f.stanzas_in),
            stanzas_out: kinds(&f.stanzas_out),
            route_latency: f.route_latency.get_or_create(&l).clone(),
            errors_dropped: f.errors_dropped.get_or_create(&l).clone(),
            stanzas_direct: f.stanzas_direct.get_or_create(&l).clone(),
            stanzas_rerouted: f.stanzas_rerouted.get_or_create(&l).clone(),
            registry,
            id,
        }
    }

    /// Handles registered nowhere but in a private registry (a shard built without the server:
    /// tests, benches); [`ShardMetrics::registry`] still renders them.
    pub fn detached(id: ShardId) -> ShardMetrics {
        Arc::new(Metrics::new()).shard(id)
    }

    /// The registry these handles belong to.
    pub fn registry(&self) -> &Arc<Metrics> {
        &self.registry
    }

    /// A stanza of `kind` entered the route from one of this shard's clients.
    pub fn stanza_in(&self, kind: StanzaKind) {
        self.stanzas_in[kind_index(kind)].inc();
    }

    /// A stanza of `kind` that entered the route at `entered` went into a local connection's mailbox.
    pub fn stanza_out(&self, kind: StanzaKind, entered: Instant) {
        self.stanzas_out[kind_index(kind)].inc();
        self.handed_over(entered);
    }

    /// A stanza that entered the route at `entered` ends its route here (delivery or offline hook).
    pub fn handed_over(&self, entered: Instant) {
        // The runtime's per-turn clock: no clock read per stanza.
        let now = crate::hooks::clock::now();
        self.route_latency
            .observe(now.saturating_duration_since(entered));
    }

    /// The handles of the mesh from this shard towards shard `to`.
    pub fn peer(&self, to: ShardId) -> PeerMetrics {
        let f = &self.registry.families;
        let l = PeerLabel {
            shard: self.id.0,
            to: to.0,
        };
        PeerMetrics {
            outbox: f.mesh_outbox.get_or_create(&l).clone(),
            ring_full: f.mesh_ring_full.get_or_create(&l).clone(),
            rejected: f.mesh_rejected.get_or_create(&l).clone(),
            congested: f.mesh_congested.get_or_create(&l).clone(),
        }
    }

    /// This shard's series of the module counter `name` (`name_total` once rendered), the family
    /// registered by the first shard asking. Call at start-up and keep the handle.
    pub fn counter(&self, name: &'static str, help: &str) -> Counter {
        self.registry
            .module_counter(name, help)
            .get_or_create(&ShardLabel { shard: self.id.0 })
            .clone()
    }
}

/// The mesh handles of one (shard, destination) pair.
#[derive(Clone, Debug, Default)]
pub struct PeerMetrics {
    /// Stanzas waiting in the outbox.
    pub outbox: Gauge,
    /// Pushes that found the ring full.
    pub ring_full: Counter,
    /// Stanzas refused past the outbox's hard bound.
    pub rejected: Counter,
    /// Times the outbox became congested.
    pub congested: Counter,
}
