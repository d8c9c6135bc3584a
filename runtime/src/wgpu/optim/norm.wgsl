// The global gradient norm from every parameter's partial sums (one workgroup), and the
// factor clipping scales gradients by: norm[0] = sqrt(sum), norm[1] = clip / (norm + 1e-6)
// when the norm exceeds the threshold, else 1 (PyTorch's clip_grad_norm_). A micro-batch
// whose loss is not finite makes norm[0] that loss instead: the update kernels skip a step
// whose norm is not finite, so a NaN loss leaves the parameters it came from in place even
// when its gradients are finite (a NaN in a term without gradient).

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> info: Info;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;
@group(0) @binding(4) var<storage, read> losses: array<f32>;

var<workgroup> scratch: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < info.n; i += 256u) {
        acc += partials[i];
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
        var total = sqrt(scratch[0]);
        for (var k = 0u; k < arrayLength(&losses); k += 1u) {
            if (!finite(losses[k])) {
                total = losses[k];
            }
        }
        var scale = 1.0;
        if (step.clip > 0.0 && total > step.clip) {
            scale = step.clip / (total + 1e-6);
        }
        norm[0] = total;
        norm[1] = scale;
    }
}
