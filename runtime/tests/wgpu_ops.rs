//! Every IR op, forward, on the wgpu backend against the CPU reference (relative error
//! 1e-4; planned buffers are NaN-poisoned before each run so unwritten elements fail).

mod wgpu_support;
use wgpu_support::graphs::{self, Case};
use wgpu_support::{check_case, gpu_or_skip};

fn check(case: Case) {
    let Some(gpu) = gpu_or_skip() else { return };
    check_case(gpu, &case);
}

#[test]
fn unary_ops_and_their_gradients_match_cpu() {
    check(graphs::unary_ops());
}

#[test]
fn binary_compare_where_cast_pow_clamp_match_cpu() {
    check(graphs::binary_ops());
}

#[test]
fn reductions_scans_softmax_argmax_topk_match_cpu() {
    check(graphs::reduce_ops());
}

#[test]
fn matmul_with_transposes_and_broadcast_batches_matches_cpu() {
    check(graphs::matmul_ops());
}

#[test]
fn split_weight_gradients_match_cpu() {
    check(graphs::split_weight_gradient());
}

#[test]
fn shape_ops_indexing_cross_entropy_rope_match_cpu() {
    check(graphs::shape_ops());
}
