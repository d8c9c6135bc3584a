//! Constant folding: small ops whose inputs are all constants become constants; identity
//! shape ops (reshape/permute/broadcast to the same layout) are bypassed. Producers that
//! become unused are left for [`Dce`](super::Dce).

use super::Pass;
use crate::error::Result;
use crate::ir::{numel, ConstValue, DType, Graph, Op, ValueId};

/// Folds constants up to [`ConstFold::MAX_ELEMENTS`] elements and removes identity ops.
pub struct ConstFold;

impl ConstFold {
    /// Larger results stay computed, so constants do not bloat graphs (a `full(0, [B,T,D])`
    /// is a scalar plus a broadcast, and should stay that way).
    pub const MAX_ELEMENTS: usize = 1024;
}

/// A constant's data as f64 (exact for f32 and i32).
fn as_f64(v: &ConstValue) -> Vec<f64> {
    match v {
        ConstValue::F32(x) => x.iter().map(|&a| a as f64).collect(),
        ConstValue::I32(x) => x.iter().map(|&a| a as f64).collect(),
    }
}

/// Element `i` of an output of shape `out`, read from an input of shape `shape` broadcast.
fn bcast_index(mut i: usize, out: &[usize], shape: &[usize]) -> usize {
    let mut idx = 0;
    let mut stride = 1;
    for k in (0..out.len()).rev() {
        let c = i % out[k];
        i /= out[k];
        let off = out.len() - shape.len();
        if k >= off {
            let d = shape[k - off];
            if d != 1 {
                idx += c * stride;
            }
            stride *= d;
        }
    }
    idx
}

fn evaluate(
    op: &Op,
    ins: &[(&ConstValue, &[usize])],
    out: &[usize],
    dtype: DType,
) -> Option<ConstValue> {
    let n = numel(out);
    let vals: Vec<Vec<f64>> = ins.iter().map(|(v, _)| as_f64(v)).collect();
    let at = |k: usize, i: usize| vals[k][bcast_index(i, out, ins[k].1)];
    let is_i32 = ins
        .first()
        .map(|(v, _)| v.dtype() == DType::I32)
        .unwrap_or(false);
    // Evaluate in the op's own precision so folding never changes results.
    let r: Vec<f64> = match op {
        Op::Unary(u) => (0..n).map(|i| u.eval(at(0, i) as f32) as f64).collect(),
        Op::Binary(b) if is_i32 => (0..n)
            .map(|i| b.eval_i32(at(0, i) as i32, at(1, i) as i32) as f64)
            .collect(),
        Op::Binary(b) => (0..n)
            .map(|i| b.eval(at(0, i) as f32, at(1, i) as f32) as f64)
            .collect(),
        Op::Compare(c) => (0..n)
            .map(|i| c.eval(at(0, i), at(1, i)) as u8 as f64)
            .collect(),
        Op::Where => (0..n)
            .map(|i| if at(0, i) != 0.0 { at(1, i) } else { at(2, i) })
            .collect(),
        Op::Cast { .. } => (0..n).map(|i| at(0, i)).collect(),
        Op::PowConst { exponent } => (0..n)
            .map(|i| (at(0, i) as f32).powf(*exponent) as f64)
            .collect(),
        Op::Clamp { min, max } => (0..n)
            .map(|i| (at(0, i) as f32).max(*min).min(*max) as f64)
            .collect(),
        // Same row-major data under a new shape: element i is element i.
        Op::Reshape { .. } | Op::StopGradient => vals[0].clone(),
        Op::BroadcastTo { .. } => (0..n).map(|i| at(0, i)).collect(),
        _ => return None,
    };
    Some(match dtype {
        DType::F32 => ConstValue::F32(r.into_iter().map(|x| x as f32).collect()),
        // f32 → i32 truncates toward zero and saturates, like `as`.
        DType::I32 => ConstValue::I32(r.into_iter().map(|x| x as f32 as i32).collect()),
    })
}

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const_fold"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut out = g.clone();
        let mut redirect: Vec<ValueId> = g.ids().collect();
        for i in 0..out.len() {
            let inputs: Vec<ValueId> = out.nodes[i]
                .inputs
                .iter()
                .map(|v| redirect[v.index()])
                .collect();
            out.nodes[i].inputs = inputs.clone();
            let n = &out.nodes[i];
            let x_shape = inputs.first().map(|v| out.nodes[v.index()].shape.clone());
            let identity = match &n.op {
                Op::Reshape { .. } | Op::BroadcastTo { .. } => {
                    x_shape.as_deref() == Some(&n.shape[..])
                }
                Op::Permute { perm } => perm.iter().enumerate().all(|(a, &p)| a == p),
                Op::Cast { to } => out.nodes[inputs[0].index()].dtype == *to,
                _ => false,
            };
            if identity {
                redirect[i] = inputs[0];
                continue;
            }
            if n.op.is_leaf() || numel(&n.shape) > Self::MAX_ELEMENTS {
                continue;
            }
            let consts: Option<Vec<(&ConstValue, &[usize])>> = inputs
                .iter()
                .map(|v| match &out.nodes[v.index()].op {
                    Op::Const { value } => Some((value, out.nodes[v.index()].shape.as_slice())),
                    _ => None,
                })
                .collect();
            let Some(consts) = consts else { continue };
            if let Some(value) = evaluate(&n.op, &consts, &n.shape, n.dtype) {
                out.nodes[i].op = Op::Const { value };
                out.nodes[i].inputs.clear();
            }
        }
        out.compact(&vec![true; out.len()], &redirect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;
    use crate::passes::{Dce, Pass};

    #[test]
    fn folds_constant_chains_and_keeps_runtime_ops() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 2], DType::F32);
        let c = b.constant(ConstValue::F32(vec![1.0, 4.0]), &[2]).unwrap();
        let s = b.sqrt(c).unwrap(); // [1, 2]
        let two = b.scalar(2.0);
        let t = b.mul(s, two).unwrap(); // [2, 4]
        let y = b.add(x, t).unwrap();
        b.output("y", y);
        let g = b.finish().unwrap();
        let folded = Dce.run(&ConstFold.run(&g).unwrap()).unwrap();
        assert_eq!(folded.len(), 3, "{folded}");
        let add = folded.node(folded.output("y").unwrap());
        let k = folded.node(add.inputs[1]);
        assert_eq!(
            k.op,
            Op::Const {
                value: ConstValue::F32(vec![2.0, 4.0])
            }
        );
    }

    #[test]
    fn removes_identity_shape_ops_and_folds_i32() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 3], DType::F32);
        let r = b.reshape(x, &[2, 3]).unwrap();
        let p = b.permute(r, &[0, 1]).unwrap();
        let e = b.exp(p).unwrap();
        b.output("e", e);
        let i = b.constant(ConstValue::I32(vec![7, -3]), &[2]).unwrap();
        let two = b.scalar_i32(2);
        let q = b.div(i, two).unwrap();
        b.output("q", q);
        let g = b.finish().unwrap();
        let out = Dce.run(&ConstFold.run(&g).unwrap()).unwrap();
        let exp = out.node(out.output("e").unwrap());
        assert!(
            matches!(out.node(exp.inputs[0]).op, Op::Input { .. }),
            "{out}"
        );
        assert_eq!(
            out.node(out.output("q").unwrap()).op,
            Op::Const {
                value: ConstValue::I32(vec![3, -1])
            }
        );
    }

    #[test]
    fn folds_reshape_and_broadcast_in_row_major_order() {
        let mut b = GraphBuilder::new();
        let c = b
            .constant(ConstValue::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), &[6])
            .unwrap();
        let r = b.reshape(c, &[3, 2]).unwrap();
        let col = b
            .constant(ConstValue::F32(vec![10.0, 20.0]), &[2, 1])
            .unwrap();
        let bc = b.broadcast_to(col, &[2, 3]).unwrap();
        b.output("r", r);
        b.output("bc", bc);
        let out = ConstFold.run(&b.finish().unwrap()).unwrap();
        let data = |name: &str| out.node(out.output(name).unwrap()).op.clone();
        assert_eq!(
            data("r"),
            Op::Const {
                value: ConstValue::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            }
        );
        assert_eq!(
            data("bc"),
            Op::Const {
                value: ConstValue::F32(vec![10.0, 10.0, 10.0, 20.0, 20.0, 20.0])
            }
        );
    }

    #[test]
    fn leaves_large_results_alone() {
        let mut b = GraphBuilder::new();
        let z = b.full(0.0, &[64, 64]).unwrap();
        b.output("z", z);
        let g = b.finish().unwrap();
        let out = ConstFold.run(&g).unwrap();
        assert!(matches!(
            out.node(out.output("z").unwrap()).op,
            Op::BroadcastTo { .. }
        ));
    }
}
