//! PEAR (METHODS §4) on a pretrained LM, as the paper does: SmolLM2-135M-Instruct (imported
//! from its GGUF file) with one output gain per attention head (all 1: the model as it is).
//! For each of three seeds the probe `pear` detects copy-suppression heads by path patching
//! with batch-mean ablation on repeated random tokens (§4.2), trains the gains of the top K
//! with everything else frozen on the copy proxy (loss on the second half, AdamW lr 5e-3,
//! linear decay, 60 steps, §4.3) and folds them into W_O (§4.4). The model as it is and the
//! re-weighted one are measured on the same held-out retrieval prompts, the queried line at
//! depths 0 … 1 of a 24-line list ([`super::colour_lines`], MoICE's measurement): the
//! paper's claim is that re-weighting these heads helps the model use its context.

use super::colour_lines::{depth_table, eval_prompts, mean_of, retrieval, Retrieval, Words};
use super::copy_recipe::spread;
use super::pear::with_gains;
use crate::lab::{metrics_err, Pretrained};
use crate::{Lab, Report, ReproError, Spec, Table};
use serde_json::json;
use weft_runtime::probes::pear::{pear, Pear, PearConfig};
use weft_runtime::{ParamStore, Tensor};

/// The criterion, fixed before the final run (its commit is named in the report).
const CRITERION: &str = include_str!("../../criteria/pear_lm.txt");
/// Heads re-weighted (fixed in advance; the paper's K = 5–40 of Llama-2-7B's 1024 heads).
const K: usize = 4;
/// Copy proxy length n (sequences are 2n tokens; the paper's n is 50), the proxy rows path
/// patching averages over (the paper: 20–100) and the gain-training batch (the paper: 20).
const PROXY_LEN: usize = 10;
const DETECT_ROWS: usize = 16;
const BATCH: usize = 20;
/// Gain training as the paper's: AdamW lr 5e-3 with linear decay, 60 optimizer steps.
const LR: f64 = 5e-3;
const STEPS: usize = 60;
/// Base accuracy (mean over depths) from which there is nothing to recover.
const CEILING: f64 = 0.9;
/// Smallest mean improvement that counts (with 2·SE), in accuracy.
const MIN_GAIN: f64 = 0.01;

/// One seed's PEAR: what it found and its model's retrieval.
struct Seeded {
    seed: u64,
    pear: Pear,
    res: Retrieval,
    wall_s: f64,
}

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let lm = lab.smollm2()?;
    let spec = gain_spec(lab, &lm)?;
    let params = with_unit_gains(&lm, &spec)?;
    let words = Words::new(&lm)?;
    let pairs = lab.pick(24, 6).min(words.objects.len());
    let depths: Vec<f64> = if lab.quick() {
        vec![0.0, 0.5, 1.0]
    } else {
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    };
    let per_depth = lab.pick(40, 2);
    let eval = eval_prompts(&words, lab.seed(), pairs, &depths, per_depth);
    let t = eval[0][0].tokens.len();
    let seeds: Vec<u64> = (0..lab.pick(3, 1)).map(|i| lab.seed() + i).collect();
    let k = lab.pick(K, 1);
    let cfg = PearConfig {
        heads: k,
        steps: lab.pick(STEPS, 2),
        lr: LR,
        len: lab.pick(PROXY_LEN, 4),
        seed: 0,
        detect_rows: lab.pick(DETECT_ROWS, 2),
        batch: lab.pick(BATCH, 2),
    };

    let base = lab.probe("base retrieval", || {
        retrieval(&lab.model(&spec, &params), &eval, &words)
    })?;
    let mut base_run = lab.probe_run("smollm2_gains", &spec.source)?;
    base_run
        .metrics()
        .log_value(&json!({
            "kind": "eval", "step": 0, "retrieval_accuracy": mean_of(&base.correct),
        }))
        .map_err(metrics_err(&base_run))?;

    let mut runs = Vec::new();
    for &seed in &seeds {
        let t0 = std::time::Instant::now();
        let cfg = PearConfig { seed, ..cfg };
        let p = lab.probe("pear", || pear(&lab.model(&spec, &params), &cfg))?;
        let gained = with_gains(&params, &p.gains);
        let res = lab.probe("PEAR retrieval", || {
            retrieval(&lab.model(&spec, &gained), &eval, &words)
        })?;
        let mut run = lab.probe_run(&format!("pear_seed{seed}"), &spec.source)?;
        run.metrics()
            .log_value(&json!({
                "kind": "eval", "step": cfg.steps, "retrieval_accuracy": mean_of(&res.correct),
                "copy_loss_before": p.copy_loss_before, "copy_loss_after": p.copy_loss_after,
            }))
            .map_err(metrics_err(&run))?;
        runs.push(Seeded {
            seed,
            pear: p,
            res,
            wall_s: t0.elapsed().as_secs_f64(),
        });
    }

    r.table(heads_table(&runs));
    let seeds: Vec<(u64, &Retrieval)> = runs.iter().map(|s| (s.seed, &s.res)).collect();
    r.table(depth_table(
        "PEAR",
        &depths,
        &base,
        &seeds,
        (per_depth, pairs, t),
    ));
    r.table(patching_table(&runs[0]));

    // Headline: per prompt, PEAR's correctness averaged over the seeds minus the base's; the
    // prompts are shared, so the comparison is paired.
    let diffs: Vec<f64> = (0..depths.len())
        .flat_map(|d| (0..per_depth).map(move |i| (d, i)))
        .map(|(d, i)| {
            let m = runs.iter().map(|s| s.res.correct[d][i]).sum::<f64>() / runs.len() as f64;
            m - base.correct[d][i]
        })
        .collect();
    let (diff, sd, se) = spread(&diffs);
    let base_acc = mean_of(&base.correct);
    let pear_acc = runs.iter().map(|s| mean_of(&s.res.correct)).sum::<f64>() / runs.len() as f64;
    r.headline(
        &format!(
            "retrieval accuracy over the queried line's depth (0–1, {pairs} lines; SmolLM2-135M-Instruct; PEAR: mean of {} seeds)",
            seeds.len()
        ),
        "SmolLM2 as it is",
        base_acc,
        &format!("PEAR, K = {k}"),
        pear_acc,
        diff > 2.0 * se && diff >= MIN_GAIN,
        CRITERION.trim(),
    );
    if base_acc >= CEILING {
        r.inconclusive();
        r.note(format!(
            "Inconclusive: the model as it is already answers {base_acc:.3} of the prompts (bar \
             {CEILING}), so there is no room to improve at this length."
        ));
    }
    let per_seed: Vec<String> = runs
        .iter()
        .map(|s| format!("seed {}: {:.3}", s.seed, mean_of(&s.res.correct)))
        .collect();
    r.note(format!(
        "Retrieval: base {base_acc:.3}, PEAR {pear_acc:.3} ({}); paired difference over {} \
         prompts {diff:+.4}, 2·SE {:.4}. Prompts needed to bring 2·SE under a difference d: \
         n ≥ 4·sd²/d², with sd = {sd:.3} the per-prompt spread of the difference.",
        per_seed.join(", "),
        diffs.len(),
        2.0 * se,
    ));
    let below = runs
        .iter()
        .flat_map(|s| &s.pear.gains)
        .filter(|g| g.2 < 1.0)
        .count();
    r.note(format!(
        "Learned gains below 1 (the paper: the detected heads are down-weighted): {below} of {}.",
        runs.len() * k
    ));
    let fold = runs
        .iter()
        .map(|s| s.pear.fold_max_rel_err)
        .fold(0.0, f64::max);
    let left = runs
        .iter()
        .map(|s| s.pear.gain_ops_after_folding)
        .sum::<usize>();
    r.note(format!(
        "Folding the gains into W_O: largest relative logit difference {fold:.2e} on held-out \
         proxy sequences, {left} gain multiplications left in the folded graphs."
    ));
    r.note(format!(
        "Scaled down from §4.2–4.3 (Llama-2-7B-chat; proxies of n = 50 at N = 20–100, 60 steps \
         of 20 sequences of 100 tokens): SmolLM2-135M-Instruct (30 layers × 9 heads), proxies \
         of n = {PROXY_LEN} (ids uniform over the vocabulary), detection over {DETECT_ROWS} \
         sequences, {STEPS} steps of {BATCH} sequences, AdamW lr {LR}. Neither detection nor \
         gain training sees the retrieval prompts."
    ));
    Ok(())
}

/// SmolLM2's spec with a per-head output gain in every attention (`gain: trainable`, so the
/// probe can train the detected ones), written beside the imported spec.
fn gain_spec(lab: &Lab, lm: &Pretrained) -> Result<Spec, ReproError> {
    let src = &lm.spec.source;
    let key = "attention(";
    let at = src.find(key).ok_or_else(|| {
        ReproError::Spec("the imported SmolLM2 spec has no attention call".into())
    })?;
    // `attention(X, ...)`: the gain goes before the first top-level comma after the input.
    let rest = &src[at + key.len()..];
    let mut depth = 0usize;
    let comma = rest
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map(|(i, _)| at + key.len() + i)
        .ok_or_else(|| ReproError::Spec("the attention call has no arguments to extend".into()))?;
    let source = format!("{}, gain: trainable{}", &src[..comma], &src[comma..]);
    lab.smollm2_variant("pear.weft", "PEAR", source)
}

/// The imported weights and a gain of 1 for every head of every layer.
fn with_unit_gains(lm: &Pretrained, spec: &Spec) -> Result<ParamStore, ReproError> {
    let cfg = &spec.checked.model.config;
    let mut params = lm.params.clone();
    for l in 0..cfg.layers {
        params.insert(
            format!("layers.{l}.attn.gain"),
            Tensor::f32(&[cfg.heads], vec![1.0; cfg.heads]),
        );
    }
    Ok(params)
}

fn heads_table(runs: &[Seeded]) -> Table {
    let mut tab = Table::new(
        "Detected heads (largest Δπ of the copy metric when the head's output at the query is \
         mean-ablated) and their learned gains",
        &[
            "seed",
            "heads (layer.head: Δπ → τ)",
            "copy-proxy loss before",
            "after",
            "seed wall time (s)",
        ],
    );
    for s in runs {
        let heads: Vec<String> = s
            .pear
            .detected
            .iter()
            .zip(&s.pear.gains)
            .map(|(&(l, h, dpi), g)| format!("{l}.{h}: {dpi:+.3} → {:.3}", g.2))
            .collect();
        tab.row(vec![
            json!(s.seed),
            json!(heads.join(", ")),
            json!(s.pear.copy_loss_before),
            json!(s.pear.copy_loss_after),
            json!(s.wall_s),
        ]);
    }
    tab
}

/// Seed `s`'s whole detection table: Δπ of every head (rows: layers).
fn patching_table(s: &Seeded) -> Table {
    let heads = s.pear.patching.heads.first().map_or(0, Vec::len);
    let mut cols = vec!["layer".to_string()];
    cols.extend((0..heads).map(|h| format!("head {h}")));
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut tab = Table::new(
        &format!(
            "Δπ of every head (seed {}; clean π {:.3}; positive: ablating the head raises the \
             copy logit)",
            s.seed, s.pear.patching.clean_metric
        ),
        &refs,
    );
    for (l, row) in s.pear.patching.heads.iter().enumerate() {
        let mut r = vec![json!(l)];
        r.extend(row.iter().map(|&x| json!(x)));
        tab.row(r);
    }
    tab
}
