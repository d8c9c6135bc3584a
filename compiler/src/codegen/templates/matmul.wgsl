// Batched matmul C[batch, M, N] = op(A) · op(B), register-tiled: each invocation keeps a
// 4×4 block of C in registers and streams K. No workgroup memory and no barriers: software
// adapters (lavapipe) run barriers very slowly, and register tiling wins there.
// Transposes are strides: op(A)[m, k] = A[a0 + m * A_RS + k * A_CS], likewise B. Operands
// are read through functions (a load, or an inlined prologue); the store slot writes one
// element (directly, or through an epilogue on the accumulator).

fn a_base(bi: u32) -> u32 {
    return {{A_BATCH}};
}

fn b_base(bi: u32) -> u32 {
    return {{B_BATCH}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_id(wg, nwg, lid, {{WG}}u);
    if (id >= BATCH * TILES_M * TILES_N) { return; }
    let tn = id % TILES_N;
    let tm = (id / TILES_N) % TILES_M;
    let bi = id / (TILES_N * TILES_M);
    let m0 = tm * 4u;
    let n0 = tn * 4u;
    let a0 = a_base(bi);
    let b0 = b_base(bi);
    // Rows/columns past the edge read the last valid one (in bounds) and are never stored.
    let ra = vec4<u32>(min(m0, M - 1u), min(m0 + 1u, M - 1u), min(m0 + 2u, M - 1u),
                       min(m0 + 3u, M - 1u)) * A_RS + vec4<u32>(a0);
    let cb = vec4<u32>(min(n0, N - 1u), min(n0 + 1u, N - 1u), min(n0 + 2u, N - 1u),
                       min(n0 + 3u, N - 1u)) * B_CS + vec4<u32>(b0);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < K; k = k + 1u) {
        let ka = k * A_CS;
        let kb = k * B_RS;
        let a = vec4<f32>({{A}}(ra.x + ka), {{A}}(ra.y + ka), {{A}}(ra.z + ka), {{A}}(ra.w + ka));
        let b = vec4<f32>({{B}}(cb.x + kb), {{B}}(cb.y + kb), {{B}}(cb.z + kb), {{B}}(cb.w + kb));
        acc0 = acc0 + a.x * b;
        acc1 = acc1 + a.y * b;
        acc2 = acc2 + a.z * b;
        acc3 = acc3 + a.w * b;
    }
    let c0 = bi * M * N;
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r = r + 1u) {
        let m = m0 + r;
        if (m >= M) { break; }
        for (var c = 0u; c < 4u; c = c + 1u) {
            if (n0 + c < N) {
                let idx = c0 + m * N + n0 + c;
                {{STORE}}
            }
        }
    }
}
