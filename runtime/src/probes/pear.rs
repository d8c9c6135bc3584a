//! PEAR end to end (METHODS §4): detect copy-suppression heads by path patching, learn one
//! gain per selected head on the copy proxy with everything else frozen, fold the gains into
//! W_O and check that the folded model (no gain op) reproduces the gained one.

use super::data::repeated_tokens;
use super::path_patching::{path_patching, PatchingData, PathPatching};
use super::{Model, ProbeError};
use crate::optim::{AdamW, Gradients, Optimizer, OptimizerConfig, Schedule};
use crate::{HookSelection, ParamStore, Rng, Tensor};
use serde::Serialize;
use std::collections::HashMap;
use weft_compiler::ir::Op;
use weft_compiler::lower::hooks;
use weft_compiler::lower::{lower, lower_with_manifest, LowerOptions};
use weft_compiler::passes::fold_gains;
use weft_compiler::pipeline;

/// Settings of `pear(heads, steps, lr, len)`.
pub struct PearConfig {
    pub heads: usize,
    pub steps: usize,
    pub lr: f64,
    /// Copy proxy length n (sequences are `x ⊕ x`, 2n tokens).
    pub len: usize,
    pub seed: u64,
    /// Proxy sequences path patching averages over (the paper: 20–100).
    pub detect_rows: usize,
    /// Proxy sequences per gain-training step (the paper: 20, by gradient accumulation).
    pub batch: usize,
}

impl PearConfig {
    /// `heads` gains trained `steps` steps at `lr` on proxies of length `len`, with the
    /// default detection rows and batch ([`DETECT_ROWS`], [`BATCH`]).
    pub fn new(heads: usize, steps: usize, lr: f64, len: usize, seed: u64) -> PearConfig {
        PearConfig {
            heads,
            steps,
            lr,
            len,
            seed,
            detect_rows: DETECT_ROWS,
            batch: BATCH,
        }
    }
}

/// What PEAR found and did.
#[derive(Debug, Serialize)]
pub struct Pear {
    /// Selected heads `(layer, head, Δπ)`, largest Δπ first.
    pub detected: Vec<(usize, usize, f64)>,
    /// The whole detection table (every head's Δπ).
    pub patching: PathPatching,
    /// Learned gain τ of each selected head `(layer, head, τ)` (initialised to 1).
    pub gains: Vec<(usize, usize, f64)>,
    /// Mean cross-entropy on the second copy of held-out proxy sequences.
    pub copy_loss_before: f64,
    pub copy_loss_after: f64,
    /// max |folded − gained| / max |gained| over the logits of held-out sequences.
    pub fold_max_rel_err: f64,
    /// Gain parameters the folded graph still reads, i.e. attentions whose gain
    /// multiplication was left in it (0: zero inference overhead).
    pub gain_ops_after_folding: usize,
}

/// Default gain-training batch and detection rows.
pub const BATCH: usize = 20;
pub const DETECT_ROWS: usize = 32;
const EVAL_ROWS: usize = 32;

/// Runs PEAR on `model`, whose attention must carry `gain: trainable` or `gain: fixed`.
pub fn pear(model: &Model, cfg: &PearConfig) -> Result<Pear, ProbeError> {
    let (n, vocab) = (cfg.len.min(model.ctx() / 2).max(2), model.vocab());
    let patched = path_patching(
        model,
        &PatchingData::copy(cfg.detect_rows, n, vocab, cfg.seed),
    )?;
    let detected: Vec<(usize, usize, f64)> = patched
        .ranking
        .iter()
        .take(cfg.heads)
        .map(|&(l, h)| (l, h, patched.heads[l][h]))
        .collect();
    let gain_name = |l: usize| hooks::join(&hooks::attn(l), "gain");
    if !model.params.contains_key(&gain_name(0)) {
        return Err(ProbeError::Model(
            "pear needs per-head gains: write `attention(..., gain: trainable)` (see examples/pear.weft)".into(),
        ));
    }
    let t = 2 * n;
    let loss_options = |batch: usize| {
        let mut o = LowerOptions::new(batch, t);
        o.with_loss = true;
        o.trainable = vec!["*.attn.gain".into()];
        o
    };
    let train = pipeline::step_graph(model.spec, &loss_options(cfg.batch))
        .map_err(|e| ProbeError::Model(e.to_string()))?;
    let eval = lower(model.spec, &loss_options(EVAL_ROWS))
        .map_err(|e| ProbeError::Model(e.to_string()))?;
    let eval_tokens = repeated_tokens(
        &mut Rng::for_name(cfg.seed, "pear.eval"),
        EVAL_ROWS,
        n,
        vocab,
    );

    let mut params: ParamStore = model.params.clone();
    let copy_loss = |params: &ParamStore| -> Result<f64, ProbeError> {
        let out = model.backend.run(
            &eval,
            &proxy_inputs(&eval_tokens, EVAL_ROWS, n),
            params,
            &HookSelection::None,
        )?;
        Ok(out.outputs["loss"].to_f64_vec()[0])
    };
    let copy_loss_before = copy_loss(&params)?;
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(AdamW {
        lr: cfg.lr,
        weight_decay: 0.0,
        ..AdamW::default()
    }));
    let schedule = Schedule::Linear {
        warmup: 2,
        final_frac: 0.0,
    };
    for step in 0..cfg.steps {
        let tokens = repeated_tokens(
            &mut Rng::for_name(cfg.seed, &format!("pear.step.{step}")),
            cfg.batch,
            n,
            vocab,
        );
        let out = model.backend.run(
            &train,
            &proxy_inputs(&tokens, cfg.batch, n),
            &params,
            &HookSelection::None,
        )?;
        let mut g = Gradients::from_outputs(&out);
        // Only the detected heads' gains move; every other head keeps τ = 1.
        g.retain(|name| name.ends_with(".attn.gain"));
        for (name, grad) in g.iter_mut() {
            let layer: usize = name
                .split('.')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            for (h, x) in grad.iter_mut().enumerate() {
                if !detected.iter().any(|&(l, hh, _)| l == layer && hh == h) {
                    *x = 0.0;
                }
            }
        }
        let lr = schedule.lr(cfg.lr, step as u64, cfg.steps as u64);
        opt.step(&mut params, &g, lr)
            .map_err(|e| ProbeError::Numerical(e.to_string()))?;
    }
    let copy_loss_after = copy_loss(&params)?;
    let gains = detected
        .iter()
        .map(|&(l, h, _)| (l, h, params[&gain_name(l)].to_f64_vec()[h]))
        .collect();

    // Folding: same logits, no gain op.
    let lowered = lower_with_manifest(model.spec, &LowerOptions::new(EVAL_ROWS, t))
        .map_err(|e| ProbeError::Model(e.to_string()))?;
    let forward = lowered.graph;
    let ins = proxy_inputs(&eval_tokens, EVAL_ROWS, n);
    let gained = model
        .backend
        .run(&forward, &ins, &params, &HookSelection::None)?
        .outputs["logits"]
        .to_f32_vec();
    let (folded_graph, folds) = fold_gains(&forward, &lowered.manifest.gains)
        .map_err(|e| ProbeError::Model(e.to_string()))?;
    let mut folded_params = params.clone();
    crate::fold::apply_gain_folds(&mut folded_params, &folds)?;
    let folded = model
        .backend
        .run(&folded_graph, &ins, &folded_params, &HookSelection::None)?
        .outputs["logits"]
        .to_f32_vec();
    let scale = gained
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE);
    let err = gained
        .iter()
        .zip(&folded)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // A gain the folded graph still reads is a gain multiplication left in it.
    let gain_ops_after_folding = folded_graph
        .nodes
        .iter()
        .filter(|n| match &n.op {
            Op::Param { index } => folds
                .iter()
                .any(|f| f.gain == folded_graph.params[*index].name),
            _ => false,
        })
        .count();
    Ok(Pear {
        detected,
        patching: patched,
        gains,
        copy_loss_before,
        copy_loss_after,
        fold_max_rel_err: f64::from(err / scale),
        gain_ops_after_folding,
    })
}

/// Tokens `x ⊕ x` with targets only on the second copy (the first half cannot be predicted).
fn proxy_inputs(tokens: &[i32], rows: usize, n: usize) -> HashMap<String, Tensor> {
    let t = 2 * n;
    let targets: Vec<i32> = (0..rows * t)
        .map(|i| {
            let pos = i % t;
            if pos + 1 < t && pos + 1 > n {
                tokens[i + 1]
            } else {
                -1
            }
        })
        .collect();
    HashMap::from([
        (
            "tokens".to_string(),
            Tensor::i32(&[rows, t], tokens.to_vec()),
        ),
        ("targets".to_string(), Tensor::i32(&[rows, t], targets)),
    ])
}
