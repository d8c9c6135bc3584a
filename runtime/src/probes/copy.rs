//! Copy accuracy (METHODS §5.2): greedy next-token accuracy on the second copy of repeated
//! random tokens.

use super::data::repeated_tokens;
use super::readout::argmax;
use super::{logits, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;

/// What to measure.
#[derive(Clone, Debug)]
pub struct CopyConfig {
    /// Length n of one copy (sequences are 2n long).
    pub len: usize,
    /// Number of sequences.
    pub samples: usize,
    pub seed: u64,
}

/// Copy accuracy of a model.
#[derive(Clone, Debug, Serialize)]
pub struct CopyAccuracy {
    pub len: usize,
    pub samples: usize,
    /// Mean over sequences and i = 1..n−1 of `argmax p(· | s, s_1..s_i) == s_{i+1}`.
    pub accuracy: f64,
    /// Fraction of sequences whose whole second copy (after its first token) is predicted.
    pub exact_match: f64,
    /// Accuracy at each i = 1..n−1 (index 0 is i = 1).
    pub by_position: Vec<f64>,
}

/// Measures copy accuracy on `samples` seeded sequences `s ⊕ s`.
pub fn copy_accuracy(model: &Model, cfg: &CopyConfig) -> Result<CopyAccuracy, ProbeError> {
    let n = cfg.len;
    if n < 2 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "copy_accuracy needs len ≥ 2 and samples ≥ 1 (got len {n}, samples {})",
            cfg.samples
        )));
    }
    let t = 2 * n;
    let v = model.vocab();
    let tokens = repeated_tokens(
        &mut Rng::for_name(cfg.seed, "probe.copy"),
        cfg.samples,
        n,
        v,
    );
    let mut hits = vec![0usize; n - 1];
    let mut exact = 0usize;
    model.run_in_batches(&tokens, t, 16, &[], |first, out| {
        let lg = logits(out)?.to_f64_vec();
        for (b, row) in lg.chunks(t * v).enumerate() {
            let toks = &tokens[(first + b) * t..(first + b + 1) * t];
            let mut all = true;
            // Position p = n+i−1 has seen s and s_1..s_i; it should predict s_{i+1} = toks[p+1].
            for i in 1..n {
                let p = n + i - 1;
                let ok = argmax(&row[p * v..(p + 1) * v]) as i32 == toks[p + 1];
                hits[i - 1] += usize::from(ok);
                all &= ok;
            }
            exact += usize::from(all);
        }
        Ok(())
    })?;
    let s = cfg.samples as f64;
    let by_position: Vec<f64> = hits.iter().map(|&h| h as f64 / s).collect();
    Ok(CopyAccuracy {
        len: n,
        samples: cfg.samples,
        accuracy: super::mean(&by_position),
        exact_match: exact as f64 / s,
        by_position,
    })
}
