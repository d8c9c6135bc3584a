//! OV copying scores (METHODS §5.2, §8.5): does a head, attending to a token, write that
//! token's own logit?
//!
//! * eigen form: eigenvalue positivity `Σ Re λ / Σ |λ|` of the d×d matrix
//!   `W_O^h · W_U · W_E · W_V^h`, which has the non-zero spectrum of the V×V token-to-logit
//!   map `W_E W_V^h W_O^h W_U` (row-vector convention, weights stored `[in, out]`);
//! * top-k form: the fraction of tokens t for which `s · N(N1(e_t) W_V^h W_O^h) · U` ranks t
//!   in its top k, for s = +1 (mover) and s = −1 (suppressor).

use super::eigen::{eigenvalues, Complex};
use super::readout::Readout;
use super::{Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// Which score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OvForm {
    Eigen,
    Topk,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct OvConfig {
    pub form: OvForm,
    /// Top-k for [`OvForm::Topk`].
    pub k: usize,
    /// At most this many tokens are tested by the top-k form (a seeded sample).
    pub max_tokens: usize,
    pub seed: u64,
}

/// Per-head OV copying scores.
#[derive(Clone, Debug, Serialize)]
pub struct OvCopyScore {
    pub form: OvForm,
    /// `scores[l][h]`: eigen positivity in [−1, 1], or the top-k mover fraction in [0, 1].
    pub scores: Vec<Vec<f64>>,
    /// Top-k form: the fraction with the sign flipped (suppression / negative copying).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative: Option<Vec<Vec<f64>>>,
    /// Eigen form: every head's eigenvalues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eigenvalues: Option<Vec<Vec<Vec<Complex>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Top-k form: how many tokens were tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
}

/// `Σ Re λ / Σ |λ|` (0 for an all-zero spectrum).
pub fn eigen_positivity(ev: &[Complex]) -> f64 {
    let a: f64 = ev.iter().map(|e| e.abs()).sum();
    if a == 0.0 {
        0.0
    } else {
        ev.iter().map(|e| e.re).sum::<f64>() / a
    }
}

/// One layer's value and output weights, split per head.
struct OvWeights {
    /// `[D, kv·d]`.
    wv: Vec<f64>,
    bv: Option<Vec<f64>>,
    /// `[H·d, D]`.
    wo: Vec<f64>,
    kv_cols: usize,
    d: usize,
    heads: usize,
    group: usize,
}

impl OvWeights {
    fn of(model: &Model, l: usize) -> Result<OvWeights, ProbeError> {
        let wv = model.param(&hooks::join(&hooks::attn(l), "wv"))?;
        let wo = model.param(&hooks::join(&hooks::attn(l), "wo"))?;
        let d = model.config().head_dim;
        let heads = wo.shape[0] / d.max(1);
        let kv = wv.shape[1] / d.max(1);
        Ok(OvWeights {
            wv: wv.to_f64_vec(),
            bv: model
                .params
                .get(&hooks::join(&hooks::attn(l), "bv"))
                .map(|t| t.to_f64_vec()),
            wo: wo.to_f64_vec(),
            kv_cols: wv.shape[1],
            d,
            heads,
            group: (heads / kv.max(1)).max(1),
        })
    }

    /// `x W_V^h (+ b_V^h) W_O^h` for one row vector x of width D.
    fn apply(&self, h: usize, x: &[f64], dm: usize) -> Vec<f64> {
        let c0 = (h / self.group) * self.d;
        let mut z = vec![0.0; self.d];
        for (c, zc) in z.iter_mut().enumerate() {
            let mut s = self.bv.as_ref().map_or(0.0, |b| b[c0 + c]);
            for (i, xi) in x.iter().enumerate() {
                s += xi * self.wv[i * self.kv_cols + c0 + c];
            }
            *zc = s;
        }
        let mut y = vec![0.0; dm];
        for (r, zr) in z.iter().enumerate() {
            let row = &self.wo[(h * self.d + r) * dm..(h * self.d + r + 1) * dm];
            y.iter_mut().zip(row).for_each(|(yi, w)| *yi += zr * w);
        }
        y
    }
}

/// Measures every head's OV copying score.
pub fn ov_copy_score(model: &Model, cfg: &OvConfig) -> Result<OvCopyScore, ProbeError> {
    match cfg.form {
        OvForm::Eigen => eigen_form(model),
        OvForm::Topk => topk_form(model, cfg),
    }
}

fn eigen_form(model: &Model) -> Result<OvCopyScore, ProbeError> {
    let ro = Readout::of(model)?;
    let (dm, v) = (ro.dim, ro.vocab);
    let emb = model.param("embed.weight")?.to_f64_vec();
    // UE = W_U · W_E (D×D), shared by every head.
    let mut ue = vec![0.0; dm * dm];
    for t in 0..v {
        let u = ro.row(t);
        let e = &emb[t * dm..(t + 1) * dm];
        for i in 0..dm {
            let ui = u[i];
            ue[i * dm..(i + 1) * dm]
                .iter_mut()
                .zip(e)
                .for_each(|(o, ej)| *o += ui * ej);
        }
    }
    let mut scores = Vec::new();
    let mut all_ev = Vec::new();
    for l in 0..model.layers() {
        let w = OvWeights::of(model, l)?;
        let d = w.d;
        let (mut row_s, mut row_e) = (Vec::new(), Vec::new());
        for h in 0..w.heads {
            let c0 = (h / w.group) * d;
            // A = UE · W_V^h (D×d), then K = W_O^h · A (d×d).
            let mut a = vec![0.0; dm * d];
            for i in 0..dm {
                for j in 0..dm {
                    let x = ue[i * dm + j];
                    if x != 0.0 {
                        for c in 0..d {
                            a[i * d + c] += x * w.wv[j * w.kv_cols + c0 + c];
                        }
                    }
                }
            }
            let mut k = vec![0.0; d * d];
            for r in 0..d {
                let wo_row = &w.wo[(h * d + r) * dm..(h * d + r + 1) * dm];
                for (i, woi) in wo_row.iter().enumerate() {
                    for c in 0..d {
                        k[r * d + c] += woi * a[i * d + c];
                    }
                }
            }
            let ev = eigenvalues(&k, d).ok_or_else(|| {
                ProbeError::Numerical(format!(
                    "eigenvalues of layer {l} head {h}'s OV matrix did not converge"
                ))
            })?;
            row_s.push(eigen_positivity(&ev));
            row_e.push(ev);
        }
        scores.push(row_s);
        all_ev.push(row_e);
    }
    Ok(OvCopyScore {
        form: OvForm::Eigen,
        scores,
        negative: None,
        eigenvalues: Some(all_ev),
        k: None,
        tokens: None,
    })
}

/// The pre-attention norm of layer l applied to one vector (RMSNorm, or LayerNorm when the
/// norm has a bias), or the vector itself when the block has no `norm1`.
fn norm1(model: &Model, l: usize, x: &[f64]) -> Vec<f64> {
    let Some(g) = model.params.get(&hooks::join(&first_norm(l), "weight")) else {
        return x.to_vec();
    };
    let g = g.to_f64_vec();
    let bias = model
        .params
        .get(&hooks::join(&first_norm(l), "bias"))
        .map(|b| b.to_f64_vec());
    let n = x.len() as f64;
    let mu = if bias.is_some() {
        x.iter().sum::<f64>() / n
    } else {
        0.0
    };
    let eps = if bias.is_some() { 1e-5 } else { 1e-6 };
    let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
    let r = 1.0 / (var + eps).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mu) * r * g[i] + bias.as_ref().map_or(0.0, |b| b[i]))
        .collect()
}

fn topk_form(model: &Model, cfg: &OvConfig) -> Result<OvCopyScore, ProbeError> {
    let ro = Readout::of(model)?;
    let (dm, v) = (ro.dim, ro.vocab);
    let emb = model.param("embed.weight")?.to_f64_vec();
    let mut tokens: Vec<usize> = (super::data::FIRST_ID as usize..v).collect();
    if tokens.len() > cfg.max_tokens {
        // A seeded partial Fisher–Yates shuffle picks the sample.
        let mut rng = Rng::for_name(cfg.seed, "probe.ov.tokens");
        for i in 0..cfg.max_tokens {
            let j = i + rng.below((tokens.len() - i) as u64) as usize;
            tokens.swap(i, j);
        }
        tokens.truncate(cfg.max_tokens);
    }
    let in_topk =
        |logits: &[f64], t: usize| logits.iter().filter(|&&x| x > logits[t]).count() < cfg.k;
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for l in 0..model.layers() {
        let w = OvWeights::of(model, l)?;
        let (mut rp, mut rn) = (vec![0.0; w.heads], vec![0.0; w.heads]);
        for &t in &tokens {
            let x = norm1(model, l, &emb[t * dm..(t + 1) * dm]);
            for h in 0..w.heads {
                let y = w.apply(h, &x, dm);
                let lp = ro.logits(&y);
                let yn: Vec<f64> = y.iter().map(|a| -a).collect();
                let ln = ro.logits(&yn);
                rp[h] += f64::from(u8::from(in_topk(&lp, t)));
                rn[h] += f64::from(u8::from(in_topk(&ln, t)));
            }
        }
        let k = tokens.len().max(1) as f64;
        pos.push(rp.into_iter().map(|x| x / k).collect());
        neg.push(rn.into_iter().map(|x| x / k).collect());
    }
    Ok(OvCopyScore {
        form: OvForm::Topk,
        scores: pos,
        negative: Some(neg),
        eigenvalues: None,
        k: Some(cfg.k),
        tokens: Some(tokens.len()),
    })
}

/// `layers.{l}.norm1`: the parameters of a layer's first norm.
fn first_norm(l: usize) -> String {
    hooks::join(&hooks::layer(l), &hooks::call_site("norm", 1))
}
