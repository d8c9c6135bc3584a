//! Greedy decoding: append the most likely next token, `max_new` times.
//!
//! Two strategies that must give the same tokens:
//! - **uncached**: lower and run the whole sequence at its current length every step (the
//!   reference: nothing is reused);
//! - **cached**: one prefill run of the prompt captures every attention's keys and values
//!   (the `attn.k` / `attn.v` hooks), then each new token runs alone through a decode-step
//!   graph (`LowerOptions::decode`) that reads the cached keys/values as inputs and reports
//!   the new token's, which are written into the cache. The decode graph has a fixed cache
//!   capacity, so it is lowered (and, on wgpu, compiled) once for the whole generation.
//!
//! Specs the cache cannot serve (bidirectional, document or turn masks) fail with an error
//! saying "kv cache not supported ...; use --no-cache" rather than generating other tokens.

use super::{HfError, Result};
use crate::tensor::TensorData;
use crate::{Backend, HookSelection, ParamStore, Tensor};
use std::collections::HashMap;
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

/// Greedy continuation of `prompt` (the new tokens only).
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

/// [`greedy`], also returning each step's logits (to compare the two strategies).
pub fn greedy_with_logits(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    max_new: usize,
    cached: bool,
) -> Result<Generation> {
    let ctx = spec.model.int("ctx").max(0) as usize;
    let vocab = spec.model.int("vocab").max(0) as u32;
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
    let total = (prompt.len() + max_new).min(ctx);
    let mut out = Generation {
        tokens: Vec::new(),
        logits: Vec::new(),
    };
    if total == prompt.len() {
        return Ok(out);
    }
    if cached {
        with_cache(spec, params, backend, prompt, total, &mut out)?;
    } else {
        let mut tokens = prompt.to_vec();
        while tokens.len() < total {
            let g = graph(spec, &LowerOptions::new(1, tokens.len()))?;
            let run = run(
                backend,
                &g,
                params,
                inputs(&g, &tokens),
                &HookSelection::None,
            )?;
            let row = last_row(&run)?;
            tokens.push(argmax(&row));
            out.push(row);
        }
    }
    Ok(out)
}

impl Generation {
    fn push(&mut self, row: Vec<f32>) {
        self.tokens.push(argmax(&row));
        self.logits.push(row);
    }
}

/// Prefill, then one decode step per further token.
fn with_cache(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    total: usize,
    out: &mut Generation,
) -> Result<()> {
    let n = prompt.len();
    // Steps feed the tokens at positions n .. total−2 and cache each, so total−1 slots hold
    // everything (at least n: the prefill fits, and the spec is checked even when no step
    // runs).
    let capacity = total - 1;
    let step = graph(spec, &LowerOptions::decode(1, 1, capacity))?;
    let mut feed = inputs(&step, &[0]);
    // Cache input → the hook that reports its values.
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

    let prefill = graph(spec, &LowerOptions::new(1, n))?;
    let run0 = run(backend, &prefill, params, inputs(&prefill, prompt), &hooks)?;
    store(&mut feed, &caches, &run0, 0)?;
    out.push(last_row(&run0)?);
    for past in n..total - 1 {
        let last = *out.tokens.last().expect("pushed above");
        feed.insert("tokens".into(), Tensor::i32(&[1, 1], vec![last as i32]));
        feed.insert(DECODE_PAST.into(), Tensor::i32(&[1], vec![past as i32]));
        let r = backend
            .run(&step, &feed, params, &hooks)
            .map_err(|e| HfError::new(format!("{} backend: {e}", backend.name())))?;
        store(&mut feed, &caches, &r, past)?;
        out.push(last_row(&r)?);
    }
    Ok(())
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

/// The first index of the maximum.
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}
