//! Test graphs with their random feeds (seeded; inputs drawn so that no value is zero).

use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{
    AttentionMask, AttentionRule, AttentionWeights, BinaryOp, CmpOp, ConstValue, DType, Graph,
    GraphBuilder, Init, Op, ReduceOp, RopeLayout, UnaryOp, ValueId,
};
use weft_compiler::passes::optimize;
use weft_compiler::IrError;
use weft_runtime::{init_params, ParamStore, Rng, Tensor};

/// A graph with everything needed to run it.
pub struct Case {
    pub name: String,
    pub graph: Graph,
    pub inputs: HashMap<String, Tensor>,
    pub params: ParamStore,
}

pub const UNARY: [UnaryOp; 16] = UnaryOp::ALL;
pub const BINARY: [BinaryOp; 6] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Max,
    BinaryOp::Min,
];
pub const CMP: [CmpOp; 6] = [
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
    CmpOp::Eq,
    CmpOp::Ne,
];
pub const MASKS: [AttentionMask; 6] = [
    AttentionMask::Causal,
    AttentionMask::Bidirectional,
    AttentionMask::Document,
    AttentionMask::Turns,
    AttentionMask::TurnsKeepFirst,
    AttentionMask::SelfOnly,
];
pub const WEIGHTS: [AttentionWeights; 2] = [AttentionWeights::Softmax, AttentionWeights::Signed];

fn randn(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    // |x| ≥ 0.05: no zeros, and no inputs where a kink (abs, relu, sign) makes f32 noise decide.
    Tensor::f32(
        shape,
        (0..n)
            .map(|_| {
                let x = rng.normal() as f32;
                if x.abs() < 0.05 {
                    0.05f32.copysign(x) + x
                } else {
                    x
                }
            })
            .collect(),
    )
}

fn positive(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let t = randn(rng, shape);
    Tensor::f32(
        shape,
        t.to_f32_vec().iter().map(|x| x.abs() + 0.25).collect(),
    )
}

fn ids(rng: &mut Rng, shape: &[usize], below: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::i32(shape, (0..n).map(|_| rng.below(below) as i32).collect())
}

fn finish(name: &str, b: GraphBuilder, inputs: HashMap<String, Tensor>) -> Case {
    let graph = b.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
    let params = init_params(&graph, 5);
    Case {
        name: name.into(),
        graph,
        inputs,
        params,
    }
}

/// Every unary op and its gradient, on positive inputs where the op needs them.
pub fn unary_ops() -> Case {
    let mut rng = Rng::new(1);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let shape = [2, 3, 5];
    let x = b.input("x", &shape, DType::F32);
    let xp = b.input("xp", &shape, DType::F32);
    let dy = b.input("dy", &shape, DType::F32);
    ins.insert("x".into(), randn(&mut rng, &shape));
    ins.insert("xp".into(), positive(&mut rng, &shape));
    ins.insert("dy".into(), randn(&mut rng, &shape));
    for op in UNARY {
        let src = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt) {
            xp
        } else {
            x
        };
        let y = b.apply(Op::Unary(op), &[src]).unwrap();
        b.output(&format!("{op:?}"), y);
        let d = b.apply(Op::UnaryGrad(op), &[src, dy]).unwrap();
        b.output(&format!("{op:?}_grad"), d);
    }
    finish("unary", b, ins)
}

/// Binary ops and compares with broadcasting, f32 and i32; where, casts, pow, clamp,
/// stop-gradient and straight-through.
pub fn binary_ops() -> Case {
    let mut rng = Rng::new(2);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let a = b.input("a", &[2, 3, 5], DType::F32);
    let c = b.input("c", &[3, 1], DType::F32);
    let ia = b.input("ia", &[4, 6], DType::I32);
    let ib = b.input("ib", &[6], DType::I32);
    let mut av = randn(&mut rng, &[2, 3, 5]);
    let cv = randn(&mut rng, &[3, 1]);
    // Some exact ties so Eq/Le/Max's tie rule are exercised.
    if let weft_runtime::TensorData::F32(v) = &mut av.data {
        v[0] = cv.to_f32_vec()[0];
        v[7] = cv.to_f32_vec()[1];
    }
    ins.insert("a".into(), av);
    ins.insert("c".into(), cv);
    let mut iav = ids(&mut rng, &[4, 6], 9);
    if let weft_runtime::TensorData::I32(v) = &mut iav.data {
        v[1] = -7;
        v[2] = i32::MIN;
    }
    ins.insert("ia".into(), iav);
    ins.insert(
        "ib".into(),
        Tensor::i32(&[6], vec![3, -1, 0, 2, -4, 5]), // a zero divisor on purpose
    );
    for op in BINARY {
        let y = b.binary(op, a, c).unwrap();
        b.output(&format!("{op:?}"), y);
        let yi = b.binary(op, ia, ib).unwrap();
        b.output(&format!("{op:?}_i32"), yi);
    }
    for op in CMP {
        let y = b.compare(op, a, c).unwrap();
        b.output(&format!("{op:?}"), y);
        let yi = b.compare(op, ia, ib).unwrap();
        b.output(&format!("{op:?}_i32"), yi);
    }
    let m = b.compare(CmpOp::Gt, a, c).unwrap();
    let w = b.where_(m, a, c).unwrap();
    b.output("where", w);
    let wi = b.where_(ia, ia, ib).unwrap();
    b.output("where_i32", wi);
    let s = b.scalar(2.5);
    let scaled = b.mul(a, s).unwrap();
    let ci = b.cast(scaled, DType::I32).unwrap();
    b.output("cast_i32", ci);
    let cf = b.cast(ia, DType::F32).unwrap();
    b.output("cast_f32", cf);
    for (k, e) in [2.0f32, 3.0, -1.0, 0.5, 4.0, -3.0, 1.5].iter().enumerate() {
        let src = if e.fract() != 0.0 {
            b.abs(a).unwrap()
        } else {
            a
        };
        let p = b.pow_const(src, *e).unwrap();
        b.output(&format!("pow{k}"), p);
    }
    let cl = b.clamp(a, -0.5, 0.7).unwrap();
    b.output("clamp", cl);
    let sg = b.stop_gradient(a).unwrap();
    let sg = b.exp(sg).unwrap();
    b.output("stop_gradient", sg);
    let st = b.straight_through(a).unwrap();
    b.output("straight_through", st);
    finish("binary", b, ins)
}

/// Reductions, scans, softmax, logsumexp, argmax, top-k over every axis; i32 reductions;
/// reductions of long lanes.
pub fn reduce_ops() -> Case {
    let mut rng = Rng::new(3);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let shape = [3, 4, 5];
    let x = b.input("x", &shape, DType::F32);
    let xi = b.input("xi", &shape, DType::I32);
    ins.insert("x".into(), randn(&mut rng, &shape));
    ins.insert("xi".into(), ids(&mut rng, &shape, 100));
    // An elementwise prologue to fuse into the reductions.
    let pre = b.tanh(x).unwrap();
    let pre = b.mul(pre, x).unwrap();
    for axis in 0..3 {
        for (name, op) in [
            ("sum", ReduceOp::Sum),
            ("mean", ReduceOp::Mean),
            ("max", ReduceOp::Max),
        ] {
            let y = b.reduce(op, pre, axis, axis == 1).unwrap();
            b.output(&format!("{name}{axis}"), y);
        }
        let y = b.reduce(ReduceOp::Sum, xi, axis, false).unwrap();
        b.output(&format!("sum_i32_{axis}"), y);
        let y = b.reduce(ReduceOp::Max, xi, axis, false).unwrap();
        b.output(&format!("max_i32_{axis}"), y);
        let y = b.logsumexp(x, axis, axis == 0).unwrap();
        b.output(&format!("logsumexp{axis}"), y);
        let y = b.softmax(pre, axis).unwrap();
        b.output(&format!("softmax{axis}"), y);
        let y = b.cumsum(x, axis, false).unwrap();
        b.output(&format!("cumsum{axis}"), y);
        let y = b.cumsum(x, axis, true).unwrap();
        b.output(&format!("cumsum_rev{axis}"), y);
        let y = b.cumsum(xi, axis, false).unwrap();
        b.output(&format!("cumsum_i32_{axis}"), y);
        let y = b.argmax(x, axis, false).unwrap();
        b.output(&format!("argmax{axis}"), y);
        let y = b.topk_mask(x, 2, axis).unwrap();
        b.output(&format!("topk{axis}"), y);
    }
    // Long lanes (at least 1024 elements: one workgroup per lane) along the last axis and
    // along a middle one, lengths that are no multiple of the workgroup.
    for (name, shape, axis) in [
        ("long_last", [3, 1, 2100], 2),
        ("long_mid", [2, 1500, 3], 1),
    ] {
        let x = b.input(name, &shape, DType::F32);
        ins.insert(name.into(), randn(&mut rng, &shape));
        let pre = b.tanh(x).unwrap();
        let pre = b.mul(pre, x).unwrap();
        for (op_name, op) in [
            ("sum", ReduceOp::Sum),
            ("mean", ReduceOp::Mean),
            ("max", ReduceOp::Max),
        ] {
            let y = b.reduce(op, pre, axis, false).unwrap();
            b.output(&format!("{name}_{op_name}"), y);
        }
    }
    finish("reduce", b, ins)
}

/// Matmuls: all transpose flags, broadcast batch dims, sizes that are not multiples of 4.
pub fn matmul_ops() -> Case {
    let mut rng = Rng::new(4);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let mut input = |b: &mut GraphBuilder, name: &str, shape: &[usize]| {
        ins.insert(name.to_string(), randn(&mut rng, shape));
        b.input(name, shape, DType::F32)
    };
    let a = input(&mut b, "a", &[2, 5, 7]);
    let at = input(&mut b, "at", &[2, 7, 5]);
    let w = input(&mut b, "w", &[7, 6]);
    let wt = input(&mut b, "wt", &[6, 7]);
    let bb = input(&mut b, "bb", &[3, 1, 7, 6]);
    for (name, x, y, ta, tb) in [
        ("nn", a, w, false, false),
        ("tn", at, w, true, false),
        ("nt", a, wt, false, true),
        ("tt", at, wt, true, true),
        ("bcast", a, bb, false, false),
    ] {
        let m = b.matmul_t(x, y, ta, tb).unwrap();
        b.output(name, m);
    }
    finish("matmul", b, ins)
}

/// The shipped rules (`examples/attention_rules.weft`) and two more, sized for 7 positions.
pub const SPEC_RULES: &str = "
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

/// Every rule of [`SPEC_RULES`], and the prelude's `signed`.
pub const SPEC_RULE_NAMES: [&str; 8] = [
    "alibi",
    "softcap",
    "window",
    "prefix_lm",
    "sigmoid_attn",
    "sink",
    "signed",
    "doc_bias",
];

/// The attention op's rule for `rule` in a one-layer spec (3 query heads, 1 kv head).
pub fn lowered_rule(rule: &str, mask: &str) -> AttentionRule {
    let src = format!(
        "{SPEC_RULES}
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
            Op::Attention(r) => Some(r.clone()),
            _ => None,
        })
        .expect("an attention op")
}

/// The gradient of shared weights against a batch of 1024 rows: autodiff splits each weight
/// gradient's reduction into slices (split-K: `[S, r, k]ᵀ·[S, r, n]` and a sum over `S`),
/// for `x·w` and `x·w2ᵀ`; the CPU fast path folds them back into one product.
pub fn split_weight_gradient() -> Case {
    let mut rng = Rng::new(11);
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[4, 256, 12], DType::F32);
    let w = b.param("w", &[12, 10], Init::Normal { std: 0.3 }, true);
    let w2 = b.param("w2", &[10, 12], Init::Normal { std: 0.3 }, true);
    let y = b.matmul(x, w).unwrap();
    let y2 = b.matmul_t(x, w2, false, true).unwrap();
    let both = b.add(y, y2).unwrap();
    let r = b.input("r", &[4, 256, 10], DType::F32);
    let p = b.mul(both, r).unwrap();
    let flat = b.reshape(p, &[4 * 256 * 10]).unwrap();
    let loss = b.sum(flat, 0, false).unwrap();
    b.output("loss", loss);
    let g = b.finish().unwrap();
    let params = init_params(&g, 12);
    let gg = grad(&g, loss, &[ParamSelection::All]).expect("grad");
    let gg = optimize(&gg).expect("passes");
    assert!(
        gg.nodes
            .iter()
            .any(|n| matches!(n.op, Op::MatMul { .. }) && n.shape.len() == 3),
        "the weight gradients are split"
    );
    let inputs = HashMap::from([
        ("x".to_string(), randn(&mut rng, &[4, 256, 12])),
        ("r".to_string(), randn(&mut rng, &[4, 256, 10])),
    ]);
    Case {
        name: "split weight gradient".into(),
        graph: gg,
        inputs,
        params,
    }
}

/// Elementwise chains the fusion plan inlines, and their gradients: operands of the chain's
/// shape, one value per row, one row for all rows and a scalar; chains that end in a
/// reduction of rows (a norm's mean of squares); a value read twice; odd widths, one chain
/// long enough to be split across threads with a partial last chunk, and rows longer than a
/// parallel kernel's threshold (a chunk of one such row runs parallel kernels itself).
pub fn elementwise_chains() -> Case {
    let mut rng = Rng::new(13);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let mut losses = Vec::new();
    for (k, shape) in [[5, 7, 9], [3, 129, 257], [1, 3, 66_001]]
        .into_iter()
        .enumerate()
    {
        let name = |s: &str| format!("{s}{k}");
        let x = b.input(&name("x"), &shape, DType::F32);
        ins.insert(name("x"), randn(&mut rng, &shape));
        let row = [shape[0], shape[1], 1];
        let r = b.input(&name("r"), &row, DType::F32);
        ins.insert(name("r"), positive(&mut rng, &row));
        let g = b.param(&name("g"), &[shape[2]], Init::Normal { std: 0.5 }, true);
        let s = b.scalar(0.3);
        // silu(x·r)·g + 0.3, then tanh(·) − x, and an rms norm (a reduction of rows).
        let xr = b.mul(x, r).unwrap();
        let a = b.unary(UnaryOp::Silu, xr).unwrap();
        let a = b.mul(a, g).unwrap();
        let a = b.add(a, s).unwrap();
        let t = b.unary(UnaryOp::Tanh, a).unwrap();
        let z = b.sub(t, x).unwrap();
        let n = b.rms_norm(z, g, 1e-5).unwrap();
        // `a` is read twice: by the chain above and here.
        let e = b.mul(n, a).unwrap();
        let flat = b.reshape(e, &[shape.iter().product()]).unwrap();
        losses.push(b.sum(flat, 0, false).unwrap());
    }
    let loss = b.add(losses[0], losses[1]).unwrap();
    let loss = b.add(loss, losses[2]).unwrap();
    b.output("loss", loss);
    let graph = b.finish().unwrap();
    let params = init_params(&graph, 14);
    let gg = grad(&graph, loss, &[ParamSelection::All]).expect("grad");
    let gg = optimize(&gg).expect("passes");
    Case {
        name: "elementwise chains".into(),
        graph: gg,
        inputs: ins,
        params,
    }
}

/// Shape ops and indexing: reshape, permute, broadcast, slice, concat (f32 and i32), iota,
/// constants, gather, scatter-add, one-hot, cross-entropy, rope (both layouts, inverse,
/// [T] and [B,T] positions).
pub fn shape_ops() -> Case {
    let mut rng = Rng::new(5);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let x = b.input("x", &[2, 3, 4], DType::F32);
    let xi = b.input("xi", &[2, 3, 4], DType::I32);
    let y = b.input("y", &[2, 2, 4], DType::F32);
    let tok = b.input("tok", &[2, 5], DType::I32);
    let tgt = b.input("tgt", &[6], DType::I32);
    let logits = b.input("logits", &[6, 9], DType::F32);
    let q = b.input("q", &[2, 2, 5, 6], DType::F32);
    let pos = b.input("pos", &[2, 5], DType::I32);
    let table = b.param("table", &[7, 3], Init::Normal { std: 1.0 }, true);
    ins.insert("x".into(), randn(&mut rng, &[2, 3, 4]));
    ins.insert("xi".into(), ids(&mut rng, &[2, 3, 4], 50));
    ins.insert("y".into(), randn(&mut rng, &[2, 2, 4]));
    ins.insert("tok".into(), ids(&mut rng, &[2, 5], 7));
    ins.insert("tgt".into(), Tensor::i32(&[6], vec![3, -1, 8, 0, 5, 2]));
    ins.insert("logits".into(), randn(&mut rng, &[6, 9]));
    ins.insert("q".into(), randn(&mut rng, &[2, 2, 5, 6]));
    ins.insert("pos".into(), ids(&mut rng, &[2, 5], 40));
    let r = b.reshape(x, &[6, 4]).unwrap();
    let r = b.exp(r).unwrap(); // a computed reshape, not only a view
    b.output("reshape", r);
    let p = b.permute(x, &[2, 0, 1]).unwrap();
    b.output("permute", p);
    let pi = b.permute(xi, &[1, 2, 0]).unwrap();
    b.output("permute_i32", pi);
    let s1 = b.slice(x, 1, 1, 3).unwrap();
    let bc = b.broadcast_to(s1, &[3, 2, 2, 4]).unwrap();
    b.output("slice_broadcast", bc);
    let c = b.concat(&[x, y, x], 1).unwrap();
    b.output("concat", c);
    let ci = b.concat(&[xi, xi], 2).unwrap();
    b.output("concat_i32", ci);
    let io = b.iota(&[3, 4], 1, DType::F32).unwrap();
    let io = b.add(io, x).unwrap();
    b.output("iota", io);
    let ii = b.iota(&[2, 3], 0, DType::I32).unwrap();
    b.output("iota_i32", ii);
    let k = b
        .constant(ConstValue::F32(vec![0.5, -1.5, 2.0, 0.25]), &[4])
        .unwrap();
    let k = b.mul(x, k).unwrap();
    b.output("const", k);
    let g = b.gather(table, tok).unwrap();
    b.output("gather", g);
    let sa = b.scatter_add(g, tok, 7).unwrap();
    b.output("scatter_add", sa);
    let oh = b.one_hot(tgt, 9).unwrap();
    b.output("one_hot", oh);
    let ce = b.cross_entropy(logits, tgt).unwrap();
    b.output("cross_entropy", ce);
    let freqs = b
        .constant(ConstValue::F32(vec![1.0, 0.3, 0.0]), &[3])
        .unwrap();
    let tpos = b.iota(&[5], 0, DType::I32).unwrap();
    for (name, layout, p) in [
        ("rope_half", RopeLayout::Half, tpos),
        ("rope_interleaved", RopeLayout::Interleaved, pos),
    ] {
        let rq = b.rope(q, freqs, p, layout).unwrap();
        b.output(name, rq);
        let inv = b
            .apply(
                Op::Rope {
                    layout,
                    inverse: true,
                },
                &[q, freqs, p],
            )
            .unwrap();
        b.output(&format!("{name}_inverse"), inv);
    }
    finish("shape", b, ins)
}

/// Segment ids: two documents per sequence with different boundaries.
fn segments(bsz: usize, t: usize) -> Tensor {
    let data = (0..bsz * t)
        .map(|i| {
            let (bi, ti) = (i / t, i % t);
            (ti >= (t / 2 + bi)) as i32 + 3 * bi as i32
        })
        .collect();
    Tensor::i32(&[bsz, t], data)
}

/// Attention forward, pattern and backward for one rule, on random q, k, v, y, dy.
pub fn attention(weights: AttentionWeights, mask: AttentionMask) -> Case {
    attention_shaped(weights, mask, [2, 2, 7, 4])
}

/// Like [`attention`], on q, k, v of `shape` `[B, H, T, d]`.
pub fn attention_shaped(weights: AttentionWeights, mask: AttentionMask, shape: [usize; 4]) -> Case {
    // The enums' former discriminants (their order in MASKS and WEIGHTS) keep the seeds.
    let mi = MASKS.iter().position(|m| *m == mask).unwrap_or(0) as u64;
    let wi = WEIGHTS.iter().position(|w| *w == weights).unwrap_or(0) as u64;
    let mut rng = Rng::new(6 + mi * 3 + wi);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let mut qkv = Vec::new();
    for n in ["q", "k", "v", "y", "dy"] {
        ins.insert(n.to_string(), randn(&mut rng, &shape));
        qkv.push(b.input(n, &shape, DType::F32));
    }
    let rule = AttentionRule::builtin(weights.clone(), mask.clone(), 0.6);
    let seg = mask.needs_segments().then(|| {
        ins.insert("seg".into(), segments(shape[0], shape[2]));
        b.input("seg", &[shape[0], shape[2]], DType::I32)
    });
    let fwd = b
        .attention(rule.clone(), qkv[0], qkv[1], qkv[2], seg)
        .unwrap();
    b.output("y", fwd);
    let pat = b
        .attention_pattern(rule.clone(), qkv[0], qkv[1], qkv[2], seg)
        .unwrap();
    b.output("pattern", pat);
    let mut bwd_in = qkv.clone();
    bwd_in.extend(seg);
    let bwd = b.apply(Op::AttentionBackward(rule), &bwd_in).unwrap();
    b.output("backward", bwd);
    finish(&format!("attention {weights:?} {mask:?} {shape:?}"), b, ins)
}

/// Forward, pattern, backward and (with parameters) the parameter gradient of an attention
/// rule written in a spec, on random q, k, v, y, dy `[2, 3, 7, 4]` and per-head parameters.
pub fn attention_rule(name: &str, rule: &AttentionRule) -> Case {
    attention_rule_shaped(name, rule, [2, 3, 7, 4])
}

/// [`attention_rule`] at `[B, H, T, d]` (`H` = 3: the rules' parameters have three heads).
pub fn attention_rule_shaped(name: &str, rule: &AttentionRule, shape: [usize; 4]) -> Case {
    let mut rng = Rng::new(17);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let mut qkv = Vec::new();
    for n in ["q", "k", "v", "y", "dy"] {
        ins.insert(n.to_string(), randn(&mut rng, &shape));
        qkv.push(b.input(n, &shape, DType::F32));
    }
    let mut extra = Vec::new();
    if rule.needs_segments() {
        ins.insert("seg".into(), segments(shape[0], shape[2]));
        extra.push(b.input("seg", &[shape[0], shape[2]], DType::I32));
    }
    for k in 0..rule.params {
        let n = format!("param{k}");
        ins.insert(n.clone(), positive(&mut rng, &[shape[1]]));
        extra.push(b.input(&n, &[shape[1]], DType::F32));
    }
    let fwd_in: Vec<ValueId> = qkv[..3].iter().chain(&extra).copied().collect();
    let fwd = b.apply(Op::Attention(rule.clone()), &fwd_in).unwrap();
    b.output("y", fwd);
    let pat = b
        .apply(Op::AttentionPattern(rule.clone()), &fwd_in)
        .unwrap();
    b.output("pattern", pat);
    // What a captured pattern is used for: the output recomputed from it.
    let pv = b.matmul(pat, qkv[2]).unwrap();
    b.output("pattern_times_v", pv);
    let bwd_in: Vec<ValueId> = qkv.iter().chain(&extra).copied().collect();
    let bwd = b
        .apply(Op::AttentionBackward(rule.clone()), &bwd_in)
        .unwrap();
    b.output("backward", bwd);
    if rule.params > 0 {
        let pg = b
            .apply(Op::AttentionRuleGrad(rule.clone()), &bwd_in)
            .unwrap();
        b.output("rule_grad", pg);
    }
    finish(&format!("attention rule {name}"), b, ins)
}

/// The gradient through a captured pattern of a rule written in a spec (attention dropout or
/// a loss on `attn.pattern`): `loss = Σ pattern(q, k, v) ⊙ R` differentiated in q, k and the
/// rule's parameters, `[2, 3, 7, 4]`.
pub fn attention_rule_pattern_grad(name: &str, rule: &AttentionRule) -> Case {
    let shape = [2, 3, 7, 4];
    let mut rng = Rng::new(19);
    let mut b = GraphBuilder::new();
    let mut ins = HashMap::new();
    let init = Init::Normal { std: 1.0 };
    let mut fwd_in: Vec<ValueId> = ["q", "k", "v"]
        .iter()
        .map(|n| b.param(n, &shape, init.clone(), true))
        .collect();
    if rule.needs_segments() {
        ins.insert("seg".into(), segments(shape[0], shape[2]));
        fwd_in.push(b.input("seg", &[shape[0], shape[2]], DType::I32));
    }
    for k in 0..rule.params {
        let init = Init::Normal { std: 0.3 };
        fwd_in.push(b.param(&format!("param{k}"), &[shape[1]], init, true));
    }
    let pat = b
        .apply(Op::AttentionPattern(rule.clone()), &fwd_in)
        .unwrap();
    let wshape = [shape[0], shape[1], shape[2], shape[2]];
    ins.insert("r".into(), randn(&mut rng, &wshape));
    let r = b.input("r", &wshape, DType::F32);
    let p = b.mul(pat, r).unwrap();
    let flat = b.reshape(p, &[wshape.iter().product()]).unwrap();
    let loss = b.sum(flat, 0, false).unwrap();
    b.output("loss", loss);
    let graph = b.finish().unwrap();
    let params = init_params(&graph, 20);
    let gg = grad(&graph, loss, &[ParamSelection::All]).expect("grad");
    let gg = optimize(&gg).expect("passes");
    Case {
        name: format!("pattern gradient of {name}"),
        graph: gg,
        inputs: ins,
        params,
    }
}

pub const B: usize = 2;
pub const T: usize = 7;
pub const V: usize = 11;
pub const D: usize = 8;
pub const H: usize = 2;
pub const HD: usize = D / H;
pub const F: usize = 12;

fn heads(g: &mut GraphBuilder, x: ValueId) -> Result<ValueId, IrError> {
    let r = g.reshape(x, &[B, T, H, HD])?;
    g.permute(r, &[0, 2, 1, 3])
}

/// A tiny 2-layer transformer (embedding, rms-norm, rope attention, SwiGLU, logits, mean
/// cross-entropy), as in `tests/transformer.rs`: layer 0 softmax/causal, layer 1
/// signed/document. Each layer hooks its attention pattern. Returns the graph and its loss.
pub fn transformer() -> (Graph, ValueId) {
    let build = || -> Result<(Graph, ValueId), IrError> {
        let mut g = GraphBuilder::new();
        let tokens = g.input("tokens", &[B, T], DType::I32);
        let targets = g.input("targets", &[B * T], DType::I32);
        let seg = g.input("segments", &[B, T], DType::I32);
        let emb = g.param("embed", &[V, D], Init::Normal { std: 1.0 }, true);
        let mut h = g.gather(emb, tokens)?;
        let pos = g.iota(&[T], 0, DType::I32)?;
        let freqs: Vec<f32> = (0..HD / 2)
            .map(|i| 100f32.powf(-2.0 * i as f32 / HD as f32))
            .collect();
        let freqs = g.constant(ConstValue::F32(freqs), &[HD / 2])?;
        let w = |std: f32| Init::Normal { std };
        let gain = Init::Uniform {
            low: 0.5,
            high: 1.5,
        };
        for l in 0..2 {
            g.set_label(Some(format!("layers.{l}")));
            let p = |n: &str| format!("layers.{l}.{n}");
            let (weights, mask, layout, segs) = if l == 0 {
                (
                    AttentionWeights::Softmax,
                    AttentionMask::Causal,
                    RopeLayout::Half,
                    None,
                )
            } else {
                (
                    AttentionWeights::Signed,
                    AttentionMask::Document,
                    RopeLayout::Interleaved,
                    Some(seg),
                )
            };
            let n1 = g.param(&p("norm1"), &[D], gain.clone(), true);
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
            let rule =
                AttentionRule::builtin(weights.clone(), mask.clone(), 1.0 / (HD as f32).sqrt());
            let a = g.attention(rule.clone(), q, k, v, segs)?;
            let pat = g.attention_pattern(rule.clone(), q, k, v, segs)?;
            g.hook(&p("attn.pattern"), pat);
            let a = g.permute(a, &[0, 2, 1, 3])?;
            let a = g.reshape(a, &[B, T, D])?;
            let a = g.matmul(a, wo)?;
            h = g.add(h, a)?;
            g.hook(&p("resid_mid"), h);
            let n2 = g.param(&p("norm2"), &[D], gain.clone(), true);
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
        let nf = g.param("norm_f", &[D], gain, true);
        let hf = g.rms_norm(h, nf, 1e-6)?;
        let un = g.param("unembed", &[D, V], w(0.5), true);
        let logits = g.matmul(hf, un)?;
        let logits = g.reshape(logits, &[B * T, V])?;
        let ce = g.cross_entropy(logits, targets)?;
        let loss = g.mean(ce, 0, false)?;
        g.output("logits", logits);
        g.output("loss", loss);
        Ok((g.finish()?, loss))
    };
    build().expect("transformer graph")
}

/// Feeds of [`transformer`] (one ignored target).
pub fn transformer_inputs() -> HashMap<String, Tensor> {
    let mut rng = Rng::new(11);
    let mut ins = HashMap::new();
    ins.insert("tokens".to_string(), ids(&mut rng, &[B, T], V as u64));
    let mut t = ids(&mut rng, &[B * T], V as u64);
    if let weft_runtime::TensorData::I32(v) = &mut t.data {
        v[3] = -1;
    }
    ins.insert("targets".to_string(), t);
    ins.insert("segments".to_string(), segments(B, T));
    ins
}

/// The transformer's forward graph as a case.
pub fn transformer_forward() -> Case {
    let (graph, _) = transformer();
    let params = init_params(&graph, 7);
    Case {
        name: "transformer forward".into(),
        graph,
        inputs: transformer_inputs(),
        params,
    }
}

/// The transformer's optimised gradient graph (loss and `grad.*` of every parameter).
pub fn transformer_grad() -> Case {
    let (graph, loss) = transformer();
    let params = init_params(&graph, 7);
    let gg = grad(&graph, loss, &[ParamSelection::All]).expect("grad");
    let gg = optimize(&gg).expect("passes");
    Case {
        name: "transformer gradient".into(),
        graph: gg,
        inputs: transformer_inputs(),
        params,
    }
}

/// Every case above (attention for both rules × five masks).
pub fn all_cases() -> Vec<Case> {
    let mut v = vec![
        unary_ops(),
        binary_ops(),
        reduce_ops(),
        matmul_ops(),
        split_weight_gradient(),
        elementwise_chains(),
        shape_ops(),
    ];
    for w in WEIGHTS {
        for m in MASKS {
            v.push(attention(w.clone(), m));
        }
    }
    v.push(transformer_forward());
    v.push(transformer_grad());
    v
}
