//! Induction score (METHODS §5.2): on `s ⊕ s`, the attention a second-copy token at n+i
//! pays to position i+1, right after its earlier occurrence, averaged over i = 0..n−2.

use super::data::repeated_tokens;
use super::{hook, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct InductionConfig {
    /// Length n of one copy.
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// Per-head induction scores.
#[derive(Clone, Debug, Serialize)]
pub struct InductionScore {
    pub len: usize,
    pub samples: usize,
    /// `scores[l][h]` = `I^{l,h}`, in [0, 1] for softmax heads (signed heads may go below 0).
    pub scores: Vec<Vec<f64>>,
}

/// `(1/(n−1)) Σ_{i=0}^{n−2} A[n+i, i+1]` per head, averaged over the batch, from one layer's
/// attention pattern `[B, H, T, T]` (T ≥ 2n) of sequences repeated with period n.
pub fn induction_from_pattern(pattern: &[f64], shape: &[usize], n: usize) -> Vec<f64> {
    let (b, h, t) = (shape[0], shape[1], shape[2]);
    assert!(
        n >= 2 && 2 * n <= t && shape[3] == t,
        "pattern {shape:?} does not hold two copies of length {n}"
    );
    (0..h)
        .map(|hi| {
            let mut s = 0.0;
            for bi in 0..b {
                let base = (bi * h + hi) * t * t;
                for i in 0..n - 1 {
                    s += pattern[base + (n + i) * t + i + 1];
                }
            }
            s / (b * (n - 1)) as f64
        })
        .collect()
}

/// Measures every head's induction score.
pub fn induction_score(model: &Model, cfg: &InductionConfig) -> Result<InductionScore, ProbeError> {
    let n = cfg.len;
    if n < 2 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "induction_score needs len ≥ 2 and samples ≥ 1 (got len {n}, samples {})",
            cfg.samples
        )));
    }
    let t = 2 * n;
    let tokens = repeated_tokens(
        &mut Rng::for_name(cfg.seed, "probe.induction"),
        cfg.samples,
        n,
        model.vocab(),
    );
    let (layers, heads) = (model.layers(), model.heads());
    let mut sums = vec![vec![0.0; heads]; layers];
    model.run_in_batches(&tokens, t, 8, &["layers.*.attn.pattern"], |_, out| {
        for (l, row) in sums.iter_mut().enumerate() {
            let p = hook(
                out,
                &hooks::join(&hooks::attn(l), hooks::attention::PATTERN),
            )?;
            let b = p.shape[0] as f64;
            for (s, x) in row
                .iter_mut()
                .zip(induction_from_pattern(&p.to_f64_vec(), &p.shape, n))
            {
                *s += x * b;
            }
        }
        Ok(())
    })?;
    let k = cfg.samples as f64;
    Ok(InductionScore {
        len: n,
        samples: cfg.samples,
        scores: sums
            .into_iter()
            .map(|r| r.into_iter().map(|s| s / k).collect())
            .collect(),
    })
}
