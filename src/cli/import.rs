//! `weft import HF_DIR|MODEL.gguf --out SPEC.weft [--weights OUT.safetensors]` and
//! `weft export SPEC --weights W --out HF_DIR`: HF GPT-2 / Llama checkpoints and GGUF files
//! in, HF checkpoints out (the mappings are `weft_runtime::hf::table` and
//! `weft_runtime::hf::gguf`, documented in docs/import.md).

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

/// Writes the spec (and, with `weights`, the mapped weights) of the checkpoint in `dir`, or
/// of the GGUF file `dir` names.
pub fn import(dir: &Path, out: &Path, weights: Option<&Path>) -> ExitCode {
    report((|| {
        let stem = out
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "imported".into());
        let name = hf::spec::model_name(&stem);
        if dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            || hf::gguf::is_gguf(dir)
        {
            return import_gguf(dir, &name, out, weights);
        }
        let imp = hf::import_dir(dir, &name).map_err(|e| e.to_string())?;
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

/// The GGUF import: spec, weights, and `tokenizer.json` + `tokenizer_config.json` beside
/// the weights (or the spec), where `weft generate`/`eval` look for them.
fn import_gguf(file: &Path, name: &str, out: &Path, weights: Option<&Path>) -> Result<(), String> {
    let imp = hf::gguf::import_gguf(file, name).map_err(|e| e.to_string())?;
    let m = &imp.model;
    tensor_file::write_atomic(out, m.spec.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "wrote {} (GGUF {}, {} layers, dim {}, vocab {})",
        out.display(),
        imp.architecture,
        m.config.layers,
        m.config.dim,
        m.config.vocab
    );
    if let Some(w) = weights {
        tensor_file::save(w, &m.weights).map_err(|e| e.to_string())?;
        eprintln!("wrote {} ({} tensors, f32)", w.display(), m.weights.len());
    }
    let dir = weights
        .unwrap_or(out)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match &imp.tokenizer {
        Ok(json) => {
            let p = dir.join("tokenizer.json");
            tensor_file::write_atomic(&p, json.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            eprintln!("wrote {}", p.display());
            if let Some(cfg) = &imp.tokenizer_config {
                let p = dir.join("tokenizer_config.json");
                tensor_file::write_atomic(&p, cfg.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
                eprintln!("wrote {} (bos/eos, chat template)", p.display());
            }
        }
        Err(e) => eprintln!("warning: no tokenizer.json written: {e}"),
    }
    Ok(())
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
