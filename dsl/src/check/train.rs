//! Checks of a `train` section: known settings with types, value ranges, the objective and
//! the data transforms.

use super::eval::Eval;
use super::rules::probe_rules;
use super::value::Value;
use super::{ModelInfo, TrainInfo};
use crate::ast::{Model, Train};
use crate::builtins::TRAIN_SETTINGS;
use crate::diagnostic::did_you_mean;
use crate::diagnostic::Diagnostic;
use crate::typed::TrainSpec;
use crate::Span;
use std::collections::BTreeMap;

pub fn check_train(
    ev: &mut Eval,
    t: &Train,
    model: &Model,
    info: Option<&ModelInfo>,
) -> Option<TrainInfo> {
    if let Some(name) = &t.model {
        if name.name != model.name.name {
            ev.error(
                Diagnostic::new(
                    "unknown-name",
                    name.span,
                    format!("unknown model `{}`", name.name),
                )
                .label("not the model of this file")
                .help(format!("this file's model is `{}`", model.name.name)),
            );
        }
    }
    let scope = info.map(ModelInfo::scope).unwrap_or_default();
    let mut settings = BTreeMap::new();
    let mut spans: BTreeMap<&str, Span> = BTreeMap::new();
    let mut ok = true;
    for a in &t.items {
        let Some(p) = TRAIN_SETTINGS.iter().find(|p| p.name == a.name.name) else {
            ev.error(
                Diagnostic::new(
                    "unknown-setting",
                    a.name.span,
                    format!("unknown training setting `{}`", a.name.name),
                )
                .label("not a training setting")
                .help(
                    did_you_mean(&a.name.name, TRAIN_SETTINGS.iter().map(|p| p.name))
                        .unwrap_or_else(|| {
                            format!(
                                "settings: {}",
                                TRAIN_SETTINGS
                                    .iter()
                                    .map(|p| p.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }),
                ),
            );
            ok = false;
            continue;
        };
        if let Some(first) = spans.get(p.name) {
            ev.error(
                Diagnostic::new(
                    "duplicate",
                    a.name.span,
                    format!("`{}` is set twice", p.name),
                )
                .label("second time")
                .related(*first, "first set here"),
            );
            ok = false;
            continue;
        }
        spans.insert(p.name, a.value.span);
        match ev.expect(&a.value, p.ty, p.name, &scope) {
            Some(v) => {
                ok &= ev.bounded("train", p.name, &v, a.value.span);
                settings.insert(p.name.to_string(), v);
            }
            None => ok = false,
        }
    }
    for p in TRAIN_SETTINGS {
        // Given but invalid: already reported, not missing.
        if settings.contains_key(p.name) || spans.contains_key(p.name) {
            continue;
        }
        match p.default {
            None => {
                ev.error(
                    Diagnostic::new(
                        "missing-setting",
                        t.span.start_only(),
                        format!("training needs `{}`", p.name),
                    )
                    .label(format!("`{}` missing", p.name))
                    .help(format!("add `{} = ...` ({})", p.name, p.doc)),
                );
                ok = false;
            }
            Some(src) => {
                if let Some(v) = ev.default_value(src, p.ty, p.name, &scope) {
                    settings.insert(p.name.to_string(), v);
                }
            }
        }
    }
    if !ok {
        return None;
    }
    let at = |k: &str| spans.get(k).copied().unwrap_or(t.span.start_only());
    for key in ["steps", "batch", "accumulate", "eval_every", "log_every"] {
        if let Some(v) = settings.get(key).and_then(Value::as_int) {
            if v < 1 {
                ev.error(
                    Diagnostic::new(
                        "bad-value",
                        at(key),
                        format!("`{key}` must be positive, not {v}"),
                    )
                    .label("must be ≥ 1"),
                );
            }
        }
    }
    for key in ["checkpoint_every", "keep_checkpoints"] {
        if let Some(v) = settings.get(key).and_then(Value::as_int) {
            if v < 0 {
                ev.error(
                    Diagnostic::new(
                        "bad-value",
                        at(key),
                        format!("`{key}` must not be negative, not {v}"),
                    )
                    .label("must be ≥ 0"),
                );
            }
        }
    }
    if let Some(m) = settings.get("checkpoint_minutes").and_then(Value::as_f64) {
        if m < 0.0 {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    at("checkpoint_minutes"),
                    format!("`checkpoint_minutes` must not be negative, not {m}"),
                )
                .label("must be ≥ 0")
                .help("0 turns the wall-time cadence off"),
            );
        }
    }
    if let (Some(seq), Some(m)) = (settings.get("seq").and_then(Value::as_int), info) {
        let ctx = m.config.ctx as i64;
        if seq < 1 || seq > ctx {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    at("seq"),
                    format!("seq = {seq}, but the model's context is {ctx}"),
                )
                .label(format!("must be in 1 ..= {ctx}"))
                .help("raise `ctx` in the model or shorten `seq`"),
            );
        }
    }
    if let Some(opt) = settings.get("optimizer").and_then(Value::as_call) {
        if opt.float("lr").is_some_and(|lr| lr <= 0.0) {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    at("optimizer"),
                    "learning rate must be positive",
                )
                .label("lr ≤ 0"),
            );
        }
        if let Some(b) = opt.get("betas").and_then(Value::as_list) {
            let ok = b.len() == 2
                && b.iter()
                    .all(|v| v.as_f64().is_some_and(|x| (0.0..1.0).contains(&x)));
            if !ok {
                ev.error(
                    Diagnostic::new(
                        "bad-value",
                        at("optimizer"),
                        "betas must be two numbers in [0, 1)",
                    )
                    .label("bad betas")
                    .help("e.g. `betas: [0.9, 0.95]`"),
                );
            }
        }
    }
    if let Some(Value::List(ts)) = settings.get("transforms") {
        for t in ts.iter().filter_map(Value::as_call) {
            if t.float("p").is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                ev.error(
                    Diagnostic::new("bad-value", t.span, "mask rate `p` must lie in [0, 1]")
                        .label("out of range"),
                );
            }
        }
    }
    if let Some(Value::List(globs)) = settings.get("trainable") {
        if globs.is_empty() {
            ev.error(
                Diagnostic::new("bad-value", at("trainable"), "no parameter is trainable")
                    .label("empty list")
                    .help("use `[\"*\"]` for everything, or globs such as `[\"*.gain\"]`"),
            );
        }
    }
    if let (Some(Value::List(probes)), Some(m)) = (settings.get("eval"), info) {
        for p in probes.iter().filter_map(Value::as_call) {
            probe_rules(ev, p, m);
        }
    }
    // The typed section needs every default, which a failed model check can leave out;
    // the spec fails to check anyway.
    if !ev.diags.is_empty() {
        return None;
    }
    match TrainSpec::from_settings(&settings, t.span) {
        Ok(spec) => Some(spec),
        Err(e) => {
            ev.error(super::unresolved(e));
            None
        }
    }
}

impl Span {
    /// The first character only: for "missing X" errors on a whole section.
    pub fn start_only(self) -> Span {
        Span::new(
            self.start,
            (self.start + 1).min(self.end.max(self.start + 1)),
        )
    }
}
