//! What an experiment found: a headline comparison, tables and notes, with everything needed
//! to rerun it (command, seed, backend, git revision).

use crate::{Experiment, Options, ReproError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The one number that answers "does the method do what the paper says here?".
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// What is measured, e.g. "val loss" or "accuracy at 8× train length".
    pub metric: String,
    pub baseline_name: String,
    pub baseline: f64,
    pub method_name: String,
    pub method: f64,
    /// Whether the paper's effect appeared, by `criterion`.
    pub effect_seen: bool,
    /// The experiment could not decide: its precondition (e.g. the models learning the task
    /// at the training length) failed, so "not seen" would claim more than was measured.
    #[serde(default)]
    pub inconclusive: bool,
    /// The rule `effect_seen` applies, in words with its threshold.
    pub criterion: String,
}

impl Comparison {
    /// "effect seen", "effect not seen" or "inconclusive".
    pub fn verdict(&self) -> &'static str {
        if self.inconclusive {
            "inconclusive"
        } else if self.effect_seen {
            "effect seen"
        } else {
            "effect not seen"
        }
    }
}

/// A titled table; cells are numbers or strings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; use `json!` values (numbers, strings).
    pub fn row(&mut self, cells: Vec<Json>) -> &mut Self {
        self.rows.push(cells);
        self
    }
}

/// One experiment's report (`report.json`; `report.md` is rendered from it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub experiment: String,
    pub method: String,
    /// The comparison made, e.g. "signed vs softmax LM, same params".
    pub comparison: String,
    pub command: String,
    pub quick: bool,
    pub seed: u64,
    pub backend: String,
    pub git_rev: String,
    /// The commit that last changed `repro/criteria/NAME.txt`, the criterion's text (fixed
    /// before the final run; `None` for experiments without such a file or outside a
    /// checkout).
    #[serde(default)]
    pub criterion_commit: Option<String>,
    pub wall_s: f64,
    pub headline: Option<Comparison>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// Run directories (open with `weft view DIR`).
    pub runs: Vec<String>,
}

impl Report {
    pub(crate) fn new(e: &Experiment, o: &Options, backend: String) -> Self {
        let mut command = format!("weft repro {}", e.name);
        if o.quick {
            command.push_str(" --quick");
        }
        if o.seed != 0 {
            let _ = write!(command, " --seed {}", o.seed);
        }
        let _ = write!(command, " --backend {}", o.backend);
        Report {
            experiment: e.name.into(),
            method: e.method.into(),
            comparison: e.comparison.into(),
            command,
            quick: o.quick,
            seed: o.seed,
            backend,
            git_rev: git_rev(&o.root),
            criterion_commit: criterion_commit(&o.root, e.name),
            wall_s: 0.0,
            headline: None,
            tables: Vec::new(),
            notes: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Sets the headline comparison.
    #[allow(clippy::too_many_arguments)]
    pub fn headline(
        &mut self,
        metric: &str,
        baseline_name: &str,
        baseline: f64,
        method_name: &str,
        method: f64,
        effect_seen: bool,
        criterion: &str,
    ) {
        self.headline = Some(Comparison {
            metric: metric.into(),
            baseline_name: baseline_name.into(),
            baseline,
            method_name: method_name.into(),
            method,
            effect_seen,
            inconclusive: false,
            criterion: criterion.into(),
        });
    }

    /// Marks the headline as undecided (see [`Comparison::inconclusive`]); `effect_seen`
    /// becomes false.
    pub fn inconclusive(&mut self) {
        if let Some(h) = self.headline.as_mut() {
            h.inconclusive = true;
            h.effect_seen = false;
        }
    }

    pub fn table(&mut self, t: Table) {
        self.tables.push(t);
    }

    /// A sentence for the reader: what was seen, what was not, what to be careful about.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub(crate) fn finish(&mut self, wall_s: f64, runs: Vec<PathBuf>) {
        self.wall_s = wall_s;
        self.runs = runs.iter().map(|p| p.display().to_string()).collect();
    }

    /// Every number in the report (headline and table cells).
    pub fn numbers(&self) -> Vec<f64> {
        let mut out = Vec::new();
        if let Some(h) = &self.headline {
            out.extend([h.baseline, h.method]);
        }
        for t in &self.tables {
            for r in &t.rows {
                out.extend(r.iter().filter_map(Json::as_f64));
            }
        }
        out
    }

    /// Table cells that should be numbers but are not (a NaN serialises as `null`).
    pub fn missing_numbers(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.rows)
            .flatten()
            .filter(|c| c.is_null())
            .count()
    }

    /// The markdown form.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {} — {}\n", self.method, self.comparison);
        if self.quick {
            s.push_str("**Quick mode**: reduced steps and samples; these numbers check the pipeline, not the effect.\n\n");
        }
        if let Some(h) = &self.headline {
            let _ = writeln!(
                s,
                "**{}**: {} {} vs {} {} — {} ({}).\n",
                h.metric,
                h.baseline_name,
                num(h.baseline),
                h.method_name,
                num(h.method),
                h.verdict(),
                h.criterion
            );
        }
        for t in &self.tables {
            let _ = writeln!(s, "## {}\n", t.title);
            let _ = writeln!(s, "| {} |", t.columns.join(" | "));
            let _ = writeln!(s, "|{}", "---|".repeat(t.columns.len()));
            for r in &t.rows {
                let cells: Vec<String> = r.iter().map(cell).collect();
                let _ = writeln!(s, "| {} |", cells.join(" | "));
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            s.push_str("## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
            s.push('\n');
        }
        s.push_str("## Run\n\n");
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- seed: {}", self.seed);
        let _ = writeln!(s, "- backend: {}", self.backend);
        let _ = writeln!(s, "- git revision: {}", self.git_rev);
        if let Some(c) = &self.criterion_commit {
            let _ = writeln!(
                s,
                "- criterion fixed in commit {c} (`repro/criteria/{}.txt`, before this run)",
                self.experiment
            );
        }
        let _ = writeln!(s, "- wall time: {:.1} s", self.wall_s);
        for r in &self.runs {
            let _ = writeln!(s, "- run directory: `{r}` (`weft view {r}`)");
        }
        s
    }

    /// Writes `dir/report.json` and `dir/report.md`.
    pub fn write(&self, dir: &Path) -> Result<(), ReproError> {
        let io = |path: PathBuf| move |source| ReproError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let json =
            serde_json::to_string_pretty(self).map_err(|e| ReproError::Other(e.to_string()))?;
        let p = dir.join("report.json");
        weft_runtime::tensor_file::write_atomic(&p, json.as_bytes()).map_err(io(p.clone()))?;
        let p = dir.join("report.md");
        weft_runtime::tensor_file::write_atomic(&p, self.markdown().as_bytes())
            .map_err(io(p.clone()))
    }
}

/// A number for a table: four significant digits, or "—" for a missing one.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.3e}")
    } else {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn cell(c: &Json) -> String {
    match c {
        Json::Null => "—".into(),
        Json::String(s) => s.clone(),
        Json::Number(n) if n.is_f64() => num(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// The commit that last changed `repro/criteria/NAME.txt` (with `-dirty` when the file has
/// uncommitted changes), or `None` when there is no such file or no checkout.
fn criterion_commit(root: &Path, name: &str) -> Option<String> {
    let rel = format!("repro/criteria/{name}.txt");
    if !root.join(&rel).is_file() {
        return None;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["log", "-1", "--format=%h", "--", &rel]).filter(|r| !r.is_empty())?;
    let dirty = git(&["status", "--porcelain", "--", &rel]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// `git rev-parse --short HEAD` in `root` (with `-dirty` when the tree has changes), or
/// "unknown" outside a checkout.
fn git_rev(root: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}
