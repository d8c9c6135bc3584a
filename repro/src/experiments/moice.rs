//! MoICE (METHODS §7, §11.12 #7) on a pretrained LM, as the paper does: SmolLM2-135M-Instruct
//! (imported from its GGUF file) against a MoICE copy of it, in which every attention head
//! mixes the attentions computed with several rotary bases (the paper's Llama-2 set scaled to
//! SmolLM2's base: b·{1, 1.75, 1.8, 1.9, 2, 2.25, 2.5}), weighted per token and head by a
//! router. Only the routers train (everything else frozen, checked bit for bit), on key–value
//! retrieval prompts written in words the model reads ([`super::colour_lines`]).
//!
//! Both are measured with the queried line at depths 0 (first line) … 1 (last line) of the
//! list on the same held-out prompts: accuracy among the colour tokens and p(answer). Three
//! router seeds (router initialisation and training prompts); the base model has no seed.

use super::colour_lines::{
    depth_table, eval_prompts, mean_of, retrieval, Prompt, Retrieval, Words,
};
use super::copy_recipe::spread;
use crate::lab::{metrics_err, Pretrained};
use crate::{Lab, Report, ReproError, Spec, Table};
use serde_json::json;
use weft_compiler::lower::LowerOptions;
use weft_compiler::pipeline;
use weft_runtime::optim::{AdamW, Gradients, Optimizer, OptimizerConfig, Schedule};
use weft_runtime::probes::readout::argmax;
use weft_runtime::probes::{hook, Model, ProbeError};
use weft_runtime::rundir::{RunFiles, StepMetrics};
use weft_runtime::train::base_routing_trace;
use weft_runtime::{init_params, HookSelection, ParamStore, Rng, Tensor};

/// The criterion, fixed before the final run (its commit is named in the report).
const CRITERION: &str = include_str!("../../criteria/moice.txt");

/// The paper's Llama-2 bases `[10000, 17500, …, 25000]` as multiples of the model's own base.
const BASE_MULTIPLES: [f64; 7] = [1.0, 1.75, 1.8, 1.9, 2.0, 2.25, 2.5];
/// Weight of the routers' balance loss per layer (the paper: 0.3 on one loss over all layers;
/// weft adds one per layer, so 0.3 / 30 layers).
const BALANCE: f64 = 0.01;
/// The routers' parameters (the only trainable ones).
const ROUTERS: &str = "layers.*.attn.router.*";
/// Depths whose mean makes up the headline ("the middle").
const MIDDLE: (f64, f64) = (0.25, 0.75);
/// Base middle accuracy from which there is nothing to recover (the criterion's bar).
const CEILING: f64 = 0.9;
/// Router training: AdamW, constant learning rate after a short warm-up.
const LR: f64 = 1e-2;
const BATCH: usize = 4;

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let lm = lab.smollm2()?;
    let moice = moice_spec(lab, &lm)?;
    let words = Words::new(&lm)?;
    let pairs = lab.pick(24, 6).min(words.objects.len());
    let depths: Vec<f64> = if lab.quick() {
        vec![0.0, 0.5, 1.0]
    } else {
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    };
    let per_depth = lab.pick(40, 2);
    let steps = lab.pick(40, 2);
    let seeds: Vec<u64> = (0..lab.pick(3, 1)).map(|i| lab.seed() + i).collect();

    // The same held-out prompts for every model: eval[d] at depths[d].
    let eval = eval_prompts(&words, lab.seed(), pairs, &depths, per_depth);
    let t = eval[0][0].tokens.len();

    let t0 = std::time::Instant::now();
    let base_model = lab.model(&lm.spec, &lm.params);
    let base = lab.probe("base retrieval", || retrieval(&base_model, &eval, &words))?;
    let base_s = t0.elapsed().as_secs_f64();
    let mut base_run = lab.probe_run("smollm2", &lm.spec.source)?;
    base_run
        .metrics()
        .log_value(&json!({
            "kind": "eval", "step": 0, "retrieval_accuracy": mean_of(&base.correct),
        }))
        .map_err(metrics_err(&base_run))?;

    // One MoICE model per seed: routers trained on fresh prompts, everything else frozen.
    let mut trained = Vec::new();
    for &seed in &seeds {
        let t0 = std::time::Instant::now();
        let mut run = lab.probe_run(&format!("moice_seed{seed}"), &moice.source)?;
        let mut logged = Ok(());
        let (params, curve) = lab.probe("router training", || {
            train_routers(lab, &moice, &lm.params, &words, pairs, steps, seed, |m| {
                if logged.is_ok() {
                    logged = run.metrics().log(m);
                }
            })
        })?;
        logged.map_err(metrics_err(&run))?;
        let train_s = t0.elapsed().as_secs_f64();
        let model = lab.model(&moice, &params);
        let res = lab.probe("MoICE retrieval", || retrieval(&model, &eval, &words))?;
        run.metrics()
            .log_value(&json!({
                "kind": "eval", "step": steps, "retrieval_accuracy": mean_of(&res.correct),
            }))
            .map_err(metrics_err(&run))?;
        let shares = lab.probe("base choices", || base_shares(&model, &eval))?;
        let bases = bases_of(&lm);
        lab.probe("routing traces", || {
            routing_traces(&model, &eval[eval.len() / 2][0], &lm, &bases, steps, &run)
        })?;
        let (same, changed) = frozen(&lm.params, &params);
        trained.push(Seeded {
            seed,
            res,
            curve,
            shares,
            same,
            changed,
            train_s,
        });
    }

    r.table(training_table(&trained, steps, t));
    let seeds: Vec<(u64, &Retrieval)> = trained.iter().map(|s| (s.seed, &s.res)).collect();
    r.table(depth_table(
        "MoICE",
        &depths,
        &base,
        &seeds,
        (per_depth, pairs, t),
    ));
    r.table(choice_table(&trained[0], &bases_of(&lm)));
    r.note(
        "Each MoICE run directory holds every layer's routing on one held-out prompt (depth 0.5): \
         `weft view` shows which bases each head mixes at each token.",
    );

    // Headline: per middle prompt, MoICE's correctness averaged over the seeds minus the
    // base's; the prompts are shared, so the comparison is paired.
    let middle: Vec<usize> = (0..depths.len())
        .filter(|&d| (MIDDLE.0..=MIDDLE.1).contains(&depths[d]))
        .collect();
    let (trained_ref, base_ref) = (&trained, &base);
    let diffs: Vec<f64> = middle
        .iter()
        .flat_map(|&d| {
            (0..per_depth).map(move |i| {
                let m: f64 = trained_ref.iter().map(|s| s.res.correct[d][i]).sum::<f64>()
                    / trained_ref.len() as f64;
                m - base_ref.correct[d][i]
            })
        })
        .collect();
    let (diff, _, se) = spread(&diffs);
    let mid = |c: &[Vec<f64>]| mean_of(&middle.iter().map(|&d| c[d].clone()).collect::<Vec<_>>());
    let base_mid = mid(&base.correct);
    let moice_mid: f64 =
        trained.iter().map(|s| mid(&s.res.correct)).sum::<f64>() / trained.len() as f64;
    r.headline(
        &format!(
            "retrieval accuracy with the queried line in the middle (depths {}–{}, SmolLM2-135M-Instruct; MoICE: mean of {} router seeds)",
            MIDDLE.0,
            MIDDLE.1,
            seeds.len()
        ),
        "SmolLM2 as it is",
        base_mid,
        "MoICE (routers trained)",
        moice_mid,
        diff > 2.0 * se,
        CRITERION.trim(),
    );
    if base_mid >= CEILING {
        r.inconclusive();
        r.note(format!(
            "Inconclusive: the base model already answers {base_mid:.3} of the middle prompts \
             (bar {CEILING}), so there is no lost middle to recover at this length; longer lists \
             would decide it."
        ));
    }
    let per_seed: Vec<String> = trained
        .iter()
        .map(|s| format!("seed {}: {:.3}", s.seed, mid(&s.res.correct)))
        .collect();
    r.note(format!(
        "Middle accuracy: base {base_mid:.3}, MoICE {moice_mid:.3} ({}); paired difference over \
         {} prompts {diff:+.4}, 2·SE {:.4}. Prompts needed to bring 2·SE under a difference d: \
         n ≥ 4·sd²/d², with sd = {:.3} the per-prompt spread of the difference.",
        per_seed.join(", "),
        diffs.len(),
        2.0 * se,
        spread(&diffs).1,
    ));
    let ends = |c: &[Vec<f64>]| (mean_of(&c[..1]), mean_of(&c[c.len() - 1..]));
    let (b0, b1) = ends(&base.correct);
    let (m0, m1): (f64, f64) = trained
        .iter()
        .map(|s| ends(&s.res.correct))
        .fold((0.0, 0.0), |a, e| (a.0 + e.0, a.1 + e.1));
    let n = trained.len() as f64;
    r.note(format!(
        "First / last line: base {b0:.3} / {b1:.3}, MoICE {:.3} / {:.3}; a lost-in-the-middle \
         curve is lower in the middle than at both ends.",
        m0 / n,
        m1 / n
    ));
    for s in &trained {
        r.note(format!(
            "Seed {}: {} of {} base tensors bit-identical after router training{}.",
            s.seed,
            s.same,
            s.same + s.changed.len(),
            if s.changed.is_empty() {
                String::new()
            } else {
                format!(" — CHANGED: {}", s.changed.join(", "))
            },
        ));
    }
    let mut tops: Vec<usize> = trained[0]
        .shares
        .iter()
        .flat_map(|l| l.iter().map(|h| argmax(h)))
        .collect();
    tops.sort_unstable();
    tops.dedup();
    r.note(format!(
        "Heads' most-weighted bases (seed {}) span {} distinct base(s) of {} (the paper: heads \
         prefer different bases).",
        trained[0].seed,
        tops.len(),
        BASE_MULTIPLES.len()
    ));
    r.note(format!(
        "The base model's retrieval measurement took {base_s:.1} s ({} prompts).",
        depths.len() * per_depth
    ));
    r.note(format!(
        "Scaled down from §7.3 (Llama-2-7B-chat, 7 steps of 128 chat sequences of 4k tokens, \
         loss on all tokens, lr 1e-4, K = N = 7): SmolLM2-135M-Instruct, K = N = 7 (dense \
         mixture, as the released script), balance {BALANCE} per layer, {steps} steps of \
         {BATCH} retrieval prompts ({t} tokens, {pairs} lines) with the loss on the answer token \
         only, AdamW lr {LR}. The routers see the task they are measured on (fresh prompts), \
         where the paper trains on generic chat data and tests on long-context benchmarks."
    ));
    Ok(())
}

/// SmolLM2's spec with every attention's rotary encoding replaced by the MoICE mixture over
/// [`BASE_MULTIPLES`] of its base, written beside the imported spec.
fn moice_spec(lab: &Lab, lm: &Pretrained) -> Result<Spec, ReproError> {
    let src = &lm.spec.source;
    let (at, base) = rope_base(src).ok_or_else(|| {
        ReproError::Spec("the imported SmolLM2 spec has no `rope(base: …)` to replace".into())
    })?;
    let bases: Vec<String> = BASE_MULTIPLES
        .iter()
        .map(|m| format!("{}", (m * base).round()))
        .collect();
    let clause = format!(
        "rope(bases: [{}], router: swiglu, balance: {BALANCE}, ",
        bases.join(", ")
    );
    let old = format!("rope(base: {}, ", &src[at.0..at.1]);
    let source = src.replacen(&old, &clause, 1);
    lab.smollm2_variant("moice.weft", "MoICE", source)
}

/// The span of the number in the first `rope(base: NUMBER, ` and its value.
fn rope_base(src: &str) -> Option<((usize, usize), f64)> {
    let key = "rope(base: ";
    let start = src.find(key)? + key.len();
    let end = start + src[start..].find(',')?;
    let v = src[start..end].trim().parse().ok()?;
    Some(((start, end), v))
}

/// The MoICE bases of SmolLM2 (for column names).
fn bases_of(lm: &Pretrained) -> Vec<f64> {
    let base = rope_base(&lm.spec.source).map_or(0.0, |x| x.1);
    BASE_MULTIPLES.iter().map(|m| (m * base).round()).collect()
}

/// Trains the routers of `moice` from `base`'s weights (routers seeded with `seed`) on fresh
/// retrieval prompts, the loss on the answer token; returns the weights and the loss curve,
/// each step also handed to `log`.
#[allow(clippy::too_many_arguments)]
fn train_routers(
    lab: &Lab,
    moice: &Spec,
    base: &ParamStore,
    words: &Words,
    pairs: usize,
    steps: usize,
    seed: u64,
    mut log: impl FnMut(&StepMetrics),
) -> Result<(ParamStore, Vec<f64>), ProbeError> {
    let mut rng = Rng::for_name(seed, "repro.moice.train");
    let t = words.prompt(&mut rng.clone(), pairs, None).tokens.len();
    let mut opts = LowerOptions::new(BATCH, t);
    opts.with_loss = true;
    opts.trainable = vec![ROUTERS.into()];
    let g = pipeline::step_graph(&moice.checked, &opts)
        .map_err(|e| ProbeError::Model(e.to_string()))?;
    let mut params = init_params(&g, seed);
    for (name, w) in base {
        params.insert(name.clone(), w.clone());
    }
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(AdamW {
        lr: LR,
        weight_decay: 0.0,
        ..AdamW::default()
    }));
    let schedule = Schedule::Constant { warmup: 2 };
    let mut curve = Vec::new();
    let t0 = std::time::Instant::now();
    for step in 0..steps {
        let prompts: Vec<Prompt> = (0..BATCH)
            .map(|_| words.prompt(&mut rng, pairs, None))
            .collect();
        let tokens: Vec<i32> = prompts.iter().flat_map(|p| p.tokens.clone()).collect();
        let targets: Vec<i32> = prompts
            .iter()
            .flat_map(|p| (0..t).map(|i| if i + 1 == t { p.answer } else { -1 }))
            .collect();
        let inputs = std::collections::HashMap::from([
            ("tokens".to_string(), Tensor::i32(&[BATCH, t], tokens)),
            ("targets".to_string(), Tensor::i32(&[BATCH, t], targets)),
        ]);
        let out = lab
            .backend()
            .run(&g, &inputs, &params, &HookSelection::None)?;
        let loss = out.outputs["loss"].to_f64_vec()[0];
        let mut grads = Gradients::from_outputs(&out);
        grads.retain(|n| n.contains(".attn.router."));
        let lr = schedule.lr(LR, step as u64, steps as u64);
        let grad_norm = weft_runtime::optim::global_norm(&grads);
        opt.step(&mut params, &grads, lr)
            .map_err(|e| ProbeError::Numerical(e.to_string()))?;
        curve.push(loss);
        let wall_s = t0.elapsed().as_secs_f64();
        log(&StepMetrics {
            step: step as u64 + 1,
            tokens: ((step + 1) * BATCH) as u64,
            loss,
            aux: Default::default(),
            lr,
            grad_norm,
            tokens_per_s: ((step + 1) * BATCH * t) as f64 / wall_s.max(1e-9),
            wall_s,
        });
    }
    Ok((params, curve))
}

/// One seed's MoICE model, measured.
struct Seeded {
    seed: u64,
    res: Retrieval,
    curve: Vec<f64>,
    shares: Vec<Vec<Vec<f64>>>,
    same: usize,
    changed: Vec<String>,
    train_s: f64,
}

fn training_table(trained: &[Seeded], steps: usize, t: usize) -> Table {
    let mut tab = Table::new(
        &format!("Router training ({steps} steps of {BATCH} prompts of {t} tokens; loss = answer NLL + balance)"),
        &["seed", "first loss", "last loss (mean of the last 5 steps)", "router training time (s)"],
    );
    for s in trained {
        let tail = &s.curve[s.curve.len().saturating_sub(5)..];
        tab.row(vec![
            json!(s.seed),
            json!(s.curve.first().copied().unwrap_or(f64::NAN)),
            json!(tail.iter().sum::<f64>() / tail.len().max(1) as f64),
            json!(s.train_s),
        ]);
    }
    tab
}

fn choice_table(s: &Seeded, bases: &[f64]) -> Table {
    let mut cols: Vec<String> = vec!["layer".into()];
    cols.extend(bases.iter().map(|b| format!("b = {b}")));
    cols.push("heads' top bases".into());
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut tab = Table::new(
        &format!(
            "MoICE base choices (seed {}): mean mixing weight of each base per layer, over heads and every position of the held-out prompts",
            s.seed
        ),
        &refs,
    );
    for (l, heads) in s.shares.iter().enumerate() {
        let mut row = vec![json!(l)];
        let n = heads.len().max(1) as f64;
        for b in 0..bases.len() {
            row.push(json!(heads.iter().map(|h| h[b]).sum::<f64>() / n));
        }
        let tops: Vec<String> = heads
            .iter()
            .map(|h| format!("{}", bases.get(argmax(h)).copied().unwrap_or(0.0)))
            .collect();
        row.push(json!(tops.join(" ")));
        tab.row(row);
    }
    tab
}

/// Mean over every value of the rows.
/// Base tensors that are bit-identical in `after` (count), and the names of those that are not.
fn frozen(before: &ParamStore, after: &ParamStore) -> (usize, Vec<String>) {
    let mut names: Vec<&String> = before.keys().collect();
    names.sort();
    let mut same = 0;
    let mut changed = Vec::new();
    for n in names {
        let equal = after.get(n).is_some_and(|a| {
            let b = &before[n];
            a.shape == b.shape
                && a.to_f32_vec()
                    .iter()
                    .zip(b.to_f32_vec().iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits())
        });
        if equal {
            same += 1;
        } else {
            changed.push(n.clone());
        }
    }
    (same, changed)
}

/// Every layer's `base_routing` trace on one held-out prompt (the viewer's MoICE panel: which
/// bases each head mixes at each token).
fn routing_traces(
    model: &Model,
    prompt: &Prompt,
    lm: &Pretrained,
    bases: &[f64],
    step: usize,
    run: &RunFiles,
) -> Result<(), ProbeError> {
    let t = prompt.tokens.len();
    let tokens = Tensor::i32(&[1, t], prompt.tokens.clone());
    let text: Vec<String> = prompt
        .tokens
        .iter()
        .map(|&id| lm.tokenizer.decode(&[id as u32]).unwrap_or_default())
        .collect();
    let text = json!(text);
    model.run_in_batches(&prompt.tokens, t, 1, &[ROUTERS], |_, out| {
        for l in 0..model.layers() {
            let prefix = format!("layers.{l}.attn");
            let choice = hook(out, &format!("{prefix}.router.choice"))?;
            let logits = hook(out, &format!("{prefix}.router.logits"))?;
            let trace = base_routing_trace(
                &prefix,
                choice,
                logits,
                Some(bases.to_vec()),
                step as u64,
                &tokens,
                &text,
            )
            .ok_or_else(|| {
                ProbeError::Model(format!("{prefix}: router hooks of an unexpected shape"))
            })?;
            run.write_trace(&trace).map_err(|e| {
                ProbeError::Config(format!("writing {prefix}'s routing trace: {e}"))
            })?;
        }
        Ok(())
    })
}

/// `shares[layer][head][base]`: the mean mixing weight each base gets (softmax of the router
/// logits over the chosen bases), over every position of the first depth's prompts.
fn base_shares(model: &Model, eval: &[Vec<Prompt>]) -> Result<Vec<Vec<Vec<f64>>>, ProbeError> {
    let prompts = &eval[0];
    let t = prompts[0].tokens.len();
    let tokens: Vec<i32> = prompts.iter().flat_map(|p| p.tokens.clone()).collect();
    let mut acc: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut count = 0.0;
    model.run_in_batches(&tokens, t, 8, &[ROUTERS], |_, out| {
        for l in 0..model.layers() {
            let logits = hook(out, &format!("layers.{l}.attn.router.logits"))?;
            let chosen = hook(out, &format!("layers.{l}.attn.router.choice"))?;
            let &[b, h, t, n] = logits.shape.as_slice() else {
                return Err(ProbeError::Model(
                    "router logits are not [B, H, T, N]".into(),
                ));
            };
            let (lg, ch) = (logits.to_f64_vec(), chosen.to_f64_vec());
            if acc.len() <= l {
                acc.push(vec![vec![0.0; n]; h]);
            }
            for (i, head) in (0..b * h * t).map(|i| (i, (i / t) % h)) {
                let (row, c) = (&lg[i * n..(i + 1) * n], &ch[i * n..(i + 1) * n]);
                let max = row.iter().copied().fold(f64::MIN, f64::max);
                let w: Vec<f64> = row
                    .iter()
                    .zip(c)
                    .map(|(x, c)| if *c > 0.5 { (x - max).exp() } else { 0.0 })
                    .collect();
                let z: f64 = w.iter().sum();
                for (slot, we) in acc[l][head].iter_mut().zip(&w) {
                    *slot += if z > 0.0 { we / z } else { 0.0 };
                }
            }
            if l == 0 {
                count += (b * t) as f64;
            }
        }
        Ok(())
    })?;
    for head in acc.iter_mut().flatten() {
        for s in head.iter_mut() {
            *s /= count.max(1.0);
        }
    }
    Ok(acc)
}
