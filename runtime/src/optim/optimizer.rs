//! The optimizer a training loop holds: hyperparameters plus per-parameter state.

use super::{AdamW, Gradients, OptimError, Sgd};
use crate::backend::ParamStore;
use crate::tensor::{Tensor, TensorData};
use rayon::prelude::*;
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
        self.step_scaled(params, grads, lr, 1.0)
    }

    /// [`Optimizer::step`] with every gradient multiplied by `grad_scale` as it is read
    /// (clipping's factor, `optim::clip_factor`): clipping and the update are one pass, with
    /// the bits of scaling the gradients first.
    pub fn step_scaled(
        &mut self,
        params: &mut ParamStore,
        grads: &Gradients,
        lr: f64,
        grad_scale: f32,
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
        // Buffers first (zeros the first time a parameter gets a gradient), then every
        // parameter's update as one parallel pass over fixed-size chunks: each element's
        // arithmetic is the serial loop's, so the result does not depend on the threads.
        let momentum = match &self.config {
            OptimizerConfig::Adamw(_) => true,
            OptimizerConfig::Sgd(s) => s.momentum != 0.0,
        };
        let adam = matches!(self.config, OptimizerConfig::Adamw(_));
        for (name, g) in grads.iter() {
            if momentum {
                buffer(&mut self.state.m, name, &g.shape);
            }
            if adam {
                buffer(&mut self.state.v, name, &g.shape);
            }
        }
        // Every map is walked in name order and joined on the name: gradients and moment
        // buffers are BTreeMaps, the parameters a HashMap sorted once here.
        let mut ps: Vec<(&String, &mut Tensor)> = params
            .iter_mut()
            .filter(|(n, _)| grads.get(n).is_some())
            .collect();
        ps.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut ms = self.state.m.iter_mut().peekable();
        let mut vs = self.state.v.iter_mut().peekable();
        let mut work: Vec<Chunk> = Vec::new();
        for ((name, p), (gname, g)) in ps.into_iter().zip(grads.iter()) {
            debug_assert_eq!(name.as_str(), gname);
            // Weight decay shrinks matrices and embeddings only: decaying a norm's gain or a
            // bias towards 0 fights what they are for (the nanoGPT / HF Trainer convention).
            let decays = p.shape.len() >= 2;
            let g = g.as_f32().expect("gradients are f32");
            let m = if momentum { take(&mut ms, gname) } else { None };
            let v = if adam { take(&mut vs, gname) } else { None };
            let p = f32_mut(p);
            let mut m = m.map(|m| m.chunks_mut(CHUNK));
            let mut v = v.map(|v| v.chunks_mut(CHUNK));
            for (p, g) in p.chunks_mut(CHUNK).zip(g.chunks(CHUNK)) {
                work.push(Chunk {
                    p,
                    g,
                    m: m.as_mut().and_then(Iterator::next),
                    v: v.as_mut().and_then(Iterator::next),
                    decays,
                });
            }
        }
        let config = &self.config;
        work.into_par_iter().for_each(|c| match config {
            OptimizerConfig::Adamw(a) => {
                let a = AdamW {
                    weight_decay: if c.decays { a.weight_decay } else { 0.0 },
                    ..a.clone()
                };
                let (m, v) = (c.m.expect("made above"), c.v.expect("made above"));
                a.update(c.p, c.g, m, v, lr, t, grad_scale);
            }
            OptimizerConfig::Sgd(s) => {
                let s = Sgd {
                    weight_decay: if c.decays { s.weight_decay } else { 0.0 },
                    ..s.clone()
                };
                s.update(c.p, c.g, c.m, lr, grad_scale);
            }
        });
        Ok(())
    }
}

/// Elements per unit of parallel optimizer work: large enough that a task outweighs its
/// scheduling, small enough that a model's few large matrices spread over every thread.
const CHUNK: usize = 1 << 14;

/// One slice of one parameter with its gradient and moment buffers.
struct Chunk<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: Option<&'a mut [f32]>,
    v: Option<&'a mut [f32]>,
    decays: bool,
}

/// The buffer named `name` from a name-ordered walk over a moment map, skipping the names
/// before it (buffers of parameters that have no gradient this step).
fn take<'a>(
    it: &mut std::iter::Peekable<std::collections::btree_map::IterMut<'a, String, Tensor>>,
    name: &str,
) -> Option<&'a mut [f32]> {
    while it.peek().is_some_and(|(k, _)| k.as_str() < name) {
        it.next();
    }
    match it.peek() {
        Some((k, _)) if k.as_str() == name => it.next().map(|(_, t)| f32_mut(t)),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let mut r = crate::Rng::new(seed);
        let n = shape.iter().product();
        Tensor::f32(shape, (0..n).map(|_| r.normal() as f32).collect())
    }

    /// The chunked parallel step against each parameter updated on its own by the serial
    /// rules: parameters longer than a chunk, one without a gradient whose buffers exist
    /// (it is skipped), and a 1-d one (no decay).
    #[test]
    fn the_parallel_step_is_the_per_parameter_update() {
        let shapes: [(&str, &[usize]); 4] = [
            ("a.big", &[300, 129]),
            ("b.frozen", &[40, 3]),
            ("c.gain", &[70_000]),
            ("d.small", &[5, 7]),
        ];
        for config in [
            OptimizerConfig::Adamw(AdamW {
                weight_decay: 0.1,
                ..AdamW::default()
            }),
            OptimizerConfig::Sgd(Sgd {
                momentum: 0.9,
                weight_decay: 0.01,
                ..Sgd::default()
            }),
            OptimizerConfig::Sgd(Sgd::default()),
        ] {
            let mut params = ParamStore::new();
            let mut grads = Gradients::new();
            for (i, (name, shape)) in shapes.iter().enumerate() {
                params.insert(name.to_string(), tensor(shape, i as u64));
                if *name != "b.frozen" {
                    grads.insert(*name, tensor(shape, 10 + i as u64));
                }
            }
            let mut opt = Optimizer::new(config.clone());
            let mut state = OptimizerState::default();
            // A buffer for the parameter without a gradient, as a resumed run has.
            state.m.insert("b.frozen".into(), tensor(&[40, 3], 99));
            opt.state = state.clone();
            let mut want = params.clone();
            let mut want_state = state;
            for step in 1..=2u64 {
                opt.step(&mut params, &grads, 0.01).expect("steps");
                for (name, g) in grads.iter() {
                    let g = g.as_f32().unwrap();
                    let p = f32_mut(want.get_mut(name).unwrap());
                    let decays = p.len() != 70_000;
                    match &config {
                        OptimizerConfig::Adamw(a) => {
                            let m = f32_mut(buffer(&mut want_state.m, name, &[g.len()]));
                            let v = f32_mut(buffer(&mut want_state.v, name, &[g.len()]));
                            let a = AdamW {
                                weight_decay: if decays { a.weight_decay } else { 0.0 },
                                ..a.clone()
                            };
                            a.update(p, g, m, v, 0.01, step, 1.0);
                        }
                        OptimizerConfig::Sgd(s) => {
                            let buf = (s.momentum != 0.0)
                                .then(|| f32_mut(buffer(&mut want_state.m, name, &[g.len()])));
                            let s = Sgd {
                                weight_decay: if decays { s.weight_decay } else { 0.0 },
                                ..s.clone()
                            };
                            s.update(p, g, buf, 0.01, 1.0);
                        }
                    }
                }
            }
            for (name, t) in &want {
                assert_eq!(params[name], *t, "{config:?}: {name}");
            }
            assert_eq!(opt.state.m.len(), want_state.m.len());
            for (name, t) in &want_state.m {
                assert_eq!(
                    opt.state.m[name].as_f32(),
                    t.as_f32(),
                    "{config:?}: m.{name}"
                );
            }
            for (name, t) in &want_state.v {
                assert_eq!(
                    opt.state.v[name].as_f32(),
                    t.as_f32(),
                    "{config:?}: v.{name}"
                );
            }
        }
    }
}
