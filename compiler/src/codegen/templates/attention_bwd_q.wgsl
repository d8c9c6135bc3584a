// Attention backward, part 1 of 2: one invocation per query row t. Recomputes the row's
// scores, its max m and normaliser z, takes δ = dy_t·y_t, and accumulates
//   dq_t = SCALE · Σ_j dp_tj k_j,   dp_tj = {{DP}}
// with s the normalised |p|- or p-softmax weight and g = dy_t·v_j (METHODS §2.2). Stores
// (m, z, δ) per row in STATS for part 2, which needs them for every query of a key.
// The row's q, dy and dq live in registers as ⌈D/4⌉ named vec4s (q0.., dy0.., dq0..; the
// head size is known when the kernel is generated, so every loop over it is written out:
// arrays indexed in loops end up in slow local memory on GPUs).

fn visible(t: u32, j: u32, b: u32, hh: u32) -> bool {
    return {{VISIBLE}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_id(wg, nwg, lid, {{WG}}u);
    if (row >= B * H * T) { return; }
    let t = row % T;
    let b = row / (H * T);
    let hh = (row / T) % H;
    let head = (row / T) * T * D;
    let at_t = head + t * D;
{{LOAD}}
    var m = {{M_INIT}};
    var seen = {{SEEN_INIT}};
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let at_j = head + j * D;
        let p_raw = ({{QK}}) * SCALE;
        let p = {{SCORE}};
        let a = {{MAGNITUDE}};
        if (!seen || a > m) { m = a; seen = true; }
    }
    var z = {{Z_INIT}};
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let at_j = head + j * D;
        let p_raw = ({{QK}}) * SCALE;
        let p = {{SCORE}};
        z = z + exp({{MAGNITUDE}} - m);
    }
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let at_j = head + j * D;
        let p_raw = ({{QK}}) * SCALE;
        let g = {{GV}};
        let p = {{SCORE}};
        let a = {{MAGNITUDE}};
        let s = {{PROB}};
        let dp = {{DP}};
{{ACCUMULATE}}
    }
{{STORE}}
    {{STATS}}[row * 3u] = m;
    {{STATS}}[row * 3u + 1u] = z;
    {{STATS}}[row * 3u + 2u] = delta;
}
