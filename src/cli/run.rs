//! `weft run SPEC PROGRAM`: runs the spec's `program PROGRAM = probe(...)` over the model and
//! writes `DIR/programs/PROGRAM.json` (shape: docs/programs.md).

use super::eval::load_weights;
use super::spec::load_checked;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::typed::Resolved;
use weft_runtime::probes::{program::run_probe, Model};
use weft_runtime::{init_params, tensor_file};

/// Arguments of `weft run`.
pub struct RunArgs {
    pub spec: PathBuf,
    pub program: String,
    pub weights: Option<PathBuf>,
    pub backend: String,
    pub out: PathBuf,
    pub seed: u64,
}

/// Runs one program; exit 1 with a one-line error when it cannot.
pub fn run(a: &RunArgs) -> ExitCode {
    match run_inner(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(a: &RunArgs) -> Result<(), String> {
    let spec_name = a.spec.display().to_string();
    let (spec, _) = load_checked(&a.spec).ok_or_else(|| format!("{spec_name} has errors"))?;
    let program = spec
        .programs
        .iter()
        .find(|p| p.name == a.program)
        .ok_or_else(|| {
            let names: Vec<&str> = spec.programs.iter().map(|p| p.name.as_str()).collect();
            if names.is_empty() {
                format!("{spec_name} defines no programs")
            } else {
                format!(
                    "{spec_name} has no program `{}` (it has: {})",
                    a.program,
                    names.join(", ")
                )
            }
        })?;
    // Weights are named by the graph; a one-token graph lists every parameter cheaply.
    let graph = lower(&spec, &LowerOptions::new(1, 1)).map_err(|e| format!("{spec_name}: {e}"))?;
    let params = match &a.weights {
        Some(w) => load_weights(w, &graph)?,
        None => init_params(&graph, a.seed),
    };
    let (backend, which) = weft_runtime::select_backend(&a.backend)?;
    eprintln!("{which}");
    let model = Model::new(&spec, &params, backend.as_ref());
    let probe = program.probe.name();
    let result = run_probe(&model, &program.probe, a.seed)
        .map_err(|e| format!("program `{}` ({probe}): {e}", program.name))?;
    let doc = serde_json::json!({
        "program": program.name,
        "probe": probe,
        "args": program.call.args,
        "spec": spec_name,
        "model": spec.model.name,
        "weights": a.weights.as_ref().map(|w| w.display().to_string()),
        "seed": a.seed,
        "backend": backend.name(),
        "result": result,
    });
    let dir = a.out.join(weft_runtime::rundir::PROGRAMS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.json", program.name));
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    tensor_file::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
