//! HF GPT-2 and Llama checkpoints in and out of weft, without network: small random
//! checkpoints are written in HF format (config.json, model.safetensors or two shards with an
//! index, tokenizer.json) to a temp dir, imported, and their logits compared with a reference
//! of the HF forward passes written here in f64, independent of weft's lowering.

mod wgpu_support;

use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::hf::{self, generate, Tokenizer};
use weft_runtime::{tensor_file, Backend, CpuBackend, HookSelection, ParamStore, Tensor};

/// Relative error allowed against the f64 reference.
const RTOL: f64 = 1e-4;

// ---------------------------------------------------------------- checkpoint writers

/// A small deterministic generator (xorshift) for weights.
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` values in `center ± scale`.
    fn vec(&mut self, n: usize, center: f64, scale: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (center + scale * (2.0 * self.uniform() - 1.0)) as f32)
            .collect()
    }

    fn tensor(&mut self, shape: &[usize], center: f64, scale: f64) -> Tensor {
        Tensor::f32(shape, self.vec(shape.iter().product(), center, scale))
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const VOCAB: usize = 48;
const DIM: usize = 16;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const LAYERS: usize = 2;
const CTX: usize = 32;
const HIDDEN: usize = 24;

/// HF GPT-2 tensors (as `GPT2LMHeadModel` saves them: `transformer.` prefix, mask buffers).
fn gpt2_tensors(seed: u64) -> BTreeMap<String, Tensor> {
    let mut g = Gen(seed);
    let d = DIM;
    let mut t = BTreeMap::new();
    let mut put = |n: &str, v: Tensor| {
        t.insert(format!("transformer.{n}"), v);
    };
    put("wte.weight", g.tensor(&[VOCAB, d], 0.0, 0.5));
    put("wpe.weight", g.tensor(&[CTX, d], 0.0, 0.2));
    for i in 0..LAYERS {
        let p = format!("h.{i}.");
        put(&format!("{p}ln_1.weight"), g.tensor(&[d], 1.0, 0.2));
        put(&format!("{p}ln_1.bias"), g.tensor(&[d], 0.0, 0.1));
        put(
            &format!("{p}attn.c_attn.weight"),
            g.tensor(&[d, 3 * d], 0.0, 0.4),
        );
        put(
            &format!("{p}attn.c_attn.bias"),
            g.tensor(&[3 * d], 0.0, 0.1),
        );
        put(
            &format!("{p}attn.c_proj.weight"),
            g.tensor(&[d, d], 0.0, 0.3),
        );
        put(&format!("{p}attn.c_proj.bias"), g.tensor(&[d], 0.0, 0.1));
        put(&format!("{p}ln_2.weight"), g.tensor(&[d], 1.0, 0.2));
        put(&format!("{p}ln_2.bias"), g.tensor(&[d], 0.0, 0.1));
        put(
            &format!("{p}mlp.c_fc.weight"),
            g.tensor(&[d, 4 * d], 0.0, 0.3),
        );
        put(&format!("{p}mlp.c_fc.bias"), g.tensor(&[4 * d], 0.0, 0.1));
        put(
            &format!("{p}mlp.c_proj.weight"),
            g.tensor(&[4 * d, d], 0.0, 0.2),
        );
        put(&format!("{p}mlp.c_proj.bias"), g.tensor(&[d], 0.0, 0.1));
        // The causal-mask buffer old checkpoints carry: skipped on import.
        put(&format!("{p}attn.bias"), Tensor::zeros(&[1, 1, CTX, CTX]));
    }
    put("ln_f.weight", g.tensor(&[d], 1.0, 0.2));
    put("ln_f.bias", g.tensor(&[d], 0.0, 0.1));
    t
}

fn gpt2_config() -> String {
    format!(
        r#"{{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": {VOCAB},
            "n_embd": {DIM}, "n_head": {HEADS}, "n_layer": {LAYERS}, "n_positions": {CTX},
            "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new"}}"#
    )
}

/// HF Llama tensors (`nn.Linear` weights `[out, in]`, GQA k/v, untied `lm_head`).
fn llama_tensors(seed: u64) -> BTreeMap<String, Tensor> {
    let mut g = Gen(seed);
    let (d, hd) = (DIM, DIM / HEADS);
    let mut t = BTreeMap::new();
    let mut put = |n: &str, v: Tensor| {
        t.insert(n.to_string(), v);
    };
    put("model.embed_tokens.weight", g.tensor(&[VOCAB, d], 0.0, 0.5));
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}.");
        put(
            &format!("{p}input_layernorm.weight"),
            g.tensor(&[d], 1.0, 0.2),
        );
        put(
            &format!("{p}self_attn.q_proj.weight"),
            g.tensor(&[HEADS * hd, d], 0.0, 0.5),
        );
        put(
            &format!("{p}self_attn.k_proj.weight"),
            g.tensor(&[KV_HEADS * hd, d], 0.0, 0.5),
        );
        put(
            &format!("{p}self_attn.v_proj.weight"),
            g.tensor(&[KV_HEADS * hd, d], 0.0, 0.4),
        );
        put(
            &format!("{p}self_attn.o_proj.weight"),
            g.tensor(&[d, HEADS * hd], 0.0, 0.3),
        );
        put(
            &format!("{p}post_attention_layernorm.weight"),
            g.tensor(&[d], 1.0, 0.2),
        );
        put(
            &format!("{p}mlp.gate_proj.weight"),
            g.tensor(&[HIDDEN, d], 0.0, 0.4),
        );
        put(
            &format!("{p}mlp.up_proj.weight"),
            g.tensor(&[HIDDEN, d], 0.0, 0.4),
        );
        put(
            &format!("{p}mlp.down_proj.weight"),
            g.tensor(&[d, HIDDEN], 0.0, 0.3),
        );
    }
    put("model.norm.weight", g.tensor(&[d], 1.0, 0.2));
    put("lm_head.weight", g.tensor(&[VOCAB, d], 0.0, 0.4));
    t
}

fn llama_config() -> String {
    format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": {VOCAB},
            "hidden_size": {DIM}, "num_attention_heads": {HEADS}, "num_key_value_heads": {KV_HEADS},
            "num_hidden_layers": {LAYERS}, "intermediate_size": {HIDDEN}, "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0, "max_position_embeddings": {CTX}, "tie_word_embeddings": false,
            "hidden_act": "silu", "rope_scaling": null}}"#
    )
}

/// A WordLevel `tokenizer.json` over a few words (whitespace pre-tokenizer).
fn tokenizer_json() -> String {
    let words = ["<unk>", "the", "cat", "sat", "on", "mat", "a", "dog"];
    let vocab: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\": {i}"))
        .collect();
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null,
            "decoder": null, "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "<unk>"}}}}"#,
        vocab.join(", ")
    )
}

/// Writes a HF directory: config.json, tokenizer.json and the weights, in one file or as two
/// shards with `model.safetensors.index.json`.
fn write_checkpoint(dir: &Path, config: &str, tensors: &BTreeMap<String, Tensor>, shards: bool) {
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    if !shards {
        tensor_file::save(&dir.join("model.safetensors"), tensors).unwrap();
        return;
    }
    let names: Vec<&String> = tensors.keys().collect();
    let half = names.len() / 2;
    let mut map = serde_json::Map::new();
    for (k, part) in [&names[..half], &names[half..]].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", k + 1);
        let sub: BTreeMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        tensor_file::save(&dir.join(&file), &sub).unwrap();
        for n in *part {
            map.insert((*n).clone(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

// ---------------------------------------------------------------- f64 references

/// Row-major f64 matrix view of a tensor.
fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec()
}

/// `y[o] = Σ_i x[i] · w[i, o]` for `w` `[in, out]` (GPT-2 Conv1D).
fn conv1d(x: &[f64], w: &[f64], b: Option<&[f64]>, out: usize) -> Vec<f64> {
    let mut y: Vec<f64> = b.map_or(vec![0.0; out], <[f64]>::to_vec);
    for (i, xi) in x.iter().enumerate() {
        for o in 0..out {
            y[o] += xi * w[i * out + o];
        }
    }
    y
}

/// `y[o] = Σ_i w[o, i] · x[i]` for `w` `[out, in]` (`nn.Linear`).
fn linear(x: &[f64], w: &[f64], out: usize) -> Vec<f64> {
    let n = x.len();
    (0..out)
        .map(|o| (0..n).map(|i| w[o * n + i] * x[i]).sum())
        .collect()
}

fn layer_norm(x: &[f64], w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let r = 1.0 / (var + eps).sqrt();
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(v, (w, b))| (v - mean) * r * w + b)
        .collect()
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * r * w).collect()
}

fn gelu_new(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Causal attention over per-position q `[T][H·hd]`, k and v `[T][KV·hd]`; query head h
/// reads kv head h / (H / KV) (HF's `repeat_kv`). Returns `[T][H·hd]`.
fn causal_attention(
    q: &[Vec<f64>],
    k: &[Vec<f64>],
    v: &[Vec<f64>],
    heads: usize,
    kv: usize,
) -> Vec<Vec<f64>> {
    let hd = q[0].len() / heads;
    let t = q.len();
    let mut out = vec![vec![0.0; heads * hd]; t];
    for h in 0..heads {
        let kh = h / (heads / kv);
        for i in 0..t {
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|c| q[i][h * hd + c] * k[j][kh * hd + c])
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for (j, ej) in e.iter().enumerate() {
                for c in 0..hd {
                    out[i][h * hd + c] += ej / z * v[j][kh * hd + c];
                }
            }
        }
    }
    out
}

/// HF GPT-2 forward for one sequence: logits `[T][V]`.
fn gpt2_reference(w: &BTreeMap<String, Tensor>, tokens: &[usize]) -> Vec<Vec<f64>> {
    let g = |n: &str| f64s(&w[&format!("transformer.{n}")]);
    let (d, eps) = (DIM, 1e-5);
    let (wte, wpe) = (g("wte.weight"), g("wpe.weight"));
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| (0..d).map(|c| wte[t * d + c] + wpe[p * d + c]).collect())
        .collect();
    for i in 0..LAYERS {
        let l = |n: &str| g(&format!("h.{i}.{n}"));
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for xt in &x {
            let h = layer_norm(xt, &l("ln_1.weight"), &l("ln_1.bias"), eps);
            let qkv = conv1d(
                &h,
                &l("attn.c_attn.weight"),
                Some(&l("attn.c_attn.bias")),
                3 * d,
            );
            q.push(qkv[..d].to_vec());
            k.push(qkv[d..2 * d].to_vec());
            v.push(qkv[2 * d..].to_vec());
        }
        let a = causal_attention(&q, &k, &v, HEADS, HEADS);
        for (xt, at) in x.iter_mut().zip(&a) {
            let o = conv1d(
                at,
                &l("attn.c_proj.weight"),
                Some(&l("attn.c_proj.bias")),
                d,
            );
            xt.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = layer_norm(xt, &l("ln_2.weight"), &l("ln_2.bias"), eps);
            let m: Vec<f64> = conv1d(&h, &l("mlp.c_fc.weight"), Some(&l("mlp.c_fc.bias")), 4 * d)
                .into_iter()
                .map(gelu_new)
                .collect();
            let m = conv1d(&m, &l("mlp.c_proj.weight"), Some(&l("mlp.c_proj.bias")), d);
            xt.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
        }
    }
    x.iter()
        .map(|xt| {
            let h = layer_norm(xt, &g("ln_f.weight"), &g("ln_f.bias"), eps);
            linear(&h, &wte, VOCAB) // tied: logits = wte · h
        })
        .collect()
}

/// HF Llama rotary embedding (`rotate_half`: pairs (c, c + hd/2)) of one head, in place.
fn rope_half(x: &mut [f64], pos: usize, theta: f64) {
    let hd = x.len();
    for c in 0..hd / 2 {
        let freq = theta.powf(-2.0 * c as f64 / hd as f64);
        let (s, co) = (pos as f64 * freq).sin_cos();
        let (a, b) = (x[c], x[c + hd / 2]);
        x[c] = a * co - b * s;
        x[c + hd / 2] = b * co + a * s;
    }
}

/// HF Llama forward for one sequence: logits `[T][V]`.
fn llama_reference(w: &BTreeMap<String, Tensor>, tokens: &[usize]) -> Vec<Vec<f64>> {
    llama_reference_eps(w, tokens, 1e-6)
}

/// [`llama_reference`] with `rms_norm_eps` = `eps` (every norm, the final one included).
fn llama_reference_eps(w: &BTreeMap<String, Tensor>, tokens: &[usize], eps: f64) -> Vec<Vec<f64>> {
    let g = |n: &str| f64s(&w[n]);
    let (d, hd, theta) = (DIM, DIM / HEADS, 10000.0);
    let emb = g("model.embed_tokens.weight");
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| emb[t * d..(t + 1) * d].to_vec())
        .collect();
    for i in 0..LAYERS {
        let l = |n: &str| g(&format!("model.layers.{i}.{n}"));
        // Projection `{p}_proj`, plus its bias where the checkpoint has one (Qwen2: q, k, v;
        // `attention_bias`: all four).
        let proj = |p: &str, x: &[f64], out: usize| {
            let mut y = linear(x, &l(&format!("self_attn.{p}_proj.weight")), out);
            if let Some(b) = w.get(&format!("model.layers.{i}.self_attn.{p}_proj.bias")) {
                y.iter_mut().zip(f64s(b)).for_each(|(y, b)| *y += b);
            }
            y
        };
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for (p, xt) in x.iter().enumerate() {
            let h = rms_norm(xt, &l("input_layernorm.weight"), eps);
            let mut qt = proj("q", &h, HEADS * hd);
            let mut kt = proj("k", &h, KV_HEADS * hd);
            qt.chunks_mut(hd).for_each(|c| rope_half(c, p, theta));
            kt.chunks_mut(hd).for_each(|c| rope_half(c, p, theta));
            q.push(qt);
            k.push(kt);
            v.push(proj("v", &h, KV_HEADS * hd));
        }
        let a = causal_attention(&q, &k, &v, HEADS, KV_HEADS);
        for (xt, at) in x.iter_mut().zip(&a) {
            let o = proj("o", at, d);
            xt.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rms_norm(xt, &l("post_attention_layernorm.weight"), eps);
            let gate = linear(&h, &l("mlp.gate_proj.weight"), HIDDEN);
            let up = linear(&h, &l("mlp.up_proj.weight"), HIDDEN);
            let m: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
            let m = linear(&m, &l("mlp.down_proj.weight"), d);
            xt.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
        }
    }
    x.iter()
        .map(|xt| {
            let h = rms_norm(xt, &g("model.norm.weight"), eps);
            linear(&h, &g("lm_head.weight"), VOCAB)
        })
        .collect()
}

// ---------------------------------------------------------------- running weft

const SEQS: [[usize; 10]; 2] = [
    [1, 7, 3, 44, 12, 0, 9, 9, 30, 47],
    [5, 5, 21, 2, 38, 17, 6, 40, 11, 3],
];

/// The imported model's logits `[B, T, V]` on `backend`.
fn weft_logits(imp: &hf::Imported, backend: &dyn Backend) -> Tensor {
    let spec = weft_dsl::check_source(&imp.spec).unwrap_or_else(|e| panic!("{e:?}\n{}", imp.spec));
    let (b, t) = (SEQS.len(), SEQS[0].len());
    let g = lower(&spec, &LowerOptions::new(b, t)).unwrap();
    let ids: Vec<i32> = SEQS.iter().flatten().map(|&x| x as i32).collect();
    let inputs = HashMap::from([("tokens".to_string(), Tensor::i32(&[b, t], ids))]);
    let params: ParamStore = imp.weights.clone().into_iter().collect();
    backend
        .run(&g, &inputs, &params, &HookSelection::None)
        .unwrap()
        .outputs["logits"]
        .clone()
}

/// Largest error relative to `max(|want|, rms(want))` (see wgpu_support::max_rel_err).
fn assert_matches_reference(what: &str, got: &Tensor, want: &[Vec<Vec<f64>>]) {
    let w: Vec<f64> = want.iter().flatten().flatten().copied().collect();
    let g = got.to_f64_vec();
    assert_eq!(g.len(), w.len(), "{what}: logits size");
    let rms = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / b.abs().max(rms))
        .fold(0.0, f64::max);
    assert!(worst <= RTOL, "{what}: relative error {worst:e} > {RTOL:e}");
    eprintln!("{what}: max relative error {worst:.2e}");
}

/// A pure-Rust HF forward pass: weights and token ids to logits per position.
type Forward = fn(&BTreeMap<String, Tensor>, &[usize]) -> Vec<Vec<f64>>;

fn reference(f: Forward, w: &BTreeMap<String, Tensor>) -> Vec<Vec<Vec<f64>>> {
    SEQS.iter().map(|s| f(w, s)).collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn gpt2_logits_match_the_reference_on_cpu_and_wgpu() {
    let dir = temp_dir("gpt2");
    let hf_w = gpt2_tensors(1);
    write_checkpoint(&dir, &gpt2_config(), &hf_w, false);
    let imp = hf::import_dir(&dir, "gpt2_tiny").unwrap();
    assert!(imp.spec.contains("position = learned") && imp.spec.contains("bias: true"));
    let want = reference(gpt2_reference, &hf_w);
    assert_matches_reference("gpt2 cpu", &weft_logits(&imp, &CpuBackend::new()), &want);
    if let Some(gpu) = wgpu_support::gpu_or_skip() {
        assert_matches_reference("gpt2 wgpu", &weft_logits(&imp, gpu), &want);
    }
}

#[test]
fn llama_gqa_logits_match_the_reference_on_cpu_and_wgpu_and_shards_load() {
    let dir = temp_dir("llama");
    let hf_w = llama_tensors(2);
    write_checkpoint(&dir, &llama_config(), &hf_w, false);
    let imp = hf::import_dir(&dir, "llama_tiny").unwrap();
    assert!(imp.spec.contains("kv_heads = 2"), "{}", imp.spec);
    assert_eq!(
        imp.weights["layers.0.attn.wk"].shape,
        [DIM, KV_HEADS * DIM / HEADS]
    );
    let want = reference(llama_reference, &hf_w);
    assert_matches_reference("llama cpu", &weft_logits(&imp, &CpuBackend::new()), &want);
    if let Some(gpu) = wgpu_support::gpu_or_skip() {
        assert_matches_reference("llama wgpu", &weft_logits(&imp, gpu), &want);
    }
    // The same checkpoint in two shards imports to the same weights.
    let sharded = temp_dir("llama-shards");
    write_checkpoint(&sharded, &llama_config(), &hf_w, true);
    assert!(sharded.join("model-00002-of-00002.safetensors").exists());
    let imp2 = hf::import_dir(&sharded, "llama_tiny").unwrap();
    assert_eq!(imp2.weights, imp.weights);
    assert_eq!(
        imp2.spec.lines().skip(1).collect::<Vec<_>>(),
        imp.spec.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn the_final_norm_uses_the_checkpoints_eps() {
    // A large eps, so the default (1e-6) in the final norm would show in the logits.
    let dir = temp_dir("llama-eps");
    let hf_w = llama_tensors(13);
    let config = llama_config().replace("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0.5");
    write_checkpoint(&dir, &config, &hf_w, false);
    let imp = hf::import_dir(&dir, "llama_eps").unwrap();
    assert!(imp.spec.contains("final_norm_eps = 0.5"), "{}", imp.spec);
    let want: Vec<_> = SEQS
        .iter()
        .map(|s| llama_reference_eps(&hf_w, s, 0.5))
        .collect();
    assert_matches_reference(
        "llama eps 0.5",
        &weft_logits(&imp, &CpuBackend::new()),
        &want,
    );
}

/// Adds q/k/v (and, with `o`, o) projection biases to Llama tensors.
fn with_attention_bias(
    mut t: BTreeMap<String, Tensor>,
    seed: u64,
    o: bool,
) -> BTreeMap<String, Tensor> {
    let mut g = Gen(seed);
    let hd = DIM / HEADS;
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}.self_attn.");
        t.insert(format!("{p}q_proj.bias"), g.tensor(&[HEADS * hd], 0.0, 0.3));
        t.insert(
            format!("{p}k_proj.bias"),
            g.tensor(&[KV_HEADS * hd], 0.0, 0.3),
        );
        t.insert(
            format!("{p}v_proj.bias"),
            g.tensor(&[KV_HEADS * hd], 0.0, 0.3),
        );
        if o {
            t.insert(format!("{p}o_proj.bias"), g.tensor(&[DIM], 0.0, 0.2));
        }
    }
    t
}

/// A Qwen2 config: the Llama keys, `model_type: qwen2` and an unused sliding window.
fn qwen2_config() -> String {
    llama_config()
        .replace("\"llama\"", "\"qwen2\"")
        .replace("LlamaForCausalLM", "Qwen2ForCausalLM")
        .replace(
            "\"rope_scaling\": null",
            "\"rope_scaling\": null, \"sliding_window\": 4096, \"use_sliding_window\": false, \"max_window_layers\": 2",
        )
}

#[test]
fn qwen2_and_llama_attention_bias_checkpoints_import_with_their_biases() {
    for (tag, config, o_bias, arg) in [
        ("qwen2", qwen2_config(), false, "qkv_bias: true"),
        (
            "llama-bias",
            llama_config().replace(
                "\"rope_scaling\": null",
                "\"rope_scaling\": null, \"attention_bias\": true",
            ),
            true,
            "bias: true",
        ),
    ] {
        let dir = temp_dir(tag);
        let hf_w = with_attention_bias(llama_tensors(14), 15, o_bias);
        write_checkpoint(&dir, &config, &hf_w, false);
        let imp = hf::import_dir(&dir, "m").unwrap();
        assert!(imp.spec.contains(arg), "{tag}: {}", imp.spec);
        assert!(imp.weights.contains_key("layers.1.attn.bk"), "{tag}");
        assert_eq!(
            imp.weights.contains_key("layers.1.attn.bo"),
            o_bias,
            "{tag}"
        );
        let want = reference(llama_reference, &hf_w);
        assert_matches_reference(
            &format!("{tag} cpu"),
            &weft_logits(&imp, &CpuBackend::new()),
            &want,
        );
        if let Some(gpu) = wgpu_support::gpu_or_skip() {
            assert_matches_reference(&format!("{tag} wgpu"), &weft_logits(&imp, gpu), &want);
        }
        // Export writes the family back (Qwen2 for q/k/v-only biases) and re-imports equal.
        let spec = weft_dsl::check_source(&imp.spec).unwrap();
        let out = temp_dir(&format!("{tag}-out"));
        hf::export_dir(&spec, &imp.weights, &out).unwrap();
        let cfg = std::fs::read_to_string(out.join("config.json")).unwrap();
        let model_type = if o_bias { "\"llama\"" } else { "\"qwen2\"" };
        assert!(cfg.contains(model_type), "{tag}: {cfg}");
        let again = hf::import_dir(&out, "m").unwrap();
        assert_eq!(again.weights, imp.weights, "{tag}");
        assert_eq!(again.config, imp.config, "{tag}");
    }
    // Without the config key, bias tensors are tensors the table does not expect.
    let dir = temp_dir("llama-stray-bias");
    write_checkpoint(
        &dir,
        &llama_config(),
        &with_attention_bias(llama_tensors(16), 17, false),
        false,
    );
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(err.contains("q_proj.bias"), "{err}");
}

/// Writes `tensors` as one safetensors file, each in the dtype `dtype_of` picks (bf16 and
/// f16 through the `half` crate, as PyTorch saves them).
fn save_mixed(path: &Path, tensors: &BTreeMap<String, Tensor>, dtype_of: impl Fn(&str) -> Dtype) {
    let bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let v = t.to_f32_vec();
            let d = dtype_of(n);
            let bytes: Vec<u8> = match d {
                Dtype::BF16 => v
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
                Dtype::F16 => v
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            (n.clone(), d, t.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn bf16_and_f16_tensors_are_converted_on_import() {
    let dir = temp_dir("llama-half");
    let dtype_of = |n: &str| {
        if n.contains("mlp") || n.contains("embed") {
            Dtype::BF16
        } else if n.contains("self_attn") {
            Dtype::F16
        } else {
            Dtype::F32
        }
    };
    // What the file holds, as f32: each tensor rounded to its dtype.
    let rounded: BTreeMap<String, Tensor> = llama_tensors(18)
        .into_iter()
        .map(|(n, t)| {
            let v: Vec<f32> = t
                .to_f32_vec()
                .into_iter()
                .map(|x| match dtype_of(&n) {
                    Dtype::BF16 => half::bf16::from_f32(x).to_f32(),
                    Dtype::F16 => half::f16::from_f32(x).to_f32(),
                    _ => x,
                })
                .collect();
            (n, Tensor::f32(&t.shape, v))
        })
        .collect();
    std::fs::write(dir.join("config.json"), llama_config()).unwrap();
    save_mixed(&dir.join("model.safetensors"), &rounded, dtype_of);
    let imp = hf::import_dir(&dir, "m").unwrap();
    assert_eq!(
        imp.weights["embed.weight"],
        rounded["model.embed_tokens.weight"]
    );
    assert_ne!(
        imp.weights["embed.weight"],
        llama_tensors(18)["model.embed_tokens.weight"],
        "bf16 rounding changed the values"
    );
    let want = reference(llama_reference, &rounded);
    assert_matches_reference(
        "llama bf16/f16",
        &weft_logits(&imp, &CpuBackend::new()),
        &want,
    );
}

#[test]
fn import_export_import_is_the_identity_on_weights() {
    for (tag, config, tensors) in [
        ("rt-gpt2", gpt2_config(), gpt2_tensors(3)),
        ("rt-llama", llama_config(), llama_tensors(4)),
    ] {
        let dir = temp_dir(tag);
        write_checkpoint(&dir, &config, &tensors, false);
        let imp = hf::import_dir(&dir, "m").unwrap();
        let spec = weft_dsl::check_source(&imp.spec).unwrap();
        let out = temp_dir(&format!("{tag}-out"));
        hf::export_dir(&spec, &imp.weights, &out).unwrap();
        let again = hf::import_dir(&out, "m").unwrap();
        assert_eq!(again.weights, imp.weights, "{tag}");
        assert_eq!(again.config, imp.config, "{tag}");
        // The exported tensors are the HF originals (GPT-2 without its mask buffers).
        let exported = tensor_file::load(&out.join("model.safetensors")).unwrap();
        for (name, t) in &exported {
            let original = tensors
                .get(name)
                .or_else(|| tensors.get(&format!("transformer.{name}")))
                .unwrap_or_else(|| panic!("{tag}: unexpected exported tensor {name}"));
            assert_eq!(t, original, "{tag}: {name}");
        }
    }
}

#[test]
fn export_refuses_parameters_without_a_hf_counterpart() {
    let dir = temp_dir("moice-export");
    write_checkpoint(&dir, &llama_config(), &llama_tensors(5), false);
    let imp = hf::import_dir(&dir, "m").unwrap();
    let moice = imp.spec.replace(
        "rope(base: 10000.0, layout: half)",
        "rope(bases: [10000, 20000], router: swiglu)",
    );
    let spec = weft_dsl::check_source(&moice).unwrap();
    let shapes = hf::verify::param_shapes(&spec).unwrap();
    let mut weights = imp.weights.clone();
    for (n, s) in &shapes {
        weights.entry(n.clone()).or_insert_with(|| Tensor::zeros(s));
    }
    let err = hf::export_dir(&spec, &weights, &temp_dir("moice-out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("router") && err.contains("no counterpart"),
        "{err}"
    );
}

#[test]
fn broken_checkpoints_give_errors_naming_the_file_tensor_and_shapes() {
    // Malformed config.json: a missing key, a bad value, not JSON.
    let dir = temp_dir("bad-config");
    write_checkpoint(
        &dir,
        &gpt2_config().replace("\"n_head\": 4,", ""),
        &gpt2_tensors(6),
        false,
    );
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("`n_head`"),
        "{err}"
    );
    std::fs::write(
        dir.join("config.json"),
        gpt2_config().replace("\"n_embd\": 16", "\"n_embd\": -3"),
    )
    .unwrap();
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(err.contains("`n_embd` must be a positive integer"), "{err}");
    std::fs::write(dir.join("config.json"), "{ nope").unwrap();
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(err.contains("config.json: not valid JSON"), "{err}");

    // A missing tensor.
    let dir = temp_dir("missing-tensor");
    let mut t = llama_tensors(7);
    t.remove("model.layers.1.mlp.up_proj.weight");
    write_checkpoint(&dir, &llama_config(), &t, false);
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(
        err.contains("missing tensor `model.layers.1.mlp.up_proj.weight`")
            && err.contains("layers.1.mlp.w_up"),
        "{err}"
    );

    // A shape mismatch (k_proj with all heads instead of the KV heads).
    let dir = temp_dir("bad-shape");
    let mut t = llama_tensors(8);
    t.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        Tensor::zeros(&[DIM, DIM]),
    );
    write_checkpoint(&dir, &llama_config(), &t, false);
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(
        err.contains("layers.0.attn.wk")
            && err.contains("k_proj")
            && err.contains("expected shape [16, 8], found [16, 16]"),
        "{err}"
    );

    // A tensor the table does not know.
    let dir = temp_dir("unknown-tensor");
    let mut t = llama_tensors(9);
    t.insert(
        "model.layers.0.self_attn.q_norm.weight".into(),
        Tensor::zeros(&[4]),
    );
    write_checkpoint(&dir, &llama_config(), &t, false);
    let err = hf::import_dir(&dir, "m").unwrap_err().to_string();
    assert!(err.contains("q_norm"), "{err}");
}

#[test]
fn tokenizers_round_trip_text() {
    let dir = temp_dir("tok");
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    let tok = Tokenizer::load(dir.join("tokenizer.json").to_str().unwrap()).unwrap();
    let ids = tok.encode("the cat sat on the mat").unwrap();
    assert_eq!(ids, [1, 2, 3, 4, 1, 5]);
    assert_eq!(tok.decode(&ids).unwrap(), "the cat sat on the mat");
    assert_eq!(
        tok.encode("the zebra").unwrap(),
        [1, 0],
        "unknown words map to <unk>"
    );
    let bytes = Tokenizer::load("bytes").unwrap();
    assert_eq!(bytes.encode("hé").unwrap(), [104, 195, 169]);
    assert_eq!(bytes.decode(&[104, 195, 169]).unwrap(), "hé");
    assert!(Tokenizer::load("/nonexistent/tokenizer.json").is_err());
}

/// Greedy generation on an imported model with and without the kv cache: the same tokens,
/// each step's logits within [`RTOL`] of each other and of the reference model's, whose
/// argmax each token is.
fn assert_generation_agrees(
    what: &str,
    imp: &hf::Imported,
    hf_w: &BTreeMap<String, Tensor>,
    f: Forward,
    backend: &dyn Backend,
    max_new: usize,
) {
    let spec = weft_dsl::check_source(&imp.spec).unwrap();
    let params: ParamStore = imp.weights.clone().into_iter().collect();
    let prompt = [3u32, 17, 8];
    let cached =
        generate::greedy_with_logits(&spec, &params, backend, &prompt, max_new, true).unwrap();
    let uncached =
        generate::greedy_with_logits(&spec, &params, backend, &prompt, max_new, false).unwrap();
    assert_eq!(cached.tokens.len(), max_new, "{what}");
    assert_eq!(cached.tokens, uncached.tokens, "{what}");
    let mut seq: Vec<usize> = prompt.iter().map(|&t| t as usize).collect();
    for (i, &t) in cached.tokens.iter().enumerate() {
        let want = f(hf_w, &seq).pop().unwrap();
        for (name, got) in [
            ("cached", &cached.logits[i]),
            ("uncached", &uncached.logits[i]),
        ] {
            let got = Tensor::f32(&[1, 1, VOCAB], got.clone());
            assert_matches_reference(
                &format!("{what} {name} step {i}"),
                &got,
                &[vec![want.clone()]],
            );
        }
        let best = (0..VOCAB).fold(0, |b, i| if want[i] > want[b] { i } else { b });
        assert_eq!(t as usize, best, "{what} step {i}");
        seq.push(best);
    }
}

#[test]
fn greedy_generation_is_the_same_with_and_without_the_cache() {
    for (tag, config, tensors, f) in [
        (
            "gpt2",
            gpt2_config(),
            gpt2_tensors(12),
            gpt2_reference as Forward,
        ),
        (
            "llama",
            llama_config(),
            llama_tensors(10),
            llama_reference as Forward,
        ),
    ] {
        let dir = temp_dir(&format!("generate-{tag}"));
        write_checkpoint(&dir, &config, &tensors, false);
        let imp = hf::import_dir(&dir, "m").unwrap();
        // On the CPU up to the full context; on wgpu fewer steps, since the uncached path
        // compiles a new graph for every length.
        let cpu = CpuBackend::new();
        assert_generation_agrees(&format!("{tag} cpu"), &imp, &tensors, f, &cpu, CTX - 3);
        if let Some(gpu) = wgpu_support::gpu_or_skip() {
            assert_generation_agrees(&format!("{tag} wgpu"), &imp, &tensors, f, gpu, 6);
        }
    }
}
