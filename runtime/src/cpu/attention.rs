//! Attention forward, pattern and backward on the CPU: per (batch, head), scores by GEMM,
//! masked row normalisation, outputs by GEMM. The backward is the hand-written VJP that a
//! fused GPU kernel will implement (no T×T intermediate in the graph).

use super::real::CpuReal;
use rayon::prelude::*;
use weft_compiler::ir::{scalar::sign, AttentionRule, AttentionWeights};

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
fn weights<T: CpuReal>(
    rule: &AttentionRule,
    q: &[T],
    k: &[T],
    seg: Option<&[i32]>,
    t: usize,
    d: usize,
) -> Vec<T> {
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: CpuReal>(
    rule: &AttentionRule,
    q: &[T],
    k: &[T],
    v: &[T],
    y: &[T],
    dy: &[T],
    seg: Option<&[i32]>,
    dm: Dims,
) -> Vec<T> {
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
            let w = weights(rule, qh, kh, segments(seg, bh / dm.h, t), t, d);
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
            let mut dp = g;
            for i in 0..t {
                let delta = (0..d).fold(T::zero(), |a, c| a + dyh[i * d + c] * yh[i * d + c]);
                for j in 0..t {
                    let wij = w[i * t + j];
                    dp[i * t + j] = wij.abs() * (dp[i * t + j] - sign(wij) * delta);
                }
            }
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
