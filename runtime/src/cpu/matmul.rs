//! Batched matmul through `matrixmultiply`'s GEMM, rayon across batch entries.

use super::layout::broadcast_offsets;
use super::real::CpuReal;
use rayon::prelude::*;

/// `op(a) @ op(b)` with broadcast batch dims; shapes were checked when the graph was built.
pub(crate) fn matmul<T: CpuReal>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &[usize],
    ta: bool,
    tb: bool,
) -> Vec<T> {
    let (ra, rb, ro) = (sa.len(), sb.len(), out.len());
    let (m, n) = (out[ro - 2], out[ro - 1]);
    let k = if ta { sa[ra - 2] } else { sa[ra - 1] };
    // Strides of op(a) as an m×k matrix and op(b) as k×n, in their stored layouts.
    let astr = if ta { (1, m) } else { (k, 1) };
    let bstr = if tb { (1, k) } else { (n, 1) };
    let batch = &out[..ro - 2];
    // Offsets of each output batch entry's operands, counted in whole matrices.
    let a_batch = broadcast_offsets(batch, &sa[..ra - 2]);
    let b_batch = broadcast_offsets(batch, &sb[..rb - 2]);
    let (a_mat, b_mat) = (m * k, k * n);
    let mut c = vec![T::zero(); out.iter().product()];
    let one_gemm = |(i, ci): (usize, &mut [T])| {
        let ao = a_batch[i] * a_mat;
        let bo = b_batch[i] * b_mat;
        T::gemm(
            m,
            k,
            n,
            T::one(),
            &a[ao..ao + a_mat],
            astr,
            &b[bo..bo + b_mat],
            bstr,
            T::zero(),
            ci,
            (n, 1),
        );
    };
    if a_batch.len() > 1 {
        c.par_chunks_mut(m * n).enumerate().for_each(one_gemm);
    } else {
        c.chunks_mut(m * n).enumerate().for_each(one_gemm);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    c[i * n + j] += a[i * k + l] * b[l * n + j];
                }
            }
        }
        c
    }

    fn transpose(x: &[f64], r: usize, c: usize) -> Vec<f64> {
        (0..c * r).map(|i| x[(i % r) * c + i / r]).collect()
    }

    #[test]
    fn matches_naive_with_transposes_and_broadcast() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f64> = (0..2 * m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let c = matmul(&a, &[2, m, k], &b, &[k, n], &[2, m, n], false, false);
        for batch in 0..2 {
            let want = naive(&a[batch * m * k..(batch + 1) * m * k], &b, m, k, n);
            for (x, y) in c[batch * m * n..(batch + 1) * m * n].iter().zip(&want) {
                assert!((x - y).abs() < 1e-12);
            }
        }
        let at: Vec<f64> = transpose(&a[..m * k], m, k);
        let bt: Vec<f64> = transpose(&b, k, n);
        let c2 = matmul(&at, &[k, m], &bt, &[n, k], &[m, n], true, true);
        for (x, y) in c2.iter().zip(&naive(&a[..m * k], &b, m, k, n)) {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
