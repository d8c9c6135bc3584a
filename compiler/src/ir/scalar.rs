//! Per-element semantics of the elementwise ops, written once and generic over the float
//! type so that the CPU reference (f32 and its f64 gradient-check mode) and constant folding
//! agree bit for bit on what `gelu` or `sign(0)` mean. WGSL codegen must match these.

use super::op::{BinaryOp, CmpOp, UnaryOp};
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The float types the reference backends evaluate in (`f32`, and `f64` for gradient checks).
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    fn neg_infinity() -> Self {
        Self::from_f64(f64::NEG_INFINITY)
    }
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// `sign` with `sign(0) = 0` (Cog attention relies on it: a zero score gets weight 0).
pub fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        // 0 stays 0; NaN propagates.
        x
    }
}

/// Numerically stable logistic function.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

// GELU, tanh approximation ("gelu_new" in GPT-2 / Hugging Face).
const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const GELU_A: f64 = 0.044_715;

impl UnaryOp {
    /// `f(x)`.
    pub fn eval<T: Real>(self, x: T) -> T {
        let c = T::from_f64;
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sign => sign(x),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => T::one() / x.sqrt(),
            UnaryOp::Recip => T::one() / x,
            UnaryOp::Square => x * x,
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Silu => x * sigmoid(x),
            UnaryOp::Gelu => {
                let u = c(GELU_C) * (x + c(GELU_A) * x * x * x);
                c(0.5) * x * (T::one() + u.tanh())
            }
            UnaryOp::Relu => {
                if x > T::zero() {
                    x
                } else {
                    T::zero()
                }
            }
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        }
    }

    /// `f'(x)`; the VJP of a unary op is `dy · f'(x)` (the `UnaryGrad` op). Kinks take the
    /// subgradient PyTorch takes: `abs'(0) = 0`, `relu'(0) = 0`, `sign' = 0`.
    pub fn derivative<T: Real>(self, x: T) -> T {
        let c = T::from_f64;
        match self {
            UnaryOp::Neg => -T::one(),
            UnaryOp::Abs => sign(x),
            UnaryOp::Sign => T::zero(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => T::one() / x,
            UnaryOp::Sqrt => c(0.5) / x.sqrt(),
            UnaryOp::Rsqrt => c(-0.5) / (x * x.sqrt()),
            UnaryOp::Recip => -T::one() / (x * x),
            UnaryOp::Square => c(2.0) * x,
            UnaryOp::Tanh => {
                let t = x.tanh();
                T::one() - t * t
            }
            UnaryOp::Sigmoid => {
                let s = sigmoid(x);
                s * (T::one() - s)
            }
            UnaryOp::Silu => {
                let s = sigmoid(x);
                s * (T::one() + x * (T::one() - s))
            }
            UnaryOp::Gelu => {
                let u = c(GELU_C) * (x + c(GELU_A) * x * x * x);
                let t = u.tanh();
                let du = c(GELU_C) * (T::one() + c(3.0 * GELU_A) * x * x);
                c(0.5) * (T::one() + t) + c(0.5) * x * (T::one() - t * t) * du
            }
            UnaryOp::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            UnaryOp::Sin => x.cos(),
            UnaryOp::Cos => -x.sin(),
        }
    }
}

impl BinaryOp {
    /// `a ∘ b` on floats.
    pub fn eval<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Max => {
                if a >= b || b.is_nan() {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Min => {
                if a <= b || b.is_nan() {
                    a
                } else {
                    b
                }
            }
        }
    }

    /// `a ∘ b` on i32 (wrapping, so overflow is defined; division by zero gives 0).
    pub fn eval_i32(self, a: i32, b: i32) -> i32 {
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Div => a.checked_div(b).unwrap_or(0),
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
        }
    }
}

impl CmpOp {
    /// The comparison; the op returns 1.0 where this is true and 0.0 elsewhere.
    pub fn eval<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [UnaryOp; 16] = UnaryOp::ALL;

    #[test]
    fn derivatives_match_central_differences() {
        for op in ALL {
            for &x in &[0.37f64, 1.3, 2.1, -0.8, -1.7] {
                if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt) && x < 0.0 {
                    continue;
                }
                let h = 1e-6;
                let fd = (op.eval(x + h) - op.eval(x - h)) / (2.0 * h);
                let an = op.derivative(x);
                assert!(
                    (fd - an).abs() < 1e-6 * (1.0 + an.abs()),
                    "{op:?} at {x}: fd {fd} vs {an}"
                );
            }
        }
    }

    #[test]
    fn gelu_matches_known_values() {
        // Reference values of the tanh approximation (PyTorch gelu(approximate="tanh")).
        assert!((UnaryOp::Gelu.eval(1.0f64) - 0.841_191_990_608_276_8).abs() < 1e-12);
        assert!((UnaryOp::Gelu.eval(-0.5f64) - -0.154_285_990_174_856_06).abs() < 1e-12);
    }

    #[test]
    fn sign_of_zero_is_zero_and_sigmoid_is_stable() {
        assert_eq!(sign(0.0f32), 0.0);
        assert_eq!(sign(-3.0f32), -1.0);
        assert_eq!(sigmoid(-1000.0f32), 0.0);
        assert_eq!(sigmoid(1000.0f32), 1.0);
        assert_eq!(UnaryOp::Silu.eval(-1000.0f32), -0.0);
    }
}
