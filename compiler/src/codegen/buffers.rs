//! Buffer planning over the kernel schedule: every materialised value (and backward
//! scratch) gets a planned buffer, reused once its last reader has run — the same best-fit
//! liveness scheme as `passes::plan_memory`, but over kernels, so fused-away values take no
//! memory at all.

use super::program::{Binding, BufferPlan, BufferRef, Kernel, Readback};

/// What a planned buffer holds: a value, or a named scratch area.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Value(u32),
    Scratch(String),
}

fn key(b: &Binding) -> Option<Key> {
    match (&b.buffer, b.value) {
        (BufferRef::Planned(_), Some(v)) => Some(Key::Value(v.0)),
        (BufferRef::Planned(_), None) => Some(Key::Scratch(b.tensor.clone())),
        _ => None,
    }
}

/// Assigns planned buffers in place (`BufferRef::Planned(index)` in every binding and
/// readback) and returns the plan. `roots` (outputs and hooks) stay live to the end.
pub(super) fn plan(kernels: &mut [Kernel], roots: &mut [&mut Readback]) -> BufferPlan {
    // Last kernel touching each key.
    let mut keys: Vec<(Key, usize, usize)> = Vec::new(); // key, bytes, last use
    for (ki, k) in kernels.iter().enumerate() {
        for b in k.bindings() {
            if let Some(kk) = key(b) {
                let bytes = (b.elements * b.dtype.size_bytes())
                    .max(4)
                    .next_multiple_of(4);
                match keys.iter_mut().find(|(x, _, _)| *x == kk) {
                    Some(e) => e.2 = ki,
                    None => keys.push((kk, bytes, ki)),
                }
            }
        }
    }
    for r in roots.iter() {
        if let BufferRef::Planned(_) = r.buffer {
            if let Some(e) = keys
                .iter_mut()
                .find(|(x, _, _)| *x == Key::Value(r.value.0))
            {
                e.2 = usize::MAX;
            }
        }
    }
    let mut plan = BufferPlan::default();
    let mut assigned: Vec<(Key, usize)> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for (ki, kernel) in kernels.iter().enumerate() {
        // Outputs first get buffers (reads already have theirs); then release dead keys.
        for out in &kernel.outputs {
            let Some(kk) = key(out) else {
                continue;
            };
            if assigned.iter().any(|(x, _)| *x == kk) {
                continue;
            }
            let bytes = keys.iter().find(|(x, _, _)| *x == kk).map_or(4, |e| e.1);
            let fit = free
                .iter()
                .enumerate()
                .filter(|(_, &b)| plan.buffer_bytes[b] >= bytes)
                .min_by_key(|(_, &b)| plan.buffer_bytes[b])
                .map(|(pos, _)| pos);
            let buf = match fit {
                Some(pos) => free.swap_remove(pos),
                None => {
                    plan.buffer_bytes.push(bytes);
                    plan.buffer_bytes.len() - 1
                }
            };
            let value = match &kk {
                Key::Value(v) => Some(crate::ir::ValueId(*v)),
                Key::Scratch(_) => None,
            };
            plan.values.push((value, buf, bytes));
            assigned.push((kk, buf));
        }
        for (kk, _, last) in &keys {
            if *last == ki {
                if let Some((_, b)) = assigned.iter().find(|(x, _)| x == kk) {
                    free.push(*b);
                }
            }
        }
    }
    let lookup = |kk: &Key| assigned.iter().find(|(x, _)| x == kk).map(|e| e.1);
    for k in kernels.iter_mut() {
        for b in k.inputs.iter_mut().chain(k.outputs.iter_mut()) {
            if let Some(idx) = key(b).and_then(|kk| lookup(&kk)) {
                b.buffer = BufferRef::Planned(idx);
            }
        }
    }
    for r in roots.iter_mut() {
        if let BufferRef::Planned(_) = r.buffer {
            if let Some(idx) = lookup(&Key::Value(r.value.0)) {
                r.buffer = BufferRef::Planned(idx);
            }
        }
    }
    plan.peak_bytes = plan.buffer_bytes.iter().sum();
    plan
}
