// ---- prelude: helpers shared by every kernel --------------------------------------------
// Per-element semantics follow weft_compiler::ir::scalar, which the CPU reference uses too:
// sign(0) = 0, the overflow-free sigmoid, gelu's tanh approximation.

// Flat invocation index when a dispatch folds workgroups into y (65,535 per dimension).
fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + lid;
}

// f32 from its bits: WGSL has no inf/NaN literals.
fn f32_bits(b: u32) -> f32 {
    return bitcast<f32>(b);
}

fn sign0(x: f32) -> f32 {
    if (x > 0.0) { return 1.0; }
    if (x < 0.0) { return -1.0; }
    return x;
}

fn sigmoid_(x: f32) -> f32 {
    if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
    let e = exp(x);
    return e / (1.0 + e);
}

// tanh from exp of a non-positive argument (no overflow); odd symmetry by hand.
fn tanh_(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    // Below ~1e-2 the subtraction cancels; the series is exact to f32 there.
    let x2 = x * x;
    let small = x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    return select(select(-t, t, x >= 0.0), small, abs(x) < 0.01);
}

fn gelu_(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh_(u));
}

fn d_tanh(x: f32) -> f32 {
    let t = tanh_(x);
    return 1.0 - t * t;
}

fn d_sigmoid(x: f32) -> f32 {
    let s = sigmoid_(x);
    return s * (1.0 - s);
}

fn d_silu(x: f32) -> f32 {
    let s = sigmoid_(x);
    return s * (1.0 + x * (1.0 - s));
}

fn d_gelu(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let t = tanh_(u);
    let du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}

// i32 division as the reference defines it: division by zero (and MIN / -1) gives 0.
fn div_i32(a: i32, b: i32) -> i32 {
    if (b == 0i || (b == -1i && a == bitcast<i32>(0x80000000u))) { return 0i; }
    return a / b;
}
