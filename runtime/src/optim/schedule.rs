//! Learning-rate schedules: a factor in [0, 1] of the optimizer's peak rate per step.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A learning-rate schedule; defaults of each variant are the builtin's (`constant()`, ...).
///
/// Steps are 0-based: `factor(step, total)` is the multiplier for the `step`-th optimizer
/// update of `total`. Warm-up is linear and reaches the peak at the last warm-up step:
/// `(step + 1) / warmup` for `step < warmup` (unlike HF's `step / warmup`, the first step does
/// not waste its batch on lr = 0). After warm-up the decay progress is
/// `(step − warmup) / (total − warmup)`, HF's convention, so the last step is one decay
/// increment above the final value rather than at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Peak rate after warm-up.
    Constant { warmup: u64 },
    /// Linear decay from the peak to `final_frac`·peak.
    Linear {
        warmup: u64,
        #[serde(rename = "final")]
        final_frac: f64,
    },
    /// Half-cosine decay from the peak to `floor`·peak.
    Cosine { warmup: u64, floor: f64 },
    /// Cosine from the peak to `floor`·peak at fraction `at` of training, then linear to 0
    /// at the end (MetaMath / Masked Thought).
    CosineTail { warmup: u64, floor: f64, at: f64 },
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Constant { warmup: 0 }
    }
}

impl Schedule {
    /// The multiplier of the peak rate for update `step` (0-based) of `total`.
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let warmup = match *self {
            Schedule::Constant { warmup }
            | Schedule::Linear { warmup, .. }
            | Schedule::Cosine { warmup, .. }
            | Schedule::CosineTail { warmup, .. } => warmup,
        };
        if step < warmup {
            return (step + 1) as f64 / warmup as f64;
        }
        let progress = |start: f64, end: f64| {
            if end <= start {
                1.0
            } else {
                ((step as f64 - start) / (end - start)).clamp(0.0, 1.0)
            }
        };
        let cosine = |floor: f64, x: f64| floor + (1.0 - floor) * 0.5 * (1.0 + (PI * x).cos());
        let (w, n) = (warmup as f64, total as f64);
        match *self {
            Schedule::Constant { .. } => 1.0,
            Schedule::Linear { final_frac, .. } => 1.0 - (1.0 - final_frac) * progress(w, n),
            Schedule::Cosine { floor, .. } => cosine(floor, progress(w, n)),
            Schedule::CosineTail { floor, at, .. } => {
                // The tail starts at `at`·total, but never inside the warm-up.
                let knee = (at * n).max(w);
                if (step as f64) < knee {
                    cosine(floor, progress(w, knee))
                } else {
                    floor * (1.0 - progress(knee, n))
                }
            }
        }
    }

    /// The learning rate for update `step` of `total` given the optimizer's peak rate.
    pub fn lr(&self, peak: f64, step: u64, total: u64) -> f64 {
        peak * self.factor(step, total)
    }
}
