// Attention backward, part 2 of 2: one invocation per key row j. With each query row's
// (m, z, δ) from part 1, recomputes the scores that see key j and accumulates
//   dk_j = SCALE · Σ_t dp_tj q_t,   dv_j = Σ_t w_tj dy_t
// writing slices 1 (dk) and 2 (dv) of the stacked [3,B,H,T,d] result. No atomics.
// The row's k, v, dk and dv live in registers as ⌈D/4⌉ named vec4s, as in part 1.

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
    let at_j = head + j * D;
{{LOAD}}
    for (var t = {{T_BEGIN}}; t < {{T_END}}; t = t + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let at_t = head + t * D;
        let p_raw = ({{QK}}) * SCALE;
        let g = {{GV}};
        let p = {{SCORE}};
        let st = (bh * T + t) * 3u;
        let m = {{STATS}}[st];
        let z = {{STATS}}[st + 1u];
        let delta = {{STATS}}[st + 2u];
        let a = {{MAGNITUDE}};
        let s = {{PROB}};
        let dp = {{DP}};
        let w = {{SIGN}} * s;
{{ACCUMULATE}}
    }
    let n = B * H * T * D;
{{STORE}}
}
