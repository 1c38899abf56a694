//! `render()` parses as Prometheus text, and the route moves the counters.

use std::sync::Arc;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use super::*;
use crate::auth::ScramSecrets;
use crate::jid::BareJid;
use crate::modules::testing::World;

/// `text` parsed by prometheus-parse (a Prometheus text format parser independent of the encoder).
fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The value of the counter or gauge `name` with labels `labels`, if the scrape has it.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// The `_count` of histogram `name` for shard `shard`.
fn histogram_count(s: &Scrape, name: &str, shard: &str) -> Option<u64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && x.labels.get("shard") == Some(shard))
        .and_then(|x| match &x.value {
            Value::Histogram(b) => b.iter().map(|c| c.count as u64).max(),
            _ => None,
        })
}

#[test]
fn render_is_prometheus_text() {
    let m = Arc::new(Metrics::new());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pool = StorePool::start(dir.path(), 1, 4).unwrap_or_else(|e| panic!("{e}"));
    m.attach_store(&pool);
    let shards: Vec<_> = (0..2).map(|i| m.shard(ShardId(i))).collect();
    let peer = shards[0].peer(ShardId(1));
    peer.outbox.set(3);
    peer.ring_full.inc();
    shards[1].stanza_in(crate::xml::StanzaKind::Iq);
    shards[1].route_latency.observe(Duration::from_micros(30));
    shards[1].route_latency.observe(Duration::from_secs(3));
    shards[0].counter("petrel_test_things", "Things").inc_by(2);
    futures_lite::future::block_on(pool.call(|_| ())).unwrap_or_else(|e| panic!("{e}"));
    let text = m.render();
    pool.shutdown();

    // The plain text format: no OpenMetrics `# EOF`, `# UNIT` or `_created` lines.
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with('#')) {
        assert!(
            line.starts_with("# HELP petrel_") || line.starts_with("# TYPE petrel_"),
            "{line}"
        );
    }
    let s = parse(&text);
    let on = |shard| vec![("shard", shard)];
    assert_eq!(
        value(&s, "petrel_mesh_outbox", &[("shard", "0"), ("to", "1")]),
        Some(3.0)
    );
    let full = [("shard", "0"), ("to", "1")];
    assert_eq!(value(&s, "petrel_mesh_ring_full_total", &full), Some(1.0));
    let iq = [("shard", "1"), ("kind", "iq")];
    assert_eq!(value(&s, "petrel_stanzas_in_total", &iq), Some(1.0));
    let msg = [("shard", "1"), ("kind", "message")];
    assert_eq!(value(&s, "petrel_stanzas_in_total", &msg), Some(0.0));
    assert_eq!(value(&s, "petrel_test_things_total", &on("0")), Some(2.0));
    assert_eq!(value(&s, "petrel_sessions", &on("1")), Some(0.0));
    assert_eq!(value(&s, "petrel_store_queue_depth", &[]), Some(0.0));
    assert_eq!(
        histogram_count(&s, "petrel_route_latency_seconds", "1"),
        Some(2)
    );
    // One job ran through the pool: its latency was recorded.
    assert!(
        text.contains("petrel_store_job_seconds_count 1\n"),
        "{text}"
    );
    // The help texts reach the parser (one per family).
    assert!(
        s.docs.contains_key("petrel_route_latency_seconds"),
        "{:?}",
        s.docs
    );
}

#[test]
fn histogram_buckets_are_cumulative() {
    let m = Arc::new(Metrics::new());
    let h = m.shard(ShardId(0)).route_latency;
    h.observe(Duration::from_micros(10));
    h.observe(Duration::from_millis(2));
    let text = m.render();
    let line = |le: &str| format!("petrel_route_latency_seconds_bucket{{shard=\"0\",le=\"{le}\"}}");
    assert!(text.contains(&format!("{} 1\n", line("2.5e-05"))), "{text}");
    assert!(text.contains(&format!("{} 2\n", line("0.0025"))), "{text}");
    assert!(text.contains(&format!("{} 2\n", line("+Inf"))), "{text}");
    assert!(
        text.contains("petrel_route_latency_seconds_count{shard=\"0\"} 2\n"),
        "{text}"
    );
}

#[test]
fn the_route_moves_the_counters() {
    let m = Arc::new(Metrics::new());
    let mut w = World::with_metrics(
        2,
        "[modules.presence]\n[modules.offline]\n[modules.mam]\n",
        Some(&m),
    );
    for u in ["alice@example.com", "bob@example.com"] {
        let jid = BareJid::parse(u).unwrap_or_else(|e| panic!("{e}"));
        w.store()
            .add_user(&jid, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut alice = w.connect(0, "alice@example.com/a", Some(0));
    let bob = w.connect(1, "bob@example.com/b", Some(0));
    let s = parse(&m.render());
    assert_eq!(value(&s, "petrel_sessions", &[("shard", "0")]), Some(1.0));
    assert_eq!(value(&s, "petrel_sessions", &[("shard", "1")]), Some(1.0));
    let presence_in = [("shard", "0"), ("kind", "presence")];
    assert_eq!(
        value(&s, "petrel_stanzas_in_total", &presence_in),
        Some(1.0)
    );
    while bob.mb.pop().is_some() {}

    w.send(
        &mut alice,
        "<message to='bob@example.com/b' type='chat'><body>hi</body></message>",
    );
    let s = parse(&m.render());
    let msg_in = [("shard", "0"), ("kind", "message")];
    assert_eq!(value(&s, "petrel_stanzas_in_total", &msg_in), Some(1.0));
    let msg_out = [("shard", "1"), ("kind", "message")];
    assert_eq!(value(&s, "petrel_stanzas_out_total", &msg_out), Some(1.0));
    let before = histogram_count(&s, "petrel_route_latency_seconds", "1").unwrap_or(0);
    assert!(before >= 1, "the delivery to bob was timed");
    // Both archives (alice's and bob's) got a row, written by the shard that routed it (once the
    // store's grouped commit ran: forced here instead of waiting for it).
    w.store().run_deferred();
    w.cluster.pump();
    let s = parse(&m.render());
    let rows = |s: &Scrape| {
        ["0", "1"]
            .iter()
            .filter_map(|sh| value(s, "petrel_archive_rows_written_total", &[("shard", sh)]))
            .sum::<f64>()
    };
    assert_eq!(rows(&s), 2.0);

    // Bob leaves (having read what he got: a stanza still in his mailbox would be re-routed): the
    // next message goes to offline storage, then to bob when he comes back.
    while bob.mb.pop().is_some() {}
    crate::c2s::route::unbind(&mut w.cluster.shards[1], &bob.sess);
    w.cluster.shards[1].close_conn(bob.sess.session.conn);
    w.cluster.pump();
    let s = parse(&m.render());
    assert_eq!(value(&s, "petrel_sessions", &[("shard", "1")]), Some(0.0));
    assert_eq!(
        value(&s, "petrel_connections", &[("shard", "1")]),
        Some(0.0)
    );
    w.send(
        &mut alice,
        "<message to='bob@example.com' type='chat'><body>later</body></message>",
    );
    let s = parse(&m.render());
    let offline = |s: &Scrape, name| {
        ["0", "1"]
            .iter()
            .filter_map(|sh| value(s, name, &[("shard", sh)]))
            .sum::<f64>()
    };
    assert_eq!(offline(&s, "petrel_offline_stored_total"), 1.0);
    assert_eq!(offline(&s, "petrel_offline_delivered_total"), 0.0);
    let _bob = w.connect(1, "bob@example.com/b2", Some(0));
    let s = parse(&m.render());
    assert_eq!(offline(&s, "petrel_offline_delivered_total"), 1.0);
}

/// docs/grafana/petrel-dashboard.json: valid JSON, importable (its data source is the
/// `DS_PROMETHEUS` input), and every series its queries name is one petrel exports.
#[test]
fn dashboard_queries_name_exported_series() {
    let text = include_str!("../../docs/grafana/petrel-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    // A server's registry with the modules that register counters of their own.
    let m = Arc::new(Metrics::new());
    let _w = World::with_metrics(2, "[modules.offline]\n[modules.mam]\n", Some(&m));
    // The runtime's mesh between the two shards (the cluster has none).
    let _mesh = m.shard(ShardId(0)).peer(ShardId(1));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pool = StorePool::start(dir.path(), 1, 4).unwrap_or_else(|e| panic!("{e}"));
    m.attach_store(&pool);
    let rendered = m.render();
    pool.shutdown();
    let exported: ahash::HashSet<&str> = rendered
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let panels = dash["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("no panels"));
    let mut queries = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            queries += 1;
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("petrel_"));
            for name in names {
                assert!(
                    exported.contains(name),
                    "{name} in {expr}: not in\n{rendered}"
                );
            }
        }
    }
    assert!(queries > 10, "the dashboard has its queries");
}

/// An error whose recipient's sessions keep refusing it is dropped (errors are never answered),
/// and the drop is counted where an operator sees it.
#[test]
fn an_error_dropped_after_its_reroutes_is_counted() {
    let m = Arc::new(Metrics::new());
    let mut w = World::with_metrics(1, "", Some(&m));
    let jid = |s: &str| crate::jid::Jid::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let stanza = crate::xml::Stanza::parse(
        b"<message type='error' to='alice@example.com/a' from='bob@example.com/b'/>".to_vec(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shard = &mut w.cluster.shards[0];
    let mut acc = crate::hooks::Acc::new(
        stanza,
        jid("bob@example.com/b"),
        jid("alice@example.com/a"),
        shard.id,
    );
    // Twice refused already: the third re-route gives up on it.
    acc.reroutes = 2;
    shard.reroute(acc);
    assert_eq!(shard.stats.errors_dropped, 1);
    let s = parse(&m.render());
    assert_eq!(
        value(&s, "petrel_errors_dropped_total", &[("shard", "0")]),
        Some(1.0)
    );
}
