//! VJPs of elementwise ops, reductions and shape ops vs central finite differences (f64).
//! Tolerances: see `common` (eps 1e-5, |a−n| ≤ 1e-6 + 1e-5·max(|a|,|n|)).

mod common;
use common::*;
use weft_compiler::ir::{BinaryOp, CmpOp, DType, Init, ReduceOp, UnaryOp};
use weft_runtime::Rng;

const N1: Init = Init::Normal { std: 1.0 };
const POS: Init = Init::Uniform {
    low: 0.5,
    high: 2.0,
};

#[test]
fn unary_ops() {
    use UnaryOp::*;
    for (k, op) in [
        Neg, Abs, Exp, Log, Sqrt, Rsqrt, Recip, Square, Tanh, Sigmoid, Silu, Gelu, Relu, Sin, Cos,
    ]
    .into_iter()
    .enumerate()
    {
        let init = if matches!(op, Log | Sqrt | Rsqrt | Recip) {
            POS
        } else {
            N1
        };
        grad_check(k as u64, no_inputs(), |b| {
            let x = b.param("x", &[3, 5], init.clone(), true);
            b.unary(op, x)
        });
    }
}

#[test]
fn sign_has_zero_gradient() {
    let c = case(1, no_inputs(), |b| {
        let x = b.param("x", &[4], N1, true);
        let s = b.sign(x)?;
        b.mul(s, x)
    });
    // d(sign(x)·x)/dx = sign(x) almost everywhere: only the x path contributes.
    let g = analytic(&c);
    compare(&c, &g).unwrap();
}

#[test]
fn binary_ops_with_broadcasting() {
    for (k, op) in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
    ]
    .into_iter()
    .enumerate()
    {
        grad_check(10 + k as u64, no_inputs(), |b| {
            let x = b.param("a", &[3, 1, 4], N1, true);
            let init = if op == BinaryOp::Div { POS } else { N1 };
            let y = b.param("b", &[2, 4], init, true);
            b.binary(op, x, y)
        });
    }
}

#[test]
fn where_pow_clamp() {
    grad_check(20, no_inputs(), |b| {
        let x = b.param("x", &[2, 3], N1, true);
        let y = b.param("y", &[3], N1, true);
        let zero = b.scalar(0.0);
        let c = b.compare(CmpOp::Gt, x, zero)?;
        b.where_(c, x, y)
    });
    grad_check(21, no_inputs(), |b| {
        let x = b.param("x", &[5], POS, true);
        let p = b.pow_const(x, 1.7)?;
        let q = b.pow_const(x, -2.0)?;
        b.add(p, q)
    });
    grad_check(22, no_inputs(), |b| {
        let x = b.param("x", &[12], Init::Normal { std: 2.0 }, true);
        b.clamp(x, -1.0, 0.5)
    });
}

#[test]
fn reductions() {
    for (k, op) in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max]
        .into_iter()
        .enumerate()
    {
        for keepdim in [false, true] {
            for axis in 0..3 {
                grad_check(30 + k as u64 * 10 + axis as u64, no_inputs(), |b| {
                    let x = b.param("x", &[2, 3, 4], N1, true);
                    b.reduce(op, x, axis, keepdim)
                });
            }
        }
    }
}

#[test]
fn logsumexp_softmax_cumsum() {
    for axis in 0..2 {
        grad_check(60 + axis as u64, no_inputs(), |b| {
            let x = b.param("x", &[3, 5], N1, true);
            b.logsumexp(x, axis, axis == 0)
        });
        grad_check(62 + axis as u64, no_inputs(), |b| {
            let x = b.param("x", &[3, 5], N1, true);
            b.softmax(x, axis)
        });
        for reverse in [false, true] {
            grad_check(64 + axis as u64, no_inputs(), |b| {
                let x = b.param("x", &[3, 5], N1, true);
                b.cumsum(x, axis, reverse)
            });
        }
    }
}

#[test]
fn shape_ops() {
    grad_check(70, no_inputs(), |b| {
        let x = b.param("x", &[2, 3, 4], N1, true);
        let p = b.permute(x, &[2, 0, 1])?;
        let r = b.reshape(p, &[4, 6])?;
        b.slice(r, 1, 1, 4)
    });
    grad_check(71, no_inputs(), |b| {
        let x = b.param("x", &[3, 1], N1, true);
        let y = b.param("y", &[3, 2], N1, true);
        let bx = b.broadcast_to(x, &[2, 3, 2])?;
        let by = b.broadcast_to(y, &[2, 3, 2])?;
        let c = b.concat(&[bx, by, bx], 2)?;
        b.exp(c)
    });
}

#[test]
fn gather_scatter_onehot_topk() {
    let mut rng = Rng::new(5);
    let mut ins = no_inputs();
    ins.insert("ids".into(), ids(&mut rng, &[2, 5], 6));
    grad_check(80, ins.clone(), |b| {
        let table = b.param("table", &[6, 3], N1, true);
        let i = b.input("ids", &[2, 5], DType::I32);
        b.gather(table, i)
    });
    grad_check(81, ins.clone(), |b| {
        let src = b.param("src", &[2, 5, 3], N1, true);
        let i = b.input("ids", &[2, 5], DType::I32);
        b.scatter_add(src, i, 6)
    });
    grad_check(82, ins, |b| {
        let x = b.param("x", &[2, 5, 6], N1, true);
        let i = b.input("ids", &[2, 5], DType::I32);
        let oh = b.one_hot(i, 6)?;
        let m = b.topk_mask(x, 2, 2)?;
        let t = b.mul(x, m)?;
        b.add(t, oh)
    });
}

#[test]
fn matmul_all_layouts() {
    for (k, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        grad_check(90 + k as u64, no_inputs(), |b| {
            let sa: &[usize] = if ta { &[2, 1, 4, 3] } else { &[2, 1, 3, 4] };
            let sb: &[usize] = if tb { &[3, 5, 4] } else { &[3, 4, 5] };
            let a = b.param("a", sa, N1, true);
            let w = b.param("b", sb, N1, true);
            b.matmul_t(a, w, ta, tb)
        });
    }
    // A rank-2 weight against a batched activation (the flattened weight-gradient path).
    for tb in [false, true] {
        grad_check(95, no_inputs(), |b| {
            let x = b.param("x", &[2, 3, 4], N1, true);
            let w = b.param("w", if tb { &[5, 4] } else { &[4, 5] }, N1, true);
            b.matmul_t(x, w, false, tb)
        });
    }
}

#[test]
fn cross_entropy_with_ignored_targets() {
    let mut ins = no_inputs();
    ins.insert(
        "t".into(),
        weft_runtime::Tensor::i32(&[5], vec![3, -1, 0, 6, -1]),
    );
    grad_check(100, ins, |b| {
        let l = b.param("logits", &[5, 7], N1, true);
        let t = b.input("t", &[5], DType::I32);
        b.cross_entropy(l, t)
    });
}

#[test]
fn norms_composed_from_primitives() {
    grad_check(110, no_inputs(), |b| {
        let x = b.param("x", &[2, 3, 8], N1, true);
        let w = b.param("w", &[8], N1, true);
        b.rms_norm(x, w, 1e-6)
    });
    grad_check(111, no_inputs(), |b| {
        let x = b.param("x", &[2, 3, 8], N1, true);
        let w = b.param("w", &[8], N1, true);
        let bias = b.param("bias", &[8], N1, true);
        b.layer_norm(x, w, bias, 1e-5)
    });
}

#[test]
fn checker_detects_a_wrong_gradient() {
    let c = case(120, no_inputs(), |b| {
        let x = b.param("x", &[4], N1, true);
        b.tanh(x)
    });
    let mut g = analytic(&c);
    compare(&c, &g).unwrap();
    let t = g.get_mut("grad.x").unwrap();
    let mut v = t.to_f64_vec();
    v[2] *= 1.01;
    *t = weft_runtime::Tensor::f64(&[4], v);
    assert!(compare(&c, &g).is_err());
}
