//! Text generation: append a chosen next token (greedy or sampled, [`super::sample`]) until
//! `max_new` tokens, a stop token or the model's ctx.
//!
//! Three paths that must give the same logits:
//! - **uncached**: lower and run the whole sequence at its current length every step (the
//!   reference: nothing is reused);
//! - **cached**: one prefill run of the prompt captures every attention's keys and values
//!   (the `attn.k` / `attn.v` hooks), then each new token runs alone through a decode-step
//!   graph (`LowerOptions::decode`) that reads the cached keys/values as inputs and reports
//!   the new token's, which are written into the cache. The decode graph has a fixed cache
//!   capacity, so it is lowered (and, on wgpu, compiled) once for the whole generation;
//! - **native**: on the CPU backend, the plain Llama spec the importers write runs through
//!   [`super::llama_cpu`] (weights resident in row layout, its own cache).
//!
//! Specs the cache cannot serve (bidirectional, document or turn masks) fail with an error
//! saying "kv cache not supported ...; use --no-cache" rather than generating other tokens.

use super::llama_cpu;
use super::sample::{Sampler, Sampling};
use super::{HfError, Result};
use crate::tensor::TensorData;
use crate::{Backend, HookSelection, ParamStore, Tensor};
use std::collections::HashMap;
use std::time::Instant;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions, DECODE_PAST, PAST_KV};
use weft_dsl::Checked;

/// A greedy continuation: the new tokens, and for each the logits row `[vocab]` it was the
/// argmax of.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens (the prompt excluded).
    pub tokens: Vec<u32>,
    /// `logits[i]`: the logits row `[vocab]` whose argmax is `tokens[i]`.
    pub logits: Vec<Vec<f32>>,
}

/// How [`generate`] computes each step's logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The whole sequence through the graph at every length (the reference).
    Uncached,
    /// A prefill graph, then one decode-step graph per token with the cache as inputs.
    Cached,
    /// The direct CPU Llama forward ([`super::llama_cpu`]) with its own cache; only for the
    /// plain Llama spec the importers write, on the CPU backend.
    Native,
}

/// Settings of one [`generate`] call.
#[derive(Clone, Debug)]
pub struct Options {
    /// At most this many new tokens (fewer when a stop token comes or ctx is full).
    pub max_new: usize,
    pub sampling: Sampling,
    /// Generation ends after any of these tokens (it is kept in the output).
    pub stop: Vec<u32>,
    /// `false`: [`Path::Uncached`]. `true`: [`Path::Native`] where it applies, else
    /// [`Path::Cached`].
    pub cached: bool,
}

/// What [`generate`] did: the tokens, the path taken and where the time went.
#[derive(Clone, Debug)]
pub struct Output {
    /// The new tokens (the prompt excluded; a stop token included).
    pub tokens: Vec<u32>,
    pub path: Path,
    /// Seconds for the prompt's forward (which gives the first new token's logits).
    pub prefill_s: f64,
    /// Seconds for the remaining `tokens.len() - 1` one-token steps.
    pub decode_s: f64,
    /// Whether a stop token ended the generation.
    pub stopped: bool,
}

impl Output {
    /// Decode speed in tokens per second (0 when no step ran).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let steps = self.tokens.len().saturating_sub(1);
        if steps == 0 || self.decode_s <= 0.0 {
            0.0
        } else {
            steps as f64 / self.decode_s
        }
    }
}

/// Greedy continuation of `prompt` through the graph (the new tokens only).
pub fn greedy(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    max_new: usize,
    cached: bool,
) -> Result<Vec<u32>> {
    Ok(greedy_with_logits(spec, params, backend, prompt, max_new, cached)?.tokens)
}

/// [`greedy`], also returning each step's logits (to compare the strategies). Always runs
/// the graph ([`Path::Cached`] or [`Path::Uncached`]).
pub fn greedy_with_logits(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    max_new: usize,
    cached: bool,
) -> Result<Generation> {
    let path = if cached { Path::Cached } else { Path::Uncached };
    let mut out = Generation {
        tokens: Vec::new(),
        logits: Vec::new(),
    };
    let opts = Options {
        max_new,
        sampling: Sampling::Greedy,
        stop: Vec::new(),
        cached,
    };
    run_path(spec, params, backend, prompt, &opts, path, &mut |t, row| {
        out.tokens.push(t);
        out.logits.push(row.to_vec());
    })?;
    Ok(out)
}

/// Continues `prompt` under `opts`, calling `on_token` with each new token as soon as it is
/// chosen (for streaming).
pub fn generate(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    opts: &Options,
    on_token: &mut dyn FnMut(u32),
) -> Result<Output> {
    let path = if !opts.cached {
        Path::Uncached
    } else if backend.name() == "cpu" && llama_cpu::plain_llama(spec, params).is_some() {
        Path::Native
    } else {
        Path::Cached
    };
    generate_on(spec, params, backend, prompt, opts, path, on_token)
}

/// [`generate`] on a given path (tests compare the paths; [`Path::Native`] errors for a
/// spec it does not serve).
pub fn generate_on(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    opts: &Options,
    path: Path,
    on_token: &mut dyn FnMut(u32),
) -> Result<Output> {
    run_path(spec, params, backend, prompt, opts, path, &mut |t, _| {
        on_token(t)
    })
}

/// One generation: the checks, then prefill and steps on `path`, each new token and the
/// logits row it came from passed to `each`.
fn run_path(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    opts: &Options,
    path: Path,
    each: &mut dyn FnMut(u32, &[f32]),
) -> Result<Output> {
    let ctx = spec.model.config.ctx;
    let vocab = spec.model.config.vocab as u32;
    if prompt.is_empty() {
        return Err(HfError::new("the prompt has no tokens"));
    }
    if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
        return Err(HfError::new(format!(
            "prompt token {bad} is outside the model's vocabulary 0 .. {vocab}"
        )));
    }
    if prompt.len() > ctx {
        return Err(HfError::new(format!(
            "the prompt has {} tokens, the model's ctx is {ctx}",
            prompt.len()
        )));
    }
    opts.sampling.validate().map_err(HfError::new)?;
    let total = (prompt.len() + opts.max_new).min(ctx);
    let mut out = Output {
        tokens: Vec::new(),
        path,
        prefill_s: 0.0,
        decode_s: 0.0,
        stopped: false,
    };
    if total == prompt.len() {
        return Ok(out);
    }
    let mut stepper: Box<dyn Stepper + '_> = match path {
        Path::Uncached => Box::new(Uncached {
            spec,
            params,
            backend,
            tokens: Vec::new(),
        }),
        Path::Cached => Box::new(Cached::new(spec, params, backend, total)?),
        Path::Native => {
            let engine = llama_cpu::LlamaCpu::for_spec(spec, params).ok_or_else(|| {
                HfError::new(
                    "the native CPU path serves only the plain Llama spec `weft import` writes",
                )
            })??;
            let cache = engine.cache(total);
            Box::new(Native { engine, cache })
        }
    };
    let mut sampler = Sampler::new(opts.sampling.clone());
    let start = Instant::now();
    let mut row = stepper.prefill(prompt)?;
    out.prefill_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    loop {
        let t = sampler.pick(&row);
        out.tokens.push(t);
        each(t, &row);
        if opts.stop.contains(&t) {
            out.stopped = true;
            break;
        }
        if prompt.len() + out.tokens.len() >= total {
            break;
        }
        row = stepper.step(t, prompt.len() + out.tokens.len() - 1)?;
    }
    out.decode_s = start.elapsed().as_secs_f64();
    Ok(out)
}

/// Logits rows, one token at a time.
trait Stepper {
    /// The last position's logits after the prompt.
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>>;
    /// The logits after appending `token` at absolute position `pos`.
    fn step(&mut self, token: u32, pos: usize) -> Result<Vec<f32>>;
}

struct Uncached<'a> {
    spec: &'a Checked,
    params: &'a ParamStore,
    backend: &'a dyn Backend,
    tokens: Vec<u32>,
}

impl Uncached<'_> {
    fn rerun(&self) -> Result<Vec<f32>> {
        let g = graph(self.spec, &LowerOptions::new(1, self.tokens.len()))?;
        let r = run(
            self.backend,
            &g,
            self.params,
            inputs(&g, &self.tokens),
            &HookSelection::None,
        )?;
        last_row(&r)
    }
}

impl Stepper for Uncached<'_> {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        self.tokens = prompt.to_vec();
        self.rerun()
    }

    fn step(&mut self, token: u32, _pos: usize) -> Result<Vec<f32>> {
        self.tokens.push(token);
        self.rerun()
    }
}

/// The prefill graph, then a decode-step graph whose cache inputs are written in place.
struct Cached<'a> {
    spec: &'a Checked,
    params: &'a ParamStore,
    backend: &'a dyn Backend,
    step: Graph,
    feed: HashMap<String, Tensor>,
    /// Cache input → the hook that reports its values.
    caches: Vec<(String, String)>,
    hooks: HookSelection,
}

impl<'a> Cached<'a> {
    fn new(
        spec: &'a Checked,
        params: &'a ParamStore,
        backend: &'a dyn Backend,
        total: usize,
    ) -> Result<Self> {
        // Steps feed the tokens at positions n .. total−2 and cache each, so total−1 slots
        // hold everything (at least the prompt's n, as total > n).
        let capacity = total - 1;
        let step = graph(spec, &LowerOptions::decode(1, 1, capacity))?;
        let feed = inputs(&step, &[0]);
        let caches: Vec<(String, String)> = step
            .inputs
            .iter()
            .filter_map(|i| {
                PAST_KV.iter().find_map(|(past, hook)| {
                    let base = i.name.strip_suffix(past)?;
                    Some((i.name.clone(), format!("{base}{hook}")))
                })
            })
            .collect();
        let hooks = HookSelection::Names(caches.iter().map(|(_, h)| h.clone()).collect());
        Ok(Cached {
            spec,
            params,
            backend,
            step,
            feed,
            caches,
            hooks,
        })
    }
}

impl Stepper for Cached<'_> {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        let prefill = graph(self.spec, &LowerOptions::new(1, prompt.len()))?;
        let r = run(
            self.backend,
            &prefill,
            self.params,
            inputs(&prefill, prompt),
            &self.hooks,
        )?;
        store(&mut self.feed, &self.caches, &r, 0)?;
        last_row(&r)
    }

    fn step(&mut self, token: u32, pos: usize) -> Result<Vec<f32>> {
        self.feed
            .insert("tokens".into(), Tensor::i32(&[1, 1], vec![token as i32]));
        self.feed
            .insert(DECODE_PAST.into(), Tensor::i32(&[1], vec![pos as i32]));
        let r = self
            .backend
            .run(&self.step, &self.feed, self.params, &self.hooks)
            .map_err(|e| HfError::new(format!("{} backend: {e}", self.backend.name())))?;
        store(&mut self.feed, &self.caches, &r, pos)?;
        last_row(&r)
    }
}

struct Native {
    engine: llama_cpu::LlamaCpu,
    cache: llama_cpu::KvCache,
}

impl Stepper for Native {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        self.engine
            .forward(prompt, &mut self.cache, llama_cpu::Rows::Last)
    }

    fn step(&mut self, token: u32, _pos: usize) -> Result<Vec<f32>> {
        self.engine
            .forward(&[token], &mut self.cache, llama_cpu::Rows::Last)
    }
}

/// Writes each captured `[B, kv, T, d]` key/value hook into its cache input's slots
/// `at .. at+T`.
fn store(
    feed: &mut HashMap<String, Tensor>,
    caches: &[(String, String)],
    run: &crate::Outputs,
    at: usize,
) -> Result<()> {
    for (input, hook) in caches {
        let new = run
            .hook(hook)
            .ok_or_else(|| HfError::new(format!("the run did not report hook `{hook}`")))?;
        let cache = feed.get_mut(input).expect("every cache input is fed");
        let (ns, cs) = (&new.shape, cache.shape.clone());
        if ns.len() != 4 || ns[..2] != cs[..2] || ns[3] != cs[3] || at + ns[2] > cs[2] {
            return Err(HfError::new(format!(
                "hook `{hook}` {ns:?} does not fit cache `{input}` {cs:?} at slot {at}"
            )));
        }
        let (t, slots, d) = (ns[2], cs[2], cs[3]);
        let src = new.to_f32_vec();
        // In place: a step writes d values per kv head, not the whole cache.
        let TensorData::F32(dst) = &mut cache.data else {
            unreachable!("cache inputs are created as f32")
        };
        for (row, chunk) in src.chunks(t * d).enumerate() {
            let o = (row * slots + at) * d;
            dst[o..o + t * d].copy_from_slice(chunk);
        }
    }
    Ok(())
}

fn graph(spec: &Checked, opts: &LowerOptions) -> Result<Graph> {
    lower(spec, opts).map_err(|e| HfError::new(format!("lowering: {e}")))
}

/// `tokens` as a `[1, T]` batch, and zeros for every other input the graph declares (cache
/// inputs start empty; dropout masks never appear outside training).
fn inputs(g: &Graph, tokens: &[u32]) -> HashMap<String, Tensor> {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let mut inputs = HashMap::from([("tokens".to_string(), Tensor::i32(&[1, tokens.len()], ids))]);
    for info in &g.inputs {
        inputs.entry(info.name.clone()).or_insert_with(|| {
            let n = info.shape.iter().product();
            match info.dtype {
                weft_compiler::ir::DType::I32 => Tensor::i32(&info.shape, vec![0; n]),
                _ => Tensor::zeros(&info.shape),
            }
        });
    }
    inputs
}

fn run(
    backend: &dyn Backend,
    g: &Graph,
    params: &ParamStore,
    inputs: HashMap<String, Tensor>,
    hooks: &HookSelection,
) -> Result<crate::Outputs> {
    backend
        .run(g, &inputs, params, hooks)
        .map_err(|e| HfError::new(format!("{} backend: {e}", backend.name())))
}

/// The logits at the last position.
fn last_row(out: &crate::Outputs) -> Result<Vec<f32>> {
    let logits = out
        .get("logits")
        .ok_or_else(|| HfError::new("the graph has no logits"))?;
    let v = *logits.shape.last().unwrap_or(&1);
    let all = logits.to_f32_vec();
    Ok(all[all.len() - v..].to_vec())
}
