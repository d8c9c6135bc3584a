// Gradients of an attention rule's parameters, per query row: one invocation per (batch,
// head, query row t). Recomputes the row's scores, its max m and normaliser z, takes
// δ = dy_t·y_t, and writes, for each parameter k,
//   OUT[row, k] = Σ_j dL/ds_tj · ∂score_tj/∂θ_k
// with dL/ds_tj = {{DS}} (s the normalised probability, g = dy_t·v_j). The VJP sums the rows.

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
    var acc: array<f32, P>;
    var delta = 0.0;
    for (var c = 0u; c < D; c = c + 1u) {
        q[c] = {{Q}}[head + t * D + c];
        dy[c] = {{DY}}[head + t * D + c];
        delta = delta + dy[c] * {{Y}}[head + t * D + c];
    }
    for (var k = 0u; k < P; k = k + 1u) { acc[k] = 0.0; }
    var m = {{M_INIT}};
    var seen = {{SEEN_INIT}};
    for (var j = 0u; j < T; j = j + 1u) {
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
    for (var j = 0u; j < T; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        for (var c = 0u; c < D; c = c + 1u) { p = p + q[c] * {{K}}[head + j * D + c]; }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        z = z + exp({{MAGNITUDE}} - m);
    }
    for (var j = 0u; j < T; j = j + 1u) {
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
        let ds = {{DS}};
{{ACCUMULATE}}
    }
    for (var k = 0u; k < P; k = k + 1u) { {{OUT}}[row * P + k] = acc[k]; }
}
