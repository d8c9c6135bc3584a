//! Associative recall: key–value pairs among filler, then a query key; predict its value.

use super::{
    content_rng, eval_in_batches, Batch, DataError, DataSource, Sample, BOS, EVAL_SEQUENCES,
};
use crate::init::Rng;

/// `kv_recall(pairs, len)`: `len` input tokens — `pairs` adjacent `(key, value)` pairs at
/// random places among filler tokens, then the query marker [`BOS`] and one of the keys — and
/// the queried key's value as the answer (the target of the last input position).
///
/// Ids: keys, values and filler come from disjoint ranges of `[2, vocab)` (3/8, 3/8 and the
/// rest); keys within a sequence are distinct. The queried pair's place is uniform, or set by
/// `needle` ∈ [0, 1] (0 = start of the context, 1 = just before the query) for
/// lost-in-the-middle sweeps.
#[derive(Clone, Debug)]
pub struct KvRecall {
    pub pairs: usize,
    pub len: usize,
    pub vocab: usize,
    seed: u64,
    keys: (i32, i32),
    values: (i32, i32),
    filler: (i32, i32),
}

impl KvRecall {
    pub fn new(pairs: usize, len: usize, vocab: usize, seed: u64) -> Result<Self, DataError> {
        let avail = vocab.saturating_sub(2);
        let nk = avail * 3 / 8;
        let nv = avail * 3 / 8;
        let nf = avail - nk - nv;
        if pairs == 0 {
            return Err(DataError::config("pairs", "must be at least 1"));
        }
        if nk < pairs || nv < 2 || nf < 1 {
            return Err(DataError::config(
                "vocab",
                format!("= {vocab} is too small for {pairs} distinct keys (keys get 3/8 of the ids above 1: {nk})"),
            ));
        }
        if len < 2 * pairs + 2 {
            return Err(DataError::config(
                "len",
                format!(
                    "= {len} cannot hold {pairs} pairs plus the query (needs {})",
                    2 * pairs + 2
                ),
            ));
        }
        let k0 = 2i32;
        let v0 = k0 + nk as i32;
        let f0 = v0 + nv as i32;
        Ok(KvRecall {
            pairs,
            len,
            vocab,
            seed,
            keys: (k0, v0),
            values: (v0, f0),
            filler: (f0, vocab as i32),
        })
    }

    /// One sequence of `len + 1` tokens (the last is the answer). With `needle = Some(f)` the
    /// queried pair starts at about fraction `f` of the context before the query.
    pub fn sample(&self, rng: &mut Rng, needle: Option<f64>) -> Sample {
        let p = self.pairs;
        let content = self.len - 2;
        let free = content - 2 * p;
        // Pair i starts at c_i + 2i with c sorted in [0, free]: non-overlapping, uniform gaps.
        let (q, c) = match needle {
            None => {
                let mut c: Vec<usize> = (0..p)
                    .map(|_| rng.below(free as u64 + 1) as usize)
                    .collect();
                c.sort_unstable();
                (rng.below(p as u64) as usize, c)
            }
            Some(f) => {
                let f = f.clamp(0.0, 1.0);
                let q = (f * (p - 1) as f64).round() as usize;
                let cq = (f * free as f64).round() as usize;
                let mut c: Vec<usize> = (0..p)
                    .map(|i| match i.cmp(&q) {
                        std::cmp::Ordering::Less => rng.below(cq as u64 + 1) as usize,
                        std::cmp::Ordering::Equal => cq,
                        std::cmp::Ordering::Greater => {
                            cq + rng.below((free - cq) as u64 + 1) as usize
                        }
                    })
                    .collect();
                c[..q].sort_unstable();
                c[q + 1..].sort_unstable();
                (q, c)
            }
        };
        let keys = distinct(rng, self.keys, p);
        let values: Vec<i32> = (0..p).map(|_| draw(rng, self.values)).collect();
        let mut ids = Vec::with_capacity(self.len + 1);
        for (i, ci) in c.iter().enumerate() {
            let start = ci + 2 * i;
            while ids.len() < start {
                ids.push(draw(rng, self.filler));
            }
            ids.push(keys[i]);
            ids.push(values[i]);
        }
        while ids.len() < content {
            ids.push(draw(rng, self.filler));
        }
        ids.push(BOS);
        ids.push(keys[q]);
        let mut s = Sample::new();
        s.extend_prompt(&ids, 0, 0);
        s.extend_answer(&[values[q]], 0, 0, 0);
        s
    }

    /// The position of the queried key in `s` (for needle sweeps).
    pub fn needle_position(s: &Sample) -> Option<usize> {
        let key = *s.ids.get(s.len().checked_sub(2)?)?;
        s.ids[..s.len() - 3].iter().position(|&id| id == key)
    }

    /// A batch whose every queried pair sits at fraction `needle` of the context.
    pub fn batch_with_needle(
        &self,
        batch: usize,
        seq: usize,
        needle: f64,
        rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        self.check_seq(seq)?;
        let samples: Vec<Sample> = (0..batch).map(|_| self.sample(rng, Some(needle))).collect();
        Batch::from_samples(&samples, batch, seq)
    }

    fn check_seq(&self, seq: usize) -> Result<(), DataError> {
        if self.len > seq {
            return Err(DataError::TooLong {
                what: self.describe(),
                need: self.len + 1,
                seq,
            });
        }
        Ok(())
    }
}

fn draw(rng: &mut Rng, (lo, hi): (i32, i32)) -> i32 {
    lo + rng.below((hi - lo) as u64) as i32
}

/// `n` distinct ids from `[lo, hi)` (partial Fisher–Yates).
pub(crate) fn distinct(rng: &mut Rng, (lo, hi): (i32, i32), n: usize) -> Vec<i32> {
    let mut pool: Vec<i32> = (lo..hi).collect();
    for i in 0..n {
        let j = i + rng.below((pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool
}

impl DataSource for KvRecall {
    fn describe(&self) -> String {
        format!("kv_recall(pairs: {}, len: {})", self.pairs, self.len)
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
        self.check_seq(seq)?;
        let samples: Vec<Sample> = (0..batch).map(|_| self.sample(rng, None)).collect();
        Batch::from_samples(&samples, batch, seq)
    }

    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        self.check_seq(seq)?;
        let mut rng = content_rng(self.seed, "kv_recall.eval");
        eval_in_batches(EVAL_SEQUENCES, batch, seq, |_| {
            Ok(self.sample(&mut rng, None))
        })
    }

    fn token_text(&self, id: i32) -> String {
        let inr = |(lo, hi): (i32, i32)| (lo..hi).contains(&id);
        match id {
            0 => "<pad>".into(),
            BOS => "?".into(),
            _ if inr(self.keys) => format!("k{}", id - self.keys.0),
            _ if inr(self.values) => format!("v{}", id - self.values.0),
            _ if inr(self.filler) => format!("f{}", id - self.filler.0),
            _ => format!("<{id}>"),
        }
    }
}
