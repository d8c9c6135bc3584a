//! WGSL codegen: turns a [`Graph`] into a [`Program`] — fused compute kernels (WGSL text,
//! binding manifest, launch size) and a buffer plan. The compiler knows nothing about
//! devices; the runtime's wgpu backend creates pipelines and buffers from this.
//!
//! Stages, one file each: [`fusion`] (which values get a buffer, which are inlined),
//! `expr` (the WGSL function of each inlined value), `shader` and `template` (the structured
//! builder that assembles a module from the `.wgsl` templates in `templates/`), one file per
//! kernel family (`elementwise`, `lane`, `matmul`, `attention`), `buffers` (liveness-based
//! buffer reuse over the kernel schedule) and [`validate`] (naga + limits).

mod attention;
mod buffers;
mod elementwise;
mod error;
mod expr;
pub mod fusion;
mod group;
mod lane;
mod matmul;
mod program;
mod shader;
mod template;
pub mod tiling;
pub mod validate;

pub use error::CodegenError;
pub use fusion::{plan_fusion, FusionPlan, OpClass, Storage};
pub use program::{Access, Binding, BufferPlan, BufferRef, Kernel, Program, Readback};
pub use tiling::{MatmulShape, TileConfig, TuningTable};

use crate::ir::{Graph, Op, ValueId};
use fusion::op_class;
use shader::Shader;

/// Knobs of [`compile`].
#[derive(Clone, Debug, PartialEq)]
pub struct CodegenOptions {
    /// Fuse elementwise chains (and prologues into reductions). Off: one kernel per op.
    pub fuse: bool,
    /// Let a matmul evaluate a cheap A operand (a norm's scale, a head permute) at each load
    /// instead of reading it from a buffer. It saves a kernel and a round trip per operand
    /// but repeats the operand's ops N/4 times per element: measured slower on a CPU adapter
    /// (lavapipe), so the wgpu backend turns it off there (BENCHMARKS.md).
    pub matmul_prologues: bool,
    /// Storage buffers one shader stage may bind (WebGPU's default limit is 8).
    pub max_storage_buffers_per_stage: u32,
    /// Bytes one storage binding may cover (WebGPU's default is 128 MiB).
    pub max_storage_buffer_binding_size: u64,
    /// Matmul tiling per shape (see [`tiling`]); the default table gives every matmul
    /// today's register kernel. The wgpu backend fills it from its autotune cache.
    pub tiles: TuningTable,
    /// Workgroup memory one kernel may declare (WebGPU's default is 16 KiB); a tiling that
    /// needs more falls back to the register kernel.
    pub max_workgroup_storage_bytes: u32,
    /// Invocations one workgroup may have (WebGPU's default is 256); likewise.
    pub max_invocations_per_workgroup: u32,
    /// Attention forward as the workgroup-tiled kernel (`templates/attention_fwd_tiled.wgsl`:
    /// a block of queries per workgroup, keys and values streamed through workgroup memory)
    /// instead of one independent invocation per query row. GPUs need it; CPU adapters run
    /// barriers slowly, so the wgpu backend turns it on for GPUs only.
    pub tiled_attention: bool,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            fuse: true,
            matmul_prologues: true,
            max_storage_buffers_per_stage: 8,
            max_storage_buffer_binding_size: 128 << 20,
            tiles: TuningTable::default(),
            max_workgroup_storage_bytes: 16 << 10,
            max_invocations_per_workgroup: 256,
            tiled_attention: false,
        }
    }
}

fn readback(g: &Graph, plan: &FusionPlan, name: &str, v: ValueId) -> Readback {
    let owner = plan.owner(v);
    let buffer = match &g.node(owner).op {
        Op::Input { name } => BufferRef::Input(name.clone()),
        Op::Param { index } => BufferRef::Param(*index),
        Op::Const { .. } if plan.storage[owner.index()] == Storage::External => {
            BufferRef::Const(owner)
        }
        _ => BufferRef::Planned(usize::MAX),
    };
    Readback {
        name: name.to_string(),
        value: owner,
        buffer,
        shape: g.shape(v).to_vec(),
        dtype: g.dtype(v),
    }
}

/// Generates the kernels of one group of graph nodes that the fusion plan materialises
/// (see [`group`]: usually one node; several same-sized siblings share one kernel).
fn kernels_for(
    g: &Graph,
    plan: &FusionPlan,
    roots: &[ValueId],
    opts: &CodegenOptions,
) -> Result<Vec<Kernel>, CodegenError> {
    let v = roots[0];
    let ids = |prefix: &str| {
        let ids: Vec<String> = roots.iter().map(|r| r.0.to_string()).collect();
        format!("{prefix}_{}", ids.join("_"))
    };
    let hosted = plan.epilogue_of(v);
    if matches!(g.node(v).op, Op::MatMul { .. }) || !hosted.is_empty() {
        let name = match (roots.len(), hosted.first()) {
            (1, Some(m)) => format!("matmul_{}", m.0),
            _ => ids("matmul"),
        };
        return Ok(vec![matmul::kernel(
            Shader::new(g, plan, name),
            roots,
            opts,
        )?]);
    }
    let s = Shader::new(g, plan, format!("{}_{}", g.node(v).op.name(), v.0));
    Ok(match (&g.node(v).op, op_class(g, v)) {
        (Op::AttentionBackward(_), _) => attention::backward(g, plan, v)?.to_vec(),
        (Op::AttentionRuleGrad(_), _) => vec![attention::rule_grad(s, v)?],
        (Op::Attention(_) | Op::AttentionPattern(_), _) => {
            vec![attention::forward(s, v, opts)?]
        }
        (_, OpClass::Lane) => vec![lane::kernel(s, v)?],
        _ => {
            let s = Shader::new(g, plan, ids("elementwise"));
            vec![elementwise::kernel(s, roots)?]
        }
    })
}

/// Compiles `graph` for a run that reads every output plus the hooks named in `hooks`.
///
/// Every kernel is validated by naga and checked against the binding limits; a fused kernel
/// that would bind too many buffers is split first (its largest inlined input gets its own
/// kernel), so only an op that alone needs too many inputs is an error.
pub fn compile(
    graph: &Graph,
    hooks: &[String],
    opts: &CodegenOptions,
) -> Result<Program, CodegenError> {
    let mut roots: Vec<(String, ValueId)> = graph.outputs.clone();
    let mut hook_roots = Vec::new();
    for h in hooks {
        let v = graph
            .hook(h)
            .ok_or_else(|| CodegenError::UnknownHook(h.clone()))?;
        hook_roots.push((h.clone(), v));
    }
    roots.extend(hook_roots.iter().cloned());
    let root_ids: Vec<ValueId> = roots.iter().map(|r| r.1).collect();
    let mut forced: Vec<ValueId> = Vec::new();
    let (plan, mut kernels) = loop {
        let plan = plan_fusion(graph, &root_ids, opts, &forced);
        let mut kernels = Vec::new();
        let mut split = None;
        let over = |k: &Kernel| k.bindings().count() as u32 > opts.max_storage_buffers_per_stage;
        for mut roots in group::schedule(graph, &plan, opts.fuse) {
            let mut ks = Vec::new();
            while !roots.is_empty() {
                // A group binding too many buffers sheds members (they launch after it).
                let mut take = roots.len();
                let mut group = kernels_for(graph, &plan, &roots, opts)?;
                while take > 1 && group.iter().any(over) {
                    take -= 1;
                    group = kernels_for(graph, &plan, &roots[..take], opts)?;
                }
                ks.extend(group);
                roots.drain(..take);
            }
            for k in ks {
                if over(&k) {
                    split = split.or_else(|| split_candidate(graph, &plan, &k));
                }
                kernels.push(k);
            }
        }
        match split {
            Some(s) if !forced.contains(&s) => forced.push(s),
            _ => break (plan, kernels),
        }
    };
    for k in &kernels {
        validate::check_limits(
            k,
            opts.max_storage_buffers_per_stage,
            opts.max_storage_buffer_binding_size,
        )?;
        validate::check_barriers(k)?;
        validate::validate_wgsl(k)?;
    }
    let mut outputs: Vec<Readback> = graph
        .outputs
        .iter()
        .map(|(n, v)| readback(graph, &plan, n, *v))
        .collect();
    let mut hooks: Vec<Readback> = hook_roots
        .iter()
        .map(|(n, v)| readback(graph, &plan, n, *v))
        .collect();
    let mut all: Vec<&mut Readback> = outputs.iter_mut().chain(hooks.iter_mut()).collect();
    let buffers = buffers::plan(&mut kernels, &mut all);
    Ok(Program {
        kernels,
        buffers,
        outputs,
        hooks,
    })
}

/// The inlined node of an over-bound kernel to materialise: the one whose subtree reads the
/// most distinct buffers (splitting there removes the most bindings).
fn split_candidate(g: &Graph, plan: &FusionPlan, k: &Kernel) -> Option<ValueId> {
    let inlined: Vec<ValueId> = k
        .nodes
        .iter()
        .copied()
        .filter(|&v| !plan.is_stored(v) && !matches!(plan.storage[v.index()], Storage::Epilogue(_)))
        .collect();
    let reads = |v: ValueId| -> usize {
        let mut seen: Vec<ValueId> = Vec::new();
        let mut stack = vec![v];
        let mut loads: Vec<ValueId> = Vec::new();
        while let Some(x) = stack.pop() {
            if seen.contains(&x) {
                continue;
            }
            seen.push(x);
            if plan.is_stored(x) {
                loads.push(plan.owner(x));
            } else {
                stack.extend(g.node(x).inputs.iter().copied());
            }
        }
        loads.sort();
        loads.dedup();
        loads.len()
    };
    inlined.into_iter().max_by_key(|&v| reads(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder};

    #[test]
    fn too_many_inputs_to_one_op_is_an_error_naming_the_kernel() {
        let mut b = GraphBuilder::new();
        let xs: Vec<ValueId> = (0..9)
            .map(|i| b.input(&format!("x{i}"), &[2], DType::F32))
            .collect();
        let c = b.concat(&xs, 0).unwrap();
        b.output("c", c);
        let g = b.finish().unwrap();
        let err = compile(&g, &[], &CodegenOptions::default()).unwrap_err();
        match err {
            CodegenError::TooManyBindings {
                kernel,
                tensor,
                limit,
                ..
            } => {
                assert_eq!(limit, 8);
                assert!(kernel.starts_with("elementwise_"), "{kernel}");
                assert!(tensor.contains("x8"), "{tensor}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wide_fused_kernels_split_instead_of_failing() {
        let mut b = GraphBuilder::new();
        let mut acc = b.input("x0", &[4], DType::F32);
        for i in 1..12 {
            let x = b.input(&format!("x{i}"), &[4], DType::F32);
            let e = b.exp(x).unwrap();
            acc = b.add(acc, e).unwrap();
        }
        b.output("y", acc);
        let g = b.finish().unwrap();
        let p = compile(&g, &[], &CodegenOptions::default()).unwrap();
        assert!(p.kernels.len() > 1);
        assert!(p.kernels.iter().all(|k| k.bindings().count() <= 8));
    }

    #[test]
    fn invalid_wgsl_is_an_error_with_kernel_and_source() {
        let k = Kernel {
            name: "broken".into(),
            wgsl: "fn main( {".into(),
            inputs: vec![],
            outputs: vec![],
            workgroup_size: 1,
            dispatch: [1, 1, 1],
            nodes: vec![],
            matmul: None,
            tile: None,
        };
        let e = validate::validate_wgsl(&k).unwrap_err().to_string();
        assert!(e.contains("broken") && e.contains("fn main( {"), "{e}");
    }
}
