//! A tiny 2-layer transformer built by hand with the builder (embedding → rms_norm →
//! attention with rope → SwiGLU → logits → mean cross-entropy): whole-graph gradients vs
//! finite differences on sampled entries of every parameter (f64; tolerances in `common`).

mod common;
use common::*;
use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{
    AttentionMask, AttentionRule, AttentionWeights, ConstValue, DType, Graph, GraphBuilder, Init,
    RopeLayout, ValueId,
};
use weft_compiler::passes::{optimize, plan_memory};
use weft_compiler::IrError;
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, Rng, Tensor};

const B: usize = 2;
const T: usize = 5;
const V: usize = 11;
const D: usize = 8;
const H: usize = 2;
const HD: usize = D / H;
const F: usize = 12;

fn w(std: f32) -> Init {
    Init::Normal { std }
}

fn heads(g: &mut GraphBuilder, x: ValueId) -> Result<ValueId, IrError> {
    let r = g.reshape(x, &[B, T, H, HD])?;
    g.permute(r, &[0, 2, 1, 3])
}

fn build() -> Result<(Graph, ValueId), IrError> {
    let mut g = GraphBuilder::new();
    let tokens = g.input("tokens", &[B, T], DType::I32);
    let targets = g.input("targets", &[B * T], DType::I32);
    let emb = g.param("embed", &[V, D], w(1.0), true);
    let mut h = g.gather(emb, tokens)?;
    let pos = g.iota(&[T], 0, DType::I32)?;
    let freqs: Vec<f32> = (0..HD / 2)
        .map(|i| 100f32.powf(-2.0 * i as f32 / HD as f32))
        .collect();
    let freqs = g.constant(ConstValue::F32(freqs), &[HD / 2])?;
    for l in 0..2 {
        g.set_label(Some(format!("layers.{l}")));
        g.hook(&format!("layers.{l}.resid_pre"), h);
        let p = |n: &str| format!("layers.{l}.{n}");
        // Layer 0: softmax + rotate-half; layer 1: Cog (signed) + interleaved.
        let (weights, layout) = if l == 0 {
            (AttentionWeights::Softmax, RopeLayout::Half)
        } else {
            (AttentionWeights::Signed, RopeLayout::Interleaved)
        };
        let n1 = g.param(
            &p("norm1"),
            &[D],
            Init::Uniform {
                low: 0.5,
                high: 1.5,
            },
            true,
        );
        let x = g.rms_norm(h, n1, 1e-6)?;
        let [wq, wk, wv, wo] =
            ["wq", "wk", "wv", "wo"].map(|n| g.param(&p(n), &[D, D], w(0.5), true));
        let q = g.matmul(x, wq)?;
        let q = heads(&mut g, q)?;
        let q = g.rope(q, freqs, pos, layout)?;
        let k = g.matmul(x, wk)?;
        let k = heads(&mut g, k)?;
        let k = g.rope(k, freqs, pos, layout)?;
        let v = g.matmul(x, wv)?;
        let v = heads(&mut g, v)?;
        let rule = AttentionRule::builtin(
            weights.clone(),
            AttentionMask::Causal,
            1.0 / (HD as f32).sqrt(),
        );
        let a = g.attention(rule.clone(), q, k, v, None)?;
        let pat = g.attention_pattern(rule, q, k, v, None)?;
        g.hook(&p("attn.pattern"), pat);
        let a = g.permute(a, &[0, 2, 1, 3])?;
        let a = g.reshape(a, &[B, T, D])?;
        let a = g.matmul(a, wo)?;
        h = g.add(h, a)?;
        let n2 = g.param(
            &p("norm2"),
            &[D],
            Init::Uniform {
                low: 0.5,
                high: 1.5,
            },
            true,
        );
        let x = g.rms_norm(h, n2, 1e-6)?;
        let w1 = g.param(&p("mlp.w1"), &[D, F], w(0.5), true);
        let w3 = g.param(&p("mlp.w3"), &[D, F], w(0.5), true);
        let w2 = g.param(&p("mlp.w2"), &[F, D], w(0.5), true);
        let gate = g.matmul(x, w1)?;
        let gate = g.silu(gate)?;
        let up = g.matmul(x, w3)?;
        let m = g.mul(gate, up)?;
        let m = g.matmul(m, w2)?;
        h = g.add(h, m)?;
    }
    g.set_label(None);
    let nf = g.param(
        "norm_f",
        &[D],
        Init::Uniform {
            low: 0.5,
            high: 1.5,
        },
        true,
    );
    let hf = g.rms_norm(h, nf, 1e-6)?;
    let un = g.param("unembed", &[D, V], w(0.5), true);
    let logits = g.matmul(hf, un)?;
    let logits = g.reshape(logits, &[B * T, V])?;
    let ce = g.cross_entropy(logits, targets)?;
    let loss = g.mean(ce, 0, false)?;
    g.output("y", logits);
    g.output("loss", loss);
    Ok((g.finish()?, loss))
}

fn data() -> HashMap<String, Tensor> {
    let mut rng = Rng::new(11);
    let mut ins = HashMap::new();
    ins.insert("tokens".to_string(), ids(&mut rng, &[B, T], V as u64));
    let mut t = ids(&mut rng, &[B * T], V as u64);
    if let weft_runtime::TensorData::I32(v) = &mut t.data {
        v[3] = -1; // one ignored target
    }
    ins.insert("targets".to_string(), t);
    ins
}

#[test]
fn whole_graph_gradients_match_finite_differences() {
    let (graph, loss) = build().unwrap();
    let params = init_params(&graph, 7);
    let c = Case {
        graph,
        loss,
        inputs: data(),
        params,
    };
    check(c);
}

#[test]
fn passes_keep_gradients_and_memory_reuse_lowers_peak() {
    let (graph, loss) = build().unwrap();
    let gg = grad(&graph, loss, &[ParamSelection::All]).unwrap();
    let opt = optimize(&gg).unwrap();
    assert!(
        opt.len() < gg.len(),
        "CSE/DCE/folding should shrink the backward graph"
    );
    let params = init_params(&graph, 7);
    let ins = data();
    let a = CpuBackend::f64()
        .run(&gg, &ins, &params, &HookSelection::None)
        .unwrap();
    let b = CpuBackend::f64()
        .run(&opt, &ins, &params, &HookSelection::None)
        .unwrap();
    assert_eq!(
        a.outputs.keys().collect::<Vec<_>>(),
        b.outputs.keys().collect::<Vec<_>>()
    );
    for (name, t) in &a.outputs {
        for (x, y) in t.to_f64_vec().iter().zip(b.outputs[name].to_f64_vec()) {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                "{name}: {x} vs {y}"
            );
        }
    }
    let plain = plan_memory(&opt, false);
    let reused = plan_memory(&opt, true);
    assert!(
        reused.peak_bytes * 2 < plain.peak_bytes,
        "{} vs {}",
        reused.peak_bytes,
        plain.peak_bytes
    );
}

#[test]
fn hooks_capture_named_activations() {
    let (graph, _) = build().unwrap();
    let params = init_params(&graph, 7);
    let want = vec![
        "layers.1.attn.pattern".to_string(),
        "layers.0.resid_pre".to_string(),
    ];
    let out = CpuBackend::new()
        .run(&graph, &data(), &params, &HookSelection::Names(want))
        .unwrap();
    assert_eq!(out.hooks.len(), 2);
    let pat = out.hook("layers.1.attn.pattern").unwrap();
    assert_eq!(pat.shape, vec![B, H, T, T]);
    assert!(
        pat.to_f64_vec().iter().any(|&x| x < 0.0),
        "layer 1 is signed attention"
    );
    assert_eq!(out.hook("layers.0.resid_pre").unwrap().shape, vec![B, T, D]);
    let none = CpuBackend::new()
        .run(&graph, &data(), &params, &HookSelection::None)
        .unwrap();
    assert!(none.hooks.is_empty());
}
