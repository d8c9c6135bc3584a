//! Representation-collapse probe Δ(n) (Cog attention, METHODS §2.5): two prompts of n+1
//! tokens that differ only in their first token; Δ(n) is the mean over 64-wide chunks of the
//! final normed state's last position of `‖h_A − h_B‖_∞`, normalised by Δ at the first n.
//! A model that keeps Δ from shrinking as n grows still "sees" the early token.

use super::data::{collapse_pair, CollapseTask};
use super::{hook, Model, ProbeError};
use serde::Serialize;

/// What to measure.
#[derive(Clone, Debug)]
pub struct CollapseConfig {
    pub task: CollapseTask,
    /// Values of n (prompts are n+1 tokens).
    pub lengths: Vec<usize>,
}

/// Δ(n) for each n.
#[derive(Clone, Debug, Serialize)]
pub struct Collapse {
    pub task: CollapseTask,
    pub lengths: Vec<usize>,
    /// Δ(n).
    pub delta: Vec<f64>,
    /// Δ(n) / Δ(lengths[0]).
    pub normalised: Vec<f64>,
    /// Chunk width used (64, or D when the model is narrower).
    pub chunk: usize,
}

/// `mean_c ‖(a − b)[chunk c]‖_∞` over chunks of `chunk` dims.
pub fn chunked_inf_distance(a: &[f64], b: &[f64], chunk: usize) -> f64 {
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    let maxes: Vec<f64> = diffs
        .chunks(chunk)
        .map(|c| c.iter().cloned().fold(0.0, f64::max))
        .collect();
    super::mean(&maxes)
}

/// Runs the collapse probe.
pub fn collapse_probe(model: &Model, cfg: &CollapseConfig) -> Result<Collapse, ProbeError> {
    if cfg.lengths.is_empty() {
        return Err(ProbeError::Config(
            "collapse_probe needs at least one length".into(),
        ));
    }
    let dm = model.dim();
    let chunk = dm.min(64);
    let mut delta = Vec::new();
    for &n in &cfg.lengths {
        let (a, b) = collapse_pair(cfg.task, n, model.vocab());
        let t = n + 1;
        let g = model.lower(2, t, &[])?;
        let tokens: Vec<i32> = a.into_iter().chain(b).collect();
        let out = model.run(&g, &tokens, &["final_norm"], &[])?;
        let h = hook(&out, "final_norm")?.to_f64_vec();
        let last_a = &h[(t - 1) * dm..t * dm];
        let last_b = &h[(2 * t - 1) * dm..2 * t * dm];
        delta.push(chunked_inf_distance(last_a, last_b, chunk));
    }
    let base = delta[0];
    let normalised = delta
        .iter()
        .map(|d| if base == 0.0 { f64::NAN } else { d / base })
        .collect();
    Ok(Collapse {
        task: cfg.task,
        lengths: cfg.lengths.clone(),
        delta,
        normalised,
        chunk,
    })
}
