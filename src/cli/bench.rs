//! `weft bench`: times the benchmark workloads of `weft_runtime::bench` (matmul, attention
//! forward and forward + backward for both weight rules, one training step of a spec) on
//! each backend, and prints one table: median time, throughput, and — measured in the same
//! run — wgpu fused/unfused and wgpu/cpu time ratios. `--out` writes it as markdown.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft_compiler::ir::AttentionWeights;
use weft_runtime::bench::{self, BenchBackend, Work, Workload};

/// Arguments of `weft bench`.
pub struct BenchArgs {
    /// `cpu`, `wgpu` or `all`.
    pub backend: String,
    /// Small sizes and few runs: a smoke test of the whole table.
    pub quick: bool,
    /// Also matmul 4096 (meant for real GPUs) and the spec's own batch and length.
    pub full: bool,
    /// Matmul sizes and attention lengths instead of the defaults.
    pub sizes: Option<Vec<usize>>,
    /// Runs per measurement (the median is reported).
    pub runs: Option<usize>,
    /// The spec whose training step is timed.
    pub spec: PathBuf,
    /// Write the table here as markdown.
    pub out: Option<PathBuf>,
}

pub fn bench(a: &BenchArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// One measured row.
struct Row {
    kernel: String,
    shape: String,
    backend: &'static str,
    time: Duration,
    work: Work,
}

fn workloads(a: &BenchArgs) -> Result<Vec<Workload>, String> {
    let (mut mm, mut lens) = if a.quick {
        (vec![128, 256], vec![64, 128])
    } else {
        (vec![256, 512, 1024], vec![128, 512])
    };
    if let Some(s) = &a.sizes {
        mm = s.clone();
        lens = s.clone();
    }
    if a.full {
        mm.push(4096);
    }
    let mut out: Vec<Workload> = mm.into_iter().map(bench::matmul).collect();
    for backward in [false, true] {
        for rule in [AttentionWeights::Softmax, AttentionWeights::Signed] {
            for &t in &lens {
                out.push(bench::attention(rule, 1, 2, t, 64, backward));
            }
        }
    }
    match std::fs::read_to_string(&a.spec) {
        Ok(src) => {
            let name = a
                .spec
                .file_name()
                .map_or("spec".into(), |n| n.to_string_lossy().to_string());
            let spec = weft_dsl::check_source(&src)
                .map_err(|_| format!("{} has errors (run `weft check`)", a.spec.display()))?;
            let ctx = spec.model.int("ctx").max(1) as usize;
            let (b, t) = match (a.quick, a.full) {
                (true, _) => (2, 32),
                (_, true) => (16, 128),
                _ => (4, 64),
            };
            out.push(bench::train_step(&name, &spec, b, t.min(ctx))?);
        }
        Err(e) => eprintln!("note: no training step timed ({}: {e})", a.spec.display()),
    }
    Ok(out)
}

/// `12.3 GFLOP/s`, `1.23 TFLOP/s` or `4.5 GB/s`.
fn throughput(work: Work, t: Duration) -> String {
    let s = t.as_secs_f64().max(1e-12);
    match work {
        Work::Flops(f) if f / s >= 1e12 => format!("{:.2} TFLOP/s", f / s / 1e12),
        Work::Flops(f) => format!("{:.2} GFLOP/s", f / s / 1e9),
        Work::Bytes(b) => format!("{:.2} GB/s", b / s / 1e9),
    }
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-12)),
        _ => "-".into(),
    }
}

fn table(rows: &[Row]) -> String {
    let find = |k: &str, s: &str, b: &str| {
        rows.iter()
            .find(|r| r.kernel == k && r.shape == s && r.backend == b)
            .map(|r| r.time)
    };
    let mut t = String::from(
        "| kernel | shape | backend | median time | throughput | fused/unfused | wgpu/cpu |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (fu, wc) = if r.backend == "wgpu" {
            (
                ratio(Some(r.time), find(&r.kernel, &r.shape, "wgpu-unfused")),
                ratio(Some(r.time), find(&r.kernel, &r.shape, "cpu")),
            )
        } else {
            ("-".into(), "-".into())
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.3} ms | {} | {fu} | {wc} |",
            r.kernel,
            r.shape,
            r.backend,
            r.time.as_secs_f64() * 1e3,
            throughput(r.work, r.time)
        );
    }
    t
}

fn run(a: &BenchArgs) -> Result<(), String> {
    let adapter = match bench::adapter() {
        Some((name, kind)) => format!("adapter: {name} ({kind})"),
        None => "adapter: none (no GPU adapter found)".into(),
    };
    println!("{adapter}");
    let backends: Vec<BenchBackend> = bench::backends(&a.backend)?;
    let runs = a.runs.unwrap_or(if a.quick { 3 } else { 5 });
    let mut rows = Vec::new();
    for w in workloads(a)? {
        for b in &backends {
            let time = bench::median_time(b.backend.as_ref(), &w, runs)
                .map_err(|e| format!("{} {} on {}: {e}", w.kernel, w.shape, b.name))?;
            eprintln!(
                "  {} {} {}: {:.3} ms",
                w.kernel,
                w.shape,
                b.name,
                time.as_secs_f64() * 1e3
            );
            rows.push(Row {
                kernel: w.kernel.clone(),
                shape: w.shape.clone(),
                backend: b.name,
                time,
                work: w.work,
            });
        }
    }
    let t = table(&rows);
    println!("{t}");
    if let Some(path) = &a.out {
        let cmd: Vec<String> = std::env::args().collect();
        let doc = format!(
            "# weft bench\n\n{adapter}; CPU threads: {}; median of {runs} runs after a warm-up \
             run; times include upload and readback.\n\nCommand: `{}`\n\n{t}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            cmd.join(" ")
        );
        std::fs::write(path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_wgpu_with_unfused_and_cpu_of_the_same_row() {
        let row = |backend, ms| Row {
            kernel: "matmul".into(),
            shape: "8x8x8".into(),
            backend,
            time: Duration::from_millis(ms),
            work: Work::Flops(1e9),
        };
        let t = table(&[row("cpu", 40), row("wgpu", 10), row("wgpu-unfused", 20)]);
        let wgpu = t.lines().find(|l| l.contains("| wgpu |")).unwrap();
        assert!(wgpu.ends_with("| 0.50 | 0.25 |"), "{wgpu}");
        assert!(wgpu.contains("100.00 GFLOP/s"), "{wgpu}");
    }
}
