//! VJPs of elementwise ops. Broadcast operands get `sum_to` their own shape.

use super::Grads;
use crate::error::Result;
use crate::ir::{BinaryOp, CmpOp, GraphBuilder, Node, Op, UnaryOp, ValueId};

pub(super) fn vjp(
    b: &mut GraphBuilder,
    node: &Node,
    y: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    let ins = &node.inputs;
    match &node.op {
        Op::Unary(UnaryOp::Sign) => Ok(vec![None]),
        Op::Unary(UnaryOp::Neg) => Ok(vec![Some(b.neg(dy)?)]),
        Op::Unary(u) => Ok(vec![Some(b.apply(Op::UnaryGrad(*u), &[ins[0], dy])?)]),
        Op::Cast { .. } => Ok(vec![Some(dy)]),
        Op::StraightThrough => Ok(vec![Some(b.clamp(dy, -1.0, 1.0)?)]),
        Op::PowConst { exponent } => {
            let p = b.pow_const(ins[0], exponent - 1.0)?;
            let e = b.scalar(*exponent);
            let d = b.mul(p, e)?;
            Ok(vec![Some(b.mul(d, dy)?)])
        }
        Op::Clamp { min, max } => {
            // Gradient flows where min ≤ x ≤ max (PyTorch's convention at the bounds).
            let lo = b.scalar(*min);
            let hi = b.scalar(*max);
            let m1 = b.ge(ins[0], lo)?;
            let m2 = b.le(ins[0], hi)?;
            let m = b.mul(m1, m2)?;
            Ok(vec![Some(b.mul(dy, m)?)])
        }
        Op::Where => {
            let zero = b.scalar(0.0);
            let mut out = vec![None, None, None];
            if wants[1] {
                let d = b.where_(ins[0], dy, zero)?;
                out[1] = Some(b.sum_to(d, &node_shape(b, ins[1]))?);
            }
            if wants[2] {
                let d = b.where_(ins[0], zero, dy)?;
                out[2] = Some(b.sum_to(d, &node_shape(b, ins[2]))?);
            }
            Ok(out)
        }
        Op::Binary(op) => binary(b, *op, ins[0], ins[1], y, dy, wants),
        op => unreachable_rule(op),
    }
}

fn node_shape(b: &GraphBuilder, v: ValueId) -> Vec<usize> {
    b.shape(v).to_vec()
}

fn unreachable_rule(op: &Op) -> Result<Grads> {
    Err(crate::IrError::Grad(format!(
        "no elementwise VJP for `{}`",
        op.name()
    )))
}

fn binary(
    b: &mut GraphBuilder,
    op: BinaryOp,
    x0: ValueId,
    x1: ValueId,
    y: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads> {
    // Full-shape gradients first, then reduce each to its operand's shape.
    let (g0, g1) = match op {
        BinaryOp::Add => (dy, dy),
        BinaryOp::Sub => (dy, if wants[1] { b.neg(dy)? } else { dy }),
        BinaryOp::Mul => (
            if wants[0] { b.mul(dy, x1)? } else { dy },
            if wants[1] { b.mul(dy, x0)? } else { dy },
        ),
        BinaryOp::Div => {
            let g0 = if wants[0] { b.div(dy, x1)? } else { dy };
            // d(a/b)/db = −(a/b)/b = −y/b.
            let g1 = if wants[1] {
                let t = b.mul(dy, y)?;
                let t = b.div(t, x1)?;
                b.neg(t)?
            } else {
                dy
            };
            (g0, g1)
        }
        BinaryOp::Max | BinaryOp::Min => {
            // Ties go to the first operand, as the forward picks it.
            let cmp = if op == BinaryOp::Max {
                CmpOp::Ge
            } else {
                CmpOp::Le
            };
            let m = b.compare(cmp, x0, x1)?;
            let g0 = b.mul(dy, m)?;
            let g1 = b.sub(dy, g0)?;
            (g0, g1)
        }
    };
    let s0 = node_shape(b, x0);
    let s1 = node_shape(b, x1);
    Ok(vec![
        if wants[0] {
            Some(b.sum_to(g0, &s0)?)
        } else {
            None
        },
        if wants[1] {
            Some(b.sum_to(g1, &s1)?)
        } else {
            None
        },
    ])
}
