//! The pipeline one fuzz case runs through, shared by the fuzz driver and the corpus
//! regression test (`compiler/tests/fuzz_corpus.rs`): parse → check (every diagnostic must
//! point inside the text and render) → lower at a small batch (the inference graph, and with
//! a `train` section the training graph, differentiated and optimised as `weft train` does).
//! Failures that are not panics (a diagnostic, an `IrError`) are fine: only a panic is a bug.

use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::lower::{lower, LowerOptions};
use weft_compiler::passes::optimize;

/// How far a case got, for the driver's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// A syntax error.
    Parse,
    /// Checking reported diagnostics.
    Check,
    /// Checked cleanly but lowering returned an error (allowed only for shapes the checker
    /// does not model; counted so a rise is visible).
    LowerError,
    /// Lowered (and, with a train section, differentiated).
    Lowered,
}

/// Layers beyond which a case is checked but not lowered: lowering cost grows with the layer
/// count, and a million cases must finish in hours. (The checker still sees every case.)
pub const MAX_LOWERED_LAYERS: i64 = 64;

/// Runs one spec through the pipeline. Panics are the caller's to catch.
#[allow(dead_code)] // the corpus test's entry; the driver calls `run` for the error text
pub fn pipeline(src: &str, seq_hint: usize) -> Reached {
    run(src, seq_hint).0
}

/// [`pipeline`], with the lowering error of a [`Reached::LowerError`] case.
pub fn run(src: &str, seq_hint: usize) -> (Reached, Option<String>) {
    let file = match weft_dsl::parse(src) {
        Ok(f) => f,
        Err(diags) => {
            assert!(!diags.is_empty(), "a parse error without diagnostics");
            for d in &diags {
                assert!(
                    d.span.end <= src.len() && d.span.start <= d.span.end,
                    "{d:?}"
                );
                let _ = d.render("fuzz.weft", src);
            }
            return (Reached::Parse, None);
        }
    };
    let checked = match weft_dsl::check(&file) {
        Ok(c) => c,
        Err(diags) => {
            assert!(!diags.is_empty(), "a check error without diagnostics");
            for d in &diags {
                assert!(
                    d.span.end <= src.len() && d.span.start <= d.span.end,
                    "{d:?}"
                );
                let _ = d.render("fuzz.weft", src);
            }
            return (Reached::Check, None);
        }
    };
    let _ = weft_dsl::format(&file, Some(src));
    if (checked.model.config.layers as i64) > MAX_LOWERED_LAYERS {
        return (Reached::Check, None);
    }
    let ctx = checked.model.config.ctx.max(1);
    let seq = seq_hint.clamp(1, ctx.min(16));
    let mut error = None;
    if let Err(e) = lower(&checked, &LowerOptions::new(1, seq)) {
        error = Some(format!("inference graph: {e}"));
    }
    if checked.train.is_some() {
        let mut opts = LowerOptions::new(2, seq);
        opts.with_loss = true;
        opts.dropout = true;
        opts.trainable = checked.trainable();
        match lower(&checked, &opts) {
            Ok(g) => match g.output("loss") {
                Some(loss) => match grad(&g, loss, &[ParamSelection::All]) {
                    Ok(d) => {
                        let _ = optimize(&d);
                    }
                    Err(e) => error = error.or(Some(format!("autodiff: {e}"))),
                },
                None => error = error.or(Some("no loss output".into())),
            },
            Err(e) => error = error.or(Some(format!("training graph: {e}"))),
        }
    }
    match error {
        Some(e) => (Reached::LowerError, Some(e)),
        None => (Reached::Lowered, None),
    }
}
