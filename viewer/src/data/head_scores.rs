//! `head_scores` traces: one number per (layer, head), possibly recorded over training.

use weft_rundir::Trace;

/// An `[L, H]` table of one score at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadTable {
    /// The score's name (attrs `score`, else the trace name).
    pub score: String,
    pub step: u64,
    pub layers: usize,
    pub heads: usize,
    /// Row-major `[layer][head]`.
    pub values: Vec<f32>,
}

impl HeadTable {
    pub fn new(t: &Trace) -> Result<HeadTable, String> {
        let s = t
            .tensors
            .get("scores")
            .ok_or_else(|| format!("head_scores trace `{}` has no `scores`", t.name))?;
        let (layers, heads) = match s.shape.as_slice() {
            &[l, h] => (l, h),
            &[h] => (1, h),
            other => {
                return Err(format!(
                    "`{}`: scores has shape {other:?}, expected [L, H]",
                    t.name
                ))
            }
        };
        Ok(HeadTable {
            score: t
                .attrs
                .get("score")
                .and_then(|v| v.as_str())
                .unwrap_or(&t.name)
                .to_string(),
            step: t.step,
            layers,
            heads,
            values: s.to_f32_vec(),
        })
    }

    pub fn get(&self, layer: usize, head: usize) -> f32 {
        self.values
            .get(layer * self.heads + head)
            .copied()
            .unwrap_or(f32::NAN)
    }

    /// (min, max) over finite values; (0, 0) when there are none.
    pub fn range(&self) -> (f32, f32) {
        let finite = self.values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if lo > hi {
            (0.0, 0.0)
        } else {
            (lo, hi)
        }
    }
}
