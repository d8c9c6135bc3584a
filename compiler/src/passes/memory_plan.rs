//! Memory planning: assigns every computed value a buffer, reusing buffers whose values are
//! dead (liveness over the arena's topological schedule), and reports the peak.

use crate::ir::{numel, Graph, Op, ValueId};

/// Buffer assignment for one graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Execution order (the arena order, which is topological).
    pub schedule: Vec<ValueId>,
    /// Buffer of each value; `None` for inputs, params and constants, which live in buffers
    /// owned by the caller (uploaded once, not planned).
    pub buffer_of: Vec<Option<usize>>,
    /// Capacity in bytes of each planned buffer.
    pub buffer_bytes: Vec<usize>,
    /// Bytes allocated for computed values: the sum of buffer capacities (all buffers are
    /// allocated up front, so this is the peak).
    pub peak_bytes: usize,
    /// What the computed values would take with one buffer each.
    pub unshared_bytes: usize,
}

/// Plans buffers for `g`. With `reuse = false` every value gets its own buffer (the
/// baseline the tests compare against).
///
/// A value is live from its node until its last reader; outputs and hooks live to the end.
/// A buffer is released only after the reading node has been assigned its output, so no
/// node ever writes the buffer it reads. Allocation is best fit; if no free buffer is large
/// enough, the largest free one grows (cheaper than a new buffer).
pub fn plan_memory(g: &Graph, reuse: bool) -> MemoryPlan {
    let n = g.len();
    let mut last = g.last_uses();
    for v in g.roots() {
        last[v.index()] = Some(n);
    }
    // Values released after each step.
    let mut dies_at: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, l) in last.iter().enumerate() {
        match l {
            Some(step) if *step < n => dies_at[*step].push(v),
            Some(_) => {}
            // Never read and not a root: free right after it is written.
            None => dies_at[v].push(v),
        }
    }
    let mut buffer_of = vec![None; n];
    let mut buffer_bytes: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut unshared = 0;
    for (i, node) in g.nodes.iter().enumerate() {
        let external = matches!(
            node.op,
            Op::Input { .. } | Op::Param { .. } | Op::Const { .. }
        );
        if !external {
            let bytes = numel(&node.shape) * node.dtype.size_bytes();
            unshared += bytes;
            let pick = if reuse {
                let fit = free
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| buffer_bytes[b] >= bytes)
                    .min_by_key(|(_, &b)| buffer_bytes[b]);
                let any = free
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, &b)| buffer_bytes[b]);
                fit.or(any).map(|(pos, _)| pos)
            } else {
                None
            };
            let b = match pick {
                Some(pos) => free.swap_remove(pos),
                None => {
                    buffer_bytes.push(0);
                    buffer_bytes.len() - 1
                }
            };
            buffer_bytes[b] = buffer_bytes[b].max(bytes);
            buffer_of[i] = Some(b);
        }
        for &v in &dies_at[i] {
            if let Some(b) = buffer_of[v] {
                free.push(b);
            }
        }
    }
    MemoryPlan {
        schedule: g.ids().collect(),
        buffer_of,
        peak_bytes: buffer_bytes.iter().sum(),
        buffer_bytes,
        unshared_bytes: unshared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder};

    /// A chain of 8 elementwise ops on a [64,64] tensor plus a hook in the middle.
    fn chain() -> Graph {
        let mut b = GraphBuilder::new();
        let mut x = b.input("x", &[64, 64], DType::F32);
        for i in 0..8 {
            x = if i % 2 == 0 {
                b.exp(x).unwrap()
            } else {
                b.tanh(x).unwrap()
            };
            if i == 3 {
                b.hook("mid", x);
            }
        }
        b.output("y", x);
        b.finish().unwrap()
    }

    #[test]
    fn reuse_lowers_peak() {
        let g = chain();
        let plain = plan_memory(&g, false);
        let reused = plan_memory(&g, true);
        let bytes = 64 * 64 * 4;
        assert_eq!(plain.peak_bytes, 8 * bytes);
        assert_eq!(plain.unshared_bytes, 8 * bytes);
        // Ping-pong between two buffers, plus one pinned by the hook.
        assert_eq!(reused.peak_bytes, 3 * bytes, "{reused:?}");
    }

    #[test]
    fn live_values_never_share_a_buffer() {
        let g = chain();
        let plan = plan_memory(&g, true);
        let mut last = g.last_uses();
        for v in g.roots() {
            last[v.index()] = Some(g.len());
        }
        for (a, last_a) in last.iter().enumerate() {
            for b in a + 1..g.len() {
                let (Some(ba), Some(bb)) = (plan.buffer_of[a], plan.buffer_of[b]) else {
                    continue;
                };
                // b is written while a is still needed at or after step b ⇒ different buffers.
                if last_a.unwrap_or(a) >= b {
                    assert_ne!(ba, bb, "%{a} and %{b} overlap in buffer {ba}");
                }
            }
        }
    }

    #[test]
    fn inputs_and_constants_are_not_planned() {
        let g = chain();
        let plan = plan_memory(&g, true);
        assert_eq!(plan.buffer_of[0], None);
        assert!(plan.buffer_of[1..].iter().all(Option::is_some));
    }
}
