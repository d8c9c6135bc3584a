// Shared by the optimizer kernels (prepended to each). Host f64 values arrive rounded to f32.

// Per-step scalars, written by the host once per optimizer step.
struct Step {
    lr: f32,
    // AdamW: 1 - lr * weight_decay; SGD: weight_decay. Applied to matrices only.
    decay: f32,
    // AdamW beta1; SGD momentum.
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    // 1 - beta1^t and sqrt(1 - beta2^t), t the 1-based step.
    bc1: f32,
    bc2_sqrt: f32,
    eps: f32,
    // 1 / micro-batches: the accumulated sum becomes the mean.
    inv_k: f32,
    // Global-norm threshold; <= 0 turns clipping off.
    clip: f32,
    // SGD: 1 when the momentum buffer is bound.
    momentum_on: u32,
}

// Per-parameter constants, written once.
struct Info {
    // Elements (for the norm kernel: partial sums).
    n: u32,
    // 1 for matrices and embeddings (weight decay applies), 0 otherwise.
    decays: u32,
    // This parameter's first slot in the partial sums, and how many it writes.
    part: u32,
    parts: u32,
}

// Neither infinite nor NaN, by the exponent bits (WGSL has no isnan, and a compiler may
// fold `x != x` away).
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}
