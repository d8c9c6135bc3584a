//! Linear decomposition of an MLP's output (factual recall, METHODS §8.4): over N prompts,
//! at the query position, fit `y_n ≈ Σ_i w_i c_{n,i} + b` where `y_n` is layer ℓ's
//! `mlp_out`, the components `c_{n,i}` are the layer's H head results and its `resid_pre`,
//! the scalars `w_i` are shared over prompts and dimensions and `b ∈ R^D` is an intercept.
//! Solved in closed form: `b` eliminated by centring, then the (H+1)×(H+1) normal equations.
//! A component that is the same for every prompt (a head that reads only the shared template
//! of a real model's prompts) has no weight to fit: it gets 0, the intercept absorbs it, and
//! the fit lists it as constant.
//! `w_i > 0`: the MLP amplifies component i; `< 0`: it erases it; `b` is the task-aware
//! intercept, read against the answer and subject unembedding rows.

use super::linalg::{cosine, dot, project, solve};
use super::readout::Readout;
use super::{hook, Model, ProbeError};
use serde::Serialize;
use weft_compiler::lower::hooks;

/// A least-squares fit with shared scalar weights and a vector intercept.
#[derive(Clone, Debug, Serialize)]
pub struct LinearFit {
    /// `w_i`, one per component.
    pub weights: Vec<f64>,
    /// `b`, D entries.
    pub intercept: Vec<f64>,
    /// `sqrt(MSE) / mean_n ‖y_n‖` (MSE over prompts and dimensions).
    pub relative_error: f64,
    /// Components that do not vary over the prompts: their weight is 0 (not identifiable)
    /// and the intercept holds their value.
    pub constant: Vec<usize>,
}

/// Fits `y_n ≈ Σ_i w_i c_{n,i} + b`: `y` is `[N, D]`, `comps` `[N, K, D]` (row-major).
pub fn fit_shared_weights(
    y: &[f64],
    comps: &[f64],
    n: usize,
    k: usize,
    d: usize,
) -> Result<LinearFit, ProbeError> {
    if n < 2 || y.len() != n * d || comps.len() != n * k * d {
        return Err(ProbeError::Config(format!(
            "fit: need ≥ 2 samples with matching shapes (N {n}, K {k}, D {d})"
        )));
    }
    // Means over samples: the intercept absorbs them, b = ȳ − Σ w_i c̄_i.
    let mut ym = vec![0.0; d];
    let mut cm = vec![0.0; k * d];
    for s in 0..n {
        ym.iter_mut()
            .zip(&y[s * d..(s + 1) * d])
            .for_each(|(m, v)| *m += v / n as f64);
        cm.iter_mut()
            .zip(&comps[s * k * d..(s + 1) * k * d])
            .for_each(|(m, v)| *m += v / n as f64);
    }
    let mut gram = vec![0.0; k * k];
    let mut rhs = vec![0.0; k];
    for s in 0..n {
        let yc: Vec<f64> = (0..d).map(|j| y[s * d + j] - ym[j]).collect();
        let cc: Vec<Vec<f64>> = (0..k)
            .map(|i| {
                (0..d)
                    .map(|j| comps[(s * k + i) * d + j] - cm[i * d + j])
                    .collect()
            })
            .collect();
        for i in 0..k {
            rhs[i] += dot(&cc[i], &yc);
            for jj in 0..k {
                gram[i * k + jj] += dot(&cc[i], &cc[jj]);
            }
        }
    }
    // A component whose centred energy is float noise against the largest one is constant
    // over the prompts; the others are solved for.
    let top = (0..k).fold(0.0f64, |m, i| m.max(gram[i * k + i]));
    let (varying, constant): (Vec<usize>, Vec<usize>) =
        (0..k).partition(|&i| gram[i * k + i] > top * 1e-12);
    let m = varying.len();
    let sub: Vec<f64> = varying
        .iter()
        .flat_map(|&i| varying.iter().map(move |&j| (i, j)))
        .map(|(i, j)| gram[i * k + j])
        .collect();
    let sub_rhs: Vec<f64> = varying.iter().map(|&i| rhs[i]).collect();
    let solved = solve(&sub, &sub_rhs, m).ok_or_else(|| ProbeError::Numerical("fit: the components are linearly dependent over the prompts (singular normal equations)".into()))?;
    let mut weights = vec![0.0; k];
    for (&i, w) in varying.iter().zip(solved) {
        weights[i] = w;
    }
    let intercept: Vec<f64> = (0..d)
        .map(|j| ym[j] - (0..k).map(|i| weights[i] * cm[i * d + j]).sum::<f64>())
        .collect();
    let (mut sse, mut ynorm) = (0.0, 0.0);
    for s in 0..n {
        let ys = &y[s * d..(s + 1) * d];
        ynorm += dot(ys, ys).sqrt() / n as f64;
        for j in 0..d {
            let pred = intercept[j]
                + (0..k)
                    .map(|i| weights[i] * comps[(s * k + i) * d + j])
                    .sum::<f64>();
            sse += (ys[j] - pred).powi(2);
        }
    }
    let rmse = (sse / (n * d) as f64).sqrt();
    Ok(LinearFit {
        weights,
        intercept,
        relative_error: if ynorm == 0.0 { f64::NAN } else { rmse / ynorm },
        constant,
    })
}

/// Prompts for the decomposition: `rows × seq` ids, the query position (negative: from the
/// end), and per row the answer and subject tokens the intercept is read against.
#[derive(Clone, Debug)]
pub struct DecompositionData {
    pub tokens: Vec<i32>,
    pub seq: usize,
    pub query: i64,
    pub answers: Vec<i32>,
    pub subjects: Vec<i32>,
}

/// The fit for one layer and how its intercept reads.
#[derive(Clone, Debug, Serialize)]
pub struct MlpDecomposition {
    pub layer: usize,
    /// What each weight multiplies: `head 0` … `head H−1`, `resid_pre`.
    pub components: Vec<String>,
    #[serde(flatten)]
    pub fit: LinearFit,
    /// `‖b‖`.
    pub intercept_norm: f64,
    /// Mean over prompts of `cos(P b, u_answer − u_subject)`, P the projector onto
    /// span{u_answer, u_subject}: > 0 means the intercept moves subject → answer.
    pub intercept_toward_answer: f64,
    /// Mean over prompts of `cos(P' b, ū − u_answer)`, P' onto span{u_answer, ū} (ū the
    /// mean unembedding row): > 0 means it pushes toward generic tokens (§8.6).
    pub intercept_toward_generic: f64,
    /// The ten tokens the intercept raises most (`b · u_v`).
    pub intercept_top_tokens: Vec<i32>,
    pub prompts: usize,
}

/// Decomposes layer `layer`'s MLP output over `data`.
pub fn mlp_decomposition(
    model: &Model,
    layer: usize,
    data: &DecompositionData,
) -> Result<MlpDecomposition, ProbeError> {
    let (t, n) = (data.seq, data.answers.len());
    if layer >= model.layers() {
        return Err(ProbeError::Config(format!(
            "mlp_decomposition: layer {layer}, but the model has {} layers",
            model.layers()
        )));
    }
    let e = if data.query < 0 {
        t as i64 + data.query
    } else {
        data.query
    };
    if !(0..t as i64).contains(&e) || data.tokens.len() != n * t {
        return Err(ProbeError::Config(format!(
            "mlp_decomposition: query {} and {} ids for {n} prompts of {t}",
            data.query,
            data.tokens.len()
        )));
    }
    let e = e as usize;
    let (rn, pn, mn) = (
        hooks::join(&hooks::attn(layer), hooks::attention::RESULT),
        hooks::join(&hooks::layer(layer), hooks::RESID_PRE),
        hooks::join(&hooks::layer(layer), hooks::MLP_OUT),
    );
    let g = model.lower(n, t, &[rn.as_str()])?;
    let out = model.run(
        &g,
        &data.tokens,
        &[rn.as_str(), pn.as_str(), mn.as_str()],
        &[],
    )?;
    let (res, pre, mlp) = (hook(&out, &rn)?, hook(&out, &pn)?, hook(&out, &mn)?);
    let (h, dm) = (res.shape[2], res.shape[3]);
    let (rv, pv, mv) = (res.to_f64_vec(), pre.to_f64_vec(), mlp.to_f64_vec());
    let k = h + 1;
    let mut y = Vec::with_capacity(n * dm);
    let mut comps = Vec::with_capacity(n * k * dm);
    for b in 0..n {
        let at = (b * t + e) * dm;
        y.extend_from_slice(&mv[at..at + dm]);
        let r0 = (b * t + e) * h * dm;
        comps.extend_from_slice(&rv[r0..r0 + h * dm]);
        comps.extend_from_slice(&pv[at..at + dm]);
    }
    let fit = fit_shared_weights(&y, &comps, n, k, dm)?;
    let ro = Readout::of(model)?;
    let b = &fit.intercept;
    let mean_row: Vec<f64> = (0..dm)
        .map(|j| (0..ro.vocab).map(|v| ro.row(v)[j]).sum::<f64>() / ro.vocab as f64)
        .collect();
    let (mut toward, mut generic) = (Vec::new(), Vec::new());
    for (&a, &s) in data.answers.iter().zip(&data.subjects) {
        let (ua, us) = (ro.row(a as usize), ro.row(s as usize));
        if let Some(p) = project(b, &[ua, us]) {
            let diff: Vec<f64> = ua.iter().zip(us).map(|(x, y)| x - y).collect();
            toward.push(cosine(&p, &diff));
        }
        if let Some(p) = project(b, &[ua, &mean_row]) {
            let diff: Vec<f64> = mean_row.iter().zip(ua).map(|(x, y)| x - y).collect();
            generic.push(cosine(&p, &diff));
        }
    }
    let scores = ro.unembed(b);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]));
    let mut components: Vec<String> = (0..h).map(|i| format!("head {i}")).collect();
    components.push("resid_pre".into());
    Ok(MlpDecomposition {
        layer,
        components,
        intercept_norm: dot(b, b).sqrt(),
        intercept_toward_answer: super::mean(&toward),
        intercept_toward_generic: super::mean(&generic),
        intercept_top_tokens: order.into_iter().take(10).map(|i| i as i32).collect(),
        fit,
        prompts: n,
    })
}
