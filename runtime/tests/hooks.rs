//! Hook replacement on the CPU backend: replacing a value by itself changes nothing (bitwise),
//! freezing q/k/v to their clean values reproduces the clean run, region replacements equal
//! the whole-tensor replacement they describe, and readers downstream (only) see the change.

use std::collections::HashMap;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::probes::path_patching::freeze_qkv;
use weft_runtime::probes::Model;
use weft_runtime::{
    init_params, Backend, CpuBackend, HookSelection, Intervention, Outputs, ParamStore, Rng,
    RunError, Tensor,
};

const B: usize = 3;
const T: usize = 7;

const SPEC: &str = "
model tiny {
  vocab = 32
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

fn setup(seed: u64) -> (Graph, ParamStore, HashMap<String, Tensor>) {
    let mut o = LowerOptions::new(B, T);
    o.capture = vec![
        "layers.*.attn.result".into(),
        "layers.*.attn.pattern".into(),
        "layers.*.attn.scores".into(),
    ];
    let g = lower(&spec(), &o).unwrap();
    let params = init_params(&g, seed);
    let mut rng = Rng::new(seed + 1);
    let tokens = Tensor::i32(&[B, T], (0..B * T).map(|_| rng.below(32) as i32).collect());
    (g, params, HashMap::from([("tokens".to_string(), tokens)]))
}

fn run(g: &Graph, p: &ParamStore, i: &HashMap<String, Tensor>, r: &[Intervention]) -> Outputs {
    CpuBackend::new()
        .run_replacing(g, i, p, &HookSelection::All, r)
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect()
}

#[test]
fn replacing_any_hook_by_its_own_value_changes_nothing_bitwise() {
    for seed in [1, 2] {
        let (g, p, i) = setup(seed);
        let clean = run(&g, &p, &i, &[]);
        assert!(clean.hooks.len() > 20, "every hook captured");
        for (name, value) in &clean.hooks {
            let out = run(
                &g,
                &p,
                &i,
                &[Intervention::replace(name.clone(), value.clone())],
            );
            assert_eq!(
                bits(&out.outputs["logits"]),
                bits(&clean.outputs["logits"]),
                "replacing {name}"
            );
            for (h, v) in &out.hooks {
                assert_eq!(
                    bits(v),
                    bits(&clean.hooks[h]),
                    "hook {h} after replacing {name}"
                );
            }
        }
    }
}

#[test]
fn freezing_every_q_k_v_and_patching_nothing_reproduces_the_clean_logits() {
    let checked = spec();
    let (g, p, i) = setup(3);
    let clean = run(&g, &p, &i, &[]);
    let backend = CpuBackend::new();
    let model = Model::new(&checked, &p, &backend);
    let frozen = freeze_qkv(&model, &clean).unwrap();
    assert_eq!(frozen.len(), 6);
    let out = run(&g, &p, &i, &frozen);
    assert_eq!(bits(&out.outputs["logits"]), bits(&clean.outputs["logits"]));
}

#[test]
fn a_replaced_value_reaches_only_its_readers_and_captures_report_what_was_computed() {
    let (g, p, i) = setup(4);
    let clean = run(&g, &p, &i, &[]);
    let d = 16;
    // Zero layer 0's resid_mid at the last position of every row.
    let iv = Intervention::at_positions("layers.0.resid_mid", &[-1], Tensor::zeros(&[1, 1, d]));
    let out = run(&g, &p, &i, &[iv]);
    // The capture of the replaced point itself is the computed value.
    assert_eq!(
        bits(&out.hooks["layers.0.resid_mid"]),
        bits(&clean.hooks["layers.0.resid_mid"])
    );
    let (a, c) = (
        out.outputs["logits"].as_f32().unwrap(),
        clean.outputs["logits"].as_f32().unwrap(),
    );
    let v = 32;
    for b in 0..B {
        for t in 0..T {
            let row = (b * T + t) * v..(b * T + t + 1) * v;
            if t + 1 < T {
                // Causal attention: earlier positions never see the last one.
                assert_eq!(a[row.clone()], c[row], "row {b} position {t} changed");
            } else {
                assert_ne!(
                    a[row.clone()],
                    c[row],
                    "row {b}: the replaced position did not change"
                );
            }
        }
    }
    // The MLP of layer 0 reads the replacement: its input at the last position was zero.
    let mlp = out.hooks["layers.0.mlp_out"].as_f32().unwrap();
    let last = (T - 1) * d..T * d;
    assert!(
        mlp[last.clone()].iter().all(|&x| x == 0.0),
        "swiglu(rms_norm(0)) = 0 (rms of 0 is 0·rsqrt(eps))"
    );
    let mlp_clean = clean.hooks["layers.0.mlp_out"].as_f32().unwrap();
    assert_ne!(mlp[last.clone()], mlp_clean[last]);
}

#[test]
fn a_head_region_replacement_equals_the_whole_tensor_it_describes() {
    let (g, p, i) = setup(5);
    let clean = run(&g, &p, &i, &[]);
    let name = "layers.0.attn.result"; // [B, T, H, D]
    let (h, d) = (2, 16);
    let mut rng = Rng::new(9);
    let patch: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
    // Head 1 at the second-to-last position, every row: by region ...
    let region = Intervention::head_at_positions(
        name,
        1,
        Some(&[-2]),
        Tensor::f32(&[1, 1, 1, d], patch.clone()),
    )
    .unwrap();
    // ... and as the whole tensor with those entries overwritten by hand.
    let mut whole = clean.hooks[name].as_f32().unwrap().to_vec();
    for b in 0..B {
        let at = ((b * T + T - 2) * h + 1) * d;
        whole[at..at + d].copy_from_slice(&patch);
    }
    let by_region = run(&g, &p, &i, &[region]);
    let by_whole = run(
        &g,
        &p,
        &i,
        &[Intervention::replace(
            name,
            Tensor::f32(&[B, T, h, d], whole),
        )],
    );
    assert_eq!(
        bits(&by_region.outputs["logits"]),
        bits(&by_whole.outputs["logits"])
    );
    assert_ne!(
        bits(&by_region.outputs["logits"]),
        bits(&clean.outputs["logits"])
    );
    // q of head 0 at every position, by the head helper.
    let q = clean.hooks["layers.1.attn.q"].clone(); // [B, H, T, d]
    let hd = q.shape[3];
    let zeros = Tensor::zeros(&[B, 1, T, hd]);
    let out = run(
        &g,
        &p,
        &i,
        &[Intervention::head("layers.1.attn.q", 0, zeros).unwrap()],
    );
    let pat = out.hooks["layers.1.attn.pattern"].as_f32().unwrap();
    // A zero query scores every key 0: head 0's causal softmax is uniform.
    for t in 0..T {
        let row = &pat[t * T..t * T + T];
        for (k, &w) in row.iter().enumerate() {
            let want = if k <= t { 1.0 / (t + 1) as f32 } else { 0.0 };
            assert!((w - want).abs() < 1e-6, "q={t} k={k}: {w}");
        }
    }
}

#[test]
fn bad_replacements_are_errors_that_name_the_hook() {
    let (g, p, i) = setup(6);
    let b = CpuBackend::new();
    let e = b
        .run_replacing(
            &g,
            &i,
            &p,
            &HookSelection::None,
            &[Intervention::replace(
                "layers.9.resid_mid",
                Tensor::zeros(&[1]),
            )],
        )
        .unwrap_err();
    assert!(matches!(e, RunError::UnknownHook { .. }), "{e}");
    let e = b
        .run_replacing(
            &g,
            &i,
            &p,
            &HookSelection::None,
            &[Intervention::replace(
                "layers.0.resid_mid",
                Tensor::zeros(&[B, T, 3]),
            )],
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("layers.0.resid_mid") && msg.contains("[3, 7, 16]"),
        "{msg}"
    );
    let e = b
        .run_replacing(
            &g,
            &i,
            &p,
            &HookSelection::None,
            &[Intervention::at_positions(
                "layers.0.resid_mid",
                &[-8],
                Tensor::zeros(&[1, 1, 16]),
            )],
        )
        .unwrap_err();
    assert!(e.to_string().contains("index -8"), "{e}");
}

/// A backend without replacement support keeps the trait's default.
struct Plain;

impl Backend for Plain {
    fn name(&self) -> &str {
        "plain"
    }
    fn run(
        &self,
        g: &Graph,
        i: &HashMap<String, Tensor>,
        p: &ParamStore,
        h: &HookSelection,
    ) -> Result<Outputs, RunError> {
        CpuBackend::new().run(g, i, p, h)
    }
}

#[test]
fn backends_without_replacement_say_so_and_still_run_plain_requests() {
    let (g, p, i) = setup(7);
    assert!(Plain
        .run_replacing(&g, &i, &p, &HookSelection::None, &[])
        .is_ok());
    let e = Plain
        .run_replacing(
            &g,
            &i,
            &p,
            &HookSelection::None,
            &[Intervention::replace(
                "layers.0.resid_mid",
                Tensor::zeros(&[B, T, 16]),
            )],
        )
        .unwrap_err();
    assert!(
        matches!(e, RunError::Unsupported(_)) && e.to_string().contains("layers.0.resid_mid"),
        "{e}"
    );
}
