//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`).

use super::Gradients;
use rayon::prelude::*;

/// Elements per partial sum of [`global_norm`].
const CHUNK: usize = 1 << 14;

/// The L2 norm of all gradients taken together, accumulated in f64: partial sums over
/// fixed chunks in name order, computed in parallel and added in that order, so the value is
/// the same on every run and for any number of threads.
pub fn global_norm(grads: &Gradients) -> f64 {
    let chunks: Vec<&[f32]> = grads
        .iter()
        .flat_map(|(_, g)| g.as_f32().expect("gradients are f32").chunks(CHUNK))
        .collect();
    let parts: Vec<f64> = chunks
        .par_iter()
        .map(|c| c.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
        .collect();
    parts.iter().sum::<f64>().sqrt()
}

/// What clipping multiplies the gradients by: `max_norm / (norm + 1e-6)` when the global
/// norm exceeds `max_norm`, else 1 (also when `max_norm <= 0`, clipping off, or the norm is
/// not finite, so the loop can see and report the blow-up).
pub fn clip_factor(norm: f64, max_norm: f64) -> f32 {
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        (max_norm / (norm + 1e-6)) as f32
    } else {
        1.0
    }
}

/// Scales every gradient by [`clip_factor`] and returns the norm measured *before* clipping
/// (what gets logged). The training loop instead hands the factor to
/// `Optimizer::step_scaled`, which applies it as it reads each gradient (the same bits).
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    let factor = clip_factor(norm, max_norm);
    if factor != 1.0 {
        grads.scale(factor);
    }
    norm
}
