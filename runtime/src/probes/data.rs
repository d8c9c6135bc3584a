//! Seeded probe inputs: repeated random tokens (copying, induction, PEAR's proxy), plain
//! random tokens, and the Cog collapse prompt pairs. Ids 0 and 1 are reserved (padding,
//! BOS), as in [`crate::data`], so random ids come from `[2, vocab)`.

use crate::init::Rng;

/// First id a random token may take.
pub const FIRST_ID: i32 = 2;

/// `samples` rows of `n` uniform ids from `[2, vocab)`, each followed by itself: row `b` is
/// `x_0 … x_{n−1} x_0 … x_{n−1}` (length 2n), flattened row-major.
pub fn repeated_tokens(rng: &mut Rng, samples: usize, n: usize, vocab: usize) -> Vec<i32> {
    let mut out = Vec::with_capacity(samples * 2 * n);
    for _ in 0..samples {
        let row = random_row(rng, n, vocab);
        out.extend_from_slice(&row);
        out.extend_from_slice(&row);
    }
    out
}

/// `samples × len` uniform ids from `[2, vocab)`.
pub fn random_tokens(rng: &mut Rng, samples: usize, len: usize, vocab: usize) -> Vec<i32> {
    (0..samples)
        .flat_map(|_| random_row(rng, len, vocab))
        .collect()
}

fn random_row(rng: &mut Rng, n: usize, vocab: usize) -> Vec<i32> {
    let span = vocab.saturating_sub(FIRST_ID as usize).max(1) as u64;
    (0..n).map(|_| FIRST_ID + rng.below(span) as i32).collect()
}

/// The two digit ids of the collapse prompts: the bytes `'0'` and `'1'` when the vocabulary
/// holds bytes, else ids 2 and 3.
pub fn digit_ids(vocab: usize) -> (i32, i32) {
    if vocab > b'1' as usize {
        (b'0' as i32, b'1' as i32)
    } else {
        (FIRST_ID, FIRST_ID + 1)
    }
}

/// Which Cog collapse prompt pair (METHODS §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CollapseTask {
    /// `'1'·(n+1)` against padding then `'1'·n`.
    CountOnes,
    /// `'0' '1'·n` against `'1' '1'·n`.
    FindZero,
}

/// The pair of length-(n+1) prompts that differ only in their first token.
pub fn collapse_pair(task: CollapseTask, n: usize, vocab: usize) -> (Vec<i32>, Vec<i32>) {
    let (zero, one) = digit_ids(vocab);
    let mut a = vec![one; n + 1];
    let mut b = vec![one; n + 1];
    match task {
        CollapseTask::CountOnes => b[0] = crate::data::PAD,
        CollapseTask::FindZero => a[0] = zero,
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_rows_repeat_and_avoid_reserved_ids() {
        let t = repeated_tokens(&mut Rng::new(3), 4, 5, 10);
        assert_eq!(t.len(), 40);
        for row in t.chunks(10) {
            assert_eq!(row[..5], row[5..]);
            assert!(row.iter().all(|&x| (2..10).contains(&x)));
        }
        let (a, b) = collapse_pair(CollapseTask::FindZero, 3, 256);
        assert_eq!(a.len(), 4);
        assert_eq!(a[1..], b[1..]);
        assert_ne!(a[0], b[0]);
    }
}
