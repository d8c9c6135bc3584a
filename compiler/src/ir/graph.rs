use super::op::Op;
use super::types::{DType, Shape, ValueId};
use crate::IrError;
use serde::{Deserialize, Serialize};
use weft_dsl::Span;

/// How a parameter is initialised before training (the runtime draws it with a seeded RNG).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    Zeros,
    Ones,
    /// Every entry equals `value` (gains, fixed tables).
    Constant {
        value: f32,
    },
    /// `N(0, std²)`.
    Normal {
        std: f32,
    },
    /// `U[low, high)`.
    Uniform {
        low: f32,
        high: f32,
    },
    /// These values, row-major (an attention rule's per-head parameters, e.g. ALiBi slopes).
    Values {
        values: Vec<f32>,
    },
}

/// A named parameter of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Dotted name, e.g. `layers.0.attn.wq`; unique within a graph.
    pub name: String,
    pub shape: Shape,
    /// Frozen parameters (`false`) get no gradient and no backward work.
    pub trainable: bool,
    pub init: Init,
}

/// A named runtime input (tokens, targets, segment ids, masks...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    pub name: String,
    pub shape: Shape,
    pub dtype: DType,
}

/// One node of the arena: an op applied to earlier values, with its static type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub shape: Shape,
    pub dtype: DType,
}

/// A graph of typed tensor ops.
///
/// Invariants (checked by [`verify`](super::verify)): every node's inputs are earlier nodes
/// (so arena order is a topological schedule); `spans` and `labels` are parallel to `nodes`;
/// every shape equals what the op's shape rule infers; leaves agree with the tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Spec text each node came from (parallel to `nodes`), for diagnostics.
    pub spans: Vec<Option<Span>>,
    /// Human label of each node (parallel to `nodes`), e.g. `layers.0.attn.q`; printed as a
    /// comment in the text form.
    pub labels: Vec<Option<String>>,
    pub params: Vec<ParamInfo>,
    pub inputs: Vec<InputInfo>,
    /// Named results (`logits`, `loss`, `grad.embed.weight`, ...).
    pub outputs: Vec<(String, ValueId)>,
    /// Named hook points that a run may capture (`layers.0.attn.pattern`, ...).
    pub hooks: Vec<(String, ValueId)>,
}

impl Graph {
    /// The node behind a handle.
    pub fn node(&self, v: ValueId) -> &Node {
        &self.nodes[v.index()]
    }

    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.nodes[v.index()].shape
    }

    /// Element type of a value.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.nodes[v.index()].dtype
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All handles in topological (arena) order.
    pub fn ids(&self) -> impl Iterator<Item = ValueId> {
        (0..self.nodes.len() as u32).map(ValueId)
    }

    /// The named output, if any.
    pub fn output(&self, name: &str) -> Option<ValueId> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }

    /// The named hook, if any.
    pub fn hook(&self, name: &str) -> Option<ValueId> {
        self.hooks.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Values that must survive a run: outputs and hooks, in that order.
    pub fn roots(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.outputs
            .iter()
            .chain(self.hooks.iter())
            .map(|&(_, v)| v)
    }

    /// For each node, the index of the last node that reads it (`None` if nothing does).
    /// Outputs and hooks are not counted; callers add them.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &inp in &n.inputs {
                last[inp.index()] = Some(i);
            }
        }
        last
    }

    /// Keeps the nodes with `keep[i]`, redirecting every use of node `i` to `redirect[i]`
    /// first (a node may be redirected only to an earlier node). Handles are renumbered
    /// densely in order; outputs and hooks follow. The caller guarantees that kept nodes
    /// only read kept (or redirected-to-kept) nodes; otherwise this returns `Invalid`.
    pub fn compact(&self, keep: &[bool], redirect: &[ValueId]) -> Result<Graph, IrError> {
        let mut new_id: Vec<Option<ValueId>> = vec![None; self.nodes.len()];
        let mut out = Graph {
            params: self.params.clone(),
            inputs: self.inputs.clone(),
            ..Graph::default()
        };
        let resolve = |new_id: &[Option<ValueId>], v: ValueId| -> Result<ValueId, IrError> {
            let mut v = v;
            // Follow redirect chains (CSE may redirect to a node that was itself redirected).
            while redirect[v.index()] != v {
                v = redirect[v.index()];
            }
            new_id[v.index()].ok_or(IrError::Invalid {
                node: v.0,
                msg: "compact: a kept value reads a dropped node".into(),
            })
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if !keep[i] || redirect[i] != ValueId(i as u32) {
                continue;
            }
            let inputs = n
                .inputs
                .iter()
                .map(|&v| resolve(&new_id, v))
                .collect::<Result<_, _>>()?;
            new_id[i] = Some(ValueId(out.nodes.len() as u32));
            out.nodes.push(Node {
                op: n.op.clone(),
                inputs,
                shape: n.shape.clone(),
                dtype: n.dtype,
            });
            out.spans.push(self.spans[i]);
            out.labels.push(self.labels[i].clone());
        }
        for (name, v) in &self.outputs {
            out.outputs.push((name.clone(), resolve(&new_id, *v)?));
        }
        for (name, v) in &self.hooks {
            out.hooks.push((name.clone(), resolve(&new_id, *v)?));
        }
        Ok(out)
    }
}
