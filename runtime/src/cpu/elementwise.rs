//! Elementwise kernels with numpy broadcasting.

use super::layout::broadcast_offsets;
use super::real::CpuReal;
use super::value::Value;
use rayon::prelude::*;
use weft_compiler::ir::{BinaryOp, CmpOp, DType, UnaryOp};

/// Above this many elements, elementwise loops split across threads.
const PAR_MIN: usize = 1 << 15;

pub(crate) fn map<T: CpuReal>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    }
}

/// `out[i] = f(a[ia(i)], b[ib(i)])` over the broadcast shape.
pub(crate) fn zip<A: Copy + Sync, B: Copy + Sync, R: Send>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out: &[usize],
    f: impl Fn(A, B) -> R + Sync + Send,
) -> Vec<R> {
    let n: usize = out.iter().product();
    if sa == out && sb == out {
        return if n >= PAR_MIN {
            a.par_iter()
                .zip(b.par_iter())
                .map(|(&x, &y)| f(x, y))
                .collect()
        } else {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        };
    }
    if sa == out && b.len() == 1 {
        return a.iter().map(|&x| f(x, b[0])).collect();
    }
    let oa = broadcast_offsets(out, sa);
    let ob = broadcast_offsets(out, sb);
    oa.iter().zip(&ob).map(|(&i, &j)| f(a[i], b[j])).collect()
}

pub(crate) fn unary<T: CpuReal>(op: UnaryOp, x: &[T]) -> Vec<T> {
    map(x, |v| op.eval(v))
}

pub(crate) fn unary_grad<T: CpuReal>(op: UnaryOp, x: &[T], dy: &[T]) -> Vec<T> {
    x.iter()
        .zip(dy)
        .map(|(&x, &g)| g * op.derivative(x))
        .collect()
}

pub(crate) fn binary<T: CpuReal>(
    op: BinaryOp,
    a: &Value<T>,
    sa: &[usize],
    b: &Value<T>,
    sb: &[usize],
    out: &[usize],
) -> Value<T> {
    match (a, b) {
        (Value::I(x), Value::I(y)) => Value::I(zip(x, sa, y, sb, out, |p, q| op.eval_i32(p, q))),
        _ => Value::F(zip(a.f(), sa, b.f(), sb, out, |p, q| op.eval(p, q))),
    }
}

pub(crate) fn compare<T: CpuReal>(
    op: CmpOp,
    a: &Value<T>,
    sa: &[usize],
    b: &Value<T>,
    sb: &[usize],
    out: &[usize],
) -> Vec<T> {
    let one = |c: bool| if c { T::one() } else { T::zero() };
    match (a, b) {
        (Value::I(x), Value::I(y)) => zip(x, sa, y, sb, out, |p, q| one(op.eval(p, q))),
        _ => zip(a.f(), sa, b.f(), sb, out, |p, q| one(op.eval(p, q))),
    }
}

/// `c ≠ 0 ? a : b`, all three broadcast.
pub(crate) fn where_<T: CpuReal>(
    c: &Value<T>,
    sc: &[usize],
    a: &Value<T>,
    sa: &[usize],
    b: &Value<T>,
    sb: &[usize],
    out: &[usize],
) -> Value<T> {
    let oc = broadcast_offsets(out, sc);
    let oa = broadcast_offsets(out, sa);
    let ob = broadcast_offsets(out, sb);
    let cond: Vec<bool> = match c {
        Value::F(v) => oc.iter().map(|&i| v[i] != T::zero()).collect(),
        Value::I(v) => oc.iter().map(|&i| v[i] != 0).collect(),
    };
    match (a, b) {
        (Value::I(x), Value::I(y)) => Value::I(
            (0..cond.len())
                .map(|i| if cond[i] { x[oa[i]] } else { y[ob[i]] })
                .collect(),
        ),
        (Value::F(x), Value::F(y)) => Value::F(
            (0..cond.len())
                .map(|i| if cond[i] { x[oa[i]] } else { y[ob[i]] })
                .collect(),
        ),
        _ => panic!("interpreter bug: where branches differ in dtype"),
    }
}

/// f32 ↔ i32 conversions (f32 → i32 truncates toward zero and saturates).
pub(crate) fn cast<T: CpuReal>(x: &Value<T>, to: DType) -> Value<T> {
    match (x, to) {
        (Value::F(v), DType::I32) => Value::I(v.iter().map(|&a| a.to_f64() as i32).collect()),
        (Value::I(v), DType::F32) => Value::F(v.iter().map(|&a| T::from_f64(a as f64)).collect()),
        (v, _) => v.clone(),
    }
}

pub(crate) fn clamp<T: CpuReal>(x: &[T], min: f32, max: f32) -> Vec<T> {
    let (lo, hi) = (T::from_f64(min as f64), T::from_f64(max as f64));
    map(x, |v| {
        if v < lo {
            lo
        } else if v > hi {
            hi
        } else {
            v
        }
    })
}
