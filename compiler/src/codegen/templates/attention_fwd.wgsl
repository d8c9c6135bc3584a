// Attention forward, FlashAttention-style: one invocation per (batch, head, query row t),
// one pass over the visible keys with an online normaliser — no T×T scores in memory.
// Rule: p = score(SCALE · q·k); a = f(p); weights = h(p) · exp(a − m) / (c·exp(−m) + Σ exp(a − m))
// over visible keys (softmax: h = 1, f = p, c = 0; signed: h = sign(p), f = |p|). The running
// max m is over a (and log c, a sink's constant); the numerator keeps h. Direct weights (no
// normaliser) are a = 0, h = φ(p) and a row factor of 1.
// Queries are read through a function, once per row: their rotation can be a prologue.

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
    var acc: array<f32, D>;
    for (var c = 0u; c < D; c = c + 1u) {
        q[c] = {{Q}}(head + t * D + c);
        acc[c] = 0.0;
    }
    var m = {{M_INIT}};
    var l = {{Z_INIT}};
    var seen = {{SEEN_INIT}};
    for (var j = {{J_BEGIN}}; j < {{J_END}}; j = j + 1u) {
        if (!visible(t, j, b, hh)) { continue; }
        var p = 0.0;
        for (var c = 0u; c < D; c = c + 1u) { p = p + q[c] * {{K}}[head + j * D + c]; }
        p = p * SCALE;
        let p_raw = p;
        p = {{SCORE}};
        let a = {{MAGNITUDE}};
        if (!seen) { m = a; seen = true; }
        if (a > m) {
            // A new maximum: rescale what was accumulated under the old one.
            let corr = exp(m - a);
            l = l * corr;
            for (var c = 0u; c < D; c = c + 1u) { acc[c] = acc[c] * corr; }
            m = a;
        }
        let e = exp(a - m);
        l = l + e;
        let w = {{SIGN}} * e;
        for (var c = 0u; c < D; c = c + 1u) { acc[c] = acc[c] + w * {{V}}[head + j * D + c]; }
    }
    // A row with no visible key gets 0 (as the reference's zero weights give).
    let inv = {{INV}};
    for (var c = 0u; c < D; c = c + 1u) { {{OUT}}[head + t * D + c] = acc[c] * inv; }
}
