// Attention pattern [B,H,T,T]: the applied weights, one invocation per query row (max, sum,
// write). Only built when a hook or output asks for it.

fn visible(t: u32, j: u32, b: u32, hh: u32) -> bool {
    return {{VISIBLE}};
}

fn score(head: u32, t: u32, j: u32, b: u32, hh: u32) -> f32 {
    var p = 0.0;
    for (var c = 0u; c < D; c = c + 1u) { p = p + {{Q}}[head + t * D + c] * {{K}}[head + j * D + c]; }
    let p_raw = p * SCALE;
    return {{SCORE}};
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
    var m = {{M_INIT}};
    var seen = {{SEEN_INIT}};
    for (var j = 0u; j < T; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let p = score(head, t, j, b, hh);
        let a = {{MAGNITUDE}};
        if (!seen || a > m) { m = a; seen = true; }
    }
    var z = {{Z_INIT}};
    for (var j = 0u; j < T; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        let p = score(head, t, j, b, hh);
        z = z + exp({{MAGNITUDE}} - m);
    }
    for (var j = 0u; j < T; j = j + 1u) {
        var w = 0.0;
        if (visible(t, j, b, hh) && z > 0.0) {
            let p = score(head, t, j, b, hh);
            let a = {{MAGNITUDE}};
            w = {{SIGN}} * {{PROB}};
        }
        {{OUT}}[row * T + j] = w;
    }
}
