//! Attention rules (`rule NAME { score = ...; mask = ...; weights = ... }`): types of the
//! rule expressions (numbers and booleans kept apart), which variables each part may read,
//! per-head parameters, and the form of the normaliser the fused kernels can evaluate online.
//! The standard prelude (`prelude.weft`: `softmax`, `signed`) is checked by the same code.

use super::eval::Eval;
use super::value::Value;
use crate::ast::{self, BinOp, Expr, ExprKind};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::typed::{HeadParam, ParamInit, RuleDef, RuleExpr, RuleFn, RuleOp, RuleVar, RuleWeights};
use crate::Span;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The prelude's source: the built-in rules, written in the language.
pub const PRELUDE: &str = include_str!("../prelude.weft");

/// The prelude's rules, checked once. The prelude is weft's own text (a test checks it
/// cleanly), so a failure here is an empty table rather than a panic.
pub fn prelude() -> &'static BTreeMap<String, RuleDef> {
    static P: OnceLock<BTreeMap<String, RuleDef>> = OnceLock::new();
    P.get_or_init(|| {
        let Ok(file) = crate::parse(PRELUDE) else {
            return BTreeMap::new();
        };
        let mut ev = Eval::default();
        let rules = check_defs(&mut ev, file.rules(), &BTreeMap::new(), &BTreeMap::new());
        if ev.diags.is_empty() {
            rules
        } else {
            BTreeMap::new()
        }
    })
}

/// The prelude's diagnostics (empty when it checks cleanly), for the test that keeps it so.
pub fn prelude_diagnostics() -> Vec<Diagnostic> {
    match crate::parse(PRELUDE) {
        Err(d) => d,
        Ok(file) => {
            let mut ev = Eval::default();
            check_defs(&mut ev, file.rules(), &BTreeMap::new(), &BTreeMap::new());
            ev.diags
        }
    }
}

/// Checks a file's rules against the model's numeric constants; returns the prelude's rules
/// and the file's, by name.
pub(crate) fn check_rules<'a>(
    ev: &mut Eval,
    defs: impl Iterator<Item = &'a ast::RuleDef>,
    consts: &BTreeMap<String, Value>,
) -> BTreeMap<String, RuleDef> {
    let mut out = prelude().clone();
    let user = check_defs(ev, defs, consts, prelude());
    out.extend(user);
    out
}

fn check_defs<'a>(
    ev: &mut Eval,
    defs: impl Iterator<Item = &'a ast::RuleDef>,
    consts: &BTreeMap<String, Value>,
    taken: &BTreeMap<String, RuleDef>,
) -> BTreeMap<String, RuleDef> {
    let mut out = BTreeMap::new();
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for d in defs {
        let name = &d.name.name;
        if taken.contains_key(name) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    d.name.span,
                    format!("`{name}` is a rule of the standard prelude"),
                )
                .label("redefines a built-in rule")
                .help("give the rule another name; `softmax` and `signed` keep their meaning in every spec"),
            );
            continue;
        }
        if let Some(first) = seen.get(name) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    d.name.span,
                    format!("rule `{name}` is defined twice"),
                )
                .label("second definition")
                .related(*first, "first defined here"),
            );
            continue;
        }
        seen.insert(name.clone(), d.name.span);
        if let Some(r) = check_def(ev, d, consts) {
            out.insert(name.clone(), r);
        }
    }
    out
}

/// Which part of a rule an expression is.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Score,
    Mask,
    Weights,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Score => "score",
            Part::Mask => "mask",
            Part::Weights => "weights",
        }
    }

    /// Whether this part may read `v`, and why not.
    fn allows(self, v: RuleVar) -> Result<(), &'static str> {
        match (self, v) {
            (Part::Mask, RuleVar::Score) => Err("a mask decides visibility before any score exists; put score terms into `score`"),
            (Part::Weights, RuleVar::Score | RuleVar::Keys) => Ok(()),
            (Part::Weights, _) => Err("the normaliser sees only the scores (`s`) and `n`; put position and head terms into `score`"),
            (Part::Score | Part::Mask, _) => Ok(()),
        }
    }
}

/// A rule expression's type.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Num,
    Bool,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Num => "a number",
            Kind::Bool => "a condition (true or false)",
        }
    }
}

struct Ctx<'a> {
    consts: &'a BTreeMap<String, Value>,
    params: &'a [HeadParam],
    part: Part,
}

fn check_def(ev: &mut Eval, d: &ast::RuleDef, consts: &BTreeMap<String, Value>) -> Option<RuleDef> {
    let mut params = Vec::new();
    let mut parts: BTreeMap<&str, &ast::Assign> = BTreeMap::new();
    let mut ok = true;
    for a in &d.items {
        let n = a.name.name.as_str();
        if let Some(first) = parts.get(n) {
            ev.error(
                Diagnostic::new("duplicate", a.name.span, format!("`{n}` is set twice"))
                    .label("second setting")
                    .related(first.name.span, "first set here"),
            );
            ok = false;
            continue;
        }
        parts.insert(n, a);
        if matches!(n, "score" | "mask" | "weights") {
            continue;
        }
        if RuleVar::named(n).is_some() || RuleFn::named(n).is_some() || n == "sum" {
            ev.error(
                Diagnostic::new(
                    "reserved",
                    a.name.span,
                    format!("`{n}` is a variable or function of rule expressions"),
                )
                .label("cannot be a parameter name")
                .help("name the parameter differently, e.g. `slope`"),
            );
            ok = false;
            continue;
        }
        match head_param(ev, a) {
            Some(init) => params.push(init),
            None => ok = false,
        }
    }
    let mut ctx = Ctx {
        consts,
        params: &params,
        part: Part::Score,
    };
    let score = match parts.get("score") {
        Some(a) => match typed(ev, &a.value, &ctx, Kind::Num) {
            Some(e) => Some(e),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    ctx.part = Part::Mask;
    let mask = match parts.get("mask") {
        Some(a) => match typed(ev, &a.value, &ctx, Kind::Bool) {
            Some(e) => Some(e),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    ctx.part = Part::Weights;
    let weights = match parts.get("weights") {
        Some(a) => match weights(ev, &a.value, &ctx) {
            Some(w) => Some(w),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    if let (true, Some(e)) = (ok, &score) {
        for (i, p) in params.iter().enumerate() {
            if !reads_param(e, i) {
                ev.error(
                    Diagnostic::new(
                        "unused",
                        d.name.span,
                        format!("rule `{}` never reads its parameter `{}`", d.name.name, p.name),
                    )
                    .label("parameter not used in `score`")
                    .help("per-head parameters enter through `score`, e.g. `score = s - slope * (i - j)`"),
                );
                ok = false;
            }
        }
    } else if ok && !params.is_empty() {
        ev.error(
            Diagnostic::new(
                "unused",
                d.name.span,
                format!("rule `{}` has parameters but no `score`", d.name.name),
            )
            .label("parameters unused")
            .help("per-head parameters enter through `score`, e.g. `score = s - slope * (i - j)`"),
        );
        ok = false;
    }
    ok.then(|| RuleDef {
        name: d.name.name.clone(),
        score,
        mask,
        weights,
        params,
    })
}

fn reads_param(e: &RuleExpr, i: usize) -> bool {
    match e {
        RuleExpr::Param(p) => *p == i,
        RuleExpr::Num(_) | RuleExpr::Var(_) => false,
        RuleExpr::Neg(a) | RuleExpr::Not(a) => reads_param(a, i),
        RuleExpr::Bin(_, a, b) => reads_param(a, i) || reads_param(b, i),
        RuleExpr::Call(_, args) => args.iter().any(|a| reads_param(a, i)),
    }
}

/// `NAME = head_param(init: alibi | NUMBER, trainable: BOOL)`.
fn head_param(ev: &mut Eval, a: &ast::Assign) -> Option<HeadParam> {
    let bad = |span: Span, what: String| {
        Diagnostic::new("bad-rule-param", span, what)
            .label("not a rule parameter")
            .help("a rule holds `score`, `mask`, `weights` and per-head parameters `NAME = head_param(init: alibi, trainable: true)`")
    };
    let ExprKind::Call { func, args } = &a.value.kind else {
        ev.error(bad(
            a.name.span,
            format!("`{}` is not a part of a rule", a.name.name),
        ));
        return None;
    };
    if func.name != "head_param" {
        ev.error(bad(
            func.span,
            format!("`{}(...)` is not a rule parameter", func.name),
        ));
        return None;
    }
    let mut init = ParamInit::Value(0.0);
    let mut trainable = false;
    for arg in args {
        let Some(n) = &arg.name else {
            ev.error(bad(
                arg.value.span,
                "`head_param` takes named arguments `init:` and `trainable:`".into(),
            ));
            return None;
        };
        match (n.name.as_str(), &arg.value.kind) {
            ("init", ExprKind::Ident(i)) if i == "alibi" => init = ParamInit::Alibi,
            ("init", ExprKind::Int(i)) => init = ParamInit::Value(*i as f64),
            ("init", ExprKind::Float(f)) if f.is_finite() => init = ParamInit::Value(*f),
            ("init", ExprKind::Neg(inner)) => match inner.kind {
                ExprKind::Int(i) => init = ParamInit::Value(-(i as f64)),
                ExprKind::Float(f) if f.is_finite() => init = ParamInit::Value(-f),
                _ => {
                    ev.error(bad(arg.value.span, "`init` is `alibi` or a number".into()));
                    return None;
                }
            },
            ("trainable", ExprKind::Bool(b)) => trainable = *b,
            ("init", _) => {
                ev.error(bad(arg.value.span, "`init` is `alibi` or a number".into()));
                return None;
            }
            ("trainable", _) => {
                ev.error(bad(
                    arg.value.span,
                    "`trainable` is `true` or `false`".into(),
                ));
                return None;
            }
            (other, _) => {
                ev.error(bad(
                    n.span,
                    format!("`head_param` has no argument `{other}`"),
                ));
                return None;
            }
        }
    }
    Some(HeadParam {
        name: a.name.name.clone(),
        init,
        trainable,
    })
}

fn mismatch(span: Span, want: Kind, found: Kind, part: Part) -> Diagnostic {
    Diagnostic::new(
        "type-mismatch",
        span,
        format!(
            "type mismatch in `{}`: expected {}, found {}",
            part.name(),
            want.describe(),
            found.describe()
        ),
    )
    .label(format!("expected {}", want.describe()))
    .help(match want {
        Kind::Bool => "conditions compare numbers (`j <= i`) and combine with `&&`, `||`, `!`",
        Kind::Num => "numbers combine with `+ - * /` and functions; `where(cond, a, b)` turns a condition into a number",
    })
}

/// `e` as an expression of type `want`.
fn typed(ev: &mut Eval, e: &Expr, ctx: &Ctx, want: Kind) -> Option<RuleExpr> {
    let (x, k) = expr(ev, e, ctx)?;
    if k != want {
        ev.error(mismatch(e.span, want, k, ctx.part));
        return None;
    }
    Some(x)
}

fn expr(ev: &mut Eval, e: &Expr, ctx: &Ctx) -> Option<(RuleExpr, Kind)> {
    match &e.kind {
        ExprKind::Int(i) => Some((RuleExpr::Num(*i as f64), Kind::Num)),
        ExprKind::Float(f) if f.is_finite() => Some((RuleExpr::Num(*f), Kind::Num)),
        ExprKind::Float(_) => {
            ev.error(
                Diagnostic::new(
                    "too-large",
                    e.span,
                    "this number does not fit in a 64-bit float",
                )
                .label("too large"),
            );
            None
        }
        ExprKind::Bool(b) => Some((RuleExpr::Num(f64::from(u8::from(*b))), Kind::Bool)),
        ExprKind::Str(_) | ExprKind::List(_) => {
            ev.error(
                Diagnostic::new(
                    "type-mismatch",
                    e.span,
                    format!(
                        "type mismatch in `{}`: expected a number or a condition, found {}",
                        ctx.part.name(),
                        super::eval::describe_expr(e)
                    ),
                )
                .label("not a rule expression"),
            );
            None
        }
        ExprKind::Ident(name) => ident(ev, name, e.span, ctx),
        ExprKind::Neg(inner) => {
            let x = typed(ev, inner, ctx, Kind::Num)?;
            Some((RuleExpr::Neg(Box::new(x)), Kind::Num))
        }
        ExprKind::Not(inner) => {
            let x = typed(ev, inner, ctx, Kind::Bool)?;
            Some((RuleExpr::Not(Box::new(x)), Kind::Bool))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (rop, operand, result) = match op {
                BinOp::Add => (RuleOp::Add, Kind::Num, Kind::Num),
                BinOp::Sub => (RuleOp::Sub, Kind::Num, Kind::Num),
                BinOp::Mul => (RuleOp::Mul, Kind::Num, Kind::Num),
                BinOp::Div => (RuleOp::Div, Kind::Num, Kind::Num),
                BinOp::Lt => (RuleOp::Lt, Kind::Num, Kind::Bool),
                BinOp::Le => (RuleOp::Le, Kind::Num, Kind::Bool),
                BinOp::Gt => (RuleOp::Gt, Kind::Num, Kind::Bool),
                BinOp::Ge => (RuleOp::Ge, Kind::Num, Kind::Bool),
                BinOp::Eq => (RuleOp::Eq, Kind::Num, Kind::Bool),
                BinOp::Ne => (RuleOp::Ne, Kind::Num, Kind::Bool),
                BinOp::And => (RuleOp::And, Kind::Bool, Kind::Bool),
                BinOp::Or => (RuleOp::Or, Kind::Bool, Kind::Bool),
            };
            let a = typed(ev, lhs, ctx, operand);
            let b = typed(ev, rhs, ctx, operand);
            Some((RuleExpr::Bin(rop, Box::new(a?), Box::new(b?)), result))
        }
        ExprKind::Call { func, args } => call(ev, e, func, args, ctx),
    }
}

fn ident(ev: &mut Eval, name: &str, span: Span, ctx: &Ctx) -> Option<(RuleExpr, Kind)> {
    if let Some(v) = RuleVar::named(name) {
        if let Err(why) = ctx.part.allows(v) {
            ev.error(
                Diagnostic::new(
                    "rule-variable",
                    span,
                    format!("`{}` cannot read `{name}`", ctx.part.name()),
                )
                .label("not available here")
                .help(why),
            );
            return None;
        }
        return Some((RuleExpr::Var(v), Kind::Num));
    }
    if let Some(i) = ctx.params.iter().position(|p| p.name == name) {
        if ctx.part != Part::Score {
            ev.error(
                Diagnostic::new(
                    "rule-variable",
                    span,
                    format!("`{}` cannot read the parameter `{name}`", ctx.part.name()),
                )
                .label("parameters enter through `score`")
                .help("use the parameter in `score`, e.g. `score = s - slope * (i - j)`"),
            );
            return None;
        }
        return Some((RuleExpr::Param(i), Kind::Num));
    }
    match ctx.consts.get(name) {
        Some(Value::Int(i)) => return Some((RuleExpr::Num(*i as f64), Kind::Num)),
        Some(Value::Float(f)) => return Some((RuleExpr::Num(*f), Kind::Num)),
        Some(Value::Bool(b)) => return Some((RuleExpr::Num(f64::from(u8::from(*b))), Kind::Bool)),
        _ => {}
    }
    let mut cands: Vec<&str> = RuleVar::ALL.iter().map(|(_, n)| *n).collect();
    cands.extend(ctx.params.iter().map(|p| p.name.as_str()));
    cands.extend(ctx.consts.keys().map(String::as_str));
    ev.error(
        Diagnostic::new("unknown-name", span, format!("unknown name `{name}` in a rule"))
            .label("not a rule variable, parameter or model constant")
            .help(did_you_mean(name, cands.iter().copied()).unwrap_or_else(|| {
                "rule expressions read `s`, `i`, `j`, `head`, `kv_head`, `layer`, `n`, `seg_i`, `seg_j`, the rule's parameters and the model's number constants".into()
            })),
    );
    None
}

fn call(
    ev: &mut Eval,
    e: &Expr,
    func: &ast::Ident,
    args: &[ast::Arg],
    ctx: &Ctx,
) -> Option<(RuleExpr, Kind)> {
    if func.name == "sum" {
        ev.error(
            Diagnostic::new(
                "rule-sum",
                e.span,
                "`sum(...)` is only valid in the denominator of `weights`",
            )
            .label("a sum over keys here")
            .help("write a normaliser as `weights = h(s) * exp(f(s)) / (c + sum(exp(f(s))))`"),
        );
        return None;
    }
    let Some((f, arity)) = RuleFn::named(&func.name) else {
        ev.error(
            Diagnostic::new(
                "unknown-function",
                func.span,
                format!("unknown function `{}` in a rule", func.name),
            )
            .label("not a rule function")
            .help(
                did_you_mean(&func.name, RuleFn::ALL.iter().map(|(_, n, _)| *n)).unwrap_or_else(
                    || {
                        "rule functions: exp, log, tanh, sigmoid, abs, sign, sqrt, min, max, where"
                            .into()
                    },
                ),
            ),
        );
        return None;
    };
    if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
        ev.error(
            Diagnostic::new(
                "bad-arguments",
                e.span,
                format!(
                    "`{}` takes {arity} positional argument{}",
                    func.name,
                    if arity == 1 { "" } else { "s" }
                ),
            )
            .label(format!("{} given", args.len())),
        );
        return None;
    }
    let kinds: &[Kind] = match f {
        RuleFn::Where => &[Kind::Bool, Kind::Num, Kind::Num],
        _ => &[Kind::Num, Kind::Num],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (a, k) in args.iter().zip(kinds) {
        match typed(ev, &a.value, ctx, *k) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some((RuleExpr::Call(f, out), Kind::Num))
}

fn contains_sum(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Call { func, args } => {
            func.name == "sum" || args.iter().any(|a| contains_sum(&a.value))
        }
        ExprKind::Binary { lhs, rhs, .. } => contains_sum(lhs) || contains_sum(rhs),
        ExprKind::Neg(a) | ExprKind::Not(a) => contains_sum(a),
        ExprKind::List(items) => items.iter().any(contains_sum),
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Str(_)
        | ExprKind::Bool(_)
        | ExprKind::Ident(_) => false,
    }
}

/// Why the kernels need the normaliser's form, for the diagnostics that refuse one.
const ONLINE_WHY: &str = "the fused kernels visit keys in blocks and keep a running maximum m of f(s); \
they can only rescale what they accumulated when the weights have the form \
`h(s) * exp(f(s)) / (c + sum(exp(f(s))))` with the same f in numerator and denominator and a constant c >= 0 \
(softmax: h = 1, f = s; Cog: h = sign(s), f = abs(s)), or no `sum` at all";

fn not_online(span: Span, what: &str) -> Diagnostic {
    Diagnostic::new(
        "not-online",
        span,
        format!("these weights cannot be evaluated online: {what}"),
    )
    .label("not of the form h(s)·exp(f(s)) / (c + Σ exp(f(s)))")
    .help(ONLINE_WHY)
}

/// `weights = ...`: a direct function of `s`, or a normaliser the kernels evaluate online.
fn weights(ev: &mut Eval, e: &Expr, ctx: &Ctx) -> Option<RuleWeights> {
    if !contains_sum(e) {
        return typed(ev, e, ctx, Kind::Num).map(RuleWeights::Direct);
    }
    let ExprKind::Binary {
        op: BinOp::Div,
        lhs: num,
        rhs: den,
    } = &e.kind
    else {
        ev.error(not_online(
            e.span,
            "a `sum` must be the whole denominator of one division",
        ));
        return None;
    };
    // The denominator: `sum(ψ)`, `c + sum(ψ)` or `sum(ψ) + c`.
    let (sum, sink) = match &den.kind {
        ExprKind::Call { func, .. } if func.name == "sum" => (&**den, None),
        ExprKind::Binary {
            op: BinOp::Add,
            lhs,
            rhs,
        } => match (is_sum(lhs), is_sum(rhs)) {
            (true, false) => (&**lhs, Some(&**rhs)),
            (false, true) => (&**rhs, Some(&**lhs)),
            _ => {
                ev.error(not_online(
                    den.span,
                    "the denominator must be `c + sum(exp(f(s)))`",
                ));
                return None;
            }
        },
        _ => {
            ev.error(not_online(
                den.span,
                "the denominator must be `sum(exp(f(s)))` or `c + sum(exp(f(s)))`",
            ));
            return None;
        }
    };
    let sink = match sink {
        None => 0.0,
        Some(c) => {
            let x = typed(ev, c, ctx, Kind::Num)?;
            match constant(&x) {
                Some(v) if v >= 0.0 => v,
                _ => {
                    ev.error(not_online(
                        c.span,
                        "the constant added to the sum must be a number c >= 0",
                    ));
                    return None;
                }
            }
        }
    };
    let ExprKind::Call { args, .. } = &sum.kind else {
        return None;
    };
    let [arg] = args.as_slice() else {
        ev.error(
            Diagnostic::new("bad-arguments", sum.span, "`sum` takes one argument")
                .label(format!("{} given", args.len())),
        );
        return None;
    };
    let Some(psi_f) = exp_arg(&arg.value) else {
        ev.error(not_online(
            arg.value.span,
            "the summed term must be `exp(f(s))`",
        ));
        return None;
    };
    if contains_sum(psi_f) || contains_sum(num) {
        ev.error(not_online(e.span, "only one `sum` is allowed"));
        return None;
    }
    let f = typed(ev, psi_f, ctx, Kind::Num)?;
    // The numerator: `exp(f)`, `h * exp(f)` or `exp(f) * h`.
    let (factor, num_f) = match &num.kind {
        ExprKind::Binary {
            op: BinOp::Mul,
            lhs,
            rhs,
        } => match (exp_arg(lhs), exp_arg(rhs)) {
            (_, Some(g)) if same(g, &f, ctx) => (Some(&**lhs), g),
            (Some(g), _) => (Some(&**rhs), g),
            (None, Some(g)) => (Some(&**lhs), g),
            (None, None) => {
                ev.error(not_online(
                    num.span,
                    "the numerator must be `h(s) * exp(f(s))` with the denominator's f",
                ));
                return None;
            }
        },
        _ => match exp_arg(num) {
            Some(g) => (None, g),
            None => {
                ev.error(not_online(
                    num.span,
                    "the numerator must be `exp(f(s))` or `h(s) * exp(f(s))`",
                ));
                return None;
            }
        },
    };
    let g = typed(ev, num_f, ctx, Kind::Num)?;
    if g != f {
        ev.error(not_online(
            num_f.span,
            "the numerator's exponent differs from the denominator's",
        ));
        return None;
    }
    let factor = match factor {
        Some(h) => Some(typed(ev, h, ctx, Kind::Num)?),
        None => None,
    };
    Some(RuleWeights::Normalised {
        factor,
        exponent: f,
        sink,
    })
}

fn is_sum(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { func, .. } if func.name == "sum")
}

/// `x` of `exp(x)`.
fn exp_arg(e: &Expr) -> Option<&Expr> {
    match &e.kind {
        ExprKind::Call { func, args }
            if func.name == "exp" && args.len() == 1 && args[0].name.is_none() =>
        {
            Some(&args[0].value)
        }
        _ => None,
    }
}

/// Whether `e` checks to `f` (without reporting its errors: the other branch will).
fn same(e: &Expr, f: &RuleExpr, ctx: &Ctx) -> bool {
    let mut scratch = Eval::default();
    typed(&mut scratch, e, ctx, Kind::Num).as_ref() == Some(f)
}

/// The value of a constant expression.
fn constant(e: &RuleExpr) -> Option<f64> {
    match e {
        RuleExpr::Num(v) => Some(*v),
        RuleExpr::Neg(a) => constant(a).map(|v| -v),
        RuleExpr::Bin(op, a, b) => {
            let (a, b) = (constant(a)?, constant(b)?);
            match op {
                RuleOp::Add => Some(a + b),
                RuleOp::Sub => Some(a - b),
                RuleOp::Mul => Some(a * b),
                RuleOp::Div if b != 0.0 => Some(a / b),
                _ => None,
            }
        }
        _ => None,
    }
}
