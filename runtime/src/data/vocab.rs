//! Vocabulary extension with mean-initialised embedding rows (Masked Thought's `<mask>`).

use crate::tensor::Tensor;

/// Ids for `tokens` appended to a vocabulary of `vocab` ids: returns the new vocabulary size
/// and the new ids (`vocab, vocab + 1, ...`, in order).
pub fn extend_vocab(vocab: usize, tokens: &[String]) -> (usize, Vec<i32>) {
    let ids = (0..tokens.len()).map(|i| (vocab + i) as i32).collect();
    (vocab + tokens.len(), ids)
}

/// `t` with `n` slices appended along `axis`, each equal to the mean of the existing slices
/// along that axis: axis 0 for an embedding `[V, D]`, axis 1 for an unembedding `[D, V]`.
/// The mean is taken in f64.
///
/// # Panics
/// If `t` is not f32, `axis` is out of range, or the axis is empty (no mean).
pub fn append_mean_rows(t: &Tensor, axis: usize, n: usize) -> Tensor {
    let data = t.as_f32().expect("append_mean_rows needs an f32 tensor");
    assert!(
        axis < t.shape.len(),
        "axis {axis} out of range for shape {:?}",
        t.shape
    );
    let rows = t.shape[axis];
    assert!(rows > 0, "cannot take the mean of an empty axis");
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut shape = t.shape.clone();
    shape[axis] += n;
    let mut out = Vec::with_capacity(outer * (rows + n) * inner);
    for o in 0..outer {
        let block = &data[o * rows * inner..(o + 1) * rows * inner];
        out.extend_from_slice(block);
        let mean: Vec<f32> = (0..inner)
            .map(|i| {
                ((0..rows).map(|r| block[r * inner + i] as f64).sum::<f64>() / rows as f64) as f32
            })
            .collect();
        for _ in 0..n {
            out.extend_from_slice(&mean);
        }
    }
    Tensor::f32(&shape, out)
}
