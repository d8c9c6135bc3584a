//! Text → AST. pest does the recognising; this module builds the typed tree, turns pest's
//! errors into diagnostics with friendly wording, and recovers after a syntax error so that
//! several broken lines in one file are all reported.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::Span;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct WeftParser;

/// The most syntax errors reported for one file before giving up.
const MAX_SYNTAX_ERRORS: usize = 10;

/// Parses a whole file. Returns the tree when the text is syntactically valid, and every
/// syntax error found otherwise. Never panics.
pub fn parse(src: &str) -> Result<File, Vec<Diagnostic>> {
    pest::set_call_limit(std::num::NonZeroUsize::new(5_000_000));
    if let Some(d) = too_deep(src) {
        return Err(vec![d]);
    }
    match parse_once(src) {
        Ok(f) => Ok(f),
        Err(first) => Err(recover(src, first)),
    }
}

/// Parses one expression (used for the defaults in the builtin table).
#[allow(clippy::result_large_err)]
pub(crate) fn parse_expr(src: &str) -> Result<Expr, Diagnostic> {
    let mut pairs = WeftParser::parse(Rule::expr_only, src).map_err(|e| syntax_error(src, e))?;
    let top = pairs.next().expect("expr_only pair");
    Ok(build_expr(
        top.into_inner().next().expect("expr inside expr_only"),
    ))
}

#[allow(clippy::result_large_err)]
fn parse_once(src: &str) -> Result<File, Diagnostic> {
    let mut pairs = WeftParser::parse(Rule::file, src).map_err(|e| syntax_error(src, e))?;
    let file = pairs
        .next()
        .expect("pest returns the `file` pair on success");
    Ok(build_file(file))
}

/// Deepest bracket nesting and longest run of prefix `-` accepted. Parsing, checking and
/// formatting recurse over the tree; bounding its depth here keeps them off the stack limit.
const MAX_NESTING: usize = 64;

fn too_deep(src: &str) -> Option<Diagnostic> {
    let (mut depth, mut minus_run, mut in_str, mut in_comment, mut escaped) =
        (0usize, 0usize, false, false, false);
    for (i, c) in src.char_indices() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '#' => in_comment = true,
            '"' => in_str = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '-' => minus_run += 1,
            c if c.is_whitespace() => {}
            _ => minus_run = 0,
        }
        if c != '-' && !c.is_whitespace() {
            minus_run = 0;
        }
        if depth > MAX_NESTING || minus_run > MAX_NESTING {
            return Some(
                Diagnostic::new(
                    "syntax",
                    Span::new(i, i + c.len_utf8()),
                    format!("nesting deeper than {MAX_NESTING} levels"),
                )
                .label("too deeply nested")
                .help("split the expression into named steps"),
            );
        }
    }
    None
}

/// After an error, blank the offending line (keeping byte offsets) and parse again, as long
/// as each new error lies further on. This finds independent mistakes on separate lines
/// without inventing cascades from an unbalanced brace. An error at the first token of a
/// line is usually caused by the line before (a missing `)` or operand), so that line is
/// blanked first; if that does not move the error, the error's own line is.
fn recover(src: &str, first: Diagnostic) -> Vec<Diagnostic> {
    let mut errors = vec![first];
    let mut text = src.to_string();
    'outer: while errors.len() < MAX_SYNTAX_ERRORS {
        let last = errors
            .last()
            .expect("at least one error")
            .span
            .start
            .min(text.len());
        let line_start = text[..last].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = text[last..]
            .find('\n')
            .map(|i| last + i)
            .unwrap_or(text.len());
        let mut candidates = Vec::new();
        if text[line_start..last].trim().is_empty() {
            if let Some(code_end) = text[..line_start].rfind(|c: char| !c.is_whitespace()) {
                let prev_start = text[..code_end].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let width = text[code_end..].chars().next().map_or(1, char::len_utf8);
                candidates.push((prev_start, code_end + width));
            }
        }
        candidates.push((line_start, line_end));
        for (start, end) in candidates {
            if start == end {
                continue;
            }
            let mut trial = text.clone();
            let blank: String = trial[start..end]
                .chars()
                .map(|c| " ".repeat(c.len_utf8()))
                .collect();
            trial.replace_range(start..end, &blank);
            match parse_once(&trial) {
                Ok(_) => break 'outer,
                Err(e) if e.span.start > last.max(end) => {
                    errors.push(e);
                    text = trial;
                    continue 'outer;
                }
                Err(_) => {}
            }
        }
        break;
    }
    errors
}

fn syntax_error(src: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = found_at(src, pos);
    let span = Span::new(
        pos,
        pos + found
            .len()
            .max(usize::from(pos < src.len()))
            .min(src.len() - pos),
    );
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => describe_expected(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let shown = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{found}`")
    };
    let mut d = Diagnostic::new(
        "syntax",
        span,
        format!("expected {expected}, found {shown}"),
    )
    .label(format!("expected {expected}"));
    d.help = syntax_hint(src, pos, &found);
    d
}

/// The token-ish text at `pos`: a word, a number, or one symbol.
fn found_at(src: &str, pos: usize) -> String {
    let rest = &src[pos.min(src.len())..];
    let mut chars = rest.chars();
    match chars.next() {
        None => String::new(),
        Some(c) if c.is_alphanumeric() || c == '_' => rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect(),
        Some(c) => c.to_string(),
    }
}

fn syntax_hint(src: &str, pos: usize, found: &str) -> Option<String> {
    let before = src[..pos.min(src.len())].trim_end();
    let after = src[(pos + found.len()).min(src.len())..].trim_start_matches([' ', '\t']);
    let next = after.chars().next();
    let line = &src[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..before.len()];
    let in_call = line.matches('(').count() > line.matches(')').count();
    let is_word = found
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    if found == "=" && before.ends_with(':') {
        return Some("named arguments use `name: value`, assignments use `name = value`".into());
    }
    if found == "=" && in_call {
        return Some("named arguments are written `name: value`".into());
    }
    if found == "=" {
        if let Some(kw) = ["model", "block", "pool", "repeat", "train", "program"]
            .iter()
            .find(|k| {
                before
                    .strip_suffix(**k)
                    .is_some_and(|b| !b.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            })
        {
            return Some(format!("`{kw}` is a keyword and cannot be used as a name"));
        }
    }
    if found == ":" || (is_word && next == Some(':') && !in_call) {
        return Some("`name: value` is only valid inside a call's argument list; settings are written `name = value`".into());
    }
    if found.is_empty() {
        return Some("a `{`, `(` or `[` opened earlier is never closed".into());
    }
    if found == "\"" && !after.lines().next().unwrap_or("").contains('"') {
        return Some("this string is never closed: strings end with `\"` on the same line".into());
    }
    if found == ">" && before.ends_with('-') {
        return Some(
            "a layer rule maps a range to a block with `=>`: `1 .. 3 => decoder(signed)`".into(),
        );
    }
    if matches!(found, "let" | "var" | "const" | "def" | "fn") {
        return Some(format!("weft has no `{found}`: write `name = value`"));
    }
    if before.ends_with("=>") {
        return Some("a layer rule maps a range to a block: `1 .. 3 => decoder(signed)`".into());
    }
    let opens = next.is_some_and(|c| c == '{' || c.is_alphanumeric() || c == '_');
    if matches!(
        found,
        "block" | "pool" | "layers" | "model" | "train" | "program"
    ) && opens
    {
        return Some(format!("is a `}}` missing before `{found}`?"));
    }
    if matches!(
        found,
        "model" | "block" | "pool" | "repeat" | "train" | "program"
    ) {
        return Some(format!(
            "`{found}` is a keyword and cannot be used as a name or value here"
        ));
    }
    if is_word && in_call {
        if src[before.len()..pos.min(src.len())].contains('\n') {
            return Some("a `(` opened on the line before is never closed".into());
        }
        return Some("separate arguments with `,`".into());
    }
    if is_word && next.is_some_and(|c| c.is_alphanumeric() || matches!(c, '"' | '[' | '-' | '(')) {
        return Some(format!("is `=` missing? write `{found} = ...`"));
    }
    None
}

fn describe_expected(rules: &[Rule]) -> String {
    let mut names: Vec<&str> = rules.iter().map(|r| rule_name(*r)).collect();
    names.sort();
    names.dedup();
    // "an expression" covers every kind of literal, name and call; a model item covers an
    // assignment.
    if names.contains(&"an expression") {
        names.retain(|n| {
            !matches!(
                *n,
                "`true` or `false`" | "a list" | "a name" | "a number" | "a string" | "a call"
            )
        });
    }
    if names.contains(&"a model item (`name = value`, `block`, `pool` or `layers`)") {
        names.retain(|n| !matches!(*n, "a statement (`name = value` or `repeat`)" | "a name"));
    }
    if names.contains(&"a statement (`name = value` or `repeat`)") {
        names.retain(|n| *n != "a name");
    }
    match names.len() {
        0 => "something else".into(),
        1 => names[0].into(),
        _ => {
            let last = names.pop().expect("len >= 2");
            format!("{} or {last}", names.join(", "))
        }
    }
}

fn rule_name(r: Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::model | Rule::train | Rule::program | Rule::decl | Rule::rule_def | Rule::rule_kw => {
            "`model`, `train`, `program` or `rule`"
        }
        Rule::block_def | Rule::pool_def | Rule::layers_def | Rule::model_item => {
            "a model item (`name = value`, `block`, `pool` or `layers`)"
        }
        Rule::assign | Rule::stmt | Rule::repeat => "a statement (`name = value` or `repeat`)",
        Rule::layer_rule | Rule::layer_range => "a layer rule (`0 .. 2 => block`)",
        Rule::params => "a parameter list",
        Rule::extends => "`extends \"base.weft\"`",
        Rule::expr | Rule::primary | Rule::prefix | Rule::neg | Rule::not => "an expression",
        Rule::infix
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::or
        | Rule::and
        | Rule::eq
        | Rule::ne
        | Rule::lt
        | Rule::le
        | Rule::gt
        | Rule::ge => "an operator",
        Rule::call | Rule::call_head => "a call",
        Rule::arg | Rule::arg_name => "an argument",
        Rule::list => "a list",
        Rule::float | Rule::int | Rule::exponent => "a number",
        Rule::string | Rule::inner => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::ident | Rule::ident_char | Rule::keyword => "a name",
        Rule::file | Rule::expr_only => "a declaration",
        Rule::WHITESPACE | Rule::COMMENT => "whitespace",
    }
}

/// The pair's span without trailing whitespace and comments: pest's implicit skipping
/// before an optional repetition that then matches nothing leaves them inside the pair.
fn span_of(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.start() + end_of_code(s.as_str()))
}

/// Byte length of `text` up to the end of its last non-trivia character.
fn end_of_code(text: &str) -> usize {
    let (mut end, mut in_comment, mut in_str, mut escaped) = (0, false, false, false);
    for (i, c) in text.char_indices() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            end = i + c.len_utf8();
            continue;
        }
        match c {
            '#' => in_comment = true,
            '"' => {
                in_str = true;
                end = i + 1;
            }
            c if c.is_whitespace() || c == ';' => {}
            c => end = i + c.len_utf8(),
        }
    }
    end
}

fn build_file(p: Pair<Rule>) -> File {
    let mut decls = Vec::new();
    for d in p.into_inner() {
        match d.as_rule() {
            Rule::model => decls.push(Decl::Model(build_model(d))),
            Rule::train => decls.push(Decl::Train(build_train(d))),
            Rule::program => decls.push(Decl::Program(build_program(d))),
            Rule::rule_def => decls.push(Decl::Rule(build_rule(d))),
            _ => {}
        }
    }
    File { decls }
}

fn build_ident(p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span_of(&p),
    }
}

fn build_model(p: Pair<Rule>) -> Model {
    let span = span_of(&p);
    let mut inner = p.into_inner().peekable();
    let name = build_ident(inner.next().expect("model name"));
    let extends = match inner.peek().map(|q| q.as_rule()) {
        Some(Rule::extends) => {
            let s = inner
                .next()
                .expect("peeked")
                .into_inner()
                .next()
                .expect("extends string");
            let span = span_of(&s);
            Some(Extends {
                path: unescape(s.into_inner().as_str()),
                span,
            })
        }
        _ => None,
    };
    let items = inner
        .map(|it| match it.as_rule() {
            Rule::block_def => ModelItem::Block(build_block(it)),
            Rule::pool_def => ModelItem::Pool(build_pool(it)),
            Rule::layers_def => ModelItem::Layers(build_layers(it)),
            _ => ModelItem::Assign(build_assign(it)),
        })
        .collect();
    Model {
        name,
        extends,
        items,
        span,
    }
}

fn build_block(p: Pair<Rule>) -> BlockDef {
    let span = span_of(&p);
    let mut inner = p.into_inner().peekable();
    let name = build_ident(inner.next().expect("block name"));
    let params = match inner.peek().map(|q| q.as_rule()) {
        Some(Rule::params) => inner
            .next()
            .expect("peeked")
            .into_inner()
            .map(build_ident)
            .collect(),
        _ => Vec::new(),
    };
    let body = inner.map(build_stmt).collect();
    BlockDef {
        name,
        params,
        body,
        span,
    }
}

fn build_pool(p: Pair<Rule>) -> PoolDef {
    let span = span_of(&p);
    let mut inner = p.into_inner();
    let name = build_ident(inner.next().expect("pool name"));
    let size = build_expr(inner.next().expect("pool size"));
    let module = build_expr(inner.next().expect("pool module"));
    PoolDef {
        name,
        size,
        module,
        span,
    }
}

fn build_layers(p: Pair<Rule>) -> LayersDef {
    let span = span_of(&p);
    let rules = p
        .into_inner()
        .map(|r| {
            let span = span_of(&r);
            let mut inner = r.into_inner();
            let mut range = inner.next().expect("layer range").into_inner();
            let start = build_expr(range.next().expect("range start"));
            let end = range.next().map(build_expr);
            let target = build_expr(inner.next().expect("layer target"));
            LayerRule {
                start,
                end,
                target,
                span,
            }
        })
        .collect();
    LayersDef { rules, span }
}

fn build_stmt(p: Pair<Rule>) -> Stmt {
    match p.as_rule() {
        Rule::repeat => {
            let span = span_of(&p);
            let mut inner = p.into_inner();
            let count = build_expr(inner.next().expect("repeat count"));
            Stmt::Repeat(Repeat {
                count,
                body: inner.map(build_stmt).collect(),
                span,
            })
        }
        _ => Stmt::Assign(build_assign(p)),
    }
}

fn build_assign(p: Pair<Rule>) -> Assign {
    let span = span_of(&p);
    let mut inner = p.into_inner();
    let name = build_ident(inner.next().expect("assign name"));
    let value = build_expr(inner.next().expect("assign value"));
    Assign { name, value, span }
}

fn build_train(p: Pair<Rule>) -> Train {
    let span = span_of(&p);
    let mut inner = p.into_inner().peekable();
    let model = match inner.peek().map(|q| q.as_rule()) {
        Some(Rule::ident) => Some(build_ident(inner.next().expect("peeked"))),
        _ => None,
    };
    Train {
        model,
        items: inner.map(build_assign).collect(),
        span,
    }
}

fn build_rule(p: Pair<Rule>) -> RuleDef {
    let span = span_of(&p);
    let mut inner = p.into_inner().filter(|q| q.as_rule() != Rule::rule_kw);
    let name = build_ident(inner.next().expect("rule name"));
    RuleDef {
        name,
        items: inner.map(build_assign).collect(),
        span,
    }
}

fn build_program(p: Pair<Rule>) -> Program {
    let span = span_of(&p);
    let mut inner = p.into_inner();
    let name = build_ident(inner.next().expect("program name"));
    let value = build_expr(inner.next().expect("program value"));
    Program { name, value, span }
}

fn pratt() -> &'static PrattParser<Rule> {
    static P: OnceLock<PrattParser<Rule>> = OnceLock::new();
    P.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
            .op(Op::prefix(Rule::neg) | Op::prefix(Rule::not))
    })
}

fn build_expr(p: Pair<Rule>) -> Expr {
    pratt()
        .map_primary(build_primary)
        .map_prefix(|op, rhs| Expr {
            span: span_of(&op).join(rhs.span),
            kind: match op.as_rule() {
                Rule::not => ExprKind::Not(Box::new(rhs)),
                _ => ExprKind::Neg(Box::new(rhs)),
            },
        })
        .map_infix(|lhs, op, rhs| {
            let op = match op.as_rule() {
                Rule::add => BinOp::Add,
                Rule::sub => BinOp::Sub,
                Rule::mul => BinOp::Mul,
                Rule::or => BinOp::Or,
                Rule::and => BinOp::And,
                Rule::eq => BinOp::Eq,
                Rule::ne => BinOp::Ne,
                Rule::lt => BinOp::Lt,
                Rule::le => BinOp::Le,
                Rule::gt => BinOp::Gt,
                Rule::ge => BinOp::Ge,
                _ => BinOp::Div,
            };
            Expr {
                span: lhs.span.join(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            }
        })
        .parse(p.into_inner())
}

fn build_primary(p: Pair<Rule>) -> Expr {
    let span = span_of(&p);
    let input = p.as_span().get_input();
    let kind = match p.as_rule() {
        Rule::expr => {
            // `( expr )`: the parentheses belong to the expression's span.
            let mut e = build_expr(p);
            e.span = widen_to_parens(input, e.span);
            return e;
        }
        // Literals that overflow their type saturate; the checker's range rules catch them.
        Rule::int => ExprKind::Int(p.as_str().parse().unwrap_or(i64::MAX)),
        Rule::float => ExprKind::Float(p.as_str().parse().unwrap_or(f64::MAX)),
        Rule::string => ExprKind::Str(unescape(p.into_inner().as_str())),
        Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
        Rule::ident => ExprKind::Ident(p.as_str().to_string()),
        Rule::list => ExprKind::List(p.into_inner().map(build_expr).collect()),
        Rule::call => {
            let mut inner = p.into_inner();
            let head = inner.next().expect("call head");
            let func = build_ident(head.into_inner().next().expect("call name"));
            let args = inner
                .map(|a| {
                    let mut parts = a.into_inner().peekable();
                    let name = match parts.peek().map(|q| q.as_rule()) {
                        Some(Rule::arg_name) => Some(build_ident(
                            parts
                                .next()
                                .expect("peeked")
                                .into_inner()
                                .next()
                                .expect("arg ident"),
                        )),
                        _ => None,
                    };
                    Arg {
                        name,
                        value: build_expr(parts.next().expect("arg value")),
                    }
                })
                .collect();
            ExprKind::Call { func, args }
        }
        other => unreachable!("grammar has no primary {other:?}"),
    };
    Expr { kind, span }
}

/// Grows `span` to take in the `(` and `)` around it (skipping whitespace and `;`), if any.
fn widen_to_parens(src: &str, span: Span) -> Span {
    let before = src[..span.start].trim_end_matches(|c: char| c.is_whitespace() || c == ';');
    let after = &src[span.end..];
    let close = after.find(|c: char| !(c.is_whitespace() || c == ';'));
    match (before.ends_with('('), close) {
        (true, Some(i)) if after[i..].starts_with(')') => {
            Span::new(before.len() - 1, span.end + i + 1)
        }
        _ => span,
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_negation() {
        let f = parse("model m { a = 1 + 2 * -3 }").unwrap();
        let Decl::Model(m) = &f.decls[0] else {
            panic!()
        };
        let ModelItem::Assign(a) = &m.items[0] else {
            panic!()
        };
        let ExprKind::Binary {
            op: BinOp::Add,
            rhs,
            ..
        } = &a.value.kind
        else {
            panic!("{a:?}")
        };
        let ExprKind::Binary {
            op: BinOp::Mul,
            rhs: r2,
            ..
        } = &rhs.kind
        else {
            panic!()
        };
        assert!(matches!(r2.kind, ExprKind::Neg(_)));
    }

    #[test]
    fn ranges_do_not_lex_as_floats() {
        let f = parse("model m { layers { 1..3 => b } }").unwrap();
        let Decl::Model(m) = &f.decls[0] else {
            panic!()
        };
        let ModelItem::Layers(l) = &m.items[0] else {
            panic!()
        };
        assert_eq!(l.rules[0].start.kind, ExprKind::Int(1));
        assert_eq!(l.rules[0].end.as_ref().unwrap().kind, ExprKind::Int(3));
    }

    #[test]
    fn several_broken_lines_are_all_reported() {
        let src = "model m {\n  a = = 1\n  b = 2\n  c = )\n}\n";
        let errs = parse(src).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line_col(src).0, 2);
        assert_eq!(errs[1].line_col(src).0, 4);
    }
}
