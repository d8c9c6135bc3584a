//! The training objective: weighted sums of token losses over one or two "views" of a batch,
//! plus the auxiliary losses collected while lowering (router balance).
//!
//! Inputs it declares: `targets` i32 `[B,T]` (next token, −1 = none); `answer_mask` f32
//! `[B,T]` for `mask: answers`; `answer_segments` i32 `[B,T]` (demonstration index of each
//! answer target, −1 = none) for `segment_nll`.

use super::{Lowerer, Result};
use crate::ir::{ConstValue, DType, ValueId};
use weft_dsl::typed::{Loss, LossMask, LossTerm, LossView, Resolved, Reweight};
use weft_dsl::Checked;

/// The objective of a spec (default: `nll()` over every token, the model's own masks).
pub fn terms(spec: &Checked) -> Vec<LossTerm> {
    match &spec.train {
        Some(t) => t.loss.clone(),
        // A spec without a train section still has an objective (`weft eval`, probes).
        None => vec![LossTerm {
            weight: 1.0,
            loss: Loss::Nll {
                mask: LossMask::All,
                view: LossView::Same,
            },
            span: spec.model.span,
        }],
    }
}

pub(crate) fn build(l: &mut Lowerer, logits: ValueId, terms: &[LossTerm]) -> Result<ValueId> {
    let (b, t) = (l.opts.batch, l.opts.seq);
    let targets = l.g.input("targets", &[b, t], DType::I32);
    let mut total: Option<ValueId> = None;
    for (i, term) in terms.iter().enumerate() {
        l.at(term.span);
        let view = term.loss.view();
        let lg = match view {
            LossView::Turns | LossView::TurnsKeepFirst => {
                let out = l.forward(Some(view))?;
                l.mask_override = None;
                l.view_prefix.clear();
                out
            }
            LossView::Same => logits,
        };
        let ce = token_ce(l, lg, targets)?;
        let value = match &term.loss {
            Loss::SegmentNll { reweight, .. } => segment_nll(l, ce, reweight.as_ref())?,
            Loss::Nll { mask, .. } => nll(l, ce, targets, *mask)?,
        };
        l.g.output(&format!("term.{i}.{}", term.loss.name()), value);
        let w = l.g.scalar(term.weight as f32);
        let wv = l.g.mul(value, w)?;
        total = Some(match total {
            Some(a) => l.g.add(a, wv)?,
            None => wv,
        });
    }
    let mut total = match total {
        Some(t) => t,
        None => l.g.scalar(0.0),
    };
    for (name, weight, value) in std::mem::take(&mut l.aux) {
        l.g.output(&format!("aux.{name}"), value);
        let w = l.g.scalar(weight);
        let wv = l.g.mul(value, w)?;
        total = l.g.add(total, wv)?;
    }
    Ok(total)
}

/// Per-token cross-entropy `[B,T]` (0 where the target is −1).
fn token_ce(l: &mut Lowerer, logits: ValueId, targets: ValueId) -> Result<ValueId> {
    let (b, t, v) = (l.opts.batch, l.opts.seq, l.cfg.vocab);
    let flat = l.g.reshape(logits, &[b * t, v])?;
    let tg = l.g.reshape(targets, &[b * t])?;
    let ce = l.g.cross_entropy(flat, tg)?;
    l.g.reshape(ce, &[b, t])
}

/// `Σ ce·w / max(Σ w, 1)` with `w` selecting the counted positions.
fn nll(l: &mut Lowerer, ce: ValueId, targets: ValueId, mask: LossMask) -> Result<ValueId> {
    let (b, t) = (l.opts.batch, l.opts.seq);
    let zero = l.g.scalar_i32(0);
    let valid = l.g.ge(targets, zero)?; // f32 0/1
    let w = match mask {
        LossMask::Answers => {
            let m = l.g.input("answer_mask", &[b, t], DType::F32);
            l.g.mul(valid, m)?
        }
        LossMask::SecondHalf => {
            let pos = l.g.iota(&[t], 0, DType::F32)?;
            // Targets at positions ≥ T/2 − 1 predict the second half (tokens T/2 .. T).
            let half = l.g.scalar((t / 2) as f32 - 1.0);
            let second = l.g.ge(pos, half)?;
            l.g.mul(valid, second)?
        }
        LossMask::All => valid,
    };
    weighted_mean(l, ce, w)
}

fn weighted_mean(l: &mut Lowerer, x: ValueId, w: ValueId) -> Result<ValueId> {
    let xw = l.g.mul(x, w)?;
    let s = all_sum(l, xw)?;
    let n = all_sum(l, w)?;
    let one = l.g.scalar(1.0);
    let n = l.g.maximum(n, one)?;
    l.g.div(s, n)
}

fn all_sum(l: &mut Lowerer, x: ValueId) -> Result<ValueId> {
    let mut v = x;
    while !l.g.shape(v).is_empty() {
        v = l.g.sum(v, 0, false)?;
    }
    Ok(v)
}

/// DR-ICL's local objective: the mean over answer segments of each segment's mean CE,
/// each weighted by `exp((ℓ_k − β_k)/γ)` (detached), β_k the largest loss among the
/// previous `window` segments (A = 0 for the first).
fn segment_nll(l: &mut Lowerer, ce: ValueId, reweight: Option<&Reweight>) -> Result<ValueId> {
    let (b, t) = (l.opts.batch, l.opts.seq);
    let k = t; // at most one segment per position
    let seg = l.g.input("answer_segments", &[b, t], DType::I32);
    let oh = l.g.one_hot(seg, k)?; // [B,T,K]; −1 → zero row
    let ce3 = l.g.reshape(ce, &[b, 1, t])?;
    let sums = l.g.matmul(ce3, oh)?; // [B,1,K]
    let counts = l.g.sum(oh, 1, true)?; // [B,1,K]
    let one = l.g.scalar(1.0);
    let denom = l.g.maximum(counts, one)?;
    let means = l.g.div(sums, denom)?; // ℓ_k
    let zero = l.g.scalar(0.0);
    let present = l.g.gt(counts, zero)?; // [B,1,K]
    let weights = match reweight {
        Some(&Reweight::Advantage { gamma, window }) => {
            advantage(l, means, present, gamma, window)?
        }
        None => present,
    };
    // Per-demonstration views for run traces (docs/parameters.md): ℓ_k, answer tokens per
    // segment (0 = absent) and the (detached) weight, each `[B,1,K]`.
    l.hook("loss.segment_nll", means);
    l.hook("loss.segment_tokens", counts);
    l.hook("loss.weights", weights);
    let wl = l.g.mul(weights, means)?;
    let num = l.g.sum(wl, 2, false)?; // [B,1]
    let nseg = l.g.sum(present, 2, false)?;
    let nseg = l.g.maximum(nseg, one)?;
    let per_seq = l.g.div(num, nseg)?;
    let per_seq = l.g.reshape(per_seq, &[b])?;
    l.g.mean(per_seq, 0, false)
}

/// Detached advantage weights `[B,1,K]` (0 where a segment is absent).
fn advantage(
    l: &mut Lowerer,
    means: ValueId,
    present: ValueId,
    gamma: f64,
    window: usize,
) -> Result<ValueId> {
    let s = l.g.shape(means).to_vec();
    let (b, k) = (s[0], s[2]);
    let gamma = gamma as f32;
    let window = window.max(1);
    // window[k, j] = 1 iff k − W ≤ j < k.
    let table: Vec<f32> = (0..k * k)
        .map(|i| {
            let (row, col) = (i / k, i % k);
            f32::from(col < row && col + window >= row)
        })
        .collect();
    let win = l.g.constant(ConstValue::F32(table), &[1, k, k])?;
    let means_j = l.g.reshape(means, &[b, 1, k])?; // broadcast over rows k
    let prev = l.g.mul(win, present)?; // [B,K,K]: candidate j for row k
    let big = l.g.scalar(1e9);
    let one = l.g.scalar(1.0);
    let hidden = l.g.sub(prev, one)?;
    let hidden = l.g.mul(hidden, big)?; // 0 where candidate, −1e9 elsewhere
    let cand = l.g.add(means_j, hidden)?;
    let beta = l.g.max(cand, 2, false)?; // [B,K]
    let has_prev = l.g.max(prev, 2, false)?;
    let ell = l.g.reshape(means, &[b, k])?;
    let adv = l.g.sub(ell, beta)?;
    let adv = l.g.mul(adv, has_prev)?;
    let inv_gamma = l.g.scalar(1.0 / gamma);
    let adv = l.g.mul(adv, inv_gamma)?;
    let w = l.g.exp(adv)?;
    let w = l.g.reshape(w, &[b, 1, k])?;
    let w = l.g.mul(w, present)?;
    l.g.stop_gradient(w)
}
