//! Attention rules in the language: the prelude checks and defines `softmax` and `signed`;
//! rules parse, format back to themselves and check into typed values; type errors and
//! normalisers the kernels cannot evaluate online are located diagnostics with a hint.

use weft_dsl::check::attn_rule::{prelude, prelude_diagnostics};
use weft_dsl::typed::{ParamInit, RuleExpr, RuleFn, RuleVar, RuleWeights, TensorCall};
use weft_dsl::{check_source, format, parse};

const MODEL: &str = "
model m {
  vocab = 32; dim = 16; heads = 2; layers = 1; ctx = 16
  window = 4
  block b { x = x + attention(rms_norm(x), rule: RULE) }
  layers { 0 => b }
}
";

fn with_rule(rule_def: &str, rule: &str) -> String {
    format!("{rule_def}\n{}", MODEL.replace("RULE", rule))
}

/// `(code, line, col, message, help)` of each diagnostic.
fn diags(src: &str) -> Vec<(String, usize, usize, String, String)> {
    match check_source(src) {
        Ok(_) => Vec::new(),
        Err(ds) => ds
            .iter()
            .map(|d| {
                let (l, c) = d.line_col(src);
                (
                    d.code.to_string(),
                    l,
                    c,
                    d.message.clone(),
                    d.help.clone().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

#[test]
fn the_prelude_checks_and_defines_the_built_in_weight_rules() {
    assert!(
        prelude_diagnostics().is_empty(),
        "{:?}",
        prelude_diagnostics()
    );
    let p = prelude();
    let softmax = &p["softmax"];
    assert_eq!(
        softmax.weights,
        Some(RuleWeights::Normalised {
            factor: None,
            exponent: RuleExpr::Var(RuleVar::Score),
            sink: 0.0
        })
    );
    let signed = &p["signed"];
    let abs = RuleExpr::Call(RuleFn::Abs, vec![RuleExpr::Var(RuleVar::Score)]);
    let sign = RuleExpr::Call(RuleFn::Sign, vec![RuleExpr::Var(RuleVar::Score)]);
    assert_eq!(
        signed.weights,
        Some(RuleWeights::Normalised {
            factor: Some(sign),
            exponent: abs,
            sink: 0.0
        })
    );
}

#[test]
fn a_rule_checks_into_its_typed_parts() {
    let src = with_rule(
        "rule alibi_window {
  slope = head_param(init: alibi, trainable: true)
  score = s - slope * (i - j)
  mask = j <= i && i - j < window
  weights = exp(s) / (1 + sum(exp(s)))
}",
        "alibi_window",
    );
    let c = check_source(&src).unwrap_or_else(|e| panic!("{e:?}"));
    let r = c.model.rule("alibi_window").expect("the rule");
    assert_eq!(r.params.len(), 1);
    assert_eq!(r.params[0].init, ParamInit::Alibi);
    assert!(r.params[0].trainable);
    // `window` (a model constant) became the number 4.
    let mask = format!("{:?}", r.mask);
    assert!(mask.contains("Num(4.0)"), "{mask}");
    assert!(matches!(
        r.weights,
        Some(RuleWeights::Normalised { sink, .. }) if sink == 1.0
    ));
    // The attention call names it.
    let block = &c.model.blocks["b"];
    let weft_dsl::ast::Stmt::Assign(a) = &block.body[0] else {
        panic!()
    };
    let weft_dsl::ast::ExprKind::Binary { rhs, .. } = &a.value.kind else {
        panic!()
    };
    let call = c
        .model
        .resolve_tensor(rhs, &Default::default(), &[])
        .unwrap()
        .unwrap();
    let TensorCall::Attention(att) = call else {
        panic!()
    };
    assert_eq!(att.rule.as_deref(), Some("alibi_window"));
}

#[test]
fn rules_format_back_to_themselves() {
    let src = with_rule(
        "rule w {
  mask = !(j > i) && (i - j < 3 || j == 0)
  score = -s * 2.0 + where(i != j, 1.0, 0.0)
  weights = sigmoid(s)
}",
        "w",
    );
    let f = parse(&src).unwrap();
    let text = format(&f, Some(&src));
    let again = parse(&text).unwrap();
    assert_eq!(f.without_spans(), again.without_spans(), "{text}");
    assert!(text.contains("rule w {"), "{text}");
    assert!(check_source(&text).is_ok());
}

#[test]
fn a_normaliser_the_kernels_cannot_run_online_is_refused_with_the_reason() {
    let src = with_rule(
        "rule bad {
  weights = exp(s) / sum(exp(2.0 * s))
}",
        "bad",
    );
    let d = diags(&src);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "not-online");
    assert_eq!((d[0].1, d[0].2), (2, 17));
    assert!(d[0].3.contains("exponent differs"), "{d:?}");
    assert!(d[0].4.contains("running maximum"), "{d:?}");

    let src = with_rule("rule bad2 {\n  weights = s / sum(abs(s))\n}", "bad2");
    let d = diags(&src);
    assert_eq!(d[0].0, "not-online", "{d:?}");
    assert!(d[0].3.contains("summed term"), "{d:?}");

    let src = with_rule("rule bad3 {\n  weights = sum(exp(s)) + s\n}", "bad3");
    let d = diags(&src);
    assert_eq!(d[0].0, "not-online", "{d:?}");
}

#[test]
fn type_errors_in_rule_expressions_are_located() {
    // A number where a mask needs a condition.
    let src = with_rule("rule r {\n  mask = i - j\n}", "r");
    let d = diags(&src);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "type-mismatch");
    assert_eq!((d[0].1, d[0].2), (2, 10));
    assert!(d[0].3.contains("expected a condition"), "{d:?}");
    // A condition in arithmetic.
    let src = with_rule("rule r {\n  score = s + (i < j)\n}", "r");
    let d = diags(&src);
    assert_eq!(d[0].0, "type-mismatch", "{d:?}");
    assert_eq!((d[0].1, d[0].2), (2, 15));
    // A mask cannot read the score; the normaliser cannot read positions.
    let src = with_rule("rule r {\n  mask = s > 0.0\n}", "r");
    assert_eq!(diags(&src)[0].0, "rule-variable");
    let src = with_rule("rule r {\n  weights = sigmoid(s - i)\n}", "r");
    assert_eq!(diags(&src)[0].0, "rule-variable");
    // Unknown names and functions suggest the right one.
    let src = with_rule("rule r {\n  score = s * windw\n}", "r");
    let d = diags(&src);
    assert_eq!(d[0].0, "unknown-name");
    assert!(d[0].4.contains("window"), "{d:?}");
    let src = with_rule("rule r {\n  score = tahn(s)\n}", "r");
    let d = diags(&src);
    assert_eq!(d[0].0, "unknown-function");
    assert!(d[0].4.contains("tanh"), "{d:?}");
}

#[test]
fn rule_names_are_checked_where_they_are_used() {
    let src = with_rule("rule alibi {\n  score = s\n}", "albi");
    let d = diags(&src);
    assert_eq!(d[0].0, "unknown-rule", "{d:?}");
    assert!(d[0].4.contains("alibi"), "{d:?}");
    // The prelude's rules cannot be redefined.
    let src = with_rule("rule softmax {\n  score = s\n}", "softmax");
    assert_eq!(diags(&src)[0].0, "duplicate");
    // Comparisons outside a rule are an error that says where they belong.
    let src = MODEL
        .replace("RULE", "softmax")
        .replace("window = 4", "window = 4 < 5");
    let d = diags(&src);
    assert_eq!(d[0].0, "rule-only", "{d:?}");
}

#[test]
fn a_parameter_must_be_read_by_the_score() {
    let src = with_rule(
        "rule r {\n  slope = head_param(init: 0.5)\n  score = s\n}",
        "r",
    );
    assert_eq!(diags(&src)[0].0, "unused");
}
