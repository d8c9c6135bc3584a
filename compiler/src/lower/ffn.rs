//! Norms and feed-forward networks.

use super::{Lowerer, Result};
use crate::ir::{Init, ValueId};
use weft_dsl::check::value::CallValue;

/// `rms_norm` or `layer_norm` with parameters `{site}.weight` (and `.bias`).
pub(crate) fn norm(
    l: &mut Lowerer,
    kind: &str,
    site: &str,
    x: ValueId,
    eps: Option<f64>,
) -> Result<ValueId> {
    let d = l.dim("dim");
    let w = l.param(&format!("{site}.weight"), &[d], Init::Ones, true);
    if kind == "layer_norm" {
        let b = l.param(&format!("{site}.bias"), &[d], Init::Zeros, true);
        l.g.layer_norm(x, w, b, eps.unwrap_or(1e-5) as f32)
    } else {
        l.g.rms_norm(x, w, eps.unwrap_or(1e-6) as f32)
    }
}

/// `mlp` (`w1`, `b1`, `w2`, `b2`) or `swiglu` (`w_gate`, `w_up`, `w_down`) under `site`.
pub(crate) fn feed_forward(
    l: &mut Lowerer,
    site: &str,
    call: &CallValue,
    x: ValueId,
) -> Result<ValueId> {
    let d = l.dim("dim");
    let hidden = call.int("hidden").unwrap_or(4 * d as i64).max(1) as usize;
    if call.name == "swiglu" {
        let wg = l.weight(&format!("{site}.w_gate"), &[d, hidden]);
        let wu = l.weight(&format!("{site}.w_up"), &[d, hidden]);
        let wd = l.weight(&format!("{site}.w_down"), &[hidden, d]);
        let gate = l.g.matmul(x, wg)?;
        let gate = l.g.silu(gate)?;
        let up = l.g.matmul(x, wu)?;
        let h = l.g.mul(gate, up)?;
        return l.g.matmul(h, wd);
    }
    let bias = call.bool("bias").unwrap_or(true);
    let w1 = l.weight(&format!("{site}.w1"), &[d, hidden]);
    let w2 = l.weight(&format!("{site}.w2"), &[hidden, d]);
    let mut h = l.g.matmul(x, w1)?;
    if bias {
        let b1 = l.param(&format!("{site}.b1"), &[hidden], Init::Zeros, true);
        h = l.g.add(h, b1)?;
    }
    h = match call.name_arg("activation").unwrap_or("gelu") {
        "relu" => l.g.relu(h)?,
        "silu" => l.g.silu(h)?,
        _ => l.g.gelu(h)?,
    };
    let mut y = l.g.matmul(h, w2)?;
    if bias {
        let b2 = l.param(&format!("{site}.b2"), &[d], Init::Zeros, true);
        y = l.g.add(y, b2)?;
    }
    Ok(y)
}
