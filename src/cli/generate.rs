//! `weft generate SPEC --weights W --text "..."`: greedy decoding, printed as text.

use super::eval::load_weights;
use super::spec::load_checked;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::hf::{generate, Tokenizer};

/// Arguments of `weft generate`.
pub struct GenerateArgs {
    pub spec: PathBuf,
    pub weights: PathBuf,
    pub text: String,
    pub max_new: usize,
    pub tokenizer: String,
    pub no_cache: bool,
    pub backend: String,
}

pub fn generate(a: &GenerateArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &GenerateArgs) -> Result<(), String> {
    let (spec, _) =
        load_checked(&a.spec).ok_or_else(|| format!("{} has errors", a.spec.display()))?;
    let tok = Tokenizer::load(&a.tokenizer).map_err(|e| e.to_string())?;
    let prompt = tok.encode(&a.text).map_err(|e| e.to_string())?;
    let graph = lower(&spec, &LowerOptions::new(1, 1)).map_err(|e| e.to_string())?;
    let params = load_weights(&a.weights, &graph)?;
    let (backend, which) = weft_runtime::select_backend(&a.backend)?;
    eprintln!("{which}");
    let new = generate::greedy(
        &spec,
        &params,
        backend.as_ref(),
        &prompt,
        a.max_new,
        !a.no_cache,
    )
    .map_err(|e| e.to_string())?;
    println!("{}{}", a.text, tok.decode(&new).map_err(|e| e.to_string())?);
    Ok(())
}

/// `text` tokenized as a `[1, T]` batch, every id checked against the vocabulary.
pub(crate) fn text_tokens(
    text: &str,
    tokenizer: &str,
    vocab: i64,
) -> Result<weft_runtime::Tensor, String> {
    let tok = Tokenizer::load(tokenizer).map_err(|e| e.to_string())?;
    let ids = tok.encode(text).map_err(|e| e.to_string())?;
    if ids.is_empty() {
        return Err("--text gives no tokens".into());
    }
    if let Some(bad) = ids.iter().find(|&&i| i as i64 >= vocab) {
        return Err(format!(
            "--text: token {bad} is outside the model's vocabulary 0 .. {vocab} (wrong --tokenizer?)"
        ));
    }
    let ids: Vec<i32> = ids.into_iter().map(|i| i as i32).collect();
    Ok(weft_runtime::Tensor::i32(&[1, ids.len()], ids))
}
