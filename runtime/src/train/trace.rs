//! What a run records besides metrics: validation loss, and traces of attention patterns and
//! routing choices on a fixed held-out sequence (the viewer's attention and MoM panels).

use super::{inputs_for, Plan, TrainError};
use crate::data::{Batch, DataSource};
use crate::rundir::{trace_kind, RunDir, Trace};
use crate::{Backend, HookSelection, ParamStore, Tensor};
use std::collections::BTreeMap;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::ast::{ExprKind, Stmt};
use weft_dsl::builtins::Kind;
use weft_dsl::Checked;

/// Validation batches evaluated per evaluation (the rest of the held-out set is skipped).
const EVAL_BATCHES: usize = 4;

pub struct Tracer<'a> {
    spec: &'a Checked,
    probes: Vec<weft_dsl::check::value::CallValue>,
    seed: u64,
    eval_graph: Graph,
    eval: Vec<Batch>,
    trace_graph: Graph,
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
        let trace_graph = lower(spec, &to)?;
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
            trace_graph,
            trace_batch: first,
            token_text,
        })
    }

    /// Validation loss (an `eval` metrics line) and traces.
    pub fn evaluate(
        &self,
        run: &mut RunDir,
        backend: &dyn Backend,
        params: &ParamStore,
        step: u64,
    ) -> Result<(), TrainError> {
        let mut total = 0.0;
        for b in &self.eval {
            let out = backend
                .run(
                    &self.eval_graph,
                    &inputs_for(&self.eval_graph, b),
                    params,
                    &HookSelection::None,
                )
                .map_err(|source| TrainError::Run {
                    backend: backend.name().into(),
                    step,
                    source,
                })?;
            total += out.outputs["loss"].to_f64_vec()[0];
        }
        let val = total / self.eval.len().max(1) as f64;
        let line = serde_json::json!({"kind": "eval", "step": step, "val_loss": val});
        run.metrics()
            .log_value(&line)
            .map_err(|source| TrainError::Io {
                path: run.root().to_path_buf(),
                source,
            })?;
        self.run_probes(run, backend, params, step)?;
        self.record(run, backend, params, step)
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
        for call in &self.probes {
            let result =
                crate::probes::program::run_program(&model, call, self.seed).map_err(|e| {
                    TrainError::Config(format!("eval probe `{}` at step {step}: {e}", call.name))
                })?;
            let mut line = serde_json::Map::new();
            line.insert("kind".into(), "eval".into());
            line.insert("step".into(), step.into());
            line.insert("probe".into(), call.name.clone().into());
            if let serde_json::Value::Object(fields) = &result {
                for (k, v) in fields.iter().filter(|(_, v)| v.is_number()) {
                    line.insert(k.clone(), v.clone());
                }
                if let Some(t) = fields.get("scores").and_then(|s| head_table(call, s, step)) {
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

    /// Attention patterns of every layer and routing choices of every route, on row 0 of the
    /// held-out set.
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
                n.ends_with(".attn.pattern") || n.ends_with(".choice") || n.ends_with(".probs")
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
        for layer in 0..self.spec.model.layers.len() {
            for (r, site) in route_sites(self.spec, layer).iter().enumerate() {
                if let Some(trace) = routing_trace(&out.hooks, layer, r, site, step, &tokens, &text)
                {
                    run.write_trace(&trace).map_err(|source| TrainError::Io {
                        path: run.root().to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// A probe's `scores` `[[f64; H]; L]` as a `head_scores` trace.
fn head_table(
    call: &weft_dsl::check::value::CallValue,
    scores: &serde_json::Value,
    step: u64,
) -> Option<Trace> {
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
    attrs.insert("score".into(), call.name.clone().into());
    Some(Trace {
        name: call.name.clone(),
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

/// A `route` call of a layer's block: its pool, pool size and whether SKIP is a choice.
pub struct RouteSite {
    pool: String,
    modules: usize,
    skip: bool,
}

/// The route calls of layer `i`'s block in source order (lowering numbers them the same way).
fn route_sites(spec: &Checked, layer: usize) -> Vec<RouteSite> {
    let plan = &spec.model.layers[layer];
    let Some(block) = spec.model.blocks.get(&plan.block) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    fn walk(
        spec: &Checked,
        args: &BTreeMap<String, weft_dsl::check::value::Value>,
        body: &[Stmt],
        out: &mut Vec<RouteSite>,
        seen: &mut Vec<usize>,
    ) {
        for s in body {
            match s {
                Stmt::Assign(a) => find(spec, args, &a.value, out, seen),
                Stmt::Repeat(r) => walk(spec, args, &r.body, out, seen),
            }
        }
    }
    fn find(
        spec: &Checked,
        args: &BTreeMap<String, weft_dsl::check::value::Value>,
        e: &weft_dsl::ast::Expr,
        out: &mut Vec<RouteSite>,
        seen: &mut Vec<usize>,
    ) {
        match &e.kind {
            ExprKind::Call { func, .. } if func.name == "route" => {
                if seen.contains(&e.span.start) {
                    return;
                }
                seen.push(e.span.start);
                if let Some(c) = spec.model.resolve_call(e, Kind::Tensor, args, &["x"]) {
                    let pool = c.name_arg("pool").unwrap_or_default().to_string();
                    let modules = spec
                        .model
                        .pools
                        .get(&pool)
                        .map(|p| p.size as usize)
                        .unwrap_or(0);
                    out.push(RouteSite {
                        pool,
                        modules,
                        skip: c.bool("skip").unwrap_or(true),
                    });
                }
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                find(spec, args, lhs, out, seen);
                find(spec, args, rhs, out, seen);
            }
            ExprKind::Neg(i) => find(spec, args, i, out, seen),
            _ => {}
        }
    }
    walk(spec, &plan.args, &block.body, &mut out, &mut Vec::new());
    out
}

/// `choice` i32 `[iterations, 1, T, K]`: chosen module per slot (−1 = SKIP), and `weight` f32
/// of the same shape: the router's probability of that choice.
fn routing_trace(
    hooks: &BTreeMap<String, Tensor>,
    layer: usize,
    r: usize,
    site: &RouteSite,
    step: u64,
    tokens: &Tensor,
    text: &serde_json::Value,
) -> Option<Trace> {
    let mut iters = Vec::new();
    for j in 0.. {
        let key = |s: &str| {
            hooks
                .get(&format!("layers.{layer}.iter{j}.route{r}.{s}"))
                .or_else(|| {
                    if j == 0 {
                        hooks.get(&format!("layers.{layer}.route{r}.{s}"))
                    } else {
                        None
                    }
                })
        };
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
    attrs.insert("layer".into(), (layer as u64).into());
    attrs.insert("pool".into(), site.pool.clone().into());
    attrs.insert("modules".into(), (site.modules as u64).into());
    attrs.insert("token_text".into(), text.clone());
    let ax = axes(&["iteration", "batch", "token", "slot"]);
    Some(Trace {
        name: format!("layers.{layer}.route{r}"),
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
