//! `WgpuBackend::profile`: every kernel of the program `run` would launch is timed once, in
//! launch order, with a finite positive time; `compare` pairs fused kernels with the unfused
//! kernels of the same nodes. No timing assertions (machines running this are loaded).

mod wgpu_support;
use weft_compiler::codegen::CodegenOptions;
use weft_compiler::ir::ValueId;
use weft_runtime::wgpu::profile::{compare, table, Clock, KernelTime};
use weft_runtime::{HookSelection, WgpuBackend};
use wgpu_support::{gpu_or_skip, graphs};

fn check_profile(gpu: &WgpuBackend, c: &graphs::Case, hooks: &HookSelection) -> Vec<KernelTime> {
    let program = gpu.program(&c.graph, hooks).unwrap();
    let times = gpu
        .profile(&c.graph, &c.inputs, &c.params, hooks, 3)
        .unwrap_or_else(|e| panic!("{}: profile failed: {e}", c.name));
    let names: Vec<&str> = times.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<&str> = program.kernels.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names, want,
        "{}: one time per kernel, in launch order",
        c.name
    );
    for (t, k) in times.iter().zip(&program.kernels) {
        assert!(
            t.median_ms.is_finite() && t.median_ms > 0.0,
            "{}: {} took {} ms",
            c.name,
            t.name,
            t.median_ms
        );
        assert!(t.wall_ms.is_finite() && t.wall_ms > 0.0, "{}", t.name);
        assert!(t.min_ms > 0.0 && t.min_ms <= t.median_ms, "{}", t.name);
        if t.clock == Clock::Wall {
            assert_eq!(t.median_ms, t.wall_ms, "{}", t.name);
        }
        assert_eq!(t.dispatch, k.dispatch);
        assert_eq!(t.values, k.nodes);
        assert_eq!(t.nodes, k.nodes.len());
        assert!(t.bytes > 0, "{}", t.name);
        assert_eq!(
            t.flops.is_some(),
            k.name.starts_with("matmul_"),
            "{}: FLOPs are counted for matmul kernels only",
            t.name
        );
    }
    times
}

#[test]
fn every_kernel_of_the_program_is_timed_once() {
    let Some(gpu) = gpu_or_skip() else { return };
    let grad = graphs::transformer_grad();
    let times = check_profile(gpu, &grad, &HookSelection::None);
    assert!(times.len() > 10, "{} kernels", times.len());
    // Hooks change the program; the profile follows.
    let fwd = graphs::transformer_forward();
    check_profile(gpu, &fwd, &HookSelection::All);
    check_profile(gpu, &fwd, &HookSelection::None);
    // The profiled program is the cached one: a run afterwards still gives the right
    // answer (feeds stay uploaded, nothing was poisoned or left mapped).
    wgpu_support::check_against_cpu(
        gpu,
        &grad.name,
        &grad.graph,
        &grad.inputs,
        &grad.params,
        &HookSelection::None,
    );
    let t = table(&times, 10);
    assert!(
        t.contains("**total**") && t.contains("Top 10 by time"),
        "{t}"
    );
}

#[test]
fn fused_kernels_pair_with_the_unfused_kernels_of_their_nodes() {
    let Some(_) = gpu_or_skip() else { return };
    let c = graphs::transformer_grad();
    let fused = WgpuBackend::new().unwrap();
    let unfused = WgpuBackend::with_options(CodegenOptions {
        fuse: false,
        ..CodegenOptions::default()
    })
    .unwrap();
    let f = check_profile(&fused, &c, &HookSelection::None);
    let u = check_profile(&unfused, &c, &HookSelection::None);
    assert!(
        u.len() > f.len(),
        "{} unfused vs {} fused",
        u.len(),
        f.len()
    );
    let rows = compare(&f, &u);
    assert_eq!(rows.len(), f.len());
    // Every fused kernel evaluates some node an unfused kernel computes, and every unfused
    // kernel's node is evaluated by some fused kernel (same graph, same needed nodes).
    for r in &rows {
        assert!(!r.unfused.is_empty(), "{} replaces nothing", r.fused);
    }
    for t in &u {
        assert!(
            rows.iter().any(|r| r.unfused.contains(&t.name)),
            "unfused {} is in no fused kernel",
            t.name
        );
    }
}

#[test]
fn compare_sums_the_replaced_kernels_and_sorts_by_cost() {
    let kt = |name: &str, values: &[u32], ms: f64| KernelTime {
        name: name.into(),
        dispatch: [1, 1, 1],
        workgroup_size: 64,
        nodes: values.len(),
        values: values.iter().map(|&v| ValueId(v)).collect(),
        flops: None,
        bytes: 4,
        median_ms: ms,
        min_ms: ms,
        wall_ms: ms,
        clock: Clock::Wall,
    };
    let fused = [kt("matmul_3", &[2, 3, 5], 4.0), kt("sum_7", &[6, 7], 1.0)];
    let unfused = [
        kt("elementwise_2", &[2], 0.5),
        kt("matmul_3", &[3], 1.0),
        kt("elementwise_5", &[5], 0.5),
        kt("elementwise_6", &[6], 1.0),
        kt("sum_7", &[7], 1.0),
    ];
    let rows = compare(&fused, &unfused);
    assert_eq!(rows[0].fused, "matmul_3");
    assert_eq!(
        rows[0].unfused,
        ["elementwise_2", "matmul_3", "elementwise_5"]
    );
    assert_eq!(rows[0].unfused_ms, 2.0);
    assert_eq!(rows[1].fused, "sum_7");
    assert_eq!(rows[1].unfused_ms, 2.0);
}
