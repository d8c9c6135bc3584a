//! Times one training step (forward + backward graph, no optimizer) of a spec on the fast CPU
//! path, min and median over repeats, without building the CLI: the A/B loop for fast-path
//! work on a shared machine, where the minimum is the number least disturbed by other load.
//!
//! ```text
//! cargo run --release -p weft-runtime --example cpu_step -- benchmarks/peer/gpt_b16_t128.weft [B T REPEATS]
//! ```
//!
//! `RAYON_NUM_THREADS=1` gives the single-core time; `WEFT_FAST_PROFILE=1` prints each run's
//! per-op breakdown.

use weft_runtime::{bench, FastCpuBackend};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .map_or("benchmarks/peer/gpt_b16_t128.weft", |s| s.as_str());
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (b, t, repeats) = (num(1, 16), num(2, 128), num(3, 10));
    let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let spec = weft_dsl::check_source(&src).map_err(|_| format!("{path} has errors"))?;
    let w = bench::train_step("spec", &spec, b, t)?;
    let be = FastCpuBackend::new();
    bench::run_once(&be, &w).map_err(|e| e.to_string())?;
    let mut ms: Vec<f64> = Vec::new();
    for _ in 0..repeats.max(1) {
        let t0 = std::time::Instant::now();
        bench::run_once(&be, &w).map_err(|e| e.to_string())?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let tokens = (b * t) as f64;
    println!(
        "{path} B{b} T{t}, {} threads: min {:.1} ms ({:.0} tok/s), median {:.1} ms",
        rayon::current_num_threads(),
        ms[0],
        tokens / ms[0] * 1e3,
        ms[ms.len() / 2]
    );
    Ok(())
}
