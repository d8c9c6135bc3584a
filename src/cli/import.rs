//! `weft import HF_DIR --out SPEC.weft [--weights OUT.safetensors]` and
//! `weft export SPEC --weights W --out HF_DIR`: HF GPT-2 / Llama checkpoints in and out
//! (the mapping is `weft_runtime::hf::table`, documented in docs/import.md).

use super::spec::load_checked;
use std::path::Path;
use std::process::ExitCode;
use weft_runtime::{hf, tensor_file};

fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the spec (and, with `weights`, the mapped weights) of the checkpoint in `dir`.
pub fn import(dir: &Path, out: &Path, weights: Option<&Path>) -> ExitCode {
    report((|| {
        let stem = out
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "imported".into());
        let imp = hf::import_dir(dir, &hf::spec::model_name(&stem)).map_err(|e| e.to_string())?;
        tensor_file::write_atomic(out, imp.spec.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        eprintln!(
            "wrote {} ({:?}, {} layers)",
            out.display(),
            imp.config.arch,
            imp.config.layers
        );
        if let Some(w) = weights {
            tensor_file::save(w, &imp.weights).map_err(|e| e.to_string())?;
            eprintln!("wrote {} ({} tensors)", w.display(), imp.weights.len());
        }
        if dir.join("tokenizer.json").exists() {
            eprintln!(
                "tokenizer: pass --tokenizer {} to eval/generate",
                dir.join("tokenizer.json").display()
            );
        }
        Ok(())
    })())
}

/// Writes `spec` with `weights` as a HF checkpoint directory.
pub fn export(spec: &Path, weights: &Path, out: &Path) -> ExitCode {
    report((|| {
        let (checked, _) =
            load_checked(spec).ok_or_else(|| format!("{} has errors", spec.display()))?;
        let w = tensor_file::load(weights).map_err(|e| e.to_string())?;
        let arch = hf::export_dir(&checked, &w, out)
            .map_err(|e| format!("{} with {}: {e}", spec.display(), weights.display()))?;
        eprintln!("wrote {} ({arch:?} layout)", out.display());
        Ok(())
    })())
}
