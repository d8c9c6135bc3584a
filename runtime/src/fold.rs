//! Applies gain folds to weights: the runtime half of [`weft_compiler::passes::fold_gains`].

use crate::{ParamStore, RunError, Tensor};
use weft_compiler::passes::GainFold;

/// Scales each folded head's rows of W_O by its gain and removes the gain parameters.
pub fn apply_gain_folds(params: &mut ParamStore, folds: &[GainFold]) -> Result<(), RunError> {
    for f in folds {
        let missing = |name: &str| RunError::MissingParam {
            name: name.to_string(),
        };
        let gain = params
            .get(&f.gain)
            .ok_or_else(|| missing(&f.gain))?
            .to_f32_vec();
        let wo = params.get(&f.wo).ok_or_else(|| missing(&f.wo))?;
        let (rows, cols) = (wo.shape[0], wo.shape.get(1).copied().unwrap_or(1));
        let per_head = rows / gain.len().max(1);
        let mut w = wo.to_f32_vec();
        for (r, row) in w.chunks_mut(cols).enumerate() {
            let g = gain[r / per_head];
            row.iter_mut().for_each(|x| *x *= g);
        }
        let shape = wo.shape.clone();
        params.insert(f.wo.clone(), Tensor::f32(&shape, w));
        params.remove(&f.gain);
    }
    Ok(())
}
