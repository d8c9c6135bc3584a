//! Semantic checks: names, types, dimension arithmetic, layer schedules, pools and routers,
//! training and program sections. The result, [`Checked`], is what lowering consumes.
//!
//! Invariant: a spec that checks cleanly always lowers; every rule the compiler relies on
//! (divisibility, schedule coverage, pool sizes, table lengths) is enforced here with a
//! diagnostic that points at the spec.

pub mod attn_rule;
pub mod bounds;
mod eval;
mod model;
mod rules;
mod train;
pub mod value;

pub use eval::{Binding, Scope};
use value::{CallValue, Value};

use crate::ast::{BlockDef, Expr, File, Program};
use crate::diagnostic::Diagnostic;
use crate::typed::{ModelConfig, Probe, ResolveError, Resolved, TensorCall, TrainSpec};
use crate::Span;
use serde::Serialize;
use std::collections::BTreeMap;

/// A checked spec: the AST plus every setting resolved to a value.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub model: ModelInfo,
    pub train: Option<TrainInfo>,
    pub programs: Vec<ProgramInfo>,
}

impl Checked {
    /// The globs over parameter names that train: the `train { trainable }` setting, or
    /// everything for a spec without a train section. The one reader of that setting.
    pub fn trainable(&self) -> Vec<String> {
        match &self.train {
            Some(t) => t.trainable.clone(),
            None => vec!["*".into()],
        }
    }
}

/// A checked `model` section.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub span: Span,
    /// The `MODEL_SETTINGS` entries, typed (`vocab`, `dim`, `heads`, ...): what consumers
    /// read. Resolved once by the checker, defaults filled.
    pub config: ModelConfig,
    /// Every setting of `MODEL_SETTINGS` (defaults filled) and every user constant, as block
    /// bodies see them.
    pub settings: BTreeMap<String, Value>,
    pub blocks: BTreeMap<String, BlockDef>,
    pub pools: BTreeMap<String, PoolInfo>,
    /// One entry per layer index, in order.
    pub layers: Vec<LayerPlan>,
    /// Attention rules by name: the standard prelude's (`softmax`, `signed`) and the file's.
    pub rules: BTreeMap<String, crate::typed::RuleDef>,
}

impl ModelInfo {
    /// A setting or user constant by name, as block bodies read it (`hidden`, `seq`); the
    /// model's own settings are read typed, from [`ModelInfo::config`].
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }

    /// Resolves weft source for one builtin call of `kind` (`"batch_icl(demos: 2)"`) in the
    /// model's scope, defaults filled: for callers that build calls rather than read a spec.
    pub fn call_source(
        &self,
        src: &str,
        kind: crate::builtins::Kind,
    ) -> Result<CallValue, Vec<Diagnostic>> {
        let e = crate::parse::parse_expr(src).map_err(|d| vec![d])?;
        let mut ev = self.eval();
        match ev.expect(&e, crate::builtins::Ty::Of(kind), "call", &self.scope()) {
            Some(Value::Call(c)) if ev.diags.is_empty() => Ok(c),
            _ => Err(ev.diags),
        }
    }

    /// A tensor construct of a block body, typed (see [`ModelInfo::resolve_call`]).
    pub fn resolve_tensor(
        &self,
        e: &Expr,
        params: &BTreeMap<String, Value>,
        locals: &[&str],
    ) -> Option<Result<TensorCall, ResolveError>> {
        self.resolve_call(e, crate::builtins::Kind::Tensor, params, locals)
            .map(|c| TensorCall::from_call(&c))
    }

    /// An evaluator that knows the model's attention rules.
    fn eval(&self) -> eval::Eval {
        let mut ev = eval::Eval::default();
        ev.rule_names = self.rules.keys().cloned().collect();
        ev
    }

    /// The rule `attention(rule: NAME)` or `weights: NAME` names (the checker made sure
    /// it exists).
    pub fn rule(&self, name: &str) -> Option<&crate::typed::RuleDef> {
        self.rules.get(name)
    }

    /// The scope block bodies are evaluated in (settings and pools), for lowering.
    pub fn scope(&self) -> Scope {
        let mut s = Scope::default();
        for (k, v) in &self.settings {
            s.insert(k, Binding::Const(v.clone(), self.span));
        }
        for (k, p) in &self.pools {
            s.insert(
                k,
                Binding::Pool {
                    size: p.size,
                    span: p.span,
                },
            );
        }
        s.insert("x", Binding::Tensor(self.span));
        s
    }

    /// Resolves a builtin call inside a block body with the given parameter values, filling
    /// defaults: lowering uses this so it never re-implements argument rules.
    /// `locals` are the tensor names assigned earlier in the block.
    pub fn resolve_call(
        &self,
        e: &Expr,
        kind: crate::builtins::Kind,
        params: &BTreeMap<String, Value>,
        locals: &[&str],
    ) -> Option<CallValue> {
        let mut scope = self.scope();
        for (k, v) in params {
            scope.insert(k, Binding::Param(Some(v.clone()), self.span));
        }
        for l in locals {
            scope.insert(l, Binding::Tensor(self.span));
        }
        let mut ev = self.eval();
        match ev.expect(e, crate::builtins::Ty::Of(kind), "", &scope)? {
            Value::Call(c) => Some(c),
            _ => None,
        }
    }
}

/// A checked `pool NAME[SIZE] { module }`.
#[derive(Clone, Debug, Serialize)]
pub struct PoolInfo {
    pub size: i64,
    pub module: Expr,
    pub span: Span,
}

/// What one layer index runs.
#[derive(Clone, Debug, Serialize)]
pub struct LayerPlan {
    pub block: String,
    /// Block parameter name → the value the layer rule passes.
    pub args: BTreeMap<String, Value>,
    /// The layer rule this came from.
    pub span: Span,
}

/// A checked `train` section: every setting typed, defaults filled.
pub type TrainInfo = TrainSpec;

/// A checked `program NAME = probe(...)`.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramInfo {
    pub name: String,
    /// The call as checked (argument values by name), for records of what ran.
    pub call: CallValue,
    pub probe: Probe,
    pub span: Span,
}

/// The diagnostic for a checked value that does not fit its type: a checker bug, reported
/// rather than panicked on.
pub(crate) fn unresolved(e: ResolveError) -> Diagnostic {
    Diagnostic::new("internal", e.span, format!("internal error: {e}"))
        .label("the checked value does not fit its type")
        .help("this is a bug in weft's checker; please report it with the spec")
}

/// Checks a parsed file. Returns every diagnostic found, in source order.
pub fn check(file: &File) -> Result<Checked, Vec<Diagnostic>> {
    let mut ev = eval::Eval::default();
    let mut models = file.models();
    let model = match models.next() {
        Some(m) => m,
        None => {
            let d = Diagnostic::new(
                "missing-model",
                Span::default(),
                "this file has no `model` section",
            )
            .label("expected `model NAME { ... }`")
            .help("every spec describes one model: `model gpt { vocab = 256 ... }`");
            return Err(vec![d]);
        }
    };
    if let Some(ext) = &model.extends {
        ev.error(
            Diagnostic::new(
                "extends",
                ext.span,
                format!("`extends \"{}\"` needs the spec's own path", ext.path),
            )
            .label("base spec not loaded")
            .help("check the file itself (`weft check FILE`, `weft_dsl::check_file`): the base path is relative to it"),
        );
    }
    for extra in models {
        ev.error(
            Diagnostic::new("duplicate", extra.name.span, "a spec holds one model")
                .label("second model")
                .related(model.name.span, "first model here")
                .help("put each model in its own file"),
        );
    }
    ev.rule_names = attn_rule::prelude()
        .keys()
        .cloned()
        .chain(file.rules().map(|r| r.name.name.clone()))
        .collect();
    let mut info = model::check_model(&mut ev, model);
    let empty = BTreeMap::new();
    let consts = info.as_ref().map_or(&empty, |m| &m.settings);
    let rules = attn_rule::check_rules(&mut ev, file.rules(), consts);
    if let Some(m) = info.as_mut() {
        m.rules = rules;
    }
    let mut trains = file.trains();
    let train = trains
        .next()
        .map(|t| train::check_train(&mut ev, t, model, info.as_ref()));
    for extra in trains {
        ev.error(
            Diagnostic::new(
                "duplicate",
                extra.span,
                "a spec holds at most one `train` section",
            )
            .label("second train section"),
        );
    }
    let programs = check_programs(&mut ev, file.programs(), info.as_ref());
    let mut diags = ev.diags;
    if diags.is_empty() {
        if let (Some(model), Some(programs)) = (info, programs) {
            return Ok(Checked {
                model,
                train: train.flatten(),
                programs,
            });
        }
    }
    diags.sort_by_key(|d| d.span.start);
    Err(diags)
}

fn check_programs<'a>(
    ev: &mut eval::Eval,
    programs: impl Iterator<Item = &'a Program>,
    model: Option<&ModelInfo>,
) -> Option<Vec<ProgramInfo>> {
    let scope = model.map(ModelInfo::scope).unwrap_or_default();
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for p in programs {
        if let Some(first) = seen.get(p.name.name.as_str()) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    p.name.span,
                    format!("program `{}` is defined twice", p.name.name),
                )
                .label("second definition")
                .related(*first, "first defined here"),
            );
            continue;
        }
        seen.insert(&p.name.name, p.name.span);
        if let Some(Value::Call(call)) = ev.expect(
            &p.value,
            crate::builtins::Ty::Of(crate::builtins::Kind::Probe),
            "program",
            &scope,
        ) {
            if let Some(m) = model {
                rules::probe_rules(ev, &call, m);
            }
            match Probe::from_call(&call) {
                Ok(probe) => out.push(ProgramInfo {
                    name: p.name.name.clone(),
                    call,
                    probe,
                    span: p.span,
                }),
                Err(e) => ev.error(unresolved(e)),
            }
        }
    }
    Some(out)
}

/// Parses and checks source text.
pub fn check_source(src: &str) -> Result<Checked, Vec<Diagnostic>> {
    let file = crate::parse(src)?;
    check(&file)
}
