//! Checks on every generated module before the runtime sees it: naga parses and validates
//! the WGSL, and codegen checks what naga does not — bindings per stage, tensor sizes
//! against the storage-binding limit, and that no barrier sits in non-uniform control flow.

use super::program::Kernel;
use super::CodegenError;

/// Parses and validates `kernel.wgsl` with naga; an error names the kernel and carries the
/// source.
pub fn validate_wgsl(kernel: &Kernel) -> Result<naga::Module, CodegenError> {
    let invalid = |message: String| CodegenError::InvalidWgsl {
        kernel: kernel.name.clone(),
        message,
        wgsl: kernel.wgsl.clone(),
    };
    let module = naga::front::wgsl::parse_str(&kernel.wgsl)
        .map_err(|e| invalid(e.emit_to_string(&kernel.wgsl)))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| invalid(e.emit_to_string(&kernel.wgsl)))?;
    Ok(module)
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

/// Barriers must be reached by every invocation of a workgroup, and naga does not check
/// that for compute shaders. No template uses workgroup memory or barriers today (register
/// tiling instead; see `templates/matmul.wgsl`), so any barrier is rejected outright: a
/// template that needs one must bring a real uniformity check with it.
pub fn check_barriers(kernel: &Kernel) -> Result<(), CodegenError> {
    if kernel.wgsl.contains("Barrier(") {
        return Err(CodegenError::InvalidWgsl {
            kernel: kernel.name.clone(),
            message: "barriers are not allowed until codegen checks their uniformity".into(),
            wgsl: kernel.wgsl.clone(),
        });
    }
    Ok(())
}
