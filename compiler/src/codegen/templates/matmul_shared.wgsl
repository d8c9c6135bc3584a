// Batched matmul C[batch, M, N] = op(A) · op(B), workgroup-tiled (`TileConfig::Workgroup`):
// a workgroup computes one BM×BN block of C, each of its invocations a TM×TN sub-block held
// in registers: TN / 4 = CV vec4 column chunks, BN / CV columns apart, so that neighbouring
// invocations read neighbouring vec4s of the B slice (no bank conflicts). K is walked in chunks of BK: the workgroup first stages the chunk's BM×BK
// slice of each A operand and BK×BN slice of each B operand in workgroup memory — every
// element loaded once from global memory, through the operand's function, so prologues work
// as in `matmul.wgsl` — then every invocation reads its rows and columns from there. This
// is the standard GEMM of real GPUs; the register kernel re-reads each operand element once
// per invocation that needs it.
// Slices are stored k-major with padded rows (SA, SB floats apart; `tiling::SLICE_PAD`), as
// vec4s: the K loop reads four rows of A, or four columns of B, per workgroup-memory load.
// Edges: rows and columns past M and N stage the last valid one and are never stored; k past
// K stages zeros, so the chunk adds nothing. Several products of one size (a horizontally
// fused group) accumulate side by side as in `matmul.wgsl`, sharing A's slices.
// Barriers must be reached by every invocation: nothing returns early, and surplus
// workgroups of a dispatch folded into y recompute the last block and store nothing.

{{SHARED}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let blocks = BATCH * TILES_M * TILES_N;
    let block = wg.y * nwg.x + wg.x;
    let live = block < blocks;
    let blk = min(block, blocks - 1u);
    let tn = blk % TILES_N;
    let tm = (blk / TILES_N) % TILES_M;
    let bi = blk / (TILES_N * TILES_M);
    let bm0 = tm * BM;
    let bn0 = tn * BN;
    // This invocation's sub-block: rows lr.., columns lc.. (and lc + BN / CV.. when CV = 2).
    let lr = (lid / (BN / TN)) * TM;
    let lc = (lid % (BN / TN)) * 4u;
    let m0 = bm0 + lr;
    let n0 = bn0 + lc;
{{ROWS}}
{{SETUP}}
    for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
{{STAGE}}
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
{{STEP}}
        }
        // Nobody overwrites the slices while others still read them.
        workgroupBarrier();
    }
{{TILES}}
    if (live) {
        let c0 = bi * M * N;
        for (var r = 0u; r < TM; r = r + 1u) {
            let m = m0 + r;
            if (m >= M) { break; }
            for (var c = 0u; c < TN; c = c + 1u) {
                let n = n0 + (c / 4u) * (BN / CV) + c % 4u;
                if (n < N) {
                    let idx = c0 + m * N + n;
{{STORE}}
                }
            }
        }
    }
}
