//! Batch-ICL (METHODS §10.2): run N one-shot prompts as one batch, average their
//! post-attention residual `resid_mid` over the batch at the last P positions of every layer,
//! and inject that aggregate at layer k of the zero-shot pass (replacing its own last P
//! `resid_mid` positions before the MLP), with optional extrapolation
//! `(1+α)·A^k − α·a^k(P_0)`. k = L injects nothing (the zero-shot baseline).
//!
//! Multi-epoch aggregation: epoch e re-runs the one-shot batch with every layer's last P
//! `resid_mid` positions overwritten by epoch e−1's aggregate, and averages the values
//! computed *before* that overwrite (what a replaced, captured hook reports).
//!
//! Prompts of different lengths are left-padded, and positions are addressed from the end,
//! so the last tokens line up whatever the lengths.

use super::readout::argmax;
use super::{hook, logits, Model, ProbeError};
use crate::data::PAD;
use crate::replace::Intervention;
use crate::tensor::Tensor;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// One evaluation query.
#[derive(Clone, Debug)]
pub struct IclQuery {
    /// `instruction ⊕ query` (no demonstration).
    pub zero_shot: Vec<i32>,
    /// `instruction ⊕ demo_i ⊕ query`, one per demonstration.
    pub one_shot: Vec<Vec<i32>>,
    /// The correct next token, when known.
    pub answer: Option<i32>,
}

/// How to aggregate and inject.
#[derive(Clone, Debug)]
pub struct BatchIclConfig {
    /// Last positions aggregated and replaced (P).
    pub positions: usize,
    /// Injection layer k; `None` sweeps k = 0..=L.
    pub layer: Option<usize>,
    /// Extrapolation α (0: plain replacement).
    pub alpha: f64,
    /// Aggregation epochs (≥ 1).
    pub epochs: usize,
}

/// Accuracy against the injection layer.
#[derive(Clone, Debug, Serialize)]
pub struct BatchIcl {
    /// The k values tried (k = L is the zero-shot baseline).
    pub layers: Vec<usize>,
    /// Accuracy at each k (fraction of queries whose argmax is the answer).
    pub accuracy: Vec<f64>,
    /// `predictions[i][q]`: the argmax token at k = layers[i] for query q.
    pub predictions: Vec<Vec<i32>>,
    /// The best k and its accuracy.
    pub best_layer: usize,
    pub best_accuracy: f64,
    /// Accuracy of the plain zero-shot pass.
    pub zero_shot_accuracy: f64,
    pub positions: usize,
    pub alpha: f64,
    pub epochs: usize,
    pub queries: usize,
}

fn left_pad(prompts: &[Vec<i32>]) -> (Vec<i32>, usize) {
    let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(prompts.len() * t);
    for p in prompts {
        out.extend(std::iter::repeat_n(PAD, t - p.len()));
        out.extend_from_slice(p);
    }
    (out, t)
}

fn last_positions(p: usize) -> Vec<i64> {
    (1..=p as i64).rev().map(|i| -i).collect()
}

fn resid_mid(l: usize) -> String {
    hooks::join(&hooks::layer(l), hooks::RESID_MID)
}

/// Mean over the batch of `x` `[B, T, D]` at its last `p` positions: `[1, p, D]`.
fn mean_last(x: &Tensor, p: usize) -> Tensor {
    let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
    let v = x.to_f64_vec();
    let mut m = vec![0.0f64; p * d];
    for bi in 0..b {
        let at = (bi * t + t - p) * d;
        m.iter_mut()
            .zip(&v[at..at + p * d])
            .for_each(|(a, y)| *a += y);
    }
    Tensor::f32(
        &[1, p, d],
        m.into_iter().map(|y| (y / b as f64) as f32).collect(),
    )
}

/// `A^{ℓ,(E)}` for every layer ℓ: `[1, P, D]` means of the one-shot batch's `resid_mid` at
/// its last P positions, after `epochs` rounds.
pub fn aggregate(
    model: &Model,
    one_shot: &[Vec<i32>],
    positions: usize,
    epochs: usize,
) -> Result<Vec<Tensor>, ProbeError> {
    let (tokens, t) = left_pad(one_shot);
    if one_shot.is_empty() || positions == 0 || positions > t || epochs == 0 {
        return Err(ProbeError::Config(format!(
            "batch_icl: {} one-shot prompts of up to {t} tokens, {positions} positions, {epochs} epochs",
            one_shot.len()
        )));
    }
    let g = model.lower(one_shot.len(), t, &[])?;
    let layers = model.layers();
    let names: Vec<String> = (0..layers).map(resid_mid).collect();
    let capture: Vec<&str> = names.iter().map(String::as_str).collect();
    let pos = last_positions(positions);
    let mut agg: Vec<Tensor> = Vec::new();
    for _ in 0..epochs {
        let replace: Vec<Intervention> = agg
            .iter()
            .enumerate()
            .map(|(l, a)| Intervention::at_positions(resid_mid(l), &pos, a.clone()))
            .collect();
        let out = model.run(&g, &tokens, &capture, &replace)?;
        agg = names
            .iter()
            .map(|n| hook(&out, n).map(|x| mean_last(x, positions)))
            .collect::<Result<_, _>>()?;
    }
    Ok(agg)
}

/// Logits at the last position of the zero-shot pass with `agg[k]` injected at layer k
/// (`k == L`: no injection), extrapolated by `alpha`.
pub fn inject(
    model: &Model,
    zero_shot: &[i32],
    agg: &[Tensor],
    k: usize,
    alpha: f64,
) -> Result<Vec<f64>, ProbeError> {
    let t = zero_shot.len();
    let g = model.lower(1, t, &[])?;
    let mut replace = Vec::new();
    if k < model.layers() {
        let a = &agg[k];
        let p = a.shape[1];
        if p > t {
            return Err(ProbeError::Config(format!(
                "batch_icl: {p} positions but the zero-shot prompt has {t} tokens"
            )));
        }
        let with = if alpha == 0.0 {
            a.clone()
        } else {
            let clean = model.run(&g, zero_shot, &[resid_mid(k).as_str()], &[])?;
            let own = mean_last(hook(&clean, &resid_mid(k))?, p).to_f64_vec();
            let v: Vec<f32> = a
                .to_f64_vec()
                .iter()
                .zip(&own)
                .map(|(x, z)| ((1.0 + alpha) * x - alpha * z) as f32)
                .collect();
            Tensor::f32(&a.shape, v)
        };
        replace.push(Intervention::at_positions(
            resid_mid(k),
            &last_positions(p),
            with,
        ));
    }
    let out = model.run(&g, zero_shot, &[], &replace)?;
    let lg = logits(&out)?;
    let v = lg.shape[2];
    Ok(lg.to_f64_vec()[(t - 1) * v..t * v].to_vec())
}

/// Batch-ICL over `queries`, at one k or sweeping every k.
pub fn batch_icl(
    model: &Model,
    queries: &[IclQuery],
    cfg: &BatchIclConfig,
) -> Result<BatchIcl, ProbeError> {
    let big_l = model.layers();
    let ks: Vec<usize> = match cfg.layer {
        Some(k) if k > big_l => return Err(ProbeError::Config(format!("batch_icl: layer {k}, but the model has {big_l} layers (k = {big_l} means no injection)"))),
        Some(k) => vec![k],
        None => (0..=big_l).collect(),
    };
    let mut predictions = vec![Vec::new(); ks.len()];
    let mut hits = vec![0usize; ks.len()];
    let mut zero_hits = 0usize;
    for q in queries {
        let agg = aggregate(model, &q.one_shot, cfg.positions, cfg.epochs)?;
        for (i, &k) in ks.iter().enumerate() {
            let p = argmax(&inject(model, &q.zero_shot, &agg, k, cfg.alpha)?) as i32;
            predictions[i].push(p);
            hits[i] += usize::from(Some(p) == q.answer);
        }
        let z = argmax(&inject(model, &q.zero_shot, &agg, big_l, 0.0)?) as i32;
        zero_hits += usize::from(Some(z) == q.answer);
    }
    let n = queries.len().max(1) as f64;
    let accuracy: Vec<f64> = hits.iter().map(|&h| h as f64 / n).collect();
    let best = (0..ks.len())
        .max_by(|&a, &b| accuracy[a].total_cmp(&accuracy[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    Ok(BatchIcl {
        best_layer: ks[best],
        best_accuracy: accuracy[best],
        layers: ks,
        accuracy,
        predictions,
        zero_shot_accuracy: zero_hits as f64 / n,
        positions: cfg.positions,
        alpha: cfg.alpha,
        epochs: cfg.epochs,
        queries: queries.len(),
    })
}
