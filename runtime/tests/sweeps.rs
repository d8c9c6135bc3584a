//! The evaluation sweeps and the final-layer analysis on small seeded models (CPU): the length
//! sweep at the training length is the training loop's validation loss; needles land at the
//! depths asked for; a random model's shots curve sits at chance; replacing the last layer's
//! attention pattern by the identity is lowering that layer with `mask: self_only` (softmax,
//! signed and rules written in the spec: a score with a trainable per-head parameter, a sink,
//! direct weights); removing an intercept moves the final residual by exactly the intercept.

use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::data::{DataSource, KvRecall, LabelMapping};
use weft_runtime::probes::final_layer::{
    final_layer, last_layer_run, FinalIntervention, FinalLayerConfig, LastLayerChange,
};
use weft_runtime::probes::length_sweep::{length_sweep, LengthSweepConfig, LengthTask};
use weft_runtime::probes::needle_sweep::{needle_sweep, NeedleSweepConfig};
use weft_runtime::probes::program::run_probe;
use weft_runtime::probes::prompts::recall_prompts;
use weft_runtime::probes::readout::Readout;
use weft_runtime::probes::shots_sweep::{shots_sweep, ShotsSweepConfig};
use weft_runtime::probes::Model;
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, ParamStore, Tensor};

/// `{RULE}` is the attention rule (the prelude's `softmax` and `signed`, or one defined
/// here), `{LAYERS}` the layer schedule.
const TEMPLATE: &str = "
rule alibi {
  slope = head_param(init: alibi, trainable: true)
  score = s - slope * (i - j)
}
rule sink { weights = exp(s) / (1 + sum(exp(s))) }
rule sigmoid { weights = sigmoid(s - 1.0) }
model kv {
  vocab = 40
  dim = 16
  heads = 2
  layers = 2
  ctx = 32
  block decoder(mask_rule) {
    x = x + attention(rms_norm(x), mask: mask_rule, rule: {RULE}, position: rope(base: 100))
    x = x + swiglu(rms_norm(x))
  }
  layers {
    {LAYERS}
  }
}
train {
  data = kv_recall(pairs: 3, len: 24)
  seq = 24
  loss = nll(mask: answers)
  steps = 1
  batch = 8
}
program lengths = length_sweep(lengths: [16, 24, 32, 64])
program needles = needle_sweep(positions: 4)
program last = final_layer(intervention: remove_intercept)
program last_self = final_layer()
";

const CAUSAL: &str = "0 .. layers => decoder(causal)";
const SELF_LAST: &str = "0 .. 1 => decoder(causal)\n    1 .. 2 => decoder(self_only)";

fn spec_with(rule: &str, layers: &str) -> weft_dsl::Checked {
    let src = TEMPLATE.replace("{RULE}", rule).replace("{LAYERS}", layers);
    weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("test spec: {e:?}"))
}

fn spec() -> weft_dsl::Checked {
    spec_with("softmax", CAUSAL)
}

/// Weights with a larger std than the default init, so attention is far from uniform.
fn params(spec: &weft_dsl::Checked, seed: u64) -> ParamStore {
    let g = lower(spec, &LowerOptions::new(1, 1)).unwrap();
    let mut p = init_params(&g, seed);
    for (name, t) in p.iter_mut() {
        if !name.contains("norm") {
            let v: Vec<f32> = t.to_f32_vec().iter().map(|x| x * 8.0).collect();
            *t = Tensor::f32(&t.shape.clone(), v);
        }
    }
    p
}

fn max_rel_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs().max(y.abs())))
        .fold(0.0, f64::max)
}

#[test]
fn length_sweep_at_the_training_length_is_the_validation_loss() {
    let s = spec();
    let p = params(&s, 3);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let seed = 5;
    // The training loop's validation loss: the loss graph over the held-out set.
    let mut opts = LowerOptions::new(8, 24);
    opts.with_loss = true;
    let g = lower(&s, &opts).unwrap();
    let src = KvRecall::new(3, 24, 40, seed).unwrap();
    let batch = src.eval_batches(8, 24).unwrap().remove(0);
    let out = cpu
        .run(&g, &batch.to_inputs(), &p, &HookSelection::None)
        .unwrap();
    let val = out.outputs["loss"].to_f64_vec()[0];

    let task = LengthTask::from_spec(&s, std::path::Path::new("."), seed).unwrap();
    assert!(
        matches!(task, LengthTask::KvRecall { pairs: 3 }),
        "{task:?}"
    );
    let r = length_sweep(
        &m,
        &LengthSweepConfig {
            lengths: vec![24, 16, 64, 4],
            samples: 8,
            batch: 8,
            seed,
            train_len: Some(24),
            task,
        },
    )
    .unwrap();
    assert_eq!(r.lengths, vec![24, 16]);
    let skipped: Vec<usize> = r.skipped.iter().map(|k| k.len).collect();
    assert_eq!(skipped, vec![64, 4], "{:?}", r.skipped);
    assert!(r.skipped[0].reason.contains("ctx"), "{:?}", r.skipped);
    assert_eq!(r.scored, "answers");
    // kv_recall has one answer per row.
    assert_eq!(r.positions, vec![8, 8]);
    assert_eq!(r.samples, 8);
    assert!(
        (r.loss[0] - val).abs() <= 1e-5 * val.abs().max(1.0),
        "sweep {} vs eval graph {val}",
        r.loss[0]
    );
    assert!(r.loss.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(r.accuracy.iter().all(|a| (0.0..=1.0).contains(a)));
    // More rows than one pass, with a partial last pass: still the rows asked for.
    let r = length_sweep(
        &m,
        &LengthSweepConfig {
            lengths: vec![32],
            samples: 20,
            batch: 8,
            seed,
            train_len: None,
            task: LengthTask::Copy { vocab: 40 },
        },
    )
    .unwrap();
    assert_eq!((r.samples, r.positions[0]), (20, 20 * 16));
    // No length fits: one error naming each reason.
    let e = length_sweep(
        &m,
        &LengthSweepConfig {
            lengths: vec![64, 128],
            samples: 4,
            batch: 4,
            seed,
            train_len: None,
            task: LengthTask::KvRecall { pairs: 3 },
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("64") && e.contains("128") && e.contains("ctx"),
        "{e}"
    );
}

#[test]
fn needles_land_at_the_depths_asked_for() {
    let s = spec();
    let p = params(&s, 4);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let depths = NeedleSweepConfig::evenly_spaced(5);
    assert_eq!(depths, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    let r = needle_sweep(
        &m,
        &NeedleSweepConfig {
            pairs: 3,
            len: 32,
            depths: depths.clone(),
            samples: 24,
            batch: 8,
            seed: 9,
        },
    )
    .unwrap();
    assert_eq!((r.len, r.samples, r.positions.len()), (32, 24, 5));
    assert_eq!((r.accuracy.len(), r.loss.len()), (5, 5));
    assert!(r.loss.iter().all(|l| l.is_finite() && *l > 0.0));
    for (d, got) in depths.iter().zip(&r.measured) {
        assert!((d - got).abs() < 0.1, "depth {d}: measured {got}");
    }
    // The first and last depths are exact: the needle opens the context or ends it.
    assert_eq!(r.measured[0], 0.0);
    assert_eq!(r.measured[4], 1.0);
    let e = needle_sweep(
        &m,
        &NeedleSweepConfig {
            pairs: 3,
            len: 33,
            depths,
            samples: 4,
            batch: 4,
            seed: 9,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ctx"), "{e}");
}

#[test]
fn a_random_models_shots_curve_sits_at_chance() {
    let s = spec();
    let p = params(&s, 5);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    // 16 tasks × 8 inputs: the 128 table entries spread over the 4 labels evenly enough that
    // always answering one label scores about 1/4 too.
    let task = LabelMapping::new(16, 8, 4, 64, 0.0, 40, 1).unwrap();
    let r = shots_sweep(
        &m,
        &ShotsSweepConfig {
            task,
            shots: vec![1, 4, 8, 15, 16],
            samples: 256,
            batch: 64,
            seed: 2,
        },
    )
    .unwrap();
    // 16 shots take 34 tokens > ctx = 32.
    assert_eq!(r.shots, vec![1, 4, 8, 15]);
    assert_eq!(r.dropped, vec![16]);
    assert_eq!(r.chance, 0.25);
    for a in r.accuracy.iter().chain([&r.zero_shot_accuracy]) {
        assert!(
            (0.1..=0.45).contains(a),
            "{:?} / {}",
            r.accuracy,
            r.zero_shot_accuracy
        );
    }
    // A whole-vocabulary hit is a label-token hit too.
    for (v, a) in r.vocab_accuracy.iter().zip(&r.accuracy) {
        assert!(v <= a);
    }
    assert!(r.loss.iter().all(|l| l.is_finite()) && r.zero_shot_loss.is_finite());
    let e = shots_sweep(
        &m,
        &ShotsSweepConfig {
            task: LabelMapping::new(16, 8, 4, 64, 0.0, 40, 1).unwrap(),
            shots: vec![16, 64],
            samples: 4,
            batch: 4,
            seed: 2,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ctx = 32"), "{e}");
}

#[test]
fn identity_patterns_in_the_last_layer_are_a_self_only_mask() {
    for rule in ["softmax", "signed", "alibi", "sink", "sigmoid"] {
        let causal = spec_with(rule, CAUSAL);
        let self_last = spec_with(rule, SELF_LAST);
        let p = params(&causal, 6);
        let cpu = CpuBackend::new();
        let a = Model::new(&causal, &p, &cpu);
        let b = Model::new(&self_last, &p, &cpu);
        let prompts = recall_prompts(&a, 12, 7).unwrap();
        let patched = last_layer_run(&a, &prompts, &LastLayerChange::SelfOnly).unwrap();
        let lowered = last_layer_run(&b, &prompts, &LastLayerChange::None).unwrap();
        let plain = last_layer_run(&a, &prompts, &LastLayerChange::None).unwrap();
        let d = max_rel_diff(&patched.logits, &lowered.logits);
        assert!(
            d < 1e-4,
            "{rule}: patched vs self_only lowering differ by {d}"
        );
        assert!(
            max_rel_diff(&patched.logits, &plain.logits) > 1e-2,
            "{rule}: the intervention changed nothing"
        );
        assert!((patched.stats.p_answer - lowered.stats.p_answer).abs() < 1e-5);
    }
}

#[test]
fn removing_an_intercept_moves_the_final_residual_by_it() {
    let s = spec();
    let p = params(&s, 8);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let prompts = recall_prompts(&m, 10, 3).unwrap();
    let plain = last_layer_run(&m, &prompts, &LastLayerChange::None).unwrap();
    // A zero intercept is the value itself: bitwise the same run.
    let zero = last_layer_run(
        &m,
        &prompts,
        &LastLayerChange::SubtractIntercept(vec![0.0; 16]),
    )
    .unwrap();
    assert_eq!(zero.logits, plain.logits);
    assert_eq!(zero.stats, plain.stats);
    // A nonzero one: the query's logits are U·N(resid_post − b).
    let b: Vec<f64> = (0..16).map(|i| (i as f64 - 7.5) / 4.0).collect();
    let moved =
        last_layer_run(&m, &prompts, &LastLayerChange::SubtractIntercept(b.clone())).unwrap();
    let g = m.lower(10, prompts.seq, &[]).unwrap();
    let out = m
        .run(&g, &prompts.tokens, &["layers.1.resid_post"], &[])
        .unwrap();
    let x = out.hooks["layers.1.resid_post"].to_f64_vec();
    let ro = Readout::of(&m).unwrap();
    // Repeated-token prompts are queried from the start (2n − 2).
    let e = usize::try_from(prompts.query).unwrap();
    let want: Vec<Vec<f64>> = (0..10)
        .map(|r| {
            let at = (r * prompts.seq + e) * 16;
            let shifted: Vec<f64> = x[at..at + 16].iter().zip(&b).map(|(x, b)| x - b).collect();
            ro.logits(&shifted)
        })
        .collect();
    let d = max_rel_diff(&moved.logits, &want);
    assert!(d < 1e-4, "differ by {d}");
    assert!(max_rel_diff(&moved.logits, &plain.logits) > 1e-3);
    // resid_mid is upstream of the MLP: untouched.
    assert_eq!(moved.stats.p_answer_mid, plain.stats.p_answer_mid);
}

#[test]
fn final_layer_reports_before_and_after() {
    let s = spec();
    let p = params(&s, 9);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let prompts = recall_prompts(&m, 64, 0).unwrap();
    let mut results = Vec::new();
    for intervention in [
        FinalIntervention::SelfOnly,
        FinalIntervention::RemoveIntercept,
    ] {
        let r = final_layer(
            &m,
            &FinalLayerConfig {
                intervention,
                prompts: prompts.clone(),
            },
        )
        .unwrap();
        assert_eq!((r.layer, r.samples), (1, 64));
        for x in [
            r.p_answer_before,
            r.p_answer_after,
            r.rank_before,
            r.rank_after,
            r.logit_diff_before,
            r.logit_diff_after,
            r.entropy_before,
            r.entropy_after,
        ] {
            assert!(x.is_finite());
        }
        assert!((1.0..=40.0).contains(&r.rank_before) && (1.0..=40.0).contains(&r.rank_after));
        assert!(r.relative_error.unwrap().is_finite());
        let (tm, tg) = (
            r.intercept_toward_mean.unwrap(),
            r.intercept_toward_generic.unwrap(),
        );
        assert!((-1.0..=1.0).contains(&tm) && (-1.0..=1.0).contains(&tg));
        results.push(r);
    }
    // Same prompts, same model: the same "before".
    assert_eq!(results[0].p_answer_before, results[1].p_answer_before);
    assert_eq!(results[0].intercept_norm, results[1].intercept_norm);
    // Removing the intercept acts after resid_mid; stopping attention acts before it.
    assert_eq!(
        results[1].p_answer_mid_before,
        results[1].p_answer_mid_after
    );
    assert_ne!(
        results[0].p_answer_mid_before,
        results[0].p_answer_mid_after
    );
    assert_ne!(results[1].p_answer_before, results[1].p_answer_after);
}

#[test]
fn the_sweep_programs_write_the_documented_fields() {
    // Every probe of the language has an implementation: `run_probe` matches the typed
    // probes exhaustively, and `weft_dsl::typed::tests` keeps them equal to the table.
    let s = spec();
    let p = params(&s, 10);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let fields: &[(&str, &[&str])] = &[
        (
            "lengths",
            &["train_len", "lengths", "accuracy", "loss", "samples"],
        ),
        (
            "needles",
            &["positions", "accuracy", "loss", "samples", "len"],
        ),
        (
            "last",
            &[
                "intervention",
                "layer",
                "p_answer_before",
                "p_answer_after",
                "rank_before",
                "rank_after",
                "logit_diff_before",
                "logit_diff_after",
                "samples",
            ],
        ),
    ];
    for (prog, keys) in fields {
        let call = &s.programs.iter().find(|p| p.name == *prog).unwrap().probe;
        let json = run_probe(&m, call, 1).unwrap();
        for k in *keys {
            assert!(json.get(k).is_some(), "{prog}: no `{k}` in {json}");
        }
    }
    let call = &s
        .programs
        .iter()
        .find(|p| p.name == "lengths")
        .unwrap()
        .probe;
    let json = run_probe(&m, call, 1).unwrap();
    assert_eq!(json["train_len"], 24);
    assert_eq!(json["lengths"], serde_json::json!([16, 24, 32]));
    let call = &s
        .programs
        .iter()
        .find(|p| p.name == "needles")
        .unwrap()
        .probe;
    let json = run_probe(&m, call, 1).unwrap();
    assert_eq!(json["len"], 24);
    assert_eq!(json["positions"].as_array().unwrap().len(), 4);
    let call = &s
        .programs
        .iter()
        .find(|p| p.name == "last_self")
        .unwrap()
        .probe;
    assert_eq!(run_probe(&m, call, 1).unwrap()["intervention"], "self_only");
    let call = &s.programs.iter().find(|p| p.name == "last").unwrap().probe;
    assert_eq!(
        run_probe(&m, call, 1).unwrap()["intervention"],
        "remove_intercept"
    );
    // shots_sweep builds its prompts from the spec's label_mapping source.
    let src = TEMPLATE
        .replace("{RULE}", "softmax")
        .replace("{LAYERS}", CAUSAL)
        .replace(
            "kv_recall(pairs: 3, len: 24)",
            "label_mapping(tasks: 4, inputs: 8, labels: 4, shots: 8)",
        )
        + "program shots = shots_sweep(shots: [0, 2, 40])\n";
    let s2 = weft_dsl::check_source(&src).unwrap();
    let m2 = Model::new(&s2, &p, &cpu);
    let call = &s2
        .programs
        .iter()
        .find(|p| p.name == "shots")
        .unwrap()
        .probe;
    let json = run_probe(&m2, call, 1).unwrap();
    for k in ["shots", "accuracy", "zero_shot_accuracy", "samples"] {
        assert!(json.get(k).is_some(), "shots: no `{k}` in {json}");
    }
    assert_eq!(json["shots"], serde_json::json!([0, 2]));
    // k = 0 is the zero-shot prompt.
    assert_eq!(json["accuracy"][0], json["zero_shot_accuracy"]);
    // On the kv spec, the sweep says what it needs.
    let e = run_probe(&m, call, 1).unwrap_err().to_string();
    assert!(e.contains("label_mapping"), "{e}");
}
