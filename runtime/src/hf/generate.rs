//! Greedy decoding: append the most likely next token, `max_new` times.
//!
//! Two strategies that must give the same tokens:
//! - **uncached**: lower and run the whole sequence at its current length every step;
//! - **cached**: lower (and, on wgpu, compile) one graph at the final length once and reuse
//!   it every step, the not-yet-generated tail padded with token 0. Causal attention makes
//!   the logits at position p independent of the padding after p, so the reused graph gives
//!   the same next tokens. (A per-layer key/value cache that runs only the new token needs
//!   lowering support for a position offset and past k/v inputs; see docs/import.md.)

use super::{HfError, Result};
use crate::{Backend, HookSelection, ParamStore, Tensor};
use std::collections::HashMap;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

/// Greedy continuation of `prompt` (the new tokens only).
pub fn greedy(
    spec: &Checked,
    params: &ParamStore,
    backend: &dyn Backend,
    prompt: &[u32],
    max_new: usize,
    cached: bool,
) -> Result<Vec<u32>> {
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
    let total = (prompt.len() + max_new).min(ctx);
    if prompt.len() > ctx {
        return Err(HfError::new(format!(
            "the prompt has {} tokens, the model's ctx is {ctx}",
            prompt.len()
        )));
    }
    let mut tokens: Vec<u32> = prompt.to_vec();
    let fixed = if cached {
        let g = graph(spec, total)?;
        // Bidirectional attention would see the padding: fall back to exact recomputation.
        (!g.nodes
            .iter()
            .any(|n| format!("{:?}", n.op).contains("Bidirectional")))
        .then_some(g)
    } else {
        None
    };
    while tokens.len() < total {
        let next = match &fixed {
            Some(g) => {
                let mut padded = tokens.clone();
                padded.resize(total, 0);
                next_token(backend, g, params, &padded, tokens.len() - 1)?
            }
            None => next_token(
                backend,
                &graph(spec, tokens.len())?,
                params,
                &tokens,
                tokens.len() - 1,
            )?,
        };
        tokens.push(next);
    }
    Ok(tokens[prompt.len()..].to_vec())
}

fn graph(spec: &Checked, t: usize) -> Result<Graph> {
    lower(spec, &LowerOptions::new(1, t)).map_err(|e| HfError::new(format!("lowering: {e}")))
}

/// Argmax of the logits at position `at` (ties: the lowest id).
fn next_token(
    backend: &dyn Backend,
    g: &Graph,
    params: &ParamStore,
    tokens: &[u32],
    at: usize,
) -> Result<u32> {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let mut inputs = HashMap::from([("tokens".to_string(), Tensor::i32(&[1, tokens.len()], ids))]);
    for info in &g.inputs {
        inputs
            .entry(info.name.clone())
            .or_insert_with(|| Tensor::i32(&info.shape, vec![0; info.shape.iter().product()]));
    }
    let out = backend
        .run(g, &inputs, params, &HookSelection::None)
        .map_err(|e| HfError::new(format!("{} backend: {e}", backend.name())))?;
    let logits = out
        .get("logits")
        .ok_or_else(|| HfError::new("the graph has no logits"))?
        .to_f32_vec();
    let v = logits.len() / tokens.len();
    let row = &logits[at * v..(at + 1) * v];
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    Ok(best as u32)
}
