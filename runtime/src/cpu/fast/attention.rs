//! Blocked attention for the fast path, forward and backward, every weight rule and mask.
//!
//! Queries are taken `ROWS` at a time: the block's scores against only the keys some row of
//! the block can see (for the causal family, keys up to the block's last row) go into a
//! `ROWS × T` scratch that each thread reuses, are normalised in place (softmax, or Cog's
//! `sign(p)·softmax(|p|)`, with the vectorised exponential) and multiplied into the outputs.
//! The `T × T` weights are never stored, and masked-out key blocks cost nothing. When the
//! pattern hook is captured, [`pattern`] writes the weights with the same arithmetic, so the
//! captured pattern times the values (a matmul) is the fused forward's output to the bit.

use super::simd::with_avx2;
use super::{attention_tiled, exp, small_gemm};
use crate::cpu::attention::Dims;
use crate::cpu::real::CpuReal;
use rayon::prelude::*;
use weft_compiler::ir::{scalar::sign, AttentionMask, AttentionRule, AttentionWeights};

/// Query rows per block: big enough for the products to run at GEMM speed, small enough that
/// causal blocks skip most of the hidden keys.
pub(super) const ROWS: usize = 32;

/// One past the last key any row in `i0..i1` can see (0 when none can).
pub(super) fn key_end(
    rule: &AttentionRule,
    seg: Option<&[i32]>,
    i0: usize,
    i1: usize,
    t: usize,
) -> usize {
    let sid = |j: usize| seg.map_or(0, |s| s[j]);
    let mut end = 0;
    for i in i0..i1 {
        // Every mask but bidirectional hides keys after the query.
        let top = if rule.mask == AttentionMask::Bidirectional {
            t
        } else {
            i + 1
        };
        if let Some(j) = (0..top)
            .rev()
            .find(|&j| rule.mask.visible(i, j, sid(i), sid(j)))
        {
            end = end.max(j + 1);
        }
    }
    end
}

/// Turns the raw scores of rows `i0..` (`w`, `kend` wide) into the applied weights in place:
/// the reference's weights (`cpu::attention::weights`) to float noise, with vectorised loops
/// over masks that leave a contiguous run of keys. Forward, pattern and backward all use it,
/// so a captured pattern and the fused forward agree to the bit.
pub(super) fn normalise(
    rule: &AttentionRule,
    seg: Option<&[i32]>,
    (i0, kend): (usize, usize),
    w: &mut [f32],
) {
    let signed = rule.weights == AttentionWeights::Signed;
    for (r, row) in w.chunks_mut(kend).enumerate() {
        let i = i0 + r;
        // Masks without segments see one contiguous run of keys: loops over it vectorise.
        let run = match rule.mask {
            AttentionMask::Causal => Some((0, (i + 1).min(kend))),
            AttentionMask::Bidirectional => Some((0, kend)),
            AttentionMask::SelfOnly => Some((i.min(kend), (i + 1).min(kend))),
            // Segment masks and a spec's mask expression: each key is tested against the rule.
            AttentionMask::Document
            | AttentionMask::Turns
            | AttentionMask::TurnsKeepFirst
            | AttentionMask::Rule(_) => None,
        };
        match run {
            Some((lo, hi)) if signed => normalise_run::<true>(row, lo, hi),
            Some((lo, hi)) => normalise_run::<false>(row, lo, hi),
            None => normalise_masked(rule, seg, i, row, signed),
        }
    }
}

/// `sign(p)·e` with `sign(0) = 0` (`ir::scalar::sign`) for `e ≥ 0`, without a branch on the
/// sign: scores' signs are random, and a mispredicted branch per weight cost signed attention
/// a third more than softmax in the forward (measured, T 128). `±1·e` and `0·e` are exact.
#[inline(always)]
fn signed_as(p: f32, e: f32) -> f32 {
    let s = (p > 0.0) as u8 as f32 - (p < 0.0) as u8 as f32;
    s * e
}

/// One row whose visible keys are `lo..hi`: the vectorised [`exp::exp`] (within 2 ulp of
/// libm's), lane-wise partial maxima and sums, and one reciprocal; several times faster than
/// the reference's loop, the same weights to float noise.
fn normalise_run<const SIGNED: bool>(row: &mut [f32], lo: usize, hi: usize) {
    const L: usize = 8;
    with_avx2!(|| {
        let mag = |p: f32| if SIGNED { p.abs() } else { p };
        let vis = &mut row[lo..hi];
        let mut lanes = [f32::NEG_INFINITY; L];
        let mut it = vis.chunks_exact(L);
        for c in &mut it {
            for (m, &p) in lanes.iter_mut().zip(c) {
                if mag(p) > *m {
                    *m = mag(p);
                }
            }
        }
        let m = it
            .remainder()
            .iter()
            .map(|&p| mag(p))
            .chain(lanes)
            .fold(f32::NEG_INFINITY, |a, p| if p > a { p } else { a });
        // Per chunk of 64 keys: the exponentials into a buffer, then their lane sums, then
        // the weights; three loops that each vectorise (one loop doing all three does not).
        let mut buf = [0.0f32; 64];
        let mut sums = [0.0f32; L];
        let mut tail = 0.0f32;
        for c in vis.chunks_mut(buf.len()) {
            let e = &mut buf[..c.len()];
            for (e, &p) in e.iter_mut().zip(c.iter()) {
                *e = exp::exp(mag(p) - m);
            }
            let mut it = e.chunks_exact(L);
            for ch in &mut it {
                for (z, &v) in sums.iter_mut().zip(ch) {
                    *z += v;
                }
            }
            tail += it.remainder().iter().sum::<f32>();
            for (p, &e) in c.iter_mut().zip(e.iter()) {
                *p = if SIGNED { signed_as(*p, e) } else { e };
            }
        }
        let z = sums.iter().sum::<f32>() + tail;
        if z > 0.0 {
            let inv = 1.0 / z;
            vis.iter_mut().for_each(|p| *p *= inv);
        } else {
            vis.fill(0.0);
        }
    });
    row[..lo].fill(0.0);
    row[hi..].fill(0.0);
}

/// One row under a segment mask: visibility per key.
fn normalise_masked(
    rule: &AttentionRule,
    seg: Option<&[i32]>,
    i: usize,
    row: &mut [f32],
    signed: bool,
) {
    let sid = |j: usize| seg.map_or(0, |s| s[j]);
    let si = sid(i);
    let vis = |j: usize| rule.mask.visible(i, j, si, sid(j));
    let mag = |p: f32| if signed { p.abs() } else { p };
    let mut m = f32::NEG_INFINITY;
    for (j, &p) in row.iter().enumerate() {
        if vis(j) && mag(p) > m {
            m = mag(p);
        }
    }
    let mut z = 0.0f32;
    for (j, p) in row.iter_mut().enumerate() {
        let e = if vis(j) { (mag(*p) - m).exp() } else { 0.0 };
        z += e;
        *p = if signed { signed_as(*p, e) } else { e };
    }
    if z > 0.0 {
        row.iter_mut().for_each(|p| *p /= z);
    } else {
        row.fill(0.0);
    }
}

pub(super) fn seg_of(seg: Option<&[i32]>, bi: usize, t: usize) -> Option<&[i32]> {
    seg.map(|s| &s[bi * t..(bi + 1) * t])
}

/// Scores of query rows `i0..i1` against keys `..kend`, normalised: `[i1-i0, kend]` in `w`.
fn block_weights(
    rule: &AttentionRule,
    q: &[f32],
    k: &[f32],
    seg: Option<&[i32]>,
    (i0, i1, kend, d): (usize, usize, usize, usize),
    w: &mut [f32],
) {
    let r = i1 - i0;
    f32::gemm(
        r,
        d,
        kend,
        rule.scale,
        &q[i0 * d..i1 * d],
        (d, 1),
        &k[..kend * d],
        (1, d),
        0.0,
        w,
        (kend, 1),
    );
    normalise(rule, seg, (i0, kend), w);
}

/// `y = W v` for every (batch, head), written into `y` (`[B,H,T,d]`): on
/// [`small_gemm`]'s tiles where the machine has them, else through `matrixmultiply`.
pub(crate) fn forward(
    rule: &AttentionRule,
    (q, k, v): (&[f32], &[f32], &[f32]),
    seg: Option<&[i32]>,
    dm: Dims,
    y: &mut [f32],
) {
    if small_gemm::available() {
        attention_tiled::forward(rule, (q, k, v), seg, dm, y);
    } else {
        forward_packed(rule, q, k, v, seg, dm, y);
    }
}

/// `(dq, dk, dv)` stacked as `[3,B,H,T,d]` into `out`, the VJP documented at
/// `cpu::attention::backward`; tiles or `matrixmultiply` as for [`forward`].
pub(crate) fn backward(
    rule: &AttentionRule,
    qkv_y_dy: Operands5<'_>,
    seg: Option<&[i32]>,
    dm: Dims,
    out: &mut [f32],
) {
    if small_gemm::available() {
        attention_tiled::backward(rule, qkv_y_dy, seg, dm, out);
    } else {
        let (q, k, v, y, dy) = qkv_y_dy;
        backward_packed(rule, q, k, v, y, dy, seg, dm, out);
    }
}

/// The weights `[B,H,T,T]` (the `attn.pattern` hook point) with [`forward`]'s arithmetic:
/// the same products and normaliser, zeros where the mask hides a key.
pub(crate) fn pattern(
    rule: &AttentionRule,
    (q, k): (&[f32], &[f32]),
    seg: Option<&[i32]>,
    dm: Dims,
    out: &mut [f32],
) {
    let (t, d, hs) = (dm.t, dm.d, dm.t * dm.d);
    let tiled = small_gemm::available();
    out.par_chunks_mut(t * t).enumerate().for_each(|(bh, ph)| {
        let r0 = bh * hs;
        let (qh, kh) = (&q[r0..r0 + hs], &k[r0..r0 + hs]);
        let sg = seg_of(seg, bh / dm.h, t);
        attention_tiled::with_scratch(t, d, |s| {
            if tiled {
                attention_tiled::transpose(kh, t, d, &mut s.kt);
            }
            for i0 in (0..t).step_by(ROWS) {
                let i1 = (i0 + ROWS).min(t);
                let kend = key_end(rule, sg, i0, i1, t);
                let rows = &mut ph[i0 * t..i1 * t];
                if kend == 0 {
                    rows.fill(0.0);
                    continue;
                }
                let w = &mut s.w[..(i1 - i0) * kend];
                let span = (i0, i1, kend, d);
                if tiled {
                    let bw = (i0, i1, kend, t, d);
                    attention_tiled::block_weights(rule, (qh, &s.kt), sg, bw, w);
                } else {
                    block_weights(rule, qh, kh, sg, span, w);
                }
                for (row, wr) in rows.chunks_mut(t).zip(w.chunks(kend)) {
                    row[..kend].copy_from_slice(wr);
                    row[kend..].fill(0.0);
                }
            }
        })
    });
}

/// The backward's operands: `q`, `k`, `v`, the forward's `y`, and `dy`.
pub(super) type Operands5<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// [`forward`] with `matrixmultiply`'s packed products.
#[allow(clippy::too_many_arguments)]
fn forward_packed(
    rule: &AttentionRule,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seg: Option<&[i32]>,
    dm: Dims,
    y: &mut [f32],
) {
    let (t, d, hs) = (dm.t, dm.d, dm.t * dm.d);
    y.par_chunks_mut(hs).enumerate().for_each_init(
        || vec![0.0f32; ROWS * t],
        |w, (bh, yh)| {
            let r0 = bh * hs;
            let (qh, kh, vh) = (&q[r0..r0 + hs], &k[r0..r0 + hs], &v[r0..r0 + hs]);
            let sg = seg_of(seg, bh / dm.h, t);
            for i0 in (0..t).step_by(ROWS) {
                let i1 = (i0 + ROWS).min(t);
                let kend = key_end(rule, sg, i0, i1, t);
                let yb = &mut yh[i0 * d..i1 * d];
                if kend == 0 {
                    yb.fill(0.0);
                    continue;
                }
                let w = &mut w[..(i1 - i0) * kend];
                block_weights(rule, qh, kh, sg, (i0, i1, kend, d), w);
                f32::gemm(
                    i1 - i0,
                    kend,
                    d,
                    1.0,
                    w,
                    (kend, 1),
                    &vh[..kend * d],
                    (d, 1),
                    0.0,
                    yb,
                    (d, 1),
                );
            }
        },
    );
}

/// [`backward`] with `matrixmultiply`'s packed products, one query block at a time.
#[allow(clippy::too_many_arguments)]
fn backward_packed(
    rule: &AttentionRule,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    y: &[f32],
    dy: &[f32],
    seg: Option<&[i32]>,
    dm: Dims,
    out: &mut [f32],
) {
    let (t, d, hs) = (dm.t, dm.d, dm.t * dm.d);
    let n = q.len();
    let (dq, rest) = out.split_at_mut(n);
    let (dk, dv) = rest.split_at_mut(n);
    dq.par_chunks_mut(hs)
        .zip(dk.par_chunks_mut(hs))
        .zip(dv.par_chunks_mut(hs))
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; ROWS * t], vec![0.0f32; ROWS * t]),
            |(w, g), (bh, ((dqh, dkh), dvh))| {
                let hr = bh * hs..(bh + 1) * hs;
                let (qh, kh, vh) = (&q[hr.clone()], &k[hr.clone()], &v[hr.clone()]);
                let (yh, dyh) = (&y[hr.clone()], &dy[hr]);
                let sg = seg_of(seg, bh / dm.h, t);
                dkh.fill(0.0);
                dvh.fill(0.0);
                for i0 in (0..t).step_by(ROWS) {
                    let i1 = (i0 + ROWS).min(t);
                    let r = i1 - i0;
                    let kend = key_end(rule, sg, i0, i1, t);
                    if kend == 0 {
                        dqh[i0 * d..i1 * d].fill(0.0);
                        continue;
                    }
                    let w = &mut w[..r * kend];
                    let g = &mut g[..r * kend];
                    block_weights(rule, qh, kh, sg, (i0, i1, kend, d), w);
                    let dyb = &dyh[i0 * d..i1 * d];
                    // g = dy vᵀ over the visible keys.
                    f32::gemm(
                        r,
                        d,
                        kend,
                        1.0,
                        dyb,
                        (d, 1),
                        &vh[..kend * d],
                        (1, d),
                        0.0,
                        g,
                        (kend, 1),
                    );
                    for (ri, (grow, wrow)) in g.chunks_mut(kend).zip(w.chunks(kend)).enumerate() {
                        let i = i0 + ri;
                        let delta: f32 = dyh[i * d..(i + 1) * d]
                            .iter()
                            .zip(&yh[i * d..(i + 1) * d])
                            .map(|(a, b)| a * b)
                            .sum();
                        for (gv, &wv) in grow.iter_mut().zip(wrow) {
                            *gv = wv.abs() * (*gv - sign(wv) * delta);
                        }
                    }
                    let dp = &*g;
                    f32::gemm(
                        r,
                        kend,
                        d,
                        rule.scale,
                        dp,
                        (kend, 1),
                        &kh[..kend * d],
                        (d, 1),
                        0.0,
                        &mut dqh[i0 * d..i1 * d],
                        (d, 1),
                    );
                    f32::gemm(
                        kend,
                        r,
                        d,
                        rule.scale,
                        dp,
                        (1, kend),
                        &qh[i0 * d..i1 * d],
                        (d, 1),
                        1.0,
                        &mut dkh[..kend * d],
                        (d, 1),
                    );
                    f32::gemm(
                        kend,
                        r,
                        d,
                        1.0,
                        w,
                        (1, kend),
                        dyb,
                        (d, 1),
                        1.0,
                        &mut dvh[..kend * d],
                        (d, 1),
                    );
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_compiler::ir::AttentionMask;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn blocked_attention_matches_the_reference_for_every_rule_and_mask() {
        // T = 70 leaves a partial last block; several segments exercise the document masks.
        let dm = Dims {
            b: 2,
            h: 2,
            t: 70,
            d: 8,
        };
        let n = dm.b * dm.h * dm.t * dm.d;
        let (q, k, v, dy) = (rand(n, 1), rand(n, 2), rand(n, 3), rand(n, 4));
        let seg: Vec<i32> = (0..dm.b * dm.t).map(|i| ((i % dm.t) / 25) as i32).collect();
        for weights in [AttentionWeights::Softmax, AttentionWeights::Signed] {
            for mask in [
                AttentionMask::Causal,
                AttentionMask::Bidirectional,
                AttentionMask::Document,
                AttentionMask::Turns,
                AttentionMask::TurnsKeepFirst,
                AttentionMask::SelfOnly,
            ] {
                let rule = AttentionRule::builtin(weights.clone(), mask.clone(), 0.35);
                let sg = mask.needs_segments().then_some(&seg[..]);
                let want = crate::cpu::attention::forward(&rule, &q, &k, &v, sg, &[], dm);
                let what = format!("{weights:?}/{mask:?}");
                let mut y = vec![0.0; n];
                forward_packed(&rule, &q, &k, &v, sg, dm, &mut y);
                close(&y, &want, &format!("{what} packed y"));
                let mut yt = vec![0.0; n];
                forward(&rule, (&q, &k, &v), sg, dm, &mut yt);
                close(&yt, &want, &format!("{what} y"));
                // The captured pattern times v (the fast path's matmul) is the fused forward
                // to the bit: `weft eval` gives the same logits with `--capture` and without.
                let (bh, t, d) = (dm.b * dm.h, dm.t, dm.d);
                let mut p = vec![f32::NAN; bh * t * t];
                pattern(&rule, (&q, &k), sg, dm, &mut p);
                let reference = crate::cpu::attention::pattern(&rule, &q, &k, sg, &[], dm);
                close(&p, &reference, &format!("{what} pattern"));
                let mut py = vec![0.0; n];
                let (sp, sv) = ([dm.b, dm.h, t, t], [dm.b, dm.h, t, d]);
                super::super::matmul::matmul(&p, &sp, &v, &sv, &sv, false, false, &mut py);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&py),
                    bits(&yt),
                    "{what}: pattern · v vs the fused forward"
                );
                let ops = crate::cpu::attention::Operands {
                    q: &q,
                    k: &k,
                    v: &v,
                    y: &y,
                    dy: &dy,
                    seg: sg,
                    params: &[],
                };
                let want = crate::cpu::attention::backward(&rule, &ops, dm);
                let mut got = vec![0.0; 3 * n];
                backward_packed(&rule, &q, &k, &v, &y, &dy, sg, dm, &mut got);
                close(&got, &want, &format!("{what} packed grads"));
                got.fill(f32::NAN);
                backward(&rule, (&q, &k, &v, &y, &dy), sg, dm, &mut got);
                close(&got, &want, &format!("{what} grads"));
            }
        }
    }
}
