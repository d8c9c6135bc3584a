//! Indexing kernels: gather / scatter_add / one_hot, and cross-entropy.

use super::real::CpuReal;
use crate::error::RunError;
use rayon::prelude::*;

fn check_id(id: i32, bound: usize, op: &'static str, node: u32) -> Result<usize, RunError> {
    if id < 0 || id as usize >= bound {
        return Err(RunError::IndexOutOfRange {
            op,
            node,
            index: id as i64,
            bound,
        });
    }
    Ok(id as usize)
}

/// Rows of `table [R, row...]` at `ids`.
pub(crate) fn gather<E: Copy>(
    table: &[E],
    rows: usize,
    ids: &[i32],
    node: u32,
) -> Result<Vec<E>, RunError> {
    let row = table.len().checked_div(rows).unwrap_or(0);
    let mut out = Vec::with_capacity(ids.len() * row);
    for &id in ids {
        let r = check_id(id, rows, "gather", node)?;
        out.extend_from_slice(&table[r * row..(r + 1) * row]);
    }
    Ok(out)
}

/// `out[ids[i]] += src[i]` into a zero `[rows, row...]` tensor.
pub(crate) fn scatter_add<T: CpuReal>(
    src: &[T],
    ids: &[i32],
    rows: usize,
    node: u32,
) -> Result<Vec<T>, RunError> {
    let row = if ids.is_empty() {
        0
    } else {
        src.len() / ids.len()
    };
    let mut out = vec![T::zero(); rows * row];
    for (i, &id) in ids.iter().enumerate() {
        let r = check_id(id, rows, "scatter_add", node)?;
        for (o, &s) in out[r * row..(r + 1) * row]
            .iter_mut()
            .zip(&src[i * row..(i + 1) * row])
        {
            *o += s;
        }
    }
    Ok(out)
}

/// One-hot rows; ids outside `0..depth` (e.g. ignore = -1) give zero rows.
pub(crate) fn one_hot<T: CpuReal>(ids: &[i32], depth: usize) -> Vec<T> {
    let mut out = vec![T::zero(); ids.len() * depth];
    for (i, &id) in ids.iter().enumerate() {
        if id >= 0 && (id as usize) < depth {
            out[i * depth + id as usize] = T::one();
        }
    }
    out
}

/// Per-row `logsumexp(l) − l[t]`, 0 where `t < 0`.
pub(crate) fn cross_entropy<T: CpuReal>(
    logits: &[T],
    v: usize,
    targets: &[i32],
    node: u32,
) -> Result<Vec<T>, RunError> {
    targets
        .par_iter()
        .enumerate()
        .map(|(i, &t)| {
            if t < 0 {
                return Ok(T::zero());
            }
            let t = check_id(t, v, "cross_entropy", node)?;
            let row = &logits[i * v..(i + 1) * v];
            let m = row
                .iter()
                .fold(T::neg_infinity(), |a, &b| if b > a { b } else { a });
            let s = row.iter().fold(T::zero(), |a, &b| a + (b - m).exp());
            Ok(m + s.ln() - row[t])
        })
        .collect()
}
