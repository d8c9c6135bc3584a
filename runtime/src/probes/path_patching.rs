//! Path patching with batch-mean ablation (PEAR detection, METHODS §4.2; factual recall's
//! mover heads, §8.3): for every head, its `attn.result` at the query position is replaced by
//! the batch mean (of the clean prompts, or of corrupted twins), while every head's q, k and
//! v in every layer stay frozen to the clean run, so the change reaches the logits only
//! through the residual stream and the MLPs. The metric is
//! `π = mean_b [logit_b(y_b) − mean_v logit_b(v)]` at the query position; the table holds
//! `Δπ = π_patched − π_clean`. MLP senders (`mlp_out` at the query position) are patched the
//! same way.

use super::data::repeated_tokens;
use super::readout::logit_diff;
use super::{hook, logits, Model, ProbeError};
use crate::backend::Outputs;
use crate::init::Rng;
use crate::replace::Intervention;
use crate::tensor::Tensor;
use serde::Serialize;
use weft_compiler::lower::hooks;

/// Prompts to patch: `clean` (and optional `corrupted` twins), `rows × seq` ids, the query
/// position (negative: from the end, for left-padded prompts) and each row's answer.
#[derive(Clone, Debug)]
pub struct PatchingData {
    pub clean: Vec<i32>,
    pub corrupted: Option<Vec<i32>>,
    pub seq: usize,
    pub query: i64,
    pub answers: Vec<i32>,
}

impl PatchingData {
    /// PEAR's proxy: `samples` rows `x ⊕ x` of n random ids, query at 2n − 2, answer
    /// `x_{n−1}` (the token after the earlier occurrence of `x_{n−2}`).
    pub fn copy(samples: usize, n: usize, vocab: usize, seed: u64) -> PatchingData {
        let clean = repeated_tokens(
            &mut Rng::for_name(seed, "probe.path_patching"),
            samples,
            n,
            vocab,
        );
        let answers = clean.chunks(2 * n).map(|r| r[n - 1]).collect();
        PatchingData {
            clean,
            corrupted: None,
            seq: 2 * n,
            query: 2 * n as i64 - 2,
            answers,
        }
    }
}

/// The L×H table of metric changes.
#[derive(Clone, Debug, Serialize)]
pub struct PathPatching {
    /// `π` of the clean run.
    pub clean_metric: f64,
    /// `heads[l][h]` = `Δπ` when head (l, h)'s result at the query is mean-ablated.
    pub heads: Vec<Vec<f64>>,
    /// `heads_relative[l][h]` = `π_patched / π_clean − 1`.
    pub heads_relative: Vec<Vec<f64>>,
    /// `mlp[l]` = `Δπ` when layer l's `mlp_out` at the query is mean-ablated.
    pub mlp: Vec<f64>,
    /// Heads by decreasing `Δπ` (the first ones are PEAR's suppression candidates).
    pub ranking: Vec<(usize, usize)>,
    pub prompts: usize,
    pub seq: usize,
}

/// The metric π at position `e` of every row.
pub fn metric(out: &Outputs, e: usize, answers: &[i32]) -> Result<f64, ProbeError> {
    let lg = logits(out)?;
    let (t, v) = (lg.shape[1], lg.shape[2]);
    let x = lg.to_f64_vec();
    let per_row: Vec<f64> = answers
        .iter()
        .enumerate()
        .map(|(b, &y)| logit_diff(&x[(b * t + e) * v..(b * t + e + 1) * v], y as usize))
        .collect();
    Ok(super::mean(&per_row))
}

/// Batch mean at position `e` of a `[B, T, ...]` value: shape `[1, 1, ...]`.
fn batch_mean_at(x: &Tensor, e: usize) -> Tensor {
    let (b, t) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let v = x.to_f64_vec();
    let mut m = vec![0.0f64; inner];
    for bi in 0..b {
        let at = (bi * t + e) * inner;
        m.iter_mut()
            .zip(&v[at..at + inner])
            .for_each(|(a, y)| *a += y / b as f64);
    }
    let mut shape = vec![1, 1];
    shape.extend_from_slice(&x.shape[2..]);
    Tensor::f32(&shape, m.into_iter().map(|y| y as f32).collect())
}

/// `replace` every layer's q, k and v with their values in `clean`.
pub fn freeze_qkv(model: &Model, clean: &Outputs) -> Result<Vec<Intervention>, ProbeError> {
    let mut out = Vec::new();
    for l in 0..model.layers() {
        for p in ["q", "k", "v"] {
            let name = hooks::join(&hooks::attn(l), p);
            out.push(Intervention::replace(
                name.clone(),
                hook(clean, &name)?.clone(),
            ));
        }
    }
    Ok(out)
}

/// Runs the sweep.
pub fn path_patching(model: &Model, data: &PatchingData) -> Result<PathPatching, ProbeError> {
    let (t, layers) = (data.seq, model.layers());
    let rows = data.answers.len();
    if rows == 0 || data.clean.len() != rows * t {
        return Err(ProbeError::Config(format!(
            "path_patching: {} ids for {rows} prompts of {t}",
            data.clean.len()
        )));
    }
    let e = if data.query < 0 {
        t as i64 + data.query
    } else {
        data.query
    };
    if !(0..t as i64).contains(&e) {
        return Err(ProbeError::Config(format!(
            "path_patching: query position {} outside 0..{t}",
            data.query
        )));
    }
    let e = e as usize;
    let g = model.lower(rows, t, &["layers.*.attn.result"])?;
    let capture = [
        "layers.*.attn.q",
        "layers.*.attn.k",
        "layers.*.attn.v",
        "layers.*.attn.result",
        "layers.*.mlp_out",
    ];
    let clean = model.run(&g, &data.clean, &capture, &[])?;
    let pi_clean = metric(&clean, e, &data.answers)?;
    let source = match &data.corrupted {
        Some(c) => model.run(&g, c, &["layers.*.attn.result", "layers.*.mlp_out"], &[])?,
        None => clean.clone(),
    };
    let frozen = freeze_qkv(model, &clean)?;
    let run_with = |extra: Intervention| -> Result<f64, ProbeError> {
        let mut list = frozen.clone();
        list.push(extra);
        let out = model.run(&g, &data.clean, &[], &list)?;
        metric(&out, e, &data.answers)
    };
    let (mut heads, mut rel, mut mlp) = (Vec::new(), Vec::new(), Vec::new());
    for l in 0..layers {
        let name = hooks::join(&hooks::attn(l), hooks::attention::RESULT);
        let res = hook(&source, &name)?;
        let mean = batch_mean_at(res, e); // [1, 1, H, D]
        let h_count = res.shape[2];
        let (mut row, mut row_rel) = (Vec::new(), Vec::new());
        for h in 0..h_count {
            let dm = mean.shape[3];
            let slice = Tensor::f32(
                &[1, 1, 1, dm],
                mean.to_f32_vec()[h * dm..(h + 1) * dm].to_vec(),
            );
            let iv = Intervention::head_at_positions(name.clone(), h, Some(&[e as i64]), slice)?;
            let pi = run_with(iv)?;
            row.push(pi - pi_clean);
            row_rel.push(pi / pi_clean - 1.0);
        }
        heads.push(row);
        rel.push(row_rel);
        let mname = hooks::join(&hooks::layer(l), hooks::MLP_OUT);
        let mmean = batch_mean_at(hook(&source, &mname)?, e);
        mlp.push(run_with(Intervention::at_positions(mname, &[e as i64], mmean))? - pi_clean);
    }
    let mut ranking: Vec<(usize, usize)> = heads
        .iter()
        .enumerate()
        .flat_map(|(l, r)| (0..r.len()).map(move |h| (l, h)))
        .collect();
    ranking.sort_by(|a, b| heads[b.0][b.1].total_cmp(&heads[a.0][a.1]));
    Ok(PathPatching {
        clean_metric: pi_clean,
        heads,
        heads_relative: rel,
        mlp,
        ranking,
        prompts: rows,
        seq: t,
    })
}
