//! Replays every input the spec fuzzer (`cargo run --release -p weft-compiler --example
//! fuzz_specs`) ever saw panic, kept in `tests/fuzz-corpus/`, through the same pipeline
//! (parse → check → lower → autodiff → passes): none may panic again. `lower-error-*` files are
//! not panics but open findings: specs that check cleanly and still fail to lower.

#[allow(dead_code)]
#[path = "../examples/fuzz_specs/harness.rs"]
mod harness;

#[test]
fn no_corpus_input_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "weft"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus is empty");
    for p in &files {
        let bytes = std::fs::read(p).unwrap();
        let src = String::from_utf8_lossy(&bytes);
        for seq in [1, 7, 16] {
            let r = std::panic::catch_unwind(|| harness::pipeline(&src, seq));
            assert!(r.is_ok(), "{} (seq hint {seq}) panics", p.display());
        }
    }
}

#[test]
fn the_first_crash_is_now_a_diagnostic() {
    let src = include_str!("fuzz-corpus/crash-layers-literal.weft");
    let diags = weft_dsl::check_source(src).unwrap_err();
    assert!(diags.iter().any(|d| d.code == "too-large"), "{diags:?}");
}
