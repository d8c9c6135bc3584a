//! Elementwise groups: the fast path's emitter for the shared fusion plan
//! ([`weft_compiler::codegen::plan_fusion`], the plan the WGSL kernels are made from).
//!
//! Where that plan inlines an elementwise value into its consumer, the CPU runs the whole
//! chain as one pass too: the group's output is walked in chunks of whole rows, each step of
//! the chain computed for a chunk into a small per-thread scratch that stays in cache, and
//! only the chain's leaves are read from memory and only its last value written. The steps
//! are the per-op kernels of [`super::kernels`] applied to chunks, so every element gets the
//! same arithmetic as when the ops run one by one (the results are bit-identical).
//!
//! The plan is shared, the emitter's reach is smaller: a value the plan inlines is computed
//! in its readers' groups here when it is a unary, unary-gradient or binary op over f32 whose
//! readers are such ops of its shape or reductions of its rows (a value read by several is
//! computed in each, as the plan intends), and when every operand is either such a value or
//! a stored one a chunk can index (the same shape, one value per row, one row for all, or a
//! scalar). Anything else the plan inlines (permutes, gathers, rope, the prologue of a
//! softmax or of a reduction over another axis) is materialised by its own kernel.

use super::kernels;
use super::strided::{broadcast_strides, PAR_MIN};
use rayon::prelude::*;
use std::cell::RefCell;
use weft_compiler::codegen::{FusionPlan, Storage};
use weft_compiler::ir::{numel, BinaryOp, DType, Graph, Op, ReduceOp, UnaryOp, ValueId};

/// Target elements per chunk: a handful of steps' scratch stays within L1/L2.
const CHUNK: usize = 8192;

/// How a chunk of the group's rows reads a stored operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// The group's shape: the chunk's own rows.
    Full,
    /// One value per row (a norm's reciprocal scale): the chunk's rows' values.
    PerRow,
    /// One row for every row (a gain): the whole operand.
    PerCol,
    /// One value.
    Scalar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operand {
    /// An earlier step's chunk.
    Step(usize),
    /// A stored value (a node id, aliases not yet resolved).
    Leaf(usize, View),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unary(UnaryOp),
    UnaryGrad(UnaryOp),
    Binary(BinaryOp),
}

/// One op of a group; a unary op's second operand is unused.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    kind: Kind,
    ins: [Operand; 2],
}

impl Step {
    fn operands(&self) -> &[Operand] {
        match self.kind {
            Kind::Unary(_) => &self.ins[..1],
            Kind::UnaryGrad(_) | Kind::Binary(_) => &self.ins,
        }
    }
}

/// One group: its steps in evaluation order over `rows × width` (the last one is the
/// group's value, or the input of the reduction of each of its rows that the group ends in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Group {
    steps: Vec<Step>,
    rows: usize,
    width: usize,
    reduce: Option<ReduceOp>,
}

/// The CPU's reading of the shared plan: which nodes run inside a reader's group and the
/// groups their readers root.
#[derive(Debug)]
pub(super) struct Groups {
    /// Node i is computed inside its reader's group and never gets a buffer.
    pub inline: Vec<bool>,
    /// The group node i roots, when it reads at least one inlined value.
    pub roots: Vec<Option<Group>>,
}

fn kind(op: &Op) -> Option<Kind> {
    match *op {
        Op::Unary(u) => Some(Kind::Unary(u)),
        Op::UnaryGrad(u) => Some(Kind::UnaryGrad(u)),
        Op::Binary(b) => Some(Kind::Binary(b)),
        _ => None,
    }
}

/// How an operand of shape `s` is read by chunks of rows of `out`, if it can be.
fn view(out: &[usize], s: &[usize]) -> Option<View> {
    let width = *out.last()?;
    if s == out {
        return Some(View::Full);
    }
    if numel(s) == 1 {
        return Some(View::Scalar);
    }
    let t = broadcast_strides(out, s);
    let (last, lead) = t.split_last()?;
    if *last == 1 && lead.iter().all(|&x| x == 0) {
        return Some(View::PerCol);
    }
    // Row-major strides of `out` divided by the width: the operand holds one value per row.
    let mut step = 1;
    let mut per_row = *last == 0 && width > 1;
    for (k, &x) in lead.iter().enumerate().rev() {
        per_row &= x == step || out[k] == 1;
        step *= out[k];
    }
    (per_row && numel(s) * width == numel(out)).then_some(View::PerRow)
}

/// Whether node `i` could run as a group step: an elementwise f32 op whose operands are
/// f32 and readable by chunks of its rows (same-shaped operands for a unary's gradient).
fn steppable(g: &Graph, i: usize) -> bool {
    let node = &g.nodes[i];
    let Some(k) = kind(&node.op) else {
        return false;
    };
    node.dtype == DType::F32
        && !node.shape.is_empty()
        && node.inputs.iter().all(|&u| {
            g.dtype(u) == DType::F32
                && match k {
                    Kind::Binary(_) => view(&node.shape, g.shape(u)).is_some(),
                    _ => g.shape(u) == node.shape.as_slice(),
                }
        })
}

/// The reduction of node `i` when it reduces the last axis of an f32 value (a norm's mean
/// of squares, a sum of products over features): rows the group walks anyway.
fn row_reduce(g: &Graph, i: usize) -> Option<ReduceOp> {
    let node = &g.nodes[i];
    let Op::Reduce { op, axis, .. } = node.op else {
        return None;
    };
    let x = g.shape(*node.inputs.first()?);
    (node.dtype == DType::F32 && axis + 1 == x.len()).then_some(op)
}

impl Groups {
    /// Groups for `g` from the shared plan; `readers[i]` counts the reads of node i and
    /// `keep` lists values that must stay in buffers (outputs, hooks).
    pub fn new(g: &Graph, plan: &FusionPlan, readers: &[usize], keep: &[ValueId]) -> Groups {
        let n = g.len();
        let can: Vec<bool> = (0..n).map(|i| steppable(g, i)).collect();
        // Whether every read of node u could take it inline: each reader is a step of u's
        // shape or a reduction of its rows.
        let mut readable = vec![true; n];
        for (r, node) in g.nodes.iter().enumerate() {
            let ok = can[r] || row_reduce(g, r).is_some();
            for u in &node.inputs {
                readable[u.index()] &= ok
                    && (g.nodes[r].shape == g.nodes[u.index()].shape || row_reduce(g, r).is_some());
            }
        }
        // A value read more than once is computed again in each reader's group, as the WGSL
        // kernels do: the plan inlines only cheap shared values, and on the CPU too a few
        // ops per element cost less than writing the value and reading it back.
        let inline: Vec<bool> = (0..n)
            .map(|i| {
                plan.storage[i] == Storage::Inline
                    && can[i]
                    && readers[i] > 0
                    && readable[i]
                    && !keep.iter().any(|v| v.index() == i)
            })
            .collect();
        let roots = (0..n)
            .map(|i| {
                let node = &g.nodes[i];
                let reads_inline = node.inputs.iter().any(|u| inline[u.index()]);
                match row_reduce(g, i) {
                    Some(op) if reads_inline => Some(Group {
                        reduce: Some(op),
                        ..group(g, node.inputs[0].index(), &inline)
                    }),
                    _ => (can[i] && !inline[i] && reads_inline).then(|| group(g, i, &inline)),
                }
            })
            .collect();
        Groups { inline, roots }
    }

    /// The stored values group `root` reads (node ids, aliases unresolved).
    pub fn leaves(&self, root: usize) -> Vec<usize> {
        let Some(grp) = &self.roots[root] else {
            return Vec::new();
        };
        let mut out: Vec<usize> = Vec::new();
        for s in &grp.steps {
            for op in s.operands() {
                if let Operand::Leaf(u, _) = *op {
                    if !out.contains(&u) {
                        out.push(u);
                    }
                }
            }
        }
        out
    }
}

/// The steps of the group rooted at `root`: its inlined producers in post-order (each once),
/// then it.
fn group(g: &Graph, root: usize, inline: &[bool]) -> Group {
    fn visit(g: &Graph, i: usize, inline: &[bool], steps: &mut Vec<(usize, Step)>) -> usize {
        if let Some(k) = steps.iter().position(|(node, _)| *node == i) {
            return k;
        }
        let node = &g.nodes[i];
        let mut ins = [Operand::Leaf(0, View::Scalar); 2];
        for (slot, u) in ins.iter_mut().zip(&node.inputs) {
            let u = u.index();
            *slot = if inline[u] {
                Operand::Step(visit(g, u, inline, steps))
            } else {
                let v = view(&node.shape, &g.nodes[u].shape).expect("steppable operands");
                Operand::Leaf(u, v)
            };
        }
        let kind = kind(&node.op).expect("steppable nodes are elementwise");
        steps.push((i, Step { kind, ins }));
        steps.len() - 1
    }
    let mut steps = Vec::new();
    visit(g, root, inline, &mut steps);
    let shape = &g.nodes[root].shape;
    let width = *shape.last().expect("steppable nodes have a shape").max(&1);
    Group {
        steps: steps.into_iter().map(|(_, s)| s).collect(),
        rows: numel(shape) / width,
        width,
        reduce: None,
    }
}

thread_local! {
    /// Per-thread chunk scratch, one buffer per step, grown once and reused.
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

impl Group {
    /// Elements of the group's output.
    pub fn len(&self) -> usize {
        match self.reduce {
            Some(_) => self.rows,
            None => self.rows * self.width,
        }
    }

    /// Runs the group into `out`, with `leaf(node)` giving a stored operand's data.
    pub fn run<'a>(&self, leaf: impl Fn(usize) -> &'a [f32] + Sync, out: &mut [f32]) {
        let w = self.width;
        let per = (CHUNK / w).max(1);
        let out_w = if self.reduce.is_some() { 1 } else { w };
        let chunk = |(c, o): (usize, &mut [f32])| {
            // Taken out while in use: a chunk of one very long row (≥ PAR_MIN) runs parallel
            // kernels, and this thread may run another chunk while it waits for them.
            let mut s = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
            if s.len() < self.steps.len() {
                s.resize_with(self.steps.len(), Vec::new);
            }
            self.chunk(&leaf, c * per, o, &mut s);
            SCRATCH.with(|cell| *cell.borrow_mut() = s);
        };
        if self.rows * w >= PAR_MIN {
            out.par_chunks_mut(per * out_w).enumerate().for_each(chunk);
        } else {
            out.chunks_mut(per * out_w).enumerate().for_each(chunk);
        }
    }

    /// Rows `r0..` of the output into `out`, whole rows (one value each when reducing).
    fn chunk<'a>(
        &self,
        leaf: &impl Fn(usize) -> &'a [f32],
        r0: usize,
        out: &mut [f32],
        scratch: &mut [Vec<f32>],
    ) {
        let w = self.width;
        let rows = match self.reduce {
            Some(_) => out.len(),
            None => out.len() / w,
        };
        let len = rows * w;
        let shape = [rows, w];
        // Without a reduction the last step writes the output itself.
        let last = match self.reduce {
            Some(_) => usize::MAX,
            None => self.steps.len() - 1,
        };
        for (j, step) in self.steps.iter().enumerate() {
            let (done, rest) = scratch.split_at_mut(j);
            let read = |op: Operand| -> (&[f32], [usize; 2]) {
                match op {
                    Operand::Step(k) => (&done[k][..len], shape),
                    Operand::Leaf(u, v) => {
                        let x = leaf(u);
                        match v {
                            View::Full => (&x[r0 * w..r0 * w + len], shape),
                            View::PerRow => (&x[r0..r0 + rows], [rows, 1]),
                            View::PerCol => (&x[..w], [1, w]),
                            View::Scalar => (&x[..1], [1, 1]),
                        }
                    }
                }
            };
            let dst: &mut [f32] = if j == last {
                &mut *out
            } else {
                let d = &mut rest[0];
                if d.len() < len {
                    d.resize(len, 0.0);
                }
                &mut d[..len]
            };
            let (a, sa) = read(step.ins[0]);
            match step.kind {
                Kind::Unary(u) => kernels::unary(u, a, dst),
                Kind::UnaryGrad(u) => kernels::unary_grad(u, a, read(step.ins[1]).0, dst),
                Kind::Binary(b) => {
                    let (x, sb) = read(step.ins[1]);
                    kernels::binary(b, a, &sa, x, &sb, &shape, dst);
                }
            }
        }
        if let Some(op) = self.reduce {
            let x = &scratch[self.steps.len() - 1][..len];
            kernels::reduce(op, x, (rows, w, 1), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_are_read_by_rows_full_per_row_per_column_or_scalar() {
        let out = [2, 3, 4];
        assert_eq!(view(&out, &[2, 3, 4]), Some(View::Full));
        assert_eq!(view(&out, &[2, 3, 1]), Some(View::PerRow));
        assert_eq!(view(&out, &[4]), Some(View::PerCol));
        assert_eq!(view(&out, &[1, 1, 4]), Some(View::PerCol));
        assert_eq!(view(&out, &[1]), Some(View::Scalar));
        assert_eq!(view(&out, &[]), Some(View::Scalar));
        // One value per (batch) row of the first axis only, or a middle axis: not by rows.
        assert_eq!(view(&out, &[2, 1, 1]), None);
        assert_eq!(view(&out, &[3, 4]), None);
        assert_eq!(view(&out, &[2, 1, 4]), None);
    }
}
