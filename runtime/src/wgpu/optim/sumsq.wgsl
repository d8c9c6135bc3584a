// Sum of squares of one parameter's mean gradient, one partial sum per workgroup: each
// invocation strides over the gradient, then the workgroup adds its 256 values as a tree.
// Fixed dispatch sizes make the order, and so the result, the same on every run.

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> info: Info;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

var<workgroup> scratch: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var acc = 0.0;
    let stride = nwg.x * 256u;
    for (var i = wid.x * 256u + lid.x; i < info.n; i += stride) {
        let x = g[i] * step.inv_k;
        acc += x * x;
    }
    scratch[lid.x] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid.x < s) {
            scratch[lid.x] += scratch[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partials[info.part + wid.x] = scratch[0];
    }
}
