//! The model's read-out on the host: final norm `N(·)` and unembedding rows `u_v`, for the
//! logit lens, direct logit attribution and OV read-outs. Matches lowering
//! (`compiler/src/lower/mod.rs`): `final_norm` is `rms_norm` (eps 1e-6) unless the model
//! says `layer_norm` (eps 1e-5); the unembedding is `unembed.weight` `[D,V]`, or the
//! embedding `[V,D]` when `tie_embeddings = true`.

use super::{Model, ProbeError};
use weft_dsl::typed::NormKind;

/// Final norm and unembedding of one model.
pub struct Readout {
    layer_norm: bool,
    eps: f64,
    gamma: Vec<f64>,
    beta: Option<Vec<f64>>,
    /// `u_v` rows, `[V, D]` row-major.
    rows: Vec<f64>,
    /// `ū`, the mean row.
    mean_row: Vec<f64>,
    pub dim: usize,
    pub vocab: usize,
}

impl Readout {
    /// Reads the final norm and unembedding weights of `model`.
    pub fn of(model: &Model) -> Result<Readout, ProbeError> {
        let (d, v) = (model.dim(), model.vocab());
        let cfg = model.config();
        let layer_norm = match cfg.final_norm {
            NormKind::LayerNorm => true,
            NormKind::RmsNorm => false,
        };
        let gamma = model.param("final_norm.weight")?.to_f64_vec();
        let beta = if layer_norm {
            Some(model.param("final_norm.bias")?.to_f64_vec())
        } else {
            None
        };
        let rows = if cfg.tie_embeddings {
            model.param("embed.weight")?.to_f64_vec()
        } else {
            let u = model.param("unembed.weight")?.to_f64_vec();
            let mut rows = vec![0.0; v * d];
            for i in 0..d {
                for t in 0..v {
                    rows[t * d + i] = u[i * v + t];
                }
            }
            rows
        };
        let mut mean_row = vec![0.0; d];
        for u in rows.chunks(d) {
            mean_row
                .iter_mut()
                .zip(u)
                .for_each(|(m, x)| *m += x / v as f64);
        }
        Ok(Readout {
            layer_norm,
            // The builtins' defaults unless the spec sets the final norm's own (an import does).
            eps: cfg
                .final_norm_eps
                .unwrap_or(if layer_norm { 1e-5 } else { 1e-6 }),
            gamma,
            beta,
            rows,
            mean_row,
            dim: d,
            vocab: v,
        })
    }

    /// `N(x)` for one residual vector.
    pub fn norm(&self, x: &[f64]) -> Vec<f64> {
        let (scale, mu) = self.scale(x);
        let mut y: Vec<f64> = x
            .iter()
            .zip(&self.gamma)
            .map(|(&xi, &g)| (xi - mu) * scale * g)
            .collect();
        if let Some(b) = &self.beta {
            y.iter_mut().zip(b).for_each(|(yi, bi)| *yi += bi);
        }
        y
    }

    /// The norm's data-dependent scale `1/σ(x)` and centre (0 for RMSNorm): freezing them
    /// makes `N` affine, which is how a component's direct contribution is read out.
    pub fn scale(&self, x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mu = if self.layer_norm {
            x.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let ms = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<f64>() / n;
        (1.0 / (ms + self.eps).sqrt(), mu)
    }

    /// A component `c` of the final residual `x` as the norm sees it with its statistics
    /// frozen at `x`: `γ ⊙ (c − mean(c)) / σ(x)` (no bias: that belongs to no component).
    pub fn through_frozen_norm(&self, c: &[f64], x: &[f64]) -> Vec<f64> {
        let (scale, _) = self.scale(x);
        let mc = if self.layer_norm {
            c.iter().sum::<f64>() / c.len() as f64
        } else {
            0.0
        };
        c.iter()
            .zip(&self.gamma)
            .map(|(&ci, &g)| (ci - mc) * scale * g)
            .collect()
    }

    /// Logits of an already normed vector: `⟨y, u_v⟩` for every v.
    pub fn unembed(&self, y: &[f64]) -> Vec<f64> {
        self.rows
            .chunks(self.dim)
            .map(|u| u.iter().zip(y).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// `U · N(x)`: the logit lens of one residual vector.
    pub fn logits(&self, x: &[f64]) -> Vec<f64> {
        self.unembed(&self.norm(x))
    }

    /// The unembedding row `u_v`.
    pub fn row(&self, v: usize) -> &[f64] {
        &self.rows[v * self.dim..(v + 1) * self.dim]
    }

    /// `u_v − ū`: the direction whose dot product with a normed vector is
    /// `logit(v) − mean logit` (PEAR's and factual recall's metric).
    pub fn contrast(&self, v: usize) -> Vec<f64> {
        self.row(v)
            .iter()
            .zip(&self.mean_row)
            .map(|(u, m)| u - m)
            .collect()
    }
}

/// `logit(target) − mean logit` of one logit row.
pub fn logit_diff(logits: &[f64], target: usize) -> f64 {
    logits[target] - logits.iter().sum::<f64>() / logits.len() as f64
}

/// `softmax(logits)[target]`.
pub fn prob(logits: &[f64], target: usize) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    (logits[target] - m).exp() / z
}

/// Index of the largest entry (the first on ties).
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}
