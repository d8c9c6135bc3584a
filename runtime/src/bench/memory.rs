//! Memory of a training step on the fast CPU path, step after step: the buffer arena its
//! activations and gradients live in (`FastCpuBackend::arena_bytes`) and the process's peak
//! resident set. `weft bench` prints both for the spec's training step; that neither grows
//! after the first step is what shows the steady state allocates nothing new
//! (`runtime/tests/fast_cpu_alloc.rs` checks the allocations themselves).

use super::{run_once, Workload};
use crate::error::RunError;
use crate::FastCpuBackend;
use std::fmt::Write as _;

/// Memory after one step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMemory {
    /// 1-based step.
    pub step: usize,
    /// Bytes of the fast path's buffer arena.
    pub arena_bytes: usize,
    /// The process's peak resident set so far (`VmHWM`; `None` off Linux).
    pub peak_rss_bytes: Option<usize>,
}

/// Runs `w` for `steps` steps on a fresh fast CPU backend, recording memory after each.
pub fn train_step_memory(w: &Workload, steps: usize) -> Result<Vec<StepMemory>, RunError> {
    let be = FastCpuBackend::new();
    let mut out = Vec::with_capacity(steps);
    for step in 1..=steps {
        run_once(&be, w)?;
        out.push(StepMemory {
            step,
            arena_bytes: be.arena_bytes(),
            peak_rss_bytes: peak_rss(),
        });
    }
    Ok(out)
}

/// The peak resident set size of this process in bytes, from `/proc/self/status`.
pub fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A markdown table of `rows` for the workload `shape`.
pub fn memory_table(shape: &str, rows: &[StepMemory]) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let mut t = format!(
        "Training-step memory on the CPU fast path ({shape}):\n\n\
         | step | buffer arena (MiB) | process peak RSS (MiB) |\n|---|---:|---:|\n"
    );
    for r in rows {
        let rss = r
            .peak_rss_bytes
            .map_or("n/a".to_string(), |b| format!("{:.1}", mib(b)));
        let _ = writeln!(t, "| {} | {:.1} | {rss} |", r.step, mib(r.arena_bytes));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_is_sized_by_the_first_step_and_never_grows() {
        let w = super::super::attention(super::super::BenchRule::Softmax, 1, 2, 32, 8, true);
        let rows = train_step_memory(&w, 3).expect("runs");
        assert!(rows[0].arena_bytes > 0);
        assert!(rows.iter().all(|r| r.arena_bytes == rows[0].arena_bytes));
        if cfg!(target_os = "linux") {
            assert!(rows.iter().all(|r| r.peak_rss_bytes.is_some_and(|b| b > 0)));
        }
        let t = memory_table(&w.shape, &rows);
        assert_eq!(t.lines().filter(|l| l.starts_with("| ")).count(), 4);
    }
}
