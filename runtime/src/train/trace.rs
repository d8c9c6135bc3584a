//! What a run records besides metrics: validation loss (and, for a `segment_nll` objective,
//! the loss and weight of every demonstration of the held-out batches), and traces of
//! attention patterns, MoM routing choices and MoICE base choices on a fixed held-out
//! sequence (the viewer's attention, routing and curves panels).

use super::{inputs_for, Plan, TrainError};
use crate::data::{Batch, DataSource};
use crate::rundir::{trace_kind, RunDir, Trace};
use crate::{Backend, HookSelection, ParamStore, Tensor};
use std::collections::BTreeMap;
use weft_compiler::ir::Graph;
use weft_compiler::lower::manifest::{Manifest, RouteSite};
use weft_compiler::lower::{lower, lower_with_manifest, LowerOptions};
use weft_dsl::Checked;

/// Validation batches evaluated per evaluation (the rest of the held-out set is skipped).
const EVAL_BATCHES: usize = 4;

/// Hook points of a `segment_nll` loss, each `[B, 1, K]`: per-demonstration mean loss,
/// answer tokens and detached weight (compiler/src/lower/loss.rs).
const SEGMENT_HOOKS: [&str; 3] = ["loss.segment_nll", "loss.segment_tokens", "loss.weights"];

pub struct Tracer<'a> {
    spec: &'a Checked,
    probes: Vec<weft_dsl::typed::Probe>,
    seed: u64,
    eval_graph: Graph,
    eval: Vec<Batch>,
    trace_graph: Graph,
    /// The trace graph's sites: which hooks are routes into which pool, MoICE bases.
    manifest: Manifest,
    trace_batch: Batch,
    token_text: Vec<String>,
}

impl<'a> Tracer<'a> {
    pub fn new(spec: &'a Checked, p: &Plan, data: &dyn DataSource) -> Result<Self, TrainError> {
        let micro = p.batch / p.accumulate;
        let mut eo = LowerOptions::new(micro, p.seq);
        eo.with_loss = true;
        let eval_graph = lower(spec, &eo)?;
        let mut eval = data.eval_batches(micro, p.seq)?;
        eval.truncate(EVAL_BATCHES);
        let mut to = LowerOptions::new(1, p.seq);
        to.capture = vec!["*.attn.pattern".into()];
        let traced = lower_with_manifest(spec, &to)?;
        let first = data
            .eval_batches(1, p.seq)?
            .into_iter()
            .next()
            .ok_or_else(|| TrainError::Config("the data source has no evaluation set".into()))?;
        let token_text = first
            .tokens
            .as_i32()
            .unwrap_or(&[])
            .iter()
            .map(|&id| data.token_text(id))
            .collect();
        Ok(Tracer {
            spec,
            probes: p.eval.clone(),
            seed: p.seed,
            eval_graph,
            eval,
            trace_graph: traced.graph,
            manifest: traced.manifest,
            trace_batch: first,
            token_text,
        })
    }

    /// Validation loss (an `eval` metrics line, also returned) and traces.
    pub fn evaluate(
        &self,
        run: &mut RunDir,
        backend: &dyn Backend,
        params: &ParamStore,
        step: u64,
    ) -> Result<f64, TrainError> {
        let g = &self.eval_graph;
        let segmented = SEGMENT_HOOKS
            .iter()
            .all(|h| g.hooks.iter().any(|(n, _)| n == h));
        let hooks = if segmented {
            HookSelection::Names(SEGMENT_HOOKS.iter().map(|h| h.to_string()).collect())
        } else {
            HookSelection::None
        };
        let mut total = 0.0;
        let mut segments = SegmentRows::default();
        for b in &self.eval {
            let out = backend
                .run(g, &inputs_for(g, b), params, &hooks)
                .map_err(|source| TrainError::Run {
                    backend: backend.name().into(),
                    step,
                    source,
                })?;
            total += out.outputs["loss"].to_f64_vec()[0];
            if segmented {
                segments.push(&out.hooks);
            }
        }
        let val = total / self.eval.len().max(1) as f64;
        let line = serde_json::json!({"kind": "eval", "step": step, "val_loss": val});
        run.metrics()
            .log_value(&line)
            .map_err(|source| TrainError::Io {
                path: run.root().to_path_buf(),
                source,
            })?;
        if let Some(t) = segments.trace(step) {
            run.write_trace(&t).map_err(|source| TrainError::Io {
                path: run.root().to_path_buf(),
                source,
            })?;
        }
        self.run_probes(run, backend, params, step)?;
        self.record(run, backend, params, step)?;
        Ok(val)
    }

    /// The spec's `eval = [...]` probes: scalar results go to metrics (`kind: eval`, `probe`),
    /// L×H tables (`scores`) become `head_scores` traces. Optimizer state is untouched.
    fn run_probes(
        &self,
        run: &mut RunDir,
        backend: &dyn Backend,
        params: &ParamStore,
        step: u64,
    ) -> Result<(), TrainError> {
        let io = |source| TrainError::Io {
            path: run.root().to_path_buf(),
            source,
        };
        let model = crate::probes::Model::new(self.spec, params, backend);
        let mut lines = Vec::new();
        let mut traces = Vec::new();
        for probe in &self.probes {
            let name = weft_dsl::typed::Resolved::name(probe);
            let result =
                crate::probes::program::run_probe(&model, probe, self.seed).map_err(|e| {
                    TrainError::Config(format!("eval probe `{name}` at step {step}: {e}"))
                })?;
            let mut line = serde_json::Map::new();
            line.insert("kind".into(), "eval".into());
            line.insert("step".into(), step.into());
            line.insert("probe".into(), name.into());
            if let serde_json::Value::Object(fields) = &result {
                for (k, v) in fields.iter().filter(|(_, v)| v.is_number()) {
                    line.insert(k.clone(), v.clone());
                }
                if let Some(t) = fields.get("scores").and_then(|s| head_table(name, s, step)) {
                    traces.push(t);
                }
            }
            lines.push(serde_json::Value::Object(line));
        }
        for t in &traces {
            run.write_trace(t).map_err(io)?;
        }
        for l in &lines {
            run.metrics()
                .log_value(l)
                .map_err(|source| TrainError::Io {
                    path: run.root().to_path_buf(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Attention patterns of every layer, routing choices of every route and MoICE base
    /// choices of every mixed attention, on row 0 of the held-out set.
    pub fn record(
        &self,
        run: &mut RunDir,
        backend: &dyn Backend,
        params: &ParamStore,
        step: u64,
    ) -> Result<(), TrainError> {
        let g = &self.trace_graph;
        let wanted: Vec<String> = g
            .hooks
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                n.ends_with(".attn.pattern")
                    || n.ends_with(".choice")
                    || n.ends_with(".probs")
                    || n.ends_with(".router.logits")
            })
            .collect();
        let out = backend
            .run(
                g,
                &inputs_for(g, &self.trace_batch),
                params,
                &HookSelection::Names(wanted),
            )
            .map_err(|source| TrainError::Run {
                backend: backend.name().into(),
                step,
                source,
            })?;
        let io = |source| TrainError::Io {
            path: run.root().to_path_buf(),
            source,
        };
        let tokens = self.trace_batch.tokens.clone();
        let text = serde_json::Value::from(self.token_text.clone());
        for (name, t) in &out.hooks {
            if let Some(layer) = name.strip_suffix(".attn.pattern").and_then(layer_of) {
                let mut attrs = serde_json::Map::new();
                attrs.insert("layer".into(), layer.into());
                attrs.insert("token_text".into(), text.clone());
                run.write_trace(&Trace {
                    name: name.clone(),
                    kind: trace_kind::ATTENTION.into(),
                    step,
                    tensors: BTreeMap::from([
                        ("pattern".into(), t.clone()),
                        ("tokens".into(), tokens.clone()),
                    ]),
                    axes: BTreeMap::from([(
                        "pattern".into(),
                        axes(&["batch", "head", "query", "key"]),
                    )]),
                    attrs,
                })
                .map_err(io)?;
            }
        }
        for site in &self.manifest.routes {
            if let Some(trace) = routing_trace(&out.hooks, site, step, &tokens, &text) {
                run.write_trace(&trace).map_err(io)?;
            }
        }
        for (name, choice) in &out.hooks {
            let Some(prefix) = name.strip_suffix(".router.choice") else {
                continue;
            };
            let Some(logits) = out.hooks.get(&format!("{prefix}.router.logits")) else {
                continue;
            };
            let bases = self
                .manifest
                .attention_at(prefix)
                .and_then(|a| a.bases.clone());
            if let Some(trace) =
                base_routing_trace(prefix, choice, logits, bases, step, &tokens, &text)
            {
                run.write_trace(&trace).map_err(io)?;
            }
        }
        Ok(())
    }
}

/// Per-demonstration rows gathered over the held-out batches (the [`SEGMENT_HOOKS`]).
#[derive(Default)]
struct SegmentRows {
    /// Per sequence, per hook of [`SEGMENT_HOOKS`]: its K slots.
    rows: Vec<[Vec<f32>; 3]>,
}

impl SegmentRows {
    fn push(&mut self, hooks: &BTreeMap<String, Tensor>) {
        let [Some(loss), Some(count), Some(weight)] = SEGMENT_HOOKS.map(|h| hooks.get(h)) else {
            return;
        };
        let k = loss.shape.last().copied().unwrap_or(0);
        if k == 0 || count.shape != loss.shape || weight.shape != loss.shape {
            return;
        }
        let all = [loss, count, weight].map(Tensor::to_f32_vec);
        for i in 0..all[0].len() / k {
            self.rows
                .push(all.each_ref().map(|v| v[i * k..(i + 1) * k].to_vec()));
        }
    }

    /// A [`trace_kind::SEGMENTS`] trace `[N, K]`, K cut to the last demonstration present in
    /// any sequence; `None` when no sequence has one.
    fn trace(&self, step: u64) -> Option<Trace> {
        let k = self
            .rows
            .iter()
            .filter_map(|r| r[1].iter().rposition(|&c| c > 0.0))
            .max()?
            + 1;
        let n = self.rows.len();
        let take = |j: usize| -> Tensor {
            let data = self.rows.iter().flat_map(|r| r[j][..k].to_vec()).collect();
            Tensor::f32(&[n, k], data)
        };
        let ax = axes(&["sequence", "demonstration"]);
        Some(Trace {
            name: "loss.segments".into(),
            kind: trace_kind::SEGMENTS.into(),
            step,
            tensors: BTreeMap::from([
                ("loss".into(), take(0)),
                ("tokens".into(), take(1)),
                ("weight".into(), take(2)),
            ]),
            axes: BTreeMap::from([
                ("loss".into(), ax.clone()),
                ("tokens".into(), ax.clone()),
                ("weight".into(), ax),
            ]),
            attrs: serde_json::Map::new(),
        })
    }
}

/// A [`trace_kind::BASE_ROUTING`] trace from a MoICE router's `choice` (0/1 top-k) and
/// `logits`, both `[B, H, T, N]`: per (token, head) the chosen bases by decreasing router
/// probability and their renormalised mixing weights. `text` is the tokens' text (a JSON
/// list of strings); `None` when the shapes do not fit or `prefix` names no layer.
pub fn base_routing_trace(
    prefix: &str,
    choice: &Tensor,
    logits: &Tensor,
    bases: Option<Vec<f64>>,
    step: u64,
    tokens: &Tensor,
    text: &serde_json::Value,
) -> Option<Trace> {
    let &[b, h, t, n] = choice.shape.as_slice() else {
        return None;
    };
    if logits.shape != choice.shape || n == 0 {
        return None;
    }
    let (c, lg) = (choice.to_f32_vec(), logits.to_f32_vec());
    let slots = c
        .chunks(n)
        .map(|row| row.iter().filter(|&&x| x > 0.5).count())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut probs = Vec::with_capacity(lg.len());
    let (mut chosen_out, mut weight_out) = (Vec::new(), Vec::new());
    for (row, cr) in lg.chunks(n).zip(c.chunks(n)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
        let z: f32 = e.iter().sum();
        let p: Vec<f32> = e.iter().map(|&x| x / z).collect();
        let mut chosen: Vec<usize> = (0..n).filter(|&m| cr[m] > 0.5).collect();
        chosen.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let kept: f32 = chosen.iter().map(|&m| p[m]).sum();
        for s in 0..slots {
            match chosen.get(s) {
                Some(&m) => {
                    chosen_out.push(m as i32);
                    weight_out.push(if kept > 0.0 { p[m] / kept } else { 0.0 });
                }
                None => {
                    chosen_out.push(-1);
                    weight_out.push(0.0);
                }
            }
        }
        probs.extend(p);
    }
    let layer = layer_of(prefix)?;
    let mut attrs = serde_json::Map::new();
    attrs.insert("layer".into(), layer.into());
    if let Some(bases) = bases.filter(|v| v.len() == n) {
        attrs.insert("bases".into(), bases.into());
    }
    attrs.insert("token_text".into(), text.clone());
    let slot_axes = axes(&["batch", "head", "token", "slot"]);
    let shape = [b, h, t, slots];
    Some(Trace {
        name: format!("{prefix}.router"),
        kind: trace_kind::BASE_ROUTING.into(),
        step,
        tensors: BTreeMap::from([
            ("choice".into(), Tensor::i32(&shape, chosen_out)),
            ("weight".into(), Tensor::f32(&shape, weight_out)),
            ("probs".into(), Tensor::f32(&[b, h, t, n], probs)),
            ("tokens".into(), tokens.clone()),
        ]),
        axes: BTreeMap::from([
            ("choice".into(), slot_axes.clone()),
            ("weight".into(), slot_axes),
            ("probs".into(), axes(&["batch", "head", "token", "base"])),
        ]),
        attrs,
    })
}

/// A probe's `scores` `[[f64; H]; L]` as a `head_scores` trace.
fn head_table(probe: &str, scores: &serde_json::Value, step: u64) -> Option<Trace> {
    let rows: Vec<Vec<f32>> = scores
        .as_array()?
        .iter()
        .map(|r| {
            r.as_array()
                .map(|r| {
                    r.iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let (l, h) = (rows.len(), rows.first().map_or(0, Vec::len));
    if l == 0 || h == 0 || rows.iter().any(|r| r.len() != h) {
        return None;
    }
    let mut attrs = serde_json::Map::new();
    attrs.insert("score".into(), probe.into());
    Some(Trace {
        name: probe.into(),
        kind: trace_kind::HEAD_SCORES.into(),
        step,
        tensors: BTreeMap::from([("scores".into(), Tensor::f32(&[l, h], rows.concat()))]),
        axes: BTreeMap::from([("scores".into(), axes(&["layer", "head"]))]),
        attrs,
    })
}

fn axes(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `layers.3[.iter1]` → 3.
fn layer_of(prefix: &str) -> Option<u64> {
    prefix
        .strip_prefix("layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `choice` i32 `[iterations, 1, T, K]`: chosen module per slot (−1 = SKIP), and `weight` f32
/// of the same shape: the router's probability of that choice.
fn routing_trace(
    hooks: &BTreeMap<String, Tensor>,
    site: &RouteSite,
    step: u64,
    tokens: &Tensor,
    text: &serde_json::Value,
) -> Option<Trace> {
    let mut iters = Vec::new();
    for prefix in &site.hooks {
        let key = |s: &str| hooks.get(&format!("{prefix}.{s}"));
        match (key("choice"), key("probs")) {
            (Some(c), Some(p)) => iters.push((c.to_f32_vec(), p.to_f32_vec(), c.shape.clone())),
            _ => break,
        }
    }
    let (_, _, shape) = iters.first()?.clone();
    let (t, k) = (shape[1], shape[2]);
    let slots = iters[0]
        .0
        .chunks(k)
        .map(|row| row.iter().filter(|&&x| x > 0.5).count())
        .max()
        .unwrap_or(1)
        .max(1);
    let (mut choice, mut weight) = (Vec::new(), Vec::new());
    for (c, p, _) in &iters {
        for pos in 0..t {
            let row = &c[pos * k..(pos + 1) * k];
            let probs = &p[pos * k..(pos + 1) * k];
            let mut chosen: Vec<usize> = (0..k).filter(|&m| row[m] > 0.5).collect();
            chosen.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            for s in 0..slots {
                match chosen.get(s) {
                    Some(&m) => {
                        choice.push(if site.skip && m == k - 1 {
                            -1
                        } else {
                            m as i32
                        });
                        weight.push(probs[m]);
                    }
                    None => {
                        choice.push(-1);
                        weight.push(0.0);
                    }
                }
            }
        }
    }
    let shape = [iters.len(), 1, t, slots];
    let mut attrs = serde_json::Map::new();
    attrs.insert("layer".into(), (site.layer as u64).into());
    attrs.insert("pool".into(), site.pool.clone().into());
    attrs.insert("modules".into(), (site.modules as u64).into());
    attrs.insert("token_text".into(), text.clone());
    let ax = axes(&["iteration", "batch", "token", "slot"]);
    Some(Trace {
        name: site.params.clone(),
        kind: trace_kind::ROUTING.into(),
        step,
        tensors: BTreeMap::from([
            ("choice".into(), Tensor::i32(&shape, choice)),
            ("weight".into(), Tensor::f32(&shape, weight)),
            ("tokens".into(), tokens.clone()),
        ]),
        axes: BTreeMap::from([("choice".into(), ax.clone()), ("weight".into(), ax)]),
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Checked {
        weft_dsl::check_source(src).expect("example checks")
    }

    #[test]
    fn a_segment_loss_exposes_its_per_demonstration_hooks() {
        let spec = check(include_str!("../../../examples/dr_icl.weft"));
        let mut o = LowerOptions::new(2, 32);
        o.with_loss = true;
        let g = lower(&spec, &o).unwrap();
        for h in SEGMENT_HOOKS {
            let (_, v) = g.hooks.iter().find(|(n, _)| n == h).expect(h);
            assert_eq!(g.shape(*v), [2, 1, 32], "{h}");
        }
        // A plain nll objective has none.
        let plain = lower(&check(include_str!("../../../examples/gpt.weft")), &o).unwrap();
        assert!(!plain.hooks.iter().any(|(n, _)| n.starts_with("loss.")));
    }

    #[test]
    fn segment_rows_are_cut_to_the_last_demonstration_present() {
        let t = |v: Vec<f32>| Tensor::f32(&[2, 1, 4], v);
        let hooks = BTreeMap::from([
            (
                "loss.segment_nll".to_string(),
                t(vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 5.0, 0.0]),
            ),
            (
                "loss.segment_tokens".to_string(),
                t(vec![2.0, 1.0, 0.0, 0.0, 1.0, 1.0, 3.0, 0.0]),
            ),
            (
                "loss.weights".to_string(),
                t(vec![1.0, 1.1, 0.0, 0.0, 1.0, 0.9, 1.2, 0.0]),
            ),
        ]);
        let mut rows = SegmentRows::default();
        assert!(rows.trace(1).is_none(), "nothing gathered yet");
        rows.push(&hooks);
        rows.push(&hooks);
        let tr = rows.trace(7).unwrap();
        assert_eq!((tr.kind.as_str(), tr.step), (trace_kind::SEGMENTS, 7));
        assert_eq!(tr.tensors["loss"].shape, [4, 3]);
        assert_eq!(
            tr.tensors["loss"].to_f32_vec()[..6],
            [1.0, 2.0, 0.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(tr.tensors["tokens"].to_f32_vec()[3..6], [1.0, 1.0, 3.0]);
        assert_eq!(tr.tensors["weight"].to_f32_vec()[..3], [1.0, 1.1, 0.0]);
    }

    #[test]
    fn base_choices_are_sorted_by_weight_and_renormalised() {
        // One row, one head, two tokens, three bases, top-2.
        let choice = Tensor::f32(&[1, 1, 2, 3], vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        let logits = Tensor::f32(&[1, 1, 2, 3], vec![0.0, 5.0, 1.0, 2.0, 0.0, 1.0]);
        let tokens = Tensor::i32(&[1, 2], vec![7, 8]);
        let text = serde_json::json!(["a", "b"]);
        let bases = Some(vec![10.0, 20.0, 30.0]);
        let tr = base_routing_trace("layers.3.attn", &choice, &logits, bases, 5, &tokens, &text)
            .unwrap();
        assert_eq!(tr.name, "layers.3.attn.router");
        assert_eq!(tr.attrs["layer"], 3);
        assert_eq!(tr.attrs["bases"], serde_json::json!([10.0, 20.0, 30.0]));
        let c = tr.tensors["choice"].as_i32().unwrap();
        // Token 0 chose bases 0 and 2 (logit 1 > 0: base 2 first); token 1 chose 1 and 2.
        assert_eq!(c, [2, 0, 2, 1]);
        let w = tr.tensors["weight"].to_f32_vec();
        let e = std::f32::consts::E;
        assert!((w[0] - e / (e + 1.0)).abs() < 1e-6);
        assert!((w[0] + w[1] - 1.0).abs() < 1e-6 && (w[2] + w[3] - 1.0).abs() < 1e-6);
        let p = tr.tensors["probs"].to_f32_vec();
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // A mismatched logits shape is not a trace.
        let bad = Tensor::f32(&[1, 1, 2, 2], vec![0.0; 4]);
        assert!(
            base_routing_trace("layers.0.attn", &choice, &bad, None, 0, &tokens, &text).is_none()
        );
    }

    #[test]
    fn moice_bases_come_from_the_manifest() {
        let bases = |spec: &Checked, hook: &str| {
            weft_compiler::lower::manifest(spec)
                .unwrap()
                .attention_at(hook)
                .and_then(|a| a.bases.clone())
        };
        let spec = check(include_str!("../../../examples/moice.weft"));
        let want = vec![10000.0, 12000.0, 15000.0, 20000.0, 30000.0];
        assert_eq!(bases(&spec, "layers.0.attn"), Some(want.clone()));
        assert_eq!(bases(&spec, "layers.1.attn"), Some(want));
        assert_eq!(bases(&spec, "layers.1.attn2"), None);
        assert_eq!(bases(&spec, "layers.9.attn"), None);
        let gpt = check(include_str!("../../../examples/gpt.weft"));
        assert_eq!(bases(&gpt, "layers.0.attn"), None);
    }

    #[test]
    fn route_sites_come_from_the_manifest_per_iteration() {
        let spec = check(include_str!("../../../examples/mom.weft"));
        let m = weft_compiler::lower::manifest(&spec).unwrap();
        let sites: Vec<_> = m.routes_of(1).collect();
        assert_eq!(sites.len(), 2);
        assert_eq!((sites[0].pool.as_str(), sites[0].modules), ("attn", 4));
        assert_eq!((sites[1].pool.as_str(), sites[1].skip), ("ffn", true));
        assert_eq!(sites[0].params, "layers.1.route0");
        assert_eq!(
            sites[1].hooks,
            (0..4)
                .map(|j| format!("layers.1.iter{j}.route1"))
                .collect::<Vec<_>>()
        );
        assert_eq!(m.layers[1].iterations, 4);
        assert_eq!(m.routes_of(0).count(), 0);
    }
}
