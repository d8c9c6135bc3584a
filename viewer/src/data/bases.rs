//! MoICE base-routing traces (kind `base_routing`: `choice` i32 `[B, H, T, K]` base index per
//! top-k slot by decreasing weight, `weight` f32 of the same shape, optional `probs`
//! `[B, H, T, N]`, `tokens`; attrs `layer`, `bases`) and the per-base usage the routing panel
//! draws, and a cache of them so a panel does not re-read a trace each frame.

use super::{TraceEntry, TraceStore};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use weft_rundir::Trace;

/// One layer's base choices.
#[derive(Clone, Debug)]
pub struct BaseChoices {
    pub name: String,
    pub layer: Option<usize>,
    pub batch: usize,
    pub heads: usize,
    pub tokens: usize,
    /// Slots per (token, head): the router's top-k.
    pub k: usize,
    /// Bases the router chooses among.
    pub n_bases: usize,
    /// The base values (attrs `bases`), when the writer knew them.
    pub bases: Option<Vec<f64>>,
    choice: Vec<i32>,
    weight: Option<Vec<f32>>,
    token_ids: Option<Vec<i32>>,
    token_text: Option<Vec<String>>,
    /// [`BaseChoices::usage`] and [`BaseChoices::head_usage`], counted once on reading.
    usage: Vec<f32>,
    head_usage: Vec<Vec<f32>>,
}

impl BaseChoices {
    /// Reads a `base_routing` trace; the shapes must agree.
    pub fn new(t: &Trace) -> Result<BaseChoices, String> {
        let c = t
            .tensors
            .get("choice")
            .ok_or_else(|| format!("base routing trace `{}` has no `choice`", t.name))?;
        let choice = c
            .as_i32()
            .ok_or_else(|| format!("`{}`: choice is not i32", t.name))?
            .to_vec();
        let &[batch, heads, tokens, k] = c.shape.as_slice() else {
            return Err(format!(
                "`{}`: choice has shape {:?}, expected [B, H, T, K]",
                t.name, c.shape
            ));
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
        let bases: Option<Vec<f64>> = t
            .attrs
            .get("bases")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_f64).collect());
        let from_probs = t.tensors.get("probs").and_then(|p| p.shape.last().copied());
        let seen = choice.iter().copied().max().unwrap_or(-1) + 1;
        let n_bases = [
            bases.as_ref().map_or(0, Vec::len),
            from_probs.unwrap_or(0),
            seen.max(0) as usize,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let token_ids = t
            .tensors
            .get("tokens")
            .and_then(|x| x.as_i32())
            .filter(|ids| ids.len() == batch * tokens)
            .map(<[i32]>::to_vec);
        let token_text = t
            .attrs
            .get("token_text")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|v| v.len() == batch * tokens || v.len() == tokens);
        let mut c = BaseChoices {
            name: t.name.clone(),
            layer: t
                .attrs
                .get("layer")
                .and_then(Value::as_u64)
                .map(|l| l as usize),
            batch,
            heads,
            tokens,
            k,
            n_bases,
            bases: bases.filter(|b| b.len() == n_bases),
            choice,
            weight,
            token_ids,
            token_text,
            usage: Vec::new(),
            head_usage: Vec::new(),
        };
        c.usage = c.usage_where(|_| true);
        c.head_usage = (0..heads)
            .map(|h| c.usage_where(|i| (i / (tokens * k).max(1)) % heads.max(1) == h))
            .collect();
        Ok(c)
    }

    fn at(&self, b: usize, h: usize, t: usize) -> std::ops::Range<usize> {
        let start = ((b * self.heads + h) * self.tokens + t) * self.k;
        start..start + self.k
    }

    /// The chosen bases of (row `b`, head `h`, token `t`) by decreasing weight; −1 = none.
    pub fn choices(&self, b: usize, h: usize, t: usize) -> &[i32] {
        self.choice.get(self.at(b, h, t)).unwrap_or(&[])
    }

    /// Their mixing weights, when recorded.
    pub fn weights(&self, b: usize, h: usize, t: usize) -> Option<&[f32]> {
        self.weight.as_ref()?.get(self.at(b, h, t))
    }

    /// How base `i` is named in legends: its value (`10000`), else its index (`#2`).
    pub fn base_label(&self, i: usize) -> String {
        match self.bases.as_ref().and_then(|b| b.get(i)) {
            Some(v) => crate::data::programs::fmt_f64(*v),
            None => format!("#{i}"),
        }
    }

    /// Text of token `t` in row `b`: the run's decoded text when recorded, else the id.
    pub fn token_label(&self, b: usize, t: usize) -> String {
        if let Some(text) = &self.token_text {
            let i = if text.len() == self.tokens {
                t
            } else {
                b * self.tokens + t
            };
            if let Some(s) = text.get(i) {
                return s.clone();
            }
        }
        self.token_ids
            .as_ref()
            .and_then(|ids| ids.get(b * self.tokens + t))
            .map_or_else(|| t.to_string(), |&id| super::attention::token_label(id))
    }

    /// Share of all (row, head, token, slot) choices that picked each base; sums to 1 over
    /// the chosen slots (empty slots are not counted).
    pub fn usage(&self) -> Vec<f32> {
        self.usage.clone()
    }

    /// The same for one head.
    pub fn head_usage(&self, head: usize) -> Vec<f32> {
        self.head_usage
            .get(head)
            .cloned()
            .unwrap_or_else(|| vec![0.0; self.n_bases])
    }

    fn usage_where(&self, keep: impl Fn(usize) -> bool) -> Vec<f32> {
        let mut counts = vec![0usize; self.n_bases];
        for (i, &c) in self.choice.iter().enumerate() {
            if c >= 0 && keep(i) {
                if let Some(x) = counts.get_mut(c as usize) {
                    *x += 1;
                }
            }
        }
        let n: usize = counts.iter().sum();
        counts.iter().map(|&c| c as f32 / n.max(1) as f32).collect()
    }
}

/// [`BaseChoices`] by trace file, read once (a panel showing 12 layers would otherwise rebuild
/// them every frame). Only successes are kept: a trace that failed to load is retried through
/// the [`TraceStore`], which remembers its own failures.
#[derive(Default)]
pub struct BasesCache {
    choices: HashMap<String, Arc<BaseChoices>>,
}

impl BasesCache {
    pub fn get(
        &mut self,
        store: &mut TraceStore,
        e: &TraceEntry,
    ) -> Result<Arc<BaseChoices>, String> {
        if let Some(c) = self.choices.get(&e.file) {
            return Ok(c.clone());
        }
        let c = Arc::new(BaseChoices::new(&*store.get(e)?)?);
        if self.choices.len() > 256 {
            self.choices.clear();
        }
        self.choices.insert(e.file.clone(), c.clone());
        Ok(c)
    }
}
