//! The float types the interpreter runs in, with their GEMM and host conversions.

use crate::tensor::TensorData;
use weft_compiler::ir::Real;

/// A [`Real`] the CPU backend can compute in.
pub(crate) trait CpuReal: Real {
    /// `C ← α·A·B + β·C` with A `m×k`, B `k×n`, C `m×n` given by row/column strides into
    /// the slices. Panics if a stride walks off a slice (an interpreter bug).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_strides: (usize, usize),
        b: &[Self],
        b_strides: (usize, usize),
        beta: Self,
        c: &mut [Self],
        c_strides: (usize, usize),
    );

    /// Wraps results for the caller.
    fn into_data(v: Vec<Self>) -> TensorData;

    /// Reads f32-typed host data (f32, or f64 in f64 mode).
    fn from_data(d: &TensorData) -> Option<Vec<Self>>;
}

fn check(len: usize, rows: usize, cols: usize, rs: usize, cs: usize, what: &str) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * rs + (cols - 1) * cs;
        assert!(
            last < len,
            "gemm: {what} strides reach {last} but the slice has {len} elements"
        );
    }
}

macro_rules! impl_cpu_real {
    ($t:ty, $gemm:path, $variant:ident) => {
        impl CpuReal for $t {
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                (rsa, csa): (usize, usize),
                b: &[Self],
                (rsb, csb): (usize, usize),
                beta: Self,
                c: &mut [Self],
                (rsc, csc): (usize, usize),
            ) {
                check(a.len(), m, k, rsa, csa, "A");
                check(b.len(), k, n, rsb, csb, "B");
                check(c.len(), m, n, rsc, csc, "C");
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: the checks above keep every strided access inside its slice, and
                // `c` is borrowed mutably so it cannot alias `a` or `b`.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        beta,
                        c.as_mut_ptr(),
                        rsc as isize,
                        csc as isize,
                    )
                }
            }

            fn into_data(v: Vec<Self>) -> TensorData {
                TensorData::$variant(v)
            }

            fn from_data(d: &TensorData) -> Option<Vec<Self>> {
                match d {
                    TensorData::F32(v) => Some(v.iter().map(|&x| x as $t).collect()),
                    TensorData::F64(v) => Some(v.iter().map(|&x| x as $t).collect()),
                    TensorData::I32(_) => None,
                }
            }
        }
    };
}
impl_cpu_real!(f32, matrixmultiply::sgemm, F32);
impl_cpu_real!(f64, matrixmultiply::dgemm, F64);
