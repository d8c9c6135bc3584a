//! `weft bench`: times the benchmark workloads of `weft_runtime::bench` (matmul, attention
//! forward and forward + backward for both weight rules, one training step of a spec) on
//! each backend, and prints one table: median time, throughput, and — measured in the same
//! run — wgpu fused/unfused and wgpu/cpu time ratios. `--out` writes it as markdown.
//! wgpu rows also show the GPU time of the workload's kernels alone (`bench::kernel_time`:
//! timestamps, no upload, readback or submission waits), which is what a kernel's speed on
//! a real GPU is judged by; `--tune` first autotunes each workload's matmul tilings.
//!
//! `--profile SPEC` times instead each kernel of SPEC's training step (the `train_step`
//! workload) on wgpu, fused and unfused (`WgpuBackend::profile`), and pairs each fused kernel
//! with the unfused kernels of the same IR nodes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use weft_compiler::codegen::CodegenOptions;
use weft_runtime::bench::{self, BenchBackend, BenchRule, Work, Workload};
use weft_runtime::wgpu::profile;
use weft_runtime::{HookSelection, WgpuBackend};

/// Arguments of `weft bench`.
pub struct BenchArgs {
    /// `cpu`, `wgpu` or `all`.
    pub backend: String,
    /// Small sizes and few runs: a smoke test of the whole table.
    pub quick: bool,
    /// Also matmul 4096 and attention at B·H 32, T 2048 (meant for real GPUs; the CPU
    /// reference interpreter is not timed on them), and the spec's own batch and length.
    pub full: bool,
    /// Matmul sizes and attention lengths instead of the defaults.
    pub sizes: Option<Vec<usize>>,
    /// Runs per measurement (the median is reported).
    pub runs: Option<usize>,
    /// The spec whose training step is timed.
    pub spec: PathBuf,
    /// Write the table here as markdown.
    pub out: Option<PathBuf>,
    /// Profile this spec's training step kernel by kernel instead of the table.
    pub profile: Option<PathBuf>,
    /// Autotune each workload's matmul tilings on the wgpu adapter before timing it.
    pub tune: bool,
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
    /// wgpu only: the summed GPU time of the kernels, and whether it is from timestamps.
    kernels: Option<(Duration, profile::Clock)>,
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
        for rule in BenchRule::ALL {
            for &t in &lens {
                out.push(bench::attention(rule, 1, 2, t, 64, backward));
            }
            if a.full {
                // The GPU-sized case: B·H = 32 heads of 2048 positions.
                out.push(bench::attention(rule, 1, 32, 2048, 64, backward));
            }
        }
    }
    match std::fs::read_to_string(&a.spec) {
        Ok(src) => out.push(train_step(a, &a.spec, &src)?),
        Err(e) => eprintln!("note: no training step timed ({}: {e})", a.spec.display()),
    }
    Ok(out)
}

/// The `train_step` workload of the spec at `path` (source `src`), at the batch and length
/// `--quick` / `--full` select.
fn train_step(a: &BenchArgs, path: &Path, src: &str) -> Result<Workload, String> {
    let name = path
        .file_name()
        .map_or("spec".into(), |n| n.to_string_lossy().to_string());
    let spec = weft_dsl::check_source(src)
        .map_err(|_| format!("{} has errors (run `weft check`)", path.display()))?;
    let ctx = spec.model.config.ctx.max(1);
    let (b, t) = match (a.quick, a.full) {
        (true, _) => (2, 32),
        (_, true) => (16, 128),
        _ => (4, 64),
    };
    bench::train_step(&name, &spec, b, t.min(ctx))
}

/// Whether `w` is one of `--full`'s GPU sizes (over 10 GFLOP a run), which the reference
/// interpreter would take minutes on.
fn gpu_sized(w: &Workload) -> bool {
    matches!(w.work, Work::Flops(f) if f > 1e10)
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
        "| kernel | shape | backend | median time | throughput | GPU kernels | kernel throughput | fused/unfused | wgpu/cpu |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
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
        let (kt, kx) = match r.kernels {
            Some((k, clock)) => {
                let mark = if clock == profile::Clock::Wall {
                    " (wall)"
                } else {
                    ""
                };
                (
                    format!("{:.3} ms{mark}", k.as_secs_f64() * 1e3),
                    throughput(r.work, k),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.3} ms | {} | {kt} | {kx} | {fu} | {wc} |",
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
    if let Some(path) = &a.profile {
        return run_profile(a, path, &adapter);
    }
    let backends: Vec<BenchBackend> = bench::backends(&a.backend)?;
    let runs = a.runs.unwrap_or(if a.quick { 3 } else { 5 });
    let mut rows = Vec::new();
    let all = workloads(a)?;
    for w in &all {
        for b in &backends {
            if b.name == "cpu-ref" && gpu_sized(w) {
                continue;
            }
            let what = |e| format!("{} {} on {}: {e}", w.kernel, w.shape, b.name);
            if let (true, Some(gpu)) = (a.tune, b.wgpu()) {
                bench::tune(gpu, w).map_err(what)?;
            }
            let time = bench::median_time(b.backend(), w, runs).map_err(what)?;
            let kernels = match b.wgpu() {
                Some(gpu) => Some(bench::kernel_time(gpu, w, runs).map_err(what)?),
                None => None,
            };
            eprintln!(
                "  {} {} {}: {:.3} ms{}",
                w.kernel,
                w.shape,
                b.name,
                time.as_secs_f64() * 1e3,
                kernels.map_or(String::new(), |(k, _)| format!(
                    " ({:.3} ms in kernels)",
                    k.as_secs_f64() * 1e3
                ))
            );
            rows.push(Row {
                kernel: w.kernel.clone(),
                shape: w.shape.clone(),
                backend: b.name,
                time,
                kernels,
                work: w.work,
            });
        }
    }
    let mut t = table(&rows);
    // The CPU fast path's training-step memory, step after step (it must not grow).
    if let Some(w) = all.iter().find(|w| w.kernel == "train_step") {
        if backends.iter().any(|b| b.name == "cpu") {
            let steps =
                bench::train_step_memory(w, 4).map_err(|e| format!("{} memory: {e}", w.shape))?;
            t = format!("{t}\n{}", bench::memory_table(&w.shape, &steps));
        }
    }
    println!("{t}");
    if let Some(path) = &a.out {
        let cmd: Vec<String> = std::env::args().collect();
        let doc = format!(
            "# weft bench\n\n{adapter}; CPU threads: {}; median of {runs} runs after a warm-up \
             run; times include upload and readback, GPU kernels (wgpu) do not: the kernels' summed GPU \
             time, each dispatched alone{}.\n\nCommand: `{}`\n\n{t}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            if a.tune { "; matmuls autotuned first" } else { "" },
            cmd.join(" ")
        );
        std::fs::write(path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `--profile`: each kernel of the spec's training step, fused then unfused, the slowest
/// ten of each, and the fused kernels that cost more than the unfused kernels they replace.
fn run_profile(a: &BenchArgs, path: &Path, adapter: &str) -> Result<(), String> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let w = train_step(a, path, &src)?;
    let repeats = a.runs.unwrap_or(if a.quick { 3 } else { 5 });
    let mut doc = format!(
        "# weft bench --profile\n\n{adapter}; {} {}: each kernel alone, one dispatch per \
         command buffer, median of {repeats} after a warm-up\n",
        w.kernel, w.shape
    );
    let mut profiles = Vec::new();
    for (mode, fuse) in [("fused", true), ("unfused", false)] {
        // The same two configurations as the bench table: the backend's own choice for this
        // adapter, and one kernel per op.
        let be = match fuse {
            true => WgpuBackend::new(),
            false => WgpuBackend::with_options(CodegenOptions {
                fuse,
                ..CodegenOptions::default()
            }),
        }
        .map_err(|e| format!("wgpu ({mode}): {e}"))?;
        let step = bench::median_time(&be, &w, repeats)
            .map_err(|e| format!("{} on wgpu ({mode}): {e}", w.shape))?;
        let times = be
            .profile(
                &w.graph,
                &w.inputs,
                &w.params,
                &HookSelection::None,
                repeats,
            )
            .map_err(|e| format!("profiling {} ({mode}): {e}", w.shape))?;
        let part = format!(
            "\n## {mode}\n\nwhole step (one submission, with upload and readback): median \
             {:.3} ms\n\n{}",
            step.as_secs_f64() * 1e3,
            profile::table(&times, 10)
        );
        print!("{part}");
        doc.push_str(&part);
        profiles.push(times);
    }
    let (fused, unfused) = (&profiles[0], &profiles[1]);
    let part = format!(
        "\n## fused kernels against the unfused kernels of the same nodes\n\nsum of kernel \
         medians: fused {:.3} ms ({} kernels), unfused {:.3} ms ({} kernels); most costly \
         fusions first:\n\n{}",
        profile::total_ms(fused),
        fused.len(),
        profile::total_ms(unfused),
        unfused.len(),
        profile::compare_table(&profile::compare(fused, unfused), 20)
    );
    println!("{part}");
    doc.push_str(&part);
    if let Some(out) = &a.out {
        std::fs::write(out, doc).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_wgpu_with_unfused_and_cpu_of_the_same_row() {
        let row = |backend, ms, kernels| Row {
            kernel: "matmul".into(),
            shape: "8x8x8".into(),
            backend,
            time: Duration::from_millis(ms),
            kernels,
            work: Work::Flops(1e9),
        };
        let gpu = Some((Duration::from_millis(1), profile::Clock::Timestamp));
        let t = table(&[
            row("cpu", 40, None),
            row("wgpu", 10, gpu),
            row("wgpu-unfused", 20, None),
        ]);
        let wgpu = t.lines().find(|l| l.contains("| wgpu |")).unwrap();
        assert!(wgpu.ends_with("| 0.50 | 0.25 |"), "{wgpu}");
        assert!(wgpu.contains("100.00 GFLOP/s"), "{wgpu}");
        // The kernels' own time and throughput sit beside the wall time.
        assert!(wgpu.contains("| 1.000 ms | 1.00 TFLOP/s |"), "{wgpu}");
        let cpu = t.lines().find(|l| l.contains("| cpu |")).unwrap();
        assert!(cpu.contains("| - | - |"), "{cpu}");
    }
}
