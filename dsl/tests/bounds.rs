//! Every integer in a spec has an upper bound, reported at its span with a hint, and number
//! arithmetic is checked: huge literals (found by mutating the shipped examples) used to
//! panic the checker with "capacity overflow".

use weft_dsl::check::bounds::{MAX_HIDDEN, MAX_LAYERS, MAX_WIDTH};
use weft_dsl::check_source;

/// A small valid spec with `{MODEL}` extra model lines, `{HIDDEN}` the swiglu width and
/// `{TRAIN}` extra train lines.
const BASE: &str = "model m {
  vocab = 64
  dim = 32
  heads = 4
  layers = 2
  ctx = 16
  {MODEL}
  block b {
    x = x + attention(rms_norm(x), mask: causal, position: rope(base: 10000))
    x = x + swiglu(rms_norm(x), hidden: {HIDDEN})
  }
  layers { 0 .. layers => b }
}
train {
  data = copy_task(len: 4)
  steps = 10
  {TRAIN}
}
";

fn spec(model: &str, hidden: &str, train: &str) -> String {
    BASE.replace("{MODEL}", model)
        .replace("{HIDDEN}", hidden)
        .replace("{TRAIN}", train)
}

/// Checks `src`, which must fail with a diagnostic of `code` whose span covers `needle`;
/// returns the rendered report.
fn refused(src: &str, code: &str, needle: &str) -> String {
    let diags = match check_source(src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(d) => d,
    };
    let d = diags
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("no `{code}` diagnostic in {diags:#?}\nfor\n{src}"));
    let at = &src[d.span.start..d.span.end];
    assert!(at.contains(needle), "span {at:?} does not cover {needle:?}");
    let text = d.render("bounds.weft", src);
    assert!(text.contains("bounds.weft:"), "no file:line:col in {text}");
    text
}

#[test]
fn the_base_spec_checks() {
    check_source(&spec("", "4 * dim", "")).unwrap();
}

#[test]
fn a_literal_past_64_bits_is_a_diagnostic_not_a_panic() {
    // The reproduction: `layers = 99999999999999999999999999`.
    let src = spec("", "4 * dim", "").replace("layers = 2", "layers = 99999999999999999999999999");
    let text = refused(&src, "too-large", "99999999999999999999999999");
    assert!(text.contains("does not fit in 64 bits"), "{text}");
    assert!(
        text.contains("layers = 99999999999999999999999999"),
        "source line: {text}"
    );
}

#[test]
fn each_model_setting_is_bounded_at_its_own_span() {
    for (key, bad) in [
        ("vocab", MAX_WIDTH + 1),
        ("dim", MAX_WIDTH * 4),
        ("ctx", MAX_WIDTH + 1),
        ("layers", MAX_LAYERS + 1),
        ("heads", 1 << 20),
    ] {
        let line = format!("{key} = {bad}");
        let src =
            spec("", "64", "").replacen(&format!("{key} = "), &format!("{key} = {bad} # was "), 1);
        let text = refused(&src, "too-large", &bad.to_string());
        assert!(text.contains("help"), "{line}: {text}");
    }
    // Within every bound alone, but the query projection would be wider than any size counts.
    let src = spec("head_dim = 16777216", "64", "");
    refused(&src, "too-large", "16777216");
}

#[test]
fn a_model_merely_too_big_for_memory_still_checks() {
    // The memory budget refuses this with a number; the checker must not.
    check_source(&spec("", "64", "").replace("dim = 32", "dim = 1048576")).unwrap();
}

#[test]
fn call_arguments_and_train_settings_are_bounded() {
    refused(
        &spec("", &(MAX_HIDDEN + 1).to_string(), ""),
        "too-large",
        &(MAX_HIDDEN + 1).to_string(),
    );
    refused(
        &spec("", "4 * dim", "").replace("copy_task(len: 4)", "copy_task(len: 4000000000)"),
        "too-large",
        "4000000000",
    );
    for line in [
        "batch = 100000000000",
        "eval_every = 9999999999999999",
        "accumulate = 2000000",
    ] {
        let num = line.split(" = ").nth(1).unwrap();
        refused(&spec("", "4 * dim", line), "too-large", num);
    }
    refused(&spec("", "4 * dim", "seed = -3"), "bad-value", "-3");
    // Any non-negative seed is fine.
    check_source(&spec("", "4 * dim", "seed = 9223372036854775806")).unwrap();
}

#[test]
fn pool_sizes_and_repeat_counts_are_bounded() {
    let src = "model m {
  vocab = 64
  dim = 32
  heads = 4
  layers = 1
  ctx = 16
  pool p[100000] { attention(x) }
  block b {
    repeat 5000 { x = x + route(p) }
  }
  layers { 0 .. layers => b }
}
";
    refused(src, "too-large", "100000");
    let src = src.replace("p[100000]", "p[2]");
    refused(&src, "too-large", "5000");
}

#[test]
fn number_arithmetic_is_checked() {
    // Negating the smallest i64 overflows.
    refused(
        &spec("big = -(0 - 9223372036854775807 - 1)", "64", ""),
        "arithmetic",
        "-(0 - 9223372036854775807 - 1)",
    );
    refused(
        &spec("big = 9223372036854775807 * 2", "64", ""),
        "arithmetic",
        "9223372036854775807 * 2",
    );
    // Floats that overflow would slip past every range rule as infinities or NaN.
    refused(
        &spec("", "64", "").replace("base: 10000", "base: 1e999"),
        "too-large",
        "1e999",
    );
    refused(
        &spec(
            "",
            "64",
            "optimizer = adamw(lr: 1e300 * 1e300 - 1e300 * 1e300)",
        ),
        "arithmetic",
        "1e300 * 1e300",
    );
}
