//! The model a probe examines: a checked spec, its weights and the backend that runs it.
//! Probes lower the spec at the batch and length they need, materialising only the
//! expensive hook points they read.

use super::ProbeError;
use crate::backend::{Backend, HookSelection, Outputs, ParamStore};
use crate::data::Batch;
use crate::replace::Intervention;
use crate::tensor::Tensor;
use std::collections::HashMap;
use weft_compiler::ir::Graph;
use weft_compiler::lower::glob::glob_match;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::typed::ModelConfig;
use weft_dsl::Checked;

/// A model to probe.
pub struct Model<'a> {
    pub spec: &'a Checked,
    pub params: &'a ParamStore,
    pub backend: &'a dyn Backend,
}

/// One lowered graph of the model, for a fixed batch and length.
pub struct Lowered {
    pub graph: Graph,
    pub batch: usize,
    pub seq: usize,
}

impl<'a> Model<'a> {
    /// A model over `spec` with `params`, run on `backend`.
    pub fn new(spec: &'a Checked, params: &'a ParamStore, backend: &'a dyn Backend) -> Self {
        Model {
            spec,
            params,
            backend,
        }
    }

    /// The model's typed settings (`vocab`, `dim`, `heads`, `head_dim`, `ctx`, norms...).
    pub fn config(&self) -> &'a ModelConfig {
        &self.spec.model.config
    }

    /// Number of layers L.
    pub fn layers(&self) -> usize {
        self.spec.model.layers.len()
    }

    /// Heads per layer H.
    pub fn heads(&self) -> usize {
        self.config().heads
    }

    /// Model width D.
    pub fn dim(&self) -> usize {
        self.config().dim
    }

    /// Vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.config().vocab
    }

    /// Longest sequence the model takes.
    pub fn ctx(&self) -> usize {
        self.config().ctx
    }

    /// The weight called `name`, or an error naming it.
    pub fn param(&self, name: &str) -> Result<&Tensor, ProbeError> {
        self.params
            .get(name)
            .ok_or_else(|| ProbeError::Model(format!("the weights have no tensor `{name}`")))
    }

    /// Lowers the model for `batch × seq` tokens, materialising the expensive hook points
    /// matching `capture` (globs such as `layers.*.attn.pattern`).
    pub fn lower(&self, batch: usize, seq: usize, capture: &[&str]) -> Result<Lowered, ProbeError> {
        if seq > self.ctx() {
            return Err(ProbeError::Config(format!(
                "sequences of {seq} tokens do not fit the model's ctx = {}",
                self.ctx()
            )));
        }
        let mut opts = LowerOptions::new(batch, seq);
        opts.capture = capture.iter().map(|s| s.to_string()).collect();
        let graph =
            lower(self.spec, &opts).map_err(|e| ProbeError::Model(format!("lowering: {e}")))?;
        Ok(Lowered { graph, batch, seq })
    }

    /// Runs `tokens` (`batch` rows of `seq` ids, row-major) through `g`, capturing the hook
    /// points matching `capture` (globs) and applying `replace`. Mask id streams default to
    /// one document / one turn per row.
    pub fn run(
        &self,
        g: &Lowered,
        tokens: &[i32],
        capture: &[&str],
        replace: &[Intervention],
    ) -> Result<Outputs, ProbeError> {
        if tokens.len() != g.batch * g.seq {
            return Err(ProbeError::Config(format!(
                "{} token ids for a {}×{} batch",
                tokens.len(),
                g.batch,
                g.seq
            )));
        }
        let mut inputs = HashMap::from([(
            "tokens".to_string(),
            Tensor::i32(&[g.batch, g.seq], tokens.to_vec()),
        )]);
        for info in &g.graph.inputs {
            inputs
                .entry(info.name.clone())
                .or_insert_with(|| Tensor::i32(&info.shape, vec![0; info.shape.iter().product()]));
        }
        let names: Vec<String> = g
            .graph
            .hooks
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| capture.iter().any(|p| glob_match(p, n)))
            .collect();
        let hooks = if names.is_empty() {
            HookSelection::None
        } else {
            HookSelection::Names(names)
        };
        Ok(self
            .backend
            .run_replacing(&g.graph, &inputs, self.params, &hooks, replace)?)
    }
}

impl Model<'_> {
    /// Runs a data-source [`Batch`] through `g` as training would: every graph input the
    /// batch provides (tokens, and the document and turn ids that mask rules read) is passed,
    /// so a spec with `mask: turns` sees its turns; inputs the batch lacks are zero.
    pub fn run_batch(
        &self,
        g: &Lowered,
        batch: &Batch,
        capture: &[&str],
    ) -> Result<Outputs, ProbeError> {
        if batch.batch_size() != g.batch || batch.seq_len() != g.seq {
            return Err(ProbeError::Config(format!(
                "a {}×{} batch for a graph lowered at {}×{}",
                batch.batch_size(),
                batch.seq_len(),
                g.batch,
                g.seq
            )));
        }
        let all = batch.to_inputs();
        let inputs: HashMap<String, Tensor> = g
            .graph
            .inputs
            .iter()
            .map(|info| {
                let t = all.get(&info.name).cloned().unwrap_or_else(|| {
                    Tensor::i32(&info.shape, vec![0; info.shape.iter().product()])
                });
                (info.name.clone(), t)
            })
            .collect();
        let names: Vec<String> = g
            .graph
            .hooks
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| capture.iter().any(|p| glob_match(p, n)))
            .collect();
        let hooks = if names.is_empty() {
            HookSelection::None
        } else {
            HookSelection::Names(names)
        };
        Ok(self.backend.run(&g.graph, &inputs, self.params, &hooks)?)
    }

    /// Runs `rows` sequences of `seq` tokens in batches of at most `chunk` rows (lowering
    /// once per batch size), calling `f(first_row, outputs)` for each batch.
    pub fn run_in_batches(
        &self,
        tokens: &[i32],
        seq: usize,
        chunk: usize,
        capture: &[&str],
        mut f: impl FnMut(usize, &Outputs) -> Result<(), ProbeError>,
    ) -> Result<(), ProbeError> {
        let rows = tokens.len() / seq.max(1);
        let chunk = chunk.max(1);
        let mut graphs: Vec<Lowered> = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = chunk.min(rows - start);
            if !graphs.iter().any(|g| g.batch == n) {
                graphs.push(self.lower(n, seq, capture)?);
            }
            let g = graphs.iter().find(|g| g.batch == n).expect("lowered above");
            let out = self.run(g, &tokens[start * seq..(start + n) * seq], capture, &[])?;
            f(start, &out)?;
            start += n;
        }
        Ok(())
    }
}

/// A captured hook, or an error naming it (a probe asked for a point the model lacks).
pub fn hook<'o>(out: &'o Outputs, name: &str) -> Result<&'o Tensor, ProbeError> {
    out.hook(name).ok_or_else(|| {
        ProbeError::Model(format!(
            "the model has no hook point `{name}` (docs/parameters.md)"
        ))
    })
}

/// The run's `logits` output.
pub fn logits(out: &Outputs) -> Result<&Tensor, ProbeError> {
    out.get("logits")
        .ok_or_else(|| ProbeError::Model("the graph has no `logits` output".into()))
}
