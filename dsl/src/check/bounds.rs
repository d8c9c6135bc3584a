//! Upper bounds on every integer a spec can give. A number past these is a typo or a hostile
//! file, never a model anyone can run; catching it here keeps later stages (the schedule's
//! per-layer tables, lowering's shape products, parameter counts) from overflowing or trying
//! to allocate it. Each bound leaves room far beyond today's largest models, so that a spec
//! which is merely too big for this machine checks cleanly and is refused by the memory
//! budget with a number instead.

use super::eval::Eval;
use crate::diagnostic::Diagnostic;
use crate::Span;

/// Widths: vocabulary, model width, head width, context (16 777 216).
pub const MAX_WIDTH: i64 = 1 << 24;
/// Feed-forward hidden widths (`4 * dim` at the largest `dim` fits; a pool of the largest
/// size of such modules still counts its stacked weights in 64 bits).
pub const MAX_HIDDEN: i64 = 1 << 26;
/// Attention heads, key/value heads, top-k choices.
pub const MAX_HEADS: i64 = 1 << 16;
/// Layers in the schedule.
pub const MAX_LAYERS: i64 = 1 << 14;
/// Modules in a pool.
pub const MAX_POOL: i64 = 1 << 12;
/// Iterations of a `repeat`.
pub const MAX_REPEAT: i64 = 1 << 10;
/// Step counts and intervals (about 10^12).
pub const MAX_STEPS: i64 = 1 << 40;
/// Sequences per step.
pub const MAX_BATCH: i64 = 1 << 20;

/// The largest value `name` may take in `owner` (`model`, `train`, or a builtin's name), and
/// what the number is, for the message. `None`: no bound (seeds take any non-negative i64).
pub fn limit(owner: &str, name: &str) -> Option<(i64, &'static str)> {
    Some(match (owner, name) {
        (_, "seed") => return None,
        ("model", "layers") => (MAX_LAYERS, "layer counts"),
        ("model" | "attention", "heads" | "kv_heads") => (MAX_HEADS, "head counts"),
        ("model", _) => (MAX_WIDTH, "widths"),
        ("mlp" | "swiglu", "hidden") => (MAX_HIDDEN, "hidden widths"),
        ("train", "batch" | "accumulate") => (MAX_BATCH, "batch sizes"),
        ("train", "seq") => (MAX_WIDTH, "sequence lengths"),
        ("train", _) => (MAX_STEPS, "step counts"),
        (_, "warmup") => (MAX_STEPS, "step counts"),
        (_, "top_k") => (MAX_HEADS, "choice counts"),
        ("pool", _) => (MAX_POOL, "pool sizes"),
        ("repeat", _) => (MAX_REPEAT, "repeat counts"),
        _ => (MAX_WIDTH, "sizes"),
    })
}

/// Reports `value` when it passes the bound of `name` in `owner`; returns whether it is within.
pub fn check(ev: &mut Eval, owner: &str, name: &str, value: i64, span: Span) -> bool {
    let lower = if name == "seed" { Some(0) } else { None };
    if let Some(lo) = lower {
        if value < lo {
            ev.error(
                Diagnostic::new(
                    "bad-value",
                    span,
                    format!("`{name}` must not be negative, not {value}"),
                )
                .label("must be ≥ 0"),
            );
            return false;
        }
    }
    let Some((max, what)) = limit(owner, name) else {
        return true;
    };
    if value <= max {
        return true;
    }
    let shown = if value == i64::MAX {
        // The parser saturates literals that do not fit in 64 bits.
        "a number that does not fit in 64 bits".to_string()
    } else {
        value.to_string()
    };
    let label = if name.is_empty() {
        format!("at most {max}")
    } else {
        format!("`{name}` is at most {max}")
    };
    ev.error(
        Diagnostic::new(
            "too-large",
            span,
            format!(
                "`{}` is {shown}, above weft's limit of {max} for {what}",
                if name.is_empty() { owner } else { name }
            ),
        )
        .label(label)
        .help("this bound keeps size arithmetic from overflowing; a model within it that does not fit in memory is refused by `weft train` with what it needs"),
    );
    false
}
