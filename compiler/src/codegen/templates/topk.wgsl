// Top-k mask along one axis: element j is kept when fewer than K elements rank above it
// (larger, or equal with a lower index — the reference's stable sort).
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = flat_id(wg, nwg, lid, {{WG}}u);
    if (lane >= LANES) { return; }
    let base = (lane / INNER) * EXTENT * INNER + lane % INNER;
    for (var j = 0u; j < EXTENT; j = j + 1u) {
        let xj = {{LOAD}}(base + j * INNER);
        var above = 0u;
        for (var i = 0u; i < EXTENT; i = i + 1u) {
            let xi = {{LOAD}}(base + i * INNER);
            if (xi > xj || (xi == xj && i < j)) { above = above + 1u; }
        }
        {{OUT}}[base + j * INNER] = select(0.0, 1.0, above < K);
    }
}
