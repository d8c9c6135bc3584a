//! Collapsed strided loops: every broadcast, permute and elementwise op of the fast path walks
//! its output in row-major order with one stride per operand per axis. Axes of size 1 are
//! dropped and neighbouring axes that stay contiguous for every operand are merged, so a
//! typical op runs as one or two nested loops with a unit- or zero-stride inner loop, instead
//! of building an offset table per element as the reference's `strided_offsets` does.

use super::simd::with_avx2;
use rayon::prelude::*;

/// Below this many output elements a loop runs on the calling thread: forking costs more.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// The loop nest of one op over `N` operands: `dims[k] = (extent, [stride of operand o])`,
/// outermost first. The output itself is contiguous.
#[derive(Clone, Debug)]
pub(crate) struct Nest<const N: usize> {
    pub dims: Vec<(usize, [usize; N])>,
}

/// Row-major strides of `shape` right-aligned to `out` with 0 on broadcast axes (numpy rules).
pub(crate) fn broadcast_strides(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let r = out.len();
    let off = r - shape.len();
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for k in (0..shape.len()).rev() {
        strides[off + k] = if shape[k] == 1 { 0 } else { s };
        s *= shape[k];
    }
    strides
}

impl<const N: usize> Nest<N> {
    /// The collapsed nest of an `out`-shaped loop reading operand `o` with `strides[o]`.
    pub fn new(out: &[usize], strides: [&[usize]; N]) -> Self {
        let mut dims: Vec<(usize, [usize; N])> = Vec::with_capacity(out.len());
        for (k, &n) in out.iter().enumerate() {
            if n == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|o| strides[o][k]);
            if let Some((pn, ps)) = dims.last_mut() {
                // The previous axis steps exactly over this one in every operand: merge.
                if (0..N).all(|o| ps[o] == s[o] * n) {
                    *pn *= n;
                    *ps = s;
                    continue;
                }
            }
            dims.push((n, s));
        }
        if dims.is_empty() {
            dims.push((1, [0; N]));
        }
        Nest { dims }
    }

    /// Extent of the innermost loop and the operands' strides along it.
    pub fn inner(&self) -> (usize, [usize; N]) {
        *self.dims.last().expect("a nest has at least one axis")
    }

    /// Total elements.
    pub fn len(&self) -> usize {
        self.dims.iter().map(|d| d.0).product()
    }

    /// Operand offsets of the first element of inner row `r`.
    fn row_offsets(&self, mut r: usize) -> [usize; N] {
        let mut off = [0usize; N];
        for &(n, s) in self.dims[..self.dims.len() - 1].iter().rev() {
            let i = r % n;
            r /= n;
            for o in 0..N {
                off[o] += i * s[o];
            }
        }
        off
    }

    /// Calls `f(out_row, operand offsets of its first element)` for every inner row of the
    /// output (or for pieces of it), in parallel over blocks of rows, or over pieces of the
    /// one row, when the op is large.
    pub fn for_rows<E: Send>(&self, out: &mut [E], f: impl Fn(&mut [E], [usize; N]) + Sync) {
        let (n, _) = self.inner();
        let rows = self.len() / n.max(1);
        if n == 0 || rows == 0 {
            return;
        }
        let run = |r0: usize, chunk: &mut [E]| {
            with_avx2!(|| {
                for (i, row) in chunk.chunks_mut(n).enumerate() {
                    f(row, self.row_offsets(r0 + i));
                }
            })
        };
        if out.len() >= PAR_MIN && rows == 1 {
            // One long row (a contiguous elementwise op collapses to one): split its columns.
            let (_, strides) = self.inner();
            let per = n.div_ceil(rayon::current_num_threads() * 4);
            out.par_chunks_mut(per).enumerate().for_each(|(c, chunk)| {
                with_avx2!(|| f(chunk, std::array::from_fn(|o| c * per * strides[o])))
            });
        } else if out.len() >= PAR_MIN {
            let per = rows.div_ceil(rayon::current_num_threads() * 4).max(1);
            out.par_chunks_mut(per * n)
                .enumerate()
                .for_each(|(c, chunk)| run(c * per, chunk));
        } else {
            run(0, out);
        }
    }
}

/// `out[i] = x[src(i)]` for a permuted view of contiguous `x` (`perm[k]` = source axis).
pub(crate) fn permute<E: Copy + Send + Sync>(
    x: &[E],
    shape: &[usize],
    perm: &[usize],
    out: &mut [E],
) {
    let strides = broadcast_strides(shape, shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let s: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    gather1(x, &Nest::new(&out_shape, [&s]), out);
}

/// `x` broadcast (numpy rules) to `out_shape`.
pub(crate) fn broadcast<E: Copy + Send + Sync>(
    x: &[E],
    shape: &[usize],
    out_shape: &[usize],
    out: &mut [E],
) {
    if x.len() == 1 {
        out.fill(x[0]);
        return;
    }
    let s = broadcast_strides(out_shape, shape);
    gather1(x, &Nest::new(out_shape, [&s]), out);
}

fn gather1<E: Copy + Send + Sync>(x: &[E], nest: &Nest<1>, out: &mut [E]) {
    let (_, [s]) = nest.inner();
    nest.for_rows(
        out,
        #[inline(always)]
        |row, [o]| match s {
            1 => row.copy_from_slice(&x[o..o + row.len()]),
            0 => row.fill(x[o]),
            s => {
                for (j, r) in row.iter_mut().enumerate() {
                    *r = x[o + j * s];
                }
            }
        },
    );
}

/// `out[i] = f(a[ia(i)], b[ib(i)])` over the broadcast shape, with the common inner-stride
/// cases (both unit, one broadcast) as their own loops so they vectorise.
pub(crate) fn zip<A, B, R>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out_shape: &[usize],
    out: &mut [R],
    f: impl Fn(A, B) -> R + Sync,
) where
    A: Copy + Sync,
    B: Copy + Sync,
    R: Send,
{
    let (ta, tb) = (
        broadcast_strides(out_shape, sa),
        broadcast_strides(out_shape, sb),
    );
    let nest = Nest::new(out_shape, [&ta, &tb]);
    let (_, [ia, ib]) = nest.inner();
    nest.for_rows(
        out,
        #[inline(always)]
        |row, [oa, ob]| {
            let n = row.len();
            match (ia, ib) {
                (1, 1) => {
                    for ((r, &x), &y) in row.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                        *r = f(x, y);
                    }
                }
                (1, 0) => {
                    let y = b[ob];
                    for (r, &x) in row.iter_mut().zip(&a[oa..oa + n]) {
                        *r = f(x, y);
                    }
                }
                (0, 1) => {
                    let x = a[oa];
                    for (r, &y) in row.iter_mut().zip(&b[ob..ob + n]) {
                        *r = f(x, y);
                    }
                }
                (ia, ib) => {
                    for (j, r) in row.iter_mut().enumerate() {
                        *r = f(a[oa + j * ia], b[ob + j * ib]);
                    }
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_merge_contiguous_axes_and_drop_unit_ones() {
        let s = broadcast_strides(&[2, 3, 4], &[2, 3, 4]);
        assert_eq!(Nest::new(&[2, 3, 4], [&s]).dims, vec![(24, [1])]);
        let b = broadcast_strides(&[2, 1, 4], &[4]);
        assert_eq!(Nest::new(&[2, 1, 4], [&b]).dims, vec![(2, [0]), (4, [1])]);
    }

    #[test]
    fn permute_and_broadcast_match_the_reference() {
        let x: Vec<i32> = (0..24).collect();
        let mut out = vec![0; 24];
        permute(&x, &[2, 3, 4], &[0, 2, 1], &mut out);
        assert_eq!(
            out,
            crate::cpu::shape_ops::permute(&x, &[2, 3, 4], &[0, 2, 1])
        );
        let y: Vec<i32> = (0..3).collect();
        let mut out = vec![0; 12];
        broadcast(&y, &[3, 1], &[3, 4], &mut out);
        assert_eq!(out, crate::cpu::shape_ops::broadcast(&y, &[3, 1], &[3, 4]));
    }

    #[test]
    fn zip_broadcasts_both_ways() {
        let a: Vec<i32> = (0..6).collect();
        let b = [10, 20];
        let mut out = vec![0; 6];
        zip(&a, &[3, 2], &b, &[2], &[3, 2], &mut out, |x, y| x + y);
        assert_eq!(out, vec![10, 21, 12, 23, 14, 25]);
        let mut out = vec![0; 6];
        zip(&b, &[2, 1], &a[..3], &[3], &[2, 3], &mut out, |x, y| x * y);
        assert_eq!(out, vec![0, 10, 20, 0, 20, 40]);
    }
}
