//! Reductions and scans over one axis, using the `(outer, extent, inner)` split.

use super::layout::split_axis;
use super::real::CpuReal;
use super::value::Value;
use rayon::prelude::*;
use weft_compiler::ir::ReduceOp;

/// Calls `f(lane)` for every 1-D lane along `axis` (lane = the `extent` offsets of it), in
/// parallel over lanes, and stores its `width` results at the lane's output slots.
fn lanes<T: Copy + Send + Sync, R: Copy + Send + Sync + Default>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    width: usize,
    f: impl Fn(&mut dyn Iterator<Item = T>, &mut [R]) + Sync,
) -> Vec<R> {
    let (outer, n, inner) = split_axis(shape, axis);
    let mut out = vec![R::default(); outer * width * inner];
    out.par_chunks_mut(width * inner)
        .enumerate()
        .for_each(|(o, chunk)| {
            let mut buf = vec![R::default(); width];
            for i in 0..inner {
                let base = o * n * inner + i;
                let mut it = (0..n).map(|j| x[base + j * inner]);
                f(&mut it, &mut buf);
                for (w, &r) in buf.iter().enumerate() {
                    chunk[w * inner + i] = r;
                }
            }
        });
    out
}

pub(crate) fn reduce<T: CpuReal>(
    op: ReduceOp,
    x: &Value<T>,
    shape: &[usize],
    axis: usize,
) -> Value<T> {
    let n = shape[axis];
    match x {
        Value::F(v) => Value::F(lanes(v, shape, axis, 1, |it, out| {
            out[0] = match op {
                ReduceOp::Sum => it.fold(T::zero(), |a, b| a + b),
                ReduceOp::Mean => it.fold(T::zero(), |a, b| a + b) / T::from_f64(n as f64),
                ReduceOp::Max => {
                    it.fold(
                        T::neg_infinity(),
                        |a, b| if b > a || b.is_nan() { b } else { a },
                    )
                }
            }
        })),
        Value::I(v) => Value::I(lanes(v, shape, axis, 1, |it, out| {
            out[0] = match op {
                ReduceOp::Max => it.max().unwrap_or(i32::MIN),
                _ => it.fold(0i32, |a, b| a.wrapping_add(b)),
            }
        })),
    }
}

/// Collects a lane into a scratch vector (lanes are short; clarity over streaming).
fn collect<T: Copy>(it: &mut dyn Iterator<Item = T>) -> Vec<T> {
    it.collect()
}

fn lane_max<T: CpuReal>(v: &[T]) -> T {
    v.iter()
        .fold(T::neg_infinity(), |a, &b| if b > a { b } else { a })
}

pub(crate) fn logsumexp<T: CpuReal>(x: &[T], shape: &[usize], axis: usize) -> Vec<T> {
    lanes(x, shape, axis, 1, |it, out| {
        let v = collect(it);
        let m = lane_max(&v);
        out[0] = if m == T::neg_infinity() {
            m
        } else {
            m + v.iter().fold(T::zero(), |a, &b| a + (b - m).exp()).ln()
        };
    })
}

pub(crate) fn softmax<T: CpuReal>(x: &[T], shape: &[usize], axis: usize) -> Vec<T> {
    let n = shape[axis];
    lanes(x, shape, axis, n, |it, out| {
        let v = collect(it);
        let m = lane_max(&v);
        let mut s = T::zero();
        for (o, &a) in out.iter_mut().zip(&v) {
            *o = (a - m).exp();
            s += *o;
        }
        for o in out.iter_mut() {
            *o = *o / s;
        }
    })
}

pub(crate) fn cumsum<T: CpuReal>(
    x: &Value<T>,
    shape: &[usize],
    axis: usize,
    reverse: bool,
) -> Value<T> {
    let n = shape[axis];
    fn scan<E: Copy + Default>(v: Vec<E>, out: &mut [E], reverse: bool, add: impl Fn(E, E) -> E) {
        let mut acc = E::default();
        let order: Box<dyn Iterator<Item = usize>> = if reverse {
            Box::new((0..v.len()).rev())
        } else {
            Box::new(0..v.len())
        };
        for j in order {
            acc = add(acc, v[j]);
            out[j] = acc;
        }
    }
    match x {
        Value::F(v) => Value::F(lanes(v, shape, axis, n, |it, out| {
            scan(collect(it), out, reverse, |a, b| a + b)
        })),
        Value::I(v) => Value::I(lanes(v, shape, axis, n, |it, out| {
            scan(collect(it), out, reverse, i32::wrapping_add)
        })),
    }
}

pub(crate) fn argmax<T: CpuReal>(x: &Value<T>, shape: &[usize], axis: usize) -> Vec<i32> {
    fn first_max<E: PartialOrd + Copy>(v: &[E]) -> i32 {
        let mut best = 0;
        for (j, &a) in v.iter().enumerate() {
            if a > v[best] {
                best = j;
            }
        }
        best as i32
    }
    match x {
        Value::F(v) => lanes(v, shape, axis, 1, |it, out| {
            out[0] = first_max(&collect(it))
        }),
        Value::I(v) => lanes(v, shape, axis, 1, |it, out| {
            out[0] = first_max(&collect(it))
        }),
    }
}

/// 1 at the `k` largest entries of each lane (ties: lower index first), else 0.
pub(crate) fn topk_mask<T: CpuReal>(x: &[T], shape: &[usize], axis: usize, k: usize) -> Vec<T> {
    let n = shape[axis];
    lanes(x, shape, axis, n, |it, out| {
        let v = collect(it);
        let mut idx: Vec<usize> = (0..v.len()).collect();
        // Stable sort keeps lower indices first among equal values.
        idx.sort_by(|&a, &b| v[b].partial_cmp(&v[a]).unwrap_or(std::cmp::Ordering::Equal));
        out.fill(T::zero());
        for &j in &idx[..k] {
            out[j] = T::one();
        }
    })
}
