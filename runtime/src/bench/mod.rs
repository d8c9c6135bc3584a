//! Benchmark workloads shared by `cargo bench -p weft-runtime` and `weft bench`: square
//! matmuls, attention forward and forward+backward for each weight rule, and one training
//! step (forward + backward graph) of a spec; each with its feeds and its work (FLOPs or
//! bytes), plus the backends worth timing on this machine and a median-of-N timer.
//!
//! Numbers are measured, never typed in: both front ends time these exact graphs.

mod memory;
mod workloads;

pub use memory::{memory_table, peak_rss, train_step_memory, StepMemory};

pub use workloads::{attention, matmul, train_step, BenchRule, Work, Workload};

use crate::backend::{Backend, HookSelection};
use crate::error::RunError;
use crate::wgpu::autotune::AutotuneOptions;
use crate::wgpu::profile::Clock;
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
    engine: Engine,
}

/// The backend behind a [`BenchBackend`], kept concrete so wgpu's kernel timer and
/// autotuner are reachable.
enum Engine {
    Cpu(Box<FastCpuBackend>),
    CpuRef(Box<CpuBackend>),
    Wgpu(Box<WgpuBackend>),
}

impl BenchBackend {
    /// The backend, to run workloads on.
    pub fn backend(&self) -> &dyn Backend {
        match &self.engine {
            Engine::Cpu(b) => b.as_ref(),
            Engine::CpuRef(b) => b.as_ref(),
            Engine::Wgpu(b) => b.as_ref(),
        }
    }

    /// The wgpu backend, for the per-kernel GPU timer and the autotuner.
    pub fn wgpu(&self) -> Option<&WgpuBackend> {
        match &self.engine {
            Engine::Wgpu(b) => Some(b.as_ref()),
            _ => None,
        }
    }
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
            engine: Engine::Cpu(Box::new(FastCpuBackend::new())),
        });
        out.push(BenchBackend {
            name: "cpu-ref",
            engine: Engine::CpuRef(Box::new(CpuBackend::new())),
        });
    }
    if matches!(which, "wgpu" | "all") {
        match WgpuBackend::new() {
            Ok(b) => {
                // Everything as the fused backend (prologues, tiled attention) but fusion.
                let unfused = WgpuBackend::with_options(CodegenOptions {
                    fuse: false,
                    ..b.options().clone()
                })
                .map_err(|e| format!("wgpu (unfused): {e}"))?;
                out.push(BenchBackend {
                    name: "wgpu",
                    engine: Engine::Wgpu(Box::new(b)),
                });
                out.push(BenchBackend {
                    name: "wgpu-unfused",
                    engine: Engine::Wgpu(Box::new(unfused)),
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

/// The summed GPU time of every kernel of `w` on `b`, each timed alone
/// ([`WgpuBackend::profile`]: median of `repeats` dispatches): the device's own time,
/// without the upload, readback and per-submission waits [`median_time`] includes. The
/// clock says whether GPU timestamps were available (else each kernel's submit-and-wait
/// wall time is summed).
pub fn kernel_time(
    b: &WgpuBackend,
    w: &Workload,
    repeats: usize,
) -> Result<(Duration, Clock), RunError> {
    let times = b.profile(
        &w.graph,
        &w.inputs,
        &w.params,
        &HookSelection::None,
        repeats,
    )?;
    let clock = times.first().map_or(Clock::Wall, |t| t.clock);
    let ms: f64 = times.iter().map(|t| t.median_ms).sum();
    Ok((Duration::from_secs_f64(ms / 1e3), clock))
}

/// Autotunes `w`'s matmul shapes on `b` (choices cached per adapter, see
/// [`crate::wgpu::autotune`]), so the timings that follow use the adapter's best tiling.
pub fn tune(b: &WgpuBackend, w: &Workload) -> Result<(), RunError> {
    b.autotune(&w.graph, &AutotuneOptions::default())
        .map(|_| ())
}
