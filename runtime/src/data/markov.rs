//! A bigram language with repeated spans (METHODS §11.12 #5's "Markov chain with occasional
//! repeated spans"): a loss plateau from learning the chain, then a second drop once the
//! model learns to copy — grok-to-copy without natural text, and every id of `[2, vocab)` is
//! used, so copy probes on random ids test tokens the model has trained on.

use super::{content_rng, eval_in_batches, Batch, DataError, DataSource, Sample, EVAL_SEQUENCES};
use crate::init::Rng;

/// `markov(branching, repeat_p, span)`: a fixed random chain where each id in `[2, vocab)` has
/// `branching` successors (probabilities ∝ 1/rank); with probability `repeat_p` a sequence
/// also copies one earlier span of `span` tokens to a later place. Every position is a target.
#[derive(Clone, Debug)]
pub struct Markov {
    pub vocab: usize,
    pub branching: usize,
    pub repeat: f64,
    pub span: usize,
    /// `successors[id − 2]`: the ids that may follow `id`.
    successors: Vec<Vec<i32>>,
    seed: u64,
}

impl Markov {
    pub fn new(
        vocab: usize,
        branching: usize,
        repeat: f64,
        span: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if vocab < 4 {
            return Err(DataError::config(
                "vocab",
                format!("= {vocab}: needs at least 4 ids"),
            ));
        }
        if branching == 0 || branching > vocab - 2 {
            return Err(DataError::config(
                "branching",
                format!("= {branching}: must be in 1..={}", vocab - 2),
            ));
        }
        if !(0.0..=1.0).contains(&repeat) {
            return Err(DataError::config(
                "repeat",
                "must be a probability in [0, 1]",
            ));
        }
        if span == 0 {
            return Err(DataError::config("span", "must be at least 1"));
        }
        let mut rng = content_rng(seed, "markov.chain");
        let successors = (2..vocab)
            .map(|_| {
                (0..branching)
                    .map(|_| 2 + rng.below(vocab as u64 - 2) as i32)
                    .collect()
            })
            .collect();
        Ok(Markov {
            vocab,
            branching,
            repeat,
            span,
            successors,
            seed,
        })
    }

    /// The next id after `id`: successor `r` with probability ∝ 1/(r+1).
    fn step(&self, id: i32, rng: &mut Rng) -> i32 {
        let next = &self.successors[(id - 2) as usize];
        let total: f64 = (1..=next.len()).map(|r| 1.0 / r as f64).sum();
        let mut u = rng.uniform() * total;
        for (r, &n) in next.iter().enumerate() {
            u -= 1.0 / (r + 1) as f64;
            if u <= 0.0 {
                return n;
            }
        }
        next[next.len() - 1]
    }

    /// One sequence of `len + 1` tokens (inputs and the last target).
    pub fn sample(&self, len: usize, rng: &mut Rng) -> Sample {
        let n = len + 1;
        let mut ids = Vec::with_capacity(n);
        ids.push(2 + rng.below(self.vocab as u64 - 2) as i32);
        while ids.len() < n {
            let last = ids[ids.len() - 1];
            ids.push(self.step(last, rng));
        }
        // Copy [a, a + span) over [b, b + span) with a + span ≤ b: the second occurrence is
        // predictable only by looking back.
        if rng.uniform() < self.repeat && n > 2 * self.span {
            let a = rng.below((n - 2 * self.span) as u64) as usize;
            let b = a + self.span + rng.below((n - a - 2 * self.span + 1) as u64) as usize;
            for i in 0..self.span {
                ids[b + i] = ids[a + i];
            }
        }
        let mut s = Sample::new();
        s.extend_prompt(&ids, 0, 0);
        s
    }
}

impl DataSource for Markov {
    fn describe(&self) -> String {
        format!(
            "markov(branching: {}, repeat_p: {}, span: {}, vocab: {})",
            self.branching, self.repeat, self.span, self.vocab
        )
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
        let samples: Vec<Sample> = (0..batch).map(|_| self.sample(seq, rng)).collect();
        Batch::from_samples(&samples, batch, seq)
    }

    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        let mut rng = content_rng(self.seed, "markov.eval");
        eval_in_batches(EVAL_SEQUENCES, batch, seq, |_| {
            Ok(self.sample(seq, &mut rng))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_the_chain_and_repeats_spans() {
        let m = Markov::new(32, 3, 1.0, 6, 7).unwrap();
        let mut rng = Rng::new(1);
        let s = m.sample(40, &mut rng);
        assert_eq!(s.len(), 41);
        assert!(s.ids.iter().all(|&i| (2..32).contains(&i)));
        // Outside the copied span every transition is one of the chain's.
        let chain_steps = s
            .ids
            .windows(2)
            .filter(|w| m.successors[(w[0] - 2) as usize].contains(&w[1]))
            .count();
        assert!(
            chain_steps >= 40 - 2,
            "{chain_steps} of 40 transitions follow the chain"
        );
        // With repeat = 1 some span of 6 occurs twice.
        let twice = (0..=35).any(|a| (a + 6..=35).any(|b| s.ids[a..a + 6] == s.ids[b..b + 6]));
        assert!(twice);
        assert!(Markov::new(32, 0, 0.5, 4, 0).is_err());
        assert!(Markov::new(32, 3, 1.5, 4, 0).is_err());
    }
}
