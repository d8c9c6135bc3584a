//! Matmul for the fast path: a product whose right operand is one shared matrix (every
//! projection `[B,T,D] @ [D,N]` and its input gradient) runs as a single `(B·T) × D × N`
//! GEMM, so the weight is packed once instead of once per batch entry; a single product
//! (the weight gradients `Xᵀ · dY`) likewise. Those run on the `gemm` crate (faer's:
//! 10% faster than `matrixmultiply` on a training step's shapes on the development VM, with
//! AVX-512 kernels where the machine has them), single-threaded inside, with the rows of C
//! split across rayon's threads: one block per thread, so no thread pool inside a product
//! competes with rayon's. A true batch of products (attention patterns times values) runs
//! one `matrixmultiply` GEMM per entry, in parallel over entries, with the reference's
//! arithmetic.

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
    let astr = if ta { (1, m) } else { (k, 1) };
    if b_batch == 1 && !ta && a_batch == batch {
        // One shared B: fold the batch into A's rows.
        split_gemm(batch * m, k, n, a, (k, 1), b, bstr, c);
        return;
    }
    if batch == 1 {
        split_gemm(m, k, n, a, astr, b, bstr, c);
        return;
    }
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

/// `C[rows, n] = op(A) · op(B)` (`A` read through `astr`, `B` through `bstr`, `C` row-major),
/// split into one block of C's rows per thread when the product is large.
#[allow(clippy::too_many_arguments)]
fn split_gemm(
    rows: usize,
    k: usize,
    n: usize,
    a: &[f32],
    astr: (usize, usize),
    b: &[f32],
    bstr: (usize, usize),
    c: &mut [f32],
) {
    let threads = rayon::current_num_threads();
    if rows * n * k < PAR_FLOPS || threads == 1 || rows < 2 * threads {
        gemm(rows, k, n, a, astr, b, bstr, c);
        return;
    }
    let per = rows.div_ceil(threads);
    c.par_chunks_mut(per * n).enumerate().for_each(|(i, cb)| {
        let r = cb.len() / n;
        gemm(r, k, n, &a[i * per * astr.0..], astr, b, bstr, cb);
    });
}

/// One single-threaded `gemm`-crate product into row-major `c` (`m × n`).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    (brs, bcs): (usize, usize),
    c: &mut [f32],
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(c.len() >= m * n, "matmul: C too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    assert!(
        last(m, k, ars, acs) < a.len(),
        "matmul: A strides leave the slice"
    );
    assert!(
        last(k, n, brs, bcs) < b.len(),
        "matmul: B strides leave the slice"
    );
    // SAFETY: the asserts above keep every strided read of A and B inside their slices and
    // every write inside C's first m·n elements; `c` is a unique borrow, so no operand
    // aliases it. `read_dst = false`: C's old contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            acs as isize,
            ars as isize,
            b.as_ptr(),
            bcs as isize,
            brs as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
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
        let cases: [Case; 9] = [
            // Large enough to split across threads: folded rows, and a weight gradient.
            (&[4, 128, 64], &[64, 96], &[4, 128, 96], false, false),
            (&[512, 64], &[512, 80], &[64, 80], true, false),
            (&[300, 64], &[80, 64], &[300, 80], false, true),
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
            // Sums of hundreds of unit-scale terms: another summation order moves an entry
            // by float noise relative to the product's scale, not to the entry itself.
            let scale = want.iter().fold(1.0f32, |m, y| m.max(y.abs()));
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5 * scale, "case {i}: {x} vs {y}");
            }
        }
    }
}
