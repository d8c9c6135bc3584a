//! Rotary position embedding on `[B,H,T,d]`.

use super::attention::Dims;
use super::real::CpuReal;
use rayon::prelude::*;
use weft_compiler::ir::RopeLayout;

/// Rotates pair `i` of each head vector by `±pos·freqs[i]`. Positions are `[T]` (shared by
/// the batch) or `[B,T]`. A zero frequency gives angle 0, so `cos = 1`, `sin = 0` exactly and
/// the pair is untouched (HoPE relies on this).
pub(crate) fn rope<T: CpuReal>(
    x: &[T],
    freqs: &[T],
    pos: &[i32],
    dm: Dims,
    layout: RopeLayout,
    inverse: bool,
) -> Vec<T> {
    let mut out = x.to_vec();
    // [T] positions are shared by the batch; [B,T] are per sequence (equal when B = 1).
    let per_batch = pos.len() != dm.t;
    out.par_chunks_mut(dm.d).enumerate().for_each(|(row, o)| {
        let ti = row % dm.t;
        let bi = row / (dm.h * dm.t);
        let p = if per_batch {
            pos[bi * dm.t + ti]
        } else {
            pos[ti]
        };
        let p = T::from_f64(p as f64);
        for (i, &f) in freqs.iter().enumerate() {
            let ang = if inverse { -(p * f) } else { p * f };
            let (c, s) = (ang.cos(), ang.sin());
            let (ia, ib) = layout.pair(i, dm.d);
            let (a, b) = (o[ia], o[ib]);
            o[ia] = a * c - b * s;
            o[ib] = a * s + b * c;
        }
    });
    out
}
