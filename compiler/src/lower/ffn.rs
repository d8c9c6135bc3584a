//! Norms and feed-forward networks.

use super::{Lowerer, Result};
use crate::ir::{Init, ValueId};
use weft_dsl::typed::{Activation, Mlp, Norm, NormKind, Swiglu};

/// `rms_norm` or `layer_norm` with parameters `{site}.weight` (and `.bias`).
pub(crate) fn norm(l: &mut Lowerer, n: &Norm, site: &str, x: ValueId) -> Result<ValueId> {
    let d = l.cfg.dim;
    let w = l.param(&format!("{site}.weight"), &[d], Init::Ones, true);
    match n.kind {
        NormKind::LayerNorm => {
            let b = l.param(&format!("{site}.bias"), &[d], Init::Zeros, true);
            l.g.layer_norm(x, w, b, n.eps as f32)
        }
        NormKind::RmsNorm => l.g.rms_norm(x, w, n.eps as f32),
    }
}

/// A feed-forward module: `mlp` or `swiglu`.
#[derive(Clone, Copy)]
pub(crate) enum Ffn<'a> {
    Mlp(&'a Mlp),
    Swiglu(&'a Swiglu),
}

impl Ffn<'_> {
    pub fn hidden(self) -> usize {
        match self {
            Ffn::Mlp(m) => m.hidden,
            Ffn::Swiglu(s) => s.hidden,
        }
    }
}

/// `mlp` (`w1`, `b1`, `w2`, `b2`) or `swiglu` (`w_gate`, `w_up`, `w_down`) under `site`.
pub(crate) fn feed_forward(l: &mut Lowerer, site: &str, ffn: Ffn, x: ValueId) -> Result<ValueId> {
    let d = l.cfg.dim;
    let hidden = ffn.hidden();
    let m = match ffn {
        Ffn::Swiglu(_) => {
            let wg = l.weight(&format!("{site}.w_gate"), &[d, hidden]);
            let wu = l.weight(&format!("{site}.w_up"), &[d, hidden]);
            let wd = l.weight(&format!("{site}.w_down"), &[hidden, d]);
            let gate = l.g.matmul(x, wg)?;
            let gate = l.g.silu(gate)?;
            let up = l.g.matmul(x, wu)?;
            let h = l.g.mul(gate, up)?;
            return l.g.matmul(h, wd);
        }
        Ffn::Mlp(m) => m,
    };
    let w1 = l.weight(&format!("{site}.w1"), &[d, hidden]);
    let w2 = l.weight(&format!("{site}.w2"), &[hidden, d]);
    let mut h = l.g.matmul(x, w1)?;
    if m.bias {
        let b1 = l.param(&format!("{site}.b1"), &[hidden], Init::Zeros, true);
        h = l.g.add(h, b1)?;
    }
    h = activation(l, m.activation, h)?;
    let mut y = l.g.matmul(h, w2)?;
    if m.bias {
        let b2 = l.param(&format!("{site}.b2"), &[d], Init::Zeros, true);
        y = l.g.add(y, b2)?;
    }
    Ok(y)
}

/// An `mlp` activation.
pub(crate) fn activation(l: &mut Lowerer, a: Activation, h: ValueId) -> Result<ValueId> {
    match a {
        Activation::Relu => l.g.relu(h),
        Activation::Silu => l.g.silu(h),
        Activation::Gelu => l.g.gelu(h),
    }
}
