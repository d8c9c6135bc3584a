//! Attention against relative distance (METHODS §3.4, HoPE's U-shape diagnostic): for each
//! head, the mean weight a query at position q gives the key at q − Δ, for Δ = 0..T−1, on
//! uniform random tokens.

use super::data::random_tokens;
use super::{hook, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct DistanceConfig {
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// Mean attention per relative distance.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionDistance {
    pub len: usize,
    /// `mean[l][h][Δ]`: mean weight (signed for signed heads) at distance Δ, over every
    /// query with a key that far back.
    pub mean: Vec<Vec<Vec<f64>>>,
    /// `mean_abs[l][h][Δ]`: the same for |weight|.
    pub mean_abs: Vec<Vec<Vec<f64>>>,
}

/// Sums of `A[q, q−Δ]` and `|A[q, q−Δ]|` per head and Δ from one `[B,H,T,T]` pattern.
pub fn by_distance(pattern: &[f64], shape: &[usize]) -> Sums {
    let (b, h, t) = (shape[0], shape[1], shape[2]);
    let mut s = vec![vec![0.0; t]; h];
    let mut a = vec![vec![0.0; t]; h];
    for bi in 0..b {
        for hi in 0..h {
            let base = (bi * h + hi) * t * t;
            for q in 0..t {
                for k in 0..=q {
                    let w = pattern[base + q * t + k];
                    s[hi][q - k] += w;
                    a[hi][q - k] += w.abs();
                }
            }
        }
    }
    (s, a)
}

/// Per-head, per-distance sums of weights and of |weights| for one layer.
type Sums = (Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Measures attention against distance for every head.
pub fn attention_distance(
    model: &Model,
    cfg: &DistanceConfig,
) -> Result<AttentionDistance, ProbeError> {
    let t = cfg.len;
    if t < 2 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "attention_distance needs len ≥ 2 and samples ≥ 1 (got len {t}, samples {})",
            cfg.samples
        )));
    }
    let tokens = random_tokens(
        &mut Rng::for_name(cfg.seed, "probe.distance"),
        cfg.samples,
        t,
        model.vocab(),
    );
    let layers = model.layers();
    let mut sums: Vec<Sums> = vec![(Vec::new(), Vec::new()); layers];
    model.run_in_batches(&tokens, t, 4, &["layers.*.attn.pattern"], |_, out| {
        for (l, acc) in sums.iter_mut().enumerate() {
            let p = hook(
                out,
                &hooks::join(&hooks::attn(l), hooks::attention::PATTERN),
            )?;
            let (s, a) = by_distance(&p.to_f64_vec(), &p.shape);
            if acc.0.is_empty() {
                *acc = (s, a);
            } else {
                add(&mut acc.0, &s);
                add(&mut acc.1, &a);
            }
        }
        Ok(())
    })?;
    // Δ is seen by the T − Δ queries at or after it, in every sequence.
    let norm = |m: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        m.into_iter()
            .map(|r| {
                r.into_iter()
                    .enumerate()
                    .map(|(d, x)| x / ((t - d) * cfg.samples) as f64)
                    .collect()
            })
            .collect()
    };
    let (mut mean, mut mean_abs) = (Vec::new(), Vec::new());
    for (s, a) in sums {
        mean.push(norm(s));
        mean_abs.push(norm(a));
    }
    Ok(AttentionDistance {
        len: t,
        mean,
        mean_abs,
    })
}

fn add(acc: &mut [Vec<f64>], x: &[Vec<f64>]) {
    for (r, xr) in acc.iter_mut().zip(x) {
        r.iter_mut().zip(xr).for_each(|(a, b)| *a += b);
    }
}
