//! Per-demonstration traces of a `segment_nll` objective (DR-ICL; kind `segments`: `loss`,
//! `weight` and `tokens` f32 `[N, K]`, demonstration k of held-out sequence n, `tokens` = 0
//! where a sequence has no demonstration k) and the per-index means the Curves panel draws.

use weft_rundir::Trace;

/// Means over the sequences that have each demonstration index.
#[derive(Clone, Debug, PartialEq)]
pub struct Segments {
    pub step: u64,
    /// Sequences the means are over.
    pub sequences: usize,
    /// Mean loss ℓ_k per demonstration index k (NaN where no sequence has one).
    pub loss: Vec<f64>,
    /// Mean detached weight per index (NaN where absent; `None` without a `weight` tensor).
    pub weight: Option<Vec<f64>>,
    /// Sequences that have demonstration k.
    pub count: Vec<usize>,
}

impl Segments {
    /// Reads a `segments` trace.
    pub fn new(t: &Trace) -> Result<Segments, String> {
        let get = |name: &str| {
            t.tensors
                .get(name)
                .map(|x| (x.to_f32_vec(), x.shape.clone()))
        };
        let (loss, shape) =
            get("loss").ok_or_else(|| format!("segments trace `{}` has no `loss`", t.name))?;
        let &[n, k] = shape.as_slice() else {
            return Err(format!(
                "`{}`: loss has shape {shape:?}, expected [N, K]",
                t.name
            ));
        };
        let same = |name: &str| -> Result<Option<Vec<f32>>, String> {
            match get(name) {
                Some((v, s)) if s == shape => Ok(Some(v)),
                Some((_, s)) => Err(format!(
                    "`{}`: {name} has shape {s:?}, loss {shape:?}",
                    t.name
                )),
                None => Ok(None),
            }
        };
        let weight = same("weight")?;
        // Without token counts a demonstration is present where its weight is positive.
        let present: Vec<bool> = match (same("tokens")?, &weight) {
            (Some(c), _) => c.iter().map(|&c| c > 0.0).collect(),
            (None, Some(w)) => w.iter().map(|&w| w > 0.0).collect(),
            (None, None) => vec![true; n * k],
        };
        let mean = |v: &[f32]| -> Vec<f64> {
            (0..k)
                .map(|j| {
                    let (s, c) = (0..n)
                        .filter(|&i| present[i * k + j])
                        .fold((0.0, 0), |(s, c), i| (s + v[i * k + j] as f64, c + 1));
                    if c == 0 {
                        f64::NAN
                    } else {
                        s / c as f64
                    }
                })
                .collect()
        };
        Ok(Segments {
            step: t.step,
            sequences: n,
            loss: mean(&loss),
            weight: weight.as_deref().map(mean),
            count: (0..k)
                .map(|j| (0..n).filter(|&i| present[i * k + j]).count())
                .collect(),
        })
    }
}
