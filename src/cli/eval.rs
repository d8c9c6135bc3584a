//! `weft eval`: one forward pass; logits and captured hook values to a safetensors file.
//! `--replace HOOK=FILE` overwrites a hook point's value with the tensor named HOOK in FILE
//! (the format `--capture` writes), so a captured value can be patched into another run.

use super::spec::load_checked;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weft_compiler::lower::glob::glob_match;
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::{init_params, tensor_file, HookSelection, Intervention, ParamStore, Tensor};

/// Arguments of `weft eval`.
pub struct EvalArgs {
    pub spec: PathBuf,
    pub weights: Option<PathBuf>,
    /// Token ids (JSON); or `text` with `tokenizer` (`bytes` or a tokenizer.json path).
    pub tokens: Option<PathBuf>,
    pub text: Option<String>,
    pub tokenizer: String,
    pub out: PathBuf,
    pub capture: Vec<String>,
    pub backend: String,
    pub seed: u64,
    pub save_init: Option<PathBuf>,
    /// `HOOK=FILE.safetensors`: replace hook point HOOK by the tensor HOOK in FILE.
    pub replace: Vec<String>,
}

pub fn eval(a: &EvalArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &EvalArgs) -> Result<(), String> {
    let (spec, _) =
        load_checked(&a.spec).ok_or_else(|| format!("{} has errors", a.spec.display()))?;
    let vocab = spec.model.config.vocab as i64;
    let (tokens, source) = match (&a.tokens, &a.text) {
        (Some(p), None) => (read_tokens(p, vocab)?, p.display().to_string()),
        (None, Some(text)) => (
            {
                let mut near: Vec<&std::path::Path> =
                    a.weights.iter().map(|w| w.as_path()).collect();
                near.push(&a.spec);
                super::generate::text_tokens(text, &a.tokenizer, vocab, &near)?
            },
            "--text".into(),
        ),
        _ => return Err("give exactly one of --tokens and --text".into()),
    };
    let (b, t) = (tokens.shape[0], tokens.shape[1]);
    let ctx = spec.model.config.ctx;
    if t > ctx {
        return Err(format!(
            "{source}: sequences have {t} tokens, the model's ctx is {ctx}"
        ));
    }
    let replace = read_replacements(&a.replace)?;
    let mut opts = LowerOptions::new(b, t);
    opts.capture = a.capture.clone();
    // A replaced expensive hook point (attn.result, attn.pattern...) must exist in the graph.
    opts.capture
        .extend(replace.iter().map(|r| r.name().to_string()));
    let graph = lower(&spec, &opts).map_err(|e| format!("{}: {e}", a.spec.display()))?;
    // Refuse a model or input too large for this machine before allocating its weights.
    weft_runtime::memory::check_inference(&graph, "evaluation")
        .map_err(|e| format!("{}: {e}", a.spec.display()))?;
    let params = match &a.weights {
        Some(w) => load_weights(w, &graph)?,
        None => init_params(&graph, a.seed),
    };
    if let Some(path) = &a.save_init {
        let sorted: BTreeMap<String, Tensor> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        tensor_file::save(path, &sorted).map_err(|e| e.to_string())?;
    }
    let mut inputs = HashMap::from([("tokens".to_string(), tokens)]);
    for info in &graph.inputs {
        // Mask id streams default to one document / one turn per sequence.
        inputs
            .entry(info.name.clone())
            .or_insert_with(|| Tensor::i32(&info.shape, vec![0; info.shape.iter().product()]));
    }
    let mut names = Vec::new();
    for pattern in &a.capture {
        let matched: Vec<String> = graph
            .hooks
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| glob_match(pattern, n))
            .collect();
        if matched.is_empty() {
            let known: Vec<&str> = graph
                .hooks
                .iter()
                .map(|(n, _)| n.as_str())
                .take(12)
                .collect();
            return Err(format!(
                "--capture {pattern}: no hook point matches (some hook points: {})",
                known.join(", ")
            ));
        }
        names.extend(matched);
    }
    let (backend, which) = weft_runtime::select_backend(&a.backend)?;
    eprintln!("{which}");
    let out = backend
        .run_replacing(
            &graph,
            &inputs,
            &params,
            &HookSelection::Names(names),
            &replace,
        )
        .map_err(|e| format!("{} backend: {e}", backend.name()))?;
    let mut file: BTreeMap<String, Tensor> = BTreeMap::new();
    file.insert("logits".into(), out.outputs["logits"].clone());
    for (name, v) in out.hooks {
        file.insert(name, v);
    }
    tensor_file::save(&a.out, &file).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} ({} tensors, backend {})",
        a.out.display(),
        file.len(),
        backend.name()
    );
    Ok(())
}

/// Parses `HOOK=FILE` arguments and loads each replacement tensor (named HOOK in FILE).
fn read_replacements(args: &[String]) -> Result<Vec<Intervention>, String> {
    let mut out = Vec::new();
    for arg in args {
        let (hook, path) = arg
            .split_once('=')
            .ok_or_else(|| format!("--replace {arg}: expected HOOK=FILE.safetensors"))?;
        let file = tensor_file::load(Path::new(path)).map_err(|e| e.to_string())?;
        let t = file.get(hook).ok_or_else(|| {
            let names: Vec<&str> = file.keys().map(String::as_str).take(12).collect();
            format!(
                "--replace {arg}: {path} has no tensor `{hook}` (it has: {})",
                names.join(", ")
            )
        })?;
        out.push(Intervention::replace(hook, t.clone()));
    }
    Ok(out)
}

/// `T.json`: a JSON array of equal-length arrays of token ids in `[0, vocab)`.
pub fn read_tokens(path: &Path, vocab: i64) -> Result<Tensor, String> {
    let p = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {p}: {e}"))?;
    let rows: Vec<Vec<i64>> = serde_json::from_str(&text)
        .map_err(|e| format!("{p}: expected a JSON array of arrays of token ids: {e}"))?;
    let t = rows.first().map(Vec::len).unwrap_or(0);
    if rows.is_empty() || t == 0 {
        return Err(format!("{p}: no tokens"));
    }
    let mut flat = Vec::with_capacity(rows.len() * t);
    for (i, r) in rows.iter().enumerate() {
        if r.len() != t {
            return Err(format!(
                "{p}: sequence {i} has {} tokens, sequence 0 has {t} (all must be equal)",
                r.len()
            ));
        }
        for (j, &id) in r.iter().enumerate() {
            if id < 0 || id >= vocab {
                return Err(format!(
                    "{p}: token {id} at [{i}][{j}] is outside the vocabulary 0 .. {vocab}"
                ));
            }
            flat.push(id as i32);
        }
    }
    Ok(Tensor::i32(&[rows.len(), t], flat))
}

/// Loads weights, checking that every parameter the graph needs is there with its shape.
pub fn load_weights(path: &Path, graph: &weft_compiler::ir::Graph) -> Result<ParamStore, String> {
    let p = path.display();
    let file = tensor_file::load(path).map_err(|e| e.to_string())?;
    let mut out = ParamStore::new();
    for info in &graph.params {
        let t = file.get(&info.name).ok_or_else(|| {
            format!(
                "{p}: missing tensor `{}` (expected shape {:?})",
                info.name, info.shape
            )
        })?;
        if t.shape != info.shape {
            return Err(format!(
                "{p}: tensor `{}` has shape {:?}, expected {:?}",
                info.name, t.shape, info.shape
            ));
        }
        out.insert(info.name.clone(), t.clone());
    }
    Ok(out)
}
