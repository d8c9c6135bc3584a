// One AdamW update of one parameter (PyTorch's formulation, decoupled weight decay):
//   g <- (g_sum / k) * clip_scale
//   p <- p * (1 - lr*wd)            (matrices only)
//   m <- b1*m + (1-b1)*g            v <- b2*v + (1-b2)*g^2
//   p <- p - lr * (m / bc1) / (sqrt(v) / bc2_sqrt + eps)
// Skipped entirely when the gradient norm is not finite (the step fails; nothing changes).

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> info: Info;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if (!finite(norm[0])) {
        return;
    }
    let scale = norm[1];
    var decay = 1.0;
    if (info.decays != 0u) {
        decay = step.decay;
    }
    let stride = nwg.x * 256u;
    for (var i = gid.x; i < info.n; i += stride) {
        let gi = (g[i] * step.inv_k) * scale;
        let mi = step.beta1 * m[i] + step.one_minus_beta1 * gi;
        let vi = step.beta2 * v[i] + step.one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        let denom = sqrt(vi) / step.bc2_sqrt + step.eps;
        p[i] = p[i] * decay - step.lr * (mi / step.bc1) / denom;
    }
}
