// Batched matmul C[batch, M, N] = op(A) · op(B), register-tiled: each invocation keeps a
// TM×TN block of C in registers (4 or 8 each, see `TileConfig::Register`; TN / 4 = CV
// adjacent vec4 column chunks) and streams K.
// No workgroup memory and no barriers: software adapters (lavapipe) run barriers very
// slowly, and register tiling wins there (`matmul_shared.wgsl` is the variant for GPUs).
// One launch may accumulate several products of the same M×N×K side by side (a horizontally
// fused group such as q, k, v from one normed input, or SwiGLU's gate and up): an A operand
// they share is loaded once per k.
// Transposes are strides: op(A)[m, k] = A[a0 + m * A_RS + k * A_CS], likewise B. Operands
// are read through functions (a load, or an inlined prologue); each store writes one element
// (directly, or through an epilogue on the accumulators).

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_id(wg, nwg, lid, {{WG}}u);
    if (id >= BATCH * TILES_M * TILES_N) { return; }
    let tn = id % TILES_N;
    let tm = (id / TILES_N) % TILES_M;
    let bi = id / (TILES_N * TILES_M);
    let m0 = tm * TM;
    let n0 = tn * TN;
    // Rows/columns past the edge read the last valid one (in bounds) and are never stored.
{{ROWS}}
{{SETUP}}
    for (var k = 0u; k < K; k = k + 1u) {
{{STEP}}
    }
{{TILES}}
    let c0 = bi * M * N;
    for (var r = 0u; r < TM; r = r + 1u) {
        let m = m0 + r;
        if (m >= M) { break; }
        for (var c = 0u; c < TN; c = c + 1u) {
            if (n0 + c < N) {
                let idx = c0 + m * N + n0 + c;
{{STORE}}
            }
        }
    }
}
