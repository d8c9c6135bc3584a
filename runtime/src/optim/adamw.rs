//! AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, PyTorch's formulation.

use serde::{Deserialize, Serialize};

/// AdamW hyperparameters; defaults are the `adamw()` builtin's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Peak learning rate (the schedule scales it per step).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled: `p ← p − lr·wd·p`, independent of the gradient's scale.
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamW {
    /// One update of one parameter, the `t`-th (1-based) step of the optimizer:
    ///
    /// ```text
    /// p ← p·(1 − lr·wd)
    /// m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
    /// p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε)
    /// ```
    ///
    /// Arithmetic is f64 per element, storage f32: the result depends only on the stored
    /// values, so a run resumed from a checkpoint continues bit-identically. Each gradient is
    /// read as `g·grad_scale` rounded to f32 (clipping's factor; 1 leaves it as it is).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        lr: f64,
        t: u64,
        grad_scale: f32,
    ) {
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powf(t as f64);
        let bc2_sqrt = (1.0 - b2.powf(t as f64)).sqrt();
        let decay = 1.0 - lr * self.weight_decay;
        for i in 0..p.len() {
            let gi = (g[i] * grad_scale) as f64;
            let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
            let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
            m[i] = mi as f32;
            v[i] = vi as f32;
            let denom = vi.sqrt() / bc2_sqrt + self.eps;
            p[i] = (p[i] as f64 * decay - lr * (mi / bc1) / denom) as f32;
        }
    }
}
