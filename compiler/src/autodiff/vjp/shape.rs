//! VJPs of shape ops: each is the adjoint data movement.

use super::Grads;
use crate::error::Result;
use crate::ir::{GraphBuilder, Node, Op, ValueId};

pub(super) fn vjp(b: &mut GraphBuilder, node: &Node, dy: ValueId, wants: &[bool]) -> Result<Grads> {
    let x = node.inputs[0];
    let xs = b.shape(x).to_vec();
    match &node.op {
        Op::Reshape { .. } => Ok(vec![Some(b.reshape(dy, &xs)?)]),
        Op::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            Ok(vec![Some(b.permute(dy, &inv)?)])
        }
        Op::BroadcastTo { .. } => Ok(vec![Some(b.sum_to(dy, &xs)?)]),
        Op::Slice { axis, start, end } => {
            // Pad with zeros back to the input's extent.
            let zeros = |b: &mut GraphBuilder, n: usize| -> Result<Option<ValueId>> {
                if n == 0 {
                    return Ok(None);
                }
                let mut s = xs.clone();
                s[*axis] = n;
                Ok(Some(b.full(0.0, &s)?))
            };
            let before = zeros(b, *start)?;
            let after = zeros(b, xs[*axis] - end)?;
            let parts: Vec<ValueId> = before.into_iter().chain([dy]).chain(after).collect();
            let dx = if parts.len() == 1 {
                dy
            } else {
                b.concat(&parts, *axis)?
            };
            Ok(vec![Some(dx)])
        }
        Op::Concat { axis } => {
            let mut out = Vec::with_capacity(node.inputs.len());
            let mut offset = 0;
            for (i, &inp) in node.inputs.iter().enumerate() {
                let n = b.shape(inp)[*axis];
                out.push(if wants[i] {
                    Some(b.slice(dy, *axis, offset, offset + n)?)
                } else {
                    None
                });
                offset += n;
            }
            Ok(out)
        }
        op => Err(crate::IrError::Grad(format!(
            "no shape VJP for `{}`",
            op.name()
        ))),
    }
}
