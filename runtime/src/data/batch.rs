//! A training batch: the input tensors a lowered graph declares.

use super::{DataError, Sample, PAD};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// `B` rows of `T` positions. Every tensor is `[B, T]`; names match the graph inputs the
/// lowering declares, so [`Batch::to_inputs`] can be passed to a backend as is.
///
/// Invariants (checked by the tests): `targets[b,t]` is the next token `tokens[b,t+1]` of the
/// same sample, or −1 (no target: padding, the sample's end, or a document boundary — a target
/// never crosses from one document to the next); `answer_mask[b,t] = 1` exactly where
/// `answer_segments[b,t] ≥ 0`, and then `targets[b,t] ≥ 0`. Padding positions have token
/// [`PAD`], segment −1 and turn −1 (a block of their own under document or turn masks).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// i32 token ids.
    pub tokens: Tensor,
    /// i32 next-token targets, −1 = no target.
    pub targets: Tensor,
    /// f32, 1 where the position's target is an answer token.
    pub answer_mask: Tensor,
    /// i32, the demonstration index k of the answer segment whose target this is; −1 = none.
    pub answer_segments: Tensor,
    /// i32 document ids (for `mask: document`), numbered from 0 within each row.
    pub segments: Tensor,
    /// i32 turn ids (for `mask: turns`); turn 0 is the instruction / task id.
    pub turns: Tensor,
}

impl Batch {
    /// Rows from `samples` (inputs = tokens `0..seq`, targets = tokens `1..=seq`), then empty
    /// rows up to `batch`. A sample longer than `seq + 1` is an error.
    pub fn from_samples(samples: &[Sample], batch: usize, seq: usize) -> Result<Batch, DataError> {
        assert!(
            samples.len() <= batch,
            "{} samples for {batch} rows",
            samples.len()
        );
        let n = batch * seq;
        let mut tokens = vec![PAD; n];
        let mut targets = vec![-1; n];
        let mut answer_mask = vec![0.0f32; n];
        let mut answer_segments = vec![-1; n];
        let mut segments = vec![-1; n];
        let mut turns = vec![-1; n];
        for (b, s) in samples.iter().enumerate() {
            if s.len() > seq + 1 {
                return Err(DataError::TooLong {
                    what: "generated".into(),
                    need: s.len(),
                    seq,
                });
            }
            let row = b * seq;
            for t in 0..seq.min(s.len()) {
                tokens[row + t] = s.ids[t];
                segments[row + t] = s.segment[t];
                turns[row + t] = s.turn[t];
                // The next token is a target only inside the same document.
                if t + 1 < s.len() && s.segment[t + 1] == s.segment[t] {
                    targets[row + t] = s.ids[t + 1];
                    if s.answer[t + 1] >= 0 {
                        answer_mask[row + t] = 1.0;
                        answer_segments[row + t] = s.answer[t + 1];
                    }
                }
            }
        }
        let shape = [batch, seq];
        Ok(Batch {
            tokens: Tensor::i32(&shape, tokens),
            targets: Tensor::i32(&shape, targets),
            answer_mask: Tensor::f32(&shape, answer_mask),
            answer_segments: Tensor::i32(&shape, answer_segments),
            segments: Tensor::i32(&shape, segments),
            turns: Tensor::i32(&shape, turns),
        })
    }

    /// Prompts right-aligned in `seq` positions with padding on the left, so that the last
    /// tokens of every prompt share positions (Batch-ICL's 1-shot and zero-shot prompts). No
    /// position has a target; the prompt's own segment and turn ids are 0.
    pub fn left_padded(prompts: &[Vec<i32>], seq: usize) -> Result<Batch, DataError> {
        let samples = prompts
            .iter()
            .map(|p| {
                if p.len() > seq {
                    return Err(DataError::TooLong {
                        what: "prompt".into(),
                        need: p.len(),
                        seq: seq.saturating_sub(1),
                    });
                }
                let mut s = Sample::new();
                for _ in p.len()..seq {
                    s.push(PAD, -1, -1, -1);
                }
                s.extend_prompt(p, 0, 0);
                Ok(s)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Batch::from_samples(&samples, prompts.len(), seq)
    }

    /// Rows B.
    pub fn batch_size(&self) -> usize {
        self.tokens.shape[0]
    }

    /// Positions per row T.
    pub fn seq_len(&self) -> usize {
        self.tokens.shape[1]
    }

    /// The tensors by graph-input name: `tokens`, `targets`, `answer_mask`, `answer_segments`,
    /// `segments`, `turns`. Backends look inputs up by name, so unused ones are harmless.
    pub fn to_inputs(&self) -> HashMap<String, Tensor> {
        [
            ("tokens", &self.tokens),
            ("targets", &self.targets),
            ("answer_mask", &self.answer_mask),
            ("answer_segments", &self.answer_segments),
            ("segments", &self.segments),
            ("turns", &self.turns),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// Positions with a target (what a token count for `tokens_per_s` should use).
    pub fn target_count(&self) -> usize {
        self.targets
            .as_i32()
            .expect("i32 targets")
            .iter()
            .filter(|&&t| t >= 0)
            .count()
    }

    /// i32 data of `tokens`.
    pub fn token_ids(&self) -> &[i32] {
        self.tokens.as_i32().expect("i32 tokens")
    }
}
