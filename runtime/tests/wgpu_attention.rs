//! Attention on the wgpu backend: forward (online softmax), pattern and the two-kernel
//! backward, for both weight rules × all five masks, and for attention rules written in a
//! spec (with their parameter gradients), against the CPU reference. Both forward kernels
//! are checked: the tiled one GPUs run (`gpu_or_skip`'s backend) and the one-row-per-
//! invocation one CPU adapters run; the tiled one also at a length spanning several query
//! and key blocks with an odd head size.

mod wgpu_support;
use std::sync::OnceLock;
use weft_compiler::ir::AttentionWeights;
use weft_runtime::WgpuBackend;
use wgpu_support::graphs::{self, MASKS};
use wgpu_support::{check_case, gpu_or_skip};

/// The tiled forward's backend (`gpu_or_skip`'s) and the per-row forward's.
fn backends() -> Option<[&'static WgpuBackend; 2]> {
    static PER_ROW: OnceLock<WgpuBackend> = OnceLock::new();
    let tiled = gpu_or_skip()?;
    let per_row = PER_ROW.get_or_init(|| {
        let mut b = WgpuBackend::with_options(weft_compiler::codegen::CodegenOptions {
            tiled_attention: false,
            ..WgpuBackend::native_options()
        })
        .expect("an adapter (gpu_or_skip found one)");
        b.poison = true;
        b
    });
    Some([tiled, per_row])
}

fn check_rule(weights: AttentionWeights) {
    let Some(gpus) = backends() else { return };
    for mask in MASKS {
        let small = graphs::attention(weights.clone(), mask.clone());
        // 70 queries: two query blocks of 64 and three key blocks of 32, head size 5.
        let long = graphs::attention_shaped(weights.clone(), mask, [1, 2, 70, 5]);
        for (gpu, case) in [(gpus[0], &small), (gpus[1], &small), (gpus[0], &long)] {
            check_case(gpu, case);
        }
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

#[test]
fn spec_rules_forward_pattern_backward_parameter_and_pattern_gradients_match_cpu() {
    let Some(gpus) = backends() else { return };
    for name in graphs::SPEC_RULE_NAMES {
        for mask in ["causal", "bidirectional"] {
            let rule = graphs::lowered_rule(name, mask);
            let case = graphs::attention_rule(&format!("{name}/{mask}"), &rule);
            let grad = graphs::attention_rule_pattern_grad(&format!("{name}/{mask}"), &rule);
            for gpu in gpus {
                check_case(gpu, &case);
                check_case(gpu, &grad);
            }
        }
    }
}
