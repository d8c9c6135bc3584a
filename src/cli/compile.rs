//! `weft compile` and `weft params`: what a spec becomes.

use super::spec::load_checked;
use std::path::Path;
use std::process::ExitCode;
use weft_compiler::codegen::validate::to_spirv;
use weft_compiler::codegen::{compile as compile_program, Binding, CodegenOptions};
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};

/// Which form `weft compile` prints or writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Emit {
    /// The canonical IR text (diffable, stable ids).
    Ir,
    /// The IR as JSON (serde).
    Json,
    /// The fused kernels' WGSL, one file each, and `manifest.json`, into DIR.
    Wgsl,
    /// The fused kernels as SPIR-V (naga's writer), one file each, and `manifest.json`.
    Spirv,
}

/// Lowers a spec (forward and, with `grad`, backward) and prints it, or writes its kernels
/// into `dir` (`--emit wgsl|spirv`).
pub fn compile(
    path: &Path,
    emit: Emit,
    batch: usize,
    seq: Option<usize>,
    grad: bool,
    dir: Option<&Path>,
) -> ExitCode {
    let Some((spec, src)) = load_checked(path) else {
        return ExitCode::FAILURE;
    };
    let seq = seq.unwrap_or(spec.model.config.ctx);
    // `--grad`: the training step exactly as `weft train` builds it.
    let built = if grad {
        weft_compiler::pipeline::training_step(&spec, batch, seq)
    } else {
        lower(&spec, &LowerOptions::new(batch, seq))
    };
    let graph = match built {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}", render_ir_error(&e, path, &src));
            return ExitCode::FAILURE;
        }
    };
    match emit {
        Emit::Wgsl | Emit::Spirv => {
            let Some(dir) = dir else {
                eprintln!("error: --emit wgsl|spirv writes files: give a directory (weft compile FILE --emit wgsl DIR)");
                return ExitCode::FAILURE;
            };
            return match write_kernels(&graph, emit, dir) {
                Ok(n) => {
                    println!("{n} kernels and manifest.json written to {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
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
    opts.trainable = spec.trainable();
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
    // Counted in u128: each spec number is bounded, their products and sums are not.
    let (mut total, mut trainable) = (0u128, 0u128);
    for p in &graph.params {
        let n = weft_runtime::memory::elements(&p.shape);
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
    // What that means in memory, so a model too large for the machine is obvious here.
    println!(
        "f32 weights {}; training with AdamW holds at least {} (weights, gradients, moments)",
        weft_runtime::memory::bytes(4 * total),
        weft_runtime::memory::bytes(4 * total + 16 * trainable)
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

/// Compiles `graph` with the portable codegen options (WebGPU's default limits) and writes
/// each kernel (`NAME.wgsl` or `NAME.spv`) plus `manifest.json`: per kernel its file,
/// bindings (tensor, dtype, elements, access), workgroup size and dispatch, in launch order.
fn write_kernels(graph: &Graph, emit: Emit, dir: &Path) -> Result<usize, String> {
    let program = compile_program(graph, &[], &CodegenOptions::default())
        .map_err(|e| format!("codegen: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let binding = |b: &Binding| {
        serde_json::json!({
            "binding": b.binding,
            "tensor": b.tensor,
            "dtype": b.dtype.to_string(),
            "elements": b.elements,
            "access": format!("{:?}", b.access).to_lowercase(),
        })
    };
    let mut kernels = Vec::new();
    for k in &program.kernels {
        let (file, bytes) = match emit {
            Emit::Spirv => {
                let words = to_spirv(k).map_err(|e| e.to_string())?;
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                (format!("{}.spv", k.name), bytes)
            }
            _ => (format!("{}.wgsl", k.name), k.wgsl.clone().into_bytes()),
        };
        let target = dir.join(&file);
        std::fs::write(&target, bytes)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        kernels.push(serde_json::json!({
            "kernel": k.name,
            "file": file,
            "inputs": k.inputs.iter().map(binding).collect::<Vec<_>>(),
            "outputs": k.outputs.iter().map(binding).collect::<Vec<_>>(),
            "workgroup_size": k.workgroup_size,
            "dispatch": k.dispatch,
        }));
    }
    let manifest = serde_json::json!({
        "kernels": kernels,
        "planned_buffer_bytes": program.buffers.buffer_bytes,
        "peak_bytes": program.buffers.peak_bytes,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    let target = dir.join("manifest.json");
    std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(program.kernels.len())
}
