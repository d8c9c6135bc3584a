//! One layer: the scheduled block's body evaluated with `x` bound to the residual stream.
//! Parameters are named by call site within the layer (`attn`, `attn2`, `mlp`, `norm1`...),
//! so the same block used at two layers gets two independent sets of weights.

use super::frame::Frame;
use super::manifest::LayerSite;
use super::{call, hooks, route, Lowerer, Result};
use crate::ir::ValueId;
use crate::IrError;
use weft_dsl::ast::{BinOp, Expr, ExprKind, Stmt};
use weft_dsl::check::value::Value;
use weft_dsl::typed::TensorCall;

pub(crate) fn layer(l: &mut Lowerer, i: usize, x: ValueId) -> Result<ValueId> {
    let plan = l.spec.model.layers[i].clone();
    let block = l.spec.model.blocks[&plan.block].clone();
    let mut f = Frame::new(i, hooks::layer(i), plan.args.clone(), x);
    l.at(plan.span);
    l.hook(&hooks::join(&f.prefix, hooks::RESID_PRE), x);
    let x_writes = count_x_writes(&block.body);
    let mut written = 0;
    let mut iterations = 1;
    stmts(
        l,
        &mut f,
        &block.body,
        x_writes,
        &mut written,
        &mut iterations,
    )?;
    if l.view_prefix.is_empty() {
        l.manifest.layers.push(LayerSite {
            block: plan.block.clone(),
            iterations,
        });
    }
    route::finish_balance(l, &mut f)?;
    let out = f.env["x"];
    l.hook(&hooks::join(&f.prefix, hooks::RESID_POST), out);
    Ok(out)
}

/// How many `x = ...` statements run (counting repeats), to name `resid_mid` hooks.
fn count_x_writes(body: &[Stmt]) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::Assign(a) => usize::from(a.name.name == "x"),
            Stmt::Repeat(_) => 0,
        })
        .sum()
}

fn stmts(
    l: &mut Lowerer,
    f: &mut Frame,
    body: &[Stmt],
    x_writes: usize,
    written: &mut usize,
    iterations: &mut usize,
) -> Result<()> {
    for s in body {
        match s {
            Stmt::Assign(a) => {
                l.at(a.span);
                let v = tensor(l, f, &a.value)?;
                f.env.insert(a.name.name.clone(), v);
                if a.name.name == "x" && f.iteration.is_none() {
                    *written += 1;
                    if *written < x_writes {
                        let suffix = if *written == 1 {
                            String::new()
                        } else {
                            written.to_string()
                        };
                        l.hook(
                            &format!("{}{suffix}", hooks::join(&f.prefix, hooks::RESID_MID)),
                            v,
                        );
                    }
                }
            }
            Stmt::Repeat(r) => {
                let n = number(l, f, &r.count)? as usize;
                *iterations = (*iterations).max(n);
                for j in 0..n {
                    f.iteration = Some(j);
                    // Call sites restart each iteration: the same names, the same weights.
                    let saved = std::mem::take(&mut f.counters);
                    f.route_sites.clear();
                    stmts(l, f, &r.body, 0, written, iterations)?;
                    f.counters = saved;
                    let x = f.env["x"];
                    l.hook(
                        &hooks::join(&hooks::iteration(&f.prefix, j), hooks::RESID_POST),
                        x,
                    );
                }
                f.iteration = None;
            }
        }
    }
    Ok(())
}

/// Evaluates a tensor expression.
pub(crate) fn tensor(l: &mut Lowerer, f: &mut Frame, e: &Expr) -> Result<ValueId> {
    match &e.kind {
        ExprKind::Ident(n) => f
            .env
            .get(n)
            .copied()
            .ok_or_else(|| bug(e, &format!("unbound tensor `{n}`"))),
        ExprKind::Neg(inner) => {
            let v = tensor(l, f, inner)?;
            l.g.neg(v)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let a = operand(l, f, lhs)?;
            let b = operand(l, f, rhs)?;
            l.at(e.span);
            match op {
                BinOp::Add => l.g.add(a, b),
                BinOp::Sub => l.g.sub(a, b),
                BinOp::Mul => l.g.mul(a, b),
                BinOp::Div => l.g.div(a, b),
                BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::And
                | BinOp::Or => Err(bug(e, "a comparison in a tensor expression")),
            }
        }
        ExprKind::Call { func, args } => {
            let locals: Vec<&str> = f.env.keys().map(String::as_str).collect();
            let call = l
                .spec
                .model
                .resolve_tensor(e, &f.params, &locals)
                .ok_or_else(|| bug(e, &format!("cannot resolve `{}`", func.name)))?
                .map_err(super::unresolved)?;
            l.at(e.span);
            match &call {
                TensorCall::Route(r) => {
                    // The pool's module input (its own pre-norm...) is an expression of the
                    // spec, evaluated here for each module's frame.
                    let pool =
                        l.spec.model.pools.get(&r.pool).ok_or_else(|| {
                            IrError::Builder(format!("unknown pool `{}`", r.pool))
                        })?;
                    let input_expr = match &pool.module.kind {
                        ExprKind::Call { args, .. } => tensor_arg(args).cloned(),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        IrError::Builder(format!("pool `{}` module has no input", r.pool))
                    })?;
                    let mut module_input =
                        |l: &mut Lowerer, mf: &mut Frame| tensor(l, mf, &input_expr);
                    route::route(l, f, r, e.span.start, &mut module_input)
                }
                TensorCall::Attention(_)
                | TensorCall::Mlp(_)
                | TensorCall::Swiglu(_)
                | TensorCall::Norm(_)
                | TensorCall::Dropout { .. } => {
                    let input_expr =
                        tensor_arg(args).ok_or_else(|| bug(e, "missing tensor input"))?;
                    let input = tensor(l, f, input_expr)?;
                    l.at(e.span);
                    call::apply(l, f, &call, input)
                }
            }
        }
        _ => Err(bug(e, "not a tensor expression")),
    }
}

/// The AST of a call's tensor input: the first positional or `input:` argument.
pub(crate) fn tensor_arg(args: &[weft_dsl::ast::Arg]) -> Option<&Expr> {
    args.iter()
        .enumerate()
        .find(|(i, a)| {
            a.name
                .as_ref()
                .map(|n| n.name == "input")
                .unwrap_or(*i == 0)
        })
        .map(|(_, a)| &a.value)
}

fn operand(l: &mut Lowerer, f: &mut Frame, e: &Expr) -> Result<ValueId> {
    if is_scalar(f, e) {
        let v = number(l, f, e)?;
        Ok(l.g.scalar(v as f32))
    } else {
        tensor(l, f, e)
    }
}

fn is_scalar(f: &Frame, e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Float(_) => true,
        ExprKind::Ident(n) => !f.env.contains_key(n),
        ExprKind::Neg(i) => is_scalar(f, i),
        ExprKind::Binary { lhs, rhs, .. } => is_scalar(f, lhs) && is_scalar(f, rhs),
        _ => false,
    }
}

/// A number: literals, model constants, block parameters, arithmetic.
pub(crate) fn number(l: &Lowerer, f: &Frame, e: &Expr) -> Result<f64> {
    match &e.kind {
        ExprKind::Int(i) => Ok(*i as f64),
        ExprKind::Float(x) => Ok(*x),
        ExprKind::Neg(i) => Ok(-number(l, f, i)?),
        ExprKind::Ident(n) => f
            .params
            .get(n)
            .or_else(|| l.spec.model.setting(n))
            .and_then(Value::as_f64)
            .ok_or_else(|| bug(e, &format!("`{n}` is not a number"))),
        ExprKind::Binary { op, lhs, rhs } => {
            let (a, b) = (number(l, f, lhs)?, number(l, f, rhs)?);
            Ok(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::And
                | BinOp::Or => return Err(bug(e, "a comparison in a number")),
            })
        }
        _ => Err(bug(e, "not a number")),
    }
}

/// A state the checker should have ruled out.
fn bug(e: &Expr, what: &str) -> IrError {
    IrError::Builder(format!(
        "lowering bug at bytes {}..{}: {what} (the checker accepted this spec)",
        e.span.start, e.span.end
    ))
}
