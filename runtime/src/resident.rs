//! Device-resident training: a backend with its own memory (wgpu) keeps parameters,
//! gradients and optimizer state there for a whole run, and runs the gradient norm, clipping
//! and the optimizer update as kernels. Per step only the batch goes to the device and the
//! loss, the objective's parts and the gradient norm come back; parameters and optimizer
//! state cross only when the loop asks for them (checkpoints, evaluation, traces, the end of
//! the run).
//!
//! The training loop (`train::train`) asks [`crate::Backend::resident_trainer`] for one and
//! falls back to [`crate::Backend::run`] plus the host [`crate::optim::Optimizer`] when the
//! backend has none (the CPU backends, whose memory already is the host's).

use crate::backend::ParamStore;
use crate::error::RunError;
use crate::optim::{Gradients, Optimizer};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};

/// What a resident trainer starts from.
pub struct ResidentSetup<'a> {
    /// Every parameter of the training graph (uploaded once).
    pub params: &'a ParamStore,
    /// Hyperparameters and state (a resumed run's moments are uploaded once; the step count
    /// continues from the state's).
    pub optimizer: &'a Optimizer,
    /// Names of the parameters the optimizer updates (the spec's `trainable`); others keep
    /// their values even when the graph has a gradient for them.
    pub trainable: &'a [String],
    /// Global-norm clipping threshold; `<= 0` turns clipping off (the norm is still measured).
    pub clip: f64,
    /// Micro-batches per optimizer step (gradient accumulation: their gradients' mean).
    pub accumulate: usize,
}

/// What one optimizer step returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidentStep {
    /// Per micro-batch, the objective's outputs of the training graph (`loss`, `term.*`,
    /// `aux.*`), as f64 scalars (the first element of each); logits and gradients stay.
    pub outputs: Vec<BTreeMap<String, f64>>,
    /// Global L2 norm of the (accumulated, mean) gradients before clipping — or a
    /// micro-batch's loss when that is not finite. When it is not finite the update was
    /// skipped: parameters and optimizer state are unchanged.
    pub grad_norm: f64,
}

/// Bytes that crossed between host and device, cumulative since the trainer was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Uploaded by optimizer steps: the batch's inputs and the per-step scalars.
    pub step_up: u64,
    /// Read back by optimizer steps: loss, the objective's parts and the gradient norm.
    pub step_down: u64,
    /// Everything else: the one-time upload of parameters and state, and reads of them for
    /// checkpoints, evaluation and traces.
    pub other_up: u64,
    pub other_down: u64,
    /// Optimizer steps taken.
    pub steps: u64,
}

/// A training run whose parameters, gradients and optimizer state live on a device.
pub trait ResidentTrainer {
    /// One optimizer step over `micro` (one input map per micro-batch, as many as the setup's
    /// `accumulate`) with learning rate `lr` (the schedule's value for this step).
    fn step(
        &mut self,
        micro: &[HashMap<String, Tensor>],
        lr: f64,
    ) -> Result<ResidentStep, RunError>;

    /// Every parameter, read back from the device.
    fn params(&mut self) -> Result<ParamStore, RunError>;

    /// The optimizer (hyperparameters and state), read back from the device.
    fn optimizer(&mut self) -> Result<Optimizer, RunError>;

    /// The last step's mean gradients of the updated parameters, before clipping (for naming
    /// the non-finite ones when a step fails).
    fn gradients(&mut self) -> Result<Gradients, RunError>;

    /// Bytes moved so far.
    fn traffic(&self) -> Traffic;
}
