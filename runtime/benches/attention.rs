//! Causal attention forward, and forward + backward, for the softmax and signed (Cog)
//! rules and two rules written as a spec writes them (ALiBi, soft-capping) at B·H = 2, d = 64, on every available backend: T = 128 and 512 by default,
//! 1024 and 2048 too with `WEFT_BENCH_FULL=1`.
//!
//! `cargo bench -p weft-runtime --bench attention`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use weft_runtime::bench::{self, BenchRule, Work};

fn attention(c: &mut Criterion) {
    let mut lengths = vec![128, 512];
    if bench::full() {
        lengths.extend([1024, 2048]);
    }
    let backends = bench::backends("all").expect("backends");
    for backward in [false, true] {
        let name = if backward {
            "attention_fwd_bwd"
        } else {
            "attention_fwd"
        };
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for rule in BenchRule::ALL {
            for &t in &lengths {
                let w = bench::attention(rule, 1, 2, t, 64, backward);
                if let Work::Flops(f) = w.work {
                    group.throughput(Throughput::Elements(f as u64));
                }
                for b in &backends {
                    let id = BenchmarkId::new(format!("{}/{}", b.name, rule.name()), t);
                    group.bench_with_input(id, &w, |bench_, w| {
                        bench_.iter(|| bench::run_once(b.backend(), w).expect("run"))
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
