//! One training step (forward + backward graph, no optimizer update) of
//! `examples/gpt.weft` on every available backend: B = 4, T = 64 by default; B = 16,
//! T = 128 (the spec's own batch and length) with `WEFT_BENCH_FULL=1`.
//!
//! `cargo bench -p weft-runtime --bench train_step`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;
use weft_runtime::bench;

fn train_step(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gpt.weft");
    let src = std::fs::read_to_string(path).expect("examples/gpt.weft");
    let spec = weft_dsl::check_source(&src).expect("gpt.weft checks");
    let (b, t) = if bench::full() { (16, 128) } else { (4, 64) };
    let w = bench::train_step("gpt.weft", &spec, b, t).expect("train step graph");
    let backends = bench::backends("all").expect("backends");
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for be in &backends {
        group.bench_with_input(BenchmarkId::new(be.name, &w.shape), &w, |bench_, w| {
            bench_.iter(|| bench::run_once(be.backend(), w).expect("run"))
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
