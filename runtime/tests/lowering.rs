//! Every example spec lowers to an IR graph whose whole-model gradients match finite
//! differences, and the method-specific constructs behave as METHODS.md says.

mod common;
mod wgpu_support;

use common::{analytic, compare_sampled, Case};
use std::collections::HashMap;
use weft_compiler::ir::{ConstValue, Graph, Op, ValueId};
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

const B: usize = 2;
const T: usize = 8;

/// An example spec shrunk to a tiny width so whole-model finite differences are cheap.
fn shrunk(path: &str) -> weft_dsl::Checked {
    wgpu_support::examples::shrunk(path, T)
}

fn options(spec: &weft_dsl::Checked) -> LowerOptions {
    wgpu_support::examples::options(spec, B, T)
}

/// Random inputs for whatever the graph declares.
fn inputs(g: &weft_compiler::ir::Graph, vocab: u64, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    let mut out = HashMap::new();
    let tokens: Vec<i32> = (0..B * T).map(|_| rng.below(vocab) as i32).collect();
    for info in &g.inputs {
        let t = match info.name.as_str() {
            "tokens" => Tensor::i32(&[B, T], tokens.clone()),
            "targets" => Tensor::i32(
                &[B, T],
                (0..B * T)
                    .map(|i| if i % T == T - 1 { -1 } else { tokens[i + 1] })
                    .collect(),
            ),
            "segments" | "turns" => {
                Tensor::i32(&[B, T], (0..B * T).map(|i| ((i % T) / 3) as i32).collect())
            }
            "answer_mask" => {
                Tensor::f32(&[B, T], (0..B * T).map(|i| f32::from(i % 2 == 1)).collect())
            }
            "answer_segments" => Tensor::i32(
                &[B, T],
                (0..B * T)
                    .map(|i| if i % 2 == 1 { ((i % T) / 2) as i32 } else { -1 })
                    .collect(),
            ),
            other => panic!("unexpected input {other}"),
        };
        out.insert(info.name.clone(), t);
    }
    out
}

fn case_of(path: &str, seed: u64) -> Case {
    let spec = shrunk(path);
    let graph = lower(&spec, &options(&spec)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let loss = graph
        .outputs
        .iter()
        .find(|(n, _)| n == "loss")
        .map(|(_, v)| *v)
        .expect("loss output");
    let inputs = inputs(&graph, 32, seed);
    let params = init_params(&graph, seed);
    let graph = freeze_detached(graph, &inputs, &params);
    Case {
        graph,
        loss,
        inputs,
        params,
    }
}

/// Replaces every `stop_gradient` and top-k selection by the constant it computes at these
/// inputs and params. Finite differences then measure the same function autodiff
/// differentiates: detached values (DR-ICL's advantage weights, balance-loss fractions) and
/// discrete routing choices held fixed.
fn freeze_detached(
    mut graph: Graph,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> Graph {
    let detached: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| matches!(graph.nodes[i].op, Op::StopGradient | Op::TopKMask { .. }))
        .collect();
    if detached.is_empty() {
        return graph;
    }
    let mut probe = graph.clone();
    for &i in &detached {
        probe.outputs.push((format!("sg.{i}"), ValueId(i as u32)));
    }
    let out = CpuBackend::f64()
        .run(&probe, inputs, params, &HookSelection::None)
        .unwrap();
    for &i in &detached {
        let v = out.outputs[&format!("sg.{i}")].to_f32_vec();
        graph.nodes[i].op = Op::Const {
            value: ConstValue::F32(v),
        };
        graph.nodes[i].inputs.clear();
    }
    graph
}

#[test]
fn every_example_lowers_and_its_gradients_match_finite_differences() {
    let mut names: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".weft"))
            .collect();
    names.sort();
    assert_eq!(names.len(), 12);
    for name in names {
        let c = case_of(&name, 7);
        let trainable = c.graph.params.iter().filter(|p| p.trainable).count();
        assert!(trainable > 0, "{name}: nothing trainable");
        let grads = analytic(&c);
        let loss = grads["loss"].to_f64_vec()[0];
        assert!(loss.is_finite() && loss > 0.0, "{name}: loss {loss}");
        let checked = compare_sampled(&c, &grads, 6).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(checked >= trainable, "{name}: checked {checked} entries");
    }
}

fn run_hooks(
    g: &weft_compiler::ir::Graph,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> weft_runtime::Outputs {
    CpuBackend::new()
        .run(g, inputs, params, &HookSelection::All)
        .unwrap()
}

#[test]
fn cog_schedule_signs_middle_layers_only() {
    let spec = shrunk("cog_attention.weft");
    let mut o = LowerOptions::new(B, T);
    o.capture = vec!["layers.*.attn.pattern".into()];
    let g = lower(&spec, &o).unwrap();
    let ins = inputs(&g, 32, 3);
    // Larger weights so scores spread to both signs.
    let mut params = init_params(&g, 3);
    for (name, t) in params.iter_mut() {
        if name.ends_with(".wq") || name.ends_with(".wk") {
            *t = Tensor::f32(&t.shape, t.to_f32_vec().iter().map(|x| x * 40.0).collect());
        }
    }
    let out = run_hooks(&g, &ins, &params);
    let layers = spec.model.config.layers;
    for i in 0..layers {
        let p = out
            .hook(&format!("layers.{i}.attn.pattern"))
            .unwrap()
            .to_f32_vec();
        let negatives = p.iter().filter(|&&w| w < 0.0).count();
        if i == 0 || i == layers - 1 {
            assert_eq!(negatives, 0, "softmax layer {i} has negative weights");
        } else {
            assert!(negatives > 0, "signed layer {i} has no negative weight");
        }
        // Every row's |w| sums to 1 (document mask: each row sees at least itself).
        for row in p.chunks(T) {
            let s: f32 = row.iter().map(|w| w.abs()).sum();
            assert!((s - 1.0).abs() < 1e-4, "layer {i}: row |w| sums to {s}");
        }
    }
}

fn check_text(src: &str) -> weft_dsl::Checked {
    weft_dsl::check_source(src).unwrap_or_else(|e| panic!("{e:?}\n{src}"))
}

fn logits(spec: &weft_dsl::Checked, params: &ParamStore, seed: u64) -> Vec<f32> {
    let g = lower(spec, &LowerOptions::new(B, T)).unwrap();
    let ins = inputs(&g, 32, seed);
    let out = CpuBackend::new()
        .run(&g, &ins, params, &HookSelection::None)
        .unwrap();
    out.outputs["logits"].to_f32_vec()
}

const TINY: &str = "vocab = 32\n dim = 16\n heads = 2\n ctx = 16\n";

#[test]
fn moice_with_one_base_equals_plain_rope() {
    let plain = check_text(&format!(
        "model m {{ {TINY} layers = 2\n block b {{ x = x + attention(rms_norm(x), position: rope(base: 500)) x = x + swiglu(rms_norm(x)) }} layers {{ 0 .. 2 => b }} }}"
    ));
    let mixed = check_text(&format!(
        "model m {{ {TINY} layers = 2\n block b {{ x = x + attention(rms_norm(x), position: rope(bases: [500], router: swiglu)) x = x + swiglu(rms_norm(x)) }} layers {{ 0 .. 2 => b }} }}"
    ));
    let gm = lower(&mixed, &LowerOptions::new(B, T)).unwrap();
    let params = init_params(&gm, 5); // names shared with the plain model, plus router weights
    let a = logits(&plain, &params, 1);
    let b = logits(&mixed, &params, 1);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn mom_with_one_module_per_pool_equals_the_plain_stack() {
    let h = 3;
    let mom = check_text(&format!(
        "model m {{ {TINY} layers = 1\n final_norm = layer_norm
         pool attn[1] {{ attention(layer_norm(x)) }}
         pool ffn[1] {{ mlp(layer_norm(x)) }}
         block mom {{ repeat {h} {{ x = x + route(attn, router: gru(hidden: 8), skip: false) x = x + route(ffn, router: gru(hidden: 8), skip: false) }} }}
         layers {{ 0 => mom }} }}"
    ));
    let plain = check_text(&format!(
        "model m {{ {TINY} layers = {h}\n final_norm = layer_norm
         block b {{ x = x + attention(layer_norm(x)) x = x + mlp(layer_norm(x)) }}
         layers {{ 0 .. {h} => b }} }}"
    ));
    let gm = lower(&mom, &LowerOptions::new(B, T)).unwrap();
    let pm = init_params(&gm, 9);
    // The plain stack's layer j uses the pool modules' weights (shared across iterations).
    let gp = lower(&plain, &LowerOptions::new(B, T)).unwrap();
    let mut pp = ParamStore::new();
    for info in &gp.params {
        let n = &info.name;
        let src = if let Some(rest) = n.strip_prefix("layers.") {
            let (_, tail) = rest.split_once('.').unwrap();
            match tail.split_once('.').unwrap() {
                ("norm1", w) => format!("layers.0.attn.0.norm1.{w}"),
                ("attn", w) => format!("layers.0.attn.0.attn.{w}"),
                ("norm2", w) => format!("layers.0.ffn.0.norm1.{w}"),
                ("mlp", w) => format!("layers.0.ffn.0.mlp.{w}"),
                other => panic!("unmapped {other:?}"),
            }
        } else {
            n.clone()
        };
        pp.insert(n.clone(), pm[&src].clone());
    }
    let a = logits(&mom, &pm, 2);
    let b = logits(&plain, &pp, 2);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn mom_skip_only_tokens_keep_their_state() {
    let mom = check_text(&format!(
        "model m {{ {TINY} layers = 1
         pool attn[2] {{ attention(rms_norm(x)) }}
         pool ffn[2] {{ swiglu(rms_norm(x)) }}
         block mom {{ repeat 2 {{ x = x + route(attn, router: mlp(hidden: 8)) x = x + route(ffn, router: mlp(hidden: 8)) }} }}
         layers {{ 0 => mom }} }}"
    ));
    let g = lower(&mom, &LowerOptions::new(B, T)).unwrap();
    let mut params = init_params(&g, 4);
    // Bias every router towards SKIP (the last choice).
    for (name, t) in params.iter_mut() {
        if name.ends_with("router.w2.bias") {
            let mut v = vec![0.0; t.numel()];
            *v.last_mut().unwrap() = 100.0;
            *t = Tensor::f32(&t.shape, v);
        }
    }
    let ins = inputs(&g, 32, 8);
    let out = run_hooks(&g, &ins, &params);
    let pre = out.hook("layers.0.resid_pre").unwrap().to_f32_vec();
    let post = out.hook("layers.0.resid_post").unwrap().to_f32_vec();
    assert_eq!(pre, post);
    let choice = out
        .hook("layers.0.iter1.route0.choice")
        .unwrap()
        .to_f32_vec();
    assert!(choice.chunks(3).all(|c| c == [0.0, 0.0, 1.0]));
}

#[test]
fn folded_gains_give_equal_logits_and_leave_no_gain_op() {
    let spec = shrunk("pear.weft");
    let lowered =
        weft_compiler::lower::lower_with_manifest(&spec, &LowerOptions::new(B, T)).unwrap();
    let g = lowered.graph;
    let mut params = init_params(&g, 11);
    let mut rng = Rng::new(12);
    for (name, t) in params.iter_mut() {
        if name.ends_with(".gain") {
            *t = Tensor::f32(
                &t.shape,
                (0..t.numel()).map(|_| 0.5 + rng.uniform() as f32).collect(),
            );
        }
    }
    let ins = inputs(&g, 32, 13);
    let before = CpuBackend::new()
        .run(&g, &ins, &params, &HookSelection::None)
        .unwrap()
        .outputs["logits"]
        .to_f32_vec();
    let (folded, folds) = weft_compiler::passes::fold_gains(&g, &lowered.manifest.gains).unwrap();
    assert_eq!(folds.len(), spec.model.config.layers);
    assert!(folded.nodes.iter().all(|n| match &n.op {
        Op::Param { index } => !folded.params[*index].name.ends_with(".gain"),
        _ => true,
    }));
    assert!(folded
        .labels
        .iter()
        .flatten()
        .all(|l| !l.ends_with("gain_apply")));
    weft_runtime::fold::apply_gain_folds(&mut params, &folds).unwrap();
    assert!(params.keys().all(|k| !k.ends_with(".gain")));
    let after = CpuBackend::new()
        .run(&folded, &ins, &params, &HookSelection::None)
        .unwrap()
        .outputs["logits"]
        .to_f32_vec();
    // Relative to the logits' scale: elementwise relative error is meaningless near zero.
    let scale = before.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (x, y) in before.iter().zip(&after) {
        assert!((x - y).abs() <= 1e-5 * scale, "{x} vs {y} (scale {scale})");
    }
}
