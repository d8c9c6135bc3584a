//! `--backend cpu|wgpu|auto`: which backend runs a graph.

use crate::{Backend, CpuBackend, FastCpuBackend, WgpuBackend};

/// The chosen backend and a line saying which (and on which adapter).
pub fn select_backend(name: &str) -> Result<(Box<dyn Backend>, String), String> {
    match name {
        "cpu" => Ok((Box::new(FastCpuBackend::new()), "backend cpu".into())),
        // The op-by-op interpreter the fast path is tested against.
        "cpu-ref" => Ok((
            Box::new(CpuBackend::new()),
            "backend cpu-ref (reference)".into(),
        )),
        "wgpu" => {
            let b = WgpuBackend::new().map_err(|e| format!("wgpu backend: {e}"))?;
            let line = format!(
                "backend wgpu, adapter {} ({:?})",
                b.adapter_name(),
                b.adapter_info().device_type
            );
            Ok((Box::new(b), line))
        }
        // A software adapter (lavapipe) is slower than the CPU backend: auto wants real GPUs.
        "auto" => match WgpuBackend::new() {
            Ok(b) if b.adapter_info().device_type != wgpu::DeviceType::Cpu => {
                let line = format!(
                    "backend wgpu (auto), adapter {} ({:?})",
                    b.adapter_name(),
                    b.adapter_info().device_type
                );
                Ok((Box::new(b), line))
            }
            Ok(b) => Ok((
                Box::new(FastCpuBackend::new()),
                format!(
                    "backend cpu (auto: only a software adapter, {})",
                    b.adapter_name()
                ),
            )),
            Err(_) => Ok((
                Box::new(FastCpuBackend::new()),
                "backend cpu (auto: no GPU adapter)".into(),
            )),
        },
        other => Err(format!(
            "unknown backend `{other}` (expected cpu, cpu-ref, wgpu or auto)"
        )),
    }
}
