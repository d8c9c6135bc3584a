// Max-shifted log-sum-exp along one axis, one invocation per lane ({{LOAD}} is the input);
// The last statement writes it (plain, or cross-entropy's `lse − x[target]`).
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = flat_id(wg, nwg, lid, {{WG}}u);
    if (lane >= LANES) { return; }
    let base = (lane / INNER) * EXTENT * INNER + lane % INNER;
    var m = {{LOAD}}(base);
    for (var j = 1u; j < EXTENT; j = j + 1u) {
        let x = {{LOAD}}(base + j * INNER);
        if (x > m) { m = x; }
    }
    var s = 0.0;
    for (var j = 0u; j < EXTENT; j = j + 1u) {
        s = s + exp({{LOAD}}(base + j * INNER) - m);
    }
    let lse = m + log(s);
    {{STORE}}
}
