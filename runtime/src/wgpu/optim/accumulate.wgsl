// Gradient accumulation: adds one micro-batch's gradient to the running sum (the first
// micro-batch's is copied in; the update divides by their count).

@group(0) @binding(0) var<storage, read> info: Info;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let stride = nwg.x * 256u;
    for (var i = gid.x; i < info.n; i += stride) {
        acc[i] = acc[i] + g[i];
    }
}
