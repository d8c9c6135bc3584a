//! Codegen checks that need no GPU: naga validates every kernel generated for the test
//! graphs (fused and unfused, with and without hooks); fusion launches fewer kernels; the
//! attention forward allocates no T×T buffer unless the pattern is captured.

mod wgpu_support;
use weft_compiler::codegen::validate::validate_wgsl;
use weft_compiler::codegen::{compile, CodegenOptions, Program};
use weft_compiler::ir::Graph;
use wgpu_support::graphs::{self, B, H, T};

fn unfused() -> CodegenOptions {
    CodegenOptions {
        fuse: false,
        ..CodegenOptions::default()
    }
}

fn all_hooks(g: &Graph) -> Vec<String> {
    g.hooks.iter().map(|(n, _)| n.clone()).collect()
}

#[test]
fn naga_validates_every_generated_kernel() {
    let mut kernels = 0;
    for case in graphs::all_cases() {
        for opts in [CodegenOptions::default(), unfused()] {
            for hooks in [Vec::new(), all_hooks(&case.graph)] {
                let p = compile(&case.graph, &hooks, &opts)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                for k in &p.kernels {
                    validate_wgsl(k).unwrap_or_else(|e| panic!("{}: {e}", case.name));
                    assert!(k.bindings().count() <= 8, "{}: {}", case.name, k.name);
                    kernels += 1;
                }
            }
        }
    }
    assert!(kernels > 100, "only {kernels} kernels checked");
}

/// Planned values whose shape is `[B,H,T,T]`, the attention score matrix.
fn tt_values(g: &Graph, p: &Program) -> usize {
    p.buffers
        .values
        .iter()
        .filter_map(|(v, _, _)| *v)
        .filter(|&v| g.shape(v) == [B, H, T, T])
        .count()
}

#[test]
fn fused_transformer_forward_launches_fewer_kernels_and_no_tt_buffer() {
    let (g, _) = graphs::transformer();
    let fused = compile(&g, &[], &CodegenOptions::default()).unwrap();
    let plain = compile(&g, &[], &unfused()).unwrap();
    eprintln!(
        "tiny transformer forward: {} kernels fused, {} unfused; planned bytes {} vs {}",
        fused.kernels.len(),
        plain.kernels.len(),
        fused.buffers.peak_bytes,
        plain.buffers.peak_bytes
    );
    assert!(fused.kernels.len() < plain.kernels.len());
    assert!(fused.buffers.peak_bytes <= plain.buffers.peak_bytes);
    let tt_bytes = B * H * T * T * 4;
    for p in [&fused, &plain] {
        assert_eq!(tt_values(&g, p), 0, "no pattern was asked for");
        assert!(p
            .kernels
            .iter()
            .flat_map(|k| k.outputs.iter())
            .all(|b| b.elements * 4 != tt_bytes));
    }
    // Capturing one pattern materialises exactly that one.
    let hooked = compile(
        &g,
        &["layers.1.attn.pattern".into()],
        &CodegenOptions::default(),
    )
    .unwrap();
    assert_eq!(tt_values(&g, &hooked), 1);
}

#[test]
fn fused_gradient_graph_launches_fewer_kernels() {
    let c = graphs::transformer_grad();
    let fused = compile(&c.graph, &[], &CodegenOptions::default()).unwrap();
    let plain = compile(&c.graph, &[], &unfused()).unwrap();
    eprintln!(
        "tiny transformer gradient: {} kernels fused, {} unfused",
        fused.kernels.len(),
        plain.kernels.len()
    );
    assert!(fused.kernels.len() < plain.kernels.len());
    assert_eq!(tt_values(&c.graph, &fused), 0);
}

#[test]
fn elementwise_chains_fuse_into_one_kernel_with_the_reduction() {
    let (g, _) = graphs::transformer();
    let p = compile(&g, &[], &CodegenOptions::default()).unwrap();
    // rms_norm = square → mean (one reduce kernel) and add/rsqrt/mul/mul, which the
    // projection that reads the normalised x evaluates as its prologue.
    let fused_reduce = p
        .kernels
        .iter()
        .find(|k| k.name.starts_with("reduce_") && k.nodes.len() >= 2)
        .expect("a reduction with a fused prologue");
    assert!(
        fused_reduce.wgsl.contains("x0 * x0"),
        "{}",
        fused_reduce.wgsl
    );
    let prologue = p
        .kernels
        .iter()
        .find(|k| k.name.starts_with("matmul_") && k.nodes.len() >= 5)
        .expect("a matmul with the norm's scale as its prologue");
    assert!(prologue.wgsl.contains("sqrt("), "{}", prologue.wgsl);
}

#[test]
fn matmul_epilogues_take_the_residual_add() {
    let (g, _) = graphs::transformer();
    let p = compile(&g, &[], &CodegenOptions::default()).unwrap();
    let epilogues = p
        .kernels
        .iter()
        .filter(|k| k.wgsl.contains("fn epilogue_"))
        .count();
    assert!(epilogues > 0, "no matmul took its consumer as an epilogue");
    let matmuls = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, weft_compiler::ir::Op::MatMul { .. }))
        .count();
    // Every product is computed once, by a matmul kernel (grouped siblings share one).
    let products: usize = p
        .kernels
        .iter()
        .filter(|k| k.name.starts_with("matmul_"))
        .map(|k| {
            k.nodes
                .iter()
                .filter(|v| matches!(g.node(**v).op, weft_compiler::ir::Op::MatMul { .. }))
                .count()
        })
        .sum();
    assert_eq!(products, matmuls);
}
