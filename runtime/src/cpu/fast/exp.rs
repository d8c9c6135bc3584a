//! A branch-free `exp` for f32 that the compiler vectorises (libm's `expf` is a call per
//! element: most of the SwiGLU time in the fast path's profile; softmax rows use it too). Cody–Waite
//! range reduction by ln 2 and a degree-6 polynomial on `[-ln2/2, ln2/2]`: within 2 ulp of
//! the correctly rounded value over the whole range, 0 below the smallest normal result,
//! +inf from 88.3 up (2^127.4, within 1.6 of the largest f32), NaN for NaN.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.0, 88.3);
    let kr = xc * LOG2E + ROUND;
    let k = kr - ROUND;
    let r = xc - k * LN2_HI - k * LN2_LO;
    // Taylor terms of e^r to r^6; |r| ≤ 0.347 keeps the truncation below 2^-24.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `kr` lies in [2^23, 2^24), where the ulp is 1: its low mantissa bits hold `k` offset by
    // ROUND's. Reading them back is `k as i32` without the saturating cast, which the
    // vectoriser turns into one scalar conversion per lane (measured 2.4× slower).
    let ki = (kr.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((ki.wrapping_add(127) << 23) as u32);
    let v = p * scale;
    if x < -87.0 {
        0.0
    } else if x > 88.3 {
        f32::INFINITY
    } else {
        // NaN falls through the comparisons above; clamp keeps it, so `r` and `v` are NaN.
        v
    }
}

/// `1 / (1 + e^-x)`, the logistic function, through [`exp`].
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `c₀ + u·(c₁ + u·(…))` in fused multiply-adds: one instruction each where `with_avx2!`
/// compiles the loop (its loops are bound by their count of operations), libm's exact
/// `fmaf` elsewhere, so both give the same bits.
#[inline(always)]
fn horner(c: &[f32], u: f32) -> f32 {
    let mut acc = c[c.len() - 1];
    for k in (0..c.len() - 1).rev() {
        acc = acc.mul_add(u, c[k]);
    }
    acc
}

/// [`tanh`]'s numerator and denominator, polynomials in `x²`.
const TANH_P: [f32; 6] = [
    0.999_999_94,
    0.129_784_81,
    0.002_985_253,
    9.877_427e-6,
    -1.472_079_5e-8,
    2.361_928_4e-11,
];
const TANH_Q: [f32; 4] = [1.0, 0.463_117_8, 0.024_024_91, 0.000_237_146_83];

/// `tanh` as an odd rational function, `x·P(x²)/Q(x²)` with `|x|` clamped to 7.9 (beyond
/// it f32 `tanh` is 1 within 3e-7): within 3e-7 of libm's absolutely, NaN for NaN. The
/// coefficients are a near-minimax fit (`runtime/tools/fit_tanh.py`). One division and
/// ten multiply-adds: written through [`exp`] (`1 − 2/(e^{2|x|} + 1)`) it cost about
/// twice as much, a tenth of a soft-capped attention's forward + backward (`perf`).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.9, 7.9);
    let u = x * x;
    x * horner(&TANH_P, u) / horner(&TANH_Q, u)
}

/// [`exp`], [`tanh`] and [`sigmoid`] on vectors of lanes: AVX2's eight and AVX-512's
/// sixteen, the scalar functions' operations in the same order (the same bits), for loops
/// that must not leave their last keys to a scalar tail. LLVM vectorises the scalar
/// functions inside a row loop but leaves up to 31 keys to a scalar remainder (a soft-capped
/// row of 64 keys spent about as long in its scalar `tanh`s as in the vector loop,
/// measured), and it did not vectorise them over a fixed window of eight keys. A `tanh` is
/// bound by its multiply-adds (it took as long with the division replaced by a reciprocal
/// estimate), so sixteen lanes halve its time where the machine has them (measured).
///
/// Every function here is `#[inline(always)]` and only correct inside a function compiled
/// for the lanes' features (`avx2,fma` for `__m256`, `avx512f` for `__m512`): the whole
/// chain is inlined there first and the intrinsics compiled for it.
#[cfg(target_arch = "x86_64")]
pub(crate) mod lanes {
    use std::arch::x86_64::*;

    /// A vector of f32 lanes and the operations the functions need.
    pub(crate) trait Lanes: Copy {
        /// How many lanes.
        const N: usize;
        unsafe fn splat(x: f32) -> Self;
        /// Lanes from `x[..N]`.
        unsafe fn load(x: &[f32]) -> Self;
        /// The lanes into `out[..N]`.
        unsafe fn store(self, out: &mut [f32]);
        unsafe fn add(self, b: Self) -> Self;
        unsafe fn sub(self, b: Self) -> Self;
        unsafe fn mul(self, b: Self) -> Self;
        unsafe fn div(self, b: Self) -> Self;
        /// `self·b + c`, one rounding.
        unsafe fn fma(self, b: Self, c: Self) -> Self;
        /// `min(hi, max(lo, self))`, NaN passing through (`max_ps`/`min_ps` return their
        /// second operand when either is NaN).
        unsafe fn clamp(self, lo: f32, hi: f32) -> Self;
        /// `2^k` for the integer `k` that `kr = k + ROUND` holds in its low mantissa bits.
        unsafe fn pow2(kr: Self) -> Self;
        /// `v`, with 0 where `x < lo` and `+∞` where `x > hi` (NaN fails both).
        unsafe fn ends(x: Self, v: Self, lo: f32, hi: f32) -> Self;
        /// `−self`, the sign bit flipped.
        unsafe fn neg(self) -> Self;
    }

    /// [`super::horner`].
    #[inline(always)]
    unsafe fn horner<V: Lanes>(c: &[f32], u: V) -> V {
        let mut acc = V::splat(c[c.len() - 1]);
        for k in (0..c.len() - 1).rev() {
            acc = acc.fma(u, V::splat(c[k]));
        }
        acc
    }

    /// [`super::exp`].
    #[inline(always)]
    pub unsafe fn exp<V: Lanes>(x: V) -> V {
        use super::{LN2_HI, LN2_LO, LOG2E, ROUND};
        let xc = x.clamp(-87.0, 88.3);
        let kr = xc.mul(V::splat(LOG2E)).add(V::splat(ROUND));
        let k = kr.sub(V::splat(ROUND));
        let r = xc.sub(k.mul(V::splat(LN2_HI))).sub(k.mul(V::splat(LN2_LO)));
        // `c + r·p` from the innermost term out, as the scalar function nests them.
        let mut p = V::splat(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = V::splat(c).add(r.mul(p));
        }
        V::ends(x, p.mul(V::pow2(kr)), -87.0, 88.3)
    }

    /// [`super::tanh`].
    #[inline(always)]
    pub unsafe fn tanh<V: Lanes>(x: V) -> V {
        let x = x.clamp(-7.9, 7.9);
        let u = x.mul(x);
        x.mul(horner(&super::TANH_P, u))
            .div(horner(&super::TANH_Q, u))
    }

    /// [`super::sigmoid`].
    #[inline(always)]
    pub unsafe fn sigmoid<V: Lanes>(x: V) -> V {
        let one = V::splat(1.0);
        one.div(one.add(exp(x.neg())))
    }

    impl Lanes for __m256 {
        const N: usize = 8;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(x: &[f32]) -> Self {
            _mm256_loadu_ps(x[..8].as_ptr())
        }
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32]) {
            _mm256_storeu_ps(out[..8].as_mut_ptr(), self)
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            _mm256_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            _mm256_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            _mm256_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            _mm256_div_ps(self, b)
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm256_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: f32, hi: f32) -> Self {
            _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), self))
        }
        #[inline(always)]
        unsafe fn pow2(kr: Self) -> Self {
            let round = _mm256_set1_epi32(super::ROUND.to_bits() as i32);
            let k = _mm256_sub_epi32(_mm256_castps_si256(kr), round);
            let biased = _mm256_add_epi32(k, _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
        }
        #[inline(always)]
        unsafe fn ends(x: Self, v: Self, lo: f32, hi: f32) -> Self {
            let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(lo));
            let above = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(hi));
            let v = _mm256_andnot_ps(below, v);
            _mm256_blendv_ps(v, _mm256_set1_ps(f32::INFINITY), above)
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            _mm256_xor_ps(self, _mm256_set1_ps(-0.0))
        }
    }

    impl Lanes for __m512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(x: &[f32]) -> Self {
            _mm512_loadu_ps(x[..16].as_ptr())
        }
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32]) {
            _mm512_storeu_ps(out[..16].as_mut_ptr(), self)
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            _mm512_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            _mm512_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            _mm512_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            _mm512_div_ps(self, b)
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm512_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: f32, hi: f32) -> Self {
            _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), self))
        }
        #[inline(always)]
        unsafe fn pow2(kr: Self) -> Self {
            let round = _mm512_set1_epi32(super::ROUND.to_bits() as i32);
            let k = _mm512_sub_epi32(_mm512_castps_si512(kr), round);
            let biased = _mm512_add_epi32(k, _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased))
        }
        #[inline(always)]
        unsafe fn ends(x: Self, v: Self, lo: f32, hi: f32) -> Self {
            let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(lo));
            let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(hi));
            let v = _mm512_maskz_mov_ps(!below, v);
            _mm512_mask_blend_ps(above, v, _mm512_set1_ps(f32::INFINITY))
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(self),
                _mm512_set1_epi32(i32::MIN),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let (got, want) = (exp(x), x.exp());
            if x < -87.0 {
                assert_eq!(got, 0.0, "{x}");
            } else if x > 88.3 {
                assert_eq!(got, f32::INFINITY, "{x}");
            } else {
                assert!(((got - want) / want).abs() < 3e-7, "{x}: {got} vs {want}");
            }
            x += 0.001_7;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn tanh_is_within_a_few_units_of_1e7_of_libm() {
        for i in -20000..=20000 {
            let x = i as f32 * 0.003;
            assert!(
                (tanh(x) - x.tanh()).abs() <= 3e-7,
                "tanh({x}): {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_matches_the_scalar_rule() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let want = weft_compiler::ir::scalar::sigmoid(x);
            assert!((sigmoid(x) - want).abs() <= 1e-6 * want.max(1e-3), "{x}");
        }
    }

    /// The vector functions are the scalar ones' operations in the same order: equal
    /// bits at both widths, over the whole range, its ends, infinities and NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_lanes_give_the_scalar_functions_bits() {
        use crate::cpu::fast::simd;
        use lanes::Lanes;
        use std::arch::x86_64::*;
        #[inline(always)]
        unsafe fn apply<V: Lanes>(f: usize, xs: &[f32], out: &mut [f32]) {
            for (x, o) in xs.chunks(V::N).zip(out.chunks_mut(V::N)) {
                let x = V::load(x);
                let y = match f {
                    0 => lanes::exp(x),
                    1 => lanes::tanh(x),
                    _ => lanes::sigmoid(x),
                };
                y.store(o);
            }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn eight(f: usize, xs: &[f32], out: &mut [f32]) {
            apply::<__m256>(f, xs, out)
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn sixteen(f: usize, xs: &[f32], out: &mut [f32]) {
            apply::<__m512>(f, xs, out)
        }
        let mut xs: Vec<f32> = (-40000..=40000).map(|i| i as f32 * 0.0023).collect();
        xs.extend([
            0.0,
            -0.0,
            7.9,
            -7.9,
            8.0,
            -87.0,
            -87.5,
            88.3,
            88.4,
            1e-30,
            -1e-30,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        while !xs.len().is_multiple_of(16) {
            xs.push(0.5);
        }
        type Width = unsafe fn(usize, &[f32], &mut [f32]);
        let mut widths: Vec<(&str, Width)> = Vec::new();
        if simd::avx2() {
            widths.push(("AVX2", eight));
        }
        if simd::avx512() {
            widths.push(("AVX-512", sixteen));
        }
        if widths.is_empty() {
            eprintln!("no AVX2 here: the portable path is the only one");
        }
        type Scalar = (&'static str, fn(f32) -> f32);
        let fns: [Scalar; 3] = [("exp", exp), ("tanh", tanh), ("sigmoid", sigmoid)];
        for (width, run) in widths {
            for (f, (name, scalar)) in fns.into_iter().enumerate() {
                let mut got = vec![0.0f32; xs.len()];
                // SAFETY: the machine has the width's features (checked above).
                unsafe { run(f, &xs, &mut got) };
                for (&x, &g) in xs.iter().zip(&got) {
                    let want = scalar(x);
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{width} {name}({x}): {g} vs {want}"
                    );
                }
            }
        }
    }
}
