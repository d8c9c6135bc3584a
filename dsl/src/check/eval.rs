//! Evaluating expressions against an expected type: dimension arithmetic, choices, builtin
//! calls with their arguments and defaults. Every failure becomes a diagnostic; evaluation
//! then returns `None` and the caller carries on, so one pass reports every error.

use super::value::{CallValue, Value};
use crate::ast::{Arg, BinOp, Expr, ExprKind};
use crate::builtins::{self, quoted, Builtin, Kind, Ty};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::Span;
use std::collections::{BTreeMap, HashMap};

/// A name visible to an expression and what it stands for.
#[derive(Clone, Debug)]
pub enum Binding {
    /// A model setting or user constant.
    Const(Value, Span),
    /// A block parameter: `None` while checking the block generically, the argument's value
    /// when checking one instantiation from the layer schedule.
    Param(Option<Value>, Span),
    /// A tensor: `x` or a local assigned in a block.
    Tensor(Span),
    Pool {
        size: i64,
        span: Span,
    },
}

/// Names in scope, innermost last.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub names: HashMap<String, Binding>,
}

impl Scope {
    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.names.get(name)
    }

    pub fn insert(&mut self, name: &str, b: Binding) {
        self.names.insert(name.to_string(), b);
    }

    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.names.get(name) {
            Some(Binding::Const(Value::Int(i), _)) => Some(*i),
            _ => None,
        }
    }
}

/// A number during dimension arithmetic.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// Collects diagnostics while evaluating.
#[derive(Default)]
pub struct Eval {
    pub diags: Vec<Diagnostic>,
    /// The attention rules `attention(rule: ...)` may name (the prelude's and the file's).
    pub rule_names: Vec<String>,
    /// Set while checking the defaults of the table itself: their errors are table bugs.
    default_cache: HashMap<&'static str, Expr>,
}

impl Eval {
    pub fn error(&mut self, d: Diagnostic) {
        if !self.diags.contains(&d) {
            self.diags.push(d);
        }
    }

    /// Evaluates `e` as a value of type `ty`.
    pub fn expect(&mut self, e: &Expr, ty: Ty, what: &str, scope: &Scope) -> Option<Value> {
        if let ExprKind::Ident(name) = &e.kind {
            if ty == Ty::Of(Kind::Tensor) && matches!(scope.get(name), Some(Binding::Tensor(_))) {
                return Some(Value::Tensor);
            }
            // A block parameter stands for whatever the layer rule passes.
            if let Some(Binding::Param(bound, arg_span)) = scope.get(name) {
                // Errors in a passed value point at the layer rule's argument.
                return match bound {
                    None => Some(Value::Tensor), // unknown until instantiated
                    Some(v) => self.conform(v.clone(), ty, what, *arg_span),
                };
            }
        }
        match ty {
            Ty::Int | Ty::Float if non_number(e, scope).is_some() => {
                let found = non_number(e, scope).unwrap_or_default();
                self.error(mismatch(e.span, &ty.describe(), &found, what));
                None
            }
            Ty::Int => match self.number(e, scope)? {
                Num::Int(i) => Some(Value::Int(i)),
                Num::Float(f) => {
                    self.error(
                        mismatch(e.span, "an integer", &format!("the number {f:?}"), what)
                            .help("integers are written without a decimal point, and arithmetic with a float gives a float"),
                    );
                    None
                }
            },
            Ty::Float => self.number(e, scope).map(|n| Value::Float(n.f())),
            Ty::Bool => match &e.kind {
                ExprKind::Bool(b) => Some(Value::Bool(*b)),
                _ => self.const_value(e, ty, what, scope),
            },
            Ty::Str => match &e.kind {
                ExprKind::Str(s) => Some(Value::Str(s.clone())),
                _ => self.const_value(e, ty, what, scope),
            },
            Ty::Choice(options) => match &e.kind {
                ExprKind::Ident(name) if options.contains(&name.as_str()) => {
                    Some(Value::Name(name.clone()))
                }
                ExprKind::Ident(name) if scope.get(name).is_none() => {
                    let noun = choice_noun(what);
                    self.error(
                        Diagnostic::new(
                            "unknown-choice",
                            e.span,
                            format!("unknown {noun} `{name}`"),
                        )
                        .label(format!("expected one of {}", quoted(options)))
                        .help(
                            did_you_mean(name, options.iter().copied()).unwrap_or_else(|| {
                                format!("`{what}` takes one of {}", quoted(options))
                            }),
                        ),
                    );
                    None
                }
                _ => self.const_value(e, ty, what, scope),
            },
            Ty::Of(kind) => self.builtin_value(e, kind, what, scope),
            Ty::Rule => match &e.kind {
                ExprKind::Ident(name) if self.rule_names.contains(name) => {
                    Some(Value::Name(name.clone()))
                }
                ExprKind::Ident(name) if scope.get(name).is_none() => {
                    let help = did_you_mean(name, self.rule_names.iter().map(String::as_str))
                        .unwrap_or_else(|| {
                            "define one at the top level: `rule NAME { score = ... }`".into()
                        });
                    self.error(
                        Diagnostic::new(
                            "unknown-rule",
                            e.span,
                            format!("unknown attention rule `{name}`"),
                        )
                        .label("no rule of this name")
                        .help(help),
                    );
                    None
                }
                _ => self.const_value(e, ty, what, scope),
            },
            Ty::Pool => match &e.kind {
                ExprKind::Ident(name) => match scope.get(name) {
                    Some(Binding::Pool { .. }) => Some(Value::Name(name.clone())),
                    _ => {
                        let pools: Vec<&str> = scope
                            .names
                            .iter()
                            .filter(|(_, b)| matches!(b, Binding::Pool { .. }))
                            .map(|(n, _)| n.as_str())
                            .collect();
                        self.error(
                            Diagnostic::new(
                                "unknown-pool",
                                e.span,
                                format!("`{name}` is not a pool"),
                            )
                            .label("expected the name of a pool")
                            .help(
                                did_you_mean(name, pools.iter().copied()).unwrap_or_else(|| {
                                    "declare one with `pool NAME[SIZE] { attention(...) }`"
                                        .to_string()
                                }),
                            ),
                        );
                        None
                    }
                },
                _ => {
                    self.error(mismatch(
                        e.span,
                        "the name of a pool",
                        describe_expr(e),
                        what,
                    ));
                    None
                }
            },
            Ty::IntList | Ty::FloatList | Ty::StrList | Ty::ListOf(_) => {
                let elem = match ty {
                    Ty::IntList => Ty::Int,
                    Ty::FloatList => Ty::Float,
                    Ty::StrList => Ty::Str,
                    Ty::ListOf(k) => Ty::Of(k),
                    _ => unreachable!(),
                };
                match &e.kind {
                    ExprKind::List(items) => {
                        let vals: Vec<Option<Value>> = items
                            .iter()
                            .map(|i| self.expect(i, elem, what, scope))
                            .collect();
                        vals.into_iter()
                            .collect::<Option<Vec<_>>>()
                            .map(Value::List)
                    }
                    _ => {
                        self.error(mismatch(e.span, &ty.describe(), describe_expr(e), what));
                        None
                    }
                }
            }
        }
    }

    /// A name bound to a constant, checked against `ty`.
    fn const_value(&mut self, e: &Expr, ty: Ty, what: &str, scope: &Scope) -> Option<Value> {
        if let ExprKind::Ident(name) = &e.kind {
            match scope.get(name) {
                Some(Binding::Const(v, _)) => return self.conform(v.clone(), ty, what, e.span),
                None => {
                    self.unknown_name(name, e.span, scope);
                    return None;
                }
                _ => {}
            }
        }
        self.error(mismatch(e.span, &ty.describe(), describe_expr(e), what));
        None
    }

    /// Checks an already-computed value against `ty` (block arguments, constants).
    fn conform(&mut self, v: Value, ty: Ty, what: &str, span: Span) -> Option<Value> {
        let ok = match (ty, &v) {
            (Ty::Int, Value::Int(_)) | (Ty::Bool, Value::Bool(_)) | (Ty::Str, Value::Str(_)) => {
                true
            }
            (Ty::Float, Value::Int(i)) => return Some(Value::Float(*i as f64)),
            (Ty::Float, Value::Float(_)) => true,
            (Ty::Choice(opts), Value::Name(n)) => opts.contains(&n.as_str()),
            (Ty::Rule, Value::Name(n)) => self.rule_names.contains(n),
            (Ty::Of(k), Value::Call(c)) => builtins::lookup(&c.name, k).is_some(),
            (Ty::Of(Kind::Loss), Value::Losses(_)) => true,
            (Ty::IntList | Ty::FloatList | Ty::StrList | Ty::ListOf(_), Value::List(_)) => true,
            (_, Value::Tensor) => true,
            _ => false,
        };
        if ok {
            Some(v)
        } else {
            if let (Ty::Choice(opts), Value::Name(n)) = (ty, &v) {
                let noun = choice_noun(what);
                self.error(
                    Diagnostic::new("unknown-choice", span, format!("unknown {noun} `{n}`"))
                        .label(format!("expected one of {}", quoted(opts)))
                        .maybe_help(did_you_mean(n, opts.iter().copied())),
                );
            } else {
                self.error(mismatch(span, &ty.describe(), &v.describe(), what));
            }
            None
        }
    }

    pub fn unknown_name(&mut self, name: &str, span: Span, scope: &Scope) {
        let mut cands: Vec<&str> = scope.candidates().collect();
        cands.extend(builtins::BUILTINS.iter().map(|b| b.name));
        self.error(
            Diagnostic::new("unknown-name", span, format!("unknown name `{name}`"))
                .label("not defined here")
                .maybe_help(did_you_mean(name, cands)),
        );
    }

    /// Integer and float arithmetic over literals and constants. Integer division must be
    /// exact: dimensions that do not divide are errors, not silent truncation.
    fn number(&mut self, e: &Expr, scope: &Scope) -> Option<Num> {
        match &e.kind {
            ExprKind::Int(i) => Some(Num::Int(*i)),
            ExprKind::Float(f) if !f.is_finite() => {
                self.error(
                    Diagnostic::new(
                        "too-large",
                        e.span,
                        "this number does not fit in a 64-bit float",
                    )
                    .label("too large"),
                );
                None
            }
            ExprKind::Float(f) => Some(Num::Float(*f)),
            ExprKind::Neg(inner) => match self.number(inner, scope)? {
                Num::Int(i) => match i.checked_neg() {
                    Some(n) => Some(Num::Int(n)),
                    None => {
                        self.error(
                            Diagnostic::new("arithmetic", e.span, "integer overflow")
                                .label("too large"),
                        );
                        None
                    }
                },
                Num::Float(f) => Some(Num::Float(-f)),
            },
            ExprKind::Ident(name) => match scope.get(name) {
                Some(Binding::Const(Value::Int(i), _))
                | Some(Binding::Param(Some(Value::Int(i)), _)) => Some(Num::Int(*i)),
                Some(Binding::Const(Value::Float(f), _))
                | Some(Binding::Param(Some(Value::Float(f)), _)) => Some(Num::Float(*f)),
                Some(Binding::Param(None, _)) => Some(Num::Int(1)),
                Some(other) => {
                    let found = match other {
                        Binding::Tensor(_) => "a tensor".to_string(),
                        Binding::Pool { .. } => "a pool".to_string(),
                        Binding::Const(v, _) | Binding::Param(Some(v), _) => v.describe(),
                        Binding::Param(None, _) => unreachable!(),
                    };
                    self.error(mismatch(e.span, "a number", &found, name));
                    None
                }
                None => {
                    self.unknown_name(name, e.span, scope);
                    None
                }
            },
            ExprKind::Binary { op, .. } if !op.is_arithmetic() => {
                self.error(logic_outside_rule(e.span, op.symbol()));
                None
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.number(lhs, scope);
                let b = self.number(rhs, scope);
                let (a, b) = (a?, b?);
                self.arith(*op, a, b, e)
            }
            _ => {
                self.error(mismatch(e.span, "a number", describe_expr(e), ""));
                None
            }
        }
    }

    fn arith(&mut self, op: BinOp, a: Num, b: Num, e: &Expr) -> Option<Num> {
        if !op.is_arithmetic() {
            self.error(logic_outside_rule(e.span, op.symbol()));
            return None;
        }
        if let (Num::Int(x), Num::Int(y)) = (a, b) {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::And
                | BinOp::Or => None,
                BinOp::Div => {
                    if y == 0 {
                        self.error(
                            Diagnostic::new("arithmetic", e.span, "division by zero")
                                .label("divides by 0"),
                        );
                        return None;
                    }
                    if x % y != 0 {
                        self.error(
                            Diagnostic::new("indivisible", e.span, format!("{x} is not divisible by {y}"))
                                .label(format!("{x} / {y} is not a whole number"))
                                .help("dimensions must divide exactly; write a float literal (e.g. `1.0 * a / b`) for a ratio"),
                        );
                        return None;
                    }
                    Some(x / y)
                }
            };
            return match r {
                Some(v) => Some(Num::Int(v)),
                None => {
                    self.error(
                        Diagnostic::new("arithmetic", e.span, "integer overflow")
                            .label("too large"),
                    );
                    None
                }
            };
        }
        let (x, y) = (a.f(), b.f());
        let r = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Lt
            | BinOp::Le
            | BinOp::Gt
            | BinOp::Ge
            | BinOp::Eq
            | BinOp::Ne
            | BinOp::And
            | BinOp::Or => return None,
            BinOp::Div => {
                if y == 0.0 {
                    self.error(
                        Diagnostic::new("arithmetic", e.span, "division by zero")
                            .label("divides by 0"),
                    );
                    return None;
                }
                x / y
            }
        };
        // An infinity or NaN would slip past every range rule (`NaN <= 0` is false).
        if !r.is_finite() {
            self.error(
                Diagnostic::new("arithmetic", e.span, "the result is not a finite number")
                    .label("overflows a 64-bit float"),
            );
            return None;
        }
        Some(Num::Float(r))
    }

    /// A call (or bare name) of a builtin of `kind`; losses also combine with `+` and `*`.
    fn builtin_value(&mut self, e: &Expr, kind: Kind, what: &str, scope: &Scope) -> Option<Value> {
        match &e.kind {
            ExprKind::Call { func, args } => {
                let b = self.find_builtin(&func.name, func.span, kind, scope)?;
                self.call(b, args, e.span, scope).map(Value::Call)
            }
            ExprKind::Ident(name) => {
                if let Some(Binding::Const(v, _)) = scope.get(name) {
                    return self.conform(v.clone(), Ty::Of(kind), what, e.span);
                }
                let b = self.find_builtin(name, e.span, kind, scope)?;
                self.call(b, &[], e.span, scope).map(Value::Call)
            }
            ExprKind::Binary { op, lhs, rhs } if kind == Kind::Loss => {
                let terms =
                    |this: &mut Self, x: &Expr| -> Option<Result<Vec<(f64, CallValue)>, f64>> {
                        match &x.kind {
                            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Neg(_) => {
                                this.number(x, scope).map(|n| Err(n.f()))
                            }
                            ExprKind::Ident(n)
                                if matches!(
                                    scope.get(n),
                                    Some(Binding::Const(Value::Int(_) | Value::Float(_), _))
                                ) =>
                            {
                                this.number(x, scope).map(|n| Err(n.f()))
                            }
                            _ => match this.builtin_value(x, Kind::Loss, what, scope)? {
                                Value::Call(c) => Some(Ok(vec![(1.0, c)])),
                                Value::Losses(v) => Some(Ok(v)),
                                _ => None,
                            },
                        }
                    };
                let a = terms(self, lhs);
                let b = terms(self, rhs);
                let (a, b) = (a?, b?);
                let out = match (op, a, b) {
                    (BinOp::Add, Ok(mut x), Ok(y)) => {
                        x.extend(y);
                        x
                    }
                    (BinOp::Sub, Ok(mut x), Ok(y)) => {
                        x.extend(y.into_iter().map(|(w, c)| (-w, c)));
                        x
                    }
                    (BinOp::Mul, Err(s), Ok(x)) | (BinOp::Mul, Ok(x), Err(s)) => {
                        x.into_iter().map(|(w, c)| (w * s, c)).collect()
                    }
                    (BinOp::Div, Ok(x), Err(s)) if s != 0.0 => {
                        x.into_iter().map(|(w, c)| (w / s, c)).collect()
                    }
                    _ => {
                        self.error(
                            Diagnostic::new(
                                "type-mismatch",
                                e.span,
                                "losses combine as `a * loss + b * loss`",
                            )
                            .label("not a weighted sum of losses")
                            .help("scale a loss by a number and add losses together"),
                        );
                        return None;
                    }
                };
                Some(Value::Losses(out))
            }
            _ => {
                self.error(mismatch(e.span, kind.describe(), describe_expr(e), what));
                None
            }
        }
    }

    fn find_builtin(
        &mut self,
        name: &str,
        span: Span,
        kind: Kind,
        scope: &Scope,
    ) -> Option<&'static Builtin> {
        if let Some(b) = builtins::lookup(name, kind) {
            return Some(b);
        }
        if let Some(other) = builtins::lookup_any(name) {
            let mut d = Diagnostic::new(
                "wrong-kind",
                span,
                format!(
                    "`{name}` is {}, but {} is expected here",
                    other.kind.describe(),
                    kind.describe()
                ),
            )
            .label(format!("expected {}", kind.describe()));
            if other.kind == Kind::Router {
                d.code = "router-without-pool";
                d.message = format!("router `{name}` used without a pool");
                d.help = Some(format!(
                    "a router chooses modules of a pool: `route(POOL, router: {name}(...))`"
                ));
            }
            self.error(d);
            return None;
        }
        if scope.get(name).is_some() {
            self.error(
                Diagnostic::new(
                    "type-mismatch",
                    span,
                    format!("`{name}` is not {}", kind.describe()),
                )
                .label(format!("expected {}", kind.describe())),
            );
            return None;
        }
        let noun = match kind {
            Kind::Tensor => "function",
            Kind::Position => "position rule",
            Kind::Router => "router",
            Kind::Optimizer => "optimizer",
            Kind::Schedule => "schedule",
            Kind::Data => "data source",
            Kind::Transform => "transform",
            Kind::Loss => "loss",
            Kind::Reweight => "reweighting rule",
            Kind::Probe => "probe",
        };
        self.error(
            Diagnostic::new("unknown-name", span, format!("unknown {noun} `{name}`"))
                .label(format!("expected {}", kind.describe()))
                .help(
                    did_you_mean(name, builtins::names_of(kind)).unwrap_or_else(|| {
                        format!(
                            "available: {}",
                            builtins::names_of(kind)
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }),
                ),
        );
        None
    }

    /// Matches arguments to parameters, evaluates them, fills defaults.
    pub fn call(
        &mut self,
        b: &'static Builtin,
        args: &[Arg],
        span: Span,
        scope: &Scope,
    ) -> Option<CallValue> {
        let mut given: BTreeMap<&'static str, (&Expr, Span)> = BTreeMap::new();
        let mut ok = true;
        let mut seen_named = false;
        for (i, a) in args.iter().enumerate() {
            let param = match &a.name {
                Some(n) => {
                    seen_named = true;
                    match b.param(&n.name) {
                        Some(p) => p,
                        None => {
                            let names: Vec<&str> = b.params.iter().map(|p| p.name).collect();
                            self.error(
                                Diagnostic::new(
                                    "bad-argument",
                                    n.span,
                                    format!("`{}` has no argument `{}`", b.name, n.name),
                                )
                                .label("unknown argument")
                                .help(
                                    did_you_mean(&n.name, names.iter().copied()).unwrap_or_else(
                                        || {
                                            if names.is_empty() {
                                                format!("`{}` takes no arguments", b.name)
                                            } else {
                                                format!("`{}` takes {}", b.name, quoted(&names))
                                            }
                                        },
                                    ),
                                ),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
                None => {
                    if seen_named {
                        self.error(
                            Diagnostic::new(
                                "bad-argument",
                                a.value.span,
                                "positional argument after a named one",
                            )
                            .label("positional")
                            .help("put positional arguments first, or name this one"),
                        );
                        ok = false;
                        continue;
                    }
                    match b.params.get(i) {
                        Some(p) => p,
                        None => {
                            self.error(
                                Diagnostic::new(
                                    "bad-argument",
                                    a.value.span,
                                    format!(
                                        "`{}` takes at most {} positional argument{}",
                                        b.name,
                                        b.params.len(),
                                        if b.params.len() == 1 { "" } else { "s" }
                                    ),
                                )
                                .label("extra argument"),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            let here = a
                .name
                .as_ref()
                .map(|n| n.span.join(a.value.span))
                .unwrap_or(a.value.span);
            if let Some((_, first)) = given.get(param.name) {
                self.error(
                    Diagnostic::new(
                        "bad-argument",
                        here,
                        format!("argument `{}` given twice", param.name),
                    )
                    .label("second time")
                    .related(*first, "first given here"),
                );
                ok = false;
                continue;
            }
            given.insert(param.name, (&a.value, here));
        }
        let mut out = BTreeMap::new();
        for p in b.params {
            match (given.get(p.name), p.default) {
                (Some((e, _)), _) => match self.expect(e, p.ty, p.name, scope) {
                    Some(v) => {
                        ok &= self.bounded(b.name, p.name, &v, e.span);
                        out.insert(p.name.to_string(), v);
                    }
                    None => ok = false,
                },
                (None, None) => {
                    self.error(
                        Diagnostic::new(
                            "missing-argument",
                            span,
                            format!("`{}` needs argument `{}`", b.name, p.name),
                        )
                        .label(format!("`{}` missing", p.name))
                        .help(format!(
                            "`{}`: {} ({})",
                            p.name,
                            p.doc,
                            p.ty.describe()
                        )),
                    );
                    ok = false;
                }
                (None, Some("")) => {}
                (None, Some(src)) => {
                    if let Some(v) = self.default_value(src, p.ty, p.name, scope) {
                        out.insert(p.name.to_string(), v);
                    }
                }
            }
        }
        if !ok {
            return None;
        }
        Some(CallValue {
            name: b.name.to_string(),
            args: out,
            span,
        })
    }

    /// Checks an integer (or every integer of a list) against [`super::bounds`].
    pub fn bounded(&mut self, owner: &str, name: &str, v: &Value, span: Span) -> bool {
        match v {
            Value::Int(i) => super::bounds::check(self, owner, name, *i, span),
            Value::List(items) => {
                // Every element is reported, not just the first out of bounds.
                let mut ok = true;
                for x in items {
                    ok &= self.bounded(owner, name, x, span);
                }
                ok
            }
            _ => true,
        }
    }

    /// Evaluates a default written in the builtin table, in the current scope. A default
    /// that names a setting absent from this scope (e.g. `ctx` in a train section checked
    /// without a model) is left out rather than reported: the user did nothing wrong.
    pub fn default_value(
        &mut self,
        src: &'static str,
        ty: Ty,
        what: &str,
        scope: &Scope,
    ) -> Option<Value> {
        let e = match self.default_cache.get(src) {
            Some(e) => e.clone(),
            None => {
                let e = crate::parse::parse_expr(src).ok()?;
                self.default_cache.insert(src, e.clone());
                e
            }
        };
        let before = self.diags.len();
        let v = self.expect(&e, ty, what, scope);
        self.diags.truncate(before);
        v
    }
}

/// What `e` is when it can never be a number (a string, a list, a tensor...), else `None`.
fn non_number(e: &Expr, scope: &Scope) -> Option<String> {
    match &e.kind {
        ExprKind::Str(_) | ExprKind::Bool(_) | ExprKind::List(_) | ExprKind::Call { .. } => {
            Some(describe_expr(e).into())
        }
        ExprKind::Ident(name) => match scope.get(name) {
            Some(Binding::Tensor(_)) => Some("a tensor".into()),
            Some(Binding::Pool { .. }) => Some("a pool".into()),
            Some(Binding::Const(v, _)) if !matches!(v, Value::Int(_) | Value::Float(_)) => {
                Some(v.describe())
            }
            _ => None,
        },
        _ => None,
    }
}

fn choice_noun(what: &str) -> String {
    match what {
        "weights" => "weight rule".into(),
        "mask" => "mask rule".into(),
        "layout" => "rotary layout".into(),
        "position" => "position encoding".into(),
        "" => "name".into(),
        other => format!("value for `{other}`"),
    }
}

pub fn mismatch(span: Span, expected: &str, found: &str, what: &str) -> Diagnostic {
    let msg = if what.is_empty() {
        format!("type mismatch: expected {expected}, found {found}")
    } else {
        format!("type mismatch for `{what}`: expected {expected}, found {found}")
    };
    Diagnostic::new("type-mismatch", span, msg).label(format!("expected {expected}"))
}

pub fn describe_expr(e: &Expr) -> &'static str {
    match &e.kind {
        ExprKind::Int(_) => "an integer",
        ExprKind::Float(_) => "a number",
        ExprKind::Str(_) => "a string",
        ExprKind::Bool(_) => "a boolean",
        ExprKind::Ident(_) => "a name",
        ExprKind::List(_) => "a list",
        ExprKind::Call { .. } => "a call",
        ExprKind::Binary { op, .. } if !op.is_arithmetic() => "a comparison",
        ExprKind::Not(_) => "a comparison",
        ExprKind::Binary { .. } | ExprKind::Neg(_) => "an arithmetic expression",
    }
}

/// The diagnostic for a comparison or logic operator outside a rule definition.
pub(crate) fn logic_outside_rule(span: Span, symbol: &str) -> Diagnostic {
    Diagnostic::new(
        "rule-only",
        span,
        format!("`{symbol}` is only valid inside a `rule` definition"),
    )
    .label("comparison or logic outside a rule")
    .help("comparisons and `&&`/`||`/`!` build attention masks: `rule window { mask = j <= i && i - j < 64 }`")
}
