//! Attention on the wgpu backend: forward (online softmax), pattern and the two-kernel
//! backward, for both weight rules × all five masks, against the CPU reference.

mod wgpu_support;
use weft_compiler::ir::AttentionWeights;
use weft_runtime::HookSelection;
use wgpu_support::graphs::{self, MASKS};
use wgpu_support::{check_against_cpu, gpu_or_skip};

fn check_rule(weights: AttentionWeights) {
    let Some(gpu) = gpu_or_skip() else { return };
    for mask in MASKS {
        let case = graphs::attention(weights, mask);
        check_against_cpu(
            gpu,
            &case.name,
            &case.graph,
            &case.inputs,
            &case.params,
            &HookSelection::None,
        );
    }
}

#[test]
fn softmax_attention_forward_pattern_backward_match_cpu_for_every_mask() {
    check_rule(AttentionWeights::Softmax);
}

#[test]
fn signed_attention_forward_pattern_backward_match_cpu_for_every_mask() {
    check_rule(AttentionWeights::Signed);
}
