//! Fusion: decides which values get a buffer (and so a kernel) and which are inlined into
//! their consumers as WGSL functions of a flat index.
//!
//! Every "index-map" op — elementwise math, compares, `where`, casts, broadcasts, reshapes,
//! permutes, slices, concats, gathers, one-hots, rope, iota — computes one output element from
//! O(1) input elements, so it can be evaluated inside its consumer at whatever index the
//! consumer asks for. Chains of them collapse into one kernel. Lane ops (reductions, scans,
//! softmax, cross-entropy, scatter-add) also read their input through such a function, so an
//! elementwise prologue fuses into the reduction that follows it. Matmul and attention read
//! plain buffers (their inner loops would recompute a fused producer many times), with two
//! exceptions that save a kernel each: a cheap matmul A operand (a norm's scale, a permute)
//! is inlined as a prologue, and a matmul whose only consumer is an elementwise chain over
//! the same shape (bias, residual add, activation, gating) runs that chain as its epilogue
//! ([`Storage::Epilogue`]).
//!
//! A value is materialised when it is a requested root, when it is not an index map, when a
//! buffer-reading op consumes it, or when inlining it would recompute too much (it is shared
//! and not cheap, or its inlined tree is large). Reshapes of a materialised value are views:
//! no kernel, same buffer.

use super::CodegenOptions;
use crate::ir::{numel, DType, Graph, Op, ValueId};

/// How a needed value is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Not needed by any requested root: never computed.
    Unneeded,
    /// An input, parameter or tensor constant: a buffer the runtime uploads.
    External,
    /// Evaluated inside its consumers' kernels.
    Inline,
    /// Same buffer as the value given (a reshape or stop-gradient of a stored value).
    View(ValueId),
    /// Computed by its own kernel into a planned buffer.
    Kernel,
    /// A matmul computed inside the kernel of the value given: its elementwise consumer chain
    /// (bias, residual add, activation, gating) runs as the matmul's epilogue on the
    /// accumulator, so the product itself never gets a buffer. Several matmuls with the same
    /// output shape and inner dimension may share one host (SwiGLU's `silu(gate) · up`):
    /// they are accumulated side by side in the host's kernel.
    Epilogue(ValueId),
}

/// How an op reads its inputs, which decides what may fuse into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Inputs, params and tensor constants.
    External,
    /// One output element from O(1) input elements: inlinable.
    IndexMap,
    /// One invocation per lane (reduction, scan, softmax, ...); reads inputs through
    /// functions, so index-map producers fuse into it.
    Lane,
    /// Reads whole input buffers in inner loops (matmul, attention).
    Buffer,
}

/// The class of a node's op.
pub fn op_class(g: &Graph, v: ValueId) -> OpClass {
    let node = g.node(v);
    match &node.op {
        Op::Input { .. } | Op::Param { .. } => OpClass::External,
        Op::Const { .. } if numel(&node.shape) > 1 => OpClass::External,
        Op::Const { .. }
        | Op::Iota { .. }
        | Op::Unary(_)
        | Op::UnaryGrad(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Where
        | Op::Cast { .. }
        | Op::PowConst { .. }
        | Op::Clamp { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::BroadcastTo { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Gather
        | Op::OneHot { .. }
        | Op::StopGradient
        | Op::StraightThrough
        | Op::Rope { .. } => OpClass::IndexMap,
        Op::Reduce { .. }
        | Op::LogSumExp { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::ArgMax { .. }
        | Op::TopKMask { .. }
        | Op::CrossEntropy
        | Op::ScatterAdd { .. } => OpClass::Lane,
        Op::MatMul { .. }
        | Op::Attention(_)
        | Op::AttentionPattern(_)
        | Op::AttentionBackward(_)
        | Op::AttentionRuleGrad(_) => OpClass::Buffer,
    }
}

/// A shared value is inlined into each consumer only if it is at most this expensive
/// (in ops per element); beyond it, recomputation costs more than a buffer round trip.
const SHARED_INLINE_COST: u32 = 3;
/// No inlined expression tree grows beyond this many ops per element.
const MAX_INLINE_COST: u32 = 48;
/// A matmul's A operand is inlined (a prologue, e.g. a norm's scale-and-shift) up to this
/// cost even when several matmuls read it: each reads every element N/4 times anyway, and
/// a few extra ops per load cost less than a kernel launch and a buffer round trip. The
/// same holds for attention's queries (rotated and split into heads), read once per row.
const PROLOGUE_COST: u32 = 12;

/// Ops whose output element `i` reads each same-shaped input at element `i` only: a matmul
/// accumulator can flow through them into an epilogue (f32 in, f32 out).
fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::UnaryGrad(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Where
            | Op::PowConst { .. }
            | Op::Clamp { .. }
    )
}

/// The result of fusion: a storage decision per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusionPlan {
    pub storage: Vec<Storage>,
}

impl FusionPlan {
    /// The value whose buffer holds `v` (itself unless `v` is a view).
    pub fn owner(&self, v: ValueId) -> ValueId {
        match self.storage[v.index()] {
            Storage::View(o) => o,
            _ => v,
        }
    }

    /// Whether `v` lives in a buffer (its own, a view's owner's, or an external one).
    pub fn is_stored(&self, v: ValueId) -> bool {
        matches!(
            self.storage[v.index()],
            Storage::External | Storage::Kernel | Storage::View(_)
        )
    }

    /// The matmuls whose epilogue computes `host` (empty if it hosts none).
    pub fn epilogue_of(&self, host: ValueId) -> Vec<ValueId> {
        self.storage
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Storage::Epilogue(host))
            .map(|(i, _)| ValueId(i as u32))
            .collect()
    }

    /// Values computed by a kernel, in launch (topological) order.
    pub fn kernel_roots(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.storage
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Storage::Kernel)
            .map(|(i, _)| ValueId(i as u32))
    }
}

/// The inner (contracted) dimension of matmul `m`.
pub(super) fn matmul_k(g: &Graph, m: ValueId) -> usize {
    let node = g.node(m);
    let a = g.shape(node.inputs[0]);
    match node.op {
        Op::MatMul {
            transpose_a: true, ..
        } => a[a.len() - 2],
        _ => a[a.len() - 1],
    }
}

/// Values that select weight matrices by id without arithmetic: a gather (by module id)
/// over reshapes, concats, slices, permutes and broadcasts of inputs or parameters — the
/// stacked, per-token weights of a sparsely routed pool (`lower::route_sparse`). A matmul
/// reads them in place as its B operand (a grouped matmul) instead of storing them.
fn selected_weights(g: &Graph) -> Vec<bool> {
    let n = g.len();
    let mut movement = vec![false; n];
    let mut gathers = vec![false; n];
    for i in 0..n {
        let node = &g.nodes[i];
        let data: &[ValueId] = match node.op {
            Op::Gather => &node.inputs[..1],
            _ => &node.inputs,
        };
        movement[i] = match node.op {
            Op::Input { .. } | Op::Param { .. } | Op::Const { .. } => true,
            Op::Gather
            | Op::Reshape { .. }
            | Op::Concat { .. }
            | Op::Slice { .. }
            | Op::Permute { .. }
            | Op::BroadcastTo { .. } => data.iter().all(|u| movement[u.index()]),
            _ => false,
        };
        gathers[i] = movement[i]
            && (matches!(node.op, Op::Gather) || data.iter().any(|u| gathers[u.index()]));
    }
    gathers
}

/// Reads of an input per output element when inlined (rope reads its `x` twice).
fn reads(op: &Op, input: usize) -> u32 {
    match op {
        Op::Rope { .. } if input == 0 => 2,
        _ => 1,
    }
}

/// Decides storage for every node needed by `roots`. With `fuse = false` every computed
/// value gets its own kernel (the baseline fused programs are compared against); `forced`
/// lists extra values to materialise (used to split kernels that bind too many buffers).
pub fn plan_fusion(
    g: &Graph,
    roots: &[ValueId],
    opts: &CodegenOptions,
    forced: &[ValueId],
) -> FusionPlan {
    let fuse = opts.fuse;
    let n = g.len();
    let mut needed = vec![false; n];
    for &r in roots {
        needed[r.index()] = true;
    }
    for i in (0..n).rev() {
        if needed[i] {
            for &u in &g.nodes[i].inputs {
                needed[u.index()] = true;
            }
        }
    }
    // Consumers among needed nodes (the last one seen, which is the only one when there is
    // one), whether a buffer-reading op reads a value whole, and how many matmuls (as A) or
    // attentions (as queries) read it through a function, so it may be a prologue.
    let mut consumers = vec![0u32; n];
    let mut last_consumer = vec![0usize; n];
    let mut buffer_read = vec![false; n];
    let mut a_reads = vec![0u32; n];
    let mut scatter_source = vec![false; n];
    let selected = selected_weights(g);
    for i in (0..n).filter(|&i| needed[i]) {
        let class = op_class(g, ValueId(i as u32));
        let ins = &g.nodes[i].inputs;
        let mut seen: Vec<ValueId> = Vec::new();
        for (pos, &u) in ins.iter().enumerate() {
            if !seen.contains(&u) {
                seen.push(u);
                consumers[u.index()] += 1;
                last_consumer[u.index()] = i;
            }
            // Read through a function, so it may be a prologue: a matmul's A operand (unless
            // it is B too), a B operand that selects weights by id, and attention's queries
            // (read once per row).
            let as_a = match g.nodes[i].op {
                Op::MatMul { .. } if ins[0] == ins[1] => false,
                Op::MatMul { .. } => (pos == 0 && opts.matmul_prologues) || selected[u.index()],
                Op::Attention(_) => pos == 0 && !ins[1..].contains(&u),
                _ => false,
            };
            if as_a {
                a_reads[u.index()] += 1;
            } else if class == OpClass::Buffer {
                buffer_read[u.index()] = true;
            }
            // Scatter-add evaluates its source once per (output element, matching id), and
            // adapters may evaluate it for every id (lavapipe measured so): a source is
            // stored unless it is many times the output (a routed pool's per-token weight
            // gradients, which must never be stored).
            if matches!(g.nodes[i].op, Op::ScatterAdd { .. }) && pos == 0 {
                scatter_source[u.index()] = numel(g.shape(u)) <= 4 * numel(&g.nodes[i].shape);
            }
        }
    }
    let mut forced_set = vec![false; n];
    for &r in roots.iter().chain(forced) {
        forced_set[r.index()] = true;
    }
    let mut storage = vec![Storage::Unneeded; n];
    // Ops per element of each inline value (1 for a load of a stored value).
    let mut cost = vec![1u32; n];
    // The matmuls whose accumulators an inline value's tree carries towards an epilogue.
    let mut carries: Vec<Vec<ValueId>> = vec![Vec::new(); n];
    for i in (0..n).filter(|&i| needed[i]) {
        let v = ValueId(i as u32);
        let node = &g.nodes[i];
        let class = op_class(g, v);
        let stored_input = |s: &[Storage], u: ValueId| {
            matches!(
                s[u.index()],
                Storage::External | Storage::Kernel | Storage::View(_)
            )
        };
        storage[i] = match class {
            OpClass::External => Storage::External,
            _ if matches!(node.op, Op::Reshape { .. } | Op::StopGradient)
                && stored_input(&storage, node.inputs[0]) =>
            {
                let u = node.inputs[0];
                Storage::View(match storage[u.index()] {
                    Storage::View(o) => o,
                    _ => u,
                })
            }
            // A scalar constant is a literal wherever it is used.
            _ if matches!(node.op, Op::Const { .. }) && !forced_set[i] => {
                cost[i] = 0;
                Storage::Inline
            }
            OpClass::Lane | OpClass::Buffer => Storage::Kernel,
            OpClass::IndexMap => {
                let c = 1 + node
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, u)| {
                        let cu = if stored_input(&storage, *u) {
                            1
                        } else {
                            cost[u.index()]
                        };
                        cu * reads(&node.op, k)
                    })
                    .sum::<u32>();
                // Weights selected per batch entry are read in place whatever the cost:
                // stored, they would be one copy of a weight matrix per token.
                let limit = match selected[i] {
                    true => MAX_INLINE_COST,
                    false => PROLOGUE_COST,
                };
                let prologue = a_reads[i] > 0 && c <= limit;
                let must = !fuse
                    || forced_set[i]
                    || buffer_read[i]
                    || c > MAX_INLINE_COST
                    || (a_reads[i] > 0 && !prologue)
                    || (scatter_source[i] && c > 1)
                    || (consumers[i] > 1
                        && c > SHARED_INLINE_COST
                        && !(prologue && a_reads[i] == consumers[i]));
                // Matmul accumulators flowing in from same-shaped inputs: all of them when
                // they contract the same dimension (one loop accumulates them together).
                let mut carried: Vec<ValueId> = Vec::new();
                if fuse && is_elementwise(&node.op) && node.dtype == DType::F32 {
                    for &u in &node.inputs {
                        if g.shape(u) != node.shape.as_slice() {
                            continue;
                        }
                        let fresh = storage[u.index()] == Storage::Kernel
                            && matches!(g.node(u).op, Op::MatMul { .. })
                            && !forced_set[u.index()]
                            && consumers[u.index()] == 1
                            && a_reads[u.index()] == 0
                            && !buffer_read[u.index()];
                        let incoming = if fresh {
                            vec![u]
                        } else {
                            carries[u.index()].clone()
                        };
                        for m in incoming {
                            let same_k = carried
                                .first()
                                .is_none_or(|&f| matmul_k(g, f) == matmul_k(g, m));
                            if same_k && !carried.contains(&m) {
                                carried.push(m);
                            }
                        }
                    }
                }
                if carried.is_empty() {
                    if must {
                        Storage::Kernel
                    } else {
                        cost[i] = c;
                        Storage::Inline
                    }
                } else {
                    // Carry on while the only consumer is elementwise over the same shape;
                    // otherwise this value hosts the matmuls' epilogue.
                    let c_node = &g.nodes[last_consumer[i]];
                    let onward = !must
                        && consumers[i] == 1
                        && is_elementwise(&c_node.op)
                        && c_node.shape == node.shape;
                    if onward {
                        carries[i] = carried;
                        cost[i] = c;
                        Storage::Inline
                    } else {
                        for m in carried {
                            storage[m.index()] = Storage::Epilogue(v);
                        }
                        Storage::Kernel
                    }
                }
            }
        };
    }
    FusionPlan { storage }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder};

    fn unfused() -> CodegenOptions {
        CodegenOptions {
            fuse: false,
            ..CodegenOptions::default()
        }
    }

    #[test]
    fn elementwise_chain_is_one_kernel_and_feeds_the_reduction() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[4, 8], DType::F32);
        let w = b.input("w", &[8], DType::F32);
        let y = b.mul(x, w).unwrap();
        let y = b.exp(y).unwrap();
        let y = b.tanh(y).unwrap();
        let s = b.sum(y, 1, false).unwrap();
        b.output("s", s);
        let g = b.finish().unwrap();
        let plan = plan_fusion(&g, &[s], &CodegenOptions::default(), &[]);
        assert_eq!(plan.kernel_roots().collect::<Vec<_>>(), vec![s]);
        let unfused = plan_fusion(&g, &[s], &unfused(), &[]);
        assert_eq!(unfused.kernel_roots().count(), 4);
    }

    #[test]
    fn matmul_b_operands_are_materialised_a_prologues_inline_and_reshapes_are_views() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 3, 4], DType::F32);
        let w = b.input("w", &[4, 5], DType::F32);
        let r = b.reshape(x, &[6, 4]).unwrap();
        let e = b.exp(r).unwrap();
        let wt = b.tanh(w).unwrap();
        let m = b.matmul(e, wt).unwrap();
        let o = b.reshape(m, &[2, 3, 5]).unwrap();
        b.output("o", o);
        let g = b.finish().unwrap();
        let plan = plan_fusion(&g, &[o], &CodegenOptions::default(), &[]);
        assert_eq!(plan.storage[r.index()], Storage::View(x));
        assert_eq!(plan.storage[e.index()], Storage::Inline);
        assert_eq!(plan.storage[wt.index()], Storage::Kernel);
        assert_eq!(plan.storage[o.index()], Storage::View(m));
    }

    #[test]
    fn elementwise_consumers_of_a_matmul_become_its_epilogue() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[6, 4], DType::F32);
        let w = b.input("w", &[4, 5], DType::F32);
        let bias = b.input("bias", &[5], DType::F32);
        let res = b.input("res", &[6, 5], DType::F32);
        let m = b.matmul(x, w).unwrap();
        let h = b.add(m, bias).unwrap();
        let h = b.silu(h).unwrap();
        let y = b.add(res, h).unwrap();
        let s = b.sum(y, 1, false).unwrap();
        b.output("s", s);
        let g = b.finish().unwrap();
        let plan = plan_fusion(&g, &[s], &CodegenOptions::default(), &[]);
        // The chain ends where a reduction reads it: that value hosts the matmul.
        assert_eq!(plan.storage[m.index()], Storage::Epilogue(y));
        assert_eq!(plan.storage[h.index()], Storage::Inline);
        assert_eq!(plan.epilogue_of(y), vec![m]);
        assert_eq!(plan.kernel_roots().collect::<Vec<_>>(), vec![y, s]);
        // A matmul that is itself requested keeps its own buffer.
        let plan = plan_fusion(&g, &[s, m], &CodegenOptions::default(), &[]);
        assert_eq!(plan.storage[m.index()], Storage::Kernel);
    }

    #[test]
    fn gate_and_up_products_share_one_epilogue_host() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[6, 4], DType::F32);
        let wg = b.input("wg", &[4, 5], DType::F32);
        let wu = b.input("wu", &[4, 5], DType::F32);
        let w3 = b.input("w3", &[3, 5], DType::F32);
        let gate = b.matmul(x, wg).unwrap();
        let up = b.matmul(x, wu).unwrap();
        let act = b.silu(gate).unwrap();
        let h = b.mul(act, up).unwrap();
        let s = b.sum(h, 1, false).unwrap();
        // A product contracting another dimension cannot share the loop.
        let y = b.input("y", &[6, 3], DType::F32);
        let other = b.matmul(y, w3).unwrap();
        let h2 = b.mul(h, other).unwrap();
        b.output("s", s);
        b.output("h2", h2);
        let g = b.finish().unwrap();
        let plan = plan_fusion(&g, &[s, h2], &CodegenOptions::default(), &[]);
        assert_eq!(plan.epilogue_of(h), vec![gate, up]);
        assert_eq!(plan.storage[act.index()], Storage::Inline);
        assert_eq!(plan.epilogue_of(h2), vec![other]);
    }

    #[test]
    fn scatter_sources_are_stored_unless_huge_and_prologues_can_be_turned_off() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[6, 4], DType::F32);
        let y = b.input("y", &[6, 4], DType::F32);
        let ids = b.input("ids", &[6], DType::I32);
        let cheap = b.mul(x, y).unwrap();
        let e = b.exp(cheap).unwrap();
        let t = b.tanh(e).unwrap();
        let costly = b.sigmoid(t).unwrap();
        let s1 = b.scatter_add(cheap, ids, 3).unwrap();
        let s2 = b.scatter_add(costly, ids, 3).unwrap();
        // Per-id outer products [6, 4, 4] scattered into 1 row: 24 times the output.
        let xc = b.reshape(x, &[6, 4, 1]).unwrap();
        let yr = b.reshape(y, &[6, 1, 4]).unwrap();
        let outer = b.mul(xc, yr).unwrap();
        let one = b.input("one", &[6], DType::I32);
        let s3 = b.scatter_add(outer, one, 1).unwrap();
        let w = b.input("w", &[4, 5], DType::F32);
        let a = b.exp(x).unwrap();
        let m = b.matmul(a, w).unwrap();
        for (n, o) in [("s1", s1), ("s2", s2), ("s3", s3), ("m", m)] {
            b.output(n, o);
        }
        let g = b.finish().unwrap();
        let plan = plan_fusion(&g, &[s1, s2, s3, m], &CodegenOptions::default(), &[]);
        // Sources the size of a few outputs are stored; one many times the output is not.
        assert_eq!(plan.storage[cheap.index()], Storage::Kernel);
        assert_eq!(plan.storage[costly.index()], Storage::Kernel);
        assert_eq!(plan.storage[outer.index()], Storage::Inline);
        assert_eq!(plan.storage[a.index()], Storage::Inline);
        let no_prologues = CodegenOptions {
            matmul_prologues: false,
            ..CodegenOptions::default()
        };
        let plan = plan_fusion(&g, &[s1, s2, s3, m], &no_prologues, &[]);
        assert_eq!(plan.storage[a.index()], Storage::Kernel);
    }
}
