//! `weft compile` and `weft params`: what a spec becomes.

use super::spec::load_checked;
use std::path::Path;
use std::process::ExitCode;
use weft_compiler::lower::{lower, LowerOptions};

/// Which form `weft compile` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Emit {
    /// The canonical IR text (diffable, stable ids).
    Ir,
    /// The IR as JSON (serde).
    Json,
}

/// Lowers a spec (forward and, with `grad`, backward) and prints it.
pub fn compile(path: &Path, emit: Emit, batch: usize, seq: Option<usize>, grad: bool) -> ExitCode {
    let Some((spec, src)) = load_checked(path) else {
        return ExitCode::FAILURE;
    };
    let seq = seq.unwrap_or(spec.model.int("ctx") as usize);
    let mut opts = LowerOptions::new(batch, seq);
    opts.with_loss = grad;
    let mut graph = match lower(&spec, &opts) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}", render_ir_error(&e, path, &src));
            return ExitCode::FAILURE;
        }
    };
    if grad {
        let loss = graph.output("loss").expect("lowered with a loss");
        graph = match weft_compiler::autodiff::grad(
            &graph,
            loss,
            &[weft_compiler::autodiff::ParamSelection::All],
        )
        .and_then(|g| weft_compiler::passes::optimize(&g))
        {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
    }
    match emit {
        Emit::Ir => print!("{graph}"),
        Emit::Json => match serde_json::to_string_pretty(&graph) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// Every parameter: name, shape, count, trainable; totals.
pub fn params(path: &Path) -> ExitCode {
    let Some((spec, _)) = load_checked(path) else {
        return ExitCode::FAILURE;
    };
    let mut opts = LowerOptions::new(1, 1);
    opts.with_loss = true;
    opts.trainable = super::eval::trainable_globs(&spec);
    let graph = match lower(&spec, &opts) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let width = graph
        .params
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:width$}  {:>16}  {:>10}  trainable",
        "name", "shape", "count"
    );
    let (mut total, mut trainable) = (0usize, 0usize);
    for p in &graph.params {
        let n: usize = p.shape.iter().product();
        total += n;
        if p.trainable {
            trainable += n;
        }
        let shape = format!("{:?}", p.shape);
        println!(
            "{:width$}  {shape:>16}  {n:>10}  {}",
            p.name,
            if p.trainable { "yes" } else { "no" }
        );
    }
    println!(
        "total {total} parameters, {trainable} trainable, {} frozen",
        total - trainable
    );
    ExitCode::SUCCESS
}

/// An IR error, located in the spec when the failing node recorded a span.
pub(crate) fn render_ir_error(e: &weft_compiler::IrError, path: &Path, src: &str) -> String {
    match e {
        weft_compiler::IrError::Shape {
            op,
            msg,
            span: Some(span),
        } => weft_dsl::Diagnostic::new("shape", *span, format!("shape error in `{op}`: {msg}"))
            .label("this construct produced the bad shape")
            .render(&path.display().to_string(), src),
        other => format!("error: {}: {other}", path.display()),
    }
}
