// Elementwise: one invocation per output element. Each stored value's fused chain is one
// function; a horizontally fused group stores several values of the same size.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wg, nwg, lid, {{WG}}u);
    if (i >= N) { return; }
{{STORES}}
}
