//! Program results: `RUN/programs/*.json` as `weft run` writes them (`{program, probe, args,
//! spec, model, weights, seed, backend, result}`, docs/programs.md), read into typed views of
//! the probes the Programs panel draws. A file that does not parse, or a known probe whose
//! result has another shape, is an error string, never a panic.

use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// The folder of a run directory that holds program results.
pub use weft_rundir::PROGRAMS_DIR;

/// One `programs/*.json` file: its name and what reading it gave.
#[derive(Clone, Debug)]
pub struct ProgramEntry {
    /// File name inside `programs/`.
    pub file: String,
    pub program: Result<Arc<Program>, String>,
}

/// A program's header and its result.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The program's name in the spec.
    pub name: String,
    /// The probe that ran.
    pub probe: String,
    /// The checked arguments, compact (`task: copy, samples: 32`).
    pub args: String,
    pub spec: Option<String>,
    pub model: Option<String>,
    /// The weights file; `None` for a seeded initialisation.
    pub weights: Option<String>,
    pub seed: Option<u64>,
    pub backend: Option<String>,
    /// Scalar fields of the result (numbers, strings, booleans), in file order, formatted.
    pub scalars: Vec<(String, String)>,
    /// The result as the panel draws it; `Err` when a known probe's result has the wrong
    /// shape (the panel then shows the error and the JSON).
    pub result: Result<ProbeResult, String>,
    /// The result pretty-printed (shown for unknown probes and malformed results).
    pub pretty: String,
}

/// A probe result the Programs panel knows how to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeResult {
    AttentionDistance(AttentionDistance),
    BatchIcl(BatchIcl),
    IclOrders(IclOrders),
    LengthSweep(LengthSweep),
    NeedleSweep(NeedleSweep),
    ShotsSweep(ShotsSweep),
    /// `final_layer`: the before/after statistics and the other fields.
    FinalLayer(FinalTable),
    /// Any other probe: the panel shows [`Program::pretty`].
    Other,
}

/// `attention_distance`: mean weight per head against relative distance Δ = 0..len−1.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionDistance {
    pub len: usize,
    /// `mean[l][h][Δ]` (NaN where the file has `null`).
    pub mean: Vec<Vec<Vec<f64>>>,
    /// `mean_abs[l][h][Δ]`, when present.
    pub mean_abs: Option<Vec<Vec<Vec<f64>>>>,
}

impl AttentionDistance {
    pub fn layers(&self) -> usize {
        self.mean.len()
    }
}

/// `batch_icl`: accuracy against the injection layer k.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchIcl {
    /// The k tried (k = L injects nothing).
    pub layers: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub best_layer: Option<f64>,
    /// Reference accuracies: every top-level `*_shot_accuracy` field (`zero_shot_accuracy`,
    /// an N-shot baseline such as `n_shot_accuracy`), as (label, value).
    pub references: Vec<(String, f64)>,
}

/// `icl_orders`: accuracy of every order of the demonstrations.
#[derive(Clone, Debug, PartialEq)]
pub struct IclOrders {
    pub by_order: Vec<f64>,
    pub mean: f64,
    /// Oracle bounds: the best and the worst order per query, averaged.
    pub best: f64,
    pub worst: f64,
}

/// `length_sweep`: accuracy and loss against evaluation length.
#[derive(Clone, Debug, PartialEq)]
pub struct LengthSweep {
    pub train_len: Option<f64>,
    pub lengths: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub loss: Option<Vec<f64>>,
}

/// `needle_sweep`: accuracy and loss against the needle's relative depth (0..1).
#[derive(Clone, Debug, PartialEq)]
pub struct NeedleSweep {
    pub positions: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub loss: Option<Vec<f64>>,
    pub len: Option<f64>,
}

/// `shots_sweep`: accuracy (and loss) against the number of demonstrations.
#[derive(Clone, Debug, PartialEq)]
pub struct ShotsSweep {
    pub shots: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub zero_shot: Option<f64>,
    pub loss: Option<Vec<f64>>,
    pub zero_shot_loss: Option<f64>,
}

/// `final_layer` as a table: `(name, before, after)` for every `NAME_before`/`NAME_after`
/// pair (`intervention`, `layer` and the pairs the probe names first), then the other fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FinalTable {
    pub pairs: Vec<(String, String, String)>,
    pub rows: Vec<(String, String)>,
}

impl Program {
    /// Parses a program file's JSON.
    pub fn from_json(v: &Value) -> Result<Program, String> {
        let o = v
            .as_object()
            .ok_or("the file is not a JSON object `{program, probe, args, ..., result}`")?;
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let probe = text("probe").ok_or("no `probe` field")?;
        let result = o.get("result").ok_or("no `result` field")?;
        let scalars = result
            .as_object()
            .map(|r| {
                r.iter()
                    .filter(|(_, v)| v.is_number() || v.is_string() || v.is_boolean())
                    .map(|(k, v)| (k.clone(), fmt_json(v)))
                    .collect()
            })
            .unwrap_or_default();
        let parsed = ProbeResult::parse(&probe, result);
        Ok(Program {
            name: text("program").unwrap_or_else(|| probe.clone()),
            args: o.get("args").map(fmt_args).unwrap_or_default(),
            spec: text("spec"),
            model: text("model"),
            weights: text("weights"),
            seed: o.get("seed").and_then(Value::as_u64),
            backend: text("backend"),
            scalars,
            pretty: if matches!(parsed, Ok(ProbeResult::Other) | Err(_)) {
                serde_json::to_string_pretty(result).unwrap_or_default()
            } else {
                String::new()
            },
            result: parsed,
            probe,
        })
    }

    /// Reads and parses one file.
    pub fn read(path: &Path) -> Result<Program, String> {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        Program::from_json(&v)
    }
}

/// Probes the Programs panel draws as plots or tables of their own.
pub const DRAWN: &[&str] = &[
    "attention_distance",
    "batch_icl",
    "icl_orders",
    "length_sweep",
    "needle_sweep",
    "shots_sweep",
    "final_layer",
];

/// Probes the Programs panel shows as their JSON (their results are a few scalars or a small
/// table already readable as text).
pub const GENERIC: &[&str] = &[
    "copy_accuracy",
    "induction_score",
    "ov_copy_score",
    "logit_lens",
    "head_attribution",
    "rope_components",
    "negative_mass",
    "collapse_probe",
    "path_patching",
    "pear",
    "mlp_decomposition",
];

impl ProbeResult {
    /// The typed view of `probe`'s result; [`ProbeResult::Other`] for probes the panel does
    /// not draw.
    pub fn parse(probe: &str, r: &Value) -> Result<ProbeResult, String> {
        let o = Fields(
            r.as_object()
                .ok_or_else(|| format!("`{probe}` result is not an object"))?,
        );
        Ok(match probe {
            "attention_distance" => {
                let mean = o.cube("mean")?;
                let mean_abs = o.opt(|o| o.cube("mean_abs"), "mean_abs")?;
                ProbeResult::AttentionDistance(AttentionDistance {
                    len: o
                        .opt_num("len")?
                        .map_or_else(|| longest(&mean), |l| l as usize),
                    mean,
                    mean_abs,
                })
            }
            "batch_icl" => {
                let (layers, accuracy) = o.pair("layers", "accuracy")?;
                let references =
                    o.0.iter()
                        .filter(|(k, _)| k.ends_with("_shot_accuracy"))
                        .filter_map(|(k, v)| Some((reference_label(k), v.as_f64()?)))
                        .collect();
                ProbeResult::BatchIcl(BatchIcl {
                    layers,
                    accuracy,
                    best_layer: o.opt_num("best_layer")?,
                    references,
                })
            }
            "icl_orders" => ProbeResult::IclOrders(IclOrders {
                by_order: o.list("by_order")?,
                mean: o.num("mean_accuracy")?,
                best: o.num("best_order_accuracy")?,
                worst: o.num("worst_order_accuracy")?,
            }),
            "length_sweep" => {
                let (lengths, accuracy) = o.pair("lengths", "accuracy")?;
                ProbeResult::LengthSweep(LengthSweep {
                    train_len: o.opt_num("train_len")?,
                    loss: o.opt_same("loss", lengths.len())?,
                    lengths,
                    accuracy,
                })
            }
            "needle_sweep" => {
                let (positions, accuracy) = o.pair("positions", "accuracy")?;
                ProbeResult::NeedleSweep(NeedleSweep {
                    loss: o.opt_same("loss", positions.len())?,
                    len: o.opt_num("len")?,
                    positions,
                    accuracy,
                })
            }
            "shots_sweep" => {
                let (shots, accuracy) = o.pair("shots", "accuracy")?;
                ProbeResult::ShotsSweep(ShotsSweep {
                    loss: o.opt_same("loss", shots.len())?,
                    shots,
                    accuracy,
                    zero_shot: o.opt_num("zero_shot_accuracy")?,
                    zero_shot_loss: o.opt_num("zero_shot_loss")?,
                })
            }
            "final_layer" => ProbeResult::FinalLayer(final_table(o.0)),
            // The `GENERIC` probes, shown as their JSON by decision (a test keeps `DRAWN` and
            // `GENERIC` together equal to the language's probes), and a file from another
            // version of weft naming a probe this one does not know.
            _ => ProbeResult::Other,
        })
    }
}

/// The fields of a `final_layer` result, before/after pairs side by side.
fn final_table(o: &serde_json::Map<String, Value>) -> FinalTable {
    const FIRST: [&str; 4] = ["intervention", "layer", "p_answer", "rank"];
    let mut names: Vec<&str> = o
        .keys()
        .filter_map(|k| k.strip_suffix("_before"))
        .filter(|n| o.contains_key(&format!("{n}_after")))
        .collect();
    names.sort_by_key(|n| (FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()), *n));
    let pairs = names
        .iter()
        .map(|n| {
            let get = |s: &str| fmt_json(&o[&format!("{n}_{s}")]);
            (n.to_string(), get("before"), get("after"))
        })
        .collect();
    let paired = |k: &str| {
        names
            .iter()
            .any(|n| k == format!("{n}_before") || k == format!("{n}_after"))
    };
    let mut rows: Vec<(String, String)> = FIRST[..2]
        .iter()
        .filter_map(|k| Some((k.to_string(), fmt_json(o.get(*k)?))))
        .collect();
    rows.extend(
        o.iter()
            .filter(|(k, _)| !FIRST[..2].contains(&k.as_str()) && !paired(k))
            .map(|(k, v)| (k.clone(), fmt_json(v))),
    );
    FinalTable { pairs, rows }
}

/// `zero_shot_accuracy` → `zero-shot`.
fn reference_label(field: &str) -> String {
    field.trim_end_matches("_accuracy").replace('_', "-")
}

fn longest(cube: &[Vec<Vec<f64>>]) -> usize {
    cube.iter().flatten().map(Vec::len).max().unwrap_or(0)
}

/// A result object with typed getters whose errors name the field.
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl Fields<'_> {
    fn get(&self, k: &str) -> Result<&Value, String> {
        self.0.get(k).ok_or_else(|| format!("result has no `{k}`"))
    }

    fn num(&self, k: &str) -> Result<f64, String> {
        number(self.get(k)?).ok_or_else(|| format!("`{k}` is not a number"))
    }

    fn opt_num(&self, k: &str) -> Result<Option<f64>, String> {
        self.opt(|o| o.num(k), k)
    }

    /// `f` when field `k` is present and not null.
    fn opt<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, String>,
        k: &str,
    ) -> Result<Option<T>, String> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => f(self).map(Some),
        }
    }

    fn list(&self, k: &str) -> Result<Vec<f64>, String> {
        numbers(self.get(k)?).ok_or_else(|| format!("`{k}` is not a list of numbers"))
    }

    /// Two lists of the same length (x values and y values).
    fn pair(&self, x: &str, y: &str) -> Result<(Vec<f64>, Vec<f64>), String> {
        let (xs, ys) = (self.list(x)?, self.list(y)?);
        if xs.len() != ys.len() {
            return Err(format!(
                "`{x}` has {} values but `{y}` has {}",
                xs.len(),
                ys.len()
            ));
        }
        Ok((xs, ys))
    }

    /// An optional list that must have `n` values.
    fn opt_same(&self, k: &str, n: usize) -> Result<Option<Vec<f64>>, String> {
        let v = self.opt(|o| o.list(k), k)?;
        match &v {
            Some(v) if v.len() != n => Err(format!("`{k}` has {} values, expected {n}", v.len())),
            _ => Ok(v),
        }
    }

    /// `[l][h][i]` numbers.
    fn cube(&self, k: &str) -> Result<Vec<Vec<Vec<f64>>>, String> {
        let bad = || format!("`{k}` is not a layers × heads × values table of numbers");
        self.get(k)?
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|l| {
                l.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|h| numbers(h).ok_or_else(bad))
                    .collect()
            })
            .collect()
    }
}

/// A number, `null` (non-finite, as the writer stores it) read as NaN.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(f64::NAN),
        v => v.as_f64(),
    }
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(number).collect()
}

/// A JSON value in one short line: numbers to 4 significant digits, strings bare, arrays
/// and objects abbreviated.
pub fn fmt_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => fmt_f64(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() <= 8 && a.iter().all(|x| !x.is_array() && !x.is_object()) => {
            format!(
                "[{}]",
                a.iter().map(fmt_json).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Array(a) => format!("[{} items]", a.len()),
        Value::Object(o) => format!("{{{} fields}}", o.len()),
    }
}

/// A number to about 4 significant digits, without trailing zeros.
pub fn fmt_f64(f: f64) -> String {
    let a = f.abs();
    if !f.is_finite() {
        "–".into()
    } else if f == f.trunc() && a < 1e9 {
        format!("{f:.0}")
    } else if (1e-3..1e4).contains(&a) {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{f:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{f:.3e}")
    }
}

/// The checked arguments (weft-dsl `Value`s, externally tagged: `{"Int": 32}`,
/// `{"Name": "copy"}`, `{"List": [...]}`) as `name: value, ...`.
fn fmt_args(v: &Value) -> String {
    fn arg(v: &Value) -> String {
        match v {
            Value::Object(o) if o.len() == 1 => {
                let (tag, inner) = o.iter().next().expect("one field");
                match (tag.as_str(), inner) {
                    ("List", Value::Array(a)) => {
                        format!("[{}]", a.iter().map(arg).collect::<Vec<_>>().join(", "))
                    }
                    ("Call", Value::Object(c)) => {
                        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                        let args = c.get("args").map(fmt_args).unwrap_or_default();
                        format!("{name}({args})")
                    }
                    (_, inner) => arg(inner),
                }
            }
            v => fmt_json(v),
        }
    }
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}", arg(v)))
            .collect::<Vec<_>>()
            .join(", "),
        v => fmt_json(v),
    }
}

/// Reads `programs/` and re-parses only files whose size or modification time changed.
#[derive(Debug, Default)]
pub struct ProgramsReader {
    seen: HashMap<String, ((SystemTime, u64), ProgramEntry)>,
}

impl ProgramsReader {
    /// The files of `dir` (sorted by name; temporary `.NAME.tmp.PID` files of a writer are
    /// skipped) and whether anything changed since the last call.
    pub fn poll(&mut self, dir: &Path) -> (Vec<ProgramEntry>, bool) {
        let mut changed = false;
        let mut now: HashMap<String, ((SystemTime, u64), ProgramEntry)> = HashMap::new();
        for f in fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(file) = f.file_name().into_string() else {
                continue;
            };
            if file.starts_with('.') || !file.ends_with(".json") {
                continue;
            }
            let Ok(meta) = f.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            let entry = match self.seen.remove(&file) {
                Some((s, e)) if s == stamp => e,
                _ => {
                    changed = true;
                    ProgramEntry {
                        program: Program::read(&f.path()).map(Arc::new),
                        file: file.clone(),
                    }
                }
            };
            now.insert(file, (stamp, entry));
        }
        changed |= !self.seen.is_empty();
        self.seen = now;
        let mut entries: Vec<ProgramEntry> = self.seen.values().map(|(_, e)| e.clone()).collect();
        entries.sort_by(|a, b| a.file.cmp(&b.file));
        (entries, changed)
    }
}

#[cfg(test)]
mod in_step {
    use super::{DRAWN, GENERIC};
    use std::collections::BTreeSet;
    use weft_dsl::typed::{Probe, Resolved};

    /// A probe added to the language needs a decision here: drawn, or shown as JSON.
    #[test]
    fn every_probe_of_the_language_is_drawn_or_shown_as_json() {
        let ours: BTreeSet<&str> = DRAWN.iter().chain(GENERIC).copied().collect();
        let language: BTreeSet<&str> = <Probe as Resolved>::NAMES.iter().copied().collect();
        assert_eq!(ours, language);
        assert_eq!(
            ours.len(),
            DRAWN.len() + GENERIC.len(),
            "a probe in both lists"
        );
    }
}
