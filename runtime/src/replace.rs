//! Hook replacement: a run may overwrite a hook point's value, whole or in a box of indices,
//! and every node downstream reads the replacement (activation patching, freezing, Batch-ICL
//! injection).
//!
//! The types here are backend-neutral. A backend resolves every [`Intervention`] against the
//! graph ([`resolve_all`]: the hook's node, its static shape, the box of indices) and then
//! either writes it with [`splice`] right after the hooked node is computed (the CPU
//! interpreter), or runs a rewritten graph in which each replaced value is split ([`split`]):
//! its readers read `where(mask, with, value)` with `mask` and `with` new inputs that
//! [`split`] fills on the host with the same [`splice`] (the wgpu backend, whose compiled
//! programs cannot stop mid-run). Both give every reader the same values.

use crate::error::RunError;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use weft_compiler::ir::{numel, DType, Graph, InputInfo, Node, Op, ValueId};

/// Which indices of one axis a region covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sel {
    /// Every index of the axis.
    All,
    /// These indices, in order. A negative index counts from the end (`-1` is the last), so
    /// the last positions of left-padded prompts are addressed the same way at any length.
    At(Vec<i64>),
}

/// One change to a run: a hook point's value is overwritten before anything reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Intervention {
    /// Replace the whole value; `with` has the hook's shape.
    Replace { name: String, with: Tensor },
    /// Replace a box: `region[a]` selects indices along axis `a` (axes past the end of
    /// `region` are [`Sel::All`]). `with` has one axis per hook axis, each either the
    /// selection's length or 1 (broadcast: a batch mean written into every row).
    ReplaceRegion {
        name: String,
        region: Vec<Sel>,
        with: Tensor,
    },
}

/// Where the sequence and head axes of a hook point are, read from its name
/// (docs/parameters.md): `[B,T,D]` values, `attn.q|k|v` `[B,H,T,d]`, `attn.result`
/// `[B,T,H,D]`, `attn.scores|pattern` `[B,H,T,T]` (the query axis counts as the sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookAxes {
    pub seq: usize,
    pub head: Option<usize>,
}

impl HookAxes {
    /// The layout of hook point `name`.
    pub fn of(name: &str) -> HookAxes {
        let last = name.rsplit('.').next().unwrap_or("");
        let parent = name.rsplit('.').nth(1).unwrap_or("");
        // `attn`, `attn2`..., and MoICE's per-base points `attn.base{e}.scores|pattern`.
        let in_attn =
            parent.starts_with("attn") || (parent.starts_with("base") && name.contains(".attn"));
        match last {
            "result" if in_attn => HookAxes {
                seq: 1,
                head: Some(2),
            },
            "q" | "k" | "v" | "scores" | "pattern" if in_attn => HookAxes {
                seq: 2,
                head: Some(1),
            },
            // MoICE's base router under `attn.router` is per head: [B,H,T,N].
            "logits" | "choice" if parent == "router" && name.contains(".attn") => HookAxes {
                seq: 2,
                head: Some(1),
            },
            _ => HookAxes { seq: 1, head: None },
        }
    }
}

/// A region resolved against a shape: the concrete indices along every axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub indices: Vec<Vec<usize>>,
}

impl Intervention {
    /// Replaces the whole value of `name`.
    pub fn replace(name: impl Into<String>, with: Tensor) -> Self {
        Intervention::Replace {
            name: name.into(),
            with,
        }
    }

    /// Replaces the sequence positions `positions` (negative: from the end) of `name`;
    /// `with` has the hook's shape with the sequence axis `positions.len()` (or 1).
    pub fn at_positions(name: impl Into<String>, positions: &[i64], with: Tensor) -> Self {
        let name = name.into();
        let axes = HookAxes::of(&name);
        let mut region = vec![Sel::All; axes.seq + 1];
        region[axes.seq] = Sel::At(positions.to_vec());
        Intervention::ReplaceRegion { name, region, with }
    }

    /// Replaces head `head`'s slice of a per-head hook (`attn.result`, `attn.q|k|v`...);
    /// `with` has the hook's shape with the head axis 1. Errors for a hook without heads.
    pub fn head(name: impl Into<String>, head: usize, with: Tensor) -> Result<Self, RunError> {
        Self::head_at_positions(name, head, None, with)
    }

    /// Replaces head `head` at sequence positions `positions` (all when `None`) of a per-head
    /// hook: path patching writes one head's `attn.result` at the query position this way.
    pub fn head_at_positions(
        name: impl Into<String>,
        head: usize,
        positions: Option<&[i64]>,
        with: Tensor,
    ) -> Result<Self, RunError> {
        let name = name.into();
        let axes = HookAxes::of(&name);
        let Some(h) = axes.head else {
            return Err(RunError::Replacement {
                name,
                msg: "this hook point has no head axis".into(),
            });
        };
        let mut region = vec![Sel::All; h.max(axes.seq) + 1];
        region[h] = Sel::At(vec![head as i64]);
        if let Some(p) = positions {
            region[axes.seq] = Sel::At(p.to_vec());
        }
        Ok(Intervention::ReplaceRegion { name, region, with })
    }

    /// The hook point this replaces.
    pub fn name(&self) -> &str {
        match self {
            Intervention::Replace { name, .. } | Intervention::ReplaceRegion { name, .. } => name,
        }
    }

    /// The replacement values.
    pub fn with(&self) -> &Tensor {
        match self {
            Intervention::Replace { with, .. } | Intervention::ReplaceRegion { with, .. } => with,
        }
    }

    /// Concrete indices for a hook of `shape`, after checking that they are in range and that
    /// `with` fits the box (each axis the selection's length or 1) and holds floats.
    pub fn resolve(&self, shape: &[usize]) -> Result<Region, RunError> {
        let err = |msg: String| RunError::Replacement {
            name: self.name().to_string(),
            msg,
        };
        let with = self.with();
        if with.as_i32().is_some() {
            return Err(err("replacement values must be floats, got i32".into()));
        }
        let sels: &[Sel] = match self {
            Intervention::Replace { .. } => &[],
            Intervention::ReplaceRegion { region, .. } => region,
        };
        if sels.len() > shape.len() {
            return Err(err(format!(
                "region has {} axes, the hook point has shape {shape:?}",
                sels.len()
            )));
        }
        let mut indices = Vec::with_capacity(shape.len());
        for (a, &n) in shape.iter().enumerate() {
            let idx = match sels.get(a).unwrap_or(&Sel::All) {
                Sel::All => (0..n).collect(),
                Sel::At(list) => list
                    .iter()
                    .map(|&i| {
                        let j = if i < 0 { n as i64 + i } else { i };
                        if (0..n as i64).contains(&j) {
                            Ok(j as usize)
                        } else {
                            Err(err(format!(
                                "index {i} on axis {a} is outside 0..{n} (shape {shape:?})"
                            )))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            indices.push(idx);
        }
        let want: Vec<usize> = indices.iter().map(Vec::len).collect();
        let fits = with.shape.len() == shape.len()
            && with
                .shape
                .iter()
                .zip(&want)
                .all(|(&w, &k)| w == k || w == 1);
        if !fits {
            return Err(err(format!("replacement has shape {:?}, the region needs {want:?} (or 1 on an axis to broadcast)", with.shape)));
        }
        Ok(Region { indices })
    }
}

/// Writes `with` (shape `with_shape`, size-1 axes broadcast) into `value` (row-major, shape
/// `shape`) at the indices of `region`. The region must come from [`Intervention::resolve`].
pub fn splice<T: Copy>(
    value: &mut [T],
    shape: &[usize],
    region: &Region,
    with: &[T],
    with_shape: &[usize],
) {
    let rank = shape.len();
    if region.indices.iter().any(Vec::is_empty) {
        return;
    }
    let strides = row_major_strides(shape);
    let wstrides = row_major_strides(with_shape);
    // An odometer over the box: counter[a] indexes region.indices[a].
    let mut counter = vec![0usize; rank];
    loop {
        let mut dst = 0;
        let mut src = 0;
        for a in 0..rank {
            dst += region.indices[a][counter[a]] * strides[a];
            if with_shape[a] != 1 {
                src += counter[a] * wstrides[a];
            }
        }
        value[dst] = with[src];
        let mut a = rank;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            counter[a] += 1;
            if counter[a] < region.indices[a].len() {
                break;
            }
            counter[a] = 0;
        }
    }
}

/// One intervention resolved against a graph: the node it overwrites and the box it covers.
#[derive(Clone, Debug)]
pub struct Resolved<'a> {
    /// The hooked node (shared by every hook name that names the same value).
    pub value: ValueId,
    /// Concrete indices within the node's shape.
    pub region: Region,
    /// The intervention itself (name and values).
    pub intervention: &'a Intervention,
}

/// Resolves every intervention of a run against `g`, in the order given, so that errors
/// (unknown hook, a non-f32 hook point, indices out of range, a replacement that does not fit)
/// surface before any work is done. Every backend checks replacements through this.
pub fn resolve_all<'a>(
    g: &Graph,
    replace: &'a [Intervention],
) -> Result<Vec<Resolved<'a>>, RunError> {
    replace
        .iter()
        .map(|r| {
            let v = g.hook(r.name()).ok_or_else(|| RunError::UnknownHook {
                name: r.name().into(),
            })?;
            if g.dtype(v) != DType::F32 {
                return Err(RunError::Replacement {
                    name: r.name().into(),
                    msg: format!(
                        "the hook point holds {}, only f32 values can be replaced",
                        g.dtype(v)
                    ),
                });
            }
            Ok(Resolved {
                value: v,
                region: r.resolve(g.shape(v))?,
                intervention: r,
            })
        })
        .collect()
}

/// A graph in which replaced hook points read new inputs ([`split`]), and those inputs'
/// values for one run.
#[derive(Clone, Debug)]
pub struct Split {
    /// The rewritten graph: it declares every input of the original plus the new ones.
    pub graph: Graph,
    /// Values of the new inputs, by name.
    pub inputs: Vec<(String, Tensor)>,
}

/// Rewrites `g` so that each value replaced by `replace` is a split point: the hooked node is
/// still computed (every hook name still names it, so a captured replaced hook reports the
/// value computed before the replacement), and right after it come new f32 inputs of its
/// shape — `replace.N.with`, holding every replacement of the value spliced in order into
/// zeros, and `replace.N.mask`, 1 wherever one was written — and `where(mask, with, value)`,
/// which every later reader and every output reads instead. Where the last intervention on a
/// value replaces it whole, readers read `replace.N.with` directly (no mask). `where` selects,
/// so replacing a value by itself reproduces it bit for bit.
///
/// The rewritten graph depends only on which values are replaced and whether whole, not on
/// regions or values, so a backend that compiles per graph compiles a sweep of patches once.
pub fn split(g: &Graph, replace: &[Intervention]) -> Result<Split, RunError> {
    let mut groups: BTreeMap<usize, Vec<Resolved>> = BTreeMap::new();
    for r in resolve_all(g, replace)? {
        groups.entry(r.value.index()).or_default().push(r);
    }
    let mut out = Graph {
        params: g.params.clone(),
        inputs: g.inputs.clone(),
        ..Graph::default()
    };
    let mut feeds = Vec::new();
    // `computed[i]`: node i in the new graph; `read[i]`: what its readers read there.
    let mut computed = Vec::with_capacity(g.len());
    let mut read = Vec::with_capacity(g.len());
    let push = |out: &mut Graph, node: Node, i: usize, label: Option<String>| {
        out.nodes.push(node);
        out.spans.push(g.spans[i]);
        out.labels.push(label);
        ValueId(out.nodes.len() as u32 - 1)
    };
    for (i, n) in g.nodes.iter().enumerate() {
        let node = Node {
            inputs: n.inputs.iter().map(|v| read[v.index()]).collect(),
            ..n.clone()
        };
        let id = push(&mut out, node, i, g.labels[i].clone());
        computed.push(id);
        read.push(id);
        let Some(list) = groups.get(&i) else {
            continue;
        };
        let shape = n.shape.clone();
        let hook = list[0].intervention.name();
        let mut with = vec![0.0f32; numel(&shape)];
        let mut mask = vec![0.0f32; numel(&shape)];
        for r in list {
            let w = r.intervention.with();
            splice(&mut with, &shape, &r.region, &w.to_f32_vec(), &w.shape);
            splice(&mut mask, &shape, &r.region, &[1.0], &vec![1; shape.len()]);
        }
        let whole = matches!(
            list.last().map(|r| r.intervention),
            Some(Intervention::Replace { .. })
        );
        let mut input = |out: &mut Graph, part: &str, data: Vec<f32>| {
            let name = format!("replace.{i}.{part}");
            if g.inputs.iter().any(|x| x.name == name) {
                return Err(RunError::Replacement {
                    name: hook.into(),
                    msg: format!("the graph already has an input `{name}`"),
                });
            }
            out.inputs.push(InputInfo {
                name: name.clone(),
                shape: shape.clone(),
                dtype: DType::F32,
            });
            feeds.push((name.clone(), Tensor::f32(&shape, data)));
            let node = Node {
                op: Op::Input { name },
                inputs: Vec::new(),
                shape: shape.clone(),
                dtype: DType::F32,
            };
            Ok(push(out, node, i, Some(format!("{hook} ({part})"))))
        };
        let with_id = input(&mut out, "with", with)?;
        read[i] = if whole {
            with_id
        } else {
            let mask_id = input(&mut out, "mask", mask)?;
            let node = Node {
                op: Op::Where,
                inputs: vec![mask_id, with_id, id],
                shape: shape.clone(),
                dtype: DType::F32,
            };
            push(&mut out, node, i, Some(format!("{hook} (replaced)")))
        };
    }
    out.outputs = g
        .outputs
        .iter()
        .map(|(name, v)| (name.clone(), read[v.index()]))
        .collect();
    out.hooks = g
        .hooks
        .iter()
        .map(|(name, v)| (name.clone(), computed[v.index()]))
        .collect();
    Ok(Split {
        graph: out,
        inputs: feeds,
    })
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_from_the_end_and_broadcast_rows() {
        // [B=2, T=3, D=2]; write one [1,1,2] row at the last position of every batch row.
        let mut v: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let iv = Intervention::at_positions(
            "layers.0.resid_mid",
            &[-1],
            Tensor::f32(&[1, 1, 2], vec![-1.0, -2.0]),
        );
        let r = iv.resolve(&[2, 3, 2]).unwrap();
        splice(&mut v, &[2, 3, 2], &r, &[-1.0, -2.0], &[1, 1, 2]);
        assert_eq!(v, [0., 1., 2., 3., -1., -2., 6., 7., 8., 9., -1., -2.]);
    }

    #[test]
    fn head_slices_follow_the_hook_layout() {
        assert_eq!(
            HookAxes::of("layers.3.attn.result"),
            HookAxes {
                seq: 1,
                head: Some(2)
            }
        );
        assert_eq!(
            HookAxes::of("layers.3.attn2.q"),
            HookAxes {
                seq: 2,
                head: Some(1)
            }
        );
        assert_eq!(
            HookAxes::of("layers.3.resid_mid"),
            HookAxes { seq: 1, head: None }
        );
        let base = HookAxes::of("layers.1.attn.base2.pattern");
        assert_eq!((base.seq, base.head), (2, Some(1)));
        assert!(Intervention::head("layers.0.resid_mid", 0, Tensor::zeros(&[1])).is_err());
        let iv = Intervention::head_at_positions(
            "layers.0.attn.result",
            1,
            Some(&[0]),
            Tensor::zeros(&[2, 1, 1, 4]),
        )
        .unwrap();
        let r = iv.resolve(&[2, 5, 3, 4]).unwrap();
        assert_eq!(r.indices[1], [0]);
        assert_eq!(r.indices[2], [1]);
        let bad = Intervention::at_positions("layers.0.resid_mid", &[7], Tensor::zeros(&[1, 1, 4]));
        let e = bad.resolve(&[1, 5, 4]).unwrap_err().to_string();
        assert!(
            e.contains("layers.0.resid_mid") && e.contains("index 7"),
            "{e}"
        );
    }
}
