//! Gradients by parameter name, gathered from a backward graph's `grad.{param}` outputs.

use crate::backend::Outputs;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// The prefix autodiff gives gradient outputs: `grad.{param}`.
pub const GRAD_PREFIX: &str = "grad.";

/// f32 gradients keyed by parameter name (without the `grad.` prefix), in name order so that
/// every reduction over them (norms, sums) runs in the same order on every run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients {
    grads: BTreeMap<String, Tensor>,
}

impl Gradients {
    /// No gradients.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every output named `grad.{param}`, as f32 (the CPU backend's f64 mode returns f64; it
    /// is rounded here because parameters and optimizer state are f32).
    pub fn from_outputs(out: &Outputs) -> Self {
        let grads = out
            .outputs
            .iter()
            .filter_map(|(name, t)| {
                let param = name.strip_prefix(GRAD_PREFIX)?;
                Some((param.to_string(), as_f32(t)))
            })
            .collect();
        Gradients { grads }
    }

    /// Adds (or replaces) the gradient of `param`. Non-f32 tensors are converted to f32.
    pub fn insert(&mut self, param: impl Into<String>, grad: Tensor) {
        self.grads.insert(param.into(), as_f32(&grad));
    }

    /// The gradient of `param`.
    pub fn get(&self, param: &str) -> Option<&Tensor> {
        self.grads.get(param)
    }

    /// Mutable f32 data of the gradient of `param`.
    pub fn get_mut(&mut self, param: &str) -> Option<&mut [f32]> {
        self.grads.get_mut(param).map(f32_mut)
    }

    /// Keeps only the gradients whose parameter name satisfies `keep` (e.g. a trainable
    /// glob set), so the optimizer leaves the others alone.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.grads.retain(|name, _| keep(name));
    }

    /// `(param, gradient)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.grads.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Mutable f32 data of every gradient, in name order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut [f32])> {
        self.grads.iter_mut().map(|(k, v)| (k.as_str(), f32_mut(v)))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether there are no gradients.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f32) {
        for (_, g) in self.iter_mut() {
            g.iter_mut().for_each(|x| *x *= factor);
        }
    }
}

fn as_f32(t: &Tensor) -> Tensor {
    match t.as_f32() {
        Some(_) => t.clone(),
        None => Tensor::f32(&t.shape, t.to_f32_vec()),
    }
}

fn f32_mut(t: &mut Tensor) -> &mut [f32] {
    match &mut t.data {
        crate::tensor::TensorData::F32(v) => v,
        // Every stored gradient went through `as_f32`.
        _ => unreachable!("gradients are stored as f32"),
    }
}
