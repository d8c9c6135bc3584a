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

/// [`exp`], [`tanh`] and [`sigmoid`] on eight lanes with AVX2 and FMA: the scalar
/// functions' operations in the same order (the same bits), for loops that must not leave
/// their last keys to a scalar tail. LLVM vectorises the scalar functions inside a row loop
/// but leaves up to 31 keys to a scalar remainder (a soft-capped row of 64 keys spent about
/// as long in its scalar `tanh`s as in the vector loop, measured), and it did not vectorise
/// them over a fixed window of eight keys.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// `x.clamp(lo, hi)`, NaN passing through (`max_ps`/`min_ps` return their second
    /// operand when either is NaN).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn clamp(x: __m256, lo: f32, hi: f32) -> __m256 {
        _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x))
    }

    /// [`super::horner`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn horner(c: &[f32], u: __m256) -> __m256 {
        let mut acc = _mm256_set1_ps(c[c.len() - 1]);
        for k in (0..c.len() - 1).rev() {
            acc = _mm256_fmadd_ps(acc, u, _mm256_set1_ps(c[k]));
        }
        acc
    }

    /// [`super::exp`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp(x: __m256) -> __m256 {
        use super::{LN2_HI, LN2_LO, LOG2E, ROUND};
        let s = _mm256_set1_ps;
        let xc = clamp(x, -87.0, 88.3);
        let kr = _mm256_add_ps(_mm256_mul_ps(xc, s(LOG2E)), s(ROUND));
        let k = _mm256_sub_ps(kr, s(ROUND));
        let r = _mm256_sub_ps(
            _mm256_sub_ps(xc, _mm256_mul_ps(k, s(LN2_HI))),
            _mm256_mul_ps(k, s(LN2_LO)),
        );
        // `c + r·p` from the innermost term out, as the scalar function nests them.
        let mut p = s(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_add_ps(s(c), _mm256_mul_ps(r, p));
        }
        let ki = _mm256_sub_epi32(
            _mm256_castps_si256(kr),
            _mm256_set1_epi32(ROUND.to_bits() as i32),
        );
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            ki,
            _mm256_set1_epi32(127),
        )));
        let v = _mm256_mul_ps(p, scale);
        // Below −87: 0; above 88.3: +∞; NaN fails both comparisons and keeps `v` (NaN).
        let v = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, s(-87.0)), v);
        _mm256_blendv_ps(v, s(f32::INFINITY), _mm256_cmp_ps::<_CMP_GT_OQ>(x, s(88.3)))
    }

    /// [`super::tanh`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tanh(x: __m256) -> __m256 {
        let x = clamp(x, -7.9, 7.9);
        let u = _mm256_mul_ps(x, x);
        _mm256_div_ps(
            _mm256_mul_ps(x, horner(&super::TANH_P, u)),
            horner(&super::TANH_Q, u),
        )
    }

    /// [`super::sigmoid`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sigmoid(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp(_mm256_xor_ps(x, _mm256_set1_ps(-0.0)));
        _mm256_div_ps(one, _mm256_add_ps(one, e))
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

    /// The AVX2 functions are the scalar ones' operations in the same order: equal bits,
    /// over the whole range, its ends, infinities and NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_lanes_give_the_scalar_functions_bits() {
        use std::arch::x86_64::*;
        if !crate::cpu::fast::simd::avx2() {
            eprintln!("no AVX2 here: the portable path is the only one");
            return;
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
        while !xs.len().is_multiple_of(8) {
            xs.push(0.5);
        }
        type Lanes = unsafe fn(__m256) -> __m256;
        type Pair = (&'static str, fn(f32) -> f32, Lanes);
        let fns: [Pair; 3] = [
            ("exp", exp, avx2::exp),
            ("tanh", tanh, avx2::tanh),
            ("sigmoid", sigmoid, avx2::sigmoid),
        ];
        for (name, scalar, lanes) in fns {
            for chunk in xs.chunks(8) {
                let mut got = [0.0f32; 8];
                // SAFETY: AVX2 and FMA are present (checked above).
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), lanes(_mm256_loadu_ps(chunk.as_ptr())))
                };
                for (&x, &g) in chunk.iter().zip(&got) {
                    let want = scalar(x);
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{name}({x}): {g} vs {want}"
                    );
                }
            }
        }
    }
}
