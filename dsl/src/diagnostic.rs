//! Diagnostics: what went wrong, where, and what to do about it.
//!
//! A [`Diagnostic`] is plain data (message, primary span and label, optional hint and
//! secondary labels). Rendering goes through miette, which prints `file:line:col`, the source
//! line and an underline; tests look at the data directly.

use crate::Span;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

/// One problem in a spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// A stable class name, e.g. `syntax`, `unknown-name`, `bad-argument`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    /// Short text under the underline ("expected an integer").
    pub label: String,
    pub help: Option<String>,
    /// Other places that explain this one ("first defined here").
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn related(mut self, span: Span, text: impl Into<String>) -> Self {
        self.related.push((span, text.into()));
        self
    }

    /// 1-based line and column (in characters) of the primary span in `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        line_col(src, self.span.start)
    }

    /// Renders the diagnostic the way the CLI prints it: `file:line:col`, the source line with
    /// an underline, the label and the hint.
    pub fn render(&self, file: &str, src: &str) -> String {
        let (line, col) = self.line_col(src);
        let report = Rendered {
            diag: self,
            source: NamedSource::new(file, src.to_string()),
        };
        let mut out = format!("{file}:{line}:{col}: ");
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_context_lines(1);
        let mut body = String::new();
        if handler.render_report(&mut body, &report).is_err() {
            body = format!("error: {}", self.message);
        }
        out.push_str(body.trim_start());
        out
    }
}

/// 1-based (line, column) of a byte offset; columns count characters.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Rendered<'a> {
    diag: &'a Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!("weft::{}", self.diag.code)))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.diag.label.clone()).filter(|l| !l.is_empty()),
            self.diag.span,
        );
        let related = self
            .diag
            .related
            .iter()
            .map(|(s, t)| LabeledSpan::new_with_span(Some(t.clone()), *s));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// Case-insensitive edit distance suggestion: the closest candidate within a small distance.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&lower, &c.to_lowercase());
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Optimal-string-alignment distance: edits are insertions, deletions, substitutions and
/// swaps of two adjacent characters (`haeds` is one edit from `heads`: the commonest typo).
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_and_in_chars() {
        let src = "ab\ncé d";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, src.find('d').unwrap()), (2, 4));
    }

    #[test]
    fn suggestions_prefer_the_closest_name() {
        assert_eq!(
            did_you_mean("sigend", ["softmax", "signed"]).as_deref(),
            Some("did you mean `signed`?")
        );
        assert_eq!(did_you_mean("zzzz", ["softmax", "signed"]), None);
        assert_eq!(
            did_you_mean("haeds", ["heads", "head_dim"]).as_deref(),
            Some("did you mean `heads`?")
        );
    }

    #[test]
    fn render_shows_location_source_line_and_hint() {
        let src = "model m {\n  dim = foo\n}\n";
        let d = Diagnostic::new("unknown-name", Span::new(18, 21), "unknown name `foo`")
            .label("not defined")
            .help("did you mean `for`?");
        let out = d.render("m.weft", src);
        assert!(out.starts_with("m.weft:2:9: "), "{out}");
        assert!(out.contains("dim = foo"), "{out}");
        assert!(out.contains("did you mean `for`?"), "{out}");
        assert!(out.contains("not defined"), "{out}");
    }
}
