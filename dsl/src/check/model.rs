//! Checks of a `model` section: settings and dimension rules, pools, blocks, and the layer
//! schedule (coverage, overlaps, ranges, block arguments).

use super::bounds;
use super::eval::{describe_expr, mismatch, Binding, Eval, Scope};
use super::rules;
use super::value::Value;
use super::{LayerPlan, ModelInfo, PoolInfo};
use crate::ast::{BlockDef, Expr, ExprKind, LayersDef, Model, ModelItem, Stmt};
use crate::builtins::{self, Kind, Ty, MODEL_SETTINGS};
use crate::diagnostic::did_you_mean;
use crate::diagnostic::Diagnostic;
use crate::typed::ModelConfig;
use crate::Span;
use std::collections::BTreeMap;

pub fn check_model(ev: &mut Eval, m: &Model) -> Option<ModelInfo> {
    let mut scope = Scope::default();
    let mut defined: BTreeMap<&str, Span> = BTreeMap::new();
    let mut settings: BTreeMap<String, Value> = BTreeMap::new();
    let mut set_spans: BTreeMap<&str, Span> = BTreeMap::new();
    let mut blocks: BTreeMap<String, BlockDef> = BTreeMap::new();
    let mut layers: Vec<&LayersDef> = Vec::new();
    let mut ok = true;

    // Names first, so duplicates are reported once and blocks can be found in any order.
    for item in &m.items {
        let ident = match item {
            ModelItem::Assign(a) => &a.name,
            ModelItem::Block(b) => &b.name,
            ModelItem::Pool(p) => &p.name,
            ModelItem::Layers(l) => {
                if let Some(first) = layers.first() {
                    ev.error(
                        Diagnostic::new("duplicate", l.span, "the layer schedule is given twice")
                            .label("second `layers { }`")
                            .related(first.span, "first given here")
                            .help("list every range in one `layers { }` section"),
                    );
                    ok = false;
                }
                layers.push(l);
                continue;
            }
        };
        if ident.name == "x" {
            ev.error(
                Diagnostic::new(
                    "reserved",
                    ident.span,
                    "`x` is reserved for the residual stream",
                )
                .label("reserved name")
                .help("choose another name"),
            );
            ok = false;
        }
        if let Some(first) = defined.get(ident.name.as_str()) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    ident.span,
                    format!("`{}` is defined twice", ident.name),
                )
                .label("second definition")
                .related(*first, "first defined here"),
            );
            ok = false;
            continue;
        }
        defined.insert(&ident.name, ident.span);
    }

    // Settings and constants, in order: a value may use the ones above it.
    for item in &m.items {
        let ModelItem::Assign(a) = item else { continue };
        let v = match MODEL_SETTINGS.iter().find(|p| p.name == a.name.name) {
            Some(p) => ev
                .expect(&a.value, p.ty, p.name, &scope)
                .filter(|v| ev.bounded("model", p.name, v, a.value.span)),
            None => constant(ev, &a.value, &a.name.name, &scope),
        };
        match v {
            Some(v) => {
                scope.insert(&a.name.name, Binding::Const(v.clone(), a.span));
                set_spans.insert(&a.name.name, a.value.span);
                settings.insert(a.name.name.clone(), v);
            }
            None => ok = false,
        }
    }
    for p in MODEL_SETTINGS {
        if settings.contains_key(p.name) {
            continue;
        }
        match p.default {
            None => {
                if !ok {
                    continue; // an earlier error may be the cause
                }
                // A misspelt setting reads as a user constant: point at it.
                let near = m.items.iter().find_map(|it| match it {
                    ModelItem::Assign(a)
                        if !MODEL_SETTINGS.iter().any(|q| q.name == a.name.name)
                            && did_you_mean(&a.name.name, [p.name]).is_some() =>
                    {
                        Some(&a.name)
                    }
                    _ => None,
                });
                let msg = format!("model `{}` does not set `{}`", m.name.name, p.name);
                let d = match near {
                    Some(typo) => Diagnostic::new("missing-setting", typo.span, msg)
                        .label(format!("did you mean `{}`?", p.name))
                        .related(m.name.span, "model declared here")
                        .help(format!("did you mean `{}`? `{}` is not a setting, so it defines a user constant", p.name, typo.name)),
                    None => Diagnostic::new("missing-setting", m.name.span, msg)
                        .label(format!("`{}` missing", p.name))
                        .help(format!("add `{} = ...` ({})", p.name, p.doc)),
                };
                ev.error(d);
                ok = false;
            }
            Some(src) => {
                if let Some(v) = ev.default_value(src, p.ty, p.name, &scope) {
                    scope.insert(p.name, Binding::Const(v.clone(), m.name.span));
                    settings.insert(p.name.to_string(), v);
                } else if ok && p.name == "head_dim" {
                    // The default `dim / heads` failed: dim is not divisible by heads.
                    let (dim, heads) = (
                        scope.int("dim").unwrap_or(0),
                        scope.int("heads").unwrap_or(0),
                    );
                    let span = set_spans.get("heads").copied().unwrap_or(m.name.span);
                    ev.error(
                        Diagnostic::new(
                            "indivisible",
                            span,
                            format!("dim ({dim}) is not divisible by heads ({heads})"),
                        )
                        .label("heads must divide dim")
                        .related(
                            set_spans.get("dim").copied().unwrap_or(m.name.span),
                            "dim set here",
                        )
                        .help("choose heads dividing dim, or set `head_dim` explicitly"),
                    );
                    ok = false;
                }
            }
        }
    }
    if ok {
        ok &= rules::model_rules(ev, &scope, &set_spans, m.name.span);
    }
    if !ok {
        return None;
    }
    let config = match ModelConfig::from_settings(&settings, m.span) {
        Ok(c) => c,
        Err(e) => {
            ev.error(super::unresolved(e));
            return None;
        }
    };

    // Pools, then blocks (generically), then the schedule with each instantiation.
    let mut pools = BTreeMap::new();
    for item in &m.items {
        let ModelItem::Pool(p) = item else { continue };
        let size = match ev.expect(&p.size, Ty::Int, "pool size", &scope) {
            Some(Value::Int(n)) if n > bounds::MAX_POOL => {
                bounds::check(ev, "pool", "pool size", n, p.size.span);
                continue;
            }
            Some(Value::Int(n)) if n >= 1 => n,
            Some(Value::Int(n)) => {
                ev.error(
                    Diagnostic::new(
                        "bad-value",
                        p.size.span,
                        format!("a pool needs at least one module, not {n}"),
                    )
                    .label("must be ≥ 1"),
                );
                continue;
            }
            _ => continue,
        };
        pools.insert(
            p.name.name.clone(),
            PoolInfo {
                size,
                module: p.module.clone(),
                span: p.span,
            },
        );
        scope.insert(
            &p.name.name,
            Binding::Pool {
                size,
                span: p.name.span,
            },
        );
    }
    for p in pools.values() {
        let mut s = scope.clone();
        s.insert("x", Binding::Tensor(p.span));
        match &p.module.kind {
            ExprKind::Call { func, .. }
                if matches!(func.name.as_str(), "attention" | "mlp" | "swiglu") =>
            {
                tensor(
                    ev,
                    &p.module,
                    &s,
                    Ctx {
                        in_pool: true,
                        model: &scope,
                    },
                );
            }
            _ => ev.error(
                Diagnostic::new(
                    "bad-pool",
                    p.module.span,
                    "a pool holds `attention`, `mlp` or `swiglu` modules",
                )
                .label("not a module")
                .help("e.g. `pool attn[4] { attention(layer_norm(x)) }`"),
            ),
        }
    }
    for item in &m.items {
        let ModelItem::Block(b) = item else { continue };
        check_block(ev, b, &scope, None);
        blocks.insert(b.name.name.clone(), b.clone());
    }
    let plan = match layers.first() {
        Some(l) => schedule(ev, l, &scope, &blocks),
        None => {
            ev.error(
                Diagnostic::new(
                    "missing-layers",
                    m.name.span,
                    format!("model `{}` has no layer schedule", m.name.name),
                )
                .label("no `layers { }`")
                .help("add `layers { 0 .. layers => BLOCK }`"),
            );
            None
        }
    }?;
    Some(ModelInfo {
        name: m.name.name.clone(),
        span: m.span,
        config,
        settings,
        blocks,
        pools,
        layers: plan,
        rules: BTreeMap::new(),
    })
}

/// A user constant: a number, a boolean or a string.
fn constant(ev: &mut Eval, e: &Expr, name: &str, scope: &Scope) -> Option<Value> {
    match &e.kind {
        ExprKind::Bool(b) => Some(Value::Bool(*b)),
        ExprKind::Str(s) => Some(Value::Str(s.clone())),
        _ => ev
            .expect(e, Ty::Float, name, scope)
            .map(|v| match (v, number_is_int(e, scope)) {
                (Value::Float(f), true) => Value::Int(f as i64),
                (v, _) => v,
            }),
    }
}

/// Whether an arithmetic expression stays in integers (so `hidden = 4 * dim` is an Int).
fn number_is_int(e: &Expr, scope: &Scope) -> bool {
    match &e.kind {
        ExprKind::Int(_) => true,
        ExprKind::Float(_) => false,
        ExprKind::Neg(i) => number_is_int(i, scope),
        ExprKind::Ident(n) => matches!(scope.get(n), Some(Binding::Const(Value::Int(_), _))),
        ExprKind::Binary { lhs, rhs, .. } => number_is_int(lhs, scope) && number_is_int(rhs, scope),
        _ => false,
    }
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    in_pool: bool,
    model: &'a Scope,
}

/// Checks a block body; with `args`, as instantiated by one layer rule.
fn check_block(
    ev: &mut Eval,
    b: &BlockDef,
    model: &Scope,
    args: Option<&BTreeMap<String, (Value, Span)>>,
) {
    let mut scope = model.clone();
    scope.insert("x", Binding::Tensor(b.name.span));
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for p in &b.params {
        if let Some(first) = seen.get(p.name.as_str()) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    p.span,
                    format!("parameter `{}` listed twice", p.name),
                )
                .label("second time")
                .related(*first, "first here"),
            );
        }
        seen.insert(&p.name, p.span);
        let bound = args
            .and_then(|a| a.get(&p.name))
            .map(|(v, s)| (Some(v.clone()), *s));
        let (v, s) = bound.unwrap_or((None, p.span));
        scope.insert(&p.name, Binding::Param(v, s));
    }
    let mut updates_x = false;
    stmts(ev, &b.body, &mut scope, model, &mut updates_x);
    if !updates_x && args.is_none() {
        ev.error(
            Diagnostic::new(
                "block-without-x",
                b.name.span,
                format!("block `{}` never updates `x`", b.name.name),
            )
            .label("no `x = ...` inside")
            .help("a block transforms the residual stream: `x = x + attention(rms_norm(x))`"),
        );
    }
}

fn stmts(ev: &mut Eval, body: &[Stmt], scope: &mut Scope, model: &Scope, updates_x: &mut bool) {
    for s in body {
        match s {
            Stmt::Assign(a) => {
                tensor(
                    ev,
                    &a.value,
                    scope,
                    Ctx {
                        in_pool: false,
                        model,
                    },
                );
                if a.name.name == "x" {
                    *updates_x = true;
                } else if matches!(
                    scope.get(&a.name.name),
                    Some(Binding::Const(..) | Binding::Pool { .. } | Binding::Param(..))
                ) {
                    ev.error(
                        Diagnostic::new(
                            "shadowing",
                            a.name.span,
                            format!(
                                "`{}` already names a setting, pool or parameter",
                                a.name.name
                            ),
                        )
                        .label("would shadow")
                        .help("choose another name for this tensor"),
                    );
                }
                scope.insert(&a.name.name, Binding::Tensor(a.name.span));
            }
            Stmt::Repeat(r) => {
                match ev.expect(&r.count, Ty::Int, "repeat count", scope) {
                    Some(Value::Int(n)) if n > bounds::MAX_REPEAT => {
                        bounds::check(ev, "repeat", "repeat count", n, r.count.span);
                    }
                    Some(Value::Int(n)) if n < 1 => ev.error(
                        Diagnostic::new(
                            "bad-value",
                            r.count.span,
                            format!("repeat needs at least 1 iteration, not {n}"),
                        )
                        .label("must be ≥ 1"),
                    ),
                    _ => {}
                }
                stmts(ev, &r.body, scope, model, updates_x);
            }
        }
    }
}

/// Checks a tensor expression.
fn tensor(ev: &mut Eval, e: &Expr, scope: &Scope, ctx: Ctx) {
    match &e.kind {
        ExprKind::Ident(name) => match scope.get(name) {
            Some(Binding::Tensor(_)) => {}
            Some(Binding::Param(..)) | Some(Binding::Const(..)) | Some(Binding::Pool { .. }) => ev
                .error(mismatch(
                    e.span,
                    "a tensor",
                    &format!("`{name}`, which is not a tensor"),
                    "",
                )),
            None => ev.unknown_name(name, e.span, scope),
        },
        ExprKind::Binary { op, .. } if !op.is_arithmetic() => {
            ev.error(super::eval::logic_outside_rule(e.span, op.symbol()));
        }
        ExprKind::Not(_) => ev.error(super::eval::logic_outside_rule(e.span, "!")),
        ExprKind::Binary { lhs, rhs, .. } => {
            let (l, r) = (is_scalar(lhs, scope), is_scalar(rhs, scope));
            if l && r {
                ev.error(mismatch(e.span, "a tensor", "a number", ""));
                return;
            }
            for side in [lhs, rhs] {
                if is_scalar(side, scope) {
                    ev.expect(side, Ty::Float, "", scope);
                } else {
                    tensor(ev, side, scope, ctx);
                }
            }
        }
        ExprKind::Neg(inner) => tensor(ev, inner, scope, ctx),
        ExprKind::Call { func, args } => {
            if builtins::lookup(&func.name, Kind::Tensor).is_none()
                && builtins::lookup_any(&func.name).is_none()
                && scope.get(&func.name).is_none()
                && ctx.model.get(&func.name).is_none()
            {
                // Calling a block from inside a block is a common first guess.
                let d = Diagnostic::new("unknown-name", func.span, format!("unknown function `{}`", func.name))
                    .label("not a tensor function")
                    .help(did_you_mean(&func.name, builtins::names_of(Kind::Tensor)).unwrap_or_else(|| {
                        "blocks are applied in `layers { }`; inside a block use attention, mlp, swiglu, rms_norm, layer_norm, dropout or route".into()
                    }));
                ev.error(d);
                return;
            }
            if func.name == "route" && ctx.in_pool {
                ev.error(
                    Diagnostic::new("bad-pool", e.span, "a pool module cannot route")
                        .label("route inside a pool")
                        .help("use `route` in a block, over a pool"),
                );
                return;
            }
            let Some(b) = builtins::lookup(&func.name, Kind::Tensor) else {
                // Reports "router without pool" / wrong kind.
                ev.expect(e, Ty::Of(Kind::Tensor), "", scope);
                return;
            };
            // The first argument of tensor functions is the tensor input.
            let tensor_param = b
                .params
                .first()
                .filter(|p| p.ty == Ty::Of(Kind::Tensor))
                .map(|p| p.name);
            let mut rest = Vec::new();
            for (i, a) in args.iter().enumerate() {
                let is_input = match &a.name {
                    Some(n) => Some(n.name.as_str()) == tensor_param,
                    None => i == 0 && tensor_param.is_some(),
                };
                if is_input {
                    tensor(ev, &a.value, scope, ctx);
                    rest.push(crate::ast::Arg {
                        name: a.name.clone(),
                        value: Expr {
                            kind: ExprKind::Ident("x".into()),
                            span: a.value.span,
                        },
                    });
                } else {
                    rest.push(a.clone());
                }
            }
            let mut s = scope.clone();
            s.insert("x", Binding::Tensor(e.span));
            if let Some(call) = ev.call(b, &rest, e.span, &s) {
                rules::tensor_rules(ev, &call, args, scope);
            }
        }
        _ => ev.error(mismatch(e.span, "a tensor", describe_expr(e), "")),
    }
}

fn is_scalar(e: &Expr, scope: &Scope) -> bool {
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Float(_) => true,
        ExprKind::Ident(n) => matches!(
            scope.get(n),
            Some(Binding::Const(Value::Int(_) | Value::Float(_), _))
        ),
        ExprKind::Neg(i) => is_scalar(i, scope),
        ExprKind::Binary { lhs, rhs, .. } => is_scalar(lhs, scope) && is_scalar(rhs, scope),
        _ => false,
    }
}

/// Expands `layers { }` into one plan per layer index, checking ranges, overlaps, gaps and
/// each block instantiation.
fn schedule(
    ev: &mut Eval,
    l: &LayersDef,
    scope: &Scope,
    blocks: &BTreeMap<String, BlockDef>,
) -> Option<Vec<LayerPlan>> {
    let n = scope.int("layers").unwrap_or(0);
    let mut owner: Vec<Option<Span>> = vec![None; n.max(0) as usize];
    let mut plan: Vec<Option<LayerPlan>> = vec![None; n.max(0) as usize];
    let mut ok = true;
    for rule in &l.rules {
        let start = ev
            .expect(&rule.start, Ty::Int, "layer", scope)
            .and_then(|v| v.as_int());
        let end = match &rule.end {
            Some(e) => ev
                .expect(e, Ty::Int, "layer", scope)
                .and_then(|v| v.as_int()),
            None => start.map(|s| s + 1),
        };
        let (Some(start), Some(end)) = (start, end) else {
            ok = false;
            continue;
        };
        let range_span = rule
            .end
            .as_ref()
            .map(|e| rule.start.span.join(e.span))
            .unwrap_or(rule.start.span);
        if start < 0 || end > n || start >= end {
            let msg = if start >= end {
                format!("empty layer range {start} .. {end}")
            } else {
                format!("layer range {start} .. {end} is outside 0 .. {n}")
            };
            ev.error(
                Diagnostic::new("bad-layer-range", range_span, msg)
                    .label(if start >= end {
                        "start must be below end"
                    } else {
                        "out of range"
                    })
                    .help(format!(
                        "ranges are half-open; this model has layers 0 .. {n} (`layers = {n}`)"
                    )),
            );
            ok = false;
            continue;
        }
        let Some((block, args)) = target(ev, &rule.target, scope, blocks) else {
            ok = false;
            continue;
        };
        for i in start..end {
            let i = i as usize;
            if let Some(prev) = owner[i] {
                ev.error(
                    Diagnostic::new(
                        "overlapping-layers",
                        range_span,
                        format!("layer {i} is scheduled twice"),
                    )
                    .label("overlaps an earlier rule")
                    .related(prev, "earlier rule")
                    .help("each layer index must be covered by exactly one rule"),
                );
                ok = false;
                break;
            }
            owner[i] = Some(range_span);
            plan[i] = Some(LayerPlan {
                block: block.clone(),
                args: args
                    .iter()
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect(),
                span: rule.span,
            });
        }
    }
    if ok {
        let missing: Vec<String> = owner
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_none())
            .map(|(i, _)| i.to_string())
            .collect();
        if !missing.is_empty() {
            ev.error(
                Diagnostic::new(
                    "layer-gap",
                    l.span,
                    format!("layers {} are not scheduled", missing.join(", ")),
                )
                .label("gap in the schedule")
                .help(format!(
                    "cover every layer 0 .. {n} (ranges are half-open: `1 .. 3` is layers 1 and 2)"
                )),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    plan.into_iter().collect()
}

type BlockArgs = BTreeMap<String, (Value, Span)>;

/// `block` or `block(args)` in a layer rule.
fn target(
    ev: &mut Eval,
    e: &Expr,
    scope: &Scope,
    blocks: &BTreeMap<String, BlockDef>,
) -> Option<(String, BlockArgs)> {
    let (name, span, args) = match &e.kind {
        ExprKind::Ident(n) => (n, e.span, &[][..]),
        ExprKind::Call { func, args } => (&func.name, func.span, &args[..]),
        _ => {
            ev.error(mismatch(e.span, "a block", describe_expr(e), ""));
            return None;
        }
    };
    let Some(b) = blocks.get(name) else {
        ev.error(
            Diagnostic::new("unknown-name", span, format!("unknown block `{name}`"))
                .label("not a block of this model")
                .maybe_help(did_you_mean(name, blocks.keys().map(String::as_str))),
        );
        return None;
    };
    if args.len() != b.params.len() {
        ev.error(
            Diagnostic::new(
                "bad-argument",
                e.span,
                format!(
                    "block `{name}` takes {} argument{}, {} given",
                    b.params.len(),
                    if b.params.len() == 1 { "" } else { "s" },
                    args.len()
                ),
            )
            .label("wrong number of arguments")
            .related(b.name.span, "block defined here")
            .help(format!(
                "the block is declared as `block {name}({})`",
                b.params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    for (p, a) in b.params.iter().zip(args) {
        if let Some(n) = &a.name {
            if n.name != p.name {
                ev.error(
                    Diagnostic::new(
                        "bad-argument",
                        n.span,
                        format!("block `{name}` has no parameter `{}`", n.name),
                    )
                    .label("unknown parameter")
                    .maybe_help(did_you_mean(
                        &n.name,
                        b.params.iter().map(|p| p.name.as_str()),
                    )),
                );
                return None;
            }
        }
        out.insert(
            p.name.clone(),
            (arg_value(ev, &a.value, scope)?, a.value.span),
        );
    }
    check_block(ev, b, scope, Some(&out));
    Some((name.clone(), out))
}

/// A block argument: a name (`signed`), a number, a boolean, a string, or a builtin call.
fn arg_value(ev: &mut Eval, e: &Expr, scope: &Scope) -> Option<Value> {
    match &e.kind {
        ExprKind::Ident(n) if scope.get(n).is_none() && builtins::lookup_any(n).is_none() => {
            Some(Value::Name(n.clone()))
        }
        ExprKind::Ident(n) if scope.get(n).is_none() => {
            let b = builtins::lookup_any(n)?;
            ev.expect(e, Ty::Of(b.kind), "", scope)
        }
        ExprKind::Bool(b) => Some(Value::Bool(*b)),
        ExprKind::Str(s) => Some(Value::Str(s.clone())),
        ExprKind::Call { func, .. } => match builtins::lookup_any(&func.name) {
            Some(b) => ev.expect(e, Ty::Of(b.kind), "", scope),
            None => {
                ev.unknown_name(&func.name, func.span, scope);
                None
            }
        },
        _ => constant(ev, e, "", scope),
    }
}
