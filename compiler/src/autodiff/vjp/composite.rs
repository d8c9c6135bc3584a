//! VJPs of matmul, indexing, cross-entropy, attention and rope.

use super::Grads;
use crate::error::Result;
use crate::ir::rule::{d_ds, d_wrt, Wrt};
use crate::ir::{numel, rule_graph, AttentionRule, GraphBuilder, Node, Normaliser, Op, ValueId};

pub(super) fn vjp(
    b: &mut GraphBuilder,
    node: &Node,
    y: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    let ins = &node.inputs;
    match &node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => matmul(b, ins[0], ins[1], dy, *transpose_a, *transpose_b, wants),
        Op::Gather => {
            let rows = b.shape(ins[0])[0];
            Ok(vec![Some(b.scatter_add(dy, ins[1], rows)?), None])
        }
        Op::ScatterAdd { .. } => Ok(vec![Some(b.gather(dy, ins[1])?), None]),
        Op::CrossEntropy => {
            // dlogits = dy · (softmax(l) − onehot(t)), zero on ignored rows (t < 0).
            let (logits, t) = (ins[0], ins[1]);
            let [n, v] = [b.shape(logits)[0], b.shape(logits)[1]];
            let p = b.softmax(logits, 1)?;
            let oh = b.one_hot(t, v)?;
            let d = b.sub(p, oh)?;
            let zero = b.scalar_i32(0);
            let valid = b.ge(t, zero)?;
            let w = b.mul(dy, valid)?;
            let w = b.reshape(w, &[n, 1])?;
            Ok(vec![Some(b.mul(d, w)?), None])
        }
        Op::Attention(rule) => attention(b, rule.clone(), ins, y, dy, wants),
        Op::AttentionPattern(rule) if rule.is_builtin() => {
            pattern(b, rule.clone(), ins, y, dy, wants)
        }
        Op::AttentionPattern(rule) => rule_pattern(b, rule, ins, y, dy, wants),
        Op::Rope { layout, inverse } => {
            let dx = b.apply(
                Op::Rope {
                    layout: *layout,
                    inverse: !inverse,
                },
                &[dy, ins[1], ins[2]],
            )?;
            Ok(vec![Some(dx), None, None])
        }
        op => Err(crate::IrError::Grad(format!("no VJP for `{}`", op.name()))),
    }
}

/// How many slices a weight gradient's `rows`-long reduction is cut into, for an output of
/// `out` elements: doubling while the partial products stay under 2^20 elements in all and
/// each slice keeps at least 256 rows. A 128×512 gradient over 2048 rows (gpt.weft at B16
/// T128) gets 8; GPT-2 small's (768×768 and up) keep 1.
fn split_k(rows: usize, out: usize) -> usize {
    let mut s = 1;
    while 2 * s * out <= 1 << 20 && rows.is_multiple_of(2 * s) && rows / (2 * s) >= 256 {
        s *= 2;
    }
    s
}

/// `Y = op(A) op(B)`: `dA = dY Bᵀ`, `dB = Aᵀ dY`, each expressed with transpose flags on the
/// stored operands, then summed over broadcast batch dims.
fn matmul(
    b: &mut GraphBuilder,
    x0: ValueId,
    x1: ValueId,
    dy: ValueId,
    ta: bool,
    tb: bool,
    wants: &[bool],
) -> Result<Grads> {
    let (s0, s1) = (b.shape(x0).to_vec(), b.shape(x1).to_vec());
    let mut out = vec![None, None];
    if wants[0] {
        let d = if ta {
            b.matmul_t(x1, dy, tb, true)?
        } else {
            b.matmul_t(dy, x1, false, !tb)?
        };
        out[0] = Some(b.sum_to(d, &s0)?);
    }
    if wants[1] {
        let d = if s1.len() == 2 && s0.len() > 2 && !ta {
            // A shared weight against a batched activation: fold the batch into the rows so
            // the weight gradient is one large GEMM, not a batch of small GEMMs. When that
            // GEMM's output is small and its reduction long, the rows are cut into `s`
            // slices (split-K): `s` products side by side and a sum over them, so a GPU has
            // `s` times the workgroups for it.
            let k = s0[s0.len() - 1];
            let rows = numel(&s0) / k;
            let n = b.shape(dy)[b.shape(dy).len() - 1];
            let s = split_k(rows, k * n);
            let slices = |b: &mut GraphBuilder, x: ValueId, w: usize| match s {
                1 => b.reshape(x, &[rows, w]),
                _ => b.reshape(x, &[s, rows / s, w]),
            };
            let a2 = slices(b, x0, k)?;
            let dy2 = slices(b, dy, n)?;
            let d = if tb {
                b.matmul_t(dy2, a2, true, false)?
            } else {
                b.matmul_t(a2, dy2, true, false)?
            };
            match s {
                1 => d,
                _ => b.sum(d, 0, false)?,
            }
        } else if s0.len() >= 2 && s0[s0.len() - if ta { 1 } else { 2 }] == 1 {
            // op(A) has one row: dB is an outer product per batch entry. As a broadcast
            // multiply it fuses into its consumer (for routed weights, the gather's
            // scatter-add), where a K = 1 matmul would store the whole [.., K, N] first.
            let k = s0[s0.len() - if ta { 2 } else { 1 }];
            let n = b.shape(dy)[b.shape(dy).len() - 1];
            let batch = &s0[..s0.len() - 2];
            let dy_batch = b.shape(dy)[..b.shape(dy).len() - 2].to_vec();
            let with = |batch: &[usize], tail: [usize; 2]| {
                let mut s = batch.to_vec();
                s.extend(tail);
                s
            };
            if tb {
                let dy_col = b.reshape(dy, &with(&dy_batch, [n, 1]))?;
                let a_row = b.reshape(x0, &with(batch, [1, k]))?;
                b.mul(dy_col, a_row)?
            } else {
                let a_col = b.reshape(x0, &with(batch, [k, 1]))?;
                b.mul(a_col, dy)?
            }
        } else if tb {
            b.matmul_t(dy, x0, true, ta)?
        } else {
            b.matmul_t(x0, dy, !ta, false)?
        };
        out[1] = Some(b.sum_to(d, &s1)?);
    }
    Ok(out)
}

/// Attention's backward is one op producing `[3, B,H,T,d]` = (dq, dk, dv), split here. A
/// rule's parameters (the last `rule.params` inputs) get theirs from `AttentionRuleGrad`'s
/// per-row contributions `[B,H,T,P]`, summed over batch and rows.
fn attention(
    b: &mut GraphBuilder,
    rule: AttentionRule,
    ins: &[ValueId],
    y: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    let mut bwd_ins = vec![ins[0], ins[1], ins[2], y, dy];
    bwd_ins.extend(&ins[3..]);
    let qs = b.shape(ins[0]).to_vec();
    let mut out = vec![None; ins.len()];
    if wants[..3].iter().any(|w| *w) {
        let packed = b.apply(Op::AttentionBackward(rule.clone()), &bwd_ins)?;
        for i in 0..3 {
            if wants[i] {
                let s = b.slice(packed, 0, i, i + 1)?;
                out[i] = Some(b.reshape(s, &qs)?);
            }
        }
    }
    let first = ins.len() - rule.params;
    if rule.params > 0 && wants[first..].iter().any(|w| *w) {
        let (heads, p) = (qs[1], rule.params);
        let rows = b.apply(Op::AttentionRuleGrad(rule), &bwd_ins)?; // [B,H,T,P]
        let per_head = b.sum(rows, 2, false)?; // [B,H,P]
        let per_head = b.sum(per_head, 0, false)?; // [H,P]
        for k in 0..p {
            if wants[first + k] {
                let s = b.slice(per_head, 1, k, k + 1)?;
                out[first + k] = Some(b.reshape(s, &[heads])?);
            }
        }
    }
    Ok(out)
}

/// Gradient through the weights `W` themselves (a captured pattern used in a loss).
/// With `s = |W|` and `σ = sign(W)`, both rules give `dp = s ⊙ (dW − σ · rowsum(W ⊙ dW))`
/// (for softmax `σ = 1`); then `dq = scale · dp k`, `dk = scale · dpᵀ q`. The pattern is
/// already materialised, so this T×T decomposition costs nothing extra.
fn pattern(
    b: &mut GraphBuilder,
    rule: AttentionRule,
    ins: &[ValueId],
    w: ValueId,
    dw: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    let s = b.abs(w)?;
    let sg = b.sign(w)?;
    let wdw = b.mul(w, dw)?;
    let delta = b.sum(wdw, 3, true)?;
    let t = b.mul(sg, delta)?;
    let t = b.sub(dw, t)?;
    let dp = b.mul(s, t)?;
    let scale = b.scalar(rule.scale);
    let dp = b.mul(dp, scale)?;
    let mut out = vec![None; ins.len()];
    if wants[0] {
        out[0] = Some(b.matmul(dp, ins[1])?);
    }
    if wants[1] {
        out[1] = Some(b.matmul_t(dp, ins[0], true, false)?);
    }
    Ok(out)
}

/// Gradient through the captured weights `W` of a rule written in the spec, built from the
/// rule's expressions and their symbolic derivatives ([`rule_graph`]): the raw scores
/// `p = scale·q·kᵀ`, the modified scores `s` and the normalised exponentials `a` are
/// recomputed, then
///
/// - normalised (`w = h(s)·a`, `a` a softmax of `f(s)`):
///   `∂s = a ⊙ (dW ⊙ h'(s) + f'(s) ⊙ (dW ⊙ h(s) − rowsum(dW ⊙ W)))`;
/// - no normaliser (`w = φ(s)` on visible keys): `∂s = dW ⊙ φ'(s)` on visible keys;
///
/// `∂p = ∂s ⊙ score'(p)`, `dq = scale·∂p k`, `dk = scale·∂pᵀ q`, and each rule parameter
/// `θ` (read by the score only) gets `Σ ∂s ⊙ ∂score/∂θ` over batch, queries and keys.
fn rule_pattern(
    b: &mut GraphBuilder,
    rule: &AttentionRule,
    ins: &[ValueId],
    w: ValueId,
    dw: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    let (q, k) = (ins[0], ins[1]);
    let qs = b.shape(q).to_vec();
    let (heads, t) = (qs[1], qs[2]);
    let first = ins.len() - rule.params;
    let seg = rule.needs_segments().then(|| ins[3]);
    let at = rule_graph::Place::full(b, heads, rule.group, t, seg, &ins[first..])?;
    let p = b.matmul_t(q, k, false, true)?;
    let scale = b.scalar(rule.scale);
    let p = b.mul(p, scale)?;
    let vis = rule_graph::visible(b, &rule.mask, &at)?;
    let fwd = rule_graph::weights(b, rule, p, vis, &at, 3)?;
    let ds = match (rule.weights.normaliser(), fwd.normalised) {
        (
            Normaliser::Normalised {
                factor, exponent, ..
            },
            Some((a, h)),
        ) => {
            let wdw = b.mul(w, dw)?;
            let r = b.sum(wdw, 3, true)?;
            let dwh = b.mul(dw, h)?;
            let mut g = b.sub(dwh, r)?;
            let df = rule_graph::value(b, &d_ds(&exponent), fwd.s, &at)?;
            g = b.mul(g, df)?;
            let dh = d_ds(&factor);
            if dh.constant() != Some(0.0) {
                let dh = rule_graph::value(b, &dh, fwd.s, &at)?;
                let t = b.mul(dw, dh)?;
                g = b.add(g, t)?;
            }
            b.mul(a, g)?
        }
        (Normaliser::Direct(phi), _) => {
            let dphi = rule_graph::value(b, &d_ds(&phi), fwd.s, &at)?;
            let g = b.mul(dw, dphi)?;
            b.mul(g, vis)?
        }
        (Normaliser::Normalised { .. }, None) => {
            return Err(crate::IrError::Grad(
                "a normalised rule's weights came without their exponentials".into(),
            ))
        }
    };
    let dp = match &rule.score {
        Some(e) => {
            let d = rule_graph::value(b, &d_ds(e), p, &at)?;
            b.mul(ds, d)?
        }
        None => ds,
    };
    let dp_scaled = b.mul(dp, scale)?;
    let mut out = vec![None; ins.len()];
    if wants[0] {
        out[0] = Some(b.matmul(dp_scaled, k)?);
    }
    if wants[1] {
        out[1] = Some(b.matmul_t(dp_scaled, q, true, false)?);
    }
    for (i, want) in wants.iter().enumerate().skip(first) {
        if let (true, Some(score)) = (*want, &rule.score) {
            let d = rule_graph::value(b, &d_wrt(score, Wrt::Param(i - first)), p, &at)?;
            let g = b.mul(ds, d)?;
            let g = b.sum_to(g, &[1, heads, 1, 1])?;
            out[i] = Some(b.reshape(g, &[heads])?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn weight_gradients_split_only_small_outputs_over_long_reductions() {
        use super::split_k;
        assert_eq!(split_k(2048, 128 * 512), 8);
        assert_eq!(split_k(2048, 128 * 128), 8);
        assert_eq!(split_k(8192, 768 * 768), 1);
        assert_eq!(split_k(256, 64), 1);
        assert_eq!(split_k(1000, 64), 2);
        assert_eq!(split_k(4096, 256 * 256), 16);
    }
}
