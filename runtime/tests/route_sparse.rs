//! `route(..., execution: sparse)` computes the dense-masked route's function (forward and
//! every gradient) while its counted work scales with `top_k`, not with the pool size.

mod wgpu_support;

use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{flops, Graph};
use weft_compiler::lower::{lower, LowerOptions};
use weft_compiler::passes::optimize;
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, Rng, Tensor};

const B: usize = 2;
const T: usize = 8;
const D: usize = 16;
const HIDDEN: usize = 4 * D;
const ROUTER_HIDDEN: usize = 8;
const ITERS: usize = 2;

fn spec(pool: usize, top_k: usize, execution: &str, module: &str) -> weft_dsl::Checked {
    let src = format!(
        "model m {{ vocab = 32\n dim = {D}\n heads = 2\n ctx = 16\n layers = 1
         pool ffn[{pool}] {{ {module}(rms_norm(x)) }}
         block mom {{
           x = x + attention(rms_norm(x))
           repeat {ITERS} {{ x = x + route(ffn, router: mlp(hidden: {ROUTER_HIDDEN}), top_k: {top_k}, execution: {execution}) }}
         }}
         layers {{ 0 => mom }} }}"
    );
    weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{e:?}\n{src}"))
}

fn graph(pool: usize, top_k: usize, execution: &str, module: &str) -> Graph {
    let mut o = LowerOptions::new(B, T);
    o.with_loss = true;
    lower(&spec(pool, top_k, execution, module), &o).unwrap()
}

fn feeds(seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    let tokens: Vec<i32> = (0..B * T).map(|_| rng.below(32) as i32).collect();
    let targets: Vec<i32> = (0..B * T).map(|_| rng.below(32) as i32).collect();
    HashMap::from([
        ("tokens".to_string(), Tensor::i32(&[B, T], tokens)),
        ("targets".to_string(), Tensor::i32(&[B, T], targets)),
    ])
}

fn gradient(g: &Graph) -> Graph {
    let loss = g.output("loss").unwrap();
    optimize(&grad(g, loss, &[ParamSelection::All]).unwrap()).unwrap()
}

#[test]
fn sparse_route_matches_dense_forward_and_gradients() {
    for module in ["mlp", "swiglu"] {
        for top_k in [1, 2, 3] {
            let dense = graph(4, top_k, "dense", module);
            let sparse = graph(4, top_k, "sparse", module);
            let mut dn: Vec<&str> = dense.params.iter().map(|p| p.name.as_str()).collect();
            let mut sn: Vec<&str> = sparse.params.iter().map(|p| p.name.as_str()).collect();
            dn.sort();
            sn.sort();
            assert_eq!(dn, sn, "both executions use the same parameters");
            let mut params = init_params(&dense, 3);
            // Spread the router's logits so several modules get chosen.
            for (name, t) in params.iter_mut() {
                if name.contains("router") && name.ends_with("weight") {
                    *t = Tensor::f32(&t.shape, t.to_f32_vec().iter().map(|x| x * 50.0).collect());
                }
            }
            let ins = feeds(5);
            let cpu = CpuBackend::f64();
            let (a, b) = (
                cpu.run(&gradient(&dense), &ins, &params, &HookSelection::None)
                    .unwrap(),
                cpu.run(&gradient(&sparse), &ins, &params, &HookSelection::None)
                    .unwrap(),
            );
            assert_eq!(
                a.outputs.keys().collect::<Vec<_>>(),
                b.outputs.keys().collect::<Vec<_>>()
            );
            for (name, want) in &a.outputs {
                let (w, g) = (want.to_f64_vec(), b.outputs[name].to_f64_vec());
                let scale = w.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
                for (x, y) in w.iter().zip(&g) {
                    assert!(
                        (x - y).abs() <= 1e-9 * scale,
                        "{module} top_k {top_k} {name}: dense {x} vs sparse {y}"
                    );
                }
            }
            let logits = |g: &Graph| {
                cpu.run(g, &ins, &params, &HookSelection::None)
                    .unwrap()
                    .outputs["logits"]
                    .to_f64_vec()
            };
            assert_eq!(logits(&dense).len(), B * T * 32);
            let (x, y) = (logits(&dense), logits(&sparse));
            assert!(
                x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-9),
                "{module} logits"
            );
        }
    }
}

#[test]
fn sparse_route_work_scales_with_top_k_not_pool_size() {
    let n = (B * T) as f64;
    // One extra choice adds one router output column per token, iteration.
    let router_col = ITERS as f64 * n * 2.0 * ROUTER_HIDDEN as f64;
    // One extra module per token runs w1 and w2 once more per iteration.
    let module = ITERS as f64 * n * 2.0 * (2 * D * HIDDEN) as f64;
    let f = |pool, k, e| flops(&graph(pool, k, e, "mlp"));
    // Sparse: growing the pool 2 → 8 only widens the router.
    assert_eq!(f(8, 1, "sparse") - f(2, 1, "sparse"), 6.0 * router_col);
    // Sparse: each extra top_k runs one module more per token.
    assert_eq!(f(4, 2, "sparse") - f(4, 1, "sparse"), module);
    assert_eq!(f(4, 3, "sparse") - f(4, 1, "sparse"), 2.0 * module);
    // Dense: every module runs on every token whatever top_k is.
    assert_eq!(
        f(8, 1, "dense") - f(2, 1, "dense"),
        6.0 * (router_col + module)
    );
    assert_eq!(f(4, 2, "dense"), f(4, 1, "dense"));
    // Gradient graphs scale the same way.
    let gf = |pool, k, e| flops(&gradient(&graph(pool, k, e, "mlp")));
    let grow_sparse = gf(8, 1, "sparse") - gf(2, 1, "sparse");
    let grow_dense = gf(8, 1, "dense") - gf(2, 1, "dense");
    assert!(
        grow_sparse * 10.0 < grow_dense,
        "{grow_sparse} vs {grow_dense}"
    );
}

#[test]
fn sparse_route_gradient_matches_cpu_on_wgpu() {
    let Some(gpu) = wgpu_support::gpu_or_skip() else {
        return;
    };
    let g = gradient(&graph(4, 2, "sparse", "swiglu"));
    let params = init_params(&g, 8);
    wgpu_support::check_against_cpu(
        gpu,
        "sparse route gradient",
        &g,
        &feeds(9),
        &params,
        &HookSelection::None,
    );
}

/// The per-token weights a sparse pool selects (`[N·top_k, D, HIDDEN]` and the like) are
/// read in place by the matmuls (a grouped matmul) and their gradients are scattered back
/// per module without being stored either: no buffer of the compiled training step holds
/// one weight copy per token.
#[test]
fn sparse_route_stores_no_per_token_weight_copies() {
    use weft_compiler::codegen::{compile, CodegenOptions};
    let top_k = 2;
    let slots = B * T * top_k;
    let g = gradient(&graph(4, top_k, "sparse", "swiglu"));
    let opts = CodegenOptions {
        max_storage_buffers_per_stage: 16,
        ..CodegenOptions::default()
    };
    let p = compile(&g, &[], &opts).unwrap();
    let largest = p
        .buffers
        .values
        .iter()
        .map(|(_, _, bytes)| *bytes)
        .max()
        .unwrap();
    // One copy of a module's w_gate per slot would be slots · D · HIDDEN floats.
    let per_token_copy = slots * D * HIDDEN * 4;
    assert!(
        largest < per_token_copy / 4,
        "largest buffer {largest} bytes; one weight copy per slot is {per_token_copy}"
    );
}
