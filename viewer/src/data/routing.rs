//! Routing traces (`choice` i32 `[I?, B, T, K]`, −1 = SKIP; optional `weight`) and what the
//! MoM panel derives from them: per-token paths, module utilisation, effective depth.

use serde_json::Value;
use std::sync::Arc;
use weft_rundir::Trace;

/// One routed pool's choices over all iterations.
#[derive(Clone, Debug)]
pub struct Routing {
    pub name: String,
    /// The pool's name (attrs `pool`), else the trace name.
    pub pool: String,
    pub layer: Option<usize>,
    /// Modules in the pool (attrs `modules`: a count or a list of names).
    pub modules: usize,
    pub module_names: Vec<String>,
    pub iterations: usize,
    pub batch: usize,
    pub tokens: usize,
    /// Slots per token (top-k).
    pub k: usize,
    choice: Vec<i32>,
    weight: Option<Vec<f32>>,
    token_ids: Option<Vec<i32>>,
}

/// The SKIP choice.
pub const SKIP: i32 = -1;

impl Routing {
    /// Reads a routing trace; the leading iterations axis is optional.
    pub fn new(t: &Trace) -> Result<Routing, String> {
        let c = t
            .tensors
            .get("choice")
            .ok_or_else(|| format!("routing trace `{}` has no `choice`", t.name))?;
        let choice = c
            .as_i32()
            .ok_or_else(|| format!("`{}`: choice is not i32", t.name))?
            .to_vec();
        let (iterations, batch, tokens, k) = match c.shape.as_slice() {
            &[b, t, k] => (1, b, t, k),
            &[i, b, t, k] => (i, b, t, k),
            s => {
                return Err(format!(
                    "`{}`: choice has shape {s:?}, expected [B, T, K] or [I, B, T, K]",
                    t.name
                ))
            }
        };
        let weight = match t.tensors.get("weight") {
            Some(w) if w.shape == c.shape => Some(w.to_f32_vec()),
            Some(w) => {
                return Err(format!(
                    "`{}`: weight has shape {:?}, choice {:?}",
                    t.name, w.shape, c.shape
                ))
            }
            None => None,
        };
        let token_ids = t
            .tensors
            .get("tokens")
            .and_then(|x| x.as_i32())
            .filter(|ids| ids.len() == batch * tokens)
            .map(<[i32]>::to_vec);
        let (mut modules, mut module_names) = (0, Vec::new());
        match t.attrs.get("modules") {
            Some(Value::Number(n)) => modules = n.as_u64().unwrap_or(0) as usize,
            Some(Value::Array(a)) => {
                module_names = a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
                    .collect();
                modules = a.len();
            }
            _ => {}
        }
        let seen = choice.iter().copied().max().unwrap_or(-1) + 1;
        modules = modules.max(seen.max(0) as usize);
        if module_names.len() < modules {
            module_names = (0..modules).map(|m| m.to_string()).collect();
        }
        Ok(Routing {
            name: t.name.clone(),
            pool: t
                .attrs
                .get("pool")
                .and_then(Value::as_str)
                .unwrap_or(&t.name)
                .to_string(),
            layer: t
                .attrs
                .get("layer")
                .and_then(Value::as_u64)
                .map(|l| l as usize),
            modules,
            module_names,
            iterations,
            batch,
            tokens,
            k,
            choice,
            weight,
            token_ids,
        })
    }

    fn at(&self, it: usize, b: usize, t: usize) -> std::ops::Range<usize> {
        let start = ((it * self.batch + b) * self.tokens + t) * self.k;
        start..start + self.k
    }

    /// The K choices of token `t` (batch row `b`) at iteration `it`; −1 is SKIP.
    pub fn choices(&self, it: usize, b: usize, t: usize) -> &[i32] {
        self.choice.get(self.at(it, b, t)).unwrap_or(&[])
    }

    /// The routing weights of those choices, when recorded.
    pub fn weights(&self, it: usize, b: usize, t: usize) -> Option<&[f32]> {
        self.weight.as_ref()?.get(self.at(it, b, t))
    }

    pub fn token_ids(&self, b: usize) -> Option<&[i32]> {
        self.token_ids
            .as_ref()?
            .get(b * self.tokens..(b + 1) * self.tokens)
    }

    /// Share of (token, slot) choices per module at iteration `it`, over the whole batch;
    /// the last entry is SKIP. Sums to 1.
    pub fn utilisation(&self, it: usize) -> Vec<f32> {
        let mut counts = vec![0usize; self.modules + 1];
        let n = self.batch * self.tokens * self.k;
        let start = it * n;
        for &c in self.choice.get(start..start + n).unwrap_or(&[]) {
            let slot = if c < 0 { self.modules } else { c as usize };
            if let Some(x) = counts.get_mut(slot) {
                *x += 1;
            }
        }
        counts.iter().map(|&c| c as f32 / n.max(1) as f32).collect()
    }
}

/// One column of the trellis: a pool at one iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Index into [`RoutedLayer::pools`].
    pub pool: usize,
    pub iteration: usize,
}

/// Every routed pool of one layer at one step, in execution order: for each iteration,
/// the pools in the order their traces are named (route0 = attention, route1 = FFN, ...).
#[derive(Clone, Debug)]
pub struct RoutedLayer {
    pub pools: Vec<Arc<Routing>>,
    pub stages: Vec<Stage>,
}

impl RoutedLayer {
    pub fn new(pools: Vec<Arc<Routing>>) -> Self {
        let iterations = pools.iter().map(|p| p.iterations).max().unwrap_or(0);
        let stages = (0..iterations)
            .flat_map(|iteration| {
                pools
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| iteration < p.iterations)
                    .map(move |(pool, _)| Stage { pool, iteration })
            })
            .collect();
        RoutedLayer { pools, stages }
    }

    /// Tokens per row and batch rows (of the first pool; all pools route the same tokens).
    pub fn tokens(&self) -> usize {
        self.pools.first().map_or(0, |p| p.tokens)
    }

    pub fn batch(&self) -> usize {
        self.pools.first().map_or(0, |p| p.batch)
    }

    pub fn choices(&self, s: Stage, b: usize, t: usize) -> &[i32] {
        self.pools[s.pool].choices(s.iteration, b, t)
    }

    /// Modules token `t` ran through: stages where at least one slot chose a module.
    pub fn effective_depth(&self, b: usize, t: usize) -> usize {
        self.stages
            .iter()
            .filter(|&&s| self.choices(s, b, t).iter().any(|&c| c != SKIP))
            .count()
    }

    /// Token ids of row `b`, from whichever pool recorded them.
    pub fn token_ids(&self, b: usize) -> Option<&[i32]> {
        self.pools.iter().find_map(|p| p.token_ids(b))
    }
}
