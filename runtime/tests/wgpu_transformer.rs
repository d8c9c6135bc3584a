//! A tiny transformer on the wgpu backend: forward with hooks, and the whole gradient graph
//! (autodiff + default passes), against the CPU reference; caching, feed errors, limits.

mod wgpu_support;
use weft_runtime::{Backend, HookSelection, RunError};
use wgpu_support::graphs;
use wgpu_support::{assert_close, check_against_cpu, gpu_or_skip};

#[test]
fn forward_and_every_hook_match_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let c = graphs::transformer_forward();
    check_against_cpu(
        gpu,
        &c.name,
        &c.graph,
        &c.inputs,
        &c.params,
        &HookSelection::All,
    );
    check_against_cpu(
        gpu,
        &c.name,
        &c.graph,
        &c.inputs,
        &c.params,
        &HookSelection::None,
    );
}

#[test]
fn gradient_graph_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let c = graphs::transformer_grad();
    check_against_cpu(
        gpu,
        &c.name,
        &c.graph,
        &c.inputs,
        &c.params,
        &HookSelection::None,
    );
}

#[test]
fn repeated_runs_reuse_the_compiled_graph_and_agree() {
    let Some(gpu) = gpu_or_skip() else { return };
    let c = graphs::transformer_forward();
    let a = gpu
        .run(&c.graph, &c.inputs, &c.params, &HookSelection::None)
        .unwrap();
    let b = gpu
        .run(&c.graph, &c.inputs, &c.params, &HookSelection::None)
        .unwrap();
    assert_close("second run", &b.outputs, &a.outputs);
    // New parameters on the cached graph are uploaded, not stale.
    let mut p2 = c.params.clone();
    let e = p2.get_mut("unembed").unwrap();
    *e = weft_runtime::Tensor::f32(&e.shape, e.to_f32_vec().iter().map(|x| x * 2.0).collect());
    let d = gpu
        .run(&c.graph, &c.inputs, &p2, &HookSelection::None)
        .unwrap();
    assert_ne!(d.outputs["logits"], a.outputs["logits"]);
}

#[test]
fn missing_feeds_and_unknown_hooks_are_errors_naming_them() {
    let Some(gpu) = gpu_or_skip() else { return };
    let c = graphs::transformer_forward();
    let mut ins = c.inputs.clone();
    ins.remove("segments");
    match gpu.run(&c.graph, &ins, &c.params, &HookSelection::None) {
        Err(RunError::MissingInput { name }) => assert_eq!(name, "segments"),
        other => panic!("unexpected {other:?}"),
    }
    let mut ps = c.params.clone();
    ps.remove("layers.1.wq");
    match gpu.run(&c.graph, &c.inputs, &ps, &HookSelection::None) {
        Err(RunError::MissingParam { name }) => assert_eq!(name, "layers.1.wq"),
        other => panic!("unexpected {other:?}"),
    }
    let hooks = HookSelection::Names(vec!["nope".into()]);
    assert!(matches!(
        gpu.run(&c.graph, &c.inputs, &c.params, &hooks),
        Err(RunError::UnknownHook { .. })
    ));
}

#[test]
fn a_tensor_over_the_binding_limit_is_an_error_naming_it() {
    let Some(gpu) = gpu_or_skip() else { return };
    let limit = gpu.options().max_storage_buffer_binding_size;
    let mut b = weft_compiler::ir::GraphBuilder::new();
    let n = (limit / 4 + 1) as usize;
    let x = b.input("huge", &[n], weft_compiler::ir::DType::F32);
    let y = b.exp(x).unwrap();
    b.output("y", y);
    let g = b.finish().unwrap();
    let err = gpu
        .program(&g, &HookSelection::None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("huge") && err.contains(&limit.to_string()),
        "{err}"
    );
}
