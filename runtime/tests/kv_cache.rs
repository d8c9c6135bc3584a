//! Incremental decoding with a key/value cache (`LowerOptions::decode`): a decode step over
//! the new tokens, fed the cached keys/values, gives the logits the full graph gives at
//! those positions — for every position rule (RoPE in both layouts, HoPE, MoICE, learned,
//! NoPE), signed weights, GQA and attention rules written in the spec — and greedy
//! generation with the cache equals generation without it. Specs a cache cannot serve are
//! refused by name.

mod wgpu_support;

use std::collections::HashMap;
use weft_compiler::lower::{lower, LowerOptions, DECODE_PAST, PAST_KV};
use weft_runtime::hf::generate;
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

/// Relative error allowed between the cached and uncached logits.
const RTOL: f64 = 1e-4;

/// A small spec: `model_extra` goes among the model settings, `attn` into `attention(...)`;
/// the rules of [`RULES`] are defined.
fn spec(model_extra: &str, attn: &str) -> weft_dsl::Checked {
    let src = format!(
        "{RULES}
model m {{
  vocab = 40
  dim = 32
  heads = 4
  layers = 2
  ctx = 24
  init_std = 0.3
  {model_extra}
  block b {{
    x = x + attention(rms_norm(x){attn})
    x = x + swiglu(rms_norm(x), hidden: 48)
  }}
  layers {{
    0 .. layers => b
  }}
}}
"
    );
    weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{e:?}\n{src}"))
}

/// Attention rules written in the spec: a trainable per-head parameter with positions, a
/// score modification, direct weights, a sink and a causal mask of the rule's own (a sliding
/// window), which a decode step serves; a mask that sees later keys (prefix-LM) and the key
/// count `n`, which it refuses.
const RULES: &str = "
rule alibi {
  slope = head_param(init: alibi, trainable: true)
  score = s - slope * (i - j)
}
rule softcap { score = 2.0 * tanh(s / 2.0) }
rule sigmoid { weights = sigmoid(s - 1.0) }
rule sigmoid_attn {
  score = s - log(n)
  weights = sigmoid(s)
}
rule sink { weights = exp(s) / (1 + sum(exp(s))) }
rule window { mask = j <= i && i - j < 3 }
rule window_alibi {
  slope = head_param(init: alibi, trainable: false)
  score = s - slope * (i - j)
  mask = j <= i && i - j < 2 + head
}
rule prefix_lm { mask = j <= i || j < 3 }
";

/// The spec variants every test runs: (name, model settings, attention arguments).
const CASES: &[(&str, &str, &str)] = &[
    (
        "rope half, GQA",
        "kv_heads = 2",
        ", position: rope(base: 10000, layout: half)",
    ),
    (
        "rope interleaved",
        "",
        ", position: rope(layout: interleaved)",
    ),
    ("hope", "", ", position: hope(base: 100, train_len: 12)"),
    ("learned, nope", "position = learned", ", position: nope"),
    ("signed weights", "kv_heads = 1", ", weights: signed"),
    (
        "moice",
        "",
        ", position: rope(bases: [10000, 300, 40], router: swiglu, top_k: 2)",
    ),
    ("self only", "", ", mask: self_only"),
    (
        "rule alibi, GQA",
        "kv_heads = 2",
        ", rule: alibi, position: nope",
    ),
    ("rule softcap", "", ", rule: softcap"),
    ("rule sigmoid", "", ", rule: sigmoid"),
    ("rule sink", "", ", rule: sink, position: nope"),
    ("rule window", "", ", rule: window"),
    (
        "rule window per head, GQA",
        "kv_heads = 2",
        ", rule: window_alibi, position: nope",
    ),
];

fn params_of(spec: &weft_dsl::Checked, seed: u64) -> ParamStore {
    init_params(&lower(spec, &LowerOptions::new(1, 1)).unwrap(), seed)
}

/// Largest `|a − b| / max(|b|, rms(b))` over the rows.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let rms = (want.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs() / (b as f64).abs().max(rms))
        .fold(0.0, f64::max)
}

fn run(
    b: &dyn Backend,
    g: &weft_compiler::ir::Graph,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
    hooks: &HookSelection,
) -> weft_runtime::Outputs {
    b.run(g, inputs, params, hooks).unwrap()
}

/// A decode step of `seq` tokens (batch 2) after `past` cached ones, with the cache slots
/// beyond `past` filled with noise, against the full graph's logits at those positions.
fn chunk_matches_full(name: &str, spec: &weft_dsl::Checked, backend: &dyn Backend) {
    let (bsz, past, seq, capacity) = (2, 5, 3, 9);
    let params = params_of(spec, 7);
    let mut rng = Rng::new(3);
    let total = past + seq;
    let ids: Vec<i32> = (0..bsz * total).map(|_| rng.below(40) as i32).collect();
    let full = lower(spec, &LowerOptions::new(bsz, total)).unwrap();
    let want = run(
        backend,
        &full,
        &HashMap::from([("tokens".into(), Tensor::i32(&[bsz, total], ids.clone()))]),
        &params,
        &HookSelection::None,
    );
    let want = want.outputs["logits"].to_f32_vec();

    let step = lower(spec, &LowerOptions::decode(bsz, seq, capacity)).unwrap();
    let caches: Vec<(String, String)> = step
        .inputs
        .iter()
        .filter_map(|i| {
            PAST_KV.iter().find_map(|(p, h)| {
                Some((i.name.clone(), format!("{}{h}", i.name.strip_suffix(p)?)))
            })
        })
        .collect();
    assert_eq!(caches.len(), 4, "{name}: two layers, k and v: {caches:?}");
    let prefix: Vec<i32> = (0..bsz)
        .flat_map(|b| ids[b * total..b * total + past].to_vec())
        .collect();
    let pre = lower(spec, &LowerOptions::new(bsz, past)).unwrap();
    let hooks = HookSelection::Names(caches.iter().map(|(_, h)| h.clone()).collect());
    let pre_out = run(
        backend,
        &pre,
        &HashMap::from([("tokens".into(), Tensor::i32(&[bsz, past], prefix))]),
        &params,
        &hooks,
    );
    let new: Vec<i32> = (0..bsz)
        .flat_map(|b| ids[b * total + past..(b + 1) * total].to_vec())
        .collect();
    let mut feed = HashMap::from([
        ("tokens".to_string(), Tensor::i32(&[bsz, seq], new)),
        (
            DECODE_PAST.to_string(),
            Tensor::i32(&[1], vec![past as i32]),
        ),
    ]);
    for (input, hook) in &caches {
        let info = step.inputs.iter().find(|i| &i.name == input).unwrap();
        let s = &info.shape;
        assert_eq!((s[0], s[2]), (bsz, capacity), "{name}: {input} {s:?}");
        let h = pre_out.hooks[hook].to_f32_vec();
        let d = s[3];
        // Noise in the unfilled slots: the step must not look at them.
        let mut data: Vec<f32> = (0..s.iter().product::<usize>())
            .map(|_| 50.0 * (rng.uniform() as f32 - 0.5))
            .collect();
        for (row, chunk) in h.chunks(past * d).enumerate() {
            data[row * capacity * d..][..past * d].copy_from_slice(chunk);
        }
        feed.insert(input.clone(), Tensor::f32(s, data));
    }
    let got = run(backend, &step, &feed, &params, &HookSelection::None);
    let got = got.outputs["logits"].to_f32_vec();
    let v = 40;
    for b in 0..bsz {
        let w = &want[(b * total + past) * v..(b + 1) * total * v];
        let g = &got[b * seq * v..(b + 1) * seq * v];
        let err = rel_err(g, w);
        assert!(
            err <= RTOL,
            "{name} ({}), batch {b}: relative error {err:e}",
            backend.name()
        );
    }
}

#[test]
fn a_decode_step_gives_the_full_graphs_logits_for_every_position_rule() {
    let cpu = CpuBackend::new();
    for &(name, extra, attn) in CASES {
        chunk_matches_full(name, &spec(extra, attn), &cpu);
    }
}

#[test]
fn a_decode_step_on_wgpu_matches_the_full_graph() {
    let Some(gpu) = wgpu_support::gpu_or_skip() else {
        return;
    };
    for &(name, extra, attn) in CASES {
        chunk_matches_full(name, &spec(extra, attn), gpu);
    }
}

/// Greedy generation with and without the cache: the same tokens, and each step's logits
/// within [`RTOL`].
fn assert_cache_agrees(name: &str, spec: &weft_dsl::Checked, backend: &dyn Backend) {
    let params = params_of(spec, 11);
    let prompt = [3u32, 17, 8, 30];
    let max_new = 14;
    let cached =
        generate::greedy_with_logits(spec, &params, backend, &prompt, max_new, true).unwrap();
    let uncached =
        generate::greedy_with_logits(spec, &params, backend, &prompt, max_new, false).unwrap();
    assert_eq!(cached.tokens.len(), max_new, "{name}");
    assert_eq!(cached.tokens, uncached.tokens, "{name}");
    for (i, (a, b)) in cached.logits.iter().zip(&uncached.logits).enumerate() {
        let err = rel_err(a, b);
        assert!(err <= RTOL, "{name}, step {i}: relative error {err:e}");
    }
}

#[test]
fn greedy_generation_with_the_cache_equals_generation_without_it() {
    let cpu = CpuBackend::new();
    for &(name, extra, attn) in CASES {
        assert_cache_agrees(name, &spec(extra, attn), &cpu);
    }
    // Two attentions per block, and a generation that fills the context.
    let two = weft_dsl::check_source(
        "model m {
  vocab = 40
  dim = 32
  heads = 4
  layers = 1
  ctx = 18
  init_std = 0.3
  block b {
    x = x + attention(rms_norm(x))
    x = x + attention(rms_norm(x), heads: 2, kv_heads: 1, position: nope)
  }
  layers {
    0 => b
  }
}
",
    )
    .unwrap();
    assert_cache_agrees("two attentions", &two, &cpu);
}

/// Every example spec (shrunk) either generates the same with and without the cache, or is
/// refused with the "kv cache not supported" error — and exactly the expected ones are.
#[test]
fn example_specs_generate_the_same_with_the_cache_or_are_refused() {
    let cpu = CpuBackend::new();
    let mut refused = Vec::new();
    for file in wgpu_support::examples::names() {
        let spec = wgpu_support::examples::shrunk(&file, 8);
        let params = params_of(&spec, 5);
        let prompt = [1u32, 9, 4];
        match generate::greedy_with_logits(&spec, &params, &cpu, &prompt, 10, true) {
            Ok(cached) => {
                let uncached =
                    generate::greedy_with_logits(&spec, &params, &cpu, &prompt, 10, false).unwrap();
                assert_eq!(cached.tokens, uncached.tokens, "{file}");
                for (i, (a, b)) in cached.logits.iter().zip(&uncached.logits).enumerate() {
                    let err = rel_err(a, b);
                    assert!(err <= RTOL, "{file}, step {i}: relative error {err:e}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("kv cache not supported") && msg.contains("--no-cache"),
                    "{file}: {msg}"
                );
                refused.push(file);
            }
        }
    }
    assert_eq!(refused, ["attention_rules.weft", "cog_attention.weft"]);
}

#[test]
fn masks_a_cache_cannot_serve_are_refused() {
    let cpu = CpuBackend::new();
    for (attn, what) in [
        (", mask: bidirectional", "bidirectional attention"),
        (", mask: document", "the document mask"),
        (", mask: turns", "turn masks"),
        (
            ", rule: prefix_lm",
            "an attention rule whose mask lets a query see a later key (query 0 sees key 1 in head 0; a cache holds no later keys)",
        ),
        (
            ", rule: sigmoid_attn",
            "attention rules that read the key count `n`",
        ),
    ] {
        let s = spec("", attn);
        let params = params_of(&s, 1);
        let err = generate::greedy(&s, &params, &cpu, &[1, 2], 3, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "kv cache not supported for {what}; use --no-cache"
            )),
            "{err}"
        );
        // The uncached path still generates.
        assert_eq!(
            generate::greedy(&s, &params, &cpu, &[1, 2], 3, false)
                .unwrap()
                .len(),
            3
        );
    }
}

#[test]
fn decode_graphs_declare_the_cache_inputs_and_respect_ctx() {
    let s = spec("kv_heads = 2", "");
    let g = lower(&s, &LowerOptions::decode(1, 1, 10)).unwrap();
    let shape = |n: &str| {
        g.inputs
            .iter()
            .find(|i| i.name == n)
            .map(|i| i.shape.clone())
    };
    assert_eq!(shape("tokens"), Some(vec![1, 1]));
    assert_eq!(shape(DECODE_PAST), Some(vec![1]));
    assert_eq!(shape("layers.1.attn.past_k"), Some(vec![1, 2, 10, 8]));
    assert_eq!(shape("layers.0.attn.past_v"), Some(vec![1, 2, 10, 8]));
    assert!(g.hooks.iter().any(|(n, _)| n == "layers.1.attn.v"));
    let err = lower(&s, &LowerOptions::decode(1, 2, 23))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the model's ctx = 24"), "{err}");
}

/// Per-token cost: a decode step against a full-length cache counts far less work than
/// rerunning the whole sequence (counted FLOPs of the graphs' products, so the check is
/// deterministic; wall-clock speed belongs to benchmarks).
#[test]
fn a_decode_step_is_cheaper_than_the_full_graph() {
    let s = weft_dsl::check_source(
        "model m {
  vocab = 256
  dim = 128
  heads = 4
  layers = 4
  ctx = 128
  block b {
    x = x + attention(rms_norm(x))
    x = x + swiglu(rms_norm(x))
  }
  layers {
    0 .. layers => b
  }
}
",
    )
    .unwrap();
    let t = 127;
    let full = lower(&s, &LowerOptions::new(1, t)).unwrap();
    let step = lower(&s, &LowerOptions::decode(1, 1, t - 1)).unwrap();
    let (ff, fs) = (
        weft_compiler::ir::flops(&full),
        weft_compiler::ir::flops(&step),
    );
    // One new token: every projection shrinks by t; attention reads t keys for one query.
    assert!(
        fs > 0.0 && fs * 50.0 < ff,
        "decode step {fs} FLOPs vs full graph {ff}"
    );
}
