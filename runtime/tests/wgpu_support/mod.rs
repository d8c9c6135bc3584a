//! Shared by the `wgpu_*` tests: the GPU-or-skip rule, CPU-vs-GPU comparison, and the test
//! graphs (every op, attention for every rule, a tiny transformer and its gradient graph).
#![allow(dead_code)]

pub mod examples;
pub mod graphs;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use weft_compiler::ir::Graph;
use weft_runtime::{Backend, CpuBackend, HookSelection, ParamStore, Tensor, WgpuBackend};

/// Relative tolerance of GPU results against the f32 CPU reference.
pub const RTOL: f64 = 1e-4;

/// The shared device of this test binary, or `None` (test skipped) when there is no adapter.
/// With `WEFT_REQUIRE_GPU=1` (CI) a missing adapter fails the test instead.
pub fn gpu_or_skip() -> Option<&'static WgpuBackend> {
    static GPU: OnceLock<Result<WgpuBackend, String>> = OnceLock::new();
    let gpu = GPU.get_or_init(|| {
        // Every fusion on, matmul prologues included, whatever the adapter: the kernels a
        // real GPU runs are the ones checked here.
        WgpuBackend::with_options(WgpuBackend::native_options())
            .map(|mut b| {
                // Unwritten elements come back as NaN and fail the comparison.
                b.poison = true;
                eprintln!("wgpu adapter: {}", b.adapter_name());
                b
            })
            .map_err(|e| e.to_string())
    });
    match gpu {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var("WEFT_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WEFT_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("skipped: no GPU adapter ({e})");
            None
        }
    }
}

/// [`check_against_cpu`] on a test case, without hooks.
pub fn check_case(gpu: &WgpuBackend, case: &graphs::Case) {
    check_against_cpu(
        gpu,
        &case.name,
        &case.graph,
        &case.inputs,
        &case.params,
        &HookSelection::None,
    );
}

/// Largest error of `got` against `want`, relative to `max(|want_i|, rms(want))`: plain
/// per-element relative error is unbounded near zero crossings (sin, sums that cancel) for
/// any two correct f32 implementations, so entries far below the tensor's scale are judged
/// against that scale.
pub fn max_rel_err(got: &Tensor, want: &Tensor) -> (f64, usize) {
    assert_eq!(got.shape, want.shape, "shapes differ");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let rms = (w.iter().map(|x| x * x).sum::<f64>() / w.len().max(1) as f64).sqrt();
    let mut worst = (0.0f64, 0);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = if a.is_nan() || b.is_nan() {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (a - b).abs() / b.abs().max(rms).max(1e-30)
        };
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    worst
}

/// Asserts every named tensor in `want` matches `got` within [`RTOL`] (i32 exactly).
pub fn assert_close(what: &str, got: &BTreeMap<String, Tensor>, want: &BTreeMap<String, Tensor>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: different outputs"
    );
    let mut failures = Vec::new();
    for (name, w) in want {
        let g = &got[name];
        if let (Some(gi), Some(wi)) = (g.as_i32(), w.as_i32()) {
            if gi != wi {
                failures.push(format!("{name}: i32 {gi:?} vs {wi:?}"));
            }
            continue;
        }
        let (err, at) = max_rel_err(g, w);
        if err.is_nan() || err > RTOL {
            failures.push(format!(
                "{name}{:?}: rel err {err:.3e} at {at}: gpu {} vs cpu {}",
                w.shape,
                g.to_f64_vec()[at],
                w.to_f64_vec()[at]
            ));
        }
    }
    assert!(failures.is_empty(), "{what}:\n  {}", failures.join("\n  "));
}

/// Runs `g` on the GPU and on the CPU and compares outputs (and the requested hooks).
pub fn check_against_cpu(
    gpu: &WgpuBackend,
    what: &str,
    g: &Graph,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
    hooks: &HookSelection,
) {
    let want = CpuBackend::new()
        .run(g, inputs, params, hooks)
        .unwrap_or_else(|e| panic!("{what}: cpu run failed: {e}"));
    let got = gpu
        .run(g, inputs, params, hooks)
        .unwrap_or_else(|e| panic!("{what}: gpu run failed: {e}"));
    assert_close(what, &got.outputs, &want.outputs);
    assert_close(&format!("{what} (hooks)"), &got.hooks, &want.hooks);
}
