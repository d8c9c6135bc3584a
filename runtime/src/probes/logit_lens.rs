//! Logit lens (METHODS §8.3): read every layer's residual stream through the final norm and
//! unembedding, `softmax(U · N(resid_post^ℓ))`, and see how early the answer appears. The
//! prompts are repeated random tokens; the answer at a second-copy position is the next
//! token (the copy).

use super::data::repeated_tokens;
use super::readout::{argmax, logit_diff, prob, Readout};
use super::{hook, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct LensConfig {
    /// Total sequence length (two copies of len/2 tokens).
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// The lens at each read-out point.
#[derive(Clone, Debug, Serialize)]
pub struct LogitLens {
    /// Hook points read: `embed`, then `layers.{l}.resid_post` for every layer.
    pub points: Vec<String>,
    /// Mean `p(answer)` at each point.
    pub p_answer: Vec<f64>,
    /// Standard deviation of `p(answer)` over positions and prompts.
    pub p_answer_std: Vec<f64>,
    /// Fraction of positions whose top token is the answer.
    pub accuracy: Vec<f64>,
    /// Mean `logit(answer) − mean logit`.
    pub logit_diff: Vec<f64>,
    /// Positions averaged over (prompts × second-copy positions).
    pub count: usize,
}

/// Runs the logit lens.
pub fn logit_lens(model: &Model, cfg: &LensConfig) -> Result<LogitLens, ProbeError> {
    let n = cfg.len / 2;
    if n < 2 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "logit_lens needs len ≥ 4 and samples ≥ 1 (got len {}, samples {})",
            cfg.len, cfg.samples
        )));
    }
    let t = 2 * n;
    let tokens = repeated_tokens(
        &mut Rng::for_name(cfg.seed, "probe.logit_lens"),
        cfg.samples,
        n,
        model.vocab(),
    );
    let ro = Readout::of(model)?;
    let dm = ro.dim;
    let mut points = vec!["embed".to_string()];
    points.extend((0..model.layers()).map(|l| hooks::join(&hooks::layer(l), hooks::RESID_POST)));
    let k = points.len();
    let (mut p, mut p2, mut acc, mut ld) = (vec![0.0; k], vec![0.0; k], vec![0.0; k], vec![0.0; k]);
    let mut count = 0usize;
    model.run_in_batches(
        &tokens,
        t,
        8,
        &["embed", "layers.*.resid_post"],
        |first, out| {
            let vals: Vec<Vec<f64>> = points
                .iter()
                .map(|name| hook(out, name).map(|x| x.to_f64_vec()))
                .collect::<Result<_, _>>()?;
            let rows = vals[0].len() / (t * dm);
            for b in 0..rows {
                let toks = &tokens[(first + b) * t..(first + b + 1) * t];
                for pos in n..t - 1 {
                    let target = toks[pos + 1] as usize;
                    for (i, x) in vals.iter().enumerate() {
                        let at = (b * t + pos) * dm;
                        let lg = ro.logits(&x[at..at + dm]);
                        let pr = prob(&lg, target);
                        p[i] += pr;
                        p2[i] += pr * pr;
                        acc[i] += f64::from(u8::from(argmax(&lg) == target));
                        ld[i] += logit_diff(&lg, target);
                    }
                    count += 1;
                }
            }
            Ok(())
        },
    )?;
    let c = count as f64;
    let mean = |v: Vec<f64>| v.into_iter().map(|x| x / c).collect::<Vec<_>>();
    let p_mean = mean(p);
    let p_std = p2
        .iter()
        .zip(&p_mean)
        .map(|(s, m)| (s / c - m * m).max(0.0).sqrt())
        .collect();
    Ok(LogitLens {
        points,
        p_answer: p_mean,
        p_answer_std: p_std,
        accuracy: mean(acc),
        logit_diff: mean(ld),
        count,
    })
}
