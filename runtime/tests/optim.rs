//! Optimizers, schedules, clipping and accumulation: values against hand computation, and a
//! real training loop over a differentiated graph.

use std::collections::BTreeMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{BinaryOp, DType, GraphBuilder, Init};
use weft_runtime::optim::{
    clip_factor, clip_grad_norm, global_norm, AdamW, GradAccumulator, Gradients, OptimError,
    Optimizer, OptimizerConfig, OptimizerState, Schedule, Sgd,
};
use weft_runtime::{Backend, CpuBackend, HookSelection, Outputs, ParamStore, Rng, Tensor};

fn store(entries: &[(&str, &[usize], Vec<f32>)]) -> ParamStore {
    entries
        .iter()
        .map(|(n, s, v)| (n.to_string(), Tensor::f32(s, v.clone())))
        .collect()
}

fn grads(entries: &[(&str, &[usize], Vec<f32>)]) -> Gradients {
    let mut g = Gradients::new();
    for (n, s, v) in entries {
        g.insert(*n, Tensor::f32(s, v.clone()));
    }
    g
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// A from-the-formula AdamW reference in f64 (PyTorch `torch.optim.AdamW`).
fn adamw_reference(p0: f64, gs: &[f64], lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) -> Vec<f64> {
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    let mut out = Vec::new();
    for (i, &g) in gs.iter().enumerate() {
        let t = (i + 1) as i32;
        p *= 1.0 - lr * wd;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mhat = m / (1.0 - b1.powi(t));
        let vhat = v / (1.0 - b2.powi(t));
        p -= lr * mhat / (vhat.sqrt() + eps);
        out.push(p);
    }
    out
}

#[test]
fn adamw_matches_hand_computed_steps() {
    let cfg = AdamW {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(cfg.clone()));
    // A matrix: weight decay applies to matrices, not to gains and biases.
    let mut params = store(&[("w", &[1, 2], vec![1.0, -2.0])]);
    let gseq = [[0.5, -1.0], [0.25, 2.0], [-0.5, 0.1], [1.0, 1.0]];
    let mut got = [vec![], vec![]];
    for g in &gseq {
        opt.step(
            &mut params,
            &grads(&[("w", &[1, 2], g.map(|x| x as f32).to_vec())]),
            cfg.lr,
        )
        .unwrap();
        for (i, &x) in params["w"].as_f32().unwrap().iter().enumerate() {
            got[i].push(x as f64);
        }
    }
    // Step 1 by hand: bias-corrected m̂ = g, v̂ = g², so p ← p(1 − lr·wd) − lr·sign(g).
    assert!(
        close(got[0][0], 1.0 * (1.0 - 0.001) - 0.1, 1e-6),
        "{}",
        got[0][0]
    );
    assert!(
        close(got[1][0], -2.0 * (1.0 - 0.001) + 0.1, 1e-6),
        "{}",
        got[1][0]
    );
    for (i, p0) in [1.0, -2.0].into_iter().enumerate() {
        let gs: Vec<f64> = gseq.iter().map(|g| g[i]).collect();
        let want = adamw_reference(p0, &gs, 0.1, 0.9, 0.999, 1e-8, 0.01);
        for (s, (a, b)) in got[i].iter().zip(&want).enumerate() {
            assert!(close(*a, *b, 1e-6), "param {i} step {s}: {a} vs {b}");
        }
    }
    assert_eq!(opt.steps_taken(), 4);
    assert_eq!(opt.state().m["w"].shape, vec![1, 2]);
}

#[test]
fn sgd_momentum_and_l2_decay_follow_pytorch() {
    let cfg = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(OptimizerConfig::Sgd(cfg));
    let mut params = store(&[("w", &[1], vec![1.0])]);
    let g = grads(&[("w", &[1], vec![1.0])]);
    let mut ps = Vec::new();
    for _ in 0..3 {
        opt.step(&mut params, &g, 0.1).unwrap();
        ps.push(params["w"].as_f32().unwrap()[0] as f64);
    }
    // buf = 1, 1.9, 2.71 → p = 0.9, 0.71, 0.439.
    for (a, b) in ps.iter().zip([0.9, 0.71, 0.439]) {
        assert!(close(*a, b, 1e-6), "{ps:?}");
    }
    // L2 decay enters the gradient: g' = g + wd·p; without momentum p ← p − lr·g'.
    let mut opt = Optimizer::new(OptimizerConfig::Sgd(Sgd {
        lr: 0.5,
        momentum: 0.0,
        weight_decay: 0.1,
    }));
    let mut params = store(&[("w", &[1, 1], vec![2.0])]);
    opt.step(&mut params, &grads(&[("w", &[1, 1], vec![0.0])]), 0.5)
        .unwrap();
    assert!(close(
        params["w"].as_f32().unwrap()[0] as f64,
        2.0 - 0.5 * 0.2,
        1e-7
    ));
    assert!(
        opt.state().m.is_empty(),
        "no momentum buffer without momentum"
    );
}

#[test]
fn params_without_gradient_stay_bit_identical_and_errors_change_nothing() {
    let mut params = store(&[
        ("a", &[3], vec![0.1, 0.2, 0.3]),
        ("frozen", &[2], vec![f32::from_bits(0x3f80_0001), -0.0]),
    ]);
    let before = params.clone();
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(AdamW {
        weight_decay: 0.5,
        ..AdamW::default()
    }));
    opt.step(
        &mut params,
        &grads(&[("a", &[3], vec![1.0, 1.0, 1.0])]),
        1e-2,
    )
    .unwrap();
    assert_ne!(params["a"], before["a"]);
    let bits = |t: &Tensor| {
        t.as_f32()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&params["frozen"]), bits(&before["frozen"]));

    let snapshot = (params.clone(), opt.clone());
    let bad = grads(&[("a", &[3], vec![1.0; 3]), ("b", &[1], vec![1.0])]);
    assert_eq!(
        opt.step(&mut params, &bad, 1e-2),
        Err(OptimError::UnknownParam { name: "b".into() })
    );
    let bad = grads(&[("a", &[1, 3], vec![1.0; 3])]);
    assert!(matches!(
        opt.step(&mut params, &bad, 1e-2),
        Err(OptimError::ShapeMismatch { .. })
    ));
    assert_eq!(
        (params, opt),
        snapshot,
        "a failed step must not change anything"
    );
}

#[test]
fn resuming_from_serialised_state_is_bit_identical() {
    let cfg = OptimizerConfig::Adamw(AdamW {
        lr: 3e-3,
        weight_decay: 0.1,
        ..AdamW::default()
    });
    let mut rng = Rng::new(5);
    let gs: Vec<Gradients> = (0..6)
        .map(|_| grads(&[("w", &[4], (0..4).map(|_| rng.normal() as f32).collect())]))
        .collect();
    let p0 = store(&[("w", &[4], vec![0.5, -0.5, 1.5, 0.0])]);

    let mut straight = Optimizer::new(cfg.clone());
    let mut ps = p0.clone();
    for g in &gs {
        straight.step(&mut ps, g, 3e-3).unwrap();
    }

    let mut first = Optimizer::new(cfg.clone());
    let mut pr = p0;
    for g in &gs[..3] {
        first.step(&mut pr, g, 3e-3).unwrap();
    }
    // Through checkpoint form: named tensors plus the step count.
    let saved: Vec<(String, Tensor)> = first
        .state()
        .tensors()
        .map(|(n, t)| (n, t.clone()))
        .collect();
    assert!(saved.iter().any(|(n, _)| n == "opt.m.w") && saved.iter().any(|(n, _)| n == "opt.v.w"));
    let state = OptimizerState::from_tensors(
        first.steps_taken(),
        saved.iter().map(|(n, t)| (n.as_str(), t.clone())),
    );
    let mut resumed = Optimizer::with_state(cfg, state);
    for g in &gs[3..] {
        resumed.step(&mut pr, g, 3e-3).unwrap();
    }
    assert_eq!(ps, pr);
    assert_eq!(straight, resumed);
}

#[test]
fn schedules_take_their_values_at_key_steps() {
    let at = |s: &Schedule, step, total| s.factor(step, total);
    let c = Schedule::Constant { warmup: 10 };
    assert!(close(at(&c, 0, 100), 0.1, 1e-12));
    assert!(close(at(&c, 4, 100), 0.5, 1e-12));
    assert!(close(at(&c, 9, 100), 1.0, 1e-12));
    assert!(close(at(&c, 99, 100), 1.0, 1e-12));
    assert_eq!(Schedule::default().factor(0, 10), 1.0);

    let l = Schedule::Linear {
        warmup: 0,
        final_frac: 0.0,
    };
    assert!(close(at(&l, 0, 100), 1.0, 1e-12));
    assert!(close(at(&l, 50, 100), 0.5, 1e-12));
    assert!(close(at(&l, 99, 100), 0.01, 1e-12));
    let l = Schedule::Linear {
        warmup: 2,
        final_frac: 0.2,
    };
    assert!(close(at(&l, 0, 12), 0.5, 1e-12));
    assert!(close(at(&l, 2, 12), 1.0, 1e-12));
    assert!(close(at(&l, 7, 12), 0.6, 1e-12));
    assert!(close(at(&l, 12, 12), 0.2, 1e-12));

    let cos = Schedule::Cosine {
        warmup: 10,
        floor: 0.1,
    };
    assert!(close(at(&cos, 10, 110), 1.0, 1e-12));
    assert!(close(at(&cos, 60, 110), 0.55, 1e-12));
    assert!(close(at(&cos, 110, 110), 0.1, 1e-12));
    assert!(at(&cos, 30, 110) > at(&cos, 31, 110));

    let tail = Schedule::CosineTail {
        warmup: 0,
        floor: 0.05,
        at: 0.6,
    };
    assert!(close(at(&tail, 0, 100), 1.0, 1e-12));
    assert!(close(at(&tail, 30, 100), 0.525, 1e-12));
    assert!(close(at(&tail, 60, 100), 0.05, 1e-12));
    assert!(close(at(&tail, 80, 100), 0.025, 1e-12));
    assert!(close(at(&tail, 100, 100), 0.0, 1e-12));
    // Continuous at the knee, from both sides.
    assert!((at(&tail, 59, 100) - 0.05).abs() < 1e-3);
    assert!(close(
        Schedule::Constant { warmup: 4 }.lr(2e-3, 1, 10),
        1e-3,
        1e-12
    ));

    // The JSON form stored in checkpoints uses the builtin's argument names.
    let json = serde_json::to_value(&Schedule::Linear {
        warmup: 2,
        final_frac: 0.5,
    })
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"kind": "linear", "warmup": 2, "final": 0.5})
    );
}

#[test]
fn clipping_inside_the_update_has_the_bits_of_clipping_first() {
    // The training loop hands clipping's factor to the optimizer instead of scaling the
    // gradients first: every parameter and moment must come out the same, for both
    // optimizers, over 40,000 elements (several parallel chunks) and a norm far over 1.
    let mut rng = Rng::new(9);
    let mut noise = |n: usize, s: f32| (0..n).map(|_| s * rng.normal() as f32).collect::<Vec<_>>();
    let params = store(&[
        ("w", &[200, 200], noise(40_000, 1.0)),
        ("b", &[7], noise(7, 1.0)),
    ]);
    let g = grads(&[
        ("w", &[200, 200], noise(40_000, 3.0)),
        ("b", &[7], noise(7, 3.0)),
    ]);
    let configs = [
        OptimizerConfig::Adamw(AdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..AdamW::default()
        }),
        OptimizerConfig::Sgd(Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.1,
        }),
    ];
    for config in configs {
        let (mut a, mut b) = (params.clone(), params.clone());
        let (mut oa, mut ob) = (
            Optimizer::new(config.clone()),
            Optimizer::new(config.clone()),
        );
        for _ in 0..3 {
            let mut clipped = g.clone();
            let norm = clip_grad_norm(&mut clipped, 1.0);
            oa.step(&mut a, &clipped, 0.01).unwrap();
            let factor = clip_factor(global_norm(&g), 1.0);
            assert!(
                norm > 100.0 && factor < 0.01,
                "clipping applies: {norm}, {factor}"
            );
            ob.step_scaled(&mut b, &g, 0.01, factor).unwrap();
        }
        assert_eq!(a, b, "{config:?}: parameters");
        assert_eq!(oa.state(), ob.state(), "{config:?}: optimizer state");
    }
}

#[test]
fn clipping_scales_to_the_max_norm_and_returns_the_pre_clip_norm() {
    let mut g = grads(&[("a", &[1], vec![3.0]), ("b", &[1], vec![4.0])]);
    assert!(close(global_norm(&g), 5.0, 1e-12));
    assert!(close(clip_grad_norm(&mut g, 1.0), 5.0, 1e-12));
    assert!(close(global_norm(&g), 1.0, 1e-5));
    let ratio = g.get("b").unwrap().as_f32().unwrap()[0] / g.get("a").unwrap().as_f32().unwrap()[0];
    assert!(close(ratio as f64, 4.0 / 3.0, 1e-6), "direction kept");

    let mut g = grads(&[("a", &[2], vec![0.3, 0.4])]);
    let before = g.clone();
    assert!(close(clip_grad_norm(&mut g, 1.0), 0.5, 1e-7));
    assert_eq!(g, before, "under the limit nothing changes");
    let mut g = grads(&[("a", &[2], vec![30.0, 40.0])]);
    assert!(close(clip_grad_norm(&mut g, 0.0), 50.0, 1e-12));
    assert_eq!(
        g.get("a").unwrap().as_f32().unwrap(),
        &[30.0, 40.0],
        "0 = off"
    );
}

#[test]
fn accumulation_averages_micro_batches() {
    let mut acc = GradAccumulator::new();
    assert!(acc.clone().finish().is_none());
    acc.add(grads(&[
        ("a", &[2], vec![1.0, 2.0]),
        ("b", &[1], vec![4.0]),
    ]));
    acc.add(grads(&[("a", &[2], vec![3.0, -2.0])]));
    assert_eq!(acc.count(), 2);
    let g = acc.finish().unwrap();
    assert_eq!(g.get("a").unwrap().as_f32().unwrap(), &[2.0, 0.0]);
    assert_eq!(
        g.get("b").unwrap().as_f32().unwrap(),
        &[2.0],
        "absent = zero"
    );
}

#[test]
fn gradients_come_from_grad_outputs_only() {
    let mut out = Outputs::default();
    out.outputs
        .insert("loss".into(), Tensor::f32(&[], vec![1.0]));
    out.outputs
        .insert("grad.layers.0.w".into(), Tensor::f64(&[2], vec![0.5, 0.25]));
    let g = Gradients::from_outputs(&out);
    assert_eq!(g.len(), 1);
    assert_eq!(
        g.get("layers.0.w").unwrap(),
        &Tensor::f32(&[2], vec![0.5, 0.25])
    );
}

/// Least squares `mean((x·w − y)²)` with a frozen scale: AdamW with a schedule and clipping,
/// driven by real `grad.*` outputs, fits `w` and never touches the frozen parameter.
#[test]
fn a_training_loop_over_a_differentiated_graph_converges() {
    let (n, d) = (16, 3);
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[n, d], DType::F32);
    let y = b.input("y", &[n, 1], DType::F32);
    let w = b.param("w", &[d, 1], Init::Zeros, true);
    let s = b.param("s", &[1], Init::Ones, false);
    let xw = b.matmul(x, w).unwrap();
    let pred = b.binary(BinaryOp::Mul, xw, s).unwrap();
    let diff = b.binary(BinaryOp::Sub, pred, y).unwrap();
    let sq = b.binary(BinaryOp::Mul, diff, diff).unwrap();
    let flat = b.reshape(sq, &[n]).unwrap();
    let loss = b.mean(flat, 0, false).unwrap();
    b.output("loss", loss);
    let g = b.finish().unwrap();
    let train = grad(&g, loss, &[ParamSelection::All]).unwrap();

    let mut rng = Rng::new(1);
    let true_w = [1.5f32, -2.0, 0.5];
    let xs: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
    let ys: Vec<f32> = (0..n)
        .map(|i| (0..d).map(|j| xs[i * d + j] * true_w[j]).sum())
        .collect();
    let inputs = [
        ("x".to_string(), Tensor::f32(&[n, d], xs)),
        ("y".to_string(), Tensor::f32(&[n, 1], ys)),
    ]
    .into_iter()
    .collect();
    let mut params = weft_runtime::init_params(&g, 0);
    let frozen = params["s"].clone();
    let cfg = AdamW {
        lr: 0.1,
        ..AdamW::default()
    };
    let schedule = Schedule::Cosine {
        warmup: 10,
        floor: 0.1,
    };
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(cfg.clone()));
    let backend = CpuBackend::new();
    let total = 300;
    let mut losses = BTreeMap::new();
    for step in 0..total {
        let out = backend
            .run(&train, &inputs, &params, &HookSelection::None)
            .unwrap();
        losses.insert(step, out.get("loss").unwrap().to_f64_vec()[0]);
        let mut grads = Gradients::from_outputs(&out);
        assert_eq!(
            grads.len(),
            1,
            "only the trainable parameter has a gradient"
        );
        clip_grad_norm(&mut grads, 1.0);
        opt.step(&mut params, &grads, schedule.lr(cfg.lr, step, total))
            .unwrap();
    }
    assert!(losses[&0] > 1.0, "{}", losses[&0]);
    assert!(losses[&(total - 1)] < 1e-4, "{}", losses[&(total - 1)]);
    assert_eq!(params["s"], frozen);
    for (got, want) in params["w"].as_f32().unwrap().iter().zip(true_w) {
        assert!((got - want).abs() < 1e-2, "{got} vs {want}");
    }
}
