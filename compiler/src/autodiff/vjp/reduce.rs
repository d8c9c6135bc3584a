//! VJPs of reductions and scans over one axis.

use super::Grads;
use crate::error::Result;
use crate::ir::{GraphBuilder, Node, Op, ReduceOp, ValueId};

/// `v` (reduced over `axis`, with or without the kept axis) in keepdim form.
fn keepdim(
    b: &mut GraphBuilder,
    v: ValueId,
    x_shape: &[usize],
    axis: usize,
    kept: bool,
) -> Result<ValueId> {
    if kept {
        return Ok(v);
    }
    let mut s = x_shape.to_vec();
    s[axis] = 1;
    b.reshape(v, &s)
}

pub(super) fn vjp(b: &mut GraphBuilder, node: &Node, y: ValueId, dy: ValueId) -> Result<Grads> {
    let x = node.inputs[0];
    let xs = b.shape(x).to_vec();
    let dx = match node.op {
        Op::Reduce {
            op,
            axis,
            keepdim: kd,
        } => {
            let g = keepdim(b, dy, &xs, axis, kd)?;
            match op {
                ReduceOp::Sum => b.broadcast_to(g, &xs)?,
                ReduceOp::Mean => {
                    let inv = b.scalar(1.0 / xs[axis] as f32);
                    let g = b.mul(g, inv)?;
                    b.broadcast_to(g, &xs)?
                }
                ReduceOp::Max => {
                    // Split the gradient evenly among tied maxima.
                    let m = keepdim(b, y, &xs, axis, kd)?;
                    let mask = b.eq(x, m)?;
                    let cnt = b.sum(mask, axis, true)?;
                    let g = b.div(g, cnt)?;
                    b.mul(mask, g)?
                }
            }
        }
        Op::LogSumExp { axis, keepdim: kd } => {
            let g = keepdim(b, dy, &xs, axis, kd)?;
            let p = b.softmax(x, axis)?;
            b.mul(p, g)?
        }
        Op::Softmax { axis } => {
            let gy = b.mul(dy, y)?;
            let s = b.sum(gy, axis, true)?;
            let d = b.sub(dy, s)?;
            b.mul(y, d)?
        }
        Op::CumSum { axis, reverse } => b.cumsum(dy, axis, !reverse)?,
        ref op => {
            return Err(crate::IrError::Grad(format!(
                "no reduction VJP for `{}`",
                op.name()
            )))
        }
    };
    Ok(vec![Some(dx)])
}
