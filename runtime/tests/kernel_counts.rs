//! Kernel counts and the buffer plan of the baseline GPT (`examples/gpt.weft`), fused: how
//! many kernels one decoder layer launches, and that the attention forward never allocates
//! a T×T buffer unless its pattern is captured. Codegen only: no GPU needed.

use weft_compiler::codegen::{compile, CodegenOptions, Program};
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};

const B: usize = 2;
const T: usize = 16;

/// Kernels one fused decoder layer of gpt.weft launches in the forward pass:
/// - rms_norm's mean of squares (a reduction);
/// - the q, k, v projections as one kernel (they share their A operand, the normed input,
///   whose scale is applied as a prologue);
/// - rope + head permute of k and the head permute of v, as one kernel (attention reads
///   keys and values from buffers);
/// - attention (online softmax), rotating and splitting the queries in its prologue;
/// - W_O, reading the heads back through a prologue, residual add in its epilogue;
/// - the second rms_norm's mean of squares;
/// - the gate and up projections accumulated side by side, `silu(gate) · up` in their
///   epilogue;
/// - the down projection with the residual add in its epilogue.
///
/// That needs 9 storage buffers in the q, k, v kernel (input, norm statistics, norm weight,
/// three weights, three outputs). Native adapters bind far more per stage (Metal 31, Vulkan
/// and D3D12 more), and the wgpu backend compiles for the adapter's limit; under WebGPU's
/// portable default of 8, v gets its own kernel.
const KERNELS_PER_LAYER: usize = 8;
const KERNELS_PER_LAYER_PORTABLE: usize = 9;
/// Without matmul prologues (the wgpu backend's choice on CPU adapters, where they measured
/// slower) the two norms' scales and W_O's merge of the heads are one kernel each.
const KERNELS_PER_LAYER_NO_PROLOGUES: usize = 11;

/// gpt.weft with `layers` overridden.
fn gpt(layers: i64) -> weft_dsl::Checked {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gpt.weft");
    let src = std::fs::read_to_string(path).unwrap();
    let src = weft_dsl::edit::with_settings(&src, &[("layers", layers)], &[]).unwrap();
    weft_dsl::check_source(&src).unwrap()
}

fn forward(layers: i64, capture: &[&str]) -> Graph {
    let mut o = LowerOptions::new(B, T);
    o.capture = capture.iter().map(|s| s.to_string()).collect();
    lower(&gpt(layers), &o).unwrap()
}

fn fused(g: &Graph, hooks: &[String]) -> Program {
    compile(g, hooks, &CodegenOptions::default()).unwrap()
}

/// Kernels per decoder layer under `opts` (from a 2- and a 4-layer model).
fn per_layer(opts: &CodegenOptions) -> usize {
    let (k2, k4) = (
        compile(&forward(2, &[]), &[], opts).unwrap().kernels.len(),
        compile(&forward(4, &[]), &[], opts).unwrap().kernels.len(),
    );
    assert_eq!((k4 - k2) % 2, 0, "layers differ in kernel count");
    (k4 - k2) / 2
}

#[test]
fn one_fused_gpt_layer_launches_the_stated_number_of_kernels() {
    let native = CodegenOptions {
        max_storage_buffers_per_stage: 16,
        ..CodegenOptions::default()
    };
    let unfused = CodegenOptions {
        fuse: false,
        ..CodegenOptions::default()
    };
    let no_prologues = CodegenOptions {
        matmul_prologues: false,
        ..native.clone()
    };
    let (fused, portable, cpu_adapter, unfused) = (
        per_layer(&native),
        per_layer(&CodegenOptions::default()),
        per_layer(&no_prologues),
        per_layer(&unfused),
    );
    eprintln!(
        "gpt.weft forward, kernels per layer: {fused} fused, {portable} fused with 8 \
         bindings per stage, {cpu_adapter} without matmul prologues, {unfused} unfused"
    );
    assert_eq!(cpu_adapter, KERNELS_PER_LAYER_NO_PROLOGUES);
    assert_eq!(fused, KERNELS_PER_LAYER);
    assert_eq!(portable, KERNELS_PER_LAYER_PORTABLE);
    assert!(
        2 * fused < unfused,
        "fusion should at least halve the kernels"
    );
}

#[test]
fn gpt_attention_forward_allocates_no_tt_buffer_unless_the_pattern_is_captured() {
    let spec = gpt(4);
    let heads = spec.model.config.heads;
    let tt = B * heads * T * T;
    let g = forward(4, &[]);
    let p = fused(&g, &[]);
    let tt_values = |g: &Graph, p: &Program| {
        p.buffers
            .values
            .iter()
            .filter_map(|(v, _, _)| *v)
            .filter(|&v| g.shape(v) == [B, heads, T, T])
            .count()
    };
    assert_eq!(tt_values(&g, &p), 0);
    assert!(p
        .kernels
        .iter()
        .flat_map(|k| k.bindings())
        .all(|b| b.elements != tt));
    // Capturing one layer's pattern materialises exactly that one.
    let g = forward(4, &["layers.2.attn.pattern"]);
    let p = fused(&g, &["layers.2.attn.pattern".to_string()]);
    assert_eq!(tt_values(&g, &p), 1);
}
