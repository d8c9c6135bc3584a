//! Keeps docs/language.md in step with the language: one `### \`NAME\`` section per builtin
//! with its exact argument table, every builtin used in an example, and every `weft` example
//! on the page checking cleanly.

use std::collections::BTreeSet;
use weft_dsl::builtins::{Builtin, Kind, Param, BUILTINS, MODEL_SETTINGS, TRAIN_SETTINGS};
use weft_dsl::check_source;

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/language.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The model that `train { }` and `program` fragments on the page are checked against; the
/// page shows it verbatim.
const TINY: &str = "model tiny {
  vocab = 256; dim = 128; heads = 4; layers = 4; ctx = 128
  block decoder {
    x = x + attention(rms_norm(x))
    x = x + swiglu(rms_norm(x))
  }
  layers { 0 .. layers => decoder }
}";

/// Lines of the page outside fenced code blocks, with their index.
fn prose_lines(doc: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i, line));
        }
    }
    out
}

fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    (hashes > 0 && line[hashes..].starts_with(' ')).then_some(hashes)
}

/// The text under the heading line `heading` up to the next heading of the same or a higher
/// level.
fn section(doc: &str, heading: &str) -> Option<String> {
    let lines: Vec<&str> = doc.lines().collect();
    let prose = prose_lines(doc);
    let pos = prose.iter().position(|(_, l)| *l == heading)?;
    let level = heading_level(heading)?;
    let start = prose[pos].0 + 1;
    let end = prose[pos + 1..]
        .iter()
        .find(|(_, l)| heading_level(l).is_some_and(|h| h <= level))
        .map(|(i, _)| *i)
        .unwrap_or(lines.len());
    Some(lines[start..end].join("\n"))
}

/// The names in `### \`NAME\`` headings (a ` (router)` suffix allowed), in page order.
fn builtin_headings(doc: &str) -> Vec<String> {
    prose_lines(doc)
        .into_iter()
        .filter_map(|(_, l)| {
            let rest = l.strip_prefix("### `")?;
            let (name, after) = rest.split_once('`')?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            (is_name && (after.is_empty() || after == " (router)")).then(|| name.to_string())
        })
        .collect()
}

/// The heading of a builtin's section: the router `mlp` is told apart from the tensor one.
fn heading_of(b: &Builtin) -> String {
    let shared = BUILTINS
        .iter()
        .any(|o| o.name == b.name && o.kind != b.kind);
    if shared && b.kind == Kind::Router {
        format!("### `{}` (router)", b.name)
    } else {
        format!("### `{}`", b.name)
    }
}

/// The ```weft blocks of the page, with the line each starts on.
fn weft_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut current, line.starts_with("```")) {
            (None, true) if line.trim() == "```weft" => current = Some((i + 1, Vec::new())),
            (None, true) => current = Some((0, Vec::new())), // another language: skipped
            (Some((start, body)), true) => {
                if *start > 0 {
                    out.push((*start, body.join("\n") + "\n"));
                }
                current = None;
            }
            (Some((_, body)), false) => body.push(line),
            (None, false) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code fence");
    out
}

fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == word)
}

/// A table row split into cells, `\|` unescaped.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("a cell").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("a cell").push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The rows of the argument table in `text`, keyed by the name in the first cell.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(cells)
        .collect()
}

fn expected_row(p: &Param) -> Vec<String> {
    let default = match p.default {
        None => "required".to_string(),
        Some("") => "—".to_string(),
        Some(src) => format!("`{src}`"),
    };
    vec![
        format!("`{}`", p.name),
        p.ty.describe(),
        default,
        p.doc.to_string(),
    ]
}

/// Every parameter documented with its exact type, default and meaning, and nothing else.
fn check_table(what: &str, text: &str, params: &[Param], problems: &mut Vec<String>) {
    let rows = table_rows(text);
    for p in params {
        if !text.contains(&format!("`{}`", p.name)) {
            problems.push(format!("{what}: argument `{}` is not mentioned", p.name));
        }
        let want = expected_row(p);
        match rows.iter().find(|r| r.first() == want.first()) {
            Some(r) if *r == want => {}
            Some(r) => problems.push(format!(
                "{what}: row for `{}` is\n    {r:?}\n  expected\n    {want:?}",
                p.name
            )),
            None => problems.push(format!("{what}: no table row for `{}`", p.name)),
        }
    }
    for r in &rows {
        if !params
            .iter()
            .any(|p| Some(&format!("`{}`", p.name)) == r.first())
        {
            problems.push(format!(
                "{what}: documents `{}`, which builtins.rs does not list",
                r[0]
            ));
        }
    }
}

#[test]
fn every_builtin_has_exactly_one_section_and_nothing_else_does() {
    let doc = docs();
    let headings = builtin_headings(&doc);
    let documented: BTreeSet<&str> = headings.iter().map(String::as_str).collect();
    let builtins: BTreeSet<&str> = BUILTINS.iter().map(|b| b.name).collect();
    let missing: Vec<_> = builtins.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&builtins).collect();
    assert!(
        missing.is_empty(),
        "builtins without a `### \\`NAME\\`` section: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "sections for names that are not builtins: {unknown:?}"
    );
    assert_eq!(
        headings.len(),
        BUILTINS.len(),
        "one section per builtin (the router `mlp` as `mlp` (router)): {headings:?}"
    );
    for b in BUILTINS {
        let heading = heading_of(b);
        let n = prose_lines(&doc)
            .iter()
            .filter(|(_, l)| *l == heading)
            .count();
        assert_eq!(n, 1, "`{heading}` appears {n} times");
    }
}

#[test]
fn every_builtin_is_used_in_an_example() {
    let doc = docs();
    let mut corpus: String = weft_blocks(&doc)
        .into_iter()
        .map(|(_, b)| strip_comments(&b))
        .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("examples directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "weft") {
            corpus.push_str(&strip_comments(
                &std::fs::read_to_string(&path).expect("example"),
            ));
            n += 1;
        }
    }
    assert!(n > 0, "no examples found in {dir}");
    let unused: Vec<&str> = BUILTINS
        .iter()
        .map(|b| b.name)
        .filter(|name| !has_word(&corpus, name))
        .collect();
    assert!(
        unused.is_empty(),
        "builtins used in no example and no ```weft block of the docs: {unused:?}"
    );
}

#[test]
fn every_weft_example_in_the_docs_checks() {
    let doc = docs();
    assert!(
        doc.contains(&format!("```weft\n{TINY}\n```")),
        "the docs must show the `tiny` model that fragments are checked against"
    );
    let mut problems = Vec::new();
    let blocks = weft_blocks(&doc);
    for (line, block) in &blocks {
        let code = strip_comments(block);
        let first = code.split_whitespace().next().unwrap_or("");
        let has_model = code.lines().any(|l| l.trim_start().starts_with("model "));
        let src = if has_model {
            block.clone()
        } else if matches!(first, "train" | "program" | "rule") {
            format!("{TINY}\n{block}")
        } else {
            problems.push(format!("docs line {line}: a ```weft block must be a spec, a `train`, a `program` or a `rule` (use ```text for fragments)"));
            continue;
        };
        if let Err(ds) = check_source(&src) {
            // `line` is the fence; a fragment's first line follows the 8 lines of `tiny`.
            let offset = if has_model { 0 } else { TINY.lines().count() };
            for d in ds {
                let (l, c) = d.line_col(&src);
                let at = line + l.saturating_sub(offset);
                problems.push(format!(
                    "docs line {at}, column {c}: {} ({})",
                    d.message,
                    d.help.unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        blocks.len() > BUILTINS.len(),
        "only {} ```weft blocks found",
        blocks.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_argument_is_documented_in_its_builtins_section() {
    let doc = docs();
    let mut problems = Vec::new();
    for b in BUILTINS {
        let heading = heading_of(b);
        let Some(text) = section(&doc, &heading) else {
            problems.push(format!("no section `{heading}`"));
            continue;
        };
        if !text.contains(b.doc) {
            problems.push(format!(
                "{heading}: the description from builtins.rs is missing: {}",
                b.doc
            ));
        }
        if b.params.is_empty() && !text.contains("No arguments.") {
            problems.push(format!("{heading}: say `No arguments.`"));
        }
        check_table(&heading, &text, b.params, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn model_and_train_settings_tables_match_the_table() {
    let doc = docs();
    let mut problems = Vec::new();
    let model = section(&doc, "#### Model settings").expect("a `#### Model settings` section");
    check_table("model settings", &model, MODEL_SETTINGS, &mut problems);
    let train = section(&doc, "### `train { ... }`").expect("a `### `train { ... }`` section");
    check_table("train settings", &train, TRAIN_SETTINGS, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
