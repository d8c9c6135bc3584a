// Attention backward, part 1 of 2: one invocation per query row t. Recomputes the row's
// scores, its max m and normaliser z, takes δ = dy_t·y_t, and accumulates
//   dq_t = SCALE · Σ_j dp_tj k_j,   dp_tj = {{DP}}
// with s the normalised |p|- or p-softmax weight and g = dy_t·v_j (METHODS §2.2). Stores
// (m, z, δ) per row in STATS for part 2, which needs them for every query of a key.

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
    var q: array<f32, D>;
    var dy: array<f32, D>;
    var dq: array<f32, D>;
    var delta = 0.0;
    for (var c = 0u; c < D; c = c + 1u) {
        q[c] = {{Q}}[head + t * D + c];
        dy[c] = {{DY}}[head + t * D + c];
        dq[c] = 0.0;
        delta = delta + dy[c] * {{Y}}[head + t * D + c];
    }
    var m = {{M_INIT}};
    var seen = {{SEEN_INIT}};
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        for (var c = 0u; c < D; c = c + 1u) { p = p + q[c] * {{K}}[head + j * D + c]; }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        let a = {{MAGNITUDE}};
        if (!seen || a > m) { m = a; seen = true; }
    }
    var z = {{Z_INIT}};
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        for (var c = 0u; c < D; c = c + 1u) { p = p + q[c] * {{K}}[head + j * D + c]; }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        z = z + exp({{MAGNITUDE}} - m);
    }
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        var g = 0.0;
        for (var c = 0u; c < D; c = c + 1u) {
            p = p + q[c] * {{K}}[head + j * D + c];
            g = g + dy[c] * {{V}}[head + j * D + c];
        }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        let a = {{MAGNITUDE}};
        let s = {{PROB}};
        let dp = {{DP}};
        for (var c = 0u; c < D; c = c + 1u) { dq[c] = dq[c] + dp * {{K}}[head + j * D + c]; }
    }
    for (var c = 0u; c < D; c = c + 1u) { {{OUT}}[head + t * D + c] = SCALE * dq[c]; }
    {{STATS}}[row * 3u] = m;
    {{STATS}}[row * 3u + 1u] = z;
    {{STATS}}[row * 3u + 2u] = delta;
}
