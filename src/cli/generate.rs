//! `weft generate SPEC --weights W --text "..." | --chat "..."`: decoding (greedy, or sampled
//! with a seed), streamed to stdout, with the speed on stderr.

use super::eval::load_weights;
use super::spec::load_checked;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weft_compiler::lower::{lower, LowerOptions};
use weft_runtime::hf::chat::{self, Message, TokenizerConfig};
use weft_runtime::hf::generate::{self, Options};
use weft_runtime::hf::sample::Sampling;
use weft_runtime::hf::Tokenizer;

/// Arguments of `weft generate`.
pub struct GenerateArgs {
    pub spec: PathBuf,
    pub weights: PathBuf,
    /// A plain prompt (continued as is).
    pub text: Option<String>,
    /// A user message, wrapped in the model's chat template.
    pub chat: Option<String>,
    /// A system message for `chat`.
    pub system: Option<String>,
    pub max_new: usize,
    pub tokenizer: String,
    pub no_cache: bool,
    pub backend: String,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    /// Generate all `max_new` tokens even past the eos token (benchmarks).
    pub ignore_eos: bool,
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

/// `tokenizer_config.json` beside the tokenizer in use, if any.
fn tokenizer_config(tokenizer_path: &str) -> Result<TokenizerConfig, String> {
    let p = Path::new(tokenizer_path).with_file_name("tokenizer_config.json");
    if tokenizer_path != "bytes" && p.is_file() {
        TokenizerConfig::read(&p).map_err(|e| e.to_string())
    } else {
        Ok(TokenizerConfig::default())
    }
}

fn run(a: &GenerateArgs) -> Result<(), String> {
    let (spec, _) =
        load_checked(&a.spec).ok_or_else(|| format!("{} has errors", a.spec.display()))?;
    let (tok, tok_path) =
        Tokenizer::resolve(&a.tokenizer, &[&a.weights, &a.spec]).map_err(|e| e.to_string())?;
    let cfg = tokenizer_config(&tok_path)?;
    let prompt_text = match (&a.text, &a.chat) {
        (Some(t), None) => t.clone(),
        (None, Some(c)) => {
            let template = cfg.chat_template.as_deref().ok_or_else(|| {
                format!(
                    "--chat needs a chat template: no `chat_template` in a tokenizer_config.json beside {tok_path}"
                )
            })?;
            let mut messages = Vec::new();
            if let Some(s) = &a.system {
                messages.push(Message {
                    role: "system".into(),
                    content: s.clone(),
                });
            }
            messages.push(Message {
                role: "user".into(),
                content: c.clone(),
            });
            chat::render(template, &cfg, &messages, true).map_err(|e| e.to_string())?
        }
        _ => return Err("give exactly one of --text and --chat".into()),
    };
    let prompt = tok.encode(&prompt_text).map_err(|e| e.to_string())?;
    let stop: Vec<u32> = cfg
        .eos_token
        .as_deref()
        .and_then(|e| tok.token_id(e))
        .into_iter()
        .filter(|_| !a.ignore_eos)
        .collect();
    let sampling = if a.temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
        }
    };
    let graph = lower(&spec, &LowerOptions::new(1, 1)).map_err(|e| e.to_string())?;
    weft_runtime::memory::check_inference(&graph, "generation").map_err(|e| e.to_string())?;
    let params = load_weights(&a.weights, &graph)?;
    let (backend, which) = weft_runtime::select_backend(&a.backend)?;
    eprintln!("{which}; tokenizer {tok_path}");
    let opts = Options {
        max_new: a.max_new,
        sampling,
        stop: stop.clone(),
        cached: !a.no_cache,
    };
    // Stream: decode everything so far and print what is new (a token can end in the
    // middle of a UTF-8 character, so per-token decoding would print replacement marks).
    let mut out = std::io::stdout().lock();
    if a.chat.is_none() {
        let _ = write!(out, "{prompt_text}");
        let _ = out.flush();
    }
    let mut shown = String::new();
    let mut new: Vec<u32> = Vec::new();
    let mut err = None;
    let result = generate::generate(&spec, &params, backend.as_ref(), &prompt, &opts, &mut |t| {
        if stop.contains(&t) {
            return;
        }
        new.push(t);
        match tok.decode(&new) {
            Ok(text) if !text.ends_with('\u{FFFD}') => {
                let _ = write!(out, "{}", text.get(shown.len()..).unwrap_or(""));
                let _ = out.flush();
                shown = text;
            }
            Ok(_) => {}
            Err(e) => err = Some(e.to_string()),
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = err {
        return Err(e);
    }
    let text = tok.decode(&new).map_err(|e| e.to_string())?;
    let _ = writeln!(out, "{}", text.get(shown.len()..).unwrap_or(""));
    eprintln!(
        "{} prompt tokens, {} new{}; prefill {:.3} s; decode {:.1} tokens/s ({:?} path)",
        prompt.len(),
        result.tokens.len(),
        if result.stopped {
            " (stopped at eos)"
        } else {
            ""
        },
        result.prefill_s,
        result.decode_tokens_per_s(),
        result.path
    );
    Ok(())
}

/// `text` tokenized as a `[1, T]` batch, every id checked against the vocabulary;
/// `tokenizer` as [`Tokenizer::resolve`] takes it (`auto` looks beside the files in `near`).
pub(crate) fn text_tokens(
    text: &str,
    tokenizer: &str,
    vocab: i64,
    near: &[&Path],
) -> Result<weft_runtime::Tensor, String> {
    let (tok, _) = Tokenizer::resolve(tokenizer, near).map_err(|e| e.to_string())?;
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
