//! `hi()` beside the `pbkdf2` crate at 4 096 iterations (what a PLAIN login runs):
//! `cargo bench -p petrel-pbkdf2`.

use criterion::{criterion_group, criterion_main, Criterion};
use sha2::Sha256;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("hi_4096");
    g.bench_function("petrel_pbkdf2", |b| {
        b.iter(|| petrel_pbkdf2::hi(black_box(b"password"), black_box(b"salt"), 4096))
    });
    g.bench_function("pbkdf2_crate", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(
                black_box(b"password"),
                black_box(b"salt"),
                4096,
                &mut out,
            );
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
