//! Reverse-mode autodiff as an IR → IR pass.
//!
//! [`grad`] appends backward nodes to a copy of the forward graph, so the backward graph is
//! ordinary IR that goes through the same passes and codegen as the forward one. One VJP
//! rule per op lives in [`vjp`]; [`selection`] decides which parameters get gradients and
//! which nodes need backward work at all (frozen parameters and stopped paths get none).

mod selection;
mod vjp;

pub use selection::ParamSelection;

use crate::error::{IrError, Result};
use crate::ir::{numel, DType, Graph, GraphBuilder, Op, ValueId};
use selection::{active_nodes, needed_nodes, selected_params};

/// Differentiates `loss` (an f32 value with one element) with respect to the trainable
/// parameters matched by `wrt`.
///
/// The result holds the forward graph (its outputs and hooks intact) plus backward nodes,
/// with outputs `loss` and `grad.{param_name}` for every selected trainable parameter
/// (zeros if the loss does not depend on it). Frozen parameters are never selected.
pub fn grad(g: &Graph, loss: ValueId, wrt: &[ParamSelection]) -> Result<Graph> {
    let Some(loss_node) = g.nodes.get(loss.index()) else {
        return Err(IrError::Grad(format!(
            "loss {loss} is not a node of the graph"
        )));
    };
    if loss_node.dtype != DType::F32 || numel(&loss_node.shape) != 1 {
        return Err(IrError::Grad(format!(
            "loss must be one f32 element, {loss} is {}{:?}",
            loss_node.dtype, loss_node.shape
        )));
    }
    if let Some(existing) = g.output("loss") {
        if existing != loss {
            return Err(IrError::Grad(format!(
                "output `loss` already names {existing}, not {loss}"
            )));
        }
    }
    let params = selected_params(g, wrt);
    let active = active_nodes(g, &params);
    let needed = needed_nodes(g, loss);

    let mut b = GraphBuilder::from_graph(g.clone());
    let mut grads: Vec<Option<ValueId>> = vec![None; g.len()];
    b.set_span(g.spans[loss.index()]);
    grads[loss.index()] = Some(b.full(1.0, &loss_node.shape)?);

    for i in (0..=loss.index()).rev() {
        let (Some(dy), true, true) = (grads[i], active[i], needed[i]) else {
            continue;
        };
        let node = &g.nodes[i];
        if node.op.is_leaf() {
            continue;
        }
        let diff = vjp::differentiable_inputs(&node.op, node.inputs.len());
        let wants: Vec<bool> = node
            .inputs
            .iter()
            .zip(&diff)
            .map(|(v, &d)| d && active[v.index()])
            .collect();
        if !wants.iter().any(|&w| w) {
            continue;
        }
        b.set_span(g.spans[i]);
        b.set_label(g.labels[i].as_ref().map(|l| format!("grad:{l}")));
        let contributions = vjp::vjp(&mut b, ValueId(i as u32), dy, &wants)?;
        for ((&input, want), c) in node.inputs.iter().zip(&wants).zip(contributions) {
            let (true, Some(c)) = (*want, c) else {
                continue;
            };
            let acc = &mut grads[input.index()];
            *acc = Some(match *acc {
                Some(prev) => b.add(prev, c)?,
                None => c,
            });
        }
    }

    b.set_span(None);
    b.set_label(None);
    if g.output("loss").is_none() {
        b.output("loss", loss);
    }
    for (index, info) in params.iter().map(|&i| (i, &g.params[i])) {
        let node = g.ids().find(|&v| g.node(v).op == Op::Param { index });
        let gv = match node.and_then(|v| grads[v.index()]) {
            Some(gv) => gv,
            None => b.full(0.0, &info.shape)?,
        };
        b.output(&format!("grad.{}", info.name), gv);
    }
    b.finish()
}
