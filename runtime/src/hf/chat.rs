//! Chat templates: the Jinja `chat_template` of a HF `tokenizer_config.json` (written by
//! `weft import` from a GGUF file's `tokenizer.chat_template`), rendered with `minijinja`
//! the way transformers' `apply_chat_template` renders it: `messages` (role, content),
//! `add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception`.

use super::{HfError, Result};
use serde_json::Value;
use std::path::Path;

/// The parts of `tokenizer_config.json` generation uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Reads `path`; string or `{"content": ...}` token entries (both appear in HF files).
    pub fn read(path: &Path) -> Result<TokenizerConfig> {
        let p = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| HfError::new(format!("cannot read {p}: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| HfError::new(format!("{p}: not valid JSON: {e}")))?;
        let token = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        let chat_template = match v.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: use `default`, as transformers does.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(String::from),
            Some(_) => {
                return Err(HfError::new(format!(
                    "{p}: `chat_template` is neither a string nor a list of templates"
                )))
            }
        };
        Ok(TokenizerConfig {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            chat_template,
        })
    }
}

/// One chat turn.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Renders `template` over `messages`, ending with the assistant's turn opened when
/// `add_generation_prompt`.
pub fn render(
    template: &str,
    cfg: &TokenizerConfig,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| HfError::new(format!("chat_template does not parse: {e}")))?;
    let ctx = serde_json::json!({
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": cfg.bos_token.clone().unwrap_or_default(),
        "eos_token": cfg.eos_token.clone().unwrap_or_default(),
    });
    env.get_template("chat")
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
        .map_err(|e| HfError::new(format!("chat_template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template, verbatim from the GGUF file.
    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> Message {
        Message {
            role: "user".into(),
            content: text.into(),
        }
    }

    #[test]
    fn smollm_template_renders_like_transformers() {
        let got = render(SMOL, &TokenizerConfig::default(), &[user("Hi!")], true).unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let sys = Message {
            role: "system".into(),
            content: "Be brief.".into(),
        };
        let got = render(
            SMOL,
            &TokenizerConfig::default(),
            &[sys, user("Hi!")],
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        );
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors() {
        let t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}";
        let sys = Message {
            role: "system".into(),
            content: String::new(),
        };
        let e = render(t, &TokenizerConfig::default(), &[sys], true).unwrap_err();
        assert!(e.0.contains("first must be user"), "{e}");
        let e = render("{% for %}", &TokenizerConfig::default(), &[], true).unwrap_err();
        assert!(e.0.contains("does not parse"), "{e}");
    }
}
