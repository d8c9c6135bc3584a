//! Benchmark workloads shared by `cargo bench -p weft-runtime` and `weft bench`: square
//! matmuls, attention forward and forward+backward for each weight rule, and one training
//! step (forward + backward graph) of a spec; each with its feeds and its work (FLOPs or
//! bytes), plus the backends worth timing on this machine and a median-of-N timer.
//!
//! Numbers are measured, never typed in: both front ends time these exact graphs.

mod memory;
mod workloads;

pub use memory::{memory_table, peak_rss, train_step_memory, StepMemory};

pub use workloads::{attention, matmul, train_step, Work, Workload};

use crate::backend::{Backend, HookSelection};
use crate::error::RunError;
use crate::{CpuBackend, FastCpuBackend, WgpuBackend};
use std::time::{Duration, Instant};
use weft_compiler::codegen::CodegenOptions;

/// Whether the long sizes were asked for (`WEFT_BENCH_FULL=1`).
pub fn full() -> bool {
    std::env::var("WEFT_BENCH_FULL").as_deref() == Ok("1")
}

/// One backend to time, with the name tables and benchmark ids use.
pub struct BenchBackend {
    /// `cpu` (the fast path), `cpu-ref` (the reference interpreter), `wgpu` or `wgpu-unfused`.
    pub name: &'static str,
    pub backend: Box<dyn Backend>,
}

/// The GPU adapter's name and device type, when wgpu finds one.
pub fn adapter() -> Option<(String, String)> {
    WgpuBackend::new().ok().map(|b| {
        (
            b.adapter_name().to_string(),
            format!("{:?}", b.adapter_info().device_type),
        )
    })
}

/// The backends `which` names (`cpu`, `wgpu` or `all`): the CPU fast path and its reference
/// interpreter (what the fast path is measured against), and when an adapter exists
/// wgpu both fused (the default) and unfused (`fuse: false`, the baseline fusion is
/// measured against).
pub fn backends(which: &str) -> Result<Vec<BenchBackend>, String> {
    let mut out = Vec::new();
    if matches!(which, "cpu" | "all") {
        out.push(BenchBackend {
            name: "cpu",
            backend: Box::new(FastCpuBackend::new()),
        });
        out.push(BenchBackend {
            name: "cpu-ref",
            backend: Box::new(CpuBackend::new()),
        });
    }
    if matches!(which, "wgpu" | "all") {
        match WgpuBackend::new() {
            Ok(b) => {
                out.push(BenchBackend {
                    name: "wgpu",
                    backend: Box::new(b),
                });
                let unfused = WgpuBackend::with_options(CodegenOptions {
                    fuse: false,
                    ..CodegenOptions::default()
                })
                .map_err(|e| format!("wgpu (unfused): {e}"))?;
                out.push(BenchBackend {
                    name: "wgpu-unfused",
                    backend: Box::new(unfused),
                });
            }
            Err(e) if which == "wgpu" => return Err(format!("wgpu backend: {e}")),
            Err(_) => {}
        }
    }
    if out.is_empty() {
        return Err(format!(
            "unknown backend `{which}` (expected cpu, wgpu or all)"
        ));
    }
    Ok(out)
}

/// Runs `w` once on `b` (compiling and caching it on first use).
pub fn run_once(b: &dyn Backend, w: &Workload) -> Result<(), RunError> {
    b.run(&w.graph, &w.inputs, &w.params, &HookSelection::None)
        .map(|_| ())
}

/// Median wall time of `runs` runs after one warm-up run (which compiles and uploads).
pub fn median_time(b: &dyn Backend, w: &Workload, runs: usize) -> Result<Duration, RunError> {
    run_once(b, w)?;
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        run_once(b, w)?;
        times.push(t0.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}
