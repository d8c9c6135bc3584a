// Reduction along one axis for long lanes (EXTENT ≥ `lane::WIDE_EXTENT`): one workgroup per
// lane instead of one invocation, which would fold a loss over millions of elements serially.
// Invocation i folds elements i, i + WG, i + 2·WG, … of the lane (consecutive invocations
// read consecutive elements when INNER = 1), then the partial results are combined in
// workgroup memory by halving. The fold order differs from the reference's left to right, so
// sums agree within rounding, not bit for bit. Every invocation reaches every barrier: the
// lane comes from the workgroup id alone and surplus workgroups compute the last lane.

var<workgroup> part: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = wg.y * nwg.x + wg.x;
    let l = min(lane, LANES - 1u);
    let base = (l / INNER) * EXTENT * INNER + l % INNER;
    // EXTENT ≥ WG: every invocation starts from an element of its own.
    var acc = {{LOAD}}(base + lid * INNER);
    for (var j = lid + {{WG}}u; j < EXTENT; j = j + {{WG}}u) {
        let x = {{LOAD}}(base + j * INNER);
        {{COMBINE}}
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var half = {{WG}}u / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            acc = part[lid];
            let x = part[lid + half];
            {{COMBINE}}
            part[lid] = acc;
        }
        workgroupBarrier();
    }
    if (lane < LANES && lid == 0u) {
        acc = part[0];
        {{OUT}}[lane] = {{RESULT}};
    }
}
