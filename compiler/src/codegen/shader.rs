//! The structured builder behind every kernel: it declares bindings (deduplicated per
//! buffer), emits one WGSL function per inlined value (see [`super::expr`]) and assembles
//! prelude, bindings, constants, functions and the filled template into one module.

use super::expr;
use super::fusion::{FusionPlan, Storage};
use super::program::{Access, Binding, BufferRef, Kernel};
use crate::ir::{numel, DType, Graph, Op, ValueId};

const PRELUDE: &str = include_str!("templates/prelude.wgsl");

/// Invocations per workgroup for every one-invocation-per-item kernel. 64 fits the most
/// limited adapters (256 invocations) and keeps lavapipe's threads busy.
pub(super) const WORKGROUP: u32 = 64;
/// Workgroups per dispatch dimension (WebGPU's guaranteed minimum limit).
pub(super) const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// The private variable holding matmul `m`'s current accumulator element while its host's
/// epilogue runs.
pub(super) fn accumulator(m: ValueId) -> String {
    format!("epilogue_acc_{}", m.0)
}

/// WGSL scalar type of a dtype.
pub(super) fn wgsl_type(dt: DType) -> &'static str {
    match dt {
        DType::I32 => "i32",
        _ => "f32",
    }
}

/// A WGSL `u32` literal.
pub(super) fn u(x: usize) -> String {
    format!("{x}u")
}

/// A WGSL f32 expression equal to `x` (non-finite values via their bits: WGSL has no
/// literals for them and naga's constant evaluator rejects them).
pub(super) fn f32_lit(x: f32) -> String {
    if x.is_finite() {
        let s = format!("{x:?}");
        if x < 0.0 {
            format!("({s}f)")
        } else {
            format!("{s}f")
        }
    } else {
        format!("f32_bits(0x{:08x}u)", x.to_bits())
    }
}

/// A WGSL i32 expression equal to `x`.
pub(super) fn i32_lit(x: i32) -> String {
    if x == i32::MIN {
        "bitcast<i32>(0x80000000u)".into()
    } else if x < 0 {
        format!("({x}i)")
    } else {
        format!("{x}i")
    }
}

/// The name of a value for humans: its label and handle.
pub(super) fn tensor_name(g: &Graph, v: ValueId) -> String {
    match (&g.node(v).op, &g.labels[v.index()]) {
        (Op::Input { name }, _) => format!("input `{name}` ({v})"),
        (Op::Param { index }, _) => format!("param `{}` ({v})", g.params[*index].name),
        (_, Some(l)) => format!("{l} ({v})"),
        (_, None) => v.to_string(),
    }
}

/// Workgroup counts for `items` invocations of [`WORKGROUP`] lanes, folded into y when x
/// would exceed the per-dimension limit (kernels recover the flat id with `flat_id`).
pub(super) fn dispatch_for(items: usize) -> [u32; 3] {
    dispatch_groups(items.div_ceil(WORKGROUP as usize))
}

/// Workgroup counts for `groups` workgroups, folded into y like [`dispatch_for`].
pub(super) fn dispatch_groups(groups: usize) -> [u32; 3] {
    let groups = groups.max(1) as u32;
    if groups <= MAX_GROUPS_PER_DIM {
        [groups, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}

/// One kernel under construction.
pub(super) struct Shader<'g> {
    pub g: &'g Graph,
    pub plan: &'g FusionPlan,
    name: String,
    inputs: Vec<Binding>,
    outputs: Vec<Binding>,
    consts: Vec<String>,
    functions: Vec<String>,
    emitted: Vec<ValueId>,
}

impl<'g> Shader<'g> {
    pub fn new(g: &'g Graph, plan: &'g FusionPlan, name: String) -> Self {
        Shader {
            g,
            plan,
            name,
            inputs: Vec::new(),
            outputs: Vec::new(),
            consts: Vec::new(),
            functions: Vec::new(),
            emitted: Vec::new(),
        }
    }

    /// The kernel's name (for errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn next_binding(&self) -> u32 {
        (self.inputs.len() + self.outputs.len()) as u32
    }

    /// Binds the buffer holding `v` for reading; returns its WGSL variable.
    pub fn read(&mut self, v: ValueId) -> String {
        let owner = self.plan.owner(v);
        if let Some(b) = self.inputs.iter().find(|b| b.value == Some(owner)) {
            return b.var.clone();
        }
        let node = self.g.node(owner);
        let buffer = match (&node.op, self.plan.storage[owner.index()]) {
            (Op::Input { name }, _) => BufferRef::Input(name.clone()),
            (Op::Param { index }, _) => BufferRef::Param(*index),
            (Op::Const { .. }, Storage::External) => BufferRef::Const(owner),
            // Filled in by the buffer planner.
            _ => BufferRef::Planned(usize::MAX),
        };
        let var = format!("in{}", self.inputs.len());
        self.inputs.push(Binding {
            binding: self.next_binding(),
            var: var.clone(),
            value: Some(owner),
            tensor: tensor_name(self.g, owner),
            buffer,
            access: Access::Read,
            dtype: node.dtype,
            elements: numel(&node.shape),
        });
        var
    }

    /// Binds the output buffer of `v`; returns its WGSL variable.
    pub fn write(&mut self, v: ValueId) -> String {
        let node = self.g.node(v);
        let var = format!("out{}", self.outputs.len());
        self.outputs.push(Binding {
            binding: self.next_binding(),
            var: var.clone(),
            value: Some(v),
            tensor: tensor_name(self.g, v),
            buffer: BufferRef::Planned(usize::MAX),
            access: Access::ReadWrite,
            dtype: node.dtype,
            elements: numel(&node.shape),
        });
        var
    }

    /// Binds kernel-pair scratch (`value: None`); `tensor` identifies it across kernels.
    pub fn scratch(&mut self, tensor: String, elements: usize, write: bool) -> String {
        let binding = Binding {
            binding: self.next_binding(),
            var: String::new(),
            value: None,
            tensor,
            buffer: BufferRef::Planned(usize::MAX),
            access: if write {
                Access::ReadWrite
            } else {
                Access::Read
            },
            dtype: DType::F32,
            elements,
        };
        if write {
            let var = format!("out{}", self.outputs.len());
            self.outputs.push(Binding {
                var: var.clone(),
                ..binding
            });
            var
        } else {
            let var = format!("in{}", self.inputs.len());
            self.inputs.push(Binding {
                var: var.clone(),
                ..binding
            });
            var
        }
    }

    /// Declares `const NAME: u32 = value;`.
    pub fn const_u32(&mut self, name: &str, value: usize) {
        self.consts
            .push(format!("const {name}: u32 = {};", u(value)));
    }

    /// Declares `const NAME: f32 = value;`.
    pub fn const_f32(&mut self, name: &str, value: f32) {
        self.consts
            .push(format!("const {name}: f32 = {};", f32_lit(value)));
    }

    /// Declares a module-scope `var<private> NAME: f32;`.
    pub fn private_f32(&mut self, name: &str) {
        self.consts.push(format!("var<private> {name}: f32;"));
    }

    /// Adds a helper function to the module.
    pub fn function(&mut self, f: String) {
        self.functions.push(f);
    }

    /// The WGSL function `v{id}(i: u32)` that yields element `i` of `v`, emitting it (and
    /// everything it inlines) on first use. Stored values load from their buffer; a matmul
    /// computed as this kernel's epilogue source yields the current accumulator.
    pub fn value_fn(&mut self, v: ValueId) -> String {
        let fname = format!("v{}", v.0);
        if self.emitted.contains(&v) {
            return fname;
        }
        self.emitted.push(v);
        let node = self.g.node(v);
        let ty = wgsl_type(node.dtype);
        let body = if let Storage::Epilogue(_) = self.plan.storage[v.index()] {
            format!("    return {};", accumulator(v))
        } else if self.plan.is_stored(v) {
            let var = self.read(v);
            format!("    return {var}[i];")
        } else {
            expr::inline_body(self, v)
        };
        let label = self.g.labels[v.index()]
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        self.functions.push(format!(
            "// {v}: {}{label}\nfn {fname}(i: u32) -> {ty} {{\n{body}\n}}",
            self.g.node(v).op.name()
        ));
        fname
    }

    /// IR nodes this kernel evaluates inline (loads of stored values excluded).
    pub fn inlined(&self) -> Vec<ValueId> {
        let mut v: Vec<ValueId> = self
            .emitted
            .iter()
            .copied()
            .filter(|&v| !self.plan.is_stored(v))
            .collect();
        v.sort();
        v
    }

    /// Assembles the module around `main` and returns the kernel computing `roots`.
    pub fn finish(
        self,
        main: String,
        workgroup_size: u32,
        dispatch: [u32; 3],
        roots: &[ValueId],
    ) -> Kernel {
        let mut nodes = self.inlined();
        nodes.retain(|v| !roots.contains(v));
        nodes.extend_from_slice(roots);
        let mut src = format!("// weft kernel `{}`\n", self.name);
        src.push_str(PRELUDE);
        src.push('\n');
        for b in self.inputs.iter().chain(&self.outputs) {
            let access = match b.access {
                Access::Read => "read",
                Access::ReadWrite => "read_write",
            };
            src.push_str(&format!(
                "// {}\n@group(0) @binding({}) var<storage, {access}> {}: array<{}>;\n",
                b.tensor,
                b.binding,
                b.var,
                wgsl_type(b.dtype)
            ));
        }
        src.push('\n');
        for c in &self.consts {
            src.push_str(c);
            src.push('\n');
        }
        src.push('\n');
        for f in &self.functions {
            src.push_str(f);
            src.push_str("\n\n");
        }
        src.push_str(&main);
        let mut inputs = self.inputs;
        let mut outputs = self.outputs;
        inputs.sort_by_key(|b| b.binding);
        outputs.sort_by_key(|b| b.binding);
        Kernel {
            name: self.name,
            wgsl: src,
            inputs,
            outputs,
            workgroup_size,
            dispatch,
            nodes,
            matmul: None,
            tile: None,
        }
    }
}
