// Inclusive prefix sum along one axis ({{ORDER}}: forward, or a suffix sum in reverse), one
// invocation per lane.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = flat_id(wg, nwg, lid, {{WG}}u);
    if (lane >= LANES) { return; }
    let base = (lane / INNER) * EXTENT * INNER + lane % INNER;
    var acc = {{ZERO}};
    for (var jj = 0u; jj < EXTENT; jj = jj + 1u) {
        let j = {{ORDER}};
        acc = acc + {{LOAD}}(base + j * INNER);
        {{OUT}}[base + j * INNER] = acc;
    }
}
