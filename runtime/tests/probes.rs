//! Probes on the CPU backend, on small random models: Batch-ICL's order invariance and its
//! k = L baseline, the MLP decomposition's recovery of a planted linear model, the induction
//! score on hand-built attention patterns with known stripes, and consistency checks that tie
//! probes to hook values (direct attribution sums to the logit difference; rotary components
//! sum to the captured scores; a one-prompt batch mean patches nothing).

use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::typed::{Probe, Resolved};
use weft_runtime::probes::attribution::{head_attribution, AttributionConfig};
use weft_runtime::probes::batch_icl::{aggregate, batch_icl, inject, BatchIclConfig, IclQuery};
use weft_runtime::probes::collapse::{collapse_probe, CollapseConfig};
use weft_runtime::probes::data::CollapseTask;
use weft_runtime::probes::induction::{induction_from_pattern, induction_score, InductionConfig};
use weft_runtime::probes::mlp_decomposition::fit_shared_weights;
use weft_runtime::probes::ov::{ov_copy_score, OvConfig, OvForm};
use weft_runtime::probes::path_patching::{path_patching, PatchingData};
use weft_runtime::probes::program::run_probe;
use weft_runtime::probes::rope_components::{rope_components, RopeComponentsConfig};
use weft_runtime::probes::{logits, Model, ProbeError};
use weft_runtime::{init_params, CpuBackend, ParamStore, Rng, Tensor};

const SPEC: &str = "
model tiny {
  vocab = 40
  dim = 16
  heads = 2
  layers = 3
  ctx = 24
  block decoder {
    x = x + attention(rms_norm(x), position: rope(base: 100))
    x = x + swiglu(rms_norm(x))
  }
  layers {
    0 .. layers => decoder
  }
}
program unfinished = pear(heads: 1)
";

fn spec() -> weft_dsl::Checked {
    weft_dsl::check_source(SPEC).expect("test spec checks")
}

/// Weights drawn with a larger std than the default init so attention is far from uniform
/// and layers matter.
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

fn random_prompt(rng: &mut Rng, len: usize) -> Vec<i32> {
    (0..len).map(|_| 2 + rng.below(38) as i32).collect()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

#[test]
fn batch_icl_ignores_the_order_of_the_demonstrations() {
    let s = spec();
    for seed in [1, 2, 3] {
        let p = params(&s, seed);
        let cpu = CpuBackend::new();
        let m = Model::new(&s, &p, &cpu);
        let mut rng = Rng::new(seed * 7);
        let query = random_prompt(&mut rng, 3);
        // One-shot prompts of different lengths (left-padded inside).
        let demos: Vec<Vec<i32>> = (0..4)
            .map(|k| {
                let mut d = random_prompt(&mut rng, 2 + k);
                d.extend(&query);
                d
            })
            .collect();
        let mut permuted = demos.clone();
        permuted.reverse();
        permuted.swap(0, 2);
        for epochs in [1, 2] {
            let a = aggregate(&m, &demos, 2, epochs).unwrap();
            let b = aggregate(&m, &permuted, 2, epochs).unwrap();
            for k in 0..3 {
                let la = inject(&m, &query, &a, k, 0.0).unwrap();
                let lb = inject(&m, &query, &b, k, 0.0).unwrap();
                assert!(close(&la, &lb, 1e-5), "seed {seed} epochs {epochs} k {k}");
                let am = |x: &[f64]| {
                    x.iter()
                        .enumerate()
                        .max_by(|p, q| p.1.total_cmp(q.1))
                        .unwrap()
                        .0
                };
                assert_eq!(am(&la), am(&lb));
            }
        }
        // Through the whole probe: identical predictions at every k.
        let q = |one_shot: Vec<Vec<i32>>| IclQuery {
            zero_shot: query.clone(),
            one_shot,
            answer: Some(5),
        };
        let cfg = BatchIclConfig {
            positions: 2,
            layer: None,
            alpha: 0.5,
            epochs: 1,
        };
        let ra = batch_icl(&m, &[q(demos.clone())], &cfg).unwrap();
        let rb = batch_icl(&m, &[q(permuted)], &cfg).unwrap();
        assert_eq!(ra.predictions, rb.predictions);
        assert_eq!(ra.layers, vec![0, 1, 2, 3]);
    }
}

#[test]
fn batch_icl_at_k_equal_to_the_layer_count_is_the_zero_shot_pass_and_injection_matters() {
    let s = spec();
    let p = params(&s, 4);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let mut rng = Rng::new(11);
    let query = random_prompt(&mut rng, 4);
    let demos: Vec<Vec<i32>> = (0..3)
        .map(|_| [random_prompt(&mut rng, 3), query.clone()].concat())
        .collect();
    let agg = aggregate(&m, &demos, 2, 1).unwrap();
    let g = m.lower(1, query.len(), &[]).unwrap();
    let plain = logits(&m.run(&g, &query, &[], &[]).unwrap())
        .unwrap()
        .to_f64_vec();
    let v = 40;
    let last = &plain[(query.len() - 1) * v..];
    let at_l = inject(&m, &query, &agg, 3, 0.0).unwrap();
    assert_eq!(at_l, last, "k = L injects nothing");
    let at_1 = inject(&m, &query, &agg, 1, 0.0).unwrap();
    assert!(
        !close(&at_1, last, 1e-3),
        "injecting at layer 1 changes the prediction's logits"
    );
    // Demonstrations that are the zero-shot prompt itself aggregate to its own states.
    let same = aggregate(&m, &[query.clone(), query.clone()], 2, 1).unwrap();
    for k in 0..3 {
        assert!(
            close(&inject(&m, &query, &same, k, 0.0).unwrap(), last, 1e-5),
            "k {k}"
        );
        assert!(
            close(&inject(&m, &query, &same, k, 0.7).unwrap(), last, 1e-5),
            "k {k}, α = 0.7"
        );
    }
}

#[test]
fn mlp_decomposition_recovers_a_planted_linear_layer() {
    let (n, k, d) = (40, 5, 12);
    let mut rng = Rng::new(3);
    let comps: Vec<f64> = (0..n * k * d).map(|_| rng.normal()).collect();
    let w = [1.5, -0.75, 0.0, 2.0, -1.25];
    let b: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n)
        .flat_map(|s| {
            let comps = &comps;
            let b = &b;
            (0..d).map(move |j| {
                b[j] + (0..k)
                    .map(|i| w[i] * comps[(s * k + i) * d + j])
                    .sum::<f64>()
            })
        })
        .collect();
    let fit = fit_shared_weights(&y, &comps, n, k, d).unwrap();
    for (got, want) in fit.weights.iter().zip(w) {
        assert!((got - want).abs() < 1e-9, "{:?}", fit.weights);
    }
    for (got, want) in fit.intercept.iter().zip(&b) {
        assert!((got - want).abs() < 1e-9);
    }
    assert!(fit.relative_error < 1e-9, "{}", fit.relative_error);
    // With noise the fit is still close and the error is what the noise makes it.
    let noisy: Vec<f64> = y.iter().map(|v| v + 0.1 * rng.normal()).collect();
    let fit = fit_shared_weights(&noisy, &comps, n, k, d).unwrap();
    assert!(
        fit.weights.iter().zip(w).all(|(g, t)| (g - t).abs() < 0.05),
        "{:?}",
        fit.weights
    );
    assert!(
        fit.relative_error > 0.005 && fit.relative_error < 0.1,
        "{}",
        fit.relative_error
    );
    // Linearly dependent components are reported, not divided by zero.
    let dup: Vec<f64> = (0..n)
        .flat_map(|s| {
            [
                &comps[s * k * d..s * k * d + d],
                &comps[s * k * d..s * k * d + d],
            ]
            .concat()
        })
        .collect();
    let y2: Vec<f64> = y[..n * d].to_vec();
    assert!(matches!(
        fit_shared_weights(&y2, &dup, n, 2, d),
        Err(ProbeError::Numerical(_))
    ));
    // A component that is the same for every sample gets weight 0, listed as constant; the
    // intercept takes its contribution and the others are fitted as before.
    let fixed: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let with_const: Vec<f64> = (0..n)
        .flat_map(|s| [&comps[s * k * d..(s + 1) * k * d], &fixed[..]].concat())
        .collect();
    let fit = fit_shared_weights(&y, &with_const, n, k + 1, d).unwrap();
    assert_eq!(fit.constant, vec![k]);
    assert_eq!(fit.weights[k], 0.0);
    for (got, want) in fit.weights.iter().zip(w) {
        assert!((got - want).abs() < 1e-9, "{:?}", fit.weights);
    }
    assert!(fit.relative_error < 1e-9, "{}", fit.relative_error);
}

/// Patterns `[B, H, T, T]` for sequences of period n: head 0 attends exactly along the
/// induction stripe (position n+i → i+1), head 1 uniformly over the causal prefix, head 2
/// to the previous token.
fn synthetic_patterns(b: usize, n: usize) -> (Vec<f64>, Vec<usize>) {
    let (h, t) = (3, 2 * n);
    let mut p = vec![0.0; b * h * t * t];
    for bi in 0..b {
        for q in 0..t {
            let row = |hi: usize| ((bi * h + hi) * t + q) * t;
            if q >= n {
                p[row(0) + q - n + 1] = 1.0;
            } else {
                p[row(0) + q] = 1.0;
            }
            for k in 0..=q {
                p[row(1) + k] = 1.0 / (q + 1) as f64;
            }
            p[row(2) + q.saturating_sub(1)] = 1.0;
        }
    }
    (p, vec![b, h, t, t])
}

#[test]
fn induction_score_finds_the_stripe_in_hand_built_patterns() {
    let n = 6;
    let (p, shape) = synthetic_patterns(2, n);
    let s = induction_from_pattern(&p, &shape, n);
    assert!((s[0] - 1.0).abs() < 1e-12, "{s:?}");
    let uniform: f64 = (0..n - 1).map(|i| 1.0 / (n + i + 1) as f64).sum::<f64>() / (n - 1) as f64;
    assert!((s[1] - uniform).abs() < 1e-12, "{s:?}");
    assert_eq!(s[2], 0.0, "a previous-token head is not an induction head");
}

#[test]
fn induction_score_of_a_random_model_is_a_table_of_weights() {
    let s = spec();
    let p = params(&s, 5);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let r = induction_score(
        &m,
        &InductionConfig {
            len: 8,
            samples: 5,
            seed: 1,
        },
    )
    .unwrap();
    assert_eq!((r.scores.len(), r.scores[0].len()), (3, 2));
    assert!(r.scores.iter().flatten().all(|&x| (0.0..=1.0).contains(&x)));
}

#[test]
fn direct_attribution_adds_up_to_the_logit_difference() {
    let s = spec();
    let p = params(&s, 6);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let r = head_attribution(
        &m,
        &AttributionConfig {
            len: 12,
            samples: 3,
            seed: 2,
        },
    )
    .unwrap();
    let sum: f64 = r.embed + r.heads.iter().flatten().sum::<f64>() + r.mlp.iter().sum::<f64>();
    assert!(
        (sum - r.logit_diff).abs() < 1e-3 * (1.0 + r.logit_diff.abs()),
        "{sum} vs {}",
        r.logit_diff
    );
    assert!(r.heads.iter().flatten().any(|x| x.abs() > 1e-3));
}

#[test]
fn rotary_components_sum_to_the_captured_scores() {
    let s = spec();
    let p = params(&s, 7);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let (t, samples) = (10, 2);
    let r = rope_components(
        &m,
        &RopeComponentsConfig {
            layer: 1,
            head: 1,
            len: t,
            samples,
            seed: 3,
        },
    )
    .unwrap();
    assert_eq!(r.components.len(), 4); // head_dim 8 → 4 pairs
    assert!(
        (r.freqs[0] - 1.0).abs() < 1e-6 && r.freqs[3] < r.freqs[0],
        "{:?}",
        r.freqs
    );
    // The same tokens through the graph: mean score at each distance.
    let g = m.lower(samples, t, &["layers.1.attn.scores"]).unwrap();
    let tokens = weft_runtime::probes::data::random_tokens(
        &mut Rng::for_name(3, "probe.rope_components"),
        samples,
        t,
        40,
    );
    let out = m.run(&g, &tokens, &["layers.1.attn.scores"], &[]).unwrap();
    let sc = out.hook("layers.1.attn.scores").unwrap().to_f64_vec(); // [B, H, T, T]
    for delta in 0..t {
        let mut mean = 0.0;
        for b in 0..samples {
            for q in delta..t {
                mean += sc[((b * 2 + 1) * t + q) * t + q - delta];
            }
        }
        mean /= ((t - delta) * samples) as f64;
        assert!(
            (mean - r.total[delta]).abs() < 1e-4 * (1.0 + mean.abs()),
            "Δ {delta}: {mean} vs {}",
            r.total[delta]
        );
    }
}

#[test]
fn path_patching_with_one_prompt_patches_nothing_and_tables_are_l_by_h() {
    let s = spec();
    let p = params(&s, 8);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    let one = path_patching(&m, &PatchingData::copy(1, 6, 40, 4)).unwrap();
    assert!(
        one.heads
            .iter()
            .flatten()
            .chain(&one.mlp)
            .all(|&d| d == 0.0),
        "{:?}",
        one.heads
    );
    let many = path_patching(&m, &PatchingData::copy(6, 6, 40, 4)).unwrap();
    assert_eq!(
        (
            many.heads.len(),
            many.heads[0].len(),
            many.mlp.len(),
            many.ranking.len()
        ),
        (3, 2, 3, 6)
    );
    assert!(many.heads.iter().flatten().any(|&d| d != 0.0));
    let (l, h) = many.ranking[0];
    assert!(many.heads.iter().flatten().all(|&d| d <= many.heads[l][h]));
}

#[test]
fn ov_eigen_score_flips_sign_with_the_heads_output() {
    let s = spec();
    let mut p = params(&s, 9);
    let cpu = CpuBackend::new();
    let cfg = OvConfig {
        form: OvForm::Eigen,
        k: 5,
        max_tokens: 64,
        seed: 0,
    };
    let before = ov_copy_score(&Model::new(&s, &p, &cpu), &cfg).unwrap();
    // Negate head 1's rows of layer 2's W_O (head_dim 8): its OV matrix, and spectrum, negate.
    let wo = p.get_mut("layers.2.attn.wo").unwrap();
    let mut v = wo.to_f32_vec();
    v[8 * 16..16 * 16].iter_mut().for_each(|x| *x = -*x);
    *wo = Tensor::f32(&wo.shape.clone(), v);
    let after = ov_copy_score(&Model::new(&s, &p, &cpu), &cfg).unwrap();
    assert!(
        (after.scores[2][1] + before.scores[2][1]).abs() < 1e-6,
        "{} {}",
        before.scores[2][1],
        after.scores[2][1]
    );
    assert_eq!(after.scores[2][0], before.scores[2][0]);
    assert!(before
        .scores
        .iter()
        .flatten()
        .all(|x| (-1.0..=1.0).contains(x)));
    let topk = ov_copy_score(
        &Model::new(&s, &p, &cpu),
        &OvConfig {
            form: OvForm::Topk,
            ..cfg
        },
    )
    .unwrap();
    assert!(topk
        .scores
        .iter()
        .chain(topk.negative.as_ref().unwrap())
        .flatten()
        .all(|x| (0.0..=1.0).contains(x)));
}

#[test]
fn collapse_probe_is_normalised_by_its_first_length() {
    let s = spec();
    let p = params(&s, 10);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    for task in [CollapseTask::CountOnes, CollapseTask::FindZero] {
        let r = collapse_probe(
            &m,
            &CollapseConfig {
                task,
                lengths: vec![4, 8, 16],
            },
        )
        .unwrap();
        assert_eq!(r.normalised[0], 1.0);
        assert!(r.delta.iter().all(|&d| d > 0.0), "{:?}", r.delta);
    }
}

#[test]
fn programs_run_typed_and_bad_calls_say_why() {
    let s = spec();
    let p = params(&s, 11);
    let cpu = CpuBackend::new();
    let m = Model::new(&s, &p, &cpu);
    // PEAR on a model without per-head gains says what to add.
    let e = run_probe(&m, &s.programs[0].probe, 0).unwrap_err();
    assert!(
        matches!(&e, ProbeError::Model(msg) if msg.contains("gain: trainable")),
        "{e}"
    );
    // Calls reach probes only typed: a name the language does not know, or a hand-built call
    // missing arguments the checker would have filled, fails to convert and says which.
    let mut unknown = s.programs[0].call.clone();
    unknown.name = "no_such_probe".into();
    let e = Probe::from_call(&unknown).unwrap_err();
    assert!(
        e.arg.is_none() && e.to_string().contains("`no_such_probe`"),
        "{e}"
    );
    let mut bare = s.programs[0].call.clone();
    bare.name = "batch_icl".into();
    bare.args.clear();
    let e = Probe::from_call(&bare).unwrap_err().to_string();
    assert!(e.contains("`demos`"), "{e}");
    // Batch-ICL needs a label-mapping source: a clear error, not a panic.
    let probe = |src: &str| {
        let call = s
            .model
            .call_source(src, weft_dsl::builtins::Kind::Probe)
            .unwrap();
        Probe::from_call(&call).unwrap()
    };
    let e = run_probe(&m, &probe("batch_icl()"), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label_mapping"), "{e}");
    let json = run_probe(&m, &probe("copy_accuracy()"), 0).unwrap();
    let acc = json["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

/// An example spec narrowed (dim 16, ctx ≤ 48) so every program runs in a test.
fn narrowed(path: &str) -> weft_dsl::Checked {
    let src = std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let text =
        weft_dsl::edit::with_settings(&src, &[("dim", 16), ("ctx", 48)], &[("seq", None)]).unwrap();
    weft_dsl::check_source(&text).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

#[test]
fn every_example_program_runs() {
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("weft") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let s = narrowed(&name);
        let g = lower(&s, &LowerOptions::new(1, 1)).unwrap();
        let p = init_params(&g, 1);
        let cpu = CpuBackend::new();
        let m = Model::new(&s, &p, &cpu);
        for prog in &s.programs {
            match run_probe(&m, &prog.probe, 0) {
                Ok(json) => {
                    assert!(json.is_object(), "{name}: {}", prog.name);
                    ran += 1;
                }
                Err(e) => panic!("{name}: program {} ({}): {e}", prog.name, prog.call.name),
            }
        }
    }
    assert!(ran >= 10, "only {ran} example programs ran");
}
