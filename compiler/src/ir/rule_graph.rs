//! Attention rules as graph ops: a rule's expression trees ([`RuleExpr`]) built from
//! primitive ops over a whole tensor of scores. The fused attention ops evaluate the same
//! trees per element ([`RuleExpr::eval`]); this tensor form serves where those ops do not —
//! a decode step (queries against a longer, cached key sequence) and the gradient through a
//! captured pattern of a rule written in the spec — so every path computes one definition.

use super::builder::GraphBuilder;
use super::op::{AttentionMask, AttentionRule, BinaryOp, CmpOp, Op, ReduceOp, UnaryOp};
use super::rule::{Normaliser, RuleExpr, RuleVar};
use super::types::{DType, ValueId};
use crate::error::{IrError, Result};

/// What a rule expression reads, each value f32 and broadcastable against the scores.
#[derive(Clone, Debug)]
pub struct Place {
    /// Query positions `i`.
    pub query: ValueId,
    /// Key positions `j`.
    pub key: ValueId,
    /// Query head index.
    pub head: ValueId,
    /// The kv head each query head reads.
    pub kv_head: ValueId,
    /// The key count `n`.
    pub keys: ValueId,
    /// Segment ids of the query and of the key, where the op has them.
    pub segments: Option<(ValueId, ValueId)>,
    /// The rule's parameters, each read at the query head.
    pub params: Vec<ValueId>,
}

impl Place {
    /// The place of a full attention's scores `[B, H, T, T]`: positions `0 .. T` for queries
    /// and keys, `n = T`, segment ids from the op's i32 `[B, T]` input, parameters `[H]`.
    pub fn full(
        b: &mut GraphBuilder,
        heads: usize,
        group: usize,
        t: usize,
        segments: Option<ValueId>,
        params: &[ValueId],
    ) -> Result<Place> {
        let group = group.max(1);
        let query = b.iota(&[1, 1, t, 1], 2, DType::F32)?;
        let key = b.iota(&[1, 1, 1, t], 3, DType::F32)?;
        let head = b.iota(&[1, heads, 1, 1], 1, DType::F32)?;
        // Query head h reads kv head h / group: the order the kv heads are repeated in.
        let kv_head = b.iota(&[1, heads / group, group, 1, 1], 1, DType::F32)?;
        let kv_head = b.reshape(kv_head, &[1, heads, 1, 1])?;
        let keys = b.scalar(t as f32);
        let segments = match segments {
            Some(seg) => {
                let bs = b.shape(seg)[0];
                let s = b.cast(seg, DType::F32)?;
                Some((b.reshape(s, &[bs, 1, t, 1])?, b.reshape(s, &[bs, 1, 1, t])?))
            }
            None => None,
        };
        let params = params
            .iter()
            .map(|&p| b.reshape(p, &[1, heads, 1, 1]))
            .collect::<Result<_>>()?;
        Ok(Place {
            query,
            key,
            head,
            kv_head,
            keys,
            segments,
            params,
        })
    }
}

/// Expression `e` at every score of `score` (the value `s` reads).
pub fn value(b: &mut GraphBuilder, e: &RuleExpr, score: ValueId, at: &Place) -> Result<ValueId> {
    let go = |b: &mut GraphBuilder, a: &RuleExpr| value(b, a, score, at);
    Ok(match e {
        RuleExpr::Const(c) => b.scalar(*c),
        RuleExpr::Var(v) => match v {
            RuleVar::Score => score,
            RuleVar::QueryPos => at.query,
            RuleVar::KeyPos => at.key,
            RuleVar::Head => at.head,
            RuleVar::KvHead => at.kv_head,
            RuleVar::Keys => at.keys,
            RuleVar::QuerySeg | RuleVar::KeySeg => {
                let (qs, ks) = at.segments.ok_or_else(|| {
                    IrError::Builder("a rule reads segment ids the attention op lacks".into())
                })?;
                if *v == RuleVar::QuerySeg {
                    qs
                } else {
                    ks
                }
            }
        },
        RuleExpr::Param(k) => *at
            .params
            .get(*k)
            .ok_or_else(|| IrError::Builder(format!("rule parameter {k} is missing")))?,
        RuleExpr::Unary(op, a) => {
            let a = go(b, a)?;
            b.unary(*op, a)?
        }
        RuleExpr::Deriv(op, a) => {
            let a = go(b, a)?;
            derivative(b, *op, a)?
        }
        RuleExpr::Binary(op, a, c) => {
            let (a, c) = (go(b, a)?, go(b, c)?);
            b.binary(*op, a, c)?
        }
        RuleExpr::Compare(op, a, c) => {
            let (a, c) = (go(b, a)?, go(b, c)?);
            b.compare(*op, a, c)?
        }
        RuleExpr::Where(c, x, y) => {
            let (c, x, y) = (go(b, c)?, go(b, x)?, go(b, y)?);
            b.where_(c, x, y)?
        }
    })
}

/// `op'(a)` elementwise, as [`UnaryOp::derivative`] defines it.
fn derivative(b: &mut GraphBuilder, op: UnaryOp, a: ValueId) -> Result<ValueId> {
    match op {
        UnaryOp::Neg => Ok(b.scalar(-1.0)),
        UnaryOp::Sign => Ok(b.scalar(0.0)),
        UnaryOp::Abs => b.sign(a),
        UnaryOp::Exp => b.unary(UnaryOp::Exp, a),
        _ => {
            let shape = b.shape(a).to_vec();
            let ones = b.full(1.0, &shape)?;
            b.apply(Op::UnaryGrad(op), &[a, ones])
        }
    }
}

/// Where the mask lets a query see a key: 1 or 0 (f32).
pub fn visible(b: &mut GraphBuilder, mask: &AttentionMask, at: &Place) -> Result<ValueId> {
    // The score is never read by a mask; any value stands in for it.
    let unused = at.query;
    value(b, &mask.expr(), unused, at)
}

/// A rule's weights over the raw scores `p` (keys along `axis`), with `vis` the visible
/// keys: the modified score `s`, the weights `w` and, for a normalised rule, the
/// normalised exponentials `a` (`w = h(s)·a`) and `h(s)`.
pub struct Weights {
    pub s: ValueId,
    pub w: ValueId,
    pub normalised: Option<(ValueId, ValueId)>,
}

/// The weights the fused op computes: `h(s)·exp(f(s) − m) / (c·exp(−m) + Σ exp(f(s) − m))`
/// over visible keys (`m` the largest `f(s)`, and `log c` with a sink `c`), or `φ(s)` on
/// visible keys; 0 on hidden keys, and a row that sees nothing gets 0, not 0/0.
pub fn weights(
    b: &mut GraphBuilder,
    rule: &AttentionRule,
    p: ValueId,
    vis: ValueId,
    at: &Place,
    axis: usize,
) -> Result<Weights> {
    let s = match &rule.score {
        Some(e) => value(b, e, p, at)?,
        None => p,
    };
    let zero = b.scalar(0.0);
    match rule.weights.normaliser() {
        Normaliser::Direct(phi) => {
            let w = value(b, &phi, s, at)?;
            let w = b.where_(vis, w, zero)?;
            Ok(Weights {
                s,
                w,
                normalised: None,
            })
        }
        Normaliser::Normalised {
            factor,
            exponent,
            sink,
        } => {
            let f = value(b, &exponent, s, at)?;
            // A finite stand-in for −∞ keeps every backend's arithmetic NaN-free.
            let hidden = b.scalar(-1e30);
            let masked = b.where_(vis, f, hidden)?;
            let mut m = b.reduce(ReduceOp::Max, masked, axis, true)?;
            if sink > 0.0 {
                let log_c = b.scalar(sink.ln());
                m = b.binary(BinaryOp::Max, m, log_c)?;
            }
            let e = b.sub(masked, m)?;
            let e = b.unary(UnaryOp::Exp, e)?;
            let e = b.mul(e, vis)?;
            let mut z = b.reduce(ReduceOp::Sum, e, axis, true)?;
            if sink > 0.0 {
                let neg = b.unary(UnaryOp::Neg, m)?;
                let c = b.unary(UnaryOp::Exp, neg)?;
                let sink = b.scalar(sink);
                let c = b.mul(c, sink)?;
                z = b.add(z, c)?;
            }
            let some = b.compare(CmpOp::Gt, z, zero)?;
            let one = b.scalar(1.0);
            let z = b.where_(some, z, one)?;
            let a = b.binary(BinaryOp::Div, e, z)?;
            let h = value(b, &factor, s, at)?;
            let w = b.mul(h, a)?;
            Ok(Weights {
                s,
                w,
                normalised: Some((a, h)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::RuleEnv;

    #[test]
    fn every_mask_as_an_expression_is_its_visibility() {
        let window = RuleExpr::binary(
            BinaryOp::Mul,
            RuleExpr::Compare(
                CmpOp::Le,
                Box::new(RuleExpr::Var(RuleVar::KeyPos)),
                Box::new(RuleExpr::Var(RuleVar::QueryPos)),
            ),
            RuleExpr::Var(RuleVar::Head),
        );
        let masks = [
            AttentionMask::Causal,
            AttentionMask::Bidirectional,
            AttentionMask::Document,
            AttentionMask::Turns,
            AttentionMask::TurnsKeepFirst,
            AttentionMask::SelfOnly,
            AttentionMask::Rule(window),
        ];
        for mask in &masks {
            let e = mask.expr();
            for (i, j, head, seg_i, seg_j) in [
                (3, 1, 0, 1, 1),
                (3, 1, 1, 1, 1),
                (1, 3, 1, 0, 0),
                (2, 2, 1, 2, 0),
                (4, 0, 1, 1, 0),
                (4, 2, 1, 1, 2),
            ] {
                let env = RuleEnv::<f64> {
                    score: 0.5,
                    i,
                    j,
                    head,
                    kv_head: 0,
                    keys: 5,
                    seg_i,
                    seg_j,
                    params: &[],
                };
                assert_eq!(
                    e.eval(&env) != 0.0,
                    mask.visible_at(&env),
                    "{mask:?} at i {i}, j {j}, head {head}, segments {seg_i}/{seg_j}"
                );
            }
        }
    }
}
