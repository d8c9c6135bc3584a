//! The validator: checks a graph from scratch, independently of how it was built (passes and
//! deserialisation produce graphs the builder never saw).

use super::graph::Graph;
use super::op::Op;
use super::shape::{infer, TypeRef};
use super::types::{numel, DType};
use crate::error::{IrError, Result};
use std::collections::HashSet;

fn invalid(node: usize, msg: impl Into<String>) -> IrError {
    IrError::Invalid {
        node: node as u32,
        msg: msg.into(),
    }
}

/// Checks that every node only reads earlier nodes, that leaves agree with the param/input
/// tables, that every shape and dtype equals what the op's shape rule infers, that the side
/// tables are parallel, and that outputs, hooks and table names are sound.
pub fn verify(g: &Graph) -> Result<()> {
    if g.spans.len() != g.nodes.len() || g.labels.len() != g.nodes.len() {
        return Err(invalid(0, "spans/labels tables are not parallel to nodes"));
    }
    let mut names = HashSet::new();
    for p in &g.params {
        if !names.insert(p.name.as_str()) {
            return Err(invalid(0, format!("duplicate param `{}`", p.name)));
        }
    }
    let mut names = HashSet::new();
    for i in &g.inputs {
        if !names.insert(i.name.as_str()) {
            return Err(invalid(0, format!("duplicate input `{}`", i.name)));
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op.is_leaf() && !n.inputs.is_empty() {
            return Err(invalid(i, "a leaf has inputs"));
        }
        for &v in &n.inputs {
            if v.index() >= i {
                return Err(invalid(
                    i,
                    format!("reads {v}, which is not an earlier node"),
                ));
            }
        }
        match &n.op {
            Op::Input { name } => {
                let info = g.inputs.iter().find(|x| &x.name == name);
                let info =
                    info.ok_or_else(|| invalid(i, format!("input `{name}` is not declared")))?;
                if info.shape != n.shape || info.dtype != n.dtype {
                    return Err(invalid(
                        i,
                        format!("input `{name}` node type differs from its declaration"),
                    ));
                }
            }
            Op::Param { index } => {
                let info = g
                    .params
                    .get(*index)
                    .ok_or_else(|| invalid(i, format!("param #{index} does not exist")))?;
                if info.shape != n.shape || n.dtype != DType::F32 {
                    return Err(invalid(
                        i,
                        format!(
                            "param `{}` node type differs from its declaration",
                            info.name
                        ),
                    ));
                }
            }
            Op::Const { value } => {
                if value.len() != numel(&n.shape) || value.dtype() != n.dtype {
                    return Err(invalid(i, "constant data does not match its node type"));
                }
            }
            Op::Iota { axis } => {
                if *axis >= n.shape.len() {
                    return Err(invalid(i, "iota axis out of range"));
                }
            }
            op => {
                let types: Vec<TypeRef> = n
                    .inputs
                    .iter()
                    .map(|v| {
                        (
                            g.nodes[v.index()].shape.as_slice(),
                            g.nodes[v.index()].dtype,
                        )
                    })
                    .collect();
                let (shape, dtype) =
                    infer(op, &types).map_err(|m| invalid(i, format!("{}: {m}", op.name())))?;
                if shape != n.shape || dtype != n.dtype {
                    return Err(invalid(
                        i,
                        format!(
                            "{} infers {dtype}{shape:?} but the node says {}{:?}",
                            op.name(),
                            n.dtype,
                            n.shape
                        ),
                    ));
                }
            }
        }
    }
    for (kind, list) in [("output", &g.outputs), ("hook", &g.hooks)] {
        let mut names = HashSet::new();
        for (name, v) in list {
            if v.index() >= g.nodes.len() {
                return Err(invalid(
                    g.nodes.len(),
                    format!("{kind} `{name}` points at missing {v}"),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(v.index(), format!("duplicate {kind} `{name}`")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{GraphBuilder, ValueId};

    fn small() -> Graph {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[2, 3], DType::F32);
        let y = g.exp(x).unwrap();
        let z = g.sum(y, 1, false).unwrap();
        g.output("z", z);
        g.finish().unwrap()
    }

    #[test]
    fn accepts_built_graph() {
        verify(&small()).unwrap();
    }

    #[test]
    fn rejects_stale_shape() {
        let mut g = small();
        g.nodes[2].shape = vec![3];
        let err = verify(&g).unwrap_err();
        assert!(matches!(err, IrError::Invalid { node: 2, .. }), "{err}");
    }

    #[test]
    fn rejects_use_before_definition() {
        let mut g = small();
        g.nodes[1].inputs[0] = ValueId(2);
        assert!(matches!(verify(&g), Err(IrError::Invalid { node: 1, .. })));
    }

    #[test]
    fn rejects_wrong_dtype_and_missing_output() {
        let mut g = small();
        g.nodes[0].dtype = DType::I32;
        assert!(verify(&g).is_err());
        let mut g = small();
        g.outputs.push(("w".into(), ValueId(99)));
        assert!(verify(&g).is_err());
    }
}
