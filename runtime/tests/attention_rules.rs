//! Attention rules written in the spec (`rule NAME { ... }`): every shipped rule — ALiBi
//! (fixed and trainable slopes), logit soft-capping, sliding-window and prefix-LM masks,
//! sigmoid attention with a `−log n` bias, softmax with a sink, Cog's signed rule from the
//! prelude — against an independent reference computed in f64 from the captured raw scores
//! (`attn.scores`), on odd sizes with grouped-query attention, causal and bidirectional; the
//! fused op against the materialised pattern; gradients (q, k, v and trainable rule
//! parameters) of the fused op and of the captured pattern against finite differences; the fast CPU path against the reference.

mod common;
use common::*;
use std::collections::HashMap;
use weft_compiler::ir::{AttentionRule, DType, Graph, GraphBuilder, Init, Op};
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::{
    init_params, Backend, CpuBackend, FastCpuBackend, HookSelection, ParamStore, Rng, Tensor,
};

const B: usize = 2;
const T: usize = 7;
const HEADS: usize = 3;
const HEAD_DIM: usize = 4;

/// The shipped rules (as in `examples/attention_rules.weft`, sized for T = 7).
const RULES: &str = "
rule alibi {
  slope = head_param(init: alibi, trainable: false)
  score = s - slope * (i - j)
}
rule alibi_trained {
  slope = head_param(init: alibi, trainable: true)
  score = s - slope * (i - j)
}
rule softcap { score = cap * tanh(s / cap) }
rule window { mask = j <= i && i - j < 3 }
rule prefix_lm { mask = j <= i || j < 3 }
rule sigmoid_attn {
  score = s - log(n)
  weights = sigmoid(s)
}
rule sink { weights = exp(s) / (1 + sum(exp(s))) }
";

/// A one-layer model using `rule` with `mask` (GQA: 3 query heads share one kv head).
fn spec(rule: &str, mask: &str) -> weft_dsl::Checked {
    let src = format!(
        "{RULES}
model m {{
  vocab = 13; dim = 12; heads = {HEADS}; kv_heads = 1; layers = 1; ctx = 16
  cap = 2.0
  block b {{
    x = x + attention(rms_norm(x), rule: {rule}, mask: {mask}, position: nope)
  }}
  layers {{ 0 => b }}
}}
"
    );
    weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{rule}: {e:?}"))
}

/// The rules under test with their reference: the weights of one row from raw scores `p`
/// (`p[j]` for every key), query `i`, head `h`, and whether the mask (before the rule's own)
/// is causal.
type Reference = fn(&[f64], usize, usize, bool) -> Vec<f64>;

fn alibi_slope(h: usize) -> f64 {
    2f64.powf(-8.0 * (h + 1) as f64 / HEADS as f64)
}

fn softmax_over(s: &[f64], vis: &[bool], sink: f64) -> Vec<f64> {
    let z: f64 = sink
        + (0..s.len())
            .filter(|&j| vis[j])
            .map(|j| s[j].exp())
            .sum::<f64>();
    (0..s.len())
        .map(|j| if vis[j] { s[j].exp() / z } else { 0.0 })
        .collect()
}

fn base_vis(i: usize, causal: bool) -> Vec<bool> {
    (0..T).map(|j| !causal || j <= i).collect()
}

fn references() -> Vec<(&'static str, Reference)> {
    vec![
        ("alibi", |p, i, h, c| {
            let s: Vec<f64> = (0..T)
                .map(|j| p[j] - alibi_slope(h) * (i as f64 - j as f64))
                .collect();
            softmax_over(&s, &base_vis(i, c), 0.0)
        }),
        ("alibi_trained", |p, i, h, c| {
            let s: Vec<f64> = (0..T)
                .map(|j| p[j] - alibi_slope(h) * (i as f64 - j as f64))
                .collect();
            softmax_over(&s, &base_vis(i, c), 0.0)
        }),
        ("softcap", |p, i, _, c| {
            let s: Vec<f64> = p.iter().map(|x| 2.0 * (x / 2.0).tanh()).collect();
            softmax_over(&s, &base_vis(i, c), 0.0)
        }),
        ("window", |p, i, _, _| {
            let vis: Vec<bool> = (0..T).map(|j| j <= i && i - j < 3).collect();
            softmax_over(p, &vis, 0.0)
        }),
        ("prefix_lm", |p, i, _, _| {
            let vis: Vec<bool> = (0..T).map(|j| j <= i || j < 3).collect();
            softmax_over(p, &vis, 0.0)
        }),
        ("sigmoid_attn", |p, i, _, c| {
            let vis = base_vis(i, c);
            (0..T)
                .map(|j| {
                    if vis[j] {
                        1.0 / (1.0 + (-(p[j] - (T as f64).ln())).exp())
                    } else {
                        0.0
                    }
                })
                .collect()
        }),
        ("sink", |p, i, _, c| softmax_over(p, &base_vis(i, c), 1.0)),
        ("signed", |p, i, _, c| {
            let vis = base_vis(i, c);
            let a: Vec<f64> = p.iter().map(|x| x.abs()).collect();
            softmax_over(&a, &vis, 0.0)
                .iter()
                .zip(p)
                .map(|(w, x)| w * x.signum())
                .collect()
        }),
    ]
}

fn tokens(seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    HashMap::from([("tokens".to_string(), ids(&mut rng, &[B, T], 13))])
}

fn lowered(c: &weft_dsl::Checked, capture: bool) -> Graph {
    let mut o = LowerOptions::new(B, T);
    if capture {
        o.capture = vec![
            "layers.*.attn.scores".into(),
            "layers.*.attn.pattern".into(),
        ];
    }
    lower(c, &o).expect("lowers")
}

#[test]
fn every_shipped_rule_matches_its_reference_from_the_captured_scores() {
    for (name, reference) in references() {
        for mask in ["causal", "bidirectional"] {
            let c = spec(name, mask);
            let g = lowered(&c, true);
            let params = init_params(&g, 3);
            let out = CpuBackend::new()
                .run(&g, &tokens(4), &params, &HookSelection::All)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let scores = out.hooks["layers.0.attn.scores"].to_f64_vec();
            let pattern = out.hooks["layers.0.attn.pattern"].to_f64_vec();
            for bh in 0..B * HEADS {
                for i in 0..T {
                    let row = (bh * T + i) * T;
                    let want = reference(&scores[row..row + T], i, bh % HEADS, mask == "causal");
                    for j in 0..T {
                        let got = pattern[row + j];
                        assert!(
                            (got - want[j]).abs() < 2e-5,
                            "{name}/{mask} head {} row {i} key {j}: {got} vs {}",
                            bh % HEADS,
                            want[j]
                        );
                    }
                }
            }
            // The fused op (no pattern captured) gives the logits of the pattern path.
            let fused = CpuBackend::new()
                .run(
                    &lowered(&c, false),
                    &tokens(4),
                    &params,
                    &HookSelection::None,
                )
                .unwrap();
            let (a, b) = (
                fused.outputs["logits"].to_f64_vec(),
                out.outputs["logits"].to_f64_vec(),
            );
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() < 1e-5,
                    "{name}/{mask}: fused {x} vs pattern {y}"
                );
            }
        }
    }
}

/// The attention op of a lowered rule, for op-level checks.
fn rule_of(name: &str, mask: &str) -> AttentionRule {
    let g = lowered(&spec(name, mask), false);
    g.nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Attention(r) => Some(r.clone()),
            _ => None,
        })
        .expect("an attention op")
}

/// `loss = Σ op(q, k, v) ⊙ R` for `op` the fused attention or its captured pattern, with q,
/// k, v (and the rule's parameters) as trainable parameters, `[B, H, T, d]` with T odd.
fn op_case(op: Op, rule: &AttentionRule, seed: u64) -> Case {
    case(seed, HashMap::new(), |b: &mut GraphBuilder| {
        let shape = [B, HEADS, T, HEAD_DIM];
        let init = Init::Normal { std: 1.0 };
        let mut ins = vec![
            b.param("q", &shape, init.clone(), true),
            b.param("k", &shape, init.clone(), true),
            b.param("v", &shape, init, true),
        ];
        if rule.needs_segments() {
            ins.push(b.input("segments", &[B, T], DType::I32));
        }
        for k in 0..rule.params {
            let values = (0..HEADS).map(|h| alibi_slope(h) as f32 + 0.1).collect();
            ins.push(b.param(&format!("rule{k}"), &[HEADS], Init::Values { values }, true));
        }
        b.apply(op, &ins)
    })
}

#[test]
fn gradients_of_every_rule_match_finite_differences() {
    for (name, _) in references() {
        for mask in ["causal", "bidirectional"] {
            let rule = rule_of(name, mask);
            check(op_case(Op::Attention(rule.clone()), &rule, 11));
        }
    }
}

/// Attention dropout and losses on `attn.pattern` differentiate the captured weights: the
/// gradient is built from the rule's own expressions, so it holds for every rule.
#[test]
fn gradients_through_every_rules_captured_pattern_match_finite_differences() {
    for (name, _) in references() {
        for mask in ["causal", "bidirectional"] {
            let rule = rule_of(name, mask);
            check(op_case(Op::AttentionPattern(rule.clone()), &rule, 12));
        }
    }
}

/// Attention dropout on a rule written in the spec: the lowered training graph goes through
/// the captured pattern, and with every weight kept (masks of 1) its gradients — the slope's
/// included — are the fused op's.
#[test]
fn attention_dropout_differentiates_a_spec_rule_through_its_pattern() {
    use weft_compiler::autodiff::{grad, ParamSelection};
    let c = spec("alibi_trained", "causal, dropout: 0.1");
    let grads = |dropout: bool| {
        let mut o = LowerOptions::new(B, T);
        o.with_loss = true;
        o.dropout = dropout;
        let g = lower(&c, &o).expect("lowers");
        let masks = weft_compiler::lower::dropout_inputs(&g);
        assert_eq!(
            masks.len(),
            usize::from(dropout),
            "one attention-weights mask"
        );
        let loss = g.output("loss").expect("a loss");
        let gg = grad(&g, loss, &[ParamSelection::All]).expect("a gradient through the pattern");
        assert_eq!(
            gg.nodes
                .iter()
                .any(|n| matches!(n.op, Op::AttentionPattern(_))),
            dropout
        );
        let mut rng = Rng::new(21);
        let mut ins = tokens(22);
        ins.insert("targets".into(), ids(&mut rng, &[B, T], 13));
        for (name, _) in masks {
            ins.insert(
                name,
                Tensor::f32(&[B, HEADS, T, T], vec![1.0; B * HEADS * T * T]),
            );
        }
        let params = init_params(&g, 23);
        CpuBackend::new()
            .run(&gg, &ins, &params, &HookSelection::None)
            .unwrap()
            .outputs
    };
    let (fused, pattern) = (grads(false), grads(true));
    let mut compared = 0;
    for (name, want) in fused.iter().filter(|(n, _)| n.starts_with("grad.")) {
        let (a, b) = (pattern[name].to_f64_vec(), want.to_f64_vec());
        let scale = b.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{name}: pattern {x} vs fused {y}"
            );
        }
        compared += 1;
    }
    assert!(fused.contains_key("grad.layers.0.attn.rule.slope") && compared > 5);
}

#[test]
fn trainable_slopes_are_parameters_that_get_gradients() {
    let c = spec("alibi_trained", "causal");
    let g = lowered(&c, false);
    let p = g
        .params
        .iter()
        .find(|p| p.name == "layers.0.attn.rule.slope")
        .expect("the slope parameter");
    assert!(p.trainable);
    assert_eq!(p.shape, vec![HEADS]);
    let rule = rule_of("alibi_trained", "causal");
    assert_eq!(rule.params, 1);
    // Frozen slopes: a parameter too, not trained.
    let g = lowered(&spec("alibi", "causal"), false);
    assert!(g
        .params
        .iter()
        .any(|p| p.name == "layers.0.attn.rule.slope" && !p.trainable));
}

#[test]
fn the_fast_cpu_path_equals_the_reference_on_every_rule() {
    for (name, _) in references() {
        let c = spec(name, "causal");
        let g = lowered(&c, false);
        let params: ParamStore = init_params(&g, 8);
        let want = CpuBackend::new()
            .run(&g, &tokens(9), &params, &HookSelection::None)
            .unwrap();
        let got = FastCpuBackend::new()
            .run(&g, &tokens(9), &params, &HookSelection::None)
            .unwrap();
        let (a, b) = (
            got.outputs["logits"].to_f64_vec(),
            want.outputs["logits"].to_f64_vec(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{name}: fast {x} vs reference {y}");
        }
    }
}

#[test]
fn the_prelude_rules_are_the_built_in_ones() {
    use weft_compiler::ir::AttentionWeights;
    assert_eq!(
        rule_of("signed", "causal").weights,
        AttentionWeights::Signed
    );
    assert_eq!(
        rule_of("softmax", "causal").weights,
        AttentionWeights::Softmax
    );
    assert!(rule_of("signed", "causal").is_builtin());
    assert!(!rule_of("sink", "causal").is_builtin());
}
