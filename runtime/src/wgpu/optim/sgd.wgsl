// One SGD update of one parameter (PyTorch's formulation, L2 weight decay, no dampening):
//   g <- (g_sum / k) * clip_scale + wd*p      (wd for matrices only)
//   buf <- mu*buf + g; p <- p - lr*buf        (with momentum)
//   p <- p - lr*g                             (without: `buf` is a placeholder, unread)
// Skipped entirely when the gradient norm is not finite.

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> info: Info;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if (!finite(norm[0])) {
        return;
    }
    let scale = norm[1];
    var wd = 0.0;
    if (info.decays != 0u) {
        wd = step.decay;
    }
    let stride = nwg.x * 256u;
    for (var i = gid.x; i < info.n; i += stride) {
        let gi = (g[i] * step.inv_k) * scale + wd * p[i];
        if (step.momentum_on != 0u) {
            let bi = step.beta1 * buf[i] + gi;
            buf[i] = bi;
            p[i] = p[i] - step.lr * bi;
        } else {
            p[i] = p[i] - step.lr * gi;
        }
    }
}
