//! Matmul for the fast path: a product whose right operand is one shared matrix (every
//! projection `[B,T,D] @ [D,N]` and its input gradient) runs as a single `(B·T) × D × N`
//! GEMM, so the weight is packed once instead of once per batch entry. The rows are split
//! across rayon's threads in blocks when the product is large; a true batch of products runs
//! one GEMM per entry, in parallel over entries.

use super::strided::broadcast_strides;
use crate::cpu::real::CpuReal;
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on one thread.
const PAR_FLOPS: usize = 1 << 21;

/// `op(a) @ op(b)` into `c` (shapes checked when the graph was built).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out: &[usize],
    ta: bool,
    tb: bool,
    c: &mut [f32],
) {
    let (ra, rb, ro) = (sa.len(), sb.len(), out.len());
    let (m, n) = (out[ro - 2], out[ro - 1]);
    let k = if ta { sa[ra - 2] } else { sa[ra - 1] };
    let bstr = if tb { (1, k) } else { (n, 1) };
    let batch: usize = out[..ro - 2].iter().product();
    let b_batch: usize = sb[..rb - 2].iter().product();
    let a_batch: usize = sa[..ra - 2].iter().product();
    if b_batch == 1 && !ta && a_batch == batch {
        // One shared B: fold the batch into A's rows.
        rows_gemm(batch * m, k, n, a, b, bstr, c);
        return;
    }
    let astr = if ta { (1, m) } else { (k, 1) };
    let batch_shape = &out[..ro - 2];
    let a_off = broadcast_strides(batch_shape, &sa[..ra - 2]);
    let b_off = broadcast_strides(batch_shape, &sb[..rb - 2]);
    let offset = |strides: &[usize], mut i: usize| {
        let mut o = 0;
        for (ax, &e) in batch_shape.iter().enumerate().rev() {
            o += (i % e) * strides[ax];
            i /= e;
        }
        o
    };
    let (a_mat, b_mat) = (m * k, k * n);
    let one = |(i, ci): (usize, &mut [f32])| {
        let ao = offset(&a_off, i) * a_mat;
        let bo = offset(&b_off, i) * b_mat;
        f32::gemm(
            m,
            k,
            n,
            1.0,
            &a[ao..ao + a_mat],
            astr,
            &b[bo..bo + b_mat],
            bstr,
            0.0,
            ci,
            (n, 1),
        );
    };
    if batch > 1 && batch * m * n * k >= PAR_FLOPS {
        c.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        c.chunks_mut(m * n).enumerate().for_each(one);
    }
}

/// `C[rows, n] = A[rows, k] · op(B)`, A row-major, split into row blocks across threads.
fn rows_gemm(
    rows: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    bstr: (usize, usize),
    c: &mut [f32],
) {
    let threads = rayon::current_num_threads();
    if rows * n * k < PAR_FLOPS || threads == 1 || rows < 2 * threads {
        f32::gemm(rows, k, n, 1.0, a, (k, 1), b, bstr, 0.0, c, (n, 1));
        return;
    }
    let per = rows.div_ceil(threads);
    c.par_chunks_mut(per * n)
        .zip(a.par_chunks(per * k))
        .for_each(|(cb, ab)| {
            let r = cb.len() / n;
            f32::gemm(r, k, n, 1.0, ab, (k, 1), b, bstr, 0.0, cb, (n, 1));
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn every_form_matches_the_reference() {
        // (a shape, b shape, out shape, ta, tb)
        type Case<'a> = (&'a [usize], &'a [usize], &'a [usize], bool, bool);
        let cases: [Case; 6] = [
            (&[4, 64, 32], &[32, 48], &[4, 64, 48], false, false),
            (&[4, 64, 32], &[48, 32], &[4, 64, 48], false, true),
            (&[4, 32, 64], &[32, 48], &[4, 64, 48], true, false),
            (
                &[2, 3, 64, 32],
                &[2, 3, 32, 16],
                &[2, 3, 64, 16],
                false,
                false,
            ),
            (&[64, 32], &[3, 32, 16], &[3, 64, 16], false, false),
            (&[2, 1, 8, 4], &[1, 3, 4, 8], &[2, 3, 8, 8], false, false),
        ];
        for (i, (sa, sb, so, ta, tb)) in cases.into_iter().enumerate() {
            let a = rand(sa.iter().product(), i as u64);
            let b = rand(sb.iter().product(), 100 + i as u64);
            let want = crate::cpu::matmul::matmul(&a, sa, &b, sb, so, ta, tb);
            let mut c = vec![0.0; want.len()];
            matmul(&a, sa, &b, sb, so, ta, tb, &mut c);
            for (x, y) in c.iter().zip(&want) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "case {i}: {x} vs {y}"
                );
            }
        }
    }
}
