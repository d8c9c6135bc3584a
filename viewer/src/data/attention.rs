//! Attention traces (`pattern` `[B, H, Tq, Tk]`, optional `tokens` `[B, T]`) with the
//! per-head statistics the Attention panel shows, computed once per trace.

use std::collections::HashMap;
use std::sync::Arc;
use weft_rundir::Trace;

use super::{TraceEntry, TraceStore};

/// Statistics of one head's map.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeadStats {
    /// Largest |w|: the colour scale of the map.
    pub max_abs: f32,
    /// Share of the attention mass (Σ|w|) carried by negative weights; 0 for softmax heads.
    pub negative_mass: f32,
    pub min: f32,
    pub max: f32,
}

/// One layer's attention maps.
#[derive(Clone, Debug)]
pub struct AttentionMaps {
    trace: Arc<Trace>,
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
    /// `[b * heads + h]`.
    pub stats: Vec<HeadStats>,
}

impl AttentionMaps {
    /// Checks the trace's shapes and computes per-head statistics.
    pub fn new(trace: Arc<Trace>) -> Result<Self, String> {
        let p = trace
            .tensors
            .get("pattern")
            .ok_or_else(|| format!("attention trace `{}` has no `pattern`", trace.name))?;
        let data = p
            .as_f32()
            .ok_or_else(|| format!("`{}`: pattern is not f32", trace.name))?;
        let &[batch, heads, queries, keys] = p.shape.as_slice() else {
            return Err(format!(
                "`{}`: pattern has shape {:?}, expected [B, H, Tq, Tk]",
                trace.name, p.shape
            ));
        };
        let stats = data
            .chunks_exact((queries * keys).max(1))
            .map(head_stats)
            .collect();
        Ok(AttentionMaps {
            trace,
            batch,
            heads,
            queries,
            keys,
            stats,
        })
    }

    /// The `[Tq, Tk]` map of head `h` in batch row `b` (row-major, query-major).
    pub fn map(&self, b: usize, h: usize) -> &[f32] {
        let n = self.queries * self.keys;
        let data = self.trace.tensors["pattern"].as_f32().unwrap_or(&[]);
        let start = (b * self.heads + h) * n;
        data.get(start..start + n).unwrap_or(&[])
    }

    pub fn stats(&self, b: usize, h: usize) -> HeadStats {
        self.stats
            .get(b * self.heads + h)
            .copied()
            .unwrap_or_default()
    }

    /// Token ids of batch row `b`, when the trace recorded them.
    pub fn tokens(&self, b: usize) -> Option<Vec<i32>> {
        let t = self.trace.tensors.get("tokens")?;
        let ids = t.as_i32()?;
        let len = *t.shape.last()?;
        ids.get(b * len..(b + 1) * len).map(<[i32]>::to_vec)
    }

    /// The layer, from the trace's attrs or its name.
    pub fn layer(&self) -> Option<usize> {
        self.trace
            .attrs
            .get("layer")
            .and_then(|l| l.as_u64())
            .map(|l| l as usize)
    }

    /// Whether any weight is negative (a signed, Cog, layer).
    pub fn is_signed(&self) -> bool {
        self.stats.iter().any(|s| s.min < 0.0)
    }
}

fn head_stats(m: &[f32]) -> HeadStats {
    let (mut neg, mut total) = (0.0f64, 0.0f64);
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &w in m {
        if !w.is_finite() {
            continue;
        }
        total += w.abs() as f64;
        if w < 0.0 {
            neg -= w as f64;
        }
        min = min.min(w);
        max = max.max(w);
    }
    if min > max {
        (min, max) = (0.0, 0.0);
    }
    HeadStats {
        max_abs: min.abs().max(max.abs()),
        negative_mass: if total > 0.0 {
            (neg / total) as f32
        } else {
            0.0
        },
        min,
        max,
    }
}

/// [`AttentionMaps`] per trace file, built on first use (statistics cost one pass over
/// `B·H·T²` weights, too much to repeat every frame).
#[derive(Debug, Default)]
pub struct AttentionCache {
    maps: HashMap<String, Result<Arc<AttentionMaps>, String>>,
}

impl AttentionCache {
    pub fn get(
        &mut self,
        store: &mut TraceStore,
        e: &TraceEntry,
    ) -> Result<Arc<AttentionMaps>, String> {
        if let Some(m) = self.maps.get(&e.file) {
            return m.clone();
        }
        let m = store.get(e).and_then(AttentionMaps::new).map(Arc::new);
        if self.maps.len() > 256 {
            self.maps.clear();
        }
        self.maps.insert(e.file.clone(), m.clone());
        m
    }
}

/// A short label for a token id: the character for printable byte-level ids, else `#id`.
pub fn token_label(id: i32) -> String {
    match id {
        32 => "·".into(),
        10 => "\\n".into(),
        33..=126 => char::from(id as u8).to_string(),
        _ => format!("#{id}"),
    }
}
