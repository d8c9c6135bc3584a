//! Common-subexpression elimination: identical op on identical inputs is computed once.

use super::Pass;
use crate::error::Result;
use crate::ir::{Graph, ValueId};
use std::collections::HashMap;

/// Merges nodes with the same op, parameters, inputs and type into the first occurrence.
/// All ops are pure (there is no RNG op yet), so merging is always sound.
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut redirect: Vec<ValueId> = g.ids().collect();
        let mut seen: HashMap<String, ValueId> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            let inputs: Vec<ValueId> = n.inputs.iter().map(|v| redirect[v.index()]).collect();
            // Debug of f32 round-trips, so the key distinguishes every constant and scale.
            let key = format!("{:?}|{:?}|{:?}|{:?}", n.op, inputs, n.shape, n.dtype);
            match seen.get(&key) {
                Some(&first) => redirect[i] = first,
                None => {
                    seen.insert(key, ValueId(i as u32));
                }
            }
        }
        g.compact(&vec![true; g.len()], &redirect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder};

    #[test]
    fn merges_duplicates_transitively_but_not_different_params() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 3], DType::F32);
        let a1 = b.exp(x).unwrap();
        let a2 = b.exp(x).unwrap();
        let s1 = b.sum(a1, 1, false).unwrap();
        let s2 = b.sum(a2, 1, false).unwrap();
        let s3 = b.sum(a2, 1, true).unwrap();
        let c1 = b.scalar(0.5);
        let c2 = b.scalar(0.25);
        let t = b.add(s1, s2).unwrap();
        let u = b.mul(s3, c1).unwrap();
        let v = b.mul(s3, c2).unwrap();
        b.output("t", t);
        b.output("u", u);
        b.output("v", v);
        let g = b.finish().unwrap();
        let out = Cse.run(&g).unwrap();
        // x, exp, sum, sum keepdim, 0.5, 0.25, add, mul, mul
        assert_eq!(out.len(), 9, "{out}");
        let add = out.node(out.output("t").unwrap());
        assert_eq!(add.inputs[0], add.inputs[1]);
        assert_ne!(out.output("u"), out.output("v"));
    }
}
