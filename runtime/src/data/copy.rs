//! Repeated random tokens `s ⊕ s` (PEAR's proxy task, grok-to-copy, induction scores).

use super::{content_rng, eval_in_batches, Batch, DataError, DataSource, Sample, EVAL_SEQUENCES};
use crate::init::Rng;

/// `copy_task(len, vocab)`: `n = len` ids uniform in `[2, vocab)`, then the same `n` again.
/// The second copy is answer segment 0, so the answer targets are the positions `n−1 ..= 2n−2`
/// (the first of them, predicting the start of the second copy, is as unpredictable as any
/// first-half token; PEAR's labels include it too). Rows longer than `2n` are padded.
#[derive(Clone, Debug)]
pub struct CopyTask {
    pub len: usize,
    pub vocab: usize,
    seed: u64,
}

impl CopyTask {
    pub fn new(len: usize, vocab: usize, seed: u64) -> Result<Self, DataError> {
        if len == 0 {
            return Err(DataError::config("len", "must be at least 1"));
        }
        if vocab < 3 {
            return Err(DataError::config(
                "vocab",
                format!("= {vocab}: ids are drawn from [2, vocab), so it must be at least 3"),
            ));
        }
        Ok(CopyTask { len, vocab, seed })
    }

    /// One `s ⊕ s` sample.
    pub fn sample(&self, rng: &mut Rng) -> Sample {
        let s: Vec<i32> = (0..self.len)
            .map(|_| 2 + rng.below(self.vocab as u64 - 2) as i32)
            .collect();
        let mut out = Sample::new();
        out.extend_prompt(&s, 0, 0);
        out.extend_answer(&s, 0, 0, 0);
        out
    }
}

impl DataSource for CopyTask {
    fn describe(&self) -> String {
        format!("copy_task(len: {}, vocab: {})", self.len, self.vocab)
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn next_batch(
        &self,
        batch: usize,
        seq: usize,
        _step: u64,
        rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        let samples: Vec<Sample> = (0..batch).map(|_| self.sample(rng)).collect();
        Batch::from_samples(&samples, batch, seq)
    }

    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        let mut rng = content_rng(self.seed, "copy.eval");
        eval_in_batches(EVAL_SEQUENCES, batch, seq, |_| Ok(self.sample(&mut rng)))
    }
}
