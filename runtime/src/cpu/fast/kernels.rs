//! Elementwise, reduction and rotary kernels of the fast path, f32 over contiguous buffers.
//!
//! Each op is dispatched once per call, not once per element: the `match` on the op picks a
//! closure in which the op is a constant, so `ir::scalar`'s per-element semantics (shared with
//! the reference and the WGSL emitter) inline into a tight loop.

use super::exp;
use super::simd::with_avx2;
use super::strided::{zip, PAR_MIN};
use crate::cpu::attention::Dims;
use rayon::prelude::*;
use weft_compiler::ir::{BinaryOp, ReduceOp, RopeLayout, UnaryOp};

/// Runs `body` with `$u` bound to a compile-time-known op for each variant of `$op`.
macro_rules! each_unary {
    ($op:expr, $u:ident => $body:expr) => {
        match $op {
            UnaryOp::Neg => {
                const $u: UnaryOp = UnaryOp::Neg;
                $body
            }
            UnaryOp::Abs => {
                const $u: UnaryOp = UnaryOp::Abs;
                $body
            }
            UnaryOp::Sign => {
                const $u: UnaryOp = UnaryOp::Sign;
                $body
            }
            UnaryOp::Exp => {
                const $u: UnaryOp = UnaryOp::Exp;
                $body
            }
            UnaryOp::Log => {
                const $u: UnaryOp = UnaryOp::Log;
                $body
            }
            UnaryOp::Sqrt => {
                const $u: UnaryOp = UnaryOp::Sqrt;
                $body
            }
            UnaryOp::Rsqrt => {
                const $u: UnaryOp = UnaryOp::Rsqrt;
                $body
            }
            UnaryOp::Recip => {
                const $u: UnaryOp = UnaryOp::Recip;
                $body
            }
            UnaryOp::Square => {
                const $u: UnaryOp = UnaryOp::Square;
                $body
            }
            UnaryOp::Tanh => {
                const $u: UnaryOp = UnaryOp::Tanh;
                $body
            }
            UnaryOp::Sigmoid => {
                const $u: UnaryOp = UnaryOp::Sigmoid;
                $body
            }
            UnaryOp::Silu => {
                const $u: UnaryOp = UnaryOp::Silu;
                $body
            }
            UnaryOp::Gelu => {
                const $u: UnaryOp = UnaryOp::Gelu;
                $body
            }
            UnaryOp::Relu => {
                const $u: UnaryOp = UnaryOp::Relu;
                $body
            }
            UnaryOp::Sin => {
                const $u: UnaryOp = UnaryOp::Sin;
                $body
            }
            UnaryOp::Cos => {
                const $u: UnaryOp = UnaryOp::Cos;
                $body
            }
        }
    };
}

macro_rules! each_binary {
    ($op:expr, $b:ident => $body:expr) => {
        match $op {
            BinaryOp::Add => {
                const $b: BinaryOp = BinaryOp::Add;
                $body
            }
            BinaryOp::Sub => {
                const $b: BinaryOp = BinaryOp::Sub;
                $body
            }
            BinaryOp::Mul => {
                const $b: BinaryOp = BinaryOp::Mul;
                $body
            }
            BinaryOp::Div => {
                const $b: BinaryOp = BinaryOp::Div;
                $body
            }
            BinaryOp::Max => {
                const $b: BinaryOp = BinaryOp::Max;
                $body
            }
            BinaryOp::Min => {
                const $b: BinaryOp = BinaryOp::Min;
                $body
            }
        }
    };
}

pub(super) use {each_binary, each_unary};

/// `out[i] = f(x[i])`, split across threads when large.
fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let body = |(o, x): (&mut [f32], &[f32])| {
        with_avx2!(|| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = f(v);
            }
        })
    };
    if x.len() >= PAR_MIN {
        let per = x.len().div_ceil(rayon::current_num_threads() * 2);
        out.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(body);
    } else {
        body((out, x));
    }
}

/// The exponential family goes through the vectorised [`exp`]; the rest inline `ir::scalar`.
pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    match op {
        UnaryOp::Exp => map(x, out, exp::exp),
        UnaryOp::Sigmoid => map(x, out, exp::sigmoid),
        UnaryOp::Silu => map(x, out, |v| v * exp::sigmoid(v)),
        _ => each_unary!(op, U => map(x, out, |v| U.eval(v))),
    }
}

/// `out[i] = f(x[i], y[i])` over same-length slices, split across threads when large.
fn map2(x: &[f32], y: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    let body = |(o, (x, y)): (&mut [f32], (&[f32], &[f32]))| {
        with_avx2!(|| {
            for ((o, &v), &w) in o.iter_mut().zip(x).zip(y) {
                *o = f(v, w);
            }
        })
    };
    if x.len() >= PAR_MIN {
        let per = x.len().div_ceil(rayon::current_num_threads() * 2);
        out.par_chunks_mut(per)
            .zip(x.par_chunks(per).zip(y.par_chunks(per)))
            .for_each(body);
    } else {
        body((out, (x, y)));
    }
}

/// `out = dy · f'(x)`: the plain loop of [`map2`] (the strided [`zip`] does not vectorise
/// the derivative: measured 2.4× slower for SiLU's).
pub(crate) fn unary_grad(op: UnaryOp, x: &[f32], dy: &[f32], out: &mut [f32]) {
    match op {
        UnaryOp::Exp => map2(x, dy, out, |v, g| g * exp::exp(v)),
        UnaryOp::Sigmoid => map2(x, dy, out, |v, g| {
            let s = exp::sigmoid(v);
            g * s * (1.0 - s)
        }),
        UnaryOp::Silu => map2(x, dy, out, |v, g| {
            let s = exp::sigmoid(v);
            g * s * (1.0 + v * (1.0 - s))
        }),
        _ => each_unary!(op, U => map2(x, dy, out, |v, g| g * U.derivative(v))),
    }
}

pub(crate) fn binary(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    shape: &[usize],
    out: &mut [f32],
) {
    if sa == shape && sb == shape {
        // Same shapes: the plain loop (it vectorises where the strided one does not).
        each_binary!(op, B => map2(a, b, out, |x, y| B.eval(x, y)))
    } else {
        each_binary!(op, B => zip(a, sa, b, sb, shape, out, |x, y| B.eval(x, y)))
    }
}

/// Reduction of axis `(outer, n, inner)`: unit-stride rows when `inner == 1`, otherwise a
/// running sum of whole `inner`-long rows (vectorises along `inner`).
pub(crate) fn reduce(
    op: ReduceOp,
    x: &[f32],
    (outer, n, inner): (usize, usize, usize),
    out: &mut [f32],
) {
    let lane = |row: &[f32]| -> f32 {
        match op {
            ReduceOp::Sum => row.iter().sum(),
            ReduceOp::Mean => row.iter().sum::<f32>() / n as f32,
            ReduceOp::Max => {
                row.iter().fold(
                    f32::NEG_INFINITY,
                    |a, &b| {
                        if b > a || b.is_nan() {
                            b
                        } else {
                            a
                        }
                    },
                )
            }
        }
    };
    if inner == 1 {
        if x.len() >= PAR_MIN {
            out.par_iter_mut()
                .zip(x.par_chunks(n))
                .for_each(|(o, row)| *o = lane(row));
        } else {
            for (o, row) in out.iter_mut().zip(x.chunks(n)) {
                *o = lane(row);
            }
        }
        return;
    }
    let block = |(o, (acc, xs)): (usize, (&mut [f32], &[f32]))| {
        let _ = o;
        with_avx2!(|| match op {
            ReduceOp::Sum | ReduceOp::Mean => {
                acc.fill(0.0);
                for row in xs.chunks(inner) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                if op == ReduceOp::Mean {
                    let s = 1.0 / n as f32;
                    acc.iter_mut().for_each(|a| *a *= s);
                }
            }
            ReduceOp::Max => {
                acc.fill(f32::NEG_INFINITY);
                for row in xs.chunks(inner) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        if v > *a || v.is_nan() {
                            *a = v;
                        }
                    }
                }
            }
        })
    };
    let _ = outer;
    if x.len() >= PAR_MIN && out.len() >= 2 * inner {
        out.par_chunks_mut(inner)
            .zip(x.par_chunks(n * inner))
            .enumerate()
            .for_each(block);
    } else if x.len() >= PAR_MIN && inner >= 64 {
        // One output row summed over a long axis (a bias or gain gradient): split the
        // columns across threads.
        let cols = inner.div_ceil(rayon::current_num_threads());
        out.par_chunks_mut(cols).enumerate().for_each(|(c, acc)| {
            let c0 = c * cols;
            match op {
                ReduceOp::Max => acc.fill(f32::NEG_INFINITY),
                _ => acc.fill(0.0),
            }
            for j in 0..n {
                let row = &x[j * inner + c0..j * inner + c0 + acc.len()];
                for (a, &v) in acc.iter_mut().zip(row) {
                    match op {
                        ReduceOp::Max => {
                            if v > *a || v.is_nan() {
                                *a = v
                            }
                        }
                        _ => *a += v,
                    }
                }
            }
            if op == ReduceOp::Mean {
                let s = 1.0 / n as f32;
                acc.iter_mut().for_each(|a| *a *= s);
            }
        });
    } else {
        out.chunks_mut(inner)
            .zip(x.chunks(n * inner))
            .enumerate()
            .for_each(block);
    }
}

/// The largest value of a row and `Σ exp(x − max)`, over 8 lanes so the loops vectorise
/// (inlined into the caller's [`with_avx2`] closure, for its AVX2 code). The exponentials go
/// through a small buffer first: a loop that only maps vectorises, one that also
/// accumulates does not.
#[inline(always)]
fn max_and_sum(r: &[f32]) -> (f32, f32) {
    const L: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut it = r.chunks_exact(L);
    for c in &mut it {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let m = it
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    let mut buf = [0.0f32; 64];
    let mut sums = [0.0f32; L];
    let mut tail = 0.0f32;
    for c in r.chunks(buf.len()) {
        let e = &mut buf[..c.len()];
        for (e, &v) in e.iter_mut().zip(c) {
            *e = exp::exp(v - m);
        }
        let mut it = e.chunks_exact(L);
        for c in &mut it {
            for (z, &v) in sums.iter_mut().zip(c) {
                *z += v;
            }
        }
        tail += it.remainder().iter().sum::<f32>();
    }
    (m, sums.iter().sum::<f32>() + tail)
}

/// `log Σ exp(x)` of one row (−∞ for an empty or all −∞ row).
#[inline(always)]
fn log_sum_exp(r: &[f32]) -> f32 {
    match max_and_sum(r) {
        (m, _) if m == f32::NEG_INFINITY => m,
        (m, s) => m + s.ln(),
    }
}

/// Softmax (`lse = false`) or log-sum-exp (`lse = true`) of every contiguous row of `n`.
pub(crate) fn softmax_rows(x: &[f32], n: usize, out: &mut [f32], lse: bool) {
    if lse {
        let f = |(o, r): (&mut f32, &[f32])| *o = with_avx2!(|| log_sum_exp(r));
        if x.len() >= PAR_MIN {
            out.par_iter_mut().zip(x.par_chunks(n)).for_each(f);
        } else {
            out.iter_mut().zip(x.chunks(n)).for_each(f);
        }
        return;
    }
    let f = |(o, r): (&mut [f32], &[f32])| {
        with_avx2!(|| {
            let (m, s) = max_and_sum(r);
            let inv = 1.0 / s;
            for (o, &v) in o.iter_mut().zip(r) {
                *o = exp::exp(v - m) * inv;
            }
        })
    };
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(f);
    } else {
        out.chunks_mut(n).zip(x.chunks(n)).for_each(f);
    }
}

/// Cross-entropy of each row of `[N, v]` logits against its target, 0 where the target is
/// negative; `None` when a target is past the vocabulary (the reference reports which).
pub(crate) fn cross_entropy(
    logits: &[f32],
    v: usize,
    targets: &[i32],
    out: &mut [f32],
) -> Option<()> {
    if targets.iter().any(|&t| t >= 0 && t as usize >= v) {
        return None;
    }
    let f = |(o, (row, &t)): (&mut f32, (&[f32], &i32))| {
        *o = if t < 0 {
            0.0
        } else {
            with_avx2!(|| log_sum_exp(row)) - row[t as usize]
        };
    };
    if logits.len() >= PAR_MIN {
        out.par_iter_mut()
            .zip(logits.par_chunks(v).zip(targets.par_iter()))
            .for_each(f);
    } else {
        out.iter_mut()
            .zip(logits.chunks(v).zip(targets))
            .for_each(f);
    }
    Some(())
}

/// Rotary embedding with the `cos`/`sin` of each (position, pair) computed once per call
/// rather than once per head and batch row (the reference's per-element `sin_cos`), and once
/// per position when every sequence of a `[B,T]` position input holds the same positions
/// (the usual case). The half layout's rotation is two unit-stride loops that vectorise.
pub(crate) fn rope(
    x: &[f32],
    freqs: &[f32],
    pos: &[i32],
    dm: Dims,
    layout: RopeLayout,
    inverse: bool,
    out: &mut [f32],
) {
    let t = dm.t.max(1);
    let shared = pos.len() == t || pos.chunks(t).all(|r| r == &pos[..t]);
    let pairs = freqs.len();
    let table = if shared {
        &pos[..t.min(pos.len())]
    } else {
        pos
    };
    let (mut cos, mut sin) = (
        vec![0.0f32; table.len() * pairs],
        vec![0.0f32; table.len() * pairs],
    );
    for (r, &p) in table.iter().enumerate() {
        let p = p as f32;
        for (i, &f) in freqs.iter().enumerate() {
            let ang = if inverse { -(p * f) } else { p * f };
            (cos[r * pairs + i], sin[r * pairs + i]) = (ang.cos(), ang.sin());
        }
    }
    let d = dm.d;
    let rows = |(k, (o, x)): (usize, (&mut [f32], &[f32]))| {
        let per = o.len() / d.max(1);
        with_avx2!(|| {
            for (j, (o, x)) in o.chunks_mut(d).zip(x.chunks(d)).enumerate() {
                let row = k * per + j;
                let ti = row % t;
                let r = if shared {
                    ti
                } else {
                    row / (dm.h * t) * t + ti
                };
                let (c, s) = (&cos[r * pairs..][..pairs], &sin[r * pairs..][..pairs]);
                o.copy_from_slice(x);
                match layout {
                    RopeLayout::Half => {
                        let (lo, hi) = o.split_at_mut(d / 2);
                        let (a, b) = (&x[..pairs], &x[d / 2..d / 2 + pairs]);
                        for i in 0..pairs {
                            lo[i] = a[i] * c[i] - b[i] * s[i];
                            hi[i] = a[i] * s[i] + b[i] * c[i];
                        }
                    }
                    RopeLayout::Interleaved => {
                        for i in 0..pairs {
                            let (a, b) = (x[2 * i], x[2 * i + 1]);
                            o[2 * i] = a * c[i] - b * s[i];
                            o[2 * i + 1] = a * s[i] + b * c[i];
                        }
                    }
                }
            }
        })
    };
    if d == 0 {
        return;
    }
    if x.len() >= PAR_MIN {
        let per = (x.len() / d).div_ceil(rayon::current_num_threads() * 4) * d;
        out.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .enumerate()
            .for_each(rows);
    } else {
        rows((0, (out, x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn unary_and_grad_match_the_scalar_rules() {
        let x = rand(1000, 1);
        let dy = rand(1000, 2);
        for op in UnaryOp::ALL {
            let xs: Vec<f32> = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt) {
                x.iter().map(|v| v.abs() + 0.1).collect()
            } else {
                x.clone()
            };
            let mut out = vec![0.0; 1000];
            unary(op, &xs, &mut out);
            close(&out, &xs.iter().map(|&v| op.eval(v)).collect::<Vec<_>>());
            unary_grad(op, &xs, &dy, &mut out);
            let want: Vec<f32> = xs
                .iter()
                .zip(&dy)
                .map(|(&v, &g)| g * op.derivative(v))
                .collect();
            close(&out, &want);
        }
    }

    #[test]
    fn reductions_match_the_reference_on_every_axis() {
        let shape = [3, 70, 5];
        let x = rand(3 * 70 * 5, 3);
        for axis in 0..3 {
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let split = crate::cpu::layout::split_axis(&shape, axis);
                let mut out = vec![0.0; x.len() / shape[axis]];
                reduce(op, &x, split, &mut out);
                let want = crate::cpu::reduce::reduce(
                    op,
                    &crate::cpu::value::Value::F(x.clone()),
                    &shape,
                    axis,
                );
                close(&out, want.f());
            }
        }
    }

    #[test]
    fn rope_matches_the_reference() {
        let dm = Dims {
            b: 2,
            h: 3,
            t: 5,
            d: 8,
        };
        let x = rand(2 * 3 * 5 * 8, 4);
        let freqs = [1.0, 0.1, 0.01, 0.0];
        let pos: Vec<i32> = (0..10).map(|p| p * 3 % 7).collect();
        for layout in [RopeLayout::Half, RopeLayout::Interleaved] {
            for inverse in [false, true] {
                let mut out = vec![0.0; x.len()];
                rope(&x, &freqs, &pos, dm, layout, inverse, &mut out);
                let want = crate::cpu::rope::rope(&x, &freqs, &pos, dm, layout, inverse);
                close(&out, &want);
            }
        }
    }
}
