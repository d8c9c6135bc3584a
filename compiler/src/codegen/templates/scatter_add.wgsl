// Scatter-add without float atomics: one invocation per output element sums, in index
// order (as the reference does), the source rows whose id is its row. Deterministic.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wg, nwg, lid, {{WG}}u);
    if (i >= N) { return; }
    let r = i32(i / ROW);
    let c = i % ROW;
    var acc = 0.0;
    for (var n = 0u; n < IDS; n = n + 1u) {
        if ({{IDS}}(n) == r) { acc = acc + {{SRC}}(n * ROW + c); }
    }
    {{OUT}}[i] = acc;
}
