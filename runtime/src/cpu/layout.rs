//! Index arithmetic shared by the kernels.

/// Splits `shape` around `axis` into `(outer, extent, inner)` so that element
/// `(o, j, i)` lives at `(o · extent + j) · inner + i`.
pub(crate) fn split_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// For each element of an `out`-shaped tensor, the offset of the element it reads from a
/// tensor of shape `shape` broadcast to `out` (numpy rules, right-aligned).
pub(crate) fn broadcast_offsets(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let r = out.len();
    let off = r - shape.len();
    // Strides of the source, 0 on broadcast axes, aligned with `out`.
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for k in (0..shape.len()).rev() {
        strides[off + k] = if shape[k] == 1 { 0 } else { s };
        s *= shape[k];
    }
    strided_offsets(out, &strides, n)
}

/// Offsets `Σ_k idx_k · strides_k` for every multi-index of `shape`, in row-major order.
pub(crate) fn strided_offsets(shape: &[usize], strides: &[usize], n: usize) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(n);
    let r = shape.len();
    let mut idx = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..n {
        offsets.push(cur);
        // Odometer increment, updating the offset incrementally.
        for k in (0..r).rev() {
            idx[k] += 1;
            cur += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            cur -= strides[k] * idx[k];
            idx[k] = 0;
        }
    }
    offsets
}

/// Row-major strides of a contiguous tensor.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_offsets_repeat_the_source() {
        assert_eq!(broadcast_offsets(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_offsets(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_offsets(&[2, 2], &[]), vec![0; 4]);
    }

    #[test]
    fn strided_offsets_transpose() {
        // Reading a [2,3] tensor as its [3,2] transpose.
        assert_eq!(strided_offsets(&[3, 2], &[1, 3], 6), vec![0, 3, 1, 4, 2, 5]);
    }
}
