//! Sparse execution of a routed FFN pool (`route(..., execution: sparse)`, METHODS §6.2):
//! instead of running every module on every token and masking, each token's `top_k` chosen
//! modules run on that token only, so the work scales with `top_k`, not the pool size.
//!
//! Shapes stay static: there are exactly `N · top_k` (token, slot) pairs (`N = B·T`), slot
//! `s` of a token holding its `s`-th chosen choice (a cumulative sum over the choice mask
//! finds it). Each slot gathers its token's row of its module's input, gathers its module's
//! weights (stacked `[m, in, out]`), runs one batched row × matrix product per linear layer,
//! and is weighted by the module's routing weight; the `top_k` slots of a token are summed.
//! A SKIP slot points at module 0 with weight 0. Parameter names equal the dense path's, so
//! both executions share checkpoints and give the same function.
//!
//! The per-slot weight gather is a plain `Gather` (and its gradient a `ScatterAdd`): exact and
//! differentiable with the existing ops. On the GPU it is never stored: the matmul reads the
//! stacked weights in place through the gather (`codegen::fusion`'s selected weights, a
//! grouped matmul), and the weight gradient, a per-slot outer product, is a broadcast
//! multiply that fuses into the scatter-add back to each module.

use super::ffn::{activation, Ffn};
use super::frame::Frame;
use super::{Lowerer, Result};
use crate::ir::{CmpOp, DType, Init, ValueId};

/// The routed sum `Σ_chosen mix · module(input)` `[B,T,D]` of FFN modules (`mlp`,
/// `swiglu`) executed sparsely. `inputs[j]` is module `j`'s input `[B,T,D]`; `chosen` and
/// `mix` are the router's `[B,T,k]` choice mask and weights (SKIP last when present).
pub(crate) fn ffn_pool(
    l: &mut Lowerer,
    frames: &mut [Frame],
    module: Ffn,
    inputs: &[ValueId],
    chosen: ValueId,
    mix: ValueId,
    top_k: usize,
) -> Result<ValueId> {
    let m = inputs.len();
    let (b, t, d) = (l.opts.batch, l.opts.seq, l.cfg.dim);
    let (n, k) = (b * t, l.g.shape(chosen)[2]);
    let r = n * top_k;
    // sel[b,t,s,e] = 1 where choice e is the token's (s+1)-th chosen one.
    let c = l.g.cumsum(chosen, 2, false)?;
    let c = l.g.reshape(c, &[b, t, 1, k])?;
    let ch = l.g.reshape(chosen, &[b, t, 1, k])?;
    let rank = l.g.iota(&[1, 1, top_k, 1], 2, DType::F32)?;
    let one = l.g.scalar(1.0);
    let rank = l.g.add(rank, one)?;
    let hit = l.g.compare(CmpOp::Eq, c, rank)?;
    let sel = l.g.mul(hit, ch)?;
    let sel = l.g.slice(sel, 3, 0, m)?; // modules only: a SKIP slot selects nothing
                                        // Module index and routing weight of each slot [B,T,top_k].
    let idx = l.g.iota(&[1, 1, 1, m], 3, DType::F32)?;
    let e = l.g.mul(sel, idx)?;
    let e = l.g.sum(e, 3, false)?;
    let mix = l.g.reshape(mix, &[b, t, 1, k])?;
    let mix = l.g.slice(mix, 3, 0, m)?;
    let w = l.g.mul(sel, mix)?;
    let w = l.g.sum(w, 3, false)?;
    // Row of the stacked inputs [m·N, D] each slot reads: e·N + token.
    let tok = l.g.iota(&[n, top_k], 0, DType::F32)?;
    let tok = l.g.reshape(tok, &[b, t, top_k])?;
    let nn = l.g.scalar(n as f32);
    let row = l.g.mul(e, nn)?;
    let row = l.g.add(row, tok)?;
    let row = l.g.cast(row, DType::I32)?;
    let row = l.g.reshape(row, &[r])?;
    let module_of = l.g.cast(e, DType::I32)?;
    let module_of = l.g.reshape(module_of, &[r])?;
    let mut rows = Vec::with_capacity(m);
    for &x in inputs {
        rows.push(l.g.reshape(x, &[1, n, d])?);
    }
    let stack = l.g.concat(&rows, 0)?;
    let stack = l.g.reshape(stack, &[m * n, d])?;
    let xs = l.g.gather(stack, row)?;
    let xs = l.g.reshape(xs, &[r, 1, d])?;

    let sites: Vec<String> = frames.iter_mut().map(|f| f.site("mlp")).collect();
    let mut p = Slots {
        sites: &sites,
        module_of,
        r,
    };
    let hidden = module.hidden();
    let y = match module {
        Ffn::Swiglu(_) => {
            let gate = p.linear(l, "w_gate", xs, d, hidden)?;
            let gate = l.g.silu(gate)?;
            let up = p.linear(l, "w_up", xs, d, hidden)?;
            let h = l.g.mul(gate, up)?;
            p.linear(l, "w_down", h, hidden, d)?
        }
        Ffn::Mlp(mlp) => {
            let mut h = p.linear(l, "w1", xs, d, hidden)?;
            if mlp.bias {
                h = p.bias(l, "b1", h, hidden)?;
            }
            h = activation(l, mlp.activation, h)?;
            let mut y = p.linear(l, "w2", h, hidden, d)?;
            if mlp.bias {
                y = p.bias(l, "b2", y, d)?;
            }
            y
        }
    };
    let w = l.g.reshape(w, &[r, 1, 1])?;
    let y = l.g.mul(y, w)?;
    let y = l.g.reshape(y, &[b, t, top_k, d])?;
    l.g.sum(y, 2, false)
}

/// Per-slot parameter selection over the pool's modules.
struct Slots<'s> {
    sites: &'s [String],
    /// Module index of each slot, i32 `[R]`.
    module_of: ValueId,
    r: usize,
}

impl Slots<'_> {
    /// Every module's parameter `{site}.{name}`, stacked on a new leading axis.
    fn stacked(&self, l: &mut Lowerer, name: &str, shape: &[usize], bias: bool) -> Result<ValueId> {
        let mut parts = Vec::with_capacity(self.sites.len());
        for site in self.sites {
            let full = format!("{site}.{name}");
            let p = if bias {
                l.param(&full, shape, Init::Zeros, true)
            } else {
                l.weight(&full, shape)
            };
            let mut one = vec![1];
            one.extend_from_slice(shape);
            parts.push(l.g.reshape(p, &one)?);
        }
        l.g.concat(&parts, 0)
    }

    /// `x[s] @ W_{module(s)}` for `x` `[R,1,i]` → `[R,1,o]`.
    fn linear(
        &mut self,
        l: &mut Lowerer,
        name: &str,
        x: ValueId,
        i: usize,
        o: usize,
    ) -> Result<ValueId> {
        let w = self.stacked(l, name, &[i, o], false)?;
        let w = l.g.gather(w, self.module_of)?; // [R, i, o]
        l.g.matmul(x, w)
    }

    /// `x[s] + b_{module(s)}` for `x` `[R,1,o]`.
    fn bias(&mut self, l: &mut Lowerer, name: &str, x: ValueId, o: usize) -> Result<ValueId> {
        let b = self.stacked(l, name, &[o], true)?;
        let b = l.g.gather(b, self.module_of)?; // [R, o]
        let b = l.g.reshape(b, &[self.r, 1, o])?;
        l.g.add(x, b)
    }
}
