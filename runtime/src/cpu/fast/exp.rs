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

/// `tanh` as an odd rational function, `x·P(x²)/Q(x²)` with `|x|` clamped to 7.9 (beyond
/// it f32 `tanh` is 1 within 3e-7): within 3e-7 of libm's absolutely, NaN for NaN. The
/// coefficients are a near-minimax fit (`runtime/tools/fit_tanh.py`). One division and
/// ten multiply-adds: written through [`exp`] (`1 − 2/(e^{2|x|} + 1)`) it cost about
/// twice as much, a tenth of a soft-capped attention's forward + backward (`perf`).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    const P: [f32; 6] = [
        0.999_999_94,
        0.129_784_81,
        0.002_985_253,
        9.877_427e-6,
        -1.472_079_5e-8,
        2.361_928_4e-11,
    ];
    const Q: [f32; 4] = [1.0, 0.463_117_8, 0.024_024_91, 0.000_237_146_83];
    let x = x.clamp(-7.9, 7.9);
    let u = x * x;
    // Fused multiply-adds: one instruction each where `with_avx2!` compiles the loop (its
    // loops are bound by their count of operations), libm's exact `fmaf` elsewhere, so
    // both give the same bits.
    let horner = |c: &[f32]| {
        let (&top, rest) = c.split_last().expect("coefficients");
        rest.iter().rev().fold(top, |acc, &c| acc.mul_add(u, c))
    };
    x * horner(&P) / horner(&Q)
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
}
