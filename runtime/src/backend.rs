//! The [`Backend`] trait every executor implements — the numerical reference
//! `cpu::CpuBackend` (`--backend cpu-ref`), the fast CPU path `cpu::FastCpuBackend`
//! (`--backend cpu`) and `wgpu::WgpuBackend` (generated WGSL on any adapter) — with what a run
//! takes and returns: parameters by name ([`ParamStore`]), the hook points to capture
//! ([`HookSelection`]) and the outputs and captured hooks ([`Outputs`]). Hook replacement
//! (`run_replacing`) has a default that reports "unsupported"; every backend here overrides it.

use crate::error::RunError;
use crate::replace::Intervention;
use crate::resident::{ResidentSetup, ResidentTrainer};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use weft_compiler::ir::Graph;

/// Parameter values by name (the names of `Graph::params`).
pub type ParamStore = HashMap<String, Tensor>;

/// Which hook points a run should capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HookSelection {
    /// None (hooks cost nothing then).
    #[default]
    None,
    /// Every hook the graph defines.
    All,
    /// These names; an unknown name is an error.
    Names(Vec<String>),
}

/// What a run returns: named outputs and the captured hooks, in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    pub outputs: BTreeMap<String, Tensor>,
    pub hooks: BTreeMap<String, Tensor>,
}

impl Outputs {
    /// The named output.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.outputs.get(name)
    }

    /// The named captured hook.
    pub fn hook(&self, name: &str) -> Option<&Tensor> {
        self.hooks.get(name)
    }
}

/// Something that can execute a graph: the CPU reference, the fast CPU path, wgpu.
pub trait Backend {
    /// Human-readable backend (and adapter) name.
    fn name(&self) -> &str;

    /// Runs `graph` once on `inputs` and `params`, returning every output and the selected
    /// hooks. Missing or mistyped inputs and params are errors naming the tensor; NaN is not.
    fn run(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
    ) -> Result<Outputs, RunError>;

    /// A trainer that keeps parameters, gradients and optimizer state on this backend's
    /// device for a whole run of `graph` (a training step: loss and `grad.*` outputs; see
    /// [`crate::resident`]). `None`, the default, when the backend trains through
    /// [`Backend::run`] and the host optimizer.
    fn resident_trainer<'a>(
        &'a self,
        _graph: &Graph,
        _setup: &ResidentSetup,
    ) -> Option<Result<Box<dyn ResidentTrainer + 'a>, RunError>> {
        None
    }

    /// Like [`Backend::run`], with hook points overwritten as `replace` says: each listed hook
    /// point's value is replaced (in order) right after it is computed, so every node that
    /// reads it, and every output, sees the replacement. A captured hook reports the value
    /// computed *before* its own replacement (Batch-ICL's multi-epoch variant averages exactly
    /// those). Replacing a hook point that names the same value as another (`layers.1.resid_pre`
    /// is `layers.0.resid_post`) replaces both. Unknown names and ill-fitting tensors are
    /// errors naming the hook.
    ///
    /// Backends that cannot patch values mid-run keep this default, which runs normally when
    /// there is nothing to replace and otherwise says the feature is unsupported.
    fn run_replacing(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        replace: &[Intervention],
    ) -> Result<Outputs, RunError> {
        match replace.first() {
            None => self.run(graph, inputs, params, hooks),
            Some(r) => Err(RunError::Unsupported(format!(
                "replacing hook `{}`",
                r.name()
            ))),
        }
    }
}
