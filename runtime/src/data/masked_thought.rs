//! Masked Thought (METHODS §9.2–9.3): corrupt answer tokens in the input, keep the labels.

use super::Batch;
use crate::init::Rng;
use crate::tensor::TensorData;

/// What a selected answer token becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// A dedicated `<mask>` id (e.g. one added by [`extend_vocab`](super::extend_vocab)).
    Mask(i32),
    /// A uniformly random id from `low..high` (the main repo's `--replace` mode).
    Random { low: i32, high: i32 },
}

/// `masked_thought(p, warmup, replace)`: each answer token of the *input* is replaced with
/// probability `p_t = min(p, p · step / (total · warmup + 1))` (a linear rise over the first
/// `warmup` fraction of training). Prompt tokens and padding are never touched; targets,
/// masks and ids are unchanged, so a masked token is still supervised at the position before
/// it, while later positions see the replacement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedThought {
    pub p: f64,
    pub warmup: f64,
    pub replace: Replacement,
}

impl MaskedThought {
    /// The mask rate at optimizer step `step` of `total`.
    pub fn rate(&self, step: u64, total: u64) -> f64 {
        self.p
            .min(self.p * step as f64 / (total as f64 * self.warmup + 1.0))
    }

    /// Applies the transform in place; returns how many tokens were replaced.
    ///
    /// An input position `t` holds an answer token exactly when the position before it has an
    /// answer target (`answer_mask[t−1] = 1`, whose target is `tokens[t]`), so only those are
    /// candidates — which also excludes padding and every prompt token.
    pub fn apply(&self, batch: &mut Batch, step: u64, total: u64, rng: &mut Rng) -> usize {
        let p = self.rate(step, total);
        let (b, t) = (batch.batch_size(), batch.seq_len());
        let answer = batch
            .answer_mask
            .as_f32()
            .expect("f32 answer_mask")
            .to_vec();
        let TensorData::I32(tokens) = &mut batch.tokens.data else {
            panic!("tokens must be i32");
        };
        let mut replaced = 0;
        for row in 0..b {
            for pos in 1..t {
                let i = row * t + pos;
                if answer[i - 1] == 0.0 || rng.uniform() >= p {
                    continue;
                }
                tokens[i] = match self.replace {
                    Replacement::Mask(id) => id,
                    Replacement::Random { low, high } => {
                        low + rng.below((high - low) as u64) as i32
                    }
                };
                replaced += 1;
            }
        }
        replaced
    }
}
