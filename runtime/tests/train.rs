//! Training learns, resumes exactly, and touches only what `trainable` selects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::data::{CopyTask, DataSource};
use weft_runtime::rundir::StepMetrics;
use weft_runtime::train::{inputs_for, train, TrainOptions, TrainReport};
use weft_runtime::{Backend, CpuBackend, HookSelection, ParamStore};

const COPY: &str = r#"
model copy_lm {
  vocab = 32
  dim = 64
  heads = 4
  layers = 2
  ctx = 32

  block decoder {
    x = x + attention(rms_norm(x))
    x = x + swiglu(rms_norm(x), hidden: 128)
  }

  layers {
    0 .. layers => decoder
  }
}

train {
  data = copy_task(len: 12)
  loss = nll(mask: second_half)
  seq = 24
  steps = 150
  batch = 32
  optimizer = adamw(lr: 3e-3)
  schedule = cosine(warmup: 30, floor: 0.1)
  log_every = 25
  eval_every = 75
  eval = [copy_accuracy(len: 12, samples: 16), induction_score(len: 12, samples: 8)]
}
"#;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(src: &str, out: &Path, steps: Option<u64>, resume: bool) -> TrainReport {
    let spec = weft_dsl::check_source(src).unwrap();
    let mut on_log = |_: &StepMetrics, _: u64| {};
    let opts = TrainOptions {
        out: out.to_path_buf(),
        spec_dir: PathBuf::from("."),
        steps,
        seed: Some(3),
        resume,
        stop: None,
        init: None,
        on_log: &mut on_log,
    };
    train(&spec, src, &CpuBackend::new(), opts).unwrap()
}

/// Greedy next-token accuracy on the second copy of held-out repeated random sequences.
fn copy_accuracy(src: &str, params: &ParamStore) -> f64 {
    let spec = weft_dsl::check_source(src).unwrap();
    let data = CopyTask::new(12, 32, 99).unwrap();
    let batches = data.eval_batches(32, 24).unwrap();
    let g = lower(&spec, &LowerOptions::new(32, 24)).unwrap();
    let (mut hit, mut total) = (0usize, 0usize);
    for b in batches.iter().take(4) {
        let out = CpuBackend::new()
            .run(&g, &inputs_for(&g, b), params, &HookSelection::None)
            .unwrap();
        let logits = out.outputs["logits"].to_f32_vec();
        let targets = b.targets.as_i32().unwrap();
        let tokens = b.tokens.as_i32().unwrap();
        for (i, &tgt) in targets.iter().enumerate() {
            // Second half of each row: positions 12..23 predict copies of the first half.
            if tgt < 0 || i % 24 < 11 || tokens[i] == 0 {
                continue;
            }
            let row = &logits[i * 32..(i + 1) * 32];
            let best = (0..32).max_by(|&a, &c| row[a].total_cmp(&row[c])).unwrap();
            hit += usize::from(best as i32 == tgt);
            total += 1;
        }
    }
    assert!(total > 100, "only {total} positions scored");
    hit as f64 / total as f64
}

#[test]
fn baseline_learns_to_copy_far_above_chance() {
    let out = tmpdir("copy");
    let before = {
        let spec = weft_dsl::check_source(COPY).unwrap();
        let g = lower(&spec, &LowerOptions::new(1, 24)).unwrap();
        copy_accuracy(COPY, &weft_runtime::init_params(&g, 3))
    };
    let report = run(COPY, &out, None, false);
    let after = copy_accuracy(COPY, &report.params);
    eprintln!(
        "copy accuracy: {before:.3} at init, {after:.3} after {} steps",
        report.steps_done
    );
    assert!(before < 0.2, "untrained accuracy {before}");
    assert!(
        after > 0.9,
        "trained copy accuracy only {after} (chance ≈ 1/30)"
    );
    // The run directory has metrics, a checkpoint and attention traces.
    let metrics = weft_runtime::rundir::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert!(metrics.iter().any(|m| m["kind"] == "eval"));
    assert!(out.join("checkpoints/latest").exists());
    assert!(out.join("traces/layers.1.attn.pattern").is_dir());
    // The eval probes ran during training: copy accuracy and induction scores by step.
    let last_copy = metrics
        .iter()
        .rfind(|m| m["probe"] == "copy_accuracy")
        .expect("copy_accuracy logged");
    assert!(last_copy["accuracy"].as_f64().unwrap() > 0.9, "{last_copy}");
    let first = weft_runtime::rundir::read_trace(
        &out.join("traces/induction_score/step-00000075.safetensors"),
    )
    .unwrap();
    let last = weft_runtime::rundir::read_trace(
        &out.join("traces/induction_score/step-00000150.safetensors"),
    )
    .unwrap();
    let best = |t: &weft_runtime::rundir::Trace| {
        t.tensors["scores"]
            .to_f32_vec()
            .into_iter()
            .fold(0f32, f32::max)
    };
    let spec = weft_dsl::check_source(COPY).unwrap();
    let g = lower(&spec, &LowerOptions::new(1, 24)).unwrap();
    let init = weft_runtime::init_params(&g, 3);
    let backend = CpuBackend::new();
    let model = weft_runtime::probes::Model::new(&spec, &init, &backend);
    let probe = spec.train.as_ref().unwrap().eval[1].clone();
    let at_init = weft_runtime::probes::program::run_probe(&model, &probe, 3).unwrap();
    let init_best = at_init["scores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .fold(0f64, f64::max);
    eprintln!(
        "best induction score: {init_best:.3} at init, {:.3} at step 75, {:.3} at step 150",
        best(&first),
        best(&last)
    );
    assert!(
        best(&last) > 0.5 && f64::from(best(&last)) > 3.0 * init_best,
        "induction {} vs init {init_best}",
        best(&last)
    );
}

fn bits(p: &ParamStore) -> HashMap<String, Vec<u32>> {
    p.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.to_f32_vec().iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn resume_repeats_an_uninterrupted_run_bit_for_bit() {
    let straight = run(COPY, &tmpdir("straight"), Some(12), false);
    let split = tmpdir("split");
    let half = run(COPY, &split, Some(6), false);
    assert_eq!(half.steps_done, 6);
    let resumed = run(COPY, &split, Some(12), true);
    assert_eq!(resumed.steps_done, 12);
    assert_eq!(bits(&straight.params), bits(&resumed.params));
}

fn only_selected_change(example: &str, selected: impl Fn(&str) -> bool) {
    let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    // Shrink for speed; the spec's `trainable` globs are what is under test.
    let src = src
        .replace("dim = 128", "dim = 32")
        .replace("ctx = 256", "ctx = 32")
        .replace("ctx = 128", "ctx = 32");
    let src = src
        .replace("len: 256", "len: 32")
        .replace("len: 50", "len: 12")
        .replace("pairs: 16", "pairs: 4");
    let spec = weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{e:?}"));
    let g = lower(&spec, &LowerOptions::new(1, 8)).unwrap();
    let init = weft_runtime::init_params(&g, 3);
    let out = tmpdir(example);
    let mut on_log = |_: &StepMetrics, _: u64| {};
    let dir = PathBuf::from(path).parent().unwrap().to_path_buf();
    let opts = TrainOptions {
        out,
        spec_dir: dir,
        steps: Some(3),
        seed: Some(3),
        resume: false,
        init: None,
        stop: None,
        on_log: &mut on_log,
    };
    let report = train(&spec, &src, &CpuBackend::new(), opts).unwrap();
    let (a, b) = (bits(&init), bits(&report.params));
    let mut changed = 0;
    for (name, v) in &a {
        if selected(name) {
            changed += usize::from(v != &b[name]);
        } else {
            assert_eq!(v, &b[name], "{example}: frozen `{name}` changed");
        }
    }
    assert!(changed > 0, "{example}: no selected parameter changed");
}

#[test]
fn gain_only_training_changes_only_gains() {
    only_selected_change("pear.weft", |n| n.ends_with(".attn.gain"));
}

#[test]
fn router_only_training_changes_only_routers() {
    only_selected_change("moice.weft", |n| n.contains(".router."));
}

#[test]
fn dropout_is_masks_drawn_per_step_and_runs_stay_deterministic() {
    let src = COPY
        .replace(
            "x = x + attention(rms_norm(x))",
            "x = x + dropout(attention(rms_norm(x), dropout: 0.5), p: 0.25)",
        )
        .replace("steps = 150", "steps = 4");
    let spec = weft_dsl::check_source(&src).unwrap();
    let mut o = LowerOptions::new(2, 8);
    o.dropout = true;
    let g = lower(&spec, &o).unwrap();
    let masks = weft_compiler::lower::dropout_inputs(&g);
    // Two layers × (attention weights + residual dropout).
    assert_eq!(masks.len(), 4, "{masks:?}");
    assert!(masks
        .iter()
        .any(|(n, p)| n.ends_with(".attn.weights") && *p == 0.5));
    assert!(masks
        .iter()
        .any(|(n, p)| n.contains(".dropout") && *p == 0.25));
    // Without training mode there is nothing to feed.
    assert!(
        weft_compiler::lower::dropout_inputs(&lower(&spec, &LowerOptions::new(2, 8)).unwrap())
            .is_empty()
    );
    let a = run(&src, &tmpdir("drop-a"), None, false);
    let b = run(&src, &tmpdir("drop-b"), None, false);
    assert_eq!(bits(&a.params), bits(&b.params));
    let plain = run(
        &COPY.replace("steps = 150", "steps = 4"),
        &tmpdir("drop-c"),
        None,
        false,
    );
    assert_ne!(bits(&a.params), bits(&plain.params));
}

#[test]
fn pear_lowers_copy_loss_and_folds_exactly() {
    let src = COPY
        .replace("x = x + attention(rms_norm(x))", "x = x + attention(rms_norm(x), gain: trainable)")
        .replace("steps = 150", "steps = 40")
        .replace("  eval = [copy_accuracy(len: 12, samples: 16), induction_score(len: 12, samples: 8)]\n", "");
    let trained = run(&src, &tmpdir("pear"), None, false);
    let spec = weft_dsl::check_source(&src).unwrap();
    let backend = CpuBackend::new();
    let model = weft_runtime::probes::Model::new(&spec, &trained.params, &backend);
    let cfg = weft_runtime::probes::pear::PearConfig::new(2, 30, 5e-2, 12, 5);
    let r = weft_runtime::probes::pear::pear(&model, &cfg).unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.detected.len(), 2);
    assert!(
        r.copy_loss_after < r.copy_loss_before,
        "{} → {}",
        r.copy_loss_before,
        r.copy_loss_after
    );
    assert!(
        r.gains.iter().any(|&(_, _, g)| (g - 1.0).abs() > 1e-3),
        "gains did not move: {:?}",
        r.gains
    );
    assert!(
        r.fold_max_rel_err <= 1e-5,
        "folded logits differ by {}",
        r.fold_max_rel_err
    );
    assert_eq!(r.gain_ops_after_folding, 0);
}

#[test]
fn divergence_stops_naming_where_and_keeps_the_last_good_checkpoint() {
    let src = COPY
        .replace("optimizer = adamw(lr: 3e-3)", "optimizer = sgd(lr: 1e30)\n  clip = 0\n  checkpoint_every = 1")
        .replace("steps = 150", "steps = 5")
        .replace("  eval = [copy_accuracy(len: 12, samples: 16), induction_score(len: 12, samples: 8)]\n", "");
    let spec = weft_dsl::check_source(&src).unwrap();
    let out = tmpdir("nan");
    let mut on_log = |_: &StepMetrics, _: u64| {};
    let opts = TrainOptions {
        out: out.clone(),
        spec_dir: PathBuf::from("."),
        steps: None,
        seed: Some(3),
        resume: false,
        init: None,
        stop: None,
        on_log: &mut on_log,
    };
    let err = train(&spec, &src, &CpuBackend::new(), opts)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("at step 2") || err.contains("at step 3"),
        "{err}"
    );
    assert!(
        err.contains("hook `") || err.contains("gradient"),
        "names where: {err}"
    );
    assert!(
        err.contains("last good checkpoint:") && err.contains("step-0000000"),
        "{err}"
    );
    // `latest` still names a loadable checkpoint with finite parameters.
    let dir = weft_runtime::checkpoint::CheckpointDir::open(out.join("checkpoints")).unwrap();
    let ck = dir.load_latest(&Default::default()).unwrap();
    assert!(ck
        .params
        .values()
        .all(|t| t.to_f64_vec().iter().all(|x| x.is_finite())));
}

/// `extend_vocab` grows the model's vocabulary: every parameter with a vocabulary axis gets
/// the new rows, starting at the mean of the old ones, and training from a checkpoint of the
/// unextended model (`init`) keeps the old rows. `masked_thought(replace: mask)` then feeds
/// the new `<mask>` id.
#[test]
fn extend_vocab_adds_mean_rows_and_starts_from_smaller_weights() {
    let base = COPY.replace("steps = 150", "steps = 1");
    let grown = base
        .replace("data = copy_task(len: 12)", "data = copy_task(len: 12)\n  transforms = [extend_vocab([\"<mask>\"]), masked_thought(p: 0.5, replace: mask)]")
        // A vanishing lr: one step leaves every weight as it was, bit for bit.
        .replace("adamw(lr: 3e-3)", "sgd(lr: 1e-30)");
    let small = run(&base, &tmpdir("vocab_small"), Some(1), false);
    let spec = weft_dsl::check_source(&grown).unwrap();
    let mut on_log = |_: &StepMetrics, _: u64| {};
    let r = train(
        &spec,
        &grown,
        &CpuBackend::new(),
        TrainOptions {
            out: tmpdir("vocab_grown"),
            spec_dir: PathBuf::from("."),
            steps: Some(1),
            seed: Some(3),
            resume: false,
            stop: None,
            init: Some(&small.params),
            on_log: &mut on_log,
        },
    )
    .unwrap();
    let mut grown_tensors = 0;
    for (name, old) in &small.params {
        let new = &r.params[name];
        let Some(axis) = (0..old.shape.len()).find(|&a| old.shape[a] != new.shape[a]) else {
            assert_eq!(bits_of(old), bits_of(new), "`{name}` changed with lr 1e-30");
            continue;
        };
        grown_tensors += 1;
        assert_eq!((old.shape[axis], new.shape[axis]), (32, 33), "`{name}`");
        let (o, n) = (old.to_f64_vec(), new.to_f64_vec());
        let inner: usize = old.shape[axis + 1..].iter().product();
        let outer: usize = old.shape[..axis].iter().product();
        for out in 0..outer {
            for i in 0..inner {
                let at = |v: &[f64], rows: usize, r: usize| v[(out * rows + r) * inner + i];
                let mean = (0..32).map(|r| at(&o, 32, r)).sum::<f64>() / 32.0;
                assert!(
                    (at(&n, 33, 32) - mean).abs() < 1e-6,
                    "`{name}` new row is not the mean"
                );
                assert_eq!(at(&n, 33, 5), at(&o, 32, 5), "`{name}` old row changed");
            }
        }
    }
    assert!(grown_tensors >= 1, "no parameter grew with the vocabulary");
}

/// Weight decay shrinks matrices but leaves gains (rank-1 tensors) alone.
#[test]
fn weight_decay_spares_gains_and_biases() {
    let src = COPY.replace("adamw(lr: 3e-3)", "sgd(lr: 0.5, weight_decay: 0.5)");
    // With the loss's gradient present, compare the decayed update against the undecayed one.
    let decayed = run(&src, &tmpdir("wd_on"), Some(1), false);
    let plain = run(
        &src.replace("weight_decay: 0.5", "weight_decay: 0.0"),
        &tmpdir("wd_off"),
        Some(1),
        false,
    );
    for (name, t) in &decayed.params {
        let same = bits_of(&decayed.params[name]) == bits_of(&plain.params[name]);
        if t.shape.len() >= 2 {
            assert!(!same, "matrix `{name}` was not decayed");
        } else {
            assert!(same, "rank-1 `{name}` was decayed");
        }
    }
}

fn bits_of(t: &weft_runtime::Tensor) -> Vec<u32> {
    t.to_f32_vec().iter().map(|x| x.to_bits()).collect()
}
