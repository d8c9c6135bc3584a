// Reduction along one axis: one invocation per lane. The input (with any fused elementwise
// prologue) is the function {{LOAD}}; element j of a lane is at base + j * INNER.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = flat_id(wg, nwg, lid, {{WG}}u);
    if (lane >= LANES) { return; }
    let base = (lane / INNER) * EXTENT * INNER + lane % INNER;
    // Left-to-right from the first element, as the reference folds.
    var acc = {{LOAD}}(base);
    var arg = 0u;
    for (var j = 1u; j < EXTENT; j = j + 1u) {
        let x = {{LOAD}}(base + j * INNER);
        {{COMBINE}}
    }
    {{OUT}}[lane] = {{RESULT}};
}
