//! Wider vectors for the fast path's elementwise loops without raising the build's target:
//! [`with_avx2!`] runs a closure compiled with AVX2 and FMA enabled when the machine has them
//! (detected once, at run time), so the loops the closure holds (a `map` over a chunk, one
//! row of a softmax) are vectorised 8 lanes wide instead of SSE2's 4. The arithmetic is the
//! same: Rust never fuses `a * b + c` on its own, and an explicit `mul_add` (the rule
//! programs' `tanh` and linear forms) is one FMA instruction here and libm's exact `fmaf`
//! on the portable path, so results keep their bits.
//!
//! Call it around the innermost work of one thread (a chunk, a row block): a closure
//! handed on to rayon runs on another thread through a pointer and is compiled for the
//! build's baseline again.
//!
//! The macro marks its closure `#[inline(always)]`; mark likewise a closure the body calls
//! through a generic parameter (as `strided`'s loops do). The closure is called from two
//! places (the AVX2 function and the portable fallback), and LLVM declined to inline a
//! large one into either: its loops then ran at SSE2 width in a function of their own (seen
//! in the disassembly of the spec-rule normaliser and the strided elementwise loops; see
//! BENCHMARKS.md for what forcing it bought).

/// Whether this machine has AVX2 and FMA and the portable path was not asked for
/// (`WEFT_CPU_SIMD=portable`, read once: how tests and users on a suspect machine run the
/// code the build's baseline compiles, which every non-x86 machine runs anyway).
#[inline]
pub(crate) fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| {
        let portable = std::env::var("WEFT_CPU_SIMD").is_ok_and(|v| v == "portable");
        !portable && detected()
    })
}

/// Whether the rule programs' `exp`, `tanh` and `sigmoid` steps may run sixteen lanes wide:
/// [`avx2`] holds, the machine has AVX-512F, and `WEFT_CPU_SIMD=avx2` (read once) does not
/// keep them at eight (for a machine whose clock drops with 512-bit vectors).
#[inline]
pub(crate) fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let has = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let has = false;
        let capped = std::env::var("WEFT_CPU_SIMD").is_ok_and(|v| v == "avx2");
        avx2() && has && !capped
    })
}

/// Whether the CPU has AVX2 and FMA (the check is cached by `std`).
fn detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `with_avx2!(|| body)`: the closure's value, compiled for AVX2 + FMA where [`avx2`]
/// holds, the closure forced inline (see the module's note).
macro_rules! with_avx2 {
    (|| $body:expr) => {
        $crate::cpu::fast::simd::dispatch(
            #[inline(always)]
            || $body,
        )
    };
}
pub(crate) use with_avx2;

/// `f()`, compiled for AVX2 + FMA where [`avx2`] holds; called through [`with_avx2!`].
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the features `call` is compiled for are present (checked just above).
        return unsafe { call(f) };
    }
    f()
}

/// Calls `f` from a function compiled with AVX2 and FMA: `f` inlined here (see the module's
/// note) has its loops vectorised for those features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}
