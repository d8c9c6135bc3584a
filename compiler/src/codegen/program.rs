//! What codegen hands the runtime: kernels (WGSL text plus a binding manifest and a launch
//! size) and a buffer plan. Plain data; the runtime owns every device object.

use super::tiling::{MatmulShape, TileConfig};
use crate::ir::{DType, ValueId};

/// Where a bound buffer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BufferRef {
    /// The runtime input of this name (uploaded each run).
    Input(String),
    /// `Graph::params[index]` (uploaded each run).
    Param(usize),
    /// The data of this `Const` node (uploaded once per compiled graph).
    Const(ValueId),
    /// Planned buffer `index` of [`BufferPlan::buffer_bytes`].
    Planned(usize),
}

/// How a kernel uses a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// One storage-buffer binding of a kernel (`@group(0) @binding(binding)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub binding: u32,
    /// The WGSL variable name.
    pub var: String,
    /// The IR value stored there; `None` for kernel-private scratch.
    pub value: Option<ValueId>,
    /// Human name of the tensor (label or `%id`), for errors and dumps.
    pub tensor: String,
    pub buffer: BufferRef,
    pub access: Access,
    pub dtype: DType,
    /// Elements the kernel may touch.
    pub elements: usize,
}

/// One compute shader and how to launch it.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Unique within the program, e.g. `matmul_12` or `elementwise_40`.
    pub name: String,
    pub wgsl: String,
    /// Bindings read (inputs, params, constants, earlier results, scratch).
    pub inputs: Vec<Binding>,
    /// Bindings written.
    pub outputs: Vec<Binding>,
    /// Invocations per workgroup (x only).
    pub workgroup_size: u32,
    /// Workgroups to dispatch.
    pub dispatch: [u32; 3],
    /// IR nodes this kernel evaluates: fused producers first, then the roots it stores
    /// (one, or several for a horizontally fused group).
    pub nodes: Vec<ValueId>,
    /// For a matmul kernel: its tuning key (what the runtime's autotuner times and caches).
    pub matmul: Option<MatmulShape>,
    /// For a matmul kernel: the tiling it was generated with (the tuning table's choice, or
    /// the default where the adapter's limits ruled that choice out).
    pub tile: Option<TileConfig>,
}

impl Kernel {
    /// All bindings, inputs then outputs, in binding order.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.inputs.iter().chain(&self.outputs)
    }
}

/// Device buffers for computed values, reused by liveness over the kernel schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BufferPlan {
    /// Capacity in bytes of each planned buffer (a multiple of 4, at least 4).
    pub buffer_bytes: Vec<usize>,
    /// Each materialised value (or scratch, `None`) with its buffer and size in bytes.
    pub values: Vec<(Option<ValueId>, usize, usize)>,
    /// Sum of `buffer_bytes`: everything is allocated up front, so this is the peak.
    pub peak_bytes: usize,
}

/// Where a named output or hook can be read after a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Readback {
    pub name: String,
    pub value: ValueId,
    pub buffer: BufferRef,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// A compiled graph: kernels in launch order and the buffers they use.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub kernels: Vec<Kernel>,
    pub buffers: BufferPlan,
    /// Graph outputs, in graph order.
    pub outputs: Vec<Readback>,
    /// Requested hooks, in request order.
    pub hooks: Vec<Readback>,
}
