//! Data movement: permute, broadcast, slice, concat, iota.

use super::layout::{broadcast_offsets, contiguous_strides, split_axis, strided_offsets};

pub(crate) fn permute<E: Copy>(x: &[E], shape: &[usize], perm: &[usize]) -> Vec<E> {
    let strides = contiguous_strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    strided_offsets(&out_shape, &out_strides, x.len())
        .into_iter()
        .map(|o| x[o])
        .collect()
}

pub(crate) fn broadcast<E: Copy>(x: &[E], shape: &[usize], out: &[usize]) -> Vec<E> {
    if x.len() == 1 {
        return vec![x[0]; out.iter().product()];
    }
    broadcast_offsets(out, shape)
        .into_iter()
        .map(|o| x[o])
        .collect()
}

pub(crate) fn slice<E: Copy>(
    x: &[E],
    shape: &[usize],
    axis: usize,
    start: usize,
    end: usize,
) -> Vec<E> {
    let (outer, n, inner) = split_axis(shape, axis);
    let mut out = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        out.extend_from_slice(&x[(o * n + start) * inner..(o * n + end) * inner]);
    }
    out
}

pub(crate) fn concat<E: Copy>(parts: &[(&[E], &[usize])], axis: usize) -> Vec<E> {
    let (outer, _, inner) = split_axis(parts[0].1, axis);
    let total: usize = parts.iter().map(|(x, _)| x.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (x, s) in parts {
            let block = s[axis] * inner;
            out.extend_from_slice(&x[o * block..(o + 1) * block]);
        }
    }
    out
}

/// The coordinate along `axis` of every element of `shape`.
pub(crate) fn iota(shape: &[usize], axis: usize) -> Vec<usize> {
    let (_, n, inner) = split_axis(shape, axis);
    (0..shape.iter().product::<usize>())
        .map(|i| (i / inner) % n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_slice_concat_iota() {
        let x: Vec<i32> = (0..6).collect(); // [[0,1,2],[3,4,5]]
        assert_eq!(permute(&x, &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(slice(&x, &[2, 3], 1, 1, 3), vec![1, 2, 4, 5]);
        let y = [9, 8];
        assert_eq!(
            concat(&[(&x[..], &[2, 3][..]), (&y[..], &[2, 1][..])], 1),
            vec![0, 1, 2, 9, 3, 4, 5, 8]
        );
        assert_eq!(iota(&[2, 3], 1), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast(&[1, 2], &[2, 1], &[2, 2]), vec![1, 1, 2, 2]);
    }
}
