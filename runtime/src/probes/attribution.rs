//! Direct logit attribution (METHODS §8.3, §11.9): how much each head's result and each MLP's
//! output, read straight through the final norm (its statistics frozen at the final residual)
//! and the unembedding, adds to `logit(answer) − mean logit`. On repeated random tokens the
//! answer at a second-copy position is the next token.

use super::data::repeated_tokens;
use super::linalg::dot;
use super::readout::{logit_diff, Readout};
use super::{hook, logits, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct AttributionConfig {
    /// Total sequence length (two copies of len/2 tokens).
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// Mean direct contributions to the logit difference.
#[derive(Clone, Debug, Serialize)]
pub struct HeadAttribution {
    /// `heads[l][h]`: head h of layer l (its `attn.result`).
    pub heads: Vec<Vec<f64>>,
    /// `mlp[l]`: layer l's `mlp_out`.
    pub mlp: Vec<f64>,
    /// The token embedding (`embed`).
    pub embed: f64,
    /// The model's actual mean logit difference (components plus biases and the final norm's
    /// own bias make it up).
    pub logit_diff: f64,
    /// Positions averaged over.
    pub count: usize,
}

/// Runs direct logit attribution.
pub fn head_attribution(
    model: &Model,
    cfg: &AttributionConfig,
) -> Result<HeadAttribution, ProbeError> {
    let n = cfg.len / 2;
    if n < 2 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "head_attribution needs len ≥ 4 and samples ≥ 1 (got len {}, samples {})",
            cfg.len, cfg.samples
        )));
    }
    let t = 2 * n;
    let tokens = repeated_tokens(
        &mut Rng::for_name(cfg.seed, "probe.attribution"),
        cfg.samples,
        n,
        model.vocab(),
    );
    let ro = Readout::of(model)?;
    let (dm, v, layers) = (ro.dim, ro.vocab, model.layers());
    let last = hooks::join(&hooks::layer(layers - 1), hooks::RESID_POST);
    let mut heads: Vec<Vec<f64>> = vec![Vec::new(); layers];
    let mut mlp = vec![0.0; layers];
    let (mut embed, mut total) = (0.0, 0.0);
    let mut count = 0usize;
    let capture = [
        "embed",
        "layers.*.attn.result",
        "layers.*.mlp_out",
        "layers.*.resid_post",
    ];
    model.run_in_batches(&tokens, t, 8, &capture, |first, out| {
        let fin = hook(out, &last)?.to_f64_vec();
        let emb = hook(out, "embed")?.to_f64_vec();
        let lg = logits(out)?.to_f64_vec();
        let res: Vec<_> = (0..layers)
            .map(|l| hook(out, &hooks::join(&hooks::attn(l), hooks::attention::RESULT)))
            .collect::<Result<_, _>>()?;
        let res_v: Vec<Vec<f64>> = res.iter().map(|r| r.to_f64_vec()).collect();
        let mlps: Vec<Vec<f64>> = (0..layers)
            .map(|l| {
                hook(out, &hooks::join(&hooks::layer(l), hooks::MLP_OUT)).map(|x| x.to_f64_vec())
            })
            .collect::<Result<_, _>>()?;
        let rows = fin.len() / (t * dm);
        for b in 0..rows {
            let toks = &tokens[(first + b) * t..(first + b + 1) * t];
            for pos in n..t - 1 {
                let target = toks[pos + 1] as usize;
                let dir = ro.contrast(target);
                let at = (b * t + pos) * dm;
                let x = &fin[at..at + dm];
                let read = |c: &[f64]| dot(&ro.through_frozen_norm(c, x), &dir);
                embed += read(&emb[at..at + dm]);
                for l in 0..layers {
                    let h = res[l].shape[2];
                    if heads[l].len() != h {
                        heads[l] = vec![0.0; h];
                    }
                    for (hi, acc) in heads[l].iter_mut().enumerate() {
                        let o = ((b * t + pos) * h + hi) * dm;
                        *acc += read(&res_v[l][o..o + dm]);
                    }
                    mlp[l] += read(&mlps[l][at..at + dm]);
                }
                total += logit_diff(&lg[(b * t + pos) * v..(b * t + pos + 1) * v], target);
                count += 1;
            }
        }
        Ok(())
    })?;
    let c = count as f64;
    Ok(HeadAttribution {
        heads: heads
            .into_iter()
            .map(|r| r.into_iter().map(|x| x / c).collect())
            .collect(),
        mlp: mlp.into_iter().map(|x| x / c).collect(),
        embed: embed / c,
        logit_diff: total / c,
        count,
    })
}
