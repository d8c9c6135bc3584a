//! The spec's structure for the Model panel: layers, their components, pools and routers,
//! hook points and parameter counts — from `weft_dsl::check_source` and the lowered graph,
//! so names and counts are exactly those of `weft params` and `weft eval --capture`.

use std::collections::{BTreeMap, BTreeSet};
use weft_compiler::lower::{lower_with_manifest, LowerOptions};
use weft_dsl::check::value::Value;
use weft_dsl::typed::Resolved;
use weft_dsl::Checked;

/// What a component of a layer is (picks its colour and shape in the graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    Embedding,
    Norm,
    Attention,
    Mlp,
    Router,
    Other,
}

/// A named part of a layer (`attn`, `mlp`, `norm1`, `route0`) and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    pub params: usize,
    /// For a router: the pool it routes into.
    pub pool: Option<String>,
    /// A one-line description (router kind, source text of the call).
    pub detail: String,
}

/// One layer of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSummary {
    pub index: usize,
    pub block: String,
    /// The layer rule's arguments, e.g. `rule: signed`.
    pub args: String,
    pub components: Vec<Component>,
    /// Hook points relative to `layers.{i}.`, iterations folded to `iter*`.
    pub hooks: Vec<String>,
    /// Parameters of this layer, pool modules included.
    pub params: usize,
    /// `repeat` iterations in the block (1 without `repeat`).
    pub iterations: usize,
}

/// A pool of modules (MoM).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSummary {
    pub name: String,
    pub size: usize,
    /// Source text of the pool's module.
    pub module: String,
    pub params: usize,
    /// (layer, route call index) of each route into this pool.
    pub used_by: Vec<(usize, usize)>,
}

/// The whole model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    /// The model's main sizes (`vocab`, `dim`, `heads`, `layers`, `ctx`).
    pub sizes: Vec<(String, i64)>,
    /// Parts before the layers (`embed`, `pos_embed`).
    pub inputs: Vec<Component>,
    pub layers: Vec<LayerSummary>,
    pub pools: Vec<PoolSummary>,
    /// Parts after the layers (`final_norm`, `unembed`).
    pub outputs: Vec<Component>,
    pub total_params: usize,
    pub trainable_params: usize,
    /// Each attention's rule by hook prefix (`layers.1.attn`, `layers.2.iter0.attn`): the
    /// spec rule's name (`rule alibi`), else its built-in weights and mask
    /// (`signed · causal`). The Attention panel names the rule of the map it shows.
    pub attention_rules: BTreeMap<String, String>,
}

impl ModelSummary {
    /// Checks and lowers `src`; on failure, the rendered diagnostics.
    pub fn from_source(src: &str, file_name: &str) -> Result<ModelSummary, String> {
        let spec = weft_dsl::check_source(src).map_err(|diags| {
            diags
                .iter()
                .map(|d| d.render(file_name, src))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        summarise(&spec, src)
    }
}

fn summarise(spec: &Checked, src: &str) -> Result<ModelSummary, String> {
    let mut opts = LowerOptions::new(1, 1);
    // Every optional hook point too, so the graph lists what `--capture` can ask for.
    opts.capture = vec!["*".into()];
    opts.trainable = spec.trainable();
    let lowered = lower_with_manifest(spec, &opts).map_err(|e| format!("lowering failed: {e}"))?;
    let (graph, manifest) = (lowered.graph, lowered.manifest);
    let model = &spec.model;
    let pools: BTreeMap<&str, usize> = model
        .pools
        .iter()
        .map(|(k, p)| (k.as_str(), p.size.max(0) as usize))
        .collect();

    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut layer_parts: Vec<Vec<Component>> = vec![Vec::new(); model.layers.len()];
    let mut layer_params = vec![0usize; model.layers.len()];
    let mut pool_params: BTreeMap<String, usize> = BTreeMap::new();
    let (mut total, mut trainable) = (0, 0);
    for p in &graph.params {
        let n: usize = p.shape.iter().product();
        total += n;
        if p.trainable {
            trainable += n;
        }
        let parts: Vec<&str> = p.name.split('.').collect();
        let (list, part, rest) = match parts.as_slice() {
            ["layers", i, part, rest @ ..] => match i.parse::<usize>() {
                Ok(i) if i < layer_parts.len() => {
                    layer_params[i] += n;
                    let is_pool_module = pools.contains_key(part)
                        && rest.first().is_some_and(|m| m.parse::<usize>().is_ok());
                    if is_pool_module {
                        *pool_params.entry(part.to_string()).or_default() += n;
                        continue;
                    }
                    (&mut layer_parts[i], *part, rest.join("."))
                }
                _ => continue,
            },
            [first, rest @ ..] if matches!(*first, "embed" | "pos_embed") => {
                (&mut inputs, *first, rest.join("."))
            }
            [first, rest @ ..] => (&mut outputs, *first, rest.join(".")),
            [] => continue,
        };
        match list.iter_mut().find(|c| c.name == part) {
            Some(c) => {
                c.params += n;
                if c.kind == ComponentKind::Router && rest.contains("state") {
                    c.detail = "gru router".into();
                }
            }
            None => list.push(Component {
                name: part.to_string(),
                kind: kind_of(part),
                params: n,
                pool: None,
                detail: if part.starts_with("route") {
                    if rest.contains("state") {
                        "gru router"
                    } else {
                        "mlp router"
                    }
                    .into()
                } else {
                    String::new()
                },
            }),
        }
    }

    let mut pool_users: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    let mut layers = Vec::new();
    for (i, plan) in model.layers.iter().enumerate() {
        let iterations = manifest.layers.get(i).map_or(1, |l| l.iterations);
        let mut components = std::mem::take(&mut layer_parts[i]);
        for site in manifest.routes_of(i) {
            let (r, pool) = (site.index, &site.pool);
            pool_users.entry(pool.clone()).or_default().push((i, r));
            let text = format!("{} router", site.router.name());
            let name = format!("route{r}");
            match components.iter_mut().find(|c| c.name == name) {
                Some(c) => {
                    c.pool = Some(pool.clone());
                    c.detail = format!("{} -> {pool}", c.detail);
                }
                None => components.push(Component {
                    name,
                    kind: ComponentKind::Router,
                    params: 0,
                    pool: Some(pool.clone()),
                    detail: text,
                }),
            }
        }
        let prefix = format!("layers.{i}.");
        let hooks: BTreeSet<String> = graph
            .hooks
            .iter()
            .filter_map(|(h, _)| h.strip_prefix(&prefix))
            .map(fold_iteration)
            .collect();
        layers.push(LayerSummary {
            index: i,
            block: plan.block.clone(),
            args: plan
                .args
                .iter()
                .map(|(k, v)| format!("{k}: {}", show_value(v)))
                .collect::<Vec<_>>()
                .join(", "),
            components,
            hooks: hooks.into_iter().collect(),
            params: layer_params[i],
            iterations,
        });
    }
    let pools = model
        .pools
        .iter()
        .map(|(name, p)| PoolSummary {
            name: name.clone(),
            size: p.size.max(0) as usize,
            module: src
                .get(p.module.span.start..p.module.span.end)
                .unwrap_or("")
                .to_string(),
            params: pool_params.get(name).copied().unwrap_or(0),
            used_by: pool_users.remove(name).unwrap_or_default(),
        })
        .collect();
    let c = &model.config;
    let sizes = [
        ("vocab", c.vocab),
        ("dim", c.dim),
        ("heads", c.heads),
        ("layers", c.layers),
        ("ctx", c.ctx),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v as i64))
    .collect();
    let attention_rules = manifest
        .attention
        .iter()
        .map(|site| {
            let rule = match &site.rule {
                Some(name) => format!("rule {name}"),
                None => format!("{} · {}", site.weights.name(), site.mask.name()),
            };
            (site.hook.clone(), rule)
        })
        .collect();
    Ok(ModelSummary {
        name: model.name.clone(),
        sizes,
        inputs,
        layers,
        pools,
        outputs,
        total_params: total,
        trainable_params: trainable,
        attention_rules,
    })
}

fn kind_of(part: &str) -> ComponentKind {
    if part.starts_with("norm") || part == "final_norm" {
        ComponentKind::Norm
    } else if part.starts_with("attn") {
        ComponentKind::Attention
    } else if part.starts_with("mlp") {
        ComponentKind::Mlp
    } else if part.starts_with("route") {
        ComponentKind::Router
    } else if part.contains("embed") {
        ComponentKind::Embedding
    } else {
        ComponentKind::Other
    }
}

/// `iter3.route0.choice` -> `iter*.route0.choice`.
fn fold_iteration(h: &str) -> String {
    h.split('.')
        .map(|s| match s.strip_prefix("iter") {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => "iter*",
            _ => s,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => format!("{s:?}"),
        Value::Name(n) => n.clone(),
        Value::List(l) => format!(
            "[{}]",
            l.iter().map(show_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Call(c) => format!("{}(...)", c.name),
        #[allow(unreachable_patterns)]
        _ => "...".into(),
    }
}
