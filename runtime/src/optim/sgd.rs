//! SGD with momentum and L2 weight decay, PyTorch's formulation (no dampening, no Nesterov).

use serde::{Deserialize, Serialize};

/// SGD hyperparameters; defaults are the `sgd()` builtin's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    /// Peak learning rate (the schedule scales it per step).
    pub lr: f64,
    /// 0 disables the momentum buffer.
    pub momentum: f64,
    /// L2: added to the gradient (`g ← g + wd·p`), so momentum carries it too.
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 1e-2,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

impl Sgd {
    /// One update of one parameter:
    ///
    /// ```text
    /// g ← g + wd·p
    /// buf ← μ·buf + g          (buf starts at 0, so the first step has buf = g)
    /// p ← p − lr·buf           (p ← p − lr·g without momentum)
    /// ```
    ///
    /// Each gradient is read as `g·grad_scale` rounded to f32 (clipping's factor).
    pub fn update(
        &self,
        p: &mut [f32],
        g: &[f32],
        buf: Option<&mut [f32]>,
        lr: f64,
        grad_scale: f32,
    ) {
        match buf {
            Some(buf) => {
                for i in 0..p.len() {
                    let gi = (g[i] * grad_scale) as f64 + self.weight_decay * p[i] as f64;
                    let bi = self.momentum * buf[i] as f64 + gi;
                    buf[i] = bi as f32;
                    p[i] = (p[i] as f64 - lr * bi) as f32;
                }
            }
            None => {
                for i in 0..p.len() {
                    let gi = (g[i] * grad_scale) as f64 + self.weight_decay * p[i] as f64;
                    p[i] = (p[i] as f64 - lr * gi) as f32;
                }
            }
        }
    }
}
