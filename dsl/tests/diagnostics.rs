//! One malformed spec per error class, each with the exact diagnostics it must produce:
//! code, `line:col` of the primary span, message and hint. A change to any wording or span
//! shows up here as a readable diff of the table row.

use weft_dsl::{check_source, parse, Diagnostic};

/// One expected diagnostic.
#[derive(Debug, PartialEq)]
struct E {
    code: &'static str,
    /// 1-based line and column of the primary span.
    at: (usize, usize),
    message: &'static str,
    help: Option<&'static str>,
}

/// A malformed spec and every diagnostic it must produce, in order.
struct Case {
    name: &'static str,
    src: &'static str,
    expect: &'static [E],
}

/// The table row a diagnostic corresponds to, for comparison and for printing.
fn row(d: &Diagnostic, src: &str) -> String {
    let (l, c) = d.line_col(src);
    format!(
        "E {{ code: {:?}, at: ({l}, {c}), message: {:?}, help: {:?} }}",
        d.code,
        d.message,
        d.help.as_deref()
    )
}

/// Compares what `check_source` reports with the table; returns a description of any
/// difference.
fn compare(case: &Case) -> Option<String> {
    let got: Vec<String> = match check_source(case.src) {
        Ok(_) => Vec::new(),
        Err(ds) => ds.iter().map(|d| row(d, case.src)).collect(),
    };
    let want: Vec<String> = case.expect.iter().map(|e| format!("{e:?}")).collect();
    (got != want).then(|| {
        format!(
            "case `{}`:\n  expected:\n    {}\n  got:\n    {}",
            case.name,
            want.join("\n    "),
            got.join("\n    ")
        )
    })
}

#[test]
fn every_malformed_spec_reports_exactly_its_diagnostics() {
    let failures: Vec<String> = CASES.iter().filter_map(compare).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_has_one_case_per_error_class() {
    assert!(CASES.len() >= 45, "only {} cases", CASES.len());
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "case names must be unique");
    for c in CASES {
        assert!(
            !c.expect.is_empty(),
            "case `{}` expects no diagnostic",
            c.name
        );
    }
}

/// The base every case breaks: it checks clean, so each case's diagnostics come from its
/// one change.
const VALID: &str = r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool ffn[2] { swiglu(rms_norm(x)) }
  block b(rule) {
    x = x + attention(rms_norm(x), weights: rule, mask: causal, position: rope(layout: interleaved))
    x = x + route(ffn, router: mlp(hidden: 32), top_k: 2)
  }
  layers { 0 .. layers => b(signed) }
}
train {
  data = copy_task()
  steps = 10
  seq = 32
  optimizer = adamw(lr: 1e-3, betas: [0.9, 0.95])
  schedule = cosine(warmup: 2)
  trainable = ["*"]
  loss = 0.5 * nll() + 0.5 * nll(mask: second_half)
}
program mlp0 = mlp_decomposition(layer: 1)
"#;

#[test]
fn the_unbroken_base_checks_clean() {
    if let Err(ds) = check_source(VALID) {
        panic!(
            "{}",
            ds.iter()
                .map(|d| row(d, VALID))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_file_with_independent_errors_reports_each_of_them() {
    let case = CASES
        .iter()
        .find(|c| c.name == "several_independent_errors")
        .expect("case present");
    let ds = check_source(case.src).expect_err("five errors");
    assert_eq!(ds.len(), 5, "{ds:#?}");
    let mut lines: Vec<usize> = ds.iter().map(|d| d.line_col(case.src).0).collect();
    lines.dedup();
    assert_eq!(
        lines,
        [4, 5, 7, 13, 15],
        "one diagnostic per broken line, in source order"
    );
}

#[test]
fn two_broken_lines_are_both_reported_without_cascades() {
    let src =
        "model m {\n  vocab = 64)\n  dim = 64\n  heads = [4\n  layers = 2\n  ctx = 32 32\n}\n";
    let errs = parse(src).expect_err("syntax errors");
    let at: Vec<(usize, usize)> = errs.iter().map(|d| d.line_col(src)).collect();
    // A stray `)` on line 2, an unclosed `[` on line 4 (noticed at the start of line 5) and
    // an extra value on line 6; nothing invented after the last one.
    assert_eq!(at, [(2, 13), (5, 3), (6, 12)], "{errs:#?}");
    assert!(errs.iter().all(|d| d.code == "syntax"));
}

#[test]
fn a_rendered_diagnostic_shows_place_line_and_hint() {
    let case = CASES
        .iter()
        .find(|c| c.name == "unknown_weight_rule")
        .expect("case present");
    let d = &check_source(case.src).expect_err("error")[0];
    let out = d.render("m.weft", case.src);
    assert!(out.starts_with("m.weft:3:53: "), "{out}");
    assert!(out.contains("weights: sigend"), "{out}");
    assert!(out.contains("did you mean `signed`?"), "{out}");
    assert!(out.contains("weft::unknown-choice"), "{out}");
}

const CASES: &[Case] = &[
    Case {
        name: "syntax_missing_equals",
        src: r#"model m {
  vocab = 64; dim 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (2, 15), message: "expected a model item (`name = value`, `block`, `pool` or `layers`) or an operator, found `dim`", help: Some("is `=` missing? write `dim = ...`") },
        ],
    },
    Case {
        name: "syntax_unclosed_brace",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    x = x + swiglu(rms_norm(x))
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (5, 3), message: "expected a statement (`name = value` or `repeat`) or an operator, found `layers`", help: Some("is a `}` missing before `layers`?") },
            E { code: "syntax", at: (7, 1), message: "expected a model item (`name = value`, `block`, `pool` or `layers`), found end of file", help: Some("a `{`, `(` or `[` opened earlier is never closed") },
        ],
    },
    Case {
        name: "syntax_stray_colon",
        src: r#"model m {
  vocab: 64
  dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (2, 3), message: "expected a model item (`name = value`, `block`, `pool` or `layers`), found `vocab`", help: Some("`name: value` is only valid inside a call's argument list; settings are written `name = value`") },
        ],
    },
    Case {
        name: "syntax_let",
        src: r#"model m {
  let vocab = 64
  dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (2, 3), message: "expected a model item (`name = value`, `block`, `pool` or `layers`), found `let`", help: Some("weft has no `let`: write `name = value`") },
        ],
    },
    Case {
        name: "syntax_layer_rule_arrow",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers {
    0 .. layers -> b
  }
}
"#,
        expect: &[
            E { code: "syntax", at: (5, 18), message: "expected an expression, found `>`", help: Some("a layer rule maps a range to a block with `=>`: `1 .. 3 => decoder(signed)`") },
        ],
    },
    Case {
        name: "syntax_layer_rule_no_target",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers {
    0 .. layers =>
  }
}
"#,
        expect: &[
            E { code: "syntax", at: (6, 3), message: "expected an expression, found `}`", help: Some("a layer rule maps a range to a block: `1 .. 3 => decoder(signed)`") },
        ],
    },
    Case {
        name: "syntax_named_arg_with_equals",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden = 128) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (3, 48), message: "expected an operator, found `=`", help: Some("named arguments are written `name: value`") },
        ],
    },
    Case {
        name: "syntax_colon_then_equals",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: = 128) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (3, 49), message: "expected an expression, found `=`", help: Some("named arguments use `name: value`, assignments use `name = value`") },
        ],
    },
    Case {
        name: "syntax_two_broken_lines",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    x = x + attention(rms_norm(x),, mask: causal)
    x = x + swiglu(rms_norm(x)
    x = x + ) 
  }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (4, 35), message: "expected an argument, found `,`", help: None },
            E { code: "syntax", at: (6, 5), message: "expected an operator, found `x`", help: Some("a `(` opened on the line before is never closed") },
            E { code: "syntax", at: (6, 13), message: "expected an expression, found `)`", help: None },
        ],
    },
    Case {
        name: "syntax_unterminated_string",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = text("data.txt)
  steps = 10
}
"#,
        expect: &[
            E { code: "syntax", at: (7, 15), message: "expected an argument, found `\"`", help: Some("this string is never closed: strings end with `\"` on the same line") },
        ],
    },
    Case {
        name: "syntax_keyword_as_name",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block = 3
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "syntax", at: (3, 9), message: "expected a name, found `=`", help: Some("`block` is a keyword and cannot be used as a name") },
        ],
    },
    Case {
        name: "unknown_name_did_you_mean",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: 4 * dmi) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-name", at: (3, 53), message: "unknown name `dmi`", help: Some("did you mean `dim`?") },
        ],
    },
    Case {
        name: "unknown_function_did_you_mean",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + atention(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-name", at: (3, 21), message: "unknown function `atention`", help: Some("did you mean `attention`?") },
        ],
    },
    Case {
        name: "unknown_function_block_called",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block inner { x = x + swiglu(rms_norm(x)) }
  block b { x = decoder(x) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-name", at: (4, 17), message: "unknown function `decoder`", help: Some("blocks are applied in `layers { }`; inside a block use attention, mlp, swiglu, rms_norm, layer_norm, dropout or route") },
        ],
    },
    Case {
        name: "unknown_argument",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), head: 2) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (3, 44), message: "`attention` has no argument `head`", help: Some("did you mean `heads`?") },
        ],
    },
    Case {
        name: "unknown_argument_no_args",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: nope(base: 10)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (3, 59), message: "`nope` has no argument `base`", help: Some("`nope` takes no arguments") },
        ],
    },
    Case {
        name: "duplicate_argument",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: 64, hidden: 128) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (3, 53), message: "argument `hidden` given twice", help: None },
        ],
    },
    Case {
        name: "positional_after_named",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), mask: causal, 4) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (3, 58), message: "positional argument after a named one", help: Some("put positional arguments first, or name this one") },
        ],
    },
    Case {
        name: "too_many_positionals",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + rms_norm(x, 1e-6, 3) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (3, 39), message: "`rms_norm` takes at most 2 positional arguments", help: None },
        ],
    },
    Case {
        name: "missing_required_argument",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: freqs(layout: half)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "missing-argument", at: (3, 54), message: "`freqs` needs argument `table`", help: Some("`table`: one frequency per rotary pair (head_dim / 2 entries) (a list of numbers)") },
        ],
    },
    Case {
        name: "missing_required_data_path",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = text(tokenizer: "bytes")
  steps = 10
}
"#,
        expect: &[
            E { code: "missing-argument", at: (7, 10), message: "`text` needs argument `path`", help: Some("`path`: file path, relative to the spec (a string)") },
        ],
    },
    Case {
        name: "type_string_for_int",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: "big") }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (3, 49), message: "type mismatch for `hidden`: expected an integer, found a string", help: None },
        ],
    },
    Case {
        name: "type_float_for_int",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: 2.5 * dim) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (3, 49), message: "type mismatch for `hidden`: expected an integer, found the number 160.0", help: Some("integers are written without a decimal point, and arithmetic with a float gives a float") },
        ],
    },
    Case {
        name: "type_float_for_int_setting",
        src: r#"model m {
  vocab = 64; dim = 64.0; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (2, 21), message: "type mismatch for `dim`: expected an integer, found the number 64.0", help: Some("integers are written without a decimal point, and arithmetic with a float gives a float") },
        ],
    },
    Case {
        name: "type_list_for_scalar",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(base: [10000, 20000])) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (3, 65), message: "type mismatch for `base`: expected a number, found a list", help: None },
        ],
    },
    Case {
        name: "type_scalar_for_list",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  trainable = "*"
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (9, 15), message: "type mismatch for `trainable`: expected a list of strings, found a string", help: None },
        ],
    },
    Case {
        name: "type_tensor_for_number",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: x) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (3, 49), message: "type mismatch for `hidden`: expected an integer, found a tensor", help: None },
        ],
    },
    Case {
        name: "type_number_for_tensor",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + rms_norm(dim) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (3, 30), message: "type mismatch: expected a tensor, found `dim`, which is not a tensor", help: None },
        ],
    },
    Case {
        name: "type_bool_for_int",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = true; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. 2 => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (2, 45), message: "type mismatch for `layers`: expected an integer, found a boolean", help: None },
        ],
    },
    Case {
        name: "unknown_weight_rule",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), weights: sigend) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-choice", at: (3, 53), message: "unknown weight rule `sigend`", help: Some("did you mean `signed`?") },
        ],
    },
    Case {
        name: "unknown_mask_rule",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), mask: casual) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-choice", at: (3, 50), message: "unknown mask rule `casual`", help: Some("did you mean `causal`?") },
        ],
    },
    Case {
        name: "unknown_layout",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(layout: interleave)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-choice", at: (3, 67), message: "unknown rotary layout `interleave`", help: Some("did you mean `interleaved`?") },
        ],
    },
    Case {
        name: "unknown_choice_no_suggestion",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + mlp(rms_norm(x), activation: tanh) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-choice", at: (3, 50), message: "unknown value for `activation` `tanh`", help: Some("`activation` takes one of `gelu`, `relu`, `silu`") },
        ],
    },
    Case {
        name: "block_arg_bad_choice",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b(rule) { x = x + attention(rms_norm(x), weights: rule) }
  layers { 0 .. layers => b(sigend) }
}
"#,
        expect: &[
            E { code: "unknown-choice", at: (4, 29), message: "unknown weight rule `sigend`", help: Some("did you mean `signed`?") },
        ],
    },
    Case {
        name: "layer_range_out_of_range",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. 3 => b }
}
"#,
        expect: &[
            E { code: "bad-layer-range", at: (4, 12), message: "layer range 0 .. 3 is outside 0 .. 2", help: Some("ranges are half-open; this model has layers 0 .. 2 (`layers = 2`)") },
        ],
    },
    Case {
        name: "layer_range_empty",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers {
    0 .. 2 => b
    1 .. 1 => b
  }
}
"#,
        expect: &[
            E { code: "bad-layer-range", at: (6, 5), message: "empty layer range 1 .. 1", help: Some("ranges are half-open; this model has layers 0 .. 2 (`layers = 2`)") },
        ],
    },
    Case {
        name: "layers_overlap",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 4; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers {
    0 .. 3 => b
    2 .. 4 => b
  }
}
"#,
        expect: &[
            E { code: "overlapping-layers", at: (6, 5), message: "layer 2 is scheduled twice", help: Some("each layer index must be covered by exactly one rule") },
        ],
    },
    Case {
        name: "layers_gap",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 4; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers {
    0 => b
    3 => b
  }
}
"#,
        expect: &[
            E { code: "layer-gap", at: (4, 3), message: "layers 1, 2 are not scheduled", help: Some("cover every layer 0 .. 4 (ranges are half-open: `1 .. 3` is layers 1 and 2)") },
        ],
    },
    Case {
        name: "layers_unknown_block",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block decoder { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => decodr }
}
"#,
        expect: &[
            E { code: "unknown-name", at: (4, 27), message: "unknown block `decodr`", help: Some("did you mean `decoder`?") },
        ],
    },
    Case {
        name: "layers_block_arity",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b(rule, mask) { x = x + attention(rms_norm(x), weights: rule, mask: mask) }
  layers { 0 .. layers => b(signed) }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (4, 27), message: "block `b` takes 2 arguments, 1 given", help: Some("the block is declared as `block b(rule, mask)`") },
        ],
    },
    Case {
        name: "layers_block_unknown_param",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b(rule) { x = x + attention(rms_norm(x), weights: rule) }
  layers { 0 .. layers => b(rules: signed) }
}
"#,
        expect: &[
            E { code: "bad-argument", at: (4, 29), message: "block `b` has no parameter `rules`", help: Some("did you mean `rule`?") },
        ],
    },
    Case {
        name: "indivisible_dim_by_heads",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 5; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "indivisible", at: (2, 33), message: "dim (64) is not divisible by heads (5)", help: Some("choose heads dividing dim, or set `head_dim` explicitly") },
        ],
    },
    Case {
        name: "indivisible_heads_by_kv_heads",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; kv_heads = 3; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "indivisible", at: (2, 47), message: "heads (4) is not divisible by kv_heads (3)", help: Some("grouped-query attention shares each key/value head among heads / kv_heads query heads") },
        ],
    },
    Case {
        name: "indivisible_dimension_expression",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  hidden = dim / 3
  block b { x = x + swiglu(rms_norm(x), hidden: hidden) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "indivisible", at: (3, 12), message: "64 is not divisible by 3", help: Some("dimensions must divide exactly; write a float literal (e.g. `1.0 * a / b`) for a ratio") },
        ],
    },
    Case {
        name: "division_by_zero",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x), hidden: dim / (heads - 4)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "arithmetic", at: (3, 49), message: "division by zero", help: None },
        ],
    },
    Case {
        name: "attention_heads_not_dividing_dim",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), heads: 6) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "indivisible", at: (3, 51), message: "dim (64) is not divisible by heads (6)", help: None },
        ],
    },
    Case {
        name: "odd_head_dim_with_rope",
        src: r#"model m {
  vocab = 64; dim = 12; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope()) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "indivisible", at: (3, 54), message: "rotary encodings rotate pairs, but head_dim is odd (3)", help: Some("choose dim and heads so that dim / heads is even, or use `position: nope`") },
        ],
    },
    Case {
        name: "freqs_wrong_length",
        src: r#"model m {
  vocab = 64; dim = 32; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: freqs([1.0, 0.5, 0.0])) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-table", at: (3, 54), message: "frequency table has 3 entries, but heads have 4 rotary pairs", help: None },
        ],
    },
    Case {
        name: "hope_keep_too_large",
        src: r#"model m {
  vocab = 64; dim = 32; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: hope(keep: 5)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (3, 54), message: "hope keeps 5 pairs, but heads have 4 rotary pairs", help: None },
        ],
    },
    Case {
        name: "router_without_pool",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + gru(hidden: 64) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "router-without-pool", at: (3, 21), message: "router `gru` used without a pool", help: Some("a router chooses modules of a pool: `route(POOL, router: gru(...))`") },
        ],
    },
    Case {
        name: "route_over_non_pool",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool attn[4] { attention(rms_norm(x)) }
  block b { x = x + route(atn, router: mlp) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "unknown-pool", at: (4, 27), message: "`atn` is not a pool", help: Some("did you mean `attn`?") },
        ],
    },
    Case {
        name: "route_top_k_too_large",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool ffn[2] { swiglu(rms_norm(x)) }
  block b { x = x + route(ffn, router: mlp(hidden: 32), top_k: 4) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-route", at: (4, 64), message: "top_k = 4, but pool `ffn` offers 3 choices", help: Some("the pool has 2 modules plus SKIP") },
        ],
    },
    Case {
        name: "route_inside_pool",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool ffn[2] { swiglu(rms_norm(x)) }
  pool p[2] { route(ffn, router: mlp) }
  block b { x = x + route(ffn, router: mlp) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-pool", at: (4, 15), message: "a pool holds `attention`, `mlp` or `swiglu` modules", help: Some("e.g. `pool attn[4] { attention(layer_norm(x)) }`") },
        ],
    },
    Case {
        name: "rotary_router_without_bases",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(router: swiglu)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-route", at: (3, 54), message: "a rotary router needs `bases` to choose from", help: Some("e.g. `rope(bases: [10000, 15000, 20000], router: swiglu, top_k: 2)`") },
        ],
    },
    Case {
        name: "bases_without_router",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(bases: [10000, 20000])) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-route", at: (3, 54), message: "several `bases` need a `router` to mix them", help: Some("add `router: swiglu`") },
        ],
    },
    Case {
        name: "rope_top_k_exceeds_bases",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(bases: [10000, 20000], router: swiglu, top_k: 3)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-route", at: (3, 54), message: "top_k = 3, but only 2 bases are given", help: None },
        ],
    },
    Case {
        name: "rope_base_not_above_one",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), position: rope(base: 1)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (3, 54), message: "rotary base must exceed 1, not 1", help: None },
        ],
    },
    Case {
        name: "pool_of_non_module",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool norms[2] { rms_norm(x) }
  block b { x = x + route(norms, router: mlp) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-pool", at: (3, 19), message: "a pool holds `attention`, `mlp` or `swiglu` modules", help: Some("e.g. `pool attn[4] { attention(layer_norm(x)) }`") },
        ],
    },
    Case {
        name: "pool_size_zero",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  pool ffn[0] { swiglu(rms_norm(x)) }
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (3, 12), message: "a pool needs at least one module, not 0", help: None },
        ],
    },
    Case {
        name: "repeat_count_zero",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    repeat 0 { x = x + swiglu(rms_norm(x)) }
  }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (4, 12), message: "repeat needs at least 1 iteration, not 0", help: None },
        ],
    },
    Case {
        name: "block_never_updates_x",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    h = swiglu(rms_norm(x))
  }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "block-without-x", at: (3, 9), message: "block `b` never updates `x`", help: Some("a block transforms the residual stream: `x = x + attention(rms_norm(x))`") },
        ],
    },
    Case {
        name: "duplicate_setting",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  dim = 128
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "duplicate", at: (3, 3), message: "`dim` is defined twice", help: None },
        ],
    },
    Case {
        name: "duplicate_block",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  block b { x = x + attention(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "duplicate", at: (4, 9), message: "`b` is defined twice", help: None },
        ],
    },
    Case {
        name: "duplicate_block_parameter",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b(rule, rule) { x = x + attention(rms_norm(x), weights: rule) }
  layers { 0 .. layers => b(signed, signed) }
}
"#,
        expect: &[
            E { code: "duplicate", at: (3, 17), message: "parameter `rule` listed twice", help: None },
        ],
    },
    Case {
        name: "duplicate_layers_section",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "duplicate", at: (5, 3), message: "the layer schedule is given twice", help: Some("list every range in one `layers { }` section") },
        ],
    },
    Case {
        name: "reserved_x",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  x = 3
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "reserved", at: (3, 3), message: "`x` is reserved for the residual stream", help: Some("choose another name") },
        ],
    },
    Case {
        name: "shadowing_in_block",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    dim = swiglu(rms_norm(x))
    x = x + dim
  }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "shadowing", at: (4, 5), message: "`dim` already names a setting, pool or parameter", help: Some("choose another name for this tensor") },
        ],
    },
    Case {
        name: "missing_setting_typo",
        src: r#"model m {
  vocab = 64; dim = 64; haeds = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "missing-setting", at: (2, 25), message: "model `m` does not set `heads`", help: Some("did you mean `heads`? `haeds` is not a setting, so it defines a user constant") },
        ],
    },
    Case {
        name: "missing_setting_plain",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "missing-setting", at: (1, 7), message: "model `m` does not set `ctx`", help: Some("add `ctx = ...` (maximum sequence length)") },
        ],
    },
    Case {
        name: "non_positive_setting",
        src: r#"model m {
  vocab = 0; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (2, 11), message: "`vocab` must be positive, not 0", help: None },
        ],
    },
    Case {
        name: "non_positive_final_norm_eps",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32; final_norm_eps = 0.0
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (2, 75), message: "`final_norm_eps` must be positive, not 0", help: None },
        ],
    },
    Case {
        name: "missing_layers_section",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
}
"#,
        expect: &[
            E { code: "missing-layers", at: (1, 7), message: "model `m` has no layer schedule", help: Some("add `layers { 0 .. layers => BLOCK }`") },
        ],
    },
    Case {
        name: "missing_model",
        src: r#"train {
  data = copy_task()
  steps = 10
}
"#,
        expect: &[
            E { code: "missing-model", at: (1, 1), message: "this file has no `model` section", help: Some("every spec describes one model: `model gpt { vocab = 256 ... }`") },
        ],
    },
    Case {
        name: "two_models",
        src: r#"model a {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
model c {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "duplicate", at: (6, 7), message: "a spec holds one model", help: Some("put each model in its own file") },
        ],
    },
    Case {
        name: "train_unknown_setting",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  bacth = 8
}
"#,
        expect: &[
            E { code: "unknown-setting", at: (9, 3), message: "unknown training setting `bacth`", help: Some("did you mean `batch`?") },
        ],
    },
    Case {
        name: "train_missing_data_and_steps",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  batch = 8
}
"#,
        expect: &[
            E { code: "missing-setting", at: (6, 1), message: "training needs `data`", help: Some("add `data = ...` (training data)") },
            E { code: "missing-setting", at: (6, 1), message: "training needs `steps`", help: Some("add `steps = ...` (optimizer steps)") },
        ],
    },
    Case {
        name: "train_duplicate_setting",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  steps = 20
}
"#,
        expect: &[
            E { code: "duplicate", at: (9, 3), message: "`steps` is set twice", help: None },
        ],
    },
    Case {
        name: "train_unknown_model",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train gpt {
  data = copy_task()
  steps = 10
}
"#,
        expect: &[
            E { code: "unknown-name", at: (6, 7), message: "unknown model `gpt`", help: Some("this file's model is `m`") },
        ],
    },
    Case {
        name: "two_train_sections",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
}
train {
  data = copy_task()
  steps = 20
}
"#,
        expect: &[
            E { code: "duplicate", at: (10, 1), message: "a spec holds at most one `train` section", help: None },
        ],
    },
    Case {
        name: "seq_exceeds_ctx",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  seq = 64
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 9), message: "seq = 64, but the model's context is 32", help: Some("raise `ctx` in the model or shorten `seq`") },
        ],
    },
    Case {
        name: "steps_not_positive",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 0
}
"#,
        expect: &[
            E { code: "bad-value", at: (8, 11), message: "`steps` must be positive, not 0", help: None },
        ],
    },
    Case {
        name: "bad_betas",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  optimizer = adamw(lr: 1e-3, betas: [0.9, 1.5])
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 15), message: "betas must be two numbers in [0, 1)", help: Some("e.g. `betas: [0.9, 0.95]`") },
        ],
    },
    Case {
        name: "non_positive_lr",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  optimizer = sgd(lr: 0)
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 15), message: "learning rate must be positive", help: None },
        ],
    },
    Case {
        name: "empty_trainable",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  trainable = []
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 15), message: "no parameter is trainable", help: Some("use `[\"*\"]` for everything, or globs such as `[\"*.gain\"]`") },
        ],
    },
    Case {
        name: "mask_rate_out_of_range",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = arithmetic()
  steps = 10
  transforms = [masked_thought(p: 1.5)]
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 17), message: "mask rate `p` must lie in [0, 1]", help: None },
        ],
    },
    Case {
        name: "wrong_kind_optimizer_as_schedule",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  schedule = adamw(lr: 1e-3)
}
"#,
        expect: &[
            E { code: "wrong-kind", at: (9, 14), message: "`adamw` is an optimizer (adamw, sgd), but a schedule (constant, linear, cosine, cosine_tail) is expected here", help: None },
        ],
    },
    Case {
        name: "unknown_schedule",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  schedule = cosin(warmup: 10)
}
"#,
        expect: &[
            E { code: "unknown-name", at: (9, 14), message: "unknown schedule `cosin`", help: Some("did you mean `cosine`?") },
        ],
    },
    Case {
        name: "loss_product_of_losses",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  loss = nll() * nll(mask: second_half)
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (9, 10), message: "losses combine as `a * loss + b * loss`", help: Some("scale a loss by a number and add losses together") },
        ],
    },
    Case {
        name: "loss_plus_number",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  loss = nll() + 1
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (9, 10), message: "losses combine as `a * loss + b * loss`", help: Some("scale a loss by a number and add losses together") },
        ],
    },
    Case {
        name: "program_layer_out_of_range",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
program mlp0 = mlp_decomposition(layer: 2)
"#,
        expect: &[
            E { code: "bad-value", at: (6, 16), message: "layer 2 does not exist (the model has layers 0 .. 2)", help: None },
        ],
    },
    Case {
        name: "program_head_out_of_range",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
program rc = rope_components(layer: 0, head: 4)
"#,
        expect: &[
            E { code: "bad-value", at: (6, 14), message: "head 4 does not exist (layers have 4 heads)", help: None },
        ],
    },
    Case {
        name: "duplicate_program",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
program lens = logit_lens()
program lens = logit_lens(len: 16)
"#,
        expect: &[
            E { code: "duplicate", at: (7, 9), message: "program `lens` is defined twice", help: None },
        ],
    },
    Case {
        name: "program_not_a_probe",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
program p = adamw()
"#,
        expect: &[
            E { code: "wrong-kind", at: (6, 13), message: "`adamw` is an optimizer (adamw, sgd), but a probe or program is expected here", help: None },
        ],
    },
    Case {
        name: "probe_samples_not_positive",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + swiglu(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  eval = [copy_accuracy(samples: 0)]
}
"#,
        expect: &[
            E { code: "bad-value", at: (9, 11), message: "`samples` must be positive, not 0", help: None },
        ],
    },
    Case {
        name: "dropout_out_of_range",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = dropout(x + swiglu(rms_norm(x)), p: 1.0) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "bad-value", at: (3, 53), message: "`p` must lie in [0, 1), not 1", help: None },
        ],
    },
    Case {
        name: "several_independent_errors",
        src: r#"model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b {
    x = x + attention(rms_norm(x), weights: sigend)
    x = x + swiglu(rms_norm(x), hidden: 2.5)
  }
  block c { x = x + atention(rms_norm(x)) }
  layers { 0 .. layers => b }
}
train {
  data = copy_task()
  steps = 10
  bacth = 8
}
program p = mlp_decomposition(layer: 7)
"#,
        expect: &[
            E { code: "unknown-choice", at: (4, 45), message: "unknown weight rule `sigend`", help: Some("did you mean `signed`?") },
            E { code: "type-mismatch", at: (5, 41), message: "type mismatch for `hidden`: expected an integer, found the number 2.5", help: Some("integers are written without a decimal point, and arithmetic with a float gives a float") },
            E { code: "unknown-name", at: (7, 21), message: "unknown function `atention`", help: Some("did you mean `attention`?") },
            E { code: "unknown-setting", at: (13, 3), message: "unknown training setting `bacth`", help: Some("did you mean `batch`?") },
            E { code: "bad-value", at: (15, 13), message: "layer 7 does not exist (the model has layers 0 .. 2)", help: None },
        ],
    },
    Case {
        name: "rule_not_online",
        src: r#"rule bad {
  weights = exp(s) / (1 + sum(exp(2.0 * s)))
}
model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), rule: bad) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "not-online", at: (2, 17), message: "these weights cannot be evaluated online: the numerator's exponent differs from the denominator's", help: Some("the fused kernels visit keys in blocks and keep a running maximum m of f(s); they can only rescale what they accumulated when the weights have the form `h(s) * exp(f(s)) / (c + sum(exp(f(s))))` with the same f in numerator and denominator and a constant c >= 0 (softmax: h = 1, f = s; Cog: h = sign(s), f = abs(s)), or no `sum` at all") },
        ],
    },
    Case {
        name: "rule_type_error",
        src: r#"rule window {
  mask = j <= i && i - j
}
model m {
  vocab = 64; dim = 64; heads = 4; layers = 2; ctx = 32
  block b { x = x + attention(rms_norm(x), rule: windw) }
  layers { 0 .. layers => b }
}
"#,
        expect: &[
            E { code: "type-mismatch", at: (2, 20), message: "type mismatch in `mask`: expected a condition (true or false), found a number", help: Some("conditions compare numbers (`j <= i`) and combine with `&&`, `||`, `!`") },
            E { code: "unknown-rule", at: (6, 50), message: "unknown attention rule `windw`", help: Some("did you mean `window`?") },
        ],
    },
];
