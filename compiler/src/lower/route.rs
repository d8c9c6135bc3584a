//! Mixture-of-Modules routing (METHODS §6.2), dense-masked: every module of the pool runs
//! and its output is weighted by the router's renormalised top-k probabilities (0 for
//! modules not chosen; SKIP contributes nothing). Attention pools sum the chosen modules'
//! q/k/v, run one attention over all tokens, and weight each chosen module's W_O output.
//! Routers (and GRU state) are shared across `repeat` iterations. With `execution: sparse`,
//! FFN pools run only each token's chosen modules (`route_sparse`); attention pools mix
//! tokens across modules and always run dense.

use super::attention::{self, Heads};
use super::call;
use super::ffn;
use super::frame::{BalanceStats, Frame};
use super::hooks;
use super::manifest::RouteSite;
use super::route_sparse;
use super::{Lowerer, Result};
use crate::ir::{Init, ValueId};
use crate::IrError;
use weft_dsl::check::PoolInfo;
use weft_dsl::typed::{Attention, Execution, Route, Router, TensorCall};

/// A route call: the router's choice over the pool's modules (or SKIP), each module run on
/// its own input (`module_input` evaluates the pool's input expression in a module's frame)
/// and the chosen outputs mixed.
pub(crate) fn route(
    l: &mut Lowerer,
    f: &mut Frame,
    call: &Route,
    at: usize,
    module_input: &mut dyn FnMut(&mut Lowerer, &mut Frame) -> Result<ValueId>,
) -> Result<ValueId> {
    let pool_name = call.pool.clone();
    let pool = l
        .spec
        .model
        .pools
        .get(&pool_name)
        .cloned()
        .ok_or_else(|| IrError::Builder(format!("unknown pool `{pool_name}`")))?;
    let m = pool.size as usize;
    let k = m + usize::from(call.skip);
    let top_k = call.top_k.clamp(1, k);
    let r = f.route_site(at);
    let site = hooks::route(&f.prefix, r);
    let hp = hooks::route(&f.hook_prefix(), r);
    record_route(l, f, r, &site, &hp, call, &pool, top_k);
    let x = f.env["x"];

    let logits = router(l, f, r, &site, call.router, x, k)?;
    l.hook(&format!("{hp}.logits"), logits);
    let tau = call.temperature as f32;
    let inv_tau = l.g.scalar(1.0 / tau);
    let scaled = l.g.mul(logits, inv_tau)?;
    let probs = l.g.softmax(scaled, 2)?; // [B,T,k]
    l.hook(&format!("{hp}.probs"), probs);
    let chosen = l.g.topk_mask(probs, top_k, 2)?;
    l.hook(&format!("{hp}.choice"), chosen);
    let kept = l.g.mul(probs, chosen)?;
    let total = l.g.sum(kept, 2, true)?;
    let mut mix = l.g.div(kept, total)?;
    if call.straight_through {
        mix = l.g.straight_through(mix)?;
    }
    balance_stats(l, f, r, &site, call.balance, probs, k)?;

    let module = l
        .spec
        .model
        .resolve_tensor(&pool.module, &f.params, &["x"])
        .ok_or_else(|| {
            IrError::Builder(format!("cannot resolve the module of pool `{pool_name}`"))
        })?
        .map_err(super::unresolved)?;
    // Each module's own pre-norm (and anything else in its input expression).
    let mut inputs = Vec::with_capacity(m);
    let mut frames = Vec::with_capacity(m);
    for j in 0..m {
        let mut mf = Frame::new(
            f.layer,
            hooks::pool_module(&f.prefix, &pool_name, j),
            f.params.clone(),
            x,
        );
        mf.iteration = f.iteration;
        inputs.push(module_input(l, &mut mf)?);
        frames.push(mf);
    }
    let ffn = match &module {
        TensorCall::Attention(a) => {
            return attention_pool(l, f, &pool_name, a, &inputs, chosen, mix)
        }
        TensorCall::Mlp(m) => Some(ffn::Ffn::Mlp(m)),
        TensorCall::Swiglu(s) => Some(ffn::Ffn::Swiglu(s)),
        TensorCall::Norm(_) | TensorCall::Dropout { .. } | TensorCall::Route(_) => None,
    };
    if let (Execution::Sparse, Some(ffn)) = (call.execution, ffn) {
        return route_sparse::ffn_pool(l, &mut frames, ffn, &inputs, chosen, mix, top_k);
    }
    let mut out: Option<ValueId> = None;
    for (j, mf) in frames.iter_mut().enumerate() {
        let oj = call::apply(l, mf, &module, inputs[j])?;
        let w = l.g.slice(mix, 2, j, j + 1)?;
        let term = l.g.mul(oj, w)?;
        out = Some(match out {
            Some(a) => l.g.add(a, term)?,
            None => term,
        });
    }
    Ok(out.expect("m ≥ 1"))
}

/// An attention pool: the chosen modules' q/k/v summed, one attention over all tokens, each
/// chosen module's W_O output weighted by its routing weight.
fn attention_pool(
    l: &mut Lowerer,
    f: &mut Frame,
    pool_name: &str,
    module: &Attention,
    inputs: &[ValueId],
    chosen: ValueId,
    mix: ValueId,
) -> Result<ValueId> {
    let m = inputs.len();
    let sel =
        |l: &mut Lowerer, t: ValueId, j: usize| -> Result<ValueId> { l.g.slice(t, 2, j, j + 1) };
    {
        let h = Heads::of(l, module);
        let bias = module.bias;
        let (b, t) = (l.opts.batch, l.opts.seq);
        let (mut q, mut kk, mut v) = (None, None, None);
        for (j, &input) in inputs.iter().enumerate() {
            let msite = hooks::join(&hooks::pool_module(&f.prefix, pool_name, j), "attn");
            let (qj, kj, vj) = attention::project_qkv(l, &msite, &h, module.qkv_biased(), input)?;
            let s = sel(l, chosen, j)?; // [B,T,1] → [B,1,T,1]: unweighted sum of chosen modules
            let s = l.g.reshape(s, &[b, 1, t, 1])?;
            let (qj, kj, vj) = (l.g.mul(qj, s)?, l.g.mul(kj, s)?, l.g.mul(vj, s)?);
            q = Some(match q {
                Some(a) => l.g.add(a, qj)?,
                None => qj,
            });
            kk = Some(match kk {
                Some(a) => l.g.add(a, kj)?,
                None => kj,
            });
            v = Some(match v {
                Some(a) => l.g.add(a, vj)?,
                None => vj,
            });
        }
        let (q, kk, v) = (q.expect("m ≥ 1"), kk.expect("m ≥ 1"), v.expect("m ≥ 1"));
        let site0 = hooks::join(&hooks::pool_module(&f.prefix, pool_name, 0), "attn");
        let y = attention::core(l, f, &site0, module, &h, q, kk, v)?;
        if let Some(a) = l.manifest.attention.last_mut() {
            a.pool = Some(pool_name.to_string());
        }
        let mut out: Option<ValueId> = None;
        for j in 0..m {
            let msite = hooks::join(&hooks::pool_module(&f.prefix, pool_name, j), "attn");
            let oj = attention::output(l, f, &msite, module, &h, bias, y)?;
            let w = sel(l, mix, j)?;
            let term = l.g.mul(oj, w)?;
            out = Some(match out {
                Some(a) => l.g.add(a, term)?,
                None => term,
            });
        }
        Ok(out.expect("m ≥ 1"))
    }
}

/// Adds this iteration of route call `r` to the manifest.
#[allow(clippy::too_many_arguments)]
fn record_route(
    l: &mut Lowerer,
    f: &Frame,
    r: usize,
    site: &str,
    hp: &str,
    call: &Route,
    pool: &PoolInfo,
    top_k: usize,
) {
    let routes = &mut l.manifest.routes;
    if let Some(s) = routes
        .iter_mut()
        .find(|s| s.layer == f.layer && s.index == r)
    {
        if !s.hooks.iter().any(|h| h == hp) {
            s.hooks.push(hp.to_string());
        }
        return;
    }
    let module = match &pool.module.kind {
        weft_dsl::ast::ExprKind::Call { func, .. } => func.name.clone(),
        _ => String::new(),
    };
    routes.push(RouteSite {
        layer: f.layer,
        index: r,
        hooks: vec![hp.to_string()],
        params: site.to_string(),
        pool: call.pool.clone(),
        modules: pool.size.max(0) as usize,
        skip: call.skip,
        top_k,
        router: call.router,
        module,
    });
}

/// Router logits `[B,T,k]` on the raw residual stream: a 2-layer ReLU MLP, or a GRU cell
/// whose state persists across iterations of this call site.
fn router(
    l: &mut Lowerer,
    f: &mut Frame,
    r: usize,
    site: &str,
    router: Router,
    x: ValueId,
    k: usize,
) -> Result<ValueId> {
    let hidden = router.hidden();
    let d = l.cfg.dim;
    let (b, t) = (l.opts.batch, l.opts.seq);
    let lin = |l: &mut Lowerer, name: &str, x: ValueId, i: usize, o: usize| -> Result<ValueId> {
        let w = l.weight(&format!("{site}.router.{name}.weight"), &[i, o]);
        let bias = l.param(
            &format!("{site}.router.{name}.bias"),
            &[o],
            Init::Zeros,
            true,
        );
        let y = l.g.matmul(x, w)?;
        l.g.add(y, bias)
    };
    match router {
        Router::Mlp { .. } => {
            let h = lin(l, "w1", x, d, hidden)?;
            let h = l.g.relu(h)?;
            return lin(l, "w2", h, hidden, k);
        }
        Router::Gru { .. } => {}
    }
    let g = match f.router_state.get(&r) {
        Some(&g) => g,
        None => l.g.full(0.0, &[b, t, hidden])?,
    };
    let gi = lin(l, "input", x, d, 3 * hidden)?;
    let gh = lin(l, "state", g, hidden, 3 * hidden)?;
    let part =
        |l: &mut Lowerer, v: ValueId, j: usize| l.g.slice(v, 2, j * hidden, (j + 1) * hidden);
    let (ir, ii, inn) = (part(l, gi, 0)?, part(l, gi, 1)?, part(l, gi, 2)?);
    let (hr, hi, hn) = (part(l, gh, 0)?, part(l, gh, 1)?, part(l, gh, 2)?);
    let rg = l.g.add(ir, hr)?;
    let rg = l.g.sigmoid(rg)?;
    let z = l.g.add(ii, hi)?;
    let z = l.g.sigmoid(z)?;
    let rn = l.g.mul(rg, hn)?;
    let n = l.g.add(inn, rn)?;
    let n = l.g.tanh(n)?;
    let diff = l.g.sub(g, n)?;
    let zd = l.g.mul(z, diff)?;
    let g_new = l.g.add(n, zd)?;
    f.router_state.insert(r, g_new);
    lin(l, "out", g_new, hidden, k)
}

/// Accumulates Switch balance statistics: a second softmax over the routing scores, top-1
/// fractions f and mean probabilities P, averaged over every iteration's rows.
fn balance_stats(
    l: &mut Lowerer,
    f: &mut Frame,
    r: usize,
    site: &str,
    balance: f64,
    probs: ValueId,
    k: usize,
) -> Result<()> {
    let weight = balance as f32;
    if weight <= 0.0 {
        return Ok(());
    }
    let rows = l.opts.batch * l.opts.seq;
    let p2 = l.g.softmax(probs, 2)?;
    let p2 = l.g.reshape(p2, &[rows, k])?;
    let top1 = l.g.topk_mask(p2, 1, 1)?;
    let pm = l.g.mean(p2, 0, false)?;
    let fm = l.g.mean(top1, 0, false)?;
    let stats = match f.balance.remove(&r) {
        Some(s) => BalanceStats {
            p_sum: l.g.add(s.p_sum, pm)?,
            f_sum: l.g.add(s.f_sum, fm)?,
            count: s.count + 1,
            ..s
        },
        None => BalanceStats {
            name: format!("{site}.balance"),
            weight,
            choices: k,
            p_sum: pm,
            f_sum: fm,
            count: 1,
        },
    };
    f.balance.insert(r, stats);
    Ok(())
}

/// Turns each call site's statistics into an auxiliary loss `k · Σ_e f_e · P_e`.
pub(crate) fn finish_balance(l: &mut Lowerer, f: &mut Frame) -> Result<()> {
    let mut sites: Vec<_> = f.balance.drain().collect();
    sites.sort_by_key(|(r, _)| *r);
    for (_, s) in sites {
        let inv = l.g.scalar(1.0 / s.count as f32);
        let p = l.g.mul(s.p_sum, inv)?;
        let fr = l.g.mul(s.f_sum, inv)?;
        let fr = l.g.stop_gradient(fr)?;
        let prod = l.g.mul(p, fr)?;
        let sum = l.g.sum(prod, 0, false)?;
        let kk = l.g.scalar(s.choices as f32);
        let aux = l.g.mul(sum, kk)?;
        l.aux.push((s.name, s.weight, aux));
    }
    Ok(())
}
