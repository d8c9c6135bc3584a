//! No input panics the parser or the checker: random bytes, random token soup, and byte
//! mutations of every example all come back as a tree or as diagnostics.

use proptest::prelude::*;

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "weft"))
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Parse and check; every diagnostic must point inside the text and render.
fn survive(src: &str) {
    match weft_dsl::check_source(src) {
        Ok(_) => {}
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in diags {
                assert!(
                    d.span.start <= src.len() && d.span.end <= src.len().max(1),
                    "{d:?}"
                );
                let _ = d.render("fuzz.weft", src);
            }
        }
    }
}

const TOKENS: &[&str] = &[
    "model",
    "block",
    "pool",
    "repeat",
    "train",
    "program",
    "layers",
    "x",
    "=",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "..",
    "=>",
    "+",
    "-",
    "*",
    "/",
    "1",
    "0",
    "2.5",
    "1e-3",
    "\"s\"",
    "true",
    "attention",
    "route",
    "gru",
    "rope",
    "hope",
    "freqs",
    "heads",
    "dim",
    "vocab",
    "ctx",
    "swiglu",
    "rms_norm",
    "signed",
    "#c\n",
    "\n",
    " ",
    ";",
    "é",
    "\u{0}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        survive(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup(toks in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        survive(&toks.concat());
    }

    #[test]
    fn mutated_examples(which in 0usize..11, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = examples()[which % 11].clone().into_bytes();
        for (at, b, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = b,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, b),
            }
        }
        survive(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "model m {{ a = {}1{} }}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    survive(&deep);
    let calls = format!(
        "model m {{ a = {}1{} }}",
        "f(".repeat(3000),
        ")".repeat(3000)
    );
    survive(&calls);
}
