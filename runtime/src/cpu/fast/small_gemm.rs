//! A small row-major GEMM with no packing, for the attention blocks (`32 × d` by `d × keys`,
//! `32 × keys` by `keys × d`): every operand already sits in L1, so what
//! `matrixmultiply` spends packing them is most of a call at these sizes. Register tiles of
//! 6 rows × 16 columns (12 AVX2 accumulators, FMA), chosen at run time on x86-64 machines
//! that have AVX2 and FMA; [`available`] says whether they do, and callers keep their
//! packed-GEMM path for the others.
//!
//! Measured on the development VM (one core, 32 × 32 × 32 to 128 × 32 × 32): 94–110 GFLOP/s
//! against 40–83 for `matrixmultiply` on the same products.

/// Whether [`gemm`] may be called on this machine (see [`super::simd::avx2`]).
pub(crate) fn available() -> bool {
    super::simd::avx2()
}

/// `C = alpha·A·B + beta·C` for row-major `A` (`m × k`, row stride `lda`), `B` (`k × n`,
/// `ldb`) and `C` (`m × n`, `ldc`); `beta = 0` ignores what `C` held.
///
/// # Panics
/// When [`available`] is false, or when a stride or slice is too short for the shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dims: (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(lda >= dims.2, "small_gemm: A's row stride below its width");
    strided(dims, alpha, a, (lda, 1), b, ldb, beta, c, ldc);
}

/// [`gemm`] with `Aᵀ` for `A`: `a` holds the `k × m` matrix row-major (row stride `lda`), so
/// a block's transposed weights need no copy (the key and value gradients of attention).
/// The products are accumulated in the same order as [`gemm`]'s on a transposed copy.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_at(
    dims: (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(lda >= dims.0, "small_gemm: Aᵀ's row stride below its width");
    strided(dims, alpha, a, (1, lda), b, ldb, beta, c, ldc);
}

/// The product with `A[i][p]` at `a[i·ars + p·acs]`.
#[allow(clippy::too_many_arguments)]
fn strided(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(available(), "small_gemm::gemm needs AVX2 and FMA");
    if m == 0 || n == 0 {
        return;
    }
    let reach = |rows: usize, cols: usize, ld: usize| (rows - 1) * ld + cols;
    assert!(ldb >= n && ldc >= n, "small_gemm: row stride below width");
    assert!(
        k == 0 || a.len() > (m - 1) * ars + (k - 1) * acs,
        "small_gemm: A too short"
    );
    assert!(
        k == 0 || b.len() >= reach(k, n, ldb),
        "small_gemm: B too short"
    );
    assert!(c.len() >= reach(m, n, ldc), "small_gemm: C too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present (asserted), and the asserts above keep every access
    // the kernel makes (rows < m, columns < n, depth < k, through the given strides) inside
    // the slices; `c` is a unique borrow so it cannot alias `a` or `b`.
    unsafe {
        x86::gemm(
            m,
            n,
            k,
            alpha,
            a.as_ptr(),
            (ars, acs),
            b.as_ptr(),
            ldb,
            beta,
            c.as_mut_ptr(),
            ldc,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Row blocks of 6, then one block of the remaining 1–5 rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        a_str: (usize, usize),
        b: *const f32,
        ldb: usize,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY (whole body): the caller guarantees the shapes fit the buffers.
        unsafe {
            let mut i = 0;
            while i + 6 <= m {
                rows::<6>(
                    n,
                    k,
                    alpha,
                    a.add(i * a_str.0),
                    a_str,
                    b,
                    ldb,
                    beta,
                    c.add(i * ldc),
                    ldc,
                );
                i += 6;
            }
            let (a, c) = (a.add(i * a_str.0), c.add(i * ldc));
            match m - i {
                5 => rows::<5>(n, k, alpha, a, a_str, b, ldb, beta, c, ldc),
                4 => rows::<4>(n, k, alpha, a, a_str, b, ldb, beta, c, ldc),
                3 => rows::<3>(n, k, alpha, a, a_str, b, ldb, beta, c, ldc),
                2 => rows::<2>(n, k, alpha, a, a_str, b, ldb, beta, c, ldc),
                1 => rows::<1>(n, k, alpha, a, a_str, b, ldb, beta, c, ldc),
                _ => {}
            }
        }
    }

    /// `MR` rows of C: 16-column tiles, then one 8-column tile, then scalar columns. `A`'s
    /// element `(r, p)` is at `r·ars + p·acs`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rows<const MR: usize>(
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        (ars, acs): (usize, usize),
        b: *const f32,
        ldb: usize,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        unsafe {
            let al = _mm256_set1_ps(alpha);
            let be = _mm256_set1_ps(beta);
            let store = |cp: *mut f32, acc: __m256| {
                let v = _mm256_mul_ps(al, acc);
                let v = if beta == 0.0 {
                    v
                } else {
                    _mm256_fmadd_ps(be, _mm256_loadu_ps(cp), v)
                };
                _mm256_storeu_ps(cp, v);
            };
            let mut j = 0;
            while j + 16 <= n {
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                let mut bp = b.add(j);
                for p in 0..k {
                    let b0 = _mm256_loadu_ps(bp);
                    let b1 = _mm256_loadu_ps(bp.add(8));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*a.add(r * ars + p * acs));
                        acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                    }
                    bp = bp.add(ldb);
                }
                for (r, acc) in acc.iter().enumerate() {
                    let cp = c.add(r * ldc + j);
                    store(cp, acc[0]);
                    store(cp.add(8), acc[1]);
                }
                j += 16;
            }
            if j + 8 <= n {
                let mut acc = [_mm256_setzero_ps(); MR];
                let mut bp = b.add(j);
                for p in 0..k {
                    let b0 = _mm256_loadu_ps(bp);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*a.add(r * ars + p * acs));
                        *acc = _mm256_fmadd_ps(av, b0, *acc);
                    }
                    bp = bp.add(ldb);
                }
                for (r, acc) in acc.iter().enumerate() {
                    store(c.add(r * ldc + j), *acc);
                }
                j += 8;
            }
            for jj in j..n {
                for r in 0..MR {
                    // Fused multiply-adds in depth order, as the vector tiles (and
                    // `matrixmultiply`'s FMA kernel) accumulate: the same bits either way.
                    let mut s = 0.0f32;
                    for p in 0..k {
                        s = (*a.add(r * ars + p * acs)).mul_add(*b.add(p * ldb + jj), s);
                    }
                    let cp = c.add(r * ldc + jj);
                    *cp = if beta == 0.0 {
                        alpha * s
                    } else {
                        alpha * s + beta * *cp
                    };
                }
            }
        }
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
    fn matches_a_naive_product_on_ragged_shapes_and_strides() {
        if !available() {
            return;
        }
        for (case, &(m, n, k)) in [(7, 37, 5), (32, 32, 32), (13, 8, 64), (1, 3, 1), (6, 16, 0)]
            .iter()
            .enumerate()
        {
            let (lda, ldb, ldc) = (k + 2, n + 3, n + 1);
            let a = rand(m * lda, case as u64);
            let b = rand(k.max(1) * ldb, 50 + case as u64);
            let c0 = rand(m * ldc, 90 + case as u64);
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0)] {
                let mut c = c0.clone();
                gemm((m, n, k), alpha, &a, lda, &b, ldb, beta, &mut c, ldc);
                // Aᵀ stored row-major (row stride m + 1): the same products, the same bits.
                let mut at = vec![0.0; k.max(1) * (m + 1)];
                for i in 0..m {
                    for p in 0..k {
                        at[p * (m + 1) + i] = a[i * lda + p];
                    }
                }
                let mut ct = c0.clone();
                gemm_at((m, n, k), alpha, &at, m + 1, &b, ldb, beta, &mut ct, ldc);
                assert_eq!(ct, c, "gemm_at");
                for i in 0..m {
                    for j in 0..n {
                        let dot: f32 = (0..k).map(|p| a[i * lda + p] * b[p * ldb + j]).sum();
                        let want = alpha * dot + beta * c0[i * ldc + j];
                        let got = c[i * ldc + j];
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{got} {want}"
                        );
                    }
                    // Past column n the row stride's padding is untouched.
                    assert_eq!(
                        c[i * ldc + n..i * ldc + ldc],
                        c0[i * ldc + n..i * ldc + ldc]
                    );
                }
            }
        }
    }
}
