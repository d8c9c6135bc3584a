//! Hook replacement on the wgpu backend against the CPU reference, on random weights: a given
//! tensor, a batch mean, a subset of positions, an attention pattern and a head's result;
//! replacing a value by itself is the identity bit for bit; the probes that patch values
//! (path patching, Batch-ICL) give the CPU's tables; bad replacements fail as on the CPU.

mod wgpu_support;
use std::collections::HashMap;
use weft_compiler::ir::{verify, Graph};
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::probes::batch_icl::{aggregate, batch_icl, inject, BatchIclConfig, IclQuery};
use weft_runtime::probes::path_patching::{freeze_qkv, path_patching, PatchingData};
use weft_runtime::probes::Model;
use weft_runtime::replace::split;
use weft_runtime::{
    init_params, Backend, CpuBackend, HookSelection, Intervention, Outputs, ParamStore, Rng, Tensor,
};
use wgpu_support::{assert_close, gpu_or_skip, max_rel_err, RTOL};

const B: usize = 3;
const T: usize = 7;
const V: usize = 40;
const D: usize = 16;

const SPEC: &str = "
model tiny {
  vocab = 40
  dim = 16
  heads = 2
  layers = 2
  ctx = 16
  block decoder {
    x = x + attention(rms_norm(x), position: rope(base: 100))
    x = x + swiglu(rms_norm(x))
  }
  layers {
    0 .. layers => decoder
  }
}
";

fn spec() -> weft_dsl::Checked {
    weft_dsl::check_source(SPEC).expect("test spec checks")
}

/// A nonzero normal draw (|x| ≥ 0.05), scaled.
fn draw(rng: &mut Rng, scale: f32) -> f32 {
    let x = rng.normal() as f32;
    scale
        * if x.abs() < 0.05 {
            x + 0.05f32.copysign(x)
        } else {
            x
        }
}

fn random(rng: &mut Rng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(shape, (0..n).map(|_| draw(rng, scale)).collect())
}

/// Every parameter random and nonzero: norm gains around 1, weights with std 0.4 (attention
/// far from uniform, so patterns and heads matter).
fn params(seed: u64) -> ParamStore {
    let g = lower(&spec(), &LowerOptions::new(1, 1)).unwrap();
    let mut rng = Rng::new(seed);
    init_params(&g, seed)
        .into_iter()
        .map(|(name, t)| {
            let r = random(&mut rng, &t.shape, 0.4);
            let t = if name.contains("norm") {
                Tensor::f32(&t.shape, r.to_f32_vec().iter().map(|x| 1.0 + x).collect())
            } else {
                r
            };
            (name, t)
        })
        .collect()
}

/// The model lowered with every expensive hook point materialised, weights and tokens.
fn setup(seed: u64) -> (Graph, ParamStore, HashMap<String, Tensor>) {
    let mut o = LowerOptions::new(B, T);
    o.capture = vec![
        "layers.*.attn.result".into(),
        "layers.*.attn.pattern".into(),
        "layers.*.attn.scores".into(),
    ];
    let g = lower(&spec(), &o).unwrap();
    let mut rng = Rng::new(seed + 100);
    let tokens = Tensor::i32(
        &[B, T],
        (0..B * T).map(|_| rng.below(V as u64) as i32).collect(),
    );
    (
        g,
        params(seed),
        HashMap::from([("tokens".to_string(), tokens)]),
    )
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect()
}

fn run(
    b: &dyn Backend,
    (g, p, i): &(Graph, ParamStore, HashMap<String, Tensor>),
    hooks: &HookSelection,
    r: &[Intervention],
) -> Outputs {
    b.run_replacing(g, i, p, hooks, r)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()))
}

/// Mean over the batch axis: `[1, ...]`.
fn batch_mean(x: &Tensor) -> Tensor {
    let b = x.shape[0];
    let inner = x.to_f32_vec().len() / b;
    let v = x.to_f64_vec();
    let m: Vec<f32> = (0..inner)
        .map(|j| ((0..b).map(|r| v[r * inner + j]).sum::<f64>() / b as f64) as f32)
        .collect();
    let mut shape = x.shape.clone();
    shape[0] = 1;
    Tensor::f32(&shape, m)
}

/// The interventions compared against the CPU, by name.
fn cases(clean: &Outputs, rng: &mut Rng) -> Vec<(&'static str, Vec<Intervention>)> {
    let h = |n: &str| clean.hooks[n].clone();
    let pattern = h("layers.1.attn.pattern"); // [B, H, T, T]
                                              // Another valid pattern: the batch's rows rotated (row b reads row b+1's weights).
    let rows = pattern.to_f32_vec();
    let per_row = rows.len() / B;
    let rotated: Vec<f32> = (0..B)
        .flat_map(|b| rows[((b + 1) % B) * per_row..((b + 1) % B + 1) * per_row].to_vec())
        .collect();
    vec![
        (
            "a given tensor",
            vec![Intervention::replace(
                "layers.0.resid_mid",
                random(rng, &[B, T, D], 1.0),
            )],
        ),
        (
            "the batch mean",
            vec![Intervention::ReplaceRegion {
                name: "layers.1.resid_pre".into(),
                region: vec![],
                with: batch_mean(&h("layers.1.resid_pre")),
            }],
        ),
        (
            "a subset of positions",
            vec![Intervention::at_positions(
                "layers.0.mlp_out",
                &[0, -1, 2],
                random(rng, &[B, 3, D], 1.0),
            )],
        ),
        (
            "a whole attention pattern",
            vec![Intervention::replace(
                "layers.1.attn.pattern",
                Tensor::f32(&pattern.shape, rotated),
            )],
        ),
        (
            "one head's pattern rows at the last positions",
            vec![Intervention::head_at_positions(
                "layers.0.attn.pattern",
                1,
                Some(&[-1, -2]),
                Tensor::f32(&[1, 1, 2, T], vec![1.0 / T as f32; 2 * T]),
            )
            .unwrap()],
        ),
        (
            "a head's result at one position (path patching)",
            vec![Intervention::head_at_positions(
                "layers.0.attn.result",
                0,
                Some(&[-2]),
                random(rng, &[1, 1, 1, D], 1.0),
            )
            .unwrap()],
        ),
        (
            "overlapping boxes in order, q frozen, k of one head",
            vec![
                Intervention::replace("layers.0.attn.q", h("layers.0.attn.q")),
                Intervention::head("layers.1.attn.k", 1, random(rng, &[B, 1, T, D / 2], 0.5))
                    .unwrap(),
                Intervention::at_positions(
                    "layers.1.resid_mid",
                    &[1, 2],
                    random(rng, &[B, 2, D], 1.0),
                ),
                Intervention::at_positions(
                    "layers.1.resid_mid",
                    &[2, 3],
                    random(rng, &[1, 2, D], 1.0),
                ),
            ],
        ),
    ]
}

#[test]
fn replacements_match_the_cpu_and_reach_the_logits() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = CpuBackend::new();
    for seed in [1, 2] {
        let case = setup(seed);
        let clean = run(&cpu, &case, &HookSelection::All, &[]);
        let gpu_clean = run(gpu, &case, &HookSelection::None, &[]);
        let mut rng = Rng::new(seed * 31);
        for (what, list) in cases(&clean, &mut rng) {
            for hooks in [HookSelection::All, HookSelection::None] {
                let want = run(&cpu, &case, &hooks, &list);
                let got = run(gpu, &case, &hooks, &list);
                let what = format!("seed {seed}, {what}, hooks {hooks:?}");
                assert_close(&what, &got.outputs, &want.outputs);
                assert_close(&format!("{what} (hooks)"), &got.hooks, &want.hooks);
                // The replacement happened on the GPU: the logits moved well past tolerance.
                let (moved, _) = max_rel_err(&got.outputs["logits"], &gpu_clean.outputs["logits"]);
                assert!(moved > 100.0 * RTOL, "{what}: logits moved only {moved:e}");
            }
        }
    }
}

#[test]
fn a_captured_replaced_hook_reports_the_value_before_the_replacement() {
    let Some(gpu) = gpu_or_skip() else { return };
    let case = setup(3);
    let clean = run(gpu, &case, &HookSelection::All, &[]);
    let name = "layers.0.resid_mid";
    let iv = Intervention::at_positions(name, &[-1], Tensor::zeros(&[1, 1, D]));
    let out = run(gpu, &case, &HookSelection::All, &[iv]);
    assert_eq!(bits(&out.hooks[name]), bits(&clean.hooks[name]));
    // Its reader, the MLP, saw zeros at the last position: swiglu(rms_norm(0)) = 0.
    let mlp = out.hooks["layers.0.mlp_out"].to_f32_vec();
    for b in 0..B {
        let last = ((b * T) + T - 1) * D;
        assert!(mlp[last..last + D].iter().all(|&x| x == 0.0), "row {b}");
    }
}

#[test]
fn replacing_any_hook_by_its_own_value_is_bitwise_identity_on_wgpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let case = setup(4);
    let clean = run(gpu, &case, &HookSelection::All, &[]);
    assert!(clean.hooks.len() > 20, "every hook captured");
    for (name, value) in &clean.hooks {
        if value.as_f32().is_none() {
            continue;
        }
        // Whole, and as a box (the last position), which goes through `where`.
        let seq = weft_runtime::replace::HookAxes::of(name).seq;
        let mut lists = vec![vec![Intervention::replace(name.clone(), value.clone())]];
        if value.shape.len() > seq {
            let mut region = vec![weft_runtime::Sel::All; seq + 1];
            region[seq] = weft_runtime::Sel::At(vec![-1]);
            // The value's own entries at the last index of the sequence axis.
            let n = value.shape[seq];
            let inner: usize = value.shape[seq + 1..].iter().product();
            let last: Vec<f32> = value
                .to_f32_vec()
                .chunks(n * inner)
                .flat_map(|c| c[(n - 1) * inner..].to_vec())
                .collect();
            let mut shape = value.shape.clone();
            shape[seq] = 1;
            lists.push(vec![Intervention::ReplaceRegion {
                name: name.clone(),
                region,
                with: Tensor::f32(&shape, last),
            }]);
        }
        for list in lists {
            let out = run(gpu, &case, &HookSelection::All, &list);
            assert_eq!(
                bits(&out.outputs["logits"]),
                bits(&clean.outputs["logits"]),
                "replacing {name} ({})",
                if list.len() == 1 && matches!(list[0], Intervention::Replace { .. }) {
                    "whole"
                } else {
                    "last position"
                }
            );
            for (h, v) in &out.hooks {
                if v.as_f32().is_some() {
                    assert_eq!(
                        bits(v),
                        bits(&clean.hooks[h]),
                        "hook {h} after replacing {name}"
                    );
                }
            }
        }
    }
}

#[test]
fn freezing_every_q_k_v_reproduces_the_clean_logits_on_wgpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let checked = spec();
    let case = setup(5);
    let clean = run(gpu, &case, &HookSelection::All, &[]);
    let model = Model::new(&checked, &case.1, gpu);
    let frozen = freeze_qkv(&model, &clean).unwrap();
    assert_eq!(frozen.len(), 6);
    let out = run(gpu, &case, &HookSelection::All, &frozen);
    assert_eq!(bits(&out.outputs["logits"]), bits(&clean.outputs["logits"]));
}

#[test]
fn the_rewritten_graph_depends_on_which_hooks_are_replaced_not_on_values_or_boxes() {
    let (g, _, _) = setup(6);
    let a = split(
        &g,
        &[Intervention::head_at_positions(
            "layers.1.attn.result",
            0,
            Some(&[-1]),
            Tensor::zeros(&[1, 1, 1, D]),
        )
        .unwrap()],
    )
    .unwrap();
    let b = split(
        &g,
        &[Intervention::head_at_positions(
            "layers.1.attn.result",
            1,
            Some(&[2]),
            Tensor::f32(&[B, 1, 1, D], vec![0.5; B * D]),
        )
        .unwrap()],
    )
    .unwrap();
    verify(&a.graph).unwrap();
    assert_eq!(
        a.graph, b.graph,
        "one compiled program serves a sweep over heads"
    );
    assert_ne!(a.inputs[0].1, b.inputs[0].1);
    // Captures still name the computed node; its readers read the replacement.
    let r = a.graph.hook("layers.1.attn.result").unwrap();
    assert_eq!(
        a.graph.node(r).op,
        g.node(g.hook("layers.1.attn.result").unwrap()).op
    );
    let whole = split(
        &g,
        &[Intervention::replace(
            "layers.0.resid_mid",
            Tensor::zeros(&[B, T, D]),
        )],
    )
    .unwrap();
    verify(&whole.graph).unwrap();
    assert_eq!(whole.inputs.len(), 1, "a whole replacement needs no mask");
}

#[test]
fn bad_replacements_fail_as_on_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let case = setup(7);
    let bad = [
        Intervention::replace("layers.9.resid_mid", Tensor::zeros(&[1])),
        Intervention::replace("layers.0.resid_mid", Tensor::zeros(&[B, T, 3])),
        Intervention::at_positions("layers.0.resid_mid", &[-8], Tensor::zeros(&[1, 1, D])),
        Intervention::replace(
            "layers.0.resid_mid",
            Tensor::i32(&[B, T, D], vec![0; B * T * D]),
        ),
    ];
    for iv in bad {
        let (g, p, i) = &case;
        let want = CpuBackend::new()
            .run_replacing(g, i, p, &HookSelection::None, std::slice::from_ref(&iv))
            .unwrap_err();
        let got = gpu
            .run_replacing(g, i, p, &HookSelection::None, std::slice::from_ref(&iv))
            .unwrap_err();
        assert_eq!(got.to_string(), want.to_string());
    }
}

fn close(what: &str, got: f64, want: f64, scale: f64) {
    assert!(
        (got - want).abs() <= RTOL * scale.max(want.abs()),
        "{what}: wgpu {got} vs cpu {want}"
    );
}

#[test]
fn path_patching_on_wgpu_matches_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let s = spec();
    let p = params(8);
    let cpu = CpuBackend::new();
    let data = PatchingData::copy(6, 6, V, 4);
    let want = path_patching(&Model::new(&s, &p, &cpu), &data).unwrap();
    let got = path_patching(&Model::new(&s, &p, gpu), &data).unwrap();
    let scale = want.clean_metric.abs();
    close("clean metric", got.clean_metric, want.clean_metric, scale);
    assert!(want
        .heads
        .iter()
        .flatten()
        .any(|&d| d.abs() > 1e3 * RTOL * scale));
    for (l, (gr, wr)) in got.heads.iter().zip(&want.heads).enumerate() {
        for (h, (&g, &w)) in gr.iter().zip(wr).enumerate() {
            close(&format!("head ({l}, {h})"), g, w, scale);
        }
    }
    for (l, (&g, &w)) in got.mlp.iter().zip(&want.mlp).enumerate() {
        close(&format!("mlp {l}"), g, w, scale);
    }
}

#[test]
fn batch_icl_on_wgpu_matches_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let s = spec();
    let p = params(9);
    let cpu = CpuBackend::new();
    let (mc, mg) = (Model::new(&s, &p, &cpu), Model::new(&s, &p, gpu));
    let mut rng = Rng::new(12);
    let mut prompt = |n: usize| -> Vec<i32> { (0..n).map(|_| 2 + rng.below(38) as i32).collect() };
    let query = prompt(3);
    let demos: Vec<Vec<i32>> = (0..4)
        .map(|k| [prompt(2 + k), query.clone()].concat())
        .collect();
    for epochs in [1, 2] {
        let (ac, ag) = (
            aggregate(&mc, &demos, 2, epochs).unwrap(),
            aggregate(&mg, &demos, 2, epochs).unwrap(),
        );
        for (l, (c, g)) in ac.iter().zip(&ag).enumerate() {
            let (err, _) = max_rel_err(g, c);
            assert!(
                err <= RTOL,
                "epochs {epochs}, layer {l}: aggregate rel err {err:e}"
            );
        }
        for k in 0..=2 {
            let want = Tensor::f32(
                &[V],
                inject(&mc, &query, &ac, k, 0.5)
                    .unwrap()
                    .iter()
                    .map(|&x| x as f32)
                    .collect(),
            );
            let got = Tensor::f32(
                &[V],
                inject(&mg, &query, &ag, k, 0.5)
                    .unwrap()
                    .iter()
                    .map(|&x| x as f32)
                    .collect(),
            );
            let (err, _) = max_rel_err(&got, &want);
            assert!(
                err <= RTOL,
                "epochs {epochs}, k {k}: logits rel err {err:e}"
            );
        }
    }
    let cfg = BatchIclConfig {
        positions: 2,
        layer: None,
        alpha: 0.0,
        epochs: 1,
    };
    let q = IclQuery {
        zero_shot: query,
        one_shot: demos,
        answer: Some(5),
    };
    let (want, got) = (
        batch_icl(&mc, std::slice::from_ref(&q), &cfg).unwrap(),
        batch_icl(&mg, std::slice::from_ref(&q), &cfg).unwrap(),
    );
    assert_eq!(got.predictions, want.predictions);
    assert_eq!(got.accuracy, want.accuracy);
}
