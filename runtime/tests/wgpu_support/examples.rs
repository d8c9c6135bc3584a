//! The example specs as test graphs (shared by `tests/lowering.rs` and the wgpu tests): each `examples/*.weft` shrunk to a tiny width (vocab 32,
//! dim 16, ctx 16), lowered with its loss, forward and gradient,
//! with random feeds for whatever inputs it declares.

use super::graphs::Case;
use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_compiler::passes::optimize;
use weft_runtime::{init_params, Rng, Tensor};

/// Vocabulary of the shrunk specs.
pub const VOCAB: usize = 32;

/// File names of every example spec, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
            .expect("examples/")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".weft"))
            .collect();
    names.sort();
    names
}

/// An example spec with `vocab`, `dim` and `ctx` shrunk (and the train `seq` set to `t`).
pub fn shrunk(file: &str, t: usize) -> weft_dsl::Checked {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = weft_dsl::edit::with_settings(
        &src,
        &[("vocab", VOCAB as i64), ("dim", 16), ("ctx", 16)],
        &[("seq", Some(t as i64))],
    )
    .unwrap_or_else(|e| panic!("{file}: {e:?}"));
    weft_dsl::check_source(&text).unwrap_or_else(|e| panic!("{file}: {e:?}\n{text}"))
}

/// Lowering options for `[b, t]` with the loss and the spec's `trainable` globs.
pub fn options(spec: &weft_dsl::Checked, b: usize, t: usize) -> LowerOptions {
    let mut o = LowerOptions::new(b, t);
    o.with_loss = true;
    o.trainable = spec.trainable();
    o
}

/// Random feeds for every input `g` declares (token ids, targets, segment and turn ids,
/// answer masks), seeded.
pub fn inputs(g: &Graph, b: usize, t: usize, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    let n = b * t;
    let tokens: Vec<i32> = (0..n).map(|_| rng.below(VOCAB as u64) as i32).collect();
    let mut out = HashMap::new();
    for info in &g.inputs {
        let v = match info.name.as_str() {
            "tokens" => Tensor::i32(&[b, t], tokens.clone()),
            "targets" => Tensor::i32(
                &[b, t],
                (0..n)
                    .map(|i| if i % t == t - 1 { -1 } else { tokens[i + 1] })
                    .collect(),
            ),
            "segments" | "turns" => {
                Tensor::i32(&[b, t], (0..n).map(|i| ((i % t) / 3) as i32).collect())
            }
            "answer_mask" => Tensor::f32(&[b, t], (0..n).map(|i| f32::from(i % 2 == 1)).collect()),
            "answer_segments" => Tensor::i32(
                &[b, t],
                (0..n)
                    .map(|i| if i % 2 == 1 { ((i % t) / 2) as i32 } else { -1 })
                    .collect(),
            ),
            other => panic!("unexpected input `{other}`"),
        };
        out.insert(info.name.clone(), v);
    }
    out
}

/// The forward graph (logits and loss) of an example at `[b, t]`.
pub fn forward(file: &str, b: usize, t: usize, seed: u64) -> Case {
    let spec = shrunk(file, t);
    let graph = lower(&spec, &options(&spec, b, t)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let params = init_params(&graph, seed);
    Case {
        name: format!("{file} forward"),
        inputs: inputs(&graph, b, t, seed),
        graph,
        params,
    }
}

/// The gradient graph (loss and every trainable parameter's gradient, after the default
/// passes) of an example at `[b, t]`.
pub fn gradient(file: &str, b: usize, t: usize, seed: u64) -> Case {
    let f = forward(file, b, t, seed);
    let loss = f.graph.output("loss").expect("loss output");
    let g = grad(&f.graph, loss, &[ParamSelection::All]).unwrap_or_else(|e| panic!("{file}: {e}"));
    let g = optimize(&g).unwrap_or_else(|e| panic!("{file}: {e}"));
    Case {
        name: format!("{file} gradient"),
        graph: g,
        ..f
    }
}
