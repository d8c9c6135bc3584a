//! The blocked attention of [`super::attention`] with its block products on
//! [`small_gemm`]'s unpacked register tiles, for machines that have them. Each (batch, head)
//! transposes its keys (and, for the backward, values) once into per-thread scratch so that
//! every product reads its right operand row-major; the key and value gradients read the
//! weight blocks transposed in place ([`gemm_at`]). Forward, pattern and backward normalise
//! with the same vectorised exponential.

use super::attention::{key_end, normalise, seg_of, Operands5, ROWS};
use super::simd::with_avx2;
use super::small_gemm::{gemm, gemm_at};
use crate::cpu::attention::Dims;
use rayon::prelude::*;
use weft_compiler::ir::{scalar::sign, AttentionRule};

/// `dst[c·rows + r] = src[r·cols + c]` for the `rows × cols` block at the top of `src`, in
/// tiles of `B × B`: a tile's source rows and destination rows stay in L1 while it is
/// copied. Element by element, every store went to another cache line (`T` floats apart),
/// and the transposes took a fifth of a T 512 attention's time (measured with `perf`).
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        let r1 = (r0 + B).min(rows);
        for c0 in (0..cols).step_by(B) {
            for c in c0..(c0 + B).min(cols) {
                let out = &mut dst[c * rows + r0..c * rows + r1];
                for (o, r) in out.iter_mut().zip(r0..r1) {
                    *o = src[r * cols + c];
                }
            }
        }
    }
}

/// Per-thread scratch: transposed keys and values (`[d, T]`), a block of weights, of their
/// gradient and of raw scores (`[ROWS, T]`; the raw scores for rules written in a spec).
/// Kept by each thread across calls, so a training step's attention allocates nothing once
/// warm.
#[derive(Default)]
pub(super) struct Scratch {
    pub kt: Vec<f32>,
    pub vt: Vec<f32>,
    pub w: Vec<f32>,
    pub g: Vec<f32>,
    pub raw: Vec<f32>,
}

impl Scratch {
    /// Grows every buffer to what `[T, d]` heads need (never shrinks).
    fn fit(&mut self, t: usize, d: usize) {
        for (buf, n) in [
            (&mut self.kt, d * t),
            (&mut self.vt, d * t),
            (&mut self.w, ROWS * t),
            (&mut self.g, ROWS * t),
            (&mut self.raw, ROWS * t),
        ] {
            if buf.len() < n {
                buf.resize(n, 0.0);
            }
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch, grown for `[T, d]` heads.
pub(super) fn with_scratch(t: usize, d: usize, f: impl FnOnce(&mut Scratch)) {
    SCRATCH.with(|cell| {
        let mut s = cell.borrow_mut();
        s.fit(t, d);
        f(&mut s)
    })
}

/// Raw scores `scale · q kᵀ` of rows `i0..i1` against keys `..kend`, normalised with the
/// vectorised exponential (see `attention::normalise`), into `w`.
pub(super) fn block_weights(
    rule: &AttentionRule,
    (qh, kt): (&[f32], &[f32]),
    seg: Option<&[i32]>,
    (i0, i1, kend, t, d): (usize, usize, usize, usize, usize),
    w: &mut [f32],
) {
    gemm(
        (i1 - i0, kend, d),
        rule.scale,
        &qh[i0 * d..i1 * d],
        d,
        kt,
        t,
        0.0,
        w,
        kend,
    );
    normalise(rule, seg, (i0, kend), w);
}

/// `y = W v` for every (batch, head) into `y` (`[B,H,T,d]`).
pub(crate) fn forward(
    rule: &AttentionRule,
    (q, k, v): (&[f32], &[f32], &[f32]),
    seg: Option<&[i32]>,
    dm: Dims,
    y: &mut [f32],
) {
    let (t, d, hs) = (dm.t, dm.d, dm.t * dm.d);
    y.par_chunks_mut(hs).enumerate().for_each(|(bh, yh)| {
        with_scratch(t, d, |s| {
            let r0 = bh * hs;
            let (qh, kh, vh) = (&q[r0..r0 + hs], &k[r0..r0 + hs], &v[r0..r0 + hs]);
            let sg = seg_of(seg, bh / dm.h, t);
            transpose(kh, t, d, &mut s.kt);
            for i0 in (0..t).step_by(ROWS) {
                let i1 = (i0 + ROWS).min(t);
                let kend = key_end(rule, sg, i0, i1, t);
                let yb = &mut yh[i0 * d..i1 * d];
                if kend == 0 {
                    yb.fill(0.0);
                    continue;
                }
                let w = &mut s.w[..(i1 - i0) * kend];
                block_weights(rule, (qh, &s.kt), sg, (i0, i1, kend, t, d), w);
                gemm((i1 - i0, d, kend), 1.0, w, kend, vh, d, 0.0, yb, d);
            }
        })
    });
}

/// `(dq, dk, dv)` stacked as `[3,B,H,T,d]` into `out` (the VJP of `cpu::attention::backward`).
pub(crate) fn backward(
    rule: &AttentionRule,
    (q, k, v, y, dy): Operands5<'_>,
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
        .for_each(|(bh, ((dqh, dkh), dvh))| {
            with_scratch(t, d, |s| {
                let hr = bh * hs..(bh + 1) * hs;
                let (qh, kh, vh) = (&q[hr.clone()], &k[hr.clone()], &v[hr.clone()]);
                let (yh, dyh) = (&y[hr.clone()], &dy[hr]);
                let sg = seg_of(seg, bh / dm.h, t);
                transpose(kh, t, d, &mut s.kt);
                transpose(vh, t, d, &mut s.vt);
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
                    let w = &mut s.w[..r * kend];
                    let g = &mut s.g[..r * kend];
                    block_weights(rule, (qh, &s.kt), sg, (i0, i1, kend, t, d), w);
                    let (qb, dyb) = (&qh[i0 * d..i1 * d], &dyh[i0 * d..i1 * d]);
                    // g = dy vᵀ over the visible keys, then dp = |w|·(g − sign(w)·δ).
                    gemm((r, kend, d), 1.0, dyb, d, &s.vt, t, 0.0, g, kend);
                    with_avx2!(|| {
                        for (ri, (grow, wrow)) in g.chunks_mut(kend).zip(w.chunks(kend)).enumerate()
                        {
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
                    });
                    let dqb = &mut dqh[i0 * d..i1 * d];
                    gemm((r, d, kend), rule.scale, g, kend, kh, d, 0.0, dqb, d);
                    let dkb = &mut dkh[..kend * d];
                    gemm_at((kend, d, r), rule.scale, g, kend, qb, d, 1.0, dkb, d);
                    let dvb = &mut dvh[..kend * d];
                    gemm_at((kend, d, r), 1.0, w, kend, dyb, d, 1.0, dvb, d);
                }
            })
        });
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn tiled_transpose_matches_the_definition_at_sizes_off_the_tile() {
        for (rows, cols) in [(1, 1), (5, 3), (16, 16), (37, 5), (17, 70), (130, 64)] {
            let src: Vec<f32> = (0..rows * cols).map(|x| x as f32 * 0.5 - 3.0).collect();
            // A longer source and destination than the block, as the scratch buffers are.
            let mut padded = src.clone();
            padded.extend([9.0; 7]);
            let mut dst = vec![f32::NAN; rows * cols + 5];
            transpose(&padded, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at {r},{c}"
                    );
                }
            }
            assert!(
                dst[rows * cols..].iter().all(|v| v.is_nan()),
                "{rows}x{cols}"
            );
        }
    }
}
