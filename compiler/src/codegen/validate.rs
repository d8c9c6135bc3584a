//! Checks on every generated module before the runtime sees it: naga parses and validates
//! the WGSL, and codegen checks what naga does not — bindings per stage, tensor sizes
//! against the storage-binding limit, and that no barrier sits in non-uniform control flow
//! (a small uniformity analysis over naga's IR, [`check_barriers`]).

use super::program::Kernel;
use super::CodegenError;

/// Parses and validates `kernel.wgsl` with naga; an error names the kernel and carries the
/// source.
pub fn validate_wgsl(kernel: &Kernel) -> Result<naga::Module, CodegenError> {
    Ok(parse_and_validate(kernel)?.0)
}

fn parse_and_validate(
    kernel: &Kernel,
) -> Result<(naga::Module, naga::valid::ModuleInfo), CodegenError> {
    let module = naga::front::wgsl::parse_str(&kernel.wgsl)
        .map_err(|e| invalid(kernel, e.emit_to_string(&kernel.wgsl)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| invalid(kernel, e.emit_to_string(&kernel.wgsl)))?;
    Ok((module, info))
}

fn invalid(kernel: &Kernel, message: String) -> CodegenError {
    CodegenError::InvalidWgsl {
        kernel: kernel.name.clone(),
        message,
        wgsl: kernel.wgsl.clone(),
    }
}

/// The kernel as SPIR-V words (naga's SPIR-V writer, entry point `main`), for tools and
/// drivers that take SPIR-V rather than WGSL.
pub fn to_spirv(kernel: &Kernel) -> Result<Vec<u32>, CodegenError> {
    let (module, info) = parse_and_validate(kernel)?;
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
    };
    naga::back::spv::write_vec(
        &module,
        &info,
        &naga::back::spv::Options::default(),
        Some(&pipeline),
    )
    .map_err(|e| invalid(kernel, format!("SPIR-V output: {e}")))
}

/// Storage buffers per stage and bytes per binding.
pub fn check_limits(
    kernel: &Kernel,
    max_storage_buffers: u32,
    max_binding_bytes: u64,
) -> Result<(), CodegenError> {
    let mut count = 0u32;
    for b in kernel.bindings() {
        count += 1;
        if count > max_storage_buffers {
            return Err(CodegenError::TooManyBindings {
                kernel: kernel.name.clone(),
                tensor: b.tensor.clone(),
                count: kernel.bindings().count() as u32,
                limit: max_storage_buffers,
            });
        }
        let bytes = (b.elements * b.dtype.size_bytes()) as u64;
        if bytes > max_binding_bytes {
            return Err(CodegenError::TooLarge {
                kernel: kernel.name.clone(),
                tensor: b.tensor.clone(),
                bytes,
                limit: max_binding_bytes,
            });
        }
    }
    Ok(())
}

/// Barriers (`workgroupBarrier`, `storageBarrier`, `workgroupUniformLoad`) must be reached
/// by every invocation of a workgroup, and naga does not check that for compute shaders:
/// a barrier some invocations skip hangs or corrupts the workgroup on real hardware.
///
/// This check is a conservative uniformity analysis over the parsed module (see
/// [`Flow`]): a barrier is accepted only in the entry point, outside any branch or loop
/// whose condition may differ between invocations of a workgroup, and not after a return
/// (or a `break`/`continue` of an enclosing loop) that only some invocations take. Values
/// count as uniform when they derive from literals, constants, `workgroup_id`,
/// `num_workgroups`, read-only storage at uniform indices and locals only ever assigned
/// uniform values in uniform control flow; anything else (invocation ids, workgroup or
/// private memory, call results) counts as varying. Rejecting a correct shader is possible;
/// accepting a wrong one is not meant to be.
pub fn check_barriers(kernel: &Kernel) -> Result<(), CodegenError> {
    let has = |w: &str| kernel.wgsl.contains(w);
    if !has("Barrier(") && !has("workgroupUniformLoad") {
        return Ok(());
    }
    let invalid = |message: String| CodegenError::InvalidWgsl {
        kernel: kernel.name.clone(),
        message,
        wgsl: kernel.wgsl.clone(),
    };
    let module = naga::front::wgsl::parse_str(&kernel.wgsl)
        .map_err(|e| invalid(e.emit_to_string(&kernel.wgsl)))?;
    let line = |span: naga::Span| span.location(&kernel.wgsl).line_number;
    for (_, f) in module.functions.iter() {
        if let Some(span) = first_barrier(&f.body) {
            return Err(invalid(format!(
                "line {}: barrier in helper function `{}`; barriers belong in the entry point, \
                 where their uniformity is checked",
                line(span),
                f.name.as_deref().unwrap_or("?")
            )));
        }
    }
    for ep in &module.entry_points {
        if let Some(span) = Flow::new(&module, &ep.function).nonuniform_barrier() {
            return Err(invalid(format!(
                "line {}: barrier in non-uniform control flow (inside a branch or loop that \
                 depends on the invocation, or after a return some invocations take); every \
                 invocation of a workgroup must reach it",
                line(span)
            )));
        }
    }
    Ok(())
}

/// Whether `s` synchronises the workgroup.
fn is_barrier(s: &naga::Statement) -> bool {
    matches!(
        s,
        naga::Statement::ControlBarrier(_)
            | naga::Statement::MemoryBarrier(_)
            | naga::Statement::WorkGroupUniformLoad { .. }
    )
}

/// The span of the first barrier anywhere in `block`.
fn first_barrier(block: &naga::Block) -> Option<naga::Span> {
    use naga::Statement as S;
    for (s, span) in block.span_iter() {
        if is_barrier(s) {
            return Some(*span);
        }
        let found = match s {
            S::Block(b) => first_barrier(b),
            S::If { accept, reject, .. } => first_barrier(accept).or_else(|| first_barrier(reject)),
            S::Switch { cases, .. } => cases.iter().find_map(|c| first_barrier(&c.body)),
            S::Loop {
                body, continuing, ..
            } => first_barrier(body).or_else(|| first_barrier(continuing)),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// How control may leave a block non-uniformly: some invocations `break`/`continue` the
/// innermost enclosing loop (`jump`), or `return` (`ret`), while others go on.
#[derive(Clone, Copy, Default)]
struct Exits {
    jump: bool,
    ret: bool,
}

impl Exits {
    fn or(self, o: Exits) -> Exits {
        Exits {
            jump: self.jump || o.jump,
            ret: self.ret || o.ret,
        }
    }
}

/// The uniformity analysis of one entry point (see [`check_barriers`]). Locals become
/// varying when assigned a varying value or assigned in varying control flow; the whole
/// function is walked again until that set stops growing, then once more to report.
struct Flow<'a> {
    module: &'a naga::Module,
    f: &'a naga::Function,
    /// Per local variable: may differ between invocations.
    varying_local: Vec<bool>,
    /// Per expression: may differ between invocations (cleared when a local turns varying).
    memo: Vec<Option<bool>>,
    changed: bool,
    report: bool,
    found: Option<naga::Span>,
}

impl<'a> Flow<'a> {
    fn new(module: &'a naga::Module, f: &'a naga::Function) -> Self {
        Flow {
            module,
            f,
            varying_local: vec![false; f.local_variables.len()],
            memo: vec![None; f.expressions.len()],
            changed: false,
            report: false,
            found: None,
        }
    }

    /// The first barrier reached in non-uniform control flow.
    fn nonuniform_barrier(mut self) -> Option<naga::Span> {
        let f = self.f;
        loop {
            self.changed = false;
            self.walk(&f.body, false);
            if !self.changed {
                break;
            }
        }
        self.report = true;
        self.walk(&f.body, false);
        self.found
    }

    fn mark(&mut self, l: naga::Handle<naga::LocalVariable>) {
        if !self.varying_local[l.index()] {
            self.varying_local[l.index()] = true;
            self.changed = true;
            self.memo.iter_mut().for_each(|m| *m = None);
        }
    }

    /// Walks `block` entered in varying control flow when `varying`.
    fn walk(&mut self, block: &'a naga::Block, mut varying: bool) -> Exits {
        use naga::Statement as S;
        let mut out = Exits::default();
        for (s, span) in block.span_iter() {
            let exits = match *s {
                S::Block(ref b) => self.walk(b, varying),
                S::If {
                    condition,
                    ref accept,
                    ref reject,
                } => {
                    let c = varying || self.expr(condition);
                    self.walk(accept, c).or(self.walk(reject, c))
                }
                // A `break` in a case leaves the switch; counting it as the loop's is
                // conservative.
                S::Switch {
                    selector,
                    ref cases,
                } => {
                    let c = varying || self.expr(selector);
                    cases
                        .iter()
                        .fold(Exits::default(), |e, case| e.or(self.walk(&case.body, c)))
                }
                S::Loop {
                    ref body,
                    ref continuing,
                    break_if,
                } => {
                    // Iterations after a varying exit run in varying control flow: find
                    // the loop's own uniformity first (without reporting), then walk it.
                    let report = std::mem::replace(&mut self.report, false);
                    let mut inner = varying;
                    loop {
                        let e = self.walk(body, inner).or(self.walk(continuing, inner));
                        let b = break_if.is_some_and(|x| self.expr(x));
                        let next = inner || e.jump || e.ret || b;
                        if next == inner {
                            break;
                        }
                        inner = next;
                    }
                    self.report = report;
                    let e = self.walk(body, inner).or(self.walk(continuing, inner));
                    // The loop's own breaks end with it; returns do not.
                    Exits {
                        jump: false,
                        ret: e.ret,
                    }
                }
                S::Break | S::Continue => Exits {
                    jump: varying,
                    ret: false,
                },
                S::Return { .. } | S::Kill => Exits {
                    jump: false,
                    ret: varying,
                },
                S::Store { pointer, value } => {
                    if let Some(l) = self.root_local(pointer) {
                        if varying || self.expr(value) || self.pointer_varies(pointer) {
                            self.mark(l);
                        }
                    }
                    Exits::default()
                }
                S::Call { ref arguments, .. } => {
                    // A callee may write through pointers to our locals.
                    for &a in arguments {
                        if let Some(l) = self.root_local(a) {
                            self.mark(l);
                        }
                    }
                    Exits::default()
                }
                _ => {
                    if is_barrier(s) && varying && self.report && self.found.is_none() {
                        self.found = Some(*span);
                    }
                    Exits::default()
                }
            };
            varying |= exits.jump || exits.ret;
            out = out.or(exits);
        }
        out
    }

    /// The local variable a pointer expression points into.
    fn root_local(
        &self,
        p: naga::Handle<naga::Expression>,
    ) -> Option<naga::Handle<naga::LocalVariable>> {
        use naga::Expression as E;
        match self.f.expressions[p] {
            E::LocalVariable(l) => Some(l),
            E::Access { base, .. } | E::AccessIndex { base, .. } => self.root_local(base),
            _ => None,
        }
    }

    /// Whether an index on the way to the pointee may vary.
    fn pointer_varies(&mut self, p: naga::Handle<naga::Expression>) -> bool {
        use naga::Expression as E;
        match self.f.expressions[p] {
            E::Access { base, index } => self.expr(index) || self.pointer_varies(base),
            E::AccessIndex { base, .. } => self.pointer_varies(base),
            _ => false,
        }
    }

    /// Whether a load through `p` may differ between invocations.
    fn load_varies(&mut self, p: naga::Handle<naga::Expression>) -> bool {
        use naga::{AddressSpace as A, Expression as E};
        match self.f.expressions[p] {
            E::Access { base, index } => self.expr(index) || self.load_varies(base),
            E::AccessIndex { base, .. } => self.load_varies(base),
            E::LocalVariable(l) => self.varying_local[l.index()],
            E::GlobalVariable(g) => match self.module.global_variables[g].space {
                A::Uniform | A::Handle | A::Immediate => false,
                A::Storage { access } => access.contains(naga::StorageAccess::STORE),
                // Private memory is per invocation; workgroup memory is written by others.
                _ => true,
            },
            _ => true,
        }
    }

    /// Whether expression `h` may differ between invocations of a workgroup.
    fn expr(&mut self, h: naga::Handle<naga::Expression>) -> bool {
        use naga::{BuiltIn as B, Expression as E};
        if let Some(v) = self.memo[h.index()] {
            return v;
        }
        let f = self.f;
        let v = match f.expressions[h] {
            E::Literal(_)
            | E::Constant(_)
            | E::Override(_)
            | E::ZeroValue(_)
            | E::GlobalVariable(_)
            | E::LocalVariable(_)
            | E::ArrayLength(_) => false,
            E::FunctionArgument(i) => !matches!(
                f.arguments[i as usize].binding,
                Some(naga::Binding::BuiltIn(B::WorkGroupId | B::NumWorkGroups))
            ),
            E::Load { pointer } => self.load_varies(pointer),
            E::Access { base, index } => self.expr(base) || self.expr(index),
            E::AccessIndex { base, .. } => self.expr(base),
            E::Splat { value, .. } => self.expr(value),
            E::Swizzle { vector, .. } => self.expr(vector),
            E::Compose { ref components, .. } => components.iter().any(|&c| self.expr(c)),
            E::Unary { expr, .. } | E::As { expr, .. } => self.expr(expr),
            E::Relational { argument, .. } => self.expr(argument),
            E::Binary { left, right, .. } => self.expr(left) || self.expr(right),
            E::Select {
                condition,
                accept,
                reject,
            } => self.expr(condition) || self.expr(accept) || self.expr(reject),
            E::Math {
                arg,
                arg1,
                arg2,
                arg3,
                ..
            } => [Some(arg), arg1, arg2, arg3]
                .into_iter()
                .flatten()
                .any(|a| self.expr(a)),
            // Call and atomic results, samples, subgroup operations, ...
            _ => true,
        };
        self.memo[h.index()] = Some(v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(body: &str) -> Kernel {
        Kernel {
            name: "k".into(),
            wgsl: format!(
                "var<workgroup> tile: array<f32, 64>;
@group(0) @binding(0) var<storage, read> n_in: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
fn helper(i: u32) -> f32 {{ return f32(i); }}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
{body}
}}"
            ),
            inputs: vec![],
            outputs: vec![],
            workgroup_size: 64,
            dispatch: [1, 1, 1],
            nodes: vec![],
            matmul: None,
            tile: None,
        }
    }

    fn check(body: &str) -> Result<(), String> {
        let k = kernel(body);
        validate_wgsl(&k).map_err(|e| format!("not valid WGSL: {e}"))?;
        check_barriers(&k).map_err(|e| e.to_string())
    }

    #[test]
    fn barriers_in_uniform_control_flow_pass() {
        for ok in [
            // The shared-memory GEMM's shape: a uniform K loop, varying staging loops and
            // varying stores that end before or after the barriers.
            "let live = wg.x < 3u;
             for (var k0 = 0u; k0 < 70u; k0 = k0 + 8u) {
                 for (var e = lid; e < 64u; e = e + 64u) { tile[e] = f32(k0); }
                 workgroupBarrier();
                 out[lid] = out[lid] + tile[(lid + 1u) % 64u];
                 workgroupBarrier();
             }
             if (live) { for (var r = lid; r < 8u; r = r + 1u) { if (r > 5u) { break; } out[r] = 0.0; } }",
            // A whole workgroup returning (workgroup_id is uniform) is fine.
            "if (wg.x + wg.y * nwg.x > 7u) { return; }
             workgroupBarrier();",
            // A local assigned only uniform values; read-only storage at a uniform index.
            "var n = 2u;
             if (wg.x == 0u) { n = n_in[wg.y]; }
             for (var i = 0u; i < n; i = i + 1u) { storageBarrier(); }",
            "out[lid] = helper(lid);",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn barriers_some_invocations_skip_are_rejected_with_their_line() {
        for bad in [
            "if (lid >= 10u) { return; }\nworkgroupBarrier();",
            "if (lid == 0u) { workgroupBarrier(); }",
            "for (var e = lid; e < 64u; e = e + 64u) { workgroupBarrier(); }",
            "for (var i = 0u; i < 4u; i = i + 1u) { if (i == lid) { break; } workgroupBarrier(); }",
            "var n = 4u;\nif (lid == 0u) { n = 5u; }\nfor (var i = 0u; i < n; i = i + 1u) { workgroupBarrier(); }",
            "var n = lid;\nloop { if (n > 4u) { break; } n = n + 1u; workgroupBarrier(); }",
            "if (out[0] > 0.0) { workgroupBarrier(); }",
            "switch (lid) { case 0u: { workgroupBarrier(); } default: {} }",
        ] {
            let e = check(bad).expect_err(bad);
            assert!(
                e.contains("non-uniform control flow") && e.contains("line "),
                "{bad}: {e}"
            );
        }
        let helper = "fn sync() { workgroupBarrier(); }\n";
        let mut k = kernel("sync();");
        k.wgsl = format!("{helper}{}", k.wgsl);
        let e = check_barriers(&k).unwrap_err().to_string();
        assert!(e.contains("helper function `sync`"), "{e}");
    }
}
