//! `model NAME extends "base.weft" { ... }`: a spec that starts from another file's model
//! (typically one written by `weft import`) and overrides parts of it by name.
//!
//! Resolution is textual and happens before checking: the base file's model items come
//! first, in their order; each derived setting, constant, block or pool with the name of a
//! base item replaces it in place (so later base settings that use it see the override);
//! a derived `layers { }` replaces the base schedule; anything new is appended. The derived
//! file's `train` section replaces the base's, and programs override by name. The merged
//! file is then checked like any other, so everything the checker promises still holds.
//!
//! Diagnostics keep pointing at the right file: before merging, each base file's spans are
//! moved past the end of every earlier file's text, and a diagnostic is mapped back to the
//! file whose range its span falls in.

use crate::ast::{Decl, File, ModelItem};
use crate::diagnostic::Diagnostic;
use crate::{Checked, Span};
use std::path::{Path, PathBuf};

/// The longest chain of `extends` followed (a longer one is almost surely a mistake).
const MAX_DEPTH: usize = 16;

/// A diagnostic together with the file it points into.
#[derive(Clone, Debug)]
pub struct FileDiagnostic {
    pub path: PathBuf,
    /// The text of `path` (what the span indexes).
    pub src: String,
    pub diag: Diagnostic,
}

impl FileDiagnostic {
    /// `file:line:col`, the message, the source line and the hint (see
    /// [`Diagnostic::render`]).
    pub fn render(&self) -> String {
        self.diag
            .render(&self.path.display().to_string(), &self.src)
    }
}

/// Reads, resolves `extends` and checks the spec at `path`. Every diagnostic names its file.
pub fn check_file(path: &Path) -> Result<Checked, Vec<FileDiagnostic>> {
    let (file, sources) = resolve_file(path)?;
    crate::check(&file).map_err(|diags| {
        diags
            .into_iter()
            .map(|d| locate(&sources, d))
            .collect::<Vec<_>>()
    })
}

/// Reads the spec at `path` and merges the chain of files it extends into one [`File`]
/// (whose spans index the first file's text, or, past its end, the base files': use
/// [`check_file`] to get diagnostics mapped back).
pub fn resolve_file(path: &Path) -> Result<(File, Vec<SourceInfo>), Vec<FileDiagnostic>> {
    let mut sources = Vec::new();
    let file = load(path, None, &mut sources, &mut Vec::new())?;
    Ok((file, sources))
}

/// A file that took part in a resolved spec, and the offset its spans were moved by.
#[derive(Clone, Debug)]
pub struct SourceInfo {
    pub path: PathBuf,
    pub src: String,
    pub offset: usize,
}

fn load(
    path: &Path,
    from: Option<(&FileDiagnosticSite, Span)>,
    sources: &mut Vec<SourceInfo>,
    chain: &mut Vec<PathBuf>,
) -> Result<File, Vec<FileDiagnostic>> {
    let fail = |msg: String, help: &str| -> Vec<FileDiagnostic> {
        match from {
            Some((site, span)) => vec![FileDiagnostic {
                path: site.path.clone(),
                src: site.src.clone(),
                diag: Diagnostic::new("extends", span, msg)
                    .label("the base spec")
                    .help(help),
            }],
            None => vec![FileDiagnostic {
                path: path.to_path_buf(),
                src: String::new(),
                diag: Diagnostic::new("extends", Span::default(), msg),
            }],
        }
    };
    let src = std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "the path is relative to the spec that extends it",
        )
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if chain.contains(&canonical) {
        return Err(fail(
            format!(
                "{} extends itself (through the chain of `extends`)",
                path.display()
            ),
            "a chain of `extends` must end in a spec without one",
        ));
    }
    if chain.len() >= MAX_DEPTH {
        return Err(fail(
            format!("more than {MAX_DEPTH} nested `extends`"),
            "extend the imported spec directly",
        ));
    }
    chain.push(canonical);
    let offset = sources.last().map_or(0, |s| s.offset + s.src.len() + 1);
    let mut file = crate::parse(&src).map_err(|diags| {
        diags
            .into_iter()
            .map(|diag| FileDiagnostic {
                path: path.to_path_buf(),
                src: src.clone(),
                diag,
            })
            .collect::<Vec<_>>()
    })?;
    file.for_each_span_mut(&mut |s| {
        s.start += offset;
        s.end += offset;
    });
    sources.push(SourceInfo {
        path: path.to_path_buf(),
        src: src.clone(),
        offset,
    });
    let base = file.models().find_map(|m| m.extends.clone());
    let Some(ext) = base else {
        return Ok(file);
    };
    let site = FileDiagnosticSite {
        path: path.to_path_buf(),
        src,
    };
    let base_path = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&ext.path);
    let local = Span::new(ext.span.start - offset, ext.span.end - offset);
    let base = load(&base_path, Some((&site, local)), sources, chain)?;
    Ok(merge(base, file))
}

/// Where an `extends` clause was written (for errors about its base file).
struct FileDiagnosticSite {
    path: PathBuf,
    src: String,
}

/// The derived file over its base: see the module docs for the rules.
pub fn merge(base: File, derived: File) -> File {
    let mut decls = Vec::new();
    let derived_model = derived.models().next().cloned();
    let base_model = base.models().next().cloned();
    match (base_model, derived_model) {
        (Some(mut b), Some(d)) => {
            for item in d.items {
                let slot = b.items.iter().position(|bi| same_item(bi, &item));
                match slot {
                    Some(i) => b.items[i] = item,
                    None => b.items.push(item),
                }
            }
            b.name = d.name;
            b.span = d.span;
            b.extends = None;
            decls.push(Decl::Model(b));
        }
        (b, d) => decls.extend(d.or(b).map(Decl::Model)),
    }
    let train = derived.trains().next().or(base.trains().next()).cloned();
    decls.extend(train.map(Decl::Train));
    let mut programs: Vec<_> = base.programs().cloned().collect();
    for p in derived.programs() {
        match programs.iter().position(|q| q.name.name == p.name.name) {
            Some(i) => programs[i] = p.clone(),
            None => programs.push(p.clone()),
        }
    }
    decls.extend(programs.into_iter().map(Decl::Program));
    // Rules merge by name like programs: a derived file's rule replaces the base's.
    let mut rules: Vec<_> = base.rules().cloned().collect();
    for r in derived.rules() {
        match rules.iter().position(|q| q.name.name == r.name.name) {
            Some(i) => rules[i] = r.clone(),
            None => rules.push(r.clone()),
        }
    }
    decls.extend(rules.into_iter().map(Decl::Rule));
    File { decls }
}

/// Whether a derived item overrides a base item: same kind and name (`layers` is unique).
fn same_item(a: &ModelItem, b: &ModelItem) -> bool {
    match (a, b) {
        (ModelItem::Assign(x), ModelItem::Assign(y)) => x.name.name == y.name.name,
        (ModelItem::Block(x), ModelItem::Block(y)) => x.name.name == y.name.name,
        (ModelItem::Pool(x), ModelItem::Pool(y)) => x.name.name == y.name.name,
        (ModelItem::Layers(_), ModelItem::Layers(_)) => true,
        _ => false,
    }
}

/// Maps a diagnostic of the merged file back to the file its span lies in.
fn locate(sources: &[SourceInfo], mut diag: Diagnostic) -> FileDiagnostic {
    let find = |at: usize| {
        sources
            .iter()
            .rev()
            .find(|s| at >= s.offset)
            .unwrap_or(&sources[0])
    };
    let home = find(diag.span.start);
    let shift = |s: &mut Span, by: usize| {
        s.start = s.start.saturating_sub(by);
        s.end = s.end.saturating_sub(by);
    };
    shift(&mut diag.span, home.offset);
    // Related notes in another file cannot be drawn in this one's source: keep their text.
    diag.related.retain_mut(|(span, _)| {
        let ok = std::ptr::eq(find(span.start), home);
        if ok {
            shift(span, home.offset);
        }
        ok
    });
    FileDiagnostic {
        path: home.path.clone(),
        src: home.src.clone(),
        diag,
    }
}
