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

/// The shipped rules (`examples/attention_rules.weft`, sized for 7 positions).
const RULES: &str = "
rule alibi {
  slope = head_param(init: alibi, trainable: true)
  score = s - slope * (i - j)
}
rule softcap { score = 2.0 * tanh(s / 2.0) }
rule window { mask = j <= i && i - j < 3 }
rule prefix_lm { mask = j <= i || j < 3 }
rule sigmoid_attn {
  score = s - log(n)
  weights = sigmoid(s)
}
rule sink { weights = exp(s) / (1 + sum(exp(s))) }
rule doc_bias { score = where(seg_i == seg_j, s, s - 1.0) }
";

/// The attention op's rule for `rule` in a one-layer spec (3 query heads, 1 kv head).
fn lowered_rule(rule: &str, mask: &str) -> weft_compiler::ir::AttentionRule {
    let src = format!(
        "{RULES}
model m {{
  vocab = 13; dim = 12; heads = 3; kv_heads = 1; layers = 1; ctx = 16
  block b {{ x = x + attention(rms_norm(x), rule: {rule}, mask: {mask}, position: nope) }}
  layers {{ 0 => b }}
}}"
    );
    let c = weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let g = weft_compiler::lower::lower(&c, &weft_compiler::lower::LowerOptions::new(2, 7))
        .expect("lowers");
    g.nodes
        .iter()
        .find_map(|n| match &n.op {
            weft_compiler::ir::Op::Attention(r) => Some(r.clone()),
            _ => None,
        })
        .expect("an attention op")
}

#[test]
fn spec_rules_forward_pattern_backward_and_parameter_gradients_match_cpu() {
    let Some(gpus) = backends() else { return };
    for name in [
        "alibi",
        "softcap",
        "window",
        "prefix_lm",
        "sigmoid_attn",
        "sink",
        "signed",
        "doc_bias",
    ] {
        for mask in ["causal", "bidirectional"] {
            let rule = lowered_rule(name, mask);
            let case = graphs::attention_rule(&format!("{name}/{mask}"), &rule);
            for gpu in gpus {
                check_case(gpu, &case);
            }
        }
    }
}
