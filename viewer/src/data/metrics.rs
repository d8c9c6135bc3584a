//! `metrics.jsonl` as series the Curves panel can plot.

use serde_json::Value;
use std::collections::BTreeMap;

/// One `"kind": "train"` line. `None` is a non-finite value (written as `null`: diverged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainPoint {
    pub step: u64,
    pub tokens: Option<u64>,
    pub loss: Option<f64>,
    pub aux: BTreeMap<String, Option<f64>>,
    pub lr: Option<f64>,
    pub grad_norm: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub wall_s: Option<f64>,
}

/// One `"kind": "eval"` line: every numeric field (nested objects flattened with `.`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalPoint {
    pub step: u64,
    pub values: BTreeMap<String, Option<f64>>,
}

/// Everything read from `metrics.jsonl` so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub train: Vec<TrainPoint>,
    pub eval: Vec<EvalPoint>,
    /// Lines with a `kind` the viewer does not plot, or no `step`.
    pub skipped: usize,
}

/// Which plot a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Loss,
    LearningRate,
    GradNorm,
    Throughput,
    Eval,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Loss,
        Group::Eval,
        Group::LearningRate,
        Group::GradNorm,
        Group::Throughput,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Loss => "loss and auxiliary terms",
            Group::LearningRate => "learning rate",
            Group::GradNorm => "gradient norm (before clipping)",
            Group::Throughput => "throughput (tokens/s)",
            Group::Eval => "evaluation",
        }
    }
}

/// A named curve: `(step, value)` pairs; `None` marks a diverged (non-finite) value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub group: Group,
    pub points: Vec<(u64, Option<f64>)>,
}

impl Series {
    /// The first step whose value was non-finite, if any.
    pub fn diverged_at(&self) -> Option<u64> {
        self.points.iter().find(|p| p.1.is_none()).map(|p| p.0)
    }
}

impl Metrics {
    /// Adds one parsed line; returns whether it was used.
    pub fn push(&mut self, v: &Value) -> bool {
        let Some(step) = v.get("step").and_then(Value::as_u64) else {
            self.skipped += 1;
            return false;
        };
        match v.get("kind").and_then(Value::as_str) {
            Some("train") => {
                let num = |k: &str| v.get(k).and_then(Value::as_f64);
                let aux = v
                    .get("aux")
                    .and_then(Value::as_object)
                    .map(|o| o.iter().map(|(k, x)| (k.clone(), x.as_f64())).collect())
                    .unwrap_or_default();
                self.train.push(TrainPoint {
                    step,
                    tokens: v.get("tokens").and_then(Value::as_u64),
                    loss: num("loss"),
                    aux,
                    lr: num("lr"),
                    grad_norm: num("grad_norm"),
                    tokens_per_s: num("tokens_per_s"),
                    wall_s: num("wall_s"),
                });
                true
            }
            Some("eval") => {
                let mut values = BTreeMap::new();
                if let Some(o) = v.as_object() {
                    for (k, x) in o {
                        if k != "step" && k != "kind" {
                            flatten(k, x, &mut values);
                        }
                    }
                }
                self.eval.push(EvalPoint { step, values });
                true
            }
            _ => {
                self.skipped += 1;
                false
            }
        }
    }

    /// The last step logged (train or eval).
    pub fn last_step(&self) -> Option<u64> {
        let t = self.train.last().map(|p| p.step);
        let e = self.eval.last().map(|p| p.step);
        t.max(e)
    }

    /// Training tokens seen at `step`, interpolated between logged train lines (eval lines
    /// carry no token count, yet the Curves panel can plot them against tokens).
    pub fn tokens_at(&self, step: u64) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self
            .train
            .iter()
            .filter_map(|p| Some((p.step as f64, p.tokens? as f64)))
            .collect();
        let s = step as f64;
        match pts.len() {
            0 => None,
            1 => Some(pts[0].1 / pts[0].0.max(1.0) * s),
            _ => {
                let i = pts.partition_point(|p| p.0 < s).clamp(1, pts.len() - 1);
                let (a, b) = (pts[i - 1], pts[i]);
                let f = if b.0 > a.0 {
                    (s - a.0) / (b.0 - a.0)
                } else {
                    0.0
                };
                Some(a.1 + f * (b.1 - a.1))
            }
        }
    }

    /// Every curve: loss and each aux term, lr, grad norm, throughput, each eval field.
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        let train = |name: &str, group, f: &dyn Fn(&TrainPoint) -> Option<f64>| Series {
            name: name.to_string(),
            group,
            points: self.train.iter().map(|p| (p.step, f(p))).collect(),
        };
        if !self.train.is_empty() {
            out.push(train("loss", Group::Loss, &|p| p.loss));
            let aux: std::collections::BTreeSet<&String> =
                self.train.iter().flat_map(|p| p.aux.keys()).collect();
            for name in aux {
                out.push(Series {
                    name: name.clone(),
                    group: Group::Loss,
                    points: self
                        .train
                        .iter()
                        .filter_map(|p| p.aux.get(name).map(|v| (p.step, *v)))
                        .collect(),
                });
            }
            out.push(train("lr", Group::LearningRate, &|p| p.lr));
            out.push(train("grad_norm", Group::GradNorm, &|p| p.grad_norm));
            out.push(train("tokens_per_s", Group::Throughput, &|p| {
                p.tokens_per_s
            }));
        }
        let fields: std::collections::BTreeSet<&String> =
            self.eval.iter().flat_map(|p| p.values.keys()).collect();
        for name in fields {
            out.push(Series {
                name: name.clone(),
                group: Group::Eval,
                points: self
                    .eval
                    .iter()
                    .filter_map(|p| p.values.get(name).map(|v| (p.step, *v)))
                    .collect(),
            });
        }
        out.retain(|s| !s.points.is_empty());
        out
    }
}

/// Numeric leaves of an eval line; `null` is kept as a non-finite value, strings dropped.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Option<f64>>) {
    match v {
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.as_f64());
        }
        Value::Null => {
            out.insert(prefix.to_string(), None);
        }
        Value::Object(o) => {
            for (k, x) in o {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        _ => {}
    }
}
