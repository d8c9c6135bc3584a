// Attention forward for GPUs, FlashAttention-2-style: a workgroup owns BQ consecutive query
// rows of one (batch, head) — one invocation per row — and streams the keys its rows can see
// through workgroup memory in blocks of BKV keys and values, so every key and value is read
// from global memory once per workgroup instead of once per row.
// An invocation's query and output accumulator live in registers as DV = ⌈D/4⌉ named vec4s
// (q0.., acc0..; the head size is known when the kernel is generated, so every loop over
// it is written out: arrays indexed in loops end up in slow local memory on GPUs). Keys are
// taken four at a time: their scores first, then one rescale of the accumulator if the
// four raised the running maximum, then their values.
// Rule: as in `attention_fwd.wgsl` (weights = h(p)·exp(a − m) / (c·exp(−m) + Σ exp(a − m))).
// Barriers are reached by every invocation: rows past T compute on the last row and store
// nothing, surplus workgroups of a dispatch folded into y compute the last block, and the
// key loop's bounds depend on the workgroup alone.

var<workgroup> ks: array<vec4<f32>, BKV * DV>;
var<workgroup> vs: array<vec4<f32>, BKV * DV>;

fn visible(t: u32, j: u32, b: u32, hh: u32) -> bool {
    return {{VISIBLE}};
}

@compute @workgroup_size(BQ)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tiles = (T + BQ - 1u) / BQ;
    let blocks = B * H * tiles;
    let block = wg.y * nwg.x + wg.x;
    let blk = min(block, blocks - 1u);
    let bh = blk / tiles;
    let t0 = (blk % tiles) * BQ;
    let live = block < blocks && t0 + lid < T;
    let t = min(t0 + lid, T - 1u);
    let b = bh / H;
    let hh = bh % H;
    let head = bh * T * D;
    // The query, pre-scaled, and the accumulator.
{{Q_LOAD}}
    var m = {{M_INIT}};
    var l = {{Z_INIT}};
    var seen = {{SEEN_INIT}};
    // The keys query t can see lie in [mine_begin, mine_end); both ends grow with t, so
    // the workgroup's rows see keys in [keys_begin, keys_end), from the first row's first
    // to the last row's last (uniform across the workgroup: the barriers' loop bound).
    let mine_begin = {{J_BEGIN}};
    let mine_end = {{J_END}};
    let t_last = min(t0 + BQ, T) - 1u;
    let keys_begin = {{KEYS_BEGIN}};
    let keys_end = {{KEYS_END}};
    for (var j0 = keys_begin; j0 < keys_end; j0 = j0 + BKV) {
        for (var e = lid; e < BKV * DV; e = e + BQ) {
            let j = min(j0 + e / DV, T - 1u);
            let c = 4u * (e % DV);
            var kx = vec4<f32>(0.0);
            var vx = vec4<f32>(0.0);
            for (var i = 0u; i < 4u; i = i + 1u) {
                if (c + i < D) {
                    kx[i] = {{K}}[head + j * D + c + i];
                    vx[i] = {{V}}[head + j * D + c + i];
                }
            }
            ks[e] = kx;
            vs[e] = vx;
        }
        workgroupBarrier();
        for (var jg = 0u; jg < BKV; jg = jg + 4u) {
{{KEYS}}
        }
        // Nobody overwrites the block while others still read it.
        workgroupBarrier();
    }
    if (live) {
        // A row with no visible key gets 0 (as the reference's zero weights give).
        let inv = {{INV}};
        let o = head + t * D;
{{STORE}}
    }
}
