//! The message archive's store side (SQLite): the write rate of batched appends, and the latency
//! of a 50-message page out of a 1 000 000-message archive (criterion's mean, plus p50/p99/p99.9
//! from an HDR histogram printed at the end).
//!
//! `MAM_ROWS` overrides the archive size (default 1 000 000; building it takes a while once).

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel::store::{ArchivedMessage, MamFilter, Store};

const OWNER: &str = "alice@localhost";
const PAGE: usize = 50;

fn rows(first: i64, n: i64) -> Vec<ArchivedMessage> {
    (first..first + n)
        .map(|i| ArchivedMessage {
            owner: OWNER.into(),
            id: i << 10,
            with_bare: format!("friend{}@localhost", i % 20),
            with_res: "phone".into(),
            outgoing: i % 2 == 0,
            ts: 1_800_000_000_000_000 + i * 1000,
            stanza: format!(
                "<message from='{OWNER}/phone' to='friend{}@localhost' type='chat' id='m{i}'><body>Message number {i} of the archive benchmark, a typical short chat line.</body></message>",
                i % 20
            )
            .into_bytes(),
            keep: petrel::store::Keep::Always,
        })
        .collect()
}

fn mam(c: &mut Criterion) {
    let total: i64 = std::env::var("MAM_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    let batch = 512;
    let mut next = 1;
    while next <= total {
        let n = batch.min(total - next + 1);
        store.mam_append(&rows(next, n)).unwrap();
        next += n;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "mam: built a {total}-message archive in {secs:.1} s ({:.0} rows/s in batches of {batch})",
        total as f64 / secs
    );

    let mut group = c.benchmark_group("mam");
    group.throughput(Throughput::Elements(batch as u64));
    let mut id = total + 1;
    group.bench_function("append_batch_512", |b| {
        b.iter(|| {
            store.mam_append(&rows(id, batch)).unwrap();
            id += batch;
        })
    });
    group.throughput(Throughput::Elements(PAGE as u64));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut pick = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        1 + (seed % (total as u64 - PAGE as u64)) as i64
    };
    group.bench_function("page_50_after_id", |b| {
        b.iter(|| {
            let f = MamFilter {
                after_id: Some(pick() << 10),
                ..MamFilter::default()
            };
            let page = store.mam_query(OWNER, &f, PAGE, false).unwrap();
            assert_eq!(page.len(), PAGE);
        })
    });
    group.bench_function("page_50_with_and_before_id", |b| {
        b.iter(|| {
            let f = MamFilter {
                with_bare: Some("friend7@localhost".into()),
                before_id: Some((pick() + 5000).min(total) << 10),
                ..MamFilter::default()
            };
            store.mam_query(OWNER, &f, PAGE, true).unwrap();
        })
    });
    group.finish();

    // Latency percentiles of the plain page query.
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..20_000 {
        let f = MamFilter {
            after_id: Some(pick() << 10),
            ..MamFilter::default()
        };
        let t = Instant::now();
        let page = store.mam_query(OWNER, &f, PAGE, false).unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
        assert_eq!(page.len(), PAGE);
    }
    println!(
        "mam: 50-message page from {total}: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

criterion_group!(benches, mam);
criterion_main!(benches);
