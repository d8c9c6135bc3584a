//! Weights against the parameters a spec lowers to: every parameter present, with its shape.

use super::{HfError, Result};
use crate::Tensor;
use std::collections::BTreeMap;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

/// Name → shape of every parameter of the spec (parameters do not depend on batch or
/// length, so a 1×1 graph is enough).
pub fn param_shapes(spec: &Checked) -> Result<BTreeMap<String, Vec<usize>>> {
    let g = lower(spec, &LowerOptions::new(1, 1))
        .map_err(|e| HfError::new(format!("lowering the spec: {e}")))?;
    Ok(g.params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect())
}

/// Checks `weights` against `shapes`: a missing or extra tensor, or a shape mismatch, is an
/// error naming the tensor (and `origin`, e.g. the HF tensor it came from) and both shapes.
pub fn check_weights(
    shapes: &BTreeMap<String, Vec<usize>>,
    weights: &BTreeMap<String, Tensor>,
    origin: &dyn Fn(&str) -> String,
) -> Result<()> {
    for (name, want) in shapes {
        match weights.get(name) {
            None => {
                return Err(HfError::new(format!(
                    "missing tensor `{name}` (expected shape {want:?}){}",
                    origin(name)
                )))
            }
            Some(t) if &t.shape != want => {
                return Err(HfError::new(format!(
                    "tensor `{name}`{}: expected shape {want:?}, found {:?}",
                    origin(name),
                    t.shape
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = weights.keys().find(|k| !shapes.contains_key(*k)) {
        return Err(HfError::new(format!(
            "tensor `{extra}` is not a parameter of the spec"
        )));
    }
    Ok(())
}
