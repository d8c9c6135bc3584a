//! The optimizer a training loop holds: hyperparameters plus per-parameter state.

use super::{AdamW, Gradients, OptimError, Sgd};
use crate::backend::ParamStore;
use crate::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which optimizer, with its hyperparameters. Serialises as `{"kind": "adamw", ...}` (the form
/// stored in checkpoint metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Adamw(AdamW),
    Sgd(Sgd),
}

impl OptimizerConfig {
    /// The peak learning rate the schedule scales.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Adamw(a) => a.lr,
            OptimizerConfig::Sgd(s) => s.lr,
        }
    }
}

/// Per-parameter optimizer state: the step count and moment buffers, by parameter name.
///
/// AdamW keeps `m` (first moment) and `v` (second moment); SGD with momentum keeps its
/// momentum buffer in `m` and no `v`. A buffer is created (zeros) the first time its parameter
/// gets a gradient. In checkpoints they are the tensors `opt.m.{param}` and `opt.v.{param}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// Optimizer steps taken (AdamW's bias correction uses `step` after incrementing).
    pub step: u64,
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

/// Checkpoint tensor-name prefixes of the two moment buffers.
pub const M_PREFIX: &str = "opt.m.";
pub const V_PREFIX: &str = "opt.v.";

impl OptimizerState {
    /// The buffers as checkpoint tensors: `opt.m.{param}`, `opt.v.{param}`.
    pub fn tensors(&self) -> impl Iterator<Item = (String, &Tensor)> {
        let m = self.m.iter().map(|(k, t)| (format!("{M_PREFIX}{k}"), t));
        let v = self.v.iter().map(|(k, t)| (format!("{V_PREFIX}{k}"), t));
        m.chain(v)
    }

    /// Rebuilds the state from checkpoint tensors (other names are ignored) and a step count.
    pub fn from_tensors<'a>(
        step: u64,
        tensors: impl IntoIterator<Item = (&'a str, Tensor)>,
    ) -> Self {
        let mut s = OptimizerState {
            step,
            ..Default::default()
        };
        for (name, t) in tensors {
            if let Some(p) = name.strip_prefix(M_PREFIX) {
                s.m.insert(p.to_string(), t);
            } else if let Some(p) = name.strip_prefix(V_PREFIX) {
                s.v.insert(p.to_string(), t);
            }
        }
        s
    }

    /// Checks every buffer against the parameter it belongs to (a checkpoint from another
    /// model must not be silently half-applied).
    pub fn validate(&self, params: &ParamStore) -> Result<(), OptimError> {
        for (prefix, bufs) in [(M_PREFIX, &self.m), (V_PREFIX, &self.v)] {
            for (name, t) in bufs {
                let what = match params.get(name) {
                    None => "no parameter of that name".to_string(),
                    Some(p) if p.shape != t.shape => {
                        format!("shape {:?}, parameter has {:?}", t.shape, p.shape)
                    }
                    Some(_) if t.as_f32().is_none() => format!("{}, expected f32", t.dtype_name()),
                    Some(_) => continue,
                };
                return Err(OptimError::BadState {
                    name: format!("{prefix}{name}"),
                    what,
                });
            }
        }
        Ok(())
    }
}

/// An optimizer: hyperparameters and state. See the module docs for the step sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: OptimizerState,
}

impl Optimizer {
    /// A fresh optimizer (step 0, no buffers).
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            state: OptimizerState::default(),
        }
    }

    /// An optimizer resumed from saved state.
    pub fn with_state(config: OptimizerConfig, state: OptimizerState) -> Self {
        Optimizer { config, state }
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Optimizer steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.state.step
    }

    /// Applies one update with learning rate `lr` (the schedule's value for this step) to every
    /// parameter that has a gradient; parameters without one are not touched at all.
    ///
    /// Everything is checked before anything is written, so an error leaves `params` and the
    /// state unchanged.
    pub fn step(
        &mut self,
        params: &mut ParamStore,
        grads: &Gradients,
        lr: f64,
    ) -> Result<(), OptimError> {
        for (name, g) in grads.iter() {
            let p = params
                .get(name)
                .ok_or_else(|| OptimError::UnknownParam { name: name.into() })?;
            if p.as_f32().is_none() {
                return Err(OptimError::NotF32 {
                    name: name.into(),
                    dtype: p.dtype_name(),
                });
            }
            if p.shape != g.shape {
                return Err(OptimError::ShapeMismatch {
                    name: name.into(),
                    param: p.shape.clone(),
                    grad: g.shape.clone(),
                });
            }
        }
        self.state.validate(params)?;
        self.state.step += 1;
        let t = self.state.step;
        for (name, g) in grads.iter() {
            let g = g.as_f32().expect("gradients are f32");
            let p = params.get_mut(name).expect("checked above");
            let shape = p.shape.clone();
            let p = f32_mut(p);
            // Weight decay shrinks matrices and embeddings only: decaying a norm's gain or a
            // bias towards 0 fights what they are for (the nanoGPT / HF Trainer convention).
            let decays = shape.len() >= 2;
            match &self.config {
                OptimizerConfig::Adamw(a) => {
                    let m = buffer(&mut self.state.m, name, &shape);
                    let v = buffer(&mut self.state.v, name, &shape);
                    let a = AdamW {
                        weight_decay: if decays { a.weight_decay } else { 0.0 },
                        ..a.clone()
                    };
                    a.update(p, g, f32_mut(m), f32_mut(v), lr, t);
                }
                OptimizerConfig::Sgd(s) => {
                    let buf = (s.momentum != 0.0)
                        .then(|| f32_mut(buffer(&mut self.state.m, name, &shape)));
                    let s = Sgd {
                        weight_decay: if decays { s.weight_decay } else { 0.0 },
                        ..s.clone()
                    };
                    s.update(p, g, buf, lr);
                }
            }
        }
        Ok(())
    }
}

fn buffer<'a>(
    bufs: &'a mut BTreeMap<String, Tensor>,
    name: &str,
    shape: &[usize],
) -> &'a mut Tensor {
    bufs.entry(name.to_string())
        .or_insert_with(|| Tensor::zeros(shape))
}

fn f32_mut(t: &mut Tensor) -> &mut [f32] {
    match &mut t.data {
        TensorData::F32(v) => v,
        _ => unreachable!("validated as f32"),
    }
}
