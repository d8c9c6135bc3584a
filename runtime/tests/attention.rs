//! Attention: forward and pattern vs a naive reference for every rule; Cog (signed)
//! properties; backward vs finite differences (f64; tolerances in `common`).

mod common;
use common::*;
use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{
    AttentionMask, AttentionRule, AttentionWeights, DType, GraphBuilder, Init, Op,
};
use weft_runtime::{Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

const MASKS: [AttentionMask; 6] = [
    AttentionMask::Causal,
    AttentionMask::Bidirectional,
    AttentionMask::Document,
    AttentionMask::Turns,
    AttentionMask::TurnsKeepFirst,
    AttentionMask::SelfOnly,
];
const WEIGHTS: [AttentionWeights; 2] = [AttentionWeights::Softmax, AttentionWeights::Signed];
const SHAPE: [usize; 4] = [2, 2, 6, 4];

fn rule(weights: AttentionWeights, mask: AttentionMask) -> AttentionRule {
    AttentionRule::builtin(weights.clone(), mask.clone(), 0.5)
}

/// Segment ids with two documents per sequence, at different boundaries.
fn segments() -> Tensor {
    Tensor::i32(&[2, 6], vec![0, 0, 0, 1, 1, 1, 4, 4, 7, 7, 7, 7])
}

/// Straight from the definitions (METHODS §2.2), in f64 loops.
fn naive_weights(r: AttentionRule, q: &[f64], k: &[f64], seg: &[i32]) -> Vec<f64> {
    let [b, h, t, d] = SHAPE;
    let mut w = vec![0.0; b * h * t * t];
    for bi in 0..b {
        for hi in 0..h {
            let base = (bi * h + hi) * t * d;
            for i in 0..t {
                let vis: Vec<bool> = (0..t)
                    .map(|j| r.mask.visible(i, j, seg[bi * t + i], seg[bi * t + j]))
                    .collect();
                let p: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..d)
                            .map(|c| q[base + i * d + c] * k[base + j * d + c])
                            .sum::<f64>()
                            * r.scale as f64
                    })
                    .collect();
                let a: Vec<f64> = p
                    .iter()
                    .map(|&x| {
                        if r.weights == AttentionWeights::Signed {
                            x.abs()
                        } else {
                            x
                        }
                    })
                    .collect();
                let z: f64 = (0..t).filter(|&j| vis[j]).map(|j| a[j].exp()).sum();
                for j in 0..t {
                    let s = if vis[j] { a[j].exp() / z } else { 0.0 };
                    let sg = if r.weights == AttentionWeights::Signed {
                        p[j].signum()
                    } else {
                        1.0
                    };
                    w[((bi * h + hi) * t + i) * t + j] = sg * s;
                }
            }
        }
    }
    w
}

fn inputs(seed: u64) -> (HashMap<String, Tensor>, ParamStore) {
    let mut rng = Rng::new(seed);
    let mut ins = HashMap::new();
    ins.insert("seg".to_string(), segments());
    let mut p = ParamStore::new();
    for n in ["q", "k", "v"] {
        p.insert(n.to_string(), randn_t(&mut rng, &SHAPE));
    }
    (ins, p)
}

fn forward_graph(r: AttentionRule) -> weft_compiler::ir::Graph {
    let mut b = GraphBuilder::new();
    let [q, k, v] = ["q", "k", "v"].map(|n| b.param(n, &SHAPE, Init::Normal { std: 1.0 }, true));
    let seg = r
        .mask
        .needs_segments()
        .then(|| b.input("seg", &[2, 6], DType::I32));
    let y = b.attention(r.clone(), q, k, v, seg).unwrap();
    let w = b.attention_pattern(r, q, k, v, seg).unwrap();
    b.output("y", y);
    b.hook("attn.pattern", w);
    b.finish().unwrap()
}

#[test]
fn forward_and_pattern_match_naive_reference_for_every_rule() {
    for weights in WEIGHTS {
        for mask in MASKS {
            let r = rule(weights.clone(), mask.clone());
            let (ins, params) = inputs(3);
            let out = CpuBackend::f64()
                .run(
                    &forward_graph(r.clone()),
                    &ins,
                    &params,
                    &HookSelection::All,
                )
                .unwrap();
            let (q, k, v) = (
                params["q"].to_f64_vec(),
                params["k"].to_f64_vec(),
                params["v"].to_f64_vec(),
            );
            let want_w = naive_weights(r.clone(), &q, &k, segments().as_i32().unwrap());
            let got_w = out.hook("attn.pattern").unwrap().to_f64_vec();
            for (a, b) in got_w.iter().zip(&want_w) {
                assert!((a - b).abs() < 1e-12, "{r:?}: pattern {a} vs {b}");
            }
            let [bb, h, t, d] = SHAPE;
            let y = out.get("y").unwrap().to_f64_vec();
            for bh in 0..bb * h {
                for i in 0..t {
                    for c in 0..d {
                        let want: f64 = (0..t)
                            .map(|j| want_w[(bh * t + i) * t + j] * v[(bh * t + j) * d + c])
                            .sum();
                        let got = y[(bh * t + i) * d + c];
                        assert!((got - want).abs() < 1e-12, "{r:?}: y {got} vs {want}");
                    }
                }
            }
            // The f32 path agrees with f64.
            let out32 = CpuBackend::new()
                .run(
                    &forward_graph(r.clone()),
                    &ins,
                    &params,
                    &HookSelection::None,
                )
                .unwrap();
            for (a, b) in out32.get("y").unwrap().to_f64_vec().iter().zip(&y) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()));
            }
        }
    }
}

#[test]
fn masks_hide_exactly_the_invisible_keys() {
    let (ins, params) = inputs(4);
    let seg = segments();
    let seg = seg.as_i32().unwrap();
    for mask in MASKS {
        let r = rule(AttentionWeights::Softmax, mask.clone());
        let out = CpuBackend::new()
            .run(
                &forward_graph(r.clone()),
                &ins,
                &params,
                &HookSelection::All,
            )
            .unwrap();
        let w = out.hook("attn.pattern").unwrap().to_f64_vec();
        let t = 6;
        for (row, chunk) in w.chunks(t).enumerate() {
            let (bi, i) = (row / (2 * t), row % t);
            for (j, &x) in chunk.iter().enumerate() {
                let visible = match mask {
                    AttentionMask::Causal => j <= i,
                    AttentionMask::Bidirectional => true,
                    AttentionMask::Document | AttentionMask::Turns => {
                        j <= i && seg[bi * t + i] == seg[bi * t + j]
                    }
                    AttentionMask::TurnsKeepFirst => {
                        j <= i && (seg[bi * t + i] == seg[bi * t + j] || seg[bi * t + j] == 0)
                    }
                    AttentionMask::SelfOnly => j == i,
                    AttentionMask::Rule(_) => unreachable!("the built-in masks only"),
                };
                assert_eq!(x > 0.0, visible, "{mask:?} row {row} key {j}: weight {x}");
            }
            assert!((chunk.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
    }
}

#[test]
fn signed_rows_are_l1_normalised_and_negative_scores_give_negative_weights() {
    let (ins, params) = inputs(5);
    let r = rule(AttentionWeights::Signed, AttentionMask::Bidirectional);
    let out = CpuBackend::new()
        .run(
            &forward_graph(r.clone()),
            &ins,
            &params,
            &HookSelection::All,
        )
        .unwrap();
    let w = out.hook("attn.pattern").unwrap().to_f64_vec();
    let (q, k) = (params["q"].to_f64_vec(), params["k"].to_f64_vec());
    let (t, d) = (6, 4);
    let mut negatives = 0;
    for (row, chunk) in w.chunks(t).enumerate() {
        assert!((chunk.iter().map(|x| x.abs()).sum::<f64>() - 1.0).abs() < 1e-6);
        let (bh, i) = (row / t, row % t);
        for (j, &x) in chunk.iter().enumerate() {
            let p: f64 = (0..d)
                .map(|c| q[(bh * t + i) * d + c] * k[(bh * t + j) * d + c])
                .sum();
            assert_eq!(x.signum(), p.signum(), "weight sign follows the score sign");
            negatives += (x < 0.0) as usize;
        }
    }
    assert!(
        negatives > 10,
        "random scores should give many negative weights"
    );
}

#[test]
fn signed_zero_score_gives_zero_weight() {
    let mut b = GraphBuilder::new();
    let q = b.input("q", &[1, 1, 3, 2], DType::F32);
    let k = b.input("k", &[1, 1, 3, 2], DType::F32);
    let r = rule(AttentionWeights::Signed, AttentionMask::Bidirectional);
    let w = b.attention_pattern(r, q, k, k, None).unwrap();
    b.output("w", w);
    let g = b.finish().unwrap();
    let mut ins = HashMap::new();
    // Query 0 is orthogonal to key 1: p = 0 exactly.
    ins.insert(
        "q".into(),
        Tensor::f32(&[1, 1, 3, 2], vec![1.0, 0.0, 0.5, 0.5, -1.0, 2.0]),
    );
    ins.insert(
        "k".into(),
        Tensor::f32(&[1, 1, 3, 2], vec![-2.0, 1.0, 0.0, 3.0, 1.0, 1.0]),
    );
    let out = CpuBackend::new()
        .run(&g, &ins, &ParamStore::new(), &HookSelection::None)
        .unwrap();
    let w = out.get("w").unwrap().to_f64_vec();
    assert_eq!(w[1], 0.0);
    assert!(w[0] < 0.0 && w[2] > 0.0);
}

#[test]
fn backward_matches_finite_differences_for_every_rule() {
    for (wi, weights) in WEIGHTS.into_iter().enumerate() {
        for (mi, mask) in MASKS.into_iter().enumerate() {
            let r = rule(weights.clone(), mask.clone());
            let mut ins = HashMap::new();
            ins.insert("seg".to_string(), segments());
            grad_check(200 + (wi * 10 + mi) as u64, ins, |b| {
                let [q, k, v] =
                    ["q", "k", "v"].map(|n| b.param(n, &SHAPE, Init::Normal { std: 1.0 }, true));
                let seg = r
                    .mask
                    .needs_segments()
                    .then(|| b.input("seg", &[2, 6], DType::I32));
                b.attention(r, q, k, v, seg)
            });
        }
    }
}

#[test]
fn pattern_backward_matches_finite_differences() {
    for (wi, weights) in WEIGHTS.into_iter().enumerate() {
        let r = rule(weights, AttentionMask::Causal);
        grad_check(300 + wi as u64, HashMap::new(), |b| {
            let [q, k, v] =
                ["q", "k", "v"].map(|n| b.param(n, &SHAPE, Init::Normal { std: 1.0 }, true));
            b.attention_pattern(r, q, k, v, None)
        });
    }
}

#[test]
fn backward_is_one_fused_op_not_a_txt_decomposition() {
    let mut b = GraphBuilder::new();
    let [q, k, v] = ["q", "k", "v"].map(|n| b.param(n, &SHAPE, Init::Normal { std: 1.0 }, true));
    let y = b
        .attention(
            rule(AttentionWeights::Signed, AttentionMask::Causal),
            q,
            k,
            v,
            None,
        )
        .unwrap();
    let s = b.reshape(y, &[96]).unwrap();
    let loss = b.sum(s, 0, false).unwrap();
    let g = b.finish().unwrap();
    let gg = grad(&g, loss, &[ParamSelection::All]).unwrap();
    let count = |f: &dyn Fn(&Op) -> bool| gg.nodes.iter().filter(|n| f(&n.op)).count();
    assert_eq!(count(&|o| matches!(o, Op::AttentionBackward(_))), 1);
    assert_eq!(
        count(&|o| matches!(o, Op::Softmax { .. } | Op::MatMul { .. })),
        0,
        "{gg}"
    );
}
