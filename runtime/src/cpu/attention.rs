//! Attention forward, pattern and backward on the CPU: per (batch, head), scores by GEMM,
//! masked row normalisation, outputs by GEMM. The backward is the hand-written VJP that a
//! fused GPU kernel will implement (no T×T intermediate in the graph).
//!
//! The built-in rules (softmax or signed weights, a named mask, no score modification) run
//! the arithmetic below as it always has; a spec's rule evaluates its expression trees
//! (`ir::rule`) per score, and its backward their symbolic derivatives.

use super::real::CpuReal;
use rayon::prelude::*;
use weft_compiler::ir::rule::{d_ds, d_wrt, Wrt};
use weft_compiler::ir::{
    scalar::sign, AttentionRule, AttentionWeights, Normaliser, RuleEnv, RuleExpr,
};

/// `[B,H,T,d]`.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub t: usize,
    pub d: usize,
}

impl Dims {
    pub fn from_shape(s: &[usize]) -> Self {
        Dims {
            b: s[0],
            h: s[1],
            t: s[2],
            d: s[3],
        }
    }

    fn head(&self) -> usize {
        self.t * self.d
    }
}

/// The applied weights `W [T,T]` of one (batch, head): `p = scale·q kᵀ`; softmax or
/// signed `sign(p)·softmax(|p|)` over visible keys; hidden keys (and rows with no visible
/// key) get weight 0.
#[allow(clippy::too_many_arguments)]
fn weights<T: CpuReal>(
    rule: &AttentionRule,
    q: &[T],
    k: &[T],
    seg: Option<&[i32]>,
    params: &[Vec<T>],
    head: usize,
    t: usize,
    d: usize,
) -> Vec<T> {
    if !rule.is_builtin() {
        return RuleRows::new(rule, q, k, seg, params, head, t, d).weights();
    }
    let mut w = vec![T::zero(); t * t];
    T::gemm(
        t,
        d,
        t,
        T::from_f64(rule.scale as f64),
        q,
        (d, 1),
        k,
        (1, d),
        T::zero(),
        &mut w,
        (t, 1),
    );
    let signed = rule.weights == AttentionWeights::Signed;
    for i in 0..t {
        let row = &mut w[i * t..(i + 1) * t];
        let vis = |j: usize| {
            rule.mask
                .visible(i, j, seg.map_or(0, |s| s[i]), seg.map_or(0, |s| s[j]))
        };
        let mag = |p: T| if signed { p.abs() } else { p };
        let mut m = T::neg_infinity();
        for (j, &p) in row.iter().enumerate() {
            if vis(j) && mag(p) > m {
                m = mag(p);
            }
        }
        let mut z = T::zero();
        let mut e = vec![T::zero(); t];
        for j in 0..t {
            if vis(j) {
                e[j] = (mag(row[j]) - m).exp();
                z += e[j];
            }
        }
        for j in 0..t {
            let s = if z > T::zero() { e[j] / z } else { T::zero() };
            row[j] = if signed { sign(row[j]) * s } else { s };
        }
    }
    w
}

/// A spec's rule on one (batch, head): raw scores, modified scores, visibility, and the
/// normaliser's per-row maximum and denominator.
struct RuleRows<'a, T> {
    rule: &'a AttentionRule,
    t: usize,
    /// Raw scores `scale·q·kᵀ`.
    raw: Vec<T>,
    /// Modified scores `score(raw)`.
    s: Vec<T>,
    visible: Vec<bool>,
    /// Per row: the running maximum `m` and denominator `z` (normalised rules only).
    stats: Vec<(T, T)>,
    env: RuleEnv<'a, T>,
    seg: Option<&'a [i32]>,
}

impl<'a, T: CpuReal> RuleRows<'a, T> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rule: &'a AttentionRule,
        q: &[T],
        k: &[T],
        seg: Option<&'a [i32]>,
        params: &'a [Vec<T>],
        head: usize,
        t: usize,
        d: usize,
    ) -> Self {
        let mut raw = vec![T::zero(); t * t];
        T::gemm(
            t,
            d,
            t,
            T::from_f64(rule.scale as f64),
            q,
            (d, 1),
            k,
            (1, d),
            T::zero(),
            &mut raw,
            (t, 1),
        );
        let env = RuleEnv {
            score: T::zero(),
            i: 0,
            j: 0,
            head,
            kv_head: head / rule.group.max(1),
            keys: t,
            seg_i: 0,
            seg_j: 0,
            params,
        };
        let mut r = RuleRows {
            rule,
            t,
            s: raw.clone(),
            raw,
            visible: vec![false; t * t],
            stats: Vec::new(),
            env,
            seg,
        };
        for i in 0..t {
            for j in 0..t {
                let e = r.at(i, j);
                let x = i * t + j;
                r.visible[x] = rule.mask.visible_at(&e);
                if let Some(f) = &rule.score {
                    r.s[x] = f.eval(&e);
                }
            }
        }
        if let Normaliser::Normalised { exponent, sink, .. } = rule.weights.normaliser() {
            let c = T::from_f64(sink as f64);
            for i in 0..t {
                let mut m = if sink > 0.0 {
                    c.ln()
                } else {
                    T::neg_infinity()
                };
                for j in (0..t).filter(|&j| r.visible[i * t + j]) {
                    let a = exponent.eval(&r.at_s(i, j));
                    if a > m {
                        m = a;
                    }
                }
                let mut z = if sink > 0.0 {
                    c * (-m).exp()
                } else {
                    T::zero()
                };
                for j in (0..t).filter(|&j| r.visible[i * t + j]) {
                    z += (exponent.eval(&r.at_s(i, j)) - m).exp();
                }
                r.stats.push((m, z));
            }
        }
        r
    }

    /// The place `(i, j)` with the raw score.
    fn at(&self, i: usize, j: usize) -> RuleEnv<'a, T> {
        RuleEnv {
            score: self.raw[i * self.t + j],
            i,
            j,
            seg_i: self.seg.map_or(0, |s| s[i]),
            seg_j: self.seg.map_or(0, |s| s[j]),
            ..self.env
        }
    }

    /// The place `(i, j)` with the modified score.
    fn at_s(&self, i: usize, j: usize) -> RuleEnv<'a, T> {
        self.at(i, j).with_score(self.s[i * self.t + j])
    }

    /// `exp(f(s) − m) / z` of a normalised rule (0 for a row with nothing to normalise).
    fn prob(&self, exponent: &RuleExpr, i: usize, j: usize) -> T {
        let (m, z) = self.stats[i];
        if z > T::zero() {
            (exponent.eval(&self.at_s(i, j)) - m).exp() / z
        } else {
            T::zero()
        }
    }

    fn weights(&self) -> Vec<T> {
        let t = self.t;
        let mut w = vec![T::zero(); t * t];
        let n = self.rule.weights.normaliser();
        for i in 0..t {
            for j in (0..t).filter(|&j| self.visible[i * t + j]) {
                let e = self.at_s(i, j);
                w[i * t + j] = match &n {
                    Normaliser::Normalised {
                        factor, exponent, ..
                    } => factor.eval(&e) * self.prob(exponent, i, j),
                    Normaliser::Direct(phi) => phi.eval(&e),
                };
            }
        }
        w
    }

    /// `dL/dp_raw` from `g = dy·vᵀ` (`[T,T]`) and `δ_i = dy_i·y_i`: [`RuleRows::ds`] times
    /// `score'(p_raw)`.
    fn dp(&self, g: &[T], delta: &[T]) -> Vec<T> {
        let mut dp = self.ds(g, delta);
        if let Some(e) = &self.rule.score {
            let d = d_ds(e);
            for (x, v) in dp.iter_mut().enumerate() {
                if *v != T::zero() {
                    *v = *v * d.eval(&self.at(x / self.t, x % self.t));
                }
            }
        }
        dp
    }

    /// Per query row `i`, `Σ_j dL/ds_ij · ∂score/∂θ_k` for each rule parameter `k`.
    fn param_rows(&self, g: &[T], delta: &[T]) -> Vec<Vec<T>> {
        let t = self.t;
        let ds = self.ds(g, delta);
        let score = self.rule.score.clone().unwrap_or(RuleExpr::s());
        let dk: Vec<RuleExpr> = (0..self.rule.params)
            .map(|k| d_wrt(&score, Wrt::Param(k)))
            .collect();
        (0..t)
            .map(|i| {
                dk.iter()
                    .map(|d| {
                        (0..t).fold(T::zero(), |acc, j| {
                            let x = i * t + j;
                            if ds[x] == T::zero() {
                                acc
                            } else {
                                acc + ds[x] * d.eval(&self.at(i, j))
                            }
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// `dL/ds` (the modified score): `a_j·(g_j·(h' + h·f') − f'·δ)` for a normaliser (with
    /// `a_j` its probability), `g_j·φ'` for direct weights.
    fn ds(&self, g: &[T], delta: &[T]) -> Vec<T> {
        let t = self.t;
        let mut dp = vec![T::zero(); t * t];
        let n = self.rule.weights.normaliser();
        let (d1, d2) = match &n {
            Normaliser::Normalised {
                factor, exponent, ..
            } => (d_ds(factor), d_ds(exponent)),
            Normaliser::Direct(phi) => (d_ds(phi), RuleExpr::Const(0.0)),
        };
        for (i, &delta_i) in delta.iter().enumerate().take(t) {
            for j in (0..t).filter(|&j| self.visible[i * t + j]) {
                let x = i * t + j;
                let e = self.at_s(i, j);
                let ds = match &n {
                    Normaliser::Normalised {
                        factor, exponent, ..
                    } => {
                        let (h, dh, df) = (factor.eval(&e), d1.eval(&e), d2.eval(&e));
                        self.prob(exponent, i, j) * (g[x] * (dh + h * df) - df * delta_i)
                    }
                    Normaliser::Direct(_) => g[x] * d1.eval(&e),
                };
                dp[x] = ds;
            }
        }
        dp
    }
}

/// The inputs of an attention op after q, k, v (and y, dy): segment ids when the rule reads
/// them, then the rule's parameters (`[k][head]`).
pub(crate) fn extras<'a, T: CpuReal, O: super::value::Operand<T>>(
    rule: &AttentionRule,
    rest: &[&'a O],
) -> (Option<&'a [i32]>, Vec<Vec<T>>) {
    let n_seg = usize::from(rule.needs_segments());
    let seg = rest.first().filter(|_| n_seg == 1).map(|v| v.i());
    let params = rest[n_seg.min(rest.len())..]
        .iter()
        .map(|v| v.f().to_vec())
        .collect();
    (seg, params)
}

/// The operands of the backward ops.
pub(crate) struct Operands<'a, T> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub y: &'a [T],
    pub dy: &'a [T],
    pub seg: Option<&'a [i32]>,
    /// Rule parameters, `[k][head]`.
    pub params: &'a [Vec<T>],
}

fn segments(seg: Option<&[i32]>, bi: usize, t: usize) -> Option<&[i32]> {
    seg.map(|s| &s[bi * t..(bi + 1) * t])
}

/// `y = W v` for every head.
pub(crate) fn forward<T: CpuReal>(
    rule: &AttentionRule,
    q: &[T],
    k: &[T],
    v: &[T],
    seg: Option<&[i32]>,
    params: &[Vec<T>],
    dm: Dims,
) -> Vec<T> {
    let hs = dm.head();
    let mut y = vec![T::zero(); q.len()];
    y.par_chunks_mut(hs).enumerate().for_each(|(bh, yh)| {
        let r = bh * hs..(bh + 1) * hs;
        let w = weights(
            rule,
            &q[r.clone()],
            &k[r.clone()],
            segments(seg, bh / dm.h, dm.t),
            params,
            bh % dm.h,
            dm.t,
            dm.d,
        );
        T::gemm(
            dm.t,
            dm.t,
            dm.d,
            T::one(),
            &w,
            (dm.t, 1),
            &v[r],
            (dm.d, 1),
            T::zero(),
            yh,
            (dm.d, 1),
        );
    });
    y
}

/// The weights `[B,H,T,T]`.
pub(crate) fn pattern<T: CpuReal>(
    rule: &AttentionRule,
    q: &[T],
    k: &[T],
    seg: Option<&[i32]>,
    params: &[Vec<T>],
    dm: Dims,
) -> Vec<T> {
    let hs = dm.head();
    let mut out = vec![T::zero(); dm.b * dm.h * dm.t * dm.t];
    out.par_chunks_mut(dm.t * dm.t)
        .enumerate()
        .for_each(|(bh, wh)| {
            let r = bh * hs..(bh + 1) * hs;
            wh.copy_from_slice(&weights(
                rule,
                &q[r.clone()],
                &k[r],
                segments(seg, bh / dm.h, dm.t),
                params,
                bh % dm.h,
                dm.t,
                dm.d,
            ));
        });
    out
}

/// `(dq, dk, dv)` stacked as `[3,B,H,T,d]`.
///
/// With `g_j = ⟨dy, v_j⟩` and `δ = ⟨dy, y⟩`: `dv = Wᵀ dy` and, for both rules,
/// `dp_j = |w_j| · (g_j − sign(w_j)·δ)` — for softmax `|w| = w`, `sign = 1`; for signed
/// attention `|w_j| = s_j` and `sign(w_j) = sign(p_j)`, which is METHODS §2.2's
/// `s_j (g_j − σ_j δ)` (and 0 at `p_j = 0`, as autograd through `sign·softmax(|p|)` gives).
/// Then `dq = scale · dp k`, `dk = scale · dpᵀ q`.
pub(crate) fn backward<T: CpuReal>(rule: &AttentionRule, ops: &Operands<T>, dm: Dims) -> Vec<T> {
    let (q, k, v, y, dy, seg) = (ops.q, ops.k, ops.v, ops.y, ops.dy, ops.seg);
    let hs = dm.head();
    let (t, d) = (dm.t, dm.d);
    let scale = T::from_f64(rule.scale as f64);
    let heads: Vec<[Vec<T>; 3]> = (0..dm.b * dm.h)
        .into_par_iter()
        .map(|bh| {
            let r = bh * hs..(bh + 1) * hs;
            let (qh, kh, vh, yh, dyh) = (
                &q[r.clone()],
                &k[r.clone()],
                &v[r.clone()],
                &y[r.clone()],
                &dy[r],
            );
            let sg = segments(seg, bh / dm.h, t);
            let w = weights(rule, qh, kh, sg, ops.params, bh % dm.h, t, d);
            let (g, delta) = upstream(dyh, vh, yh, t, d);
            let dp = if rule.is_builtin() {
                let mut dp = g;
                for i in 0..t {
                    for j in 0..t {
                        let wij = w[i * t + j];
                        dp[i * t + j] = wij.abs() * (dp[i * t + j] - sign(wij) * delta[i]);
                    }
                }
                dp
            } else {
                RuleRows::new(rule, qh, kh, sg, ops.params, bh % dm.h, t, d).dp(&g, &delta)
            };
            let mut dq = vec![T::zero(); hs];
            let mut dk = vec![T::zero(); hs];
            let mut dv = vec![T::zero(); hs];
            T::gemm(
                t,
                t,
                d,
                scale,
                &dp,
                (t, 1),
                kh,
                (d, 1),
                T::zero(),
                &mut dq,
                (d, 1),
            );
            T::gemm(
                t,
                t,
                d,
                scale,
                &dp,
                (1, t),
                qh,
                (d, 1),
                T::zero(),
                &mut dk,
                (d, 1),
            );
            T::gemm(
                t,
                t,
                d,
                T::one(),
                &w,
                (1, t),
                dyh,
                (d, 1),
                T::zero(),
                &mut dv,
                (d, 1),
            );
            [dq, dk, dv]
        })
        .collect();
    let mut out = vec![T::zero(); 3 * q.len()];
    for (bh, parts) in heads.iter().enumerate() {
        for (which, part) in parts.iter().enumerate() {
            let base = which * q.len() + bh * hs;
            out[base..base + hs].copy_from_slice(part);
        }
    }
    out
}

/// What both backward passes start from for one (batch, head): `g = dY·Vᵀ` (the gradient
/// of the applied weights, `[T,T]`) and `delta_i = dy_i·y_i` (the normaliser's term).
fn upstream<T: CpuReal>(dyh: &[T], vh: &[T], yh: &[T], t: usize, d: usize) -> (Vec<T>, Vec<T>) {
    let mut g = vec![T::zero(); t * t];
    T::gemm(
        t,
        d,
        t,
        T::one(),
        dyh,
        (d, 1),
        vh,
        (1, d),
        T::zero(),
        &mut g,
        (t, 1),
    );
    let delta = (0..t)
        .map(|i| (0..d).fold(T::zero(), |a, c| a + dyh[i * d + c] * yh[i * d + c]))
        .collect();
    (g, delta)
}

/// The rule parameters' per-row gradient contributions `[B,H,T,P]` (`AttentionRuleGrad`).
pub(crate) fn rule_grad<T: CpuReal>(rule: &AttentionRule, ops: &Operands<T>, dm: Dims) -> Vec<T> {
    let hs = dm.head();
    let (t, d, p) = (dm.t, dm.d, rule.params);
    let mut out = vec![T::zero(); dm.b * dm.h * t * p];
    out.par_chunks_mut((t * p).max(1))
        .enumerate()
        .for_each(|(bh, oh)| {
            let r = bh * hs..(bh + 1) * hs;
            let (qh, kh, vh, yh, dyh) = (
                &ops.q[r.clone()],
                &ops.k[r.clone()],
                &ops.v[r.clone()],
                &ops.y[r.clone()],
                &ops.dy[r],
            );
            let (g, delta) = upstream(dyh, vh, yh, t, d);
            let sg = segments(ops.seg, bh / dm.h, t);
            let rows = RuleRows::new(rule, qh, kh, sg, ops.params, bh % dm.h, t, d);
            for (i, row) in rows.param_rows(&g, &delta).iter().enumerate() {
                oh[i * p..(i + 1) * p].copy_from_slice(row);
            }
        });
    out
}
