//! Mixture-of-Modules routing (METHODS §6.2), dense-masked: every module of the pool runs
//! and its output is weighted by the router's renormalised top-k probabilities (0 for
//! modules not chosen; SKIP contributes nothing). Attention pools sum the chosen modules'
//! q/k/v, run one attention over all tokens, and weight each chosen module's W_O output.
//! Routers (and GRU state) are shared across `repeat` iterations. With `execution: sparse`,
//! FFN pools run only each token's chosen modules (`route_sparse`); attention pools mix
//! tokens across modules and always run dense.

use super::attention::{self, Heads};
use super::block::{self, Frame};
use super::route_sparse;
use super::{Lowerer, Result};
use crate::ir::{Init, ValueId};
use crate::IrError;
use weft_dsl::builtins::Kind;
use weft_dsl::check::value::{CallValue, Value};

/// Balance-loss statistics of one route call site, summed over iterations.
pub(crate) struct BalanceStats {
    name: String,
    weight: f32,
    choices: usize,
    p_sum: ValueId,
    f_sum: ValueId,
    count: usize,
}

pub(crate) fn route(
    l: &mut Lowerer,
    f: &mut Frame,
    call: &CallValue,
    at: usize,
) -> Result<ValueId> {
    let pool_name = call.name_arg("pool").unwrap_or_default().to_string();
    let pool = l
        .spec
        .model
        .pools
        .get(&pool_name)
        .cloned()
        .ok_or_else(|| IrError::Builder(format!("unknown pool `{pool_name}`")))?;
    let m = pool.size as usize;
    let skip = call.bool("skip").unwrap_or(true);
    let k = m + usize::from(skip);
    let top_k = call.int("top_k").unwrap_or(1).clamp(1, k as i64) as usize;
    let r = f.route_site(at);
    let site = format!("{}.route{r}", f.prefix);
    let hp = format!("{}.route{r}", f.hook_prefix());
    let x = f.env["x"];

    let logits = router(l, f, r, &site, call, x, k)?;
    l.hook(&format!("{hp}.logits"), logits);
    let tau = call.float("temperature").unwrap_or(1.0) as f32;
    let inv_tau = l.g.scalar(1.0 / tau);
    let scaled = l.g.mul(logits, inv_tau)?;
    let probs = l.g.softmax(scaled, 2)?; // [B,T,k]
    l.hook(&format!("{hp}.probs"), probs);
    let chosen = l.g.topk_mask(probs, top_k, 2)?;
    l.hook(&format!("{hp}.choice"), chosen);
    let kept = l.g.mul(probs, chosen)?;
    let total = l.g.sum(kept, 2, true)?;
    let mut mix = l.g.div(kept, total)?;
    if call.bool("straight_through") == Some(true) {
        mix = l.g.straight_through(mix)?;
    }
    balance_stats(l, f, r, &site, call, probs, k)?;

    let module = l
        .spec
        .model
        .resolve_call(&pool.module, Kind::Tensor, &f.params, &["x"])
        .ok_or_else(|| {
            IrError::Builder(format!("cannot resolve the module of pool `{pool_name}`"))
        })?;
    let input_expr = match &pool.module.kind {
        weft_dsl::ast::ExprKind::Call { args, .. } => block::tensor_arg(args).cloned(),
        _ => None,
    }
    .ok_or_else(|| IrError::Builder(format!("pool `{pool_name}` module has no input")))?;

    // Each module's own pre-norm (and anything else in its input expression).
    let mut inputs = Vec::with_capacity(m);
    let mut frames = Vec::with_capacity(m);
    for j in 0..m {
        let mut mf = Frame::new(format!("{}.{pool_name}.{j}", f.prefix), f.params.clone(), x);
        mf.iteration = f.iteration;
        inputs.push(block::tensor(l, &mut mf, &input_expr)?);
        frames.push(mf);
    }
    let sel =
        |l: &mut Lowerer, t: ValueId, j: usize| -> Result<ValueId> { l.g.slice(t, 2, j, j + 1) };

    if module.name == "attention" {
        let h = Heads::of(l, &module);
        let bias = module.bool("bias").unwrap_or(false);
        let (b, t) = (l.opts.batch, l.opts.seq);
        let (mut q, mut kk, mut v) = (None, None, None);
        for (j, &input) in inputs.iter().enumerate() {
            let msite = format!("{}.{pool_name}.{j}.attn", f.prefix);
            let (qj, kj, vj) =
                attention::project_qkv(l, &msite, &h, attention::qkv_bias(&module), input)?;
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
        let site0 = format!("{}.{pool_name}.0.attn", f.prefix);
        let y = attention::core(l, f, &site0, &module, &h, q, kk, v)?;
        let mut out: Option<ValueId> = None;
        for j in 0..m {
            let msite = format!("{}.{pool_name}.{j}.attn", f.prefix);
            let oj = attention::output(l, f, &msite, &module, &h, bias, y)?;
            let w = sel(l, mix, j)?;
            let term = l.g.mul(oj, w)?;
            out = Some(match out {
                Some(a) => l.g.add(a, term)?,
                None => term,
            });
        }
        return Ok(out.expect("m ≥ 1"));
    }
    let sparse = call.name_arg("execution") == Some("sparse");
    if sparse && matches!(module.name.as_str(), "mlp" | "swiglu") {
        return route_sparse::ffn_pool(l, &mut frames, &module, &inputs, chosen, mix, top_k);
    }
    let mut out: Option<ValueId> = None;
    for (j, mf) in frames.iter_mut().enumerate() {
        let oj = block::apply(l, mf, &module, inputs[j])?;
        let w = sel(l, mix, j)?;
        let term = l.g.mul(oj, w)?;
        out = Some(match out {
            Some(a) => l.g.add(a, term)?,
            None => term,
        });
    }
    Ok(out.expect("m ≥ 1"))
}

/// Router logits `[B,T,k]` on the raw residual stream: a 2-layer ReLU MLP, or a GRU cell
/// whose state persists across iterations of this call site.
fn router(
    l: &mut Lowerer,
    f: &mut Frame,
    r: usize,
    site: &str,
    call: &CallValue,
    x: ValueId,
    k: usize,
) -> Result<ValueId> {
    let spec = call
        .get("router")
        .and_then(Value::as_call)
        .cloned()
        .unwrap_or(CallValue {
            name: "gru".into(),
            args: Default::default(),
            span: call.span,
        });
    let hidden = spec.int("hidden").unwrap_or(256).max(1) as usize;
    let d = l.dim("dim");
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
    if spec.name == "mlp" {
        let h = lin(l, "w1", x, d, hidden)?;
        let h = l.g.relu(h)?;
        return lin(l, "w2", h, hidden, k);
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
    call: &CallValue,
    probs: ValueId,
    k: usize,
) -> Result<()> {
    let weight = call.float("balance").unwrap_or(0.0) as f32;
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
