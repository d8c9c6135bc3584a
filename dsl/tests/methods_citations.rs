//! Every `METHODS §N` citation in the repository resolves: docs/METHODS.md (the methods
//! reference, shipped with weft) has a heading for every section that the code, the example
//! specs, the docs and the reproduction reports cite, so no comment points at text the reader
//! cannot find.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The section numbers of docs/METHODS.md's headings: `## 2. Cog ...` → `2`,
/// `### 11.12 Laptop-scale ...` → `11.12`.
fn sections() -> BTreeSet<String> {
    let path = root().join("docs/METHODS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .filter_map(|h| {
            let n = h.split_whitespace().next()?.trim_end_matches('.');
            n.chars()
                .all(|c| c.is_ascii_digit() || c == '.')
                .then(|| n.to_string())
        })
        .collect()
}

/// The section numbers a line cites: every `§N` or `§N.M` after `METHODS`, and the upper end
/// of a range (`§9.2–9.3`).
fn cited(line: &str) -> Vec<String> {
    let Some(at) = line.find("METHODS") else {
        return Vec::new();
    };
    let number = |s: &str| -> String {
        let n: String = s
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        n.trim_end_matches('.').to_string()
    };
    let rest = &line[at..];
    let mut out = Vec::new();
    for part in rest.split('§').skip(1) {
        let n = number(part);
        if n.is_empty() {
            continue;
        }
        let after = &part[n.len()..];
        if let Some(end) = after.strip_prefix('–').or_else(|| after.strip_prefix('-')) {
            let m = number(end);
            if !m.is_empty() {
                out.push(m);
            }
        }
        out.push(n);
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "runs" {
                walk(&p, out);
            }
        } else if ["rs", "weft", "md", "wgsl", "txt"]
            .iter()
            .any(|x| name.ends_with(&format!(".{x}")))
        {
            out.push(p);
        }
    }
}

#[test]
fn every_cited_methods_section_exists() {
    let known = sections();
    assert!(
        known.contains("2.2") && known.contains("11.12"),
        "{known:?}"
    );
    let mut files = Vec::new();
    for d in [
        "dsl",
        "compiler",
        "runtime",
        "rundir",
        "viewer",
        "repro",
        "gguf",
        "src",
        "examples",
        "docs",
        "benchmarks",
    ] {
        walk(&root().join(d), &mut files);
    }
    for f in [
        "README.md",
        "ARCHITECTURE.md",
        "REPRODUCTIONS.md",
        "BENCHMARKS.md",
    ] {
        files.push(root().join(f));
    }
    let mut citations = 0;
    let mut missing = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            for n in cited(line) {
                citations += 1;
                if !known.contains(&n) {
                    missing.push(format!("{}:{}: §{n}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(citations > 40, "only {citations} citations found");
    assert!(
        missing.is_empty(),
        "cited sections not in docs/METHODS.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn citations_parse() {
    assert_eq!(cited("METHODS §9.2–9.3: corrupt"), ["9.3", "9.2"]);
    assert_eq!(cited("(METHODS §1.6, §11.12 #1)."), ["1.6", "11.12"]);
    assert_eq!(cited("METHODS.md §2"), ["2"]);
    assert_eq!(cited("a § without the name"), Vec::<String>::new());
}
