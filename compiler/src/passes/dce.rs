//! Dead-code elimination: keeps what outputs and hooks read.

use super::Pass;
use crate::error::Result;
use crate::ir::{Graph, ValueId};

/// Removes every node that no output or hook depends on.
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut live = vec![false; g.len()];
        for v in g.roots() {
            live[v.index()] = true;
        }
        for i in (0..g.len()).rev() {
            if live[i] {
                for v in &g.nodes[i].inputs {
                    live[v.index()] = true;
                }
            }
        }
        let identity: Vec<ValueId> = g.ids().collect();
        g.compact(&live, &identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder, Op, UnaryOp};

    #[test]
    fn drops_unused_and_keeps_hooks() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[3], DType::F32);
        let dead = b.exp(x).unwrap();
        let _dead2 = b.neg(dead).unwrap();
        let hooked = b.tanh(x).unwrap();
        let y = b.sin(x).unwrap();
        b.output("y", y);
        b.hook("h", hooked);
        let g = b.finish().unwrap();
        let out = Dce.run(&g).unwrap();
        assert_eq!(out.len(), 3, "{out}");
        assert!(out.nodes.iter().all(|n| n.op != Op::Unary(UnaryOp::Exp)));
        assert_eq!(
            out.node(out.output("y").unwrap()).op,
            Op::Unary(UnaryOp::Sin)
        );
        assert_eq!(
            out.node(out.hook("h").unwrap()).op,
            Op::Unary(UnaryOp::Tanh)
        );
    }
}
