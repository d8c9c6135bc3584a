//! One generated sequence with per-token annotations, before it is cut into inputs/targets.

/// A token sequence with, per token: the answer segment it belongs to (−1 = not an answer
/// token), its document id and its turn id. A row of a [`Batch`](super::Batch) is a sample's
/// first `seq` tokens as inputs and tokens `1..=seq` as targets, so a sample may be one token
/// longer than `seq` (its last token is then only predicted, never read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub ids: Vec<i32>,
    pub answer: Vec<i32>,
    pub segment: Vec<i32>,
    pub turn: Vec<i32>,
}

impl Sample {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one token.
    pub fn push(&mut self, id: i32, answer: i32, segment: i32, turn: i32) {
        self.ids.push(id);
        self.answer.push(answer);
        self.segment.push(segment);
        self.turn.push(turn);
    }

    /// Appends tokens that are not answers.
    pub fn extend_prompt(&mut self, ids: &[i32], segment: i32, turn: i32) {
        for &id in ids {
            self.push(id, -1, segment, turn);
        }
    }

    /// Appends the tokens of answer segment `k`.
    pub fn extend_answer(&mut self, ids: &[i32], k: i32, segment: i32, turn: i32) {
        for &id in ids {
            self.push(id, k, segment, turn);
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
