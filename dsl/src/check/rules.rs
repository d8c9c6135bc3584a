//! Rules beyond types: divisibility, table lengths, pool and router consistency, value
//! ranges. Each reports at the argument that breaks it.

use super::eval::{Binding, Eval, Scope};
use super::value::{CallValue, Value};
use super::ModelInfo;
use crate::ast::Arg;
use crate::diagnostic::Diagnostic;
use crate::Span;
use std::collections::BTreeMap;

/// Model-level dimension rules. Returns false when any failed.
pub fn model_rules(
    ev: &mut Eval,
    scope: &Scope,
    spans: &BTreeMap<&str, Span>,
    fallback: Span,
) -> bool {
    let mut ok = true;
    let at = |k: &str| spans.get(k).copied().unwrap_or(fallback);
    for key in [
        "vocab", "dim", "heads", "layers", "ctx", "kv_heads", "head_dim",
    ] {
        let v = scope.int(key).unwrap_or(0);
        if v <= 0 {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    at(key),
                    format!("`{key}` must be positive, not {v}"),
                )
                .label("must be ≥ 1"),
            );
            ok = false;
        }
    }
    let (heads, kv) = (
        scope.int("heads").unwrap_or(1),
        scope.int("kv_heads").unwrap_or(1),
    );
    if ok && heads % kv != 0 {
        ev.error(
            Diagnostic::new("indivisible", at("kv_heads"), format!("heads ({heads}) is not divisible by kv_heads ({kv})"))
                .label("kv_heads must divide heads")
                .help("grouped-query attention shares each key/value head among heads / kv_heads query heads"),
        );
        ok = false;
    }
    // Each bounded alone, the query projection `[dim, heads · head_dim]` could still hold more
    // elements than a 64-bit size counts.
    let width = heads.saturating_mul(scope.int("head_dim").unwrap_or(1));
    if ok && width > super::bounds::MAX_WIDTH {
        ev.error(
            Diagnostic::new(
                "too-large",
                at("head_dim"),
                format!(
                    "heads × head_dim is {width}, larger than any attention width weft accepts ({})",
                    super::bounds::MAX_WIDTH
                ),
            )
            .label("too wide")
            .related(at("heads"), "heads set here")
            .help("lower `heads` or `head_dim`"),
        );
        ok = false;
    }
    if let Some(Binding::Const(v, _)) = scope.get("final_norm_eps") {
        let eps = v.as_f64().unwrap_or(0.0);
        if eps <= 0.0 {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    at("final_norm_eps"),
                    format!("`final_norm_eps` must be positive, not {eps}"),
                )
                .label("must be > 0"),
            );
            ok = false;
        }
    }
    ok
}

fn arg_span(args: &[Arg], name: &str, index: usize, fallback: Span) -> Span {
    args.iter()
        .enumerate()
        .find(|(i, a)| {
            a.name
                .as_ref()
                .map(|n| n.name == name)
                .unwrap_or(*i == index)
        })
        .map(|(_, a)| a.value.span)
        .unwrap_or(fallback)
}

#[allow(clippy::too_many_arguments)]
fn range(
    ev: &mut Eval,
    call: &CallValue,
    args: &[Arg],
    name: &str,
    index: usize,
    lo: f64,
    hi: f64,
    hi_open: bool,
) {
    if let Some(v) = call.float(name) {
        let bad = v < lo || v > hi || (hi_open && v >= hi);
        if bad {
            let bound = if hi_open {
                format!("[{lo}, {hi})")
            } else {
                format!("[{lo}, {hi}]")
            };
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    arg_span(args, name, index, call.span),
                    format!("`{name}` must lie in {bound}, not {v}"),
                )
                .label("out of range"),
            );
        }
    }
}

fn positive(ev: &mut Eval, call: &CallValue, args: &[Arg], name: &str, index: usize) {
    if let Some(v) = call.float(name) {
        if v <= 0.0 {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    arg_span(args, name, index, call.span),
                    format!("`{name}` must be positive, not {v}"),
                )
                .label("must be > 0"),
            );
        }
    }
}

/// Rules for tensor builtins, checked with the call's resolved values.
pub fn tensor_rules(ev: &mut Eval, call: &CallValue, args: &[Arg], scope: &Scope) {
    let dim = scope.int("dim").unwrap_or(0);
    match call.name.as_str() {
        "attention" => {
            let heads = call.int("heads").unwrap_or(1);
            let kv = call.int("kv_heads").unwrap_or(heads);
            positive(ev, call, args, "heads", 1);
            positive(ev, call, args, "kv_heads", 2);
            if heads <= 0 || kv <= 0 {
                return;
            }
            let head_dim = if Some(heads) == scope.int("heads") {
                scope.int("head_dim").unwrap_or(dim / heads)
            } else if dim % heads != 0 {
                ev.error(
                    Diagnostic::new(
                        "indivisible",
                        arg_span(args, "heads", 1, call.span),
                        format!("dim ({dim}) is not divisible by heads ({heads})"),
                    )
                    .label("heads must divide dim"),
                );
                return;
            } else {
                dim / heads
            };
            if heads % kv != 0 {
                ev.error(
                    Diagnostic::new(
                        "indivisible",
                        arg_span(args, "kv_heads", 2, call.span),
                        format!("heads ({heads}) is not divisible by kv_heads ({kv})"),
                    )
                    .label("kv_heads must divide heads"),
                );
            }
            range(ev, call, args, "dropout", 8, 0.0, 1.0, true);
            if let Some(pos) = call.get("position").and_then(Value::as_call) {
                position_rules(ev, pos, head_dim, arg_span(args, "position", 5, call.span));
            }
        }
        "mlp" | "swiglu" => positive(ev, call, args, "hidden", 1),
        "rms_norm" | "layer_norm" => positive(ev, call, args, "eps", 1),
        "dropout" => range(ev, call, args, "p", 1, 0.0, 1.0, true),
        "route" => {
            let pool = call.name_arg("pool").unwrap_or_default();
            let size = match scope.get(pool) {
                Some(super::Binding::Pool { size, .. }) => *size,
                _ => return,
            };
            let skip = call.bool("skip").unwrap_or(true);
            let choices = size + i64::from(skip);
            if let Some(k) = call.int("top_k") {
                if k < 1 || k > choices {
                    ev.error(
                        Diagnostic::new(
                            "bad-route",
                            arg_span(args, "top_k", 2, call.span),
                            format!(
                                "top_k = {k}, but pool `{pool}` offers {choices} choice{}",
                                if choices == 1 { "" } else { "s" }
                            ),
                        )
                        .label(format!("must be in 1 ..= {choices}"))
                        .help(format!(
                            "the pool has {size} module{}{}",
                            if size == 1 { "" } else { "s" },
                            if skip { " plus SKIP" } else { "" }
                        )),
                    );
                }
            }
            positive(ev, call, args, "temperature", 4);
            range(ev, call, args, "balance", 5, 0.0, f64::INFINITY, false);
            if let Some(r) = call.get("router").and_then(Value::as_call) {
                positive(ev, r, &[], "hidden", 0);
            }
        }
        _ => {}
    }
}

/// Position rules need an even head width (rotary pairs) and consistent tables.
fn position_rules(ev: &mut Eval, pos: &CallValue, head_dim: i64, span: Span) {
    if pos.name == "nope" {
        return;
    }
    if head_dim % 2 != 0 {
        ev.error(
            Diagnostic::new(
                "indivisible",
                span,
                format!("rotary encodings rotate pairs, but head_dim is odd ({head_dim})"),
            )
            .label("needs an even head width")
            .help("choose dim and heads so that dim / heads is even, or use `position: nope`"),
        );
        return;
    }
    let pairs = head_dim / 2;
    match pos.name.as_str() {
        "rope" => {
            let bases = pos
                .get("bases")
                .and_then(Value::as_list)
                .map(<[Value]>::len);
            if pos.get("router").is_some() && bases.is_none() {
                ev.error(
                    Diagnostic::new(
                        "bad-route",
                        span,
                        "a rotary router needs `bases` to choose from",
                    )
                    .label("router without bases")
                    .help("e.g. `rope(bases: [10000, 15000, 20000], router: swiglu, top_k: 2)`"),
                );
            }
            if let (Some(n), Some(k)) = (bases, pos.int("top_k")) {
                if k < 1 || k as usize > n {
                    ev.error(
                        Diagnostic::new(
                            "bad-route",
                            span,
                            format!("top_k = {k}, but only {n} bases are given"),
                        )
                        .label(format!("must be in 1 ..= {n}")),
                    );
                }
            }
            if bases.is_some_and(|n| n > 1) && pos.get("router").is_none() {
                ev.error(
                    Diagnostic::new(
                        "bad-route",
                        span,
                        "several `bases` need a `router` to mix them",
                    )
                    .label("bases without router")
                    .help("add `router: swiglu`"),
                );
            }
            if let Some(b) = pos.float("base") {
                if b <= 1.0 {
                    ev.error(
                        Diagnostic::new(
                            "bad-value",
                            span,
                            format!("rotary base must exceed 1, not {b}"),
                        )
                        .label("base ≤ 1"),
                    );
                }
            }
        }
        "hope" => {
            if let Some(k) = pos.int("keep") {
                if k < 0 || k > pairs {
                    ev.error(
                        Diagnostic::new(
                            "bad-value",
                            span,
                            format!("hope keeps {k} pairs, but heads have {pairs} rotary pairs"),
                        )
                        .label(format!("keep must be in 0 ..= {pairs}")),
                    );
                }
            }
        }
        "freqs" => {
            let n = pos
                .get("table")
                .and_then(Value::as_list)
                .map(<[Value]>::len)
                .unwrap_or(0);
            if n as i64 != pairs {
                ev.error(
                    Diagnostic::new(
                        "bad-table",
                        span,
                        format!(
                            "frequency table has {n} entries, but heads have {pairs} rotary pairs"
                        ),
                    )
                    .label(format!("expected {pairs} entries (head_dim / 2)")),
                );
            }
        }
        _ => {}
    }
}

/// Rules for probes and programs that refer to the model's shape.
pub fn probe_rules(ev: &mut Eval, call: &CallValue, m: &ModelInfo) {
    let layers = m.config.layers as i64;
    let heads = m.config.heads as i64;
    if let Some(l) = call.int("layer") {
        let limit = if call.name == "batch_icl" {
            layers
        } else {
            layers - 1
        };
        if l < 0 || l > limit {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    call.span,
                    format!("layer {l} does not exist (the model has layers 0 .. {layers})"),
                )
                .label(format!("layer must be in 0 ..= {limit}")),
            );
        }
    }
    if let Some(h) = call.int("head") {
        if h < 0 || h >= heads {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    call.span,
                    format!("head {h} does not exist (layers have {heads} heads)"),
                )
                .label(format!("head must be in 0 .. {heads}")),
            );
        }
    }
    for key in ["demos", "len", "samples", "steps", "positions"] {
        if let Some(v) = call.int(key) {
            if v < 1 {
                ev.error(
                    Diagnostic::new(
                        "bad-value",
                        call.span,
                        format!("`{key}` must be positive, not {v}"),
                    )
                    .label("must be ≥ 1"),
                );
            }
        }
    }
}
