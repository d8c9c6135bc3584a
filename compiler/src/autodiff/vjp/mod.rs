//! The VJP table: for each op, which inputs carry gradient and how `dy` maps to input
//! gradients. Rules emit ordinary IR through the builder (so shapes are checked) and reduce
//! broadcast gradients back to each input's shape with `sum_to`.

mod composite;
mod elementwise;
mod reduce;
mod shape;

use crate::error::{IrError, Result};
use crate::ir::{DType, GraphBuilder, Node, Op, ValueId};

/// Gradients for each input of one node (`None`: no contribution, i.e. zero).
pub(super) type Grads = Vec<Option<ValueId>>;

/// Which inputs of an op a gradient can flow into. Index inputs, masks, segment ids,
/// rotary tables and everything under `stop_gradient` get none.
pub(super) fn differentiable_inputs(op: &Op, n: usize) -> Vec<bool> {
    let mut d = vec![true; n];
    match op {
        Op::Compare(_)
        | Op::ArgMax { .. }
        | Op::TopKMask { .. }
        | Op::OneHot { .. }
        | Op::StopGradient => d.fill(false),
        // i32 → f32 (or back) carries no gradient; f32 → f32 is the identity.
        Op::Cast { to } => d.fill(*to == DType::F32),
        Op::Where => d[0] = false,
        Op::Gather | Op::ScatterAdd { .. } | Op::CrossEntropy => d[1] = false,
        Op::Attention(r) | Op::AttentionPattern(r) if r.needs_segments() => d[3] = false,
        // Frequencies are treated as fixed tables (no gradient), positions are ids.
        Op::Rope { .. } => {
            d[1] = false;
            d[2] = false;
        }
        _ => {}
    }
    d
}

/// Emits the backward of node `y` given its output gradient `dy`; returns one entry per
/// input (only those with `wants[i]` are computed).
pub(super) fn vjp(b: &mut GraphBuilder, y: ValueId, dy: ValueId, wants: &[bool]) -> Result<Grads> {
    let node: Node = b.graph().node(y).clone();
    match &node.op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Where
        | Op::Cast { .. }
        | Op::PowConst { .. }
        | Op::Clamp { .. }
        | Op::StraightThrough => elementwise::vjp(b, &node, y, dy, wants),
        Op::Reduce { .. } | Op::LogSumExp { .. } | Op::Softmax { .. } | Op::CumSum { .. } => {
            reduce::vjp(b, &node, y, dy)
        }
        Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::BroadcastTo { .. }
        | Op::Slice { .. }
        | Op::Concat { .. } => shape::vjp(b, &node, dy, wants),
        Op::MatMul { .. }
        | Op::Gather
        | Op::ScatterAdd { .. }
        | Op::CrossEntropy
        | Op::Attention(_)
        | Op::AttentionPattern(_)
        | Op::Rope { .. } => composite::vjp(b, &node, y, dy, wants),
        // Ops whose differentiable inputs are none never reach here; the rest are backward
        // ops (second-order gradients are not supported) or leaves.
        op => Err(IrError::NotDifferentiable {
            op: op.name().to_string(),
            node: y.0,
            span: b.span(),
        }),
    }
}
