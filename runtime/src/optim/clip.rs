//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`).

use super::Gradients;

/// The L2 norm of all gradients taken together, accumulated in f64 in name order (the same
/// value on every run).
pub fn global_norm(grads: &Gradients) -> f64 {
    grads
        .iter()
        .flat_map(|(_, g)| g.as_f32().expect("gradients are f32"))
        .map(|&x| x as f64 * x as f64)
        .sum::<f64>()
        .sqrt()
}

/// Scales every gradient by `max_norm / (norm + 1e-6)` when the global norm exceeds
/// `max_norm`, and returns the norm measured *before* clipping (what gets logged).
/// `max_norm <= 0` turns clipping off (the norm is still returned). A non-finite norm is
/// returned as is and nothing is scaled, so the loop can see and report the blow-up.
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        grads.scale((max_norm / (norm + 1e-6)) as f32);
    }
    norm
}
