// Elementwise: one invocation per output element; the fused chain is the function {{ROOT}}.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wg, nwg, lid, {{WG}}u);
    if (i >= N) { return; }
    {{OUT}}[i] = {{ROOT}}(i);
}
