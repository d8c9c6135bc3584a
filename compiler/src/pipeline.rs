//! The one way a spec becomes the graph of a training step: lowering with the loss,
//! reverse-mode autodiff of the loss with respect to every trainable parameter, and the
//! default passes. The trainer, `weft compile --grad`, the benchmarks (the spec's training
//! step, and [`backward`] for the hand-built attention graph) and the PEAR probe all build
//! their steps here, so a benchmark times the graph training runs.

use crate::autodiff::{grad, ParamSelection};
use crate::ir::{Graph, ValueId};
use crate::lower::{lower, LowerOptions};
use crate::passes::optimize;
use crate::IrError;

/// Errors of building a step: the spec span of the node that failed, where there is one.
pub type Result<T> = std::result::Result<T, IrError>;
use weft_dsl::Checked;

/// How `weft train` lowers a spec at `[batch, seq]`: with the objective, dropout in training
/// mode, and the spec's `trainable` globs.
pub fn training_options(spec: &Checked, batch: usize, seq: usize) -> LowerOptions {
    LowerOptions {
        with_loss: true,
        dropout: true,
        trainable: spec.trainable(),
        ..LowerOptions::new(batch, seq)
    }
}

/// Forward and backward in one graph: `opts` (which must ask for the loss) lowered, the loss
/// differentiated with respect to every trainable parameter, the default passes run. Its
/// outputs are the forward's (`logits`, `loss`, `aux.*`, `term.*`) and `grad.NAME` per
/// trainable parameter.
pub fn step_graph(spec: &Checked, opts: &LowerOptions) -> Result<Graph> {
    let g = lower(spec, opts)?;
    let loss = g.output("loss").ok_or_else(|| {
        IrError::Builder("a training step needs the loss: lower with `with_loss`".into())
    })?;
    backward(&g, loss)
}

/// `g` with its backward: `loss` differentiated with respect to every trainable parameter
/// (outputs `grad.NAME`), then the default passes — the one place autodiff and the passes
/// are chained.
pub fn backward(g: &Graph, loss: ValueId) -> Result<Graph> {
    optimize(&grad(g, loss, &[ParamSelection::All])?)
}

/// The graph of one training step of `spec` at `[batch, seq]`, exactly as `weft train` runs
/// it ([`training_options`] through [`step_graph`]).
pub fn training_step(spec: &Checked, batch: usize, seq: usize) -> Result<Graph> {
    step_graph(spec, &training_options(spec, batch, seq))
}
