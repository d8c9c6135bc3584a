//! The fast CPU path: the same graphs as the reference interpreter, run with a plan made once
//! per graph and buffers kept across runs.
//!
//! What makes it faster than `cpu::exec` (measured by `benchmarks/peer/run.sh`):
//! - a plan per (graph, hooks) holds liveness, and reshapes / stop-gradients alias their
//!   input's buffer instead of copying it;
//! - freed buffers go to a pool keyed by length that the next run (the next training step)
//!   takes from, so the steady state does not allocate activations;
//! - kernels write into those buffers: collapsed strided loops instead of per-element offset
//!   tables, unary and binary ops dispatched once per call, row-major reductions that
//!   vectorise, rotary tables computed once per call;
//! - projections run as one GEMM over the folded batch (a weight gradient that autodiff split
//!   into slices for GPUs is folded back into one: [`split_sum`]), and attention is blocked
//!   ([`attention`]; a spec's rule compiled into row programs, [`attention_rule`]): causal
//!   blocks skip hidden keys and the `T × T` weights never exist;
//! - elementwise chains the shared fusion plan inlines run as one pass over chunks of rows
//!   ([`fused`]), reductions of rows included;
//! - threads are used only above a work threshold, and a run executes on a rayon worker so
//!   that small parallel kernels do not wait for sleeping threads.
//!
//! Ops it has no kernel for run the reference's code, so every graph runs, and tests compare
//! the two on every example spec. Replacement runs (`run_replacing`, the interventions probes
//! make) take the same path: a replaced value gets its own buffer (never an alias, never
//! inlined into a fused chain) and is overwritten right after it is computed, as the reference
//! does. f32 only: the f64 gradient-check mode stays with the reference.

mod attention;
mod attention_rule;
mod attention_tiled;
mod exp;
mod fused;
mod kernels;
mod matmul;
mod pool;
mod rule_program;
mod simd;
mod small_gemm;
mod strided;

use super::attention::Dims;
use super::exec::{self, Patch};
use super::layout::split_axis;
use super::value::{Operand, Value};
use crate::backend::{Backend, HookSelection, Outputs, ParamStore};
use crate::error::RunError;
use crate::replace::Intervention;
use crate::tensor::{Tensor, TensorData};
use attention_rule::CompiledRule;
use pool::Pool;
use std::collections::HashMap;
use std::sync::Mutex;
use weft_compiler::codegen::{plan_fusion, CodegenOptions};
use weft_compiler::ir::{verify, Graph, Op, ValueId};

/// The fast f32 CPU backend (`--backend cpu`); [`super::CpuBackend`] is its reference.
#[derive(Debug, Default)]
pub struct FastCpuBackend {
    /// The plans of the graphs run most recently, and one buffer pool for all of them.
    cache: Mutex<Cache>,
}

/// Plans kept: a training loop runs one graph and evaluation graphs in between, while a
/// probe's sweep alternates among a few dozen (one replacement site per layer: Batch-ICL's
/// injection at each of SmolLM2's 30 layers); with one plan, every such call re-planned.
const PLANS: usize = 64;

#[derive(Debug, Default)]
struct Cache {
    /// Oldest first.
    plans: Vec<Cached>,
    pool: Pool,
}

#[derive(Debug)]
struct Cached {
    graph: Graph,
    hooks: Vec<(String, ValueId)>,
    /// The nodes replacement runs overwrite (sorted); part of the plan's key.
    patched: Vec<usize>,
    plan: Plan,
}

/// Liveness of one graph with aliases resolved.
#[derive(Debug)]
struct Plan {
    /// The node whose buffer holds node i's value (itself unless i is a reshape or a
    /// stop-gradient).
    root: Vec<usize>,
    /// Buffers (roots) that die after node i runs.
    free_after: Vec<Vec<usize>>,
    /// `Some(m)` for a sum over the slices of a split weight gradient (see [`split_sum`]):
    /// node i computes it from matmul `m`'s operands as one product, and `m` never runs.
    folds: Vec<Option<usize>>,
    /// The matmuls such sums compute instead, and the rule-gradient nodes of `rule_grads`.
    skip: Vec<bool>,
    /// `Some(j)` for the backward of a spec rule whose parameters train: node `j`, their
    /// gradient over the same operands, comes out of node i's pass (see [`rule_grad_pair`]).
    rule_grads: Vec<Option<usize>>,
    /// Node i's attention rule compiled, when it is one written in a spec that the fast
    /// path compiles.
    rules: Vec<Option<CompiledRule>>,
    /// Elementwise chains run as one pass each (the shared fusion plan's, see [`fused`]).
    groups: fused::Groups,
}

/// The `AttentionRuleGrad` node over the same operands and rule as node `i`, an
/// `AttentionBackward` of a spec rule the fast path compiles: both walk the same scores, so
/// one pass makes both.
fn rule_grad_pair(g: &Graph, i: usize, rules: &[Option<CompiledRule>]) -> Option<usize> {
    let node = &g.nodes[i];
    let Op::AttentionBackward(rule) = &node.op else {
        return None;
    };
    if rule.params == 0 || rules[i].is_none() {
        return None;
    }
    g.nodes.iter().enumerate().skip(i + 1).find_map(|(j, n)| {
        matches!(&n.op, Op::AttentionRuleGrad(r) if r == rule && n.inputs == node.inputs)
            .then_some(j)
    })
}

/// The matmul a node sums over, when the node is the sum over axis 0 of a split weight
/// gradient (autodiff's split-K: `Σ_s A_sᵀ·dY_s` over `[S, r, k]` and `[S, r, n]` slices of
/// the rows) that nothing else reads: on the CPU the unsplit `(S·r)`-row product is one GEMM
/// split across threads, faster than S small products and a sum (measured on the
/// development VM); the split is for GPUs, which need the workgroups.
fn split_sum(g: &Graph, i: usize, readers: &[usize], keep: &[ValueId]) -> Option<usize> {
    let node = &g.nodes[i];
    let Op::Reduce {
        op: weft_compiler::ir::ReduceOp::Sum,
        axis: 0,
        keepdim: false,
    } = node.op
    else {
        return None;
    };
    let m = node.inputs[0].index();
    let mm = &g.nodes[m];
    let (sa, sb) = (g.shape(*mm.inputs.first()?), g.shape(*mm.inputs.get(1)?));
    let split = matches!(
        mm.op,
        Op::MatMul {
            transpose_a: true,
            transpose_b: false
        }
    ) && sa.len() == 3
        && sb.len() == 3
        && sa[..2] == sb[..2]
        && readers[m] == 1
        && !keep.iter().any(|v| v.index() == m);
    split.then_some(m)
}

impl Plan {
    /// The plan for `g` keeping `keep` in buffers; `patched` nodes are overwritten after they
    /// are computed, so they get buffers of their own that live to the end of the run.
    fn new(g: &Graph, keep: &[ValueId], patched: &[usize]) -> Plan {
        let n = g.nodes.len();
        let keep: Vec<ValueId> = keep
            .iter()
            .copied()
            .chain(patched.iter().map(|&i| ValueId(i as u32)))
            .collect();
        let keep = keep.as_slice();
        let mut root: Vec<usize> = (0..n).collect();
        for (i, node) in g.nodes.iter().enumerate() {
            // An overwritten alias would also change the value it aliases.
            if matches!(node.op, Op::Reshape { .. } | Op::StopGradient) && !patched.contains(&i) {
                root[i] = root[node.inputs[0].index()];
            }
        }
        let mut readers = vec![0usize; n];
        for node in &g.nodes {
            for v in &node.inputs {
                readers[v.index()] += 1;
            }
        }
        let folds: Vec<Option<usize>> = (0..n).map(|i| split_sum(g, i, &readers, keep)).collect();
        let rules: Vec<Option<CompiledRule>> = g
            .nodes
            .iter()
            .map(|node| match &node.op {
                Op::Attention(rule)
                | Op::AttentionPattern(rule)
                | Op::AttentionBackward(rule)
                | Op::AttentionRuleGrad(rule)
                    if !rule.is_builtin() =>
                {
                    CompiledRule::new(rule)
                }
                _ => None,
            })
            .collect();
        let rule_grads: Vec<Option<usize>> = (0..n).map(|i| rule_grad_pair(g, i, &rules)).collect();
        let mut skip = vec![false; n];
        for &m in folds.iter().chain(&rule_grads).flatten() {
            skip[m] = true;
        }
        let options = CodegenOptions {
            matmul_prologues: false,
            ..CodegenOptions::default()
        };
        let groups = fused::Groups::new(g, &plan_fusion(g, keep, &options, &[]), &readers, keep);
        // A root lives until the last read of any of its aliases; never-read roots die
        // right after they are made. A fold reads its matmul's operands; the matmul reads
        // nothing. A group reads its leaves; the values inlined into it read nothing.
        let mut last: Vec<usize> = (0..n).collect();
        for (i, node) in g.nodes.iter().enumerate() {
            let reads: Vec<usize> = match folds[i] {
                Some(m) => g.nodes[m].inputs.iter().map(|v| v.index()).collect(),
                None if skip[i] || groups.inline[i] => continue,
                None if groups.roots[i].is_some() => groups.leaves(i),
                None => node.inputs.iter().map(|v| v.index()).collect(),
            };
            for v in reads {
                let r = root[v];
                last[r] = last[r].max(i);
            }
        }
        for v in keep {
            last[root[v.index()]] = usize::MAX;
        }
        let mut free_after = vec![Vec::new(); n];
        for r in 0..n {
            if root[r] == r && last[r] != usize::MAX {
                free_after[last[r]].push(r);
            }
        }
        Plan {
            root,
            free_after,
            folds,
            skip,
            rule_grads,
            rules,
            groups,
        }
    }
}

impl FastCpuBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many float buffers the pool has had to allocate since this backend was made: it
    /// stops growing once a graph has run once (checked by `tests/fast_cpu.rs`).
    pub fn buffers_allocated(&self) -> usize {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.pool.allocated
    }

    /// Bytes of every float buffer the pool has allocated (held by it or by a run): the
    /// arena a training step's activations and gradients live in, which stops growing
    /// once the graph has run once (`weft bench` reports it per step).
    pub fn arena_bytes(&self) -> usize {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.pool.bytes
    }
}

impl Backend for FastCpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn run(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
    ) -> Result<Outputs, RunError> {
        self.run_patched(graph, inputs, params, hooks, &HashMap::new())
    }

    fn run_replacing(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        replace: &[Intervention],
    ) -> Result<Outputs, RunError> {
        let patches = exec::patches::<f32>(graph, replace)?;
        self.run_patched(graph, inputs, params, hooks, &patches)
    }
}

impl FastCpuBackend {
    /// Runs `graph`, overwriting node i with `patches[i]` right after computing it.
    fn run_patched(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        patches: &HashMap<usize, Vec<Patch<f32>>>,
    ) -> Result<Outputs, RunError> {
        let hook_ids = exec::hook_ids(graph, hooks)?;
        let mut patched: Vec<usize> = patches.keys().copied().collect();
        patched.sort_unstable();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let found = cache
            .plans
            .iter()
            .position(|c| c.patched == patched && c.hooks == hook_ids && c.graph == *graph);
        let i = match found {
            Some(i) => i,
            None => {
                verify(graph)?;
                let keep: Vec<ValueId> = graph
                    .outputs
                    .iter()
                    .chain(&hook_ids)
                    .map(|(_, v)| *v)
                    .collect();
                if cache.plans.len() == PLANS {
                    cache.plans.remove(0);
                }
                cache.plans.push(Cached {
                    graph: graph.clone(),
                    plan: Plan::new(graph, &keep, &patched),
                    hooks: hook_ids,
                    patched,
                });
                cache.plans.len() - 1
            }
        };
        let Cache { plans, pool } = &mut *cache;
        let c = &plans[i];
        // The run goes to one of rayon's workers: from there each parallel kernel's halves
        // are this worker's own work and the other's, and a half nobody stole is popped
        // back; from the calling thread every kernel would wait for sleeping workers to
        // wake (measured: 10% more tokens/s on the peer benchmark's model, 2 cores).
        let mut out = None;
        rayon::scope(|_| {
            out = Some(execute(
                &c.graph, &c.plan, &c.hooks, patches, pool, inputs, params,
            ))
        });
        out.expect("the scope ran its body")
    }
}

/// A node's value during a run: a buffer of the run, or a parameter read where it lies.
/// Parameters are never copied: an imported 135M-parameter model holds 540 MB of them, and
/// copying them made up half of each of its forward passes (probes run hundreds).
enum Slot<'p> {
    Own(Value<f32>),
    Param(&'p [f32]),
}

impl Operand<f32> for Slot<'_> {
    fn f(&self) -> &[f32] {
        match self {
            Slot::Own(v) => v.f(),
            Slot::Param(p) => p,
        }
    }

    fn i(&self) -> &[i32] {
        match self {
            Slot::Own(v) => v.i(),
            Slot::Param(_) => unreachable!("fast path bug: expected an i32 value, found f32"),
        }
    }
}

impl Slot<'_> {
    fn is_f(&self) -> bool {
        !matches!(self, Slot::Own(Value::I(_)))
    }
}

/// Filler for the unused operand slots of a node.
static NO_VALUE: Slot<'static> = Slot::Own(Value::F(Vec::new()));

/// Parameter `index` of `g` where it lies, when it is f32 of the declared shape (anything
/// else goes to the reference's evaluation, which reports it).
fn param_in_place<'p>(g: &Graph, index: usize, params: &'p ParamStore) -> Option<&'p [f32]> {
    let info = &g.params[index];
    match params.get(&info.name) {
        Some(Tensor {
            shape,
            data: TensorData::F32(p),
        }) if *shape == info.shape => Some(p),
        _ => None,
    }
}

fn execute(
    g: &Graph,
    plan: &Plan,
    hooks: &[(String, ValueId)],
    patches: &HashMap<usize, Vec<Patch<f32>>>,
    pool: &mut Pool,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> Result<Outputs, RunError> {
    for info in &g.inputs {
        if !inputs.contains_key(&info.name) {
            return Err(RunError::MissingInput {
                name: info.name.clone(),
            });
        }
    }
    let mut vals: Vec<Option<Slot>> = Vec::with_capacity(g.len());
    vals.resize_with(g.len(), || None);
    // Captured hooks report the value computed before their own replacement.
    let mut computed: HashMap<usize, Tensor> = HashMap::new();
    let profile = std::env::var_os("WEFT_FAST_PROFILE").is_some();
    let mut times: HashMap<String, (f64, usize)> = HashMap::new();
    let result = (|| {
        // A rule-parameter gradient made by its backward's pass, until it is stored.
        let mut paired: Option<(usize, Value<f32>)> = None;
        for (i, node) in g.nodes.iter().enumerate() {
            let t0 = profile.then(std::time::Instant::now);
            // What ran, for the profile.
            let ran = if let Some(m) = plan.folds[i] {
                let mm = &g.nodes[m];
                let get = |v: &ValueId| vals[plan.root[v.index()]].as_ref();
                let (Some(a), Some(b)) = (get(&mm.inputs[0]), get(&mm.inputs[1])) else {
                    unreachable!("fast path bug: a split product's operands freed early");
                };
                let (sa, sb) = (g.shape(mm.inputs[0]), g.shape(mm.inputs[1]));
                let rows = sa[0] * sa[1];
                let mut o = pool.take(sa[2] * sb[2]);
                matmul::matmul(
                    a.f(),
                    &[rows, sa[2]],
                    b.f(),
                    &[rows, sb[2]],
                    &[sa[2], sb[2]],
                    true,
                    false,
                    &mut o,
                );
                vals[i] = Some(Slot::Own(Value::F(o)));
                Some("split matmul")
            } else if let Some(grp) = &plan.groups.roots[i] {
                let mut o = pool.take(grp.len());
                let leaf = |u: usize| match &vals[plan.root[u]] {
                    Some(x) if x.is_f() => x.f(),
                    _ => unreachable!("fast path bug: a group's operand is freed or not f32"),
                };
                grp.run(leaf, &mut o);
                vals[i] = Some(Slot::Own(Value::F(o)));
                Some("fused")
            } else if let Some(p) = match node.op {
                Op::Param { index } if !patches.contains_key(&i) => {
                    param_in_place(g, index, params)
                }
                _ => None,
            } {
                vals[i] = Some(Slot::Param(p));
                Some("param")
            } else if plan.root[i] == i && !plan.skip[i] && !plan.groups.inline[i] {
                let value = {
                    let get = |v: &ValueId| {
                        vals[plan.root[v.index()]]
                            .as_ref()
                            .expect("fast path bug: value freed early")
                    };
                    // The operands on the stack: a run makes no allocation per node.
                    let mut few: [&Slot; 8] = [&NO_VALUE; 8];
                    let many: Vec<&Slot>;
                    let ins: &[&Slot] = if node.inputs.len() <= few.len() {
                        for (slot, v) in few.iter_mut().zip(&node.inputs) {
                            *slot = get(v);
                        }
                        &few[..node.inputs.len()]
                    } else {
                        many = node.inputs.iter().map(get).collect();
                        &many
                    };
                    let rule = plan.rules[i].as_ref();
                    match (plan.rule_grads[i], rule) {
                        (Some(j), Some(rule)) => {
                            let (value, grad) = backward_with_rule_grad(g, i, j, rule, ins, pool);
                            paired = Some((j, grad));
                            value
                        }
                        _ => eval(g, i, rule, ins, pool, inputs, params)?,
                    }
                };
                vals[i] = Some(Slot::Own(value));
                if let Some((j, grad)) = paired.take() {
                    vals[j] = Some(Slot::Own(grad));
                }
                Some(node.op.name())
            } else {
                None
            };
            if let Some(list) = patches.get(&i) {
                if hooks.iter().any(|(_, v)| v.index() == i) {
                    let value = vals[i].as_ref().expect("a patched node has its own buffer");
                    computed.insert(i, to_tensor(value, &node.shape));
                }
                let Some(Slot::Own(Value::F(data))) = vals[i].as_mut() else {
                    unreachable!("fast path bug: a replaced value is not an f32 buffer");
                };
                for p in list {
                    p.apply(data, &node.shape);
                }
            }
            if let (Some(t0), Some(ran)) = (t0, ran) {
                let e = times.entry(format!("{ran} {:?}", node.shape)).or_default();
                e.0 += t0.elapsed().as_secs_f64();
                e.1 += 1;
            }
            for &r in &plan.free_after[i] {
                if let Some(Slot::Own(Value::F(v))) = vals[r].take() {
                    pool.give(v);
                }
            }
        }
        Ok(())
    })();
    if profile {
        // Where a run's time goes, by op and shape (`WEFT_FAST_PROFILE=1`).
        let mut t: Vec<_> = times.into_iter().collect();
        t.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        let total: f64 = t.iter().map(|x| x.1 .0).sum();
        eprintln!("fast path: {:.1} ms", total * 1e3);
        for (k, (s, n)) in t.iter().take(25) {
            eprintln!("{:8.2} ms {n:4}x {k}", s * 1e3);
        }
    }
    let collect = |list: &[(String, ValueId)], before_replacement: bool| {
        list.iter()
            .map(|(n, v)| {
                let computed = before_replacement
                    .then(|| computed.get(&v.index()))
                    .flatten();
                let t = computed.cloned().unwrap_or_else(|| {
                    let value = vals[plan.root[v.index()]].as_ref().expect("root kept");
                    to_tensor(value, g.shape(*v))
                });
                (n.clone(), t)
            })
            .collect()
    };
    let out = result.map(|()| Outputs {
        outputs: collect(&g.outputs, false),
        hooks: collect(hooks, true),
    });
    // Everything still held goes back to the pool for the next run.
    for v in vals.into_iter().flatten() {
        if let Slot::Own(Value::F(v)) = v {
            pool.give(v);
        }
    }
    out
}

fn to_tensor(v: &Slot, shape: &[usize]) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: match v {
            Slot::Own(Value::I(x)) => TensorData::I32(x.clone()),
            f => TensorData::F32(f.f().to_vec()),
        },
    }
}

/// The reference's evaluation of node `i` (parameter operands copied into values for it).
fn reference(
    g: &Graph,
    i: usize,
    ins: &[&Slot],
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> Result<Value<f32>, RunError> {
    let copies: Vec<Option<Value<f32>>> = ins
        .iter()
        .map(|s| match s {
            Slot::Param(p) => Some(Value::F(p.to_vec())),
            Slot::Own(_) => None,
        })
        .collect();
    let refs: Vec<&Value<f32>> = ins
        .iter()
        .zip(&copies)
        .map(|(s, c)| match (s, c) {
            (Slot::Own(v), _) => v,
            (_, Some(c)) => c,
            (Slot::Param(_), None) => unreachable!("copied above"),
        })
        .collect();
    exec::eval(g, i, &refs, inputs, params)
}

/// Node `i`, the backward of a spec rule, and node `j`, its parameters' gradient over the
/// same operands ([`rule_grad_pair`]), in one pass.
fn backward_with_rule_grad(
    g: &Graph,
    i: usize,
    j: usize,
    c: &CompiledRule,
    ins: &[&Slot],
    pool: &mut Pool,
) -> (Value<f32>, Value<f32>) {
    let node = &g.nodes[i];
    let Op::AttentionBackward(rule) = &node.op else {
        unreachable!("fast path bug: a rule-gradient pair without its backward");
    };
    let dm = Dims::from_shape(g.shape(node.inputs[0]));
    let (seg, params) = crate::cpu::attention::extras(rule, &ins[5..]);
    let five = (ins[0].f(), ins[1].f(), ins[2].f(), ins[3].f(), ins[4].f());
    let mut o = pool.take(node.shape.iter().product());
    let mut r = pool.take(g.nodes[j].shape.iter().product());
    attention_rule::backward(c, five, seg, &params, dm, &mut o, Some(&mut r));
    (Value::F(o), Value::F(r))
}

/// Node `i` with a fast kernel when there is one, else the reference's evaluation.
#[allow(clippy::too_many_arguments)]
fn eval(
    g: &Graph,
    i: usize,
    compiled: Option<&CompiledRule>,
    ins: &[&Slot],
    pool: &mut Pool,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> Result<Value<f32>, RunError> {
    let node = &g.nodes[i];
    let shape = node.shape.as_slice();
    let s = |k: usize| g.shape(node.inputs[k]);
    let n: usize = shape.iter().product();
    let is_f = |k: usize| ins[k].is_f();
    let mut out = || pool.take(n);
    let v = match &node.op {
        Op::Param { index } => {
            let info = &g.params[*index];
            match params.get(&info.name) {
                Some(Tensor {
                    shape: ps,
                    data: TensorData::F32(p),
                }) if *ps == info.shape => {
                    let mut o = out();
                    o.copy_from_slice(p);
                    o
                }
                _ => return reference(g, i, ins, inputs, params),
            }
        }
        Op::Unary(u) => {
            let mut o = out();
            kernels::unary(*u, ins[0].f(), &mut o);
            o
        }
        Op::UnaryGrad(u) => {
            let mut o = out();
            kernels::unary_grad(*u, ins[0].f(), ins[1].f(), &mut o);
            o
        }
        Op::Binary(b) if is_f(0) && is_f(1) => {
            let mut o = out();
            kernels::binary(*b, ins[0].f(), s(0), ins[1].f(), s(1), shape, &mut o);
            o
        }
        Op::Reduce { op, axis, .. } if is_f(0) => {
            let mut o = out();
            kernels::reduce(*op, ins[0].f(), split_axis(s(0), *axis), &mut o);
            o
        }
        Op::Softmax { axis } if *axis + 1 == shape.len() => {
            let mut o = out();
            kernels::softmax_rows(ins[0].f(), shape[*axis], &mut o, false);
            o
        }
        Op::LogSumExp { axis, .. } if *axis + 1 == s(0).len() => {
            let mut o = out();
            kernels::softmax_rows(ins[0].f(), s(0)[*axis], &mut o, true);
            o
        }
        Op::CrossEntropy => {
            let mut o = out();
            let v = s(0)[1];
            if kernels::cross_entropy(ins[0].f(), v, ins[1].i(), &mut o).is_none() {
                pool.give(o);
                return reference(g, i, ins, inputs, params);
            }
            o
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            let mut o = out();
            matmul::matmul(
                ins[0].f(),
                s(0),
                ins[1].f(),
                s(1),
                shape,
                *transpose_a,
                *transpose_b,
                &mut o,
            );
            o
        }
        Op::Permute { perm } if is_f(0) => {
            let mut o = out();
            strided::permute(ins[0].f(), s(0), perm, &mut o);
            o
        }
        Op::Slice { axis, start, end } if is_f(0) => {
            // Whole `inner`-long runs: one copy per outer index (the attention gradient's
            // three parts are one copy each).
            let (outer, ext, inner) = split_axis(s(0), *axis);
            let (x, run) = (ins[0].f(), (end - start) * inner);
            let mut o = out();
            for (b, dst) in o.chunks_mut(run.max(1)).enumerate().take(outer) {
                let src = (b * ext + start) * inner;
                dst.copy_from_slice(&x[src..src + run]);
            }
            o
        }
        Op::BroadcastTo { .. } if is_f(0) => {
            let mut o = out();
            strided::broadcast(ins[0].f(), s(0), shape, &mut o);
            o
        }
        Op::Attention(rule) if rule.is_builtin() => {
            let mut o = out();
            let seg = ins.get(3).map(|v| v.i());
            let (q, k, v) = (ins[0].f(), ins[1].f(), ins[2].f());
            attention::forward(rule, (q, k, v), seg, Dims::from_shape(s(0)), &mut o);
            o
        }
        Op::AttentionPattern(rule) if rule.is_builtin() => {
            let mut o = out();
            let seg = ins.get(3).map(|v| v.i());
            attention::pattern(
                rule,
                (ins[0].f(), ins[1].f()),
                seg,
                Dims::from_shape(s(0)),
                &mut o,
            );
            o
        }
        Op::AttentionBackward(rule) if rule.is_builtin() => {
            let mut o = out();
            let seg = ins.get(5).map(|v| v.i());
            let (q, k, v, y, dy) = (ins[0].f(), ins[1].f(), ins[2].f(), ins[3].f(), ins[4].f());
            attention::backward(rule, (q, k, v, y, dy), seg, Dims::from_shape(s(0)), &mut o);
            o
        }
        // A spec's rule: its expressions compiled into row programs.
        Op::Attention(rule)
        | Op::AttentionPattern(rule)
        | Op::AttentionBackward(rule)
        | Op::AttentionRuleGrad(rule) => {
            let Some(c) = compiled else {
                return reference(g, i, ins, inputs, params);
            };
            let dm = Dims::from_shape(s(0));
            let mut o = out();
            if let Op::Attention(_) | Op::AttentionPattern(_) = node.op {
                let (seg, params) = crate::cpu::attention::extras(rule, &ins[3..]);
                let (q, k) = (ins[0].f(), ins[1].f());
                if let Op::Attention(_) = node.op {
                    attention_rule::forward(c, (q, k, ins[2].f()), seg, &params, dm, &mut o);
                } else {
                    attention_rule::pattern(c, (q, k), seg, &params, dm, &mut o);
                }
            } else {
                let (seg, params) = crate::cpu::attention::extras(rule, &ins[5..]);
                let five = (ins[0].f(), ins[1].f(), ins[2].f(), ins[3].f(), ins[4].f());
                if let Op::AttentionBackward(_) = node.op {
                    attention_rule::backward(c, five, seg, &params, dm, &mut o, None);
                } else {
                    attention_rule::rule_grad(c, five, seg, &params, dm, &mut o);
                }
            }
            o
        }
        Op::Rope { layout, inverse } => {
            let mut o = out();
            let dm = Dims::from_shape(s(0));
            kernels::rope(
                ins[0].f(),
                ins[1].f(),
                ins[2].i(),
                dm,
                *layout,
                *inverse,
                &mut o,
            );
            o
        }
        // An embedding lookup reads its table where it lies (through the reference, a
        // parameter table would be copied first).
        Op::Gather if is_f(0) => {
            let v = crate::cpu::index::gather(ins[0].f(), s(0)[0], ins[1].i(), i as u32)?;
            return Ok(Value::F(v));
        }
        _ => return reference(g, i, ins, inputs, params),
    };
    Ok(Value::F(v))
}
