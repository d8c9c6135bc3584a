//! Counted work of a graph: the floating-point operations of its products (matmuls and
//! attention), which dominate every model weft builds. Used to check that a construct's
//! cost scales as claimed (sparse routing with `top_k`, not pool size) and for throughput.

use super::{numel, Graph, Op};

/// FLOPs of every matmul (`2·M·N·K` per batch entry) and attention op (`4·B·H·T²·d` for the
/// two products forward, every key counted; `8·B·H·T²·d` backward) among `g`'s nodes.
pub fn flops(g: &Graph) -> f64 {
    g.nodes
        .iter()
        .map(|n| match &n.op {
            Op::MatMul { transpose_a, .. } => {
                let a = g.shape(n.inputs[0]);
                let k = if *transpose_a {
                    a[a.len() - 2]
                } else {
                    a[a.len() - 1]
                };
                2.0 * numel(&n.shape) as f64 * k as f64
            }
            Op::Attention(_)
            | Op::AttentionPattern(_)
            | Op::AttentionBackward(_)
            | Op::AttentionRuleGrad(_) => {
                let q = g.shape(n.inputs[0]);
                let per = 4.0 * numel(q) as f64 * q[2] as f64;
                if matches!(n.op, Op::AttentionBackward(_)) {
                    2.0 * per
                } else {
                    per
                }
            }
            _ => 0.0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder};

    #[test]
    fn matmul_flops_count_every_batch_entry_and_transposes() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[3, 4, 5], DType::F32);
        let w = b.input("w", &[5, 6], DType::F32);
        let y = b.matmul(x, w).unwrap(); // 3·4·6 outputs × 5
        let z = b.matmul_t(y, y, true, false).unwrap(); // [3,6,6], k = 4
        b.output("z", z);
        let g = b.finish().unwrap();
        assert_eq!(flops(&g), 2.0 * (72.0 * 5.0 + 108.0 * 4.0));
    }
}
