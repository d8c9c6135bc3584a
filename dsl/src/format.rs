//! The formatter: prints the canonical form of a file. Comments and single blank lines from
//! the source are kept (attached to the item that follows them, or trailing on its line);
//! everything else — spacing, separators, parentheses — is normalised.

use crate::ast::*;

/// Formats a parsed file. With `src`, comments and blank lines are carried over.
pub fn format(file: &File, src: Option<&str>) -> String {
    let mut p = Printer::new(src);
    for (i, d) in file.decls.iter().enumerate() {
        let start = decl_span(d).start;
        // Consecutive programs read as a list; everything else stands apart.
        let both_programs = i > 0
            && matches!(
                (d, &file.decls[i - 1]),
                (Decl::Program(_), Decl::Program(_))
            );
        p.leading(start, i > 0 && !both_programs);
        match d {
            Decl::Model(m) => p.model(m),
            Decl::Train(t) => p.train(t),
            Decl::Program(g) => {
                p.line(&format!("program {} = {}", g.name.name, expr(&g.value)));
                p.pos = g.span.end;
            }
            Decl::Rule(r) => p.rule(r),
        }
    }
    p.leading(usize::MAX, true);
    let mut out = p.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn decl_span(d: &Decl) -> crate::Span {
    match d {
        Decl::Model(m) => m.span,
        Decl::Train(t) => t.span,
        Decl::Program(p) => p.span,
        Decl::Rule(r) => r.span,
    }
}

struct Printer<'a> {
    out: String,
    src: Option<&'a str>,
    /// Source offset up to which comments and blank lines have been carried over.
    pos: usize,
    indent: usize,
}

impl<'a> Printer<'a> {
    fn new(src: Option<&'a str>) -> Self {
        Printer {
            out: String::new(),
            src,
            pos: 0,
            indent: 0,
        }
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") && !self.out.ends_with("{\n") {
            self.out.push('\n');
        }
    }

    /// Carries comments and blank lines from the source between `self.pos` and `upto`.
    /// `separate`: put a blank line here if the source had one (top level: always).
    fn leading(&mut self, upto: usize, separate: bool) {
        let Some(src) = self.src else {
            if separate {
                self.blank();
            }
            return;
        };
        let upto = upto.min(src.len());
        if upto < self.pos {
            return;
        }
        let gap = &src[self.pos..upto];
        self.pos = upto;
        let mut lines = gap.split('\n');
        // What follows the previous item on its own line is a trailing comment.
        if let Some(first) = lines.next() {
            if let Some(c) = comment_in(first) {
                if self.out.ends_with('\n') && !self.out.is_empty() && !self.out.ends_with("{\n") {
                    self.out.pop();
                    self.out.push_str("  ");
                    self.out.push_str(c);
                    self.out.push('\n');
                } else {
                    self.line(c);
                }
            }
        }
        let rest: Vec<&str> = lines.collect();
        let n = rest.len();
        let mut blank_pending = separate;
        for (i, l) in rest.into_iter().enumerate() {
            let is_last = i + 1 == n; // the partial line the next item starts on
            match comment_in(l) {
                Some(c) => {
                    if blank_pending {
                        self.blank();
                        blank_pending = false;
                    }
                    self.line(c);
                }
                None if l
                    .trim_matches(|ch: char| ch.is_whitespace() || ch == ';')
                    .is_empty()
                    && !is_last =>
                {
                    blank_pending = true;
                }
                None => {}
            }
        }
        if blank_pending {
            self.blank();
        }
    }

    fn model(&mut self, m: &Model) {
        match &m.extends {
            Some(e) => self.line(&format!(
                "model {} extends \"{}\" {{",
                m.name.name,
                escape(&e.path)
            )),
            None => self.line(&format!("model {} {{", m.name.name)),
        }
        let head_end = m.extends.as_ref().map_or(m.name.span.end, |e| e.span.end);
        self.pos = self.pos.max(head_end);
        self.indent += 1;
        let mut prev_assign = true;
        for (i, it) in m.items.iter().enumerate() {
            let is_assign = matches!(it, ModelItem::Assign(_));
            let start = item_span(it).start;
            // Structure stands apart from settings.
            self.leading(start, i > 0 && (!is_assign || !prev_assign));
            prev_assign = is_assign;
            match it {
                ModelItem::Assign(a) => self.assign(a),
                ModelItem::Block(b) => {
                    let params = if b.params.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "({})",
                            b.params
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    self.line(&format!("block {}{} {{", b.name.name, params));
                    self.pos = self.pos.max(
                        b.params
                            .last()
                            .map(|p| p.span.end)
                            .unwrap_or(b.name.span.end),
                    );
                    self.indent += 1;
                    self.stmts(&b.body);
                    self.close(b.span.end);
                }
                ModelItem::Pool(p) => {
                    self.line(&format!("pool {}[{}] {{", p.name.name, expr(&p.size)));
                    self.pos = self.pos.max(p.size.span.end);
                    self.indent += 1;
                    self.leading(p.module.span.start, false);
                    self.line(&expr(&p.module));
                    self.pos = p.module.span.end;
                    self.close(p.span.end);
                }
                ModelItem::Layers(l) => {
                    self.line("layers {");
                    self.indent += 1;
                    for r in &l.rules {
                        self.leading(r.span.start, false);
                        // A start beginning with `-` would continue the previous rule's
                        // target as a subtraction: parenthesise it.
                        let mut start = expr(&r.start);
                        if start.starts_with('-') {
                            start = format!("({start})");
                        }
                        let range = match &r.end {
                            Some(e) => format!("{start} .. {}", expr(e)),
                            None => start,
                        };
                        self.line(&format!("{range} => {}", expr(&r.target)));
                        self.pos = r.span.end;
                    }
                    self.close(l.span.end);
                }
            }
        }
        self.close(m.span.end);
    }

    /// Comments before the closing brace at `end - 1`, then the brace.
    fn close(&mut self, end: usize) {
        self.leading(end.saturating_sub(1), false);
        self.pos = self.pos.max(end);
        self.indent -= 1;
        self.line("}");
    }

    fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            match s {
                Stmt::Assign(a) => {
                    self.leading(a.span.start, false);
                    self.assign(a);
                }
                Stmt::Repeat(r) => {
                    self.leading(r.span.start, false);
                    self.line(&format!("repeat {} {{", expr(&r.count)));
                    self.pos = self.pos.max(r.count.span.end);
                    self.indent += 1;
                    self.stmts(&r.body);
                    self.close(r.span.end);
                }
            }
        }
    }

    fn assign(&mut self, a: &Assign) {
        self.line(&format!("{} = {}", a.name.name, expr(&a.value)));
        self.pos = a.span.end;
    }

    fn train(&mut self, t: &Train) {
        match &t.model {
            Some(m) => {
                self.line(&format!("train {} {{", m.name));
                self.pos = self.pos.max(m.span.end);
            }
            None => self.line("train {"),
        }
        self.indent += 1;
        for a in &t.items {
            self.leading(a.span.start, false);
            self.assign(a);
        }
        self.close(t.span.end);
    }

    fn rule(&mut self, r: &RuleDef) {
        self.line(&format!("rule {} {{", r.name.name));
        self.pos = self.pos.max(r.name.span.end);
        self.indent += 1;
        for a in &r.items {
            self.leading(a.span.start, false);
            self.assign(a);
        }
        self.close(r.span.end);
    }
}

fn item_span(it: &ModelItem) -> crate::Span {
    match it {
        ModelItem::Assign(a) => a.span,
        ModelItem::Block(b) => b.span,
        ModelItem::Pool(p) => p.span,
        ModelItem::Layers(l) => l.span,
    }
}

/// The comment on a source line, if any (a `#` outside a string).
fn comment_in(line: &str) -> Option<&str> {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_str => escaped = true,
            '"' => in_str = !in_str,
            '#' if !in_str => return Some(line[i..].trim_end()),
            _ => {}
        }
    }
    None
}

/// An expression in canonical form, with the parentheses its structure needs.
pub fn expr(e: &Expr) -> String {
    expr_prec(e, 0)
}

fn expr_prec(e: &Expr, parent: u8) -> String {
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => float(*f),
        ExprKind::Str(s) => format!("\"{}\"", escape(s)),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Ident(n) => n.clone(),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Call { func, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{}: {}", n.name, expr(&a.value)),
                    None => expr(&a.value),
                })
                .collect();
            format!("{}({})", func.name, args.join(", "))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let p = op.precedence();
            let s = format!(
                "{} {} {}",
                expr_prec(lhs, p),
                op.symbol(),
                expr_prec(rhs, p + 1)
            );
            if p < parent {
                format!("({s})")
            } else {
                s
            }
        }
        ExprKind::Neg(inner) => format!("-{}", expr_prec(inner, BinOp::PREFIX)),
        ExprKind::Not(inner) => format!("!{}", expr_prec(inner, BinOp::PREFIX)),
    }
}

/// Shortest text that reads back as the same f64 and lexes as a float (has `.` or `e`).
fn float(f: f64) -> String {
    if !f.is_finite() {
        return "1e999".into();
    }
    // Small rates read best in scientific form (`3e-3`, not `0.003`).
    let s = if f != 0.0 && f.abs() < 1e-2 {
        format!("{f:e}")
    } else {
        format!("{f:?}")
    };
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &str) -> String {
        let f = crate::parse(src).unwrap();
        let out = format(&f, Some(src));
        let g = crate::parse(&out).unwrap_or_else(|e| panic!("reparse failed: {e:?}\n{out}"));
        assert_eq!(f.without_spans(), g.without_spans(), "{out}");
        assert_eq!(format(&g, Some(&out)), out, "not idempotent");
        out
    }

    #[test]
    fn keeps_comments_and_parenthesises_by_precedence() {
        let src = "# top\nmodel m { # after brace\n  a = (1 + 2) * 3   # trailing\n\n\n  # own line\n  b = 1 - (2 - 3);c=-(1+2)\n}\n";
        let out = roundtrip(src);
        assert_eq!(
            out,
            "# top\nmodel m {\n  # after brace\n  a = (1 + 2) * 3  # trailing\n\n  # own line\n  b = 1 - (2 - 3)\n  c = -(1 + 2)\n}\n"
        );
    }

    #[test]
    fn floats_stay_floats() {
        let out = roundtrip("model m { a = 1e-5\n b = 10000.0 c = 2.5e3 }");
        assert!(
            out.contains("a = 1e-5") && out.contains("b = 10000.0") && out.contains("c = 2500.0"),
            "{out}"
        );
    }
}
