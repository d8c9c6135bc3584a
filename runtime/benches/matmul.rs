//! Square matmul on every available backend (cpu; wgpu fused and unfused when an adapter
//! exists): 256–1024 by default, up to 2048 with `WEFT_BENCH_FULL=1`.
//!
//! `cargo bench -p weft-runtime --bench matmul`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use weft_runtime::bench::{self, Work};

fn matmul(c: &mut Criterion) {
    let mut sizes = vec![256, 512, 1024];
    if bench::full() {
        sizes.push(2048);
    }
    let backends = bench::backends("all").expect("backends");
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in sizes {
        let w = bench::matmul(n);
        if let Work::Flops(f) = w.work {
            group.throughput(Throughput::Elements(f as u64));
        }
        for b in &backends {
            group.bench_with_input(BenchmarkId::new(b.name, n), &w, |bench_, w| {
                bench_.iter(|| bench::run_once(b.backend(), w).expect("run"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
