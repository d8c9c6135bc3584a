//! Which parameters a gradient is taken for, and which nodes need backward work.

use super::vjp::differentiable_inputs;
use crate::ir::{DType, Graph, Op, ValueId};

/// Selects parameters by name. Only trainable parameters are ever selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSelection {
    /// Every trainable parameter.
    All,
    /// Names matching a glob where `*` matches any run of characters (`layers.*.attn.*`);
    /// a pattern without `*` is an exact name.
    Glob(String),
}

impl ParamSelection {
    /// Whether a parameter name is selected.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            ParamSelection::All => true,
            ParamSelection::Glob(p) => glob_match(p.as_bytes(), name.as_bytes()),
        }
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Indices of the trainable parameters matched by any selection, in table order.
pub(super) fn selected_params(g: &Graph, wrt: &[ParamSelection]) -> Vec<usize> {
    (0..g.params.len())
        .filter(|&i| g.params[i].trainable && wrt.iter().any(|s| s.matches(&g.params[i].name)))
        .collect()
}

/// Nodes whose value depends differentiably on a selected parameter.
pub(super) fn active_nodes(g: &Graph, params: &[usize]) -> Vec<bool> {
    let mut active = vec![false; g.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        active[i] = match n.op {
            Op::Param { index } => params.contains(&index),
            _ => {
                n.dtype == DType::F32
                    && n.inputs
                        .iter()
                        .zip(differentiable_inputs(&n.op, n.inputs.len()))
                        .any(|(v, d)| d && active[v.index()])
            }
        };
    }
    active
}

/// Nodes the loss reads, directly or not (including the loss).
pub(super) fn needed_nodes(g: &Graph, loss: ValueId) -> Vec<bool> {
    let mut needed = vec![false; g.len()];
    needed[loss.index()] = true;
    for i in (0..=loss.index()).rev() {
        if needed[i] {
            for v in &g.nodes[i].inputs {
                needed[v.index()] = true;
            }
        }
    }
    needed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_dotted_names() {
        let s = ParamSelection::Glob("layers.*.attn.*".into());
        assert!(s.matches("layers.0.attn.wq"));
        assert!(s.matches("layers.12.attn.gate.w1"));
        assert!(!s.matches("layers.0.mlp.w1"));
        assert!(ParamSelection::Glob("embed".into()).matches("embed"));
        assert!(!ParamSelection::Glob("embed".into()).matches("embed.weight"));
        assert!(ParamSelection::Glob("*gate*".into()).matches("layers.3.self_attn.gate.w2"));
    }
}
