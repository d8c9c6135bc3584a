// Attention backward, part 2 of 2: one invocation per key row j. With each query row's
// (m, z, δ) from part 1, recomputes the scores that see key j and accumulates
//   dk_j = SCALE · Σ_t dp_tj q_t,   dv_j = Σ_t w_tj dy_t
// writing slices 1 (dk) and 2 (dv) of the stacked [3,B,H,T,d] result. No atomics.

fn visible(t: u32, j: u32, b: u32, hh: u32) -> bool {
    return {{VISIBLE}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_id(wg, nwg, lid, {{WG}}u);
    if (row >= B * H * T) { return; }
    let j = row % T;
    let b = row / (H * T);
    let bh = row / T;
    let hh = bh % H;
    let head = bh * T * D;
    var k: array<f32, D>;
    var v: array<f32, D>;
    var dk: array<f32, D>;
    var dv: array<f32, D>;
    for (var c = 0u; c < D; c = c + 1u) {
        k[c] = {{K}}[head + j * D + c];
        v[c] = {{V}}[head + j * D + c];
        dk[c] = 0.0;
        dv[c] = 0.0;
    }
    for (var t = {{T_BEGIN}}; t < {{T_END}}; t = t + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        var g = 0.0;
        for (var c = 0u; c < D; c = c + 1u) {
            p = p + {{Q}}[head + t * D + c] * k[c];
            g = g + {{DY}}[head + t * D + c] * v[c];
        }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        let st = (bh * T + t) * 3u;
        let m = {{STATS}}[st];
        let z = {{STATS}}[st + 1u];
        let delta = {{STATS}}[st + 2u];
        let a = {{MAGNITUDE}};
        let s = {{PROB}};
        let dp = {{DP}};
        let w = {{SIGN}} * s;
        for (var c = 0u; c < D; c = c + 1u) {
            dk[c] = dk[c] + dp * {{Q}}[head + t * D + c];
            dv[c] = dv[c] + w * {{DY}}[head + t * D + c];
        }
    }
    let n = B * H * T * D;
    for (var c = 0u; c < D; c = c + 1u) {
        {{OUT}}[n + head + j * D + c] = SCALE * dk[c];
        {{OUT}}[2u * n + head + j * D + c] = dv[c];
    }
}
