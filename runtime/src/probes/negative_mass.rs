//! Negative attention mass per head (Cog attention, METHODS §2): the share of a query's
//! total |weight| that is negative, averaged over queries and sequences of random tokens.
//! 0 for softmax heads; a signed head that subtracts tokens shows how much it does.

use super::data::random_tokens;
use super::{hook, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct NegativeMassConfig {
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// Per-head negative mass.
#[derive(Clone, Debug, Serialize)]
pub struct NegativeMass {
    pub len: usize,
    /// `mass[l][h]` = mean over queries of `Σ_k max(−w_k, 0) / Σ_k |w_k|`, in [0, 1].
    pub mass: Vec<Vec<f64>>,
    /// `fraction[l][h]`: share of visible (q ≥ k) weights that are negative.
    pub fraction: Vec<Vec<f64>>,
}

/// Per-head sums of the per-query negative share and of the negative count, from one
/// `[B,H,T,T]` pattern (causal: keys k ≤ q).
pub fn negative_share(pattern: &[f64], shape: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (b, h, t) = (shape[0], shape[1], shape[2]);
    let (mut share, mut count) = (vec![0.0; h], vec![0.0; h]);
    for bi in 0..b {
        for hi in 0..h {
            for q in 0..t {
                let row =
                    &pattern[((bi * h + hi) * t + q) * t..((bi * h + hi) * t + q) * t + q + 1];
                let tot: f64 = row.iter().map(|w| w.abs()).sum();
                let neg: f64 = row.iter().filter(|w| **w < 0.0).map(|w| -w).sum();
                if tot > 0.0 {
                    share[hi] += neg / tot;
                }
                count[hi] += row.iter().filter(|w| **w < 0.0).count() as f64;
            }
        }
    }
    (share, count)
}

/// Measures every head's negative mass.
pub fn negative_mass(model: &Model, cfg: &NegativeMassConfig) -> Result<NegativeMass, ProbeError> {
    let t = cfg.len;
    if t < 1 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "negative_mass needs len ≥ 1 and samples ≥ 1 (got len {t}, samples {})",
            cfg.samples
        )));
    }
    let tokens = random_tokens(
        &mut Rng::for_name(cfg.seed, "probe.negative_mass"),
        cfg.samples,
        t,
        model.vocab(),
    );
    let layers = model.layers();
    let (mut mass, mut frac): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        (vec![Vec::new(); layers], vec![Vec::new(); layers]);
    model.run_in_batches(&tokens, t, 4, &["layers.*.attn.pattern"], |_, out| {
        for l in 0..layers {
            let p = hook(
                out,
                &hooks::join(&hooks::attn(l), hooks::attention::PATTERN),
            )?;
            let (s, c) = negative_share(&p.to_f64_vec(), &p.shape);
            if mass[l].is_empty() {
                mass[l] = vec![0.0; s.len()];
                frac[l] = vec![0.0; s.len()];
            }
            mass[l].iter_mut().zip(&s).for_each(|(a, b)| *a += b);
            frac[l].iter_mut().zip(&c).for_each(|(a, b)| *a += b);
        }
        Ok(())
    })?;
    let queries = (cfg.samples * t) as f64;
    let visible = (cfg.samples * t * (t + 1) / 2) as f64;
    Ok(NegativeMass {
        len: t,
        mass: mass
            .into_iter()
            .map(|r| r.into_iter().map(|x| x / queries).collect())
            .collect(),
        fraction: frac
            .into_iter()
            .map(|r| r.into_iter().map(|x| x / visible).collect())
            .collect(),
    })
}
