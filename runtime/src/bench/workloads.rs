//! The benchmark graphs and their work counts.

use crate::backend::ParamStore;
use crate::init::{init_params, Rng};
use crate::tensor::Tensor;
use std::collections::HashMap;
use weft_compiler::ir::{
    AttentionMask, AttentionRule, AttentionWeights, ConstValue, DType, Graph, GraphBuilder, Init,
};
use weft_compiler::lower::lower;
use weft_compiler::pipeline;

/// What a run of a workload does, for throughput columns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations (a multiply-add is 2).
    Flops(f64),
    /// Bytes moved (for memory-bound kernels).
    Bytes(f64),
}

/// One graph to time, with everything needed to run it.
pub struct Workload {
    /// `matmul`, `attention_fwd`, `attention_fwd_bwd`, `train_step`.
    pub kernel: String,
    /// Human shape, e.g. `1024x1024x1024` or `B1 H2 T512 d64 softmax`.
    pub shape: String,
    pub graph: Graph,
    pub inputs: HashMap<String, Tensor>,
    pub params: ParamStore,
    pub work: Work,
}

fn randn(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(shape, (0..n).map(|_| rng.normal() as f32).collect())
}

/// `C = A · B` for square `n × n` inputs.
pub fn matmul(n: usize) -> Workload {
    let mut b = GraphBuilder::new();
    let a = b.input("a", &[n, n], DType::F32);
    let w = b.input("b", &[n, n], DType::F32);
    let c = b.matmul(a, w).expect("square matmul");
    b.output("c", c);
    let graph = b.finish().expect("matmul graph");
    let mut rng = Rng::new(1);
    let inputs = HashMap::from([
        ("a".to_string(), randn(&mut rng, &[n, n])),
        ("b".to_string(), randn(&mut rng, &[n, n])),
    ]);
    Workload {
        kernel: "matmul".into(),
        shape: format!("{n}x{n}x{n}"),
        graph,
        inputs,
        params: ParamStore::new(),
        work: Work::Flops(2.0 * (n as f64).powi(3)),
    }
}

/// The rule an attention workload runs: a built-in one, or one written the way a spec writes
/// it (`rule NAME { ... }` in the DSL, lowered to expression trees), so that `weft bench`
/// shows what a user-defined rule costs against the built-in softmax of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchRule {
    Softmax,
    /// Cog's signed weights.
    Signed,
    /// ALiBi, `s − slope_h·(i − j)`, with a trainable per-head slope (its gradient included).
    Alibi,
    /// Gemma-2's logit soft-capping, `50·tanh(s/50)`.
    Softcap,
}

impl BenchRule {
    /// Every rule, built-in first.
    pub const ALL: [BenchRule; 4] = [
        BenchRule::Softmax,
        BenchRule::Signed,
        BenchRule::Alibi,
        BenchRule::Softcap,
    ];

    /// The name the bench table shows.
    pub fn name(self) -> &'static str {
        match self {
            BenchRule::Softmax => "softmax",
            BenchRule::Signed => "signed",
            BenchRule::Alibi => "alibi",
            BenchRule::Softcap => "softcap",
        }
    }

    /// The attention op's rule (causal, scale `1/√d`) and how many `[H]` rule parameters it reads.
    fn rule(self, d: usize) -> AttentionRule {
        use weft_compiler::ir::{BinaryOp, RuleExpr, RuleVar, UnaryOp};
        let weights = match self {
            BenchRule::Signed => AttentionWeights::Signed,
            _ => AttentionWeights::Softmax,
        };
        let mut rule =
            AttentionRule::builtin(weights, AttentionMask::Causal, 1.0 / (d as f32).sqrt());
        let bin = RuleExpr::binary;
        match self {
            BenchRule::Softmax | BenchRule::Signed => {}
            BenchRule::Alibi => {
                let dist = bin(
                    BinaryOp::Sub,
                    RuleExpr::Var(RuleVar::QueryPos),
                    RuleExpr::Var(RuleVar::KeyPos),
                );
                rule.score = Some(bin(
                    BinaryOp::Sub,
                    RuleExpr::s(),
                    bin(BinaryOp::Mul, RuleExpr::Param(0), dist),
                ));
                rule.params = 1;
            }
            BenchRule::Softcap => {
                let inner = bin(BinaryOp::Div, RuleExpr::s(), RuleExpr::Const(50.0));
                rule.score = Some(bin(
                    BinaryOp::Mul,
                    RuleExpr::Const(50.0),
                    RuleExpr::unary(UnaryOp::Tanh, inner),
                ));
            }
        }
        rule
    }
}

/// Causal attention `[b, h, t, d]` under `rule`; with `backward`, the gradient graph of
/// `Σ y ⊙ R` with respect to q, k and v (and a rule's parameters), forward and backward
/// kernels in one run.
///
/// FLOPs follow the FlashAttention convention: the forward's two `T×T×d` products over the
/// visible (causal) half, `2·B·H·T²·d`; the backward is 2.5× the forward (five products), so
/// forward + backward counts 3.5×. A rule's own arithmetic is not counted: its throughput
/// beside softmax's of the same shape is what the rule costs.
pub fn attention(
    rule: BenchRule,
    b: usize,
    h: usize,
    t: usize,
    d: usize,
    backward: bool,
) -> Workload {
    let shape = [b, h, t, d];
    let mut g = GraphBuilder::new();
    let q = g.param("q", &shape, Init::Normal { std: 1.0 }, true);
    let k = g.param("k", &shape, Init::Normal { std: 1.0 }, true);
    let v = g.param("v", &shape, Init::Normal { std: 1.0 }, true);
    let op = rule.rule(d);
    let mut ins = vec![q, k, v];
    if op.params > 0 {
        // ALiBi's geometric slopes are what `init: alibi` gives; any positive values do.
        ins.push(g.param("slope", &[h], Init::Normal { std: 0.1 }, true));
    }
    let y = g
        .apply(weft_compiler::ir::Op::Attention(op), &ins)
        .expect("attention");
    let n = b * h * t * d;
    let mut rng = Rng::new(2);
    let r: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let r = g.constant(ConstValue::F32(r), &shape).expect("weights");
    let p = g.mul(y, r).expect("mul");
    // The sum in two stages, rows then their sums: a single sum over all B·H·T·d elements
    // is one lane, one workgroup on a GPU, and its time swamped the attention kernels' in
    // the "GPU kernels" column at T 2048 (the 2026-12-04 H200 runs).
    let rows = g.reshape(p, &[b * h * t, d]).expect("reshape");
    let row_sums = g.sum(rows, 1, false).expect("sum");
    let loss = g.sum(row_sums, 0, false).expect("sum");
    g.output("y", y);
    g.output("loss", loss);
    let graph = g.finish().expect("attention graph");
    let params = init_params(&graph, 3);
    let graph = if backward {
        pipeline::backward(&graph, loss).expect("attention gradient")
    } else {
        graph
    };
    let fwd = 2.0 * (b * h) as f64 * (t * t) as f64 * d as f64;
    Workload {
        kernel: if backward {
            "attention_fwd_bwd".into()
        } else {
            "attention_fwd".into()
        },
        shape: format!("B{b} H{h} T{t} d{d} {}", rule.name()),
        graph,
        inputs: HashMap::new(),
        params,
        work: Work::Flops(if backward { 3.5 * fwd } else { fwd }),
    }
}

/// One training step of `spec` at `[b, t]`: the loss and every trainable parameter's
/// gradient, the graph `weft train` runs (`pipeline::training_step`: dropout on, the spec's
/// `trainable`; the optimizer update is not included). FLOPs are 3× the forward's products
/// (`ir::flops`), the usual estimate.
pub fn train_step(
    name: &str,
    spec: &weft_dsl::Checked,
    b: usize,
    t: usize,
) -> Result<Workload, String> {
    let opts = pipeline::training_options(spec, b, t);
    let g = lower(spec, &opts).map_err(|e| format!("{name}: {e}"))?;
    let params = init_params(&g, 4);
    let forward_flops = weft_compiler::ir::flops(&g);
    let gg = pipeline::step_graph(spec, &opts).map_err(|e| format!("{name}: {e}"))?;
    let vocab = spec.model.config.vocab.max(1) as u64;
    let mut rng = Rng::new(5);
    let mut inputs = HashMap::new();
    for info in &gg.inputs {
        let n: usize = info.shape.iter().product();
        let t = match (info.name.as_str(), info.dtype) {
            ("tokens" | "targets", _) => Tensor::i32(
                &info.shape,
                (0..n).map(|_| rng.below(vocab) as i32).collect(),
            ),
            (_, DType::I32) => Tensor::i32(&info.shape, vec![0; n]),
            _ => Tensor::f32(&info.shape, vec![1.0; n]),
        };
        inputs.insert(info.name.clone(), t);
    }
    Ok(Workload {
        kernel: "train_step".into(),
        shape: format!("{name} B{b} T{t}"),
        graph: gg,
        inputs,
        params,
        work: Work::Flops(3.0 * forward_flops),
    })
}
