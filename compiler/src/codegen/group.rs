//! Horizontal fusion: independent kernels of the same size that become ready at the same
//! moment run as one launch. Two families group:
//!
//! - matmuls reading the same A operand with the same `(batch, M, N, K)` (q, k and v from
//!   one normed input; the weight gradients `Xᵀ·dQ`, `Xᵀ·dK`, `Xᵀ·dV`): one kernel
//!   accumulates them side by side and loads A once;
//! - index-map kernels with the same element count (rotating k while permuting v for
//!   attention): one invocation per element stores each.
//!
//! Roots are siblings when the newest kernel they read from is the same one (or none), so
//! running them together moves none of them before its inputs and keeps buffer lifetimes
//! short. Groups are capped so register and binding pressure stay modest; a group whose
//! kernel binds too many buffers is launched member by member instead (see `compile`).

use super::fusion::{matmul_k, op_class, FusionPlan, OpClass, Storage};
use crate::ir::{numel, Graph, Op, ValueId};

/// Products one matmul kernel may accumulate (16 accumulators each).
const MAX_MATMULS: usize = 3;
/// Values one elementwise kernel may store.
const MAX_ELEMENTWISE: usize = 4;

/// What a kernel root can be grouped with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Family {
    /// Matmul products of this A operand and `(output shape, K)`.
    Matmul {
        a: ValueId,
        shape: Vec<usize>,
        k: usize,
    },
    /// Index-map values of this many elements.
    Elementwise(usize),
}

/// The family of kernel root `v`, if it groups at all.
fn family(g: &Graph, plan: &FusionPlan, v: ValueId) -> Option<Family> {
    let hosted = plan.epilogue_of(v);
    let products = match (&g.node(v).op, hosted.is_empty()) {
        (Op::MatMul { .. }, true) => vec![v],
        (_, false) => hosted,
        _ if op_class(g, v) == OpClass::IndexMap => {
            return Some(Family::Elementwise(numel(g.shape(v))))
        }
        _ => return None,
    };
    let a = g.node(products[0]).inputs[0];
    products
        .iter()
        .all(|&m| g.node(m).inputs[0] == a)
        .then(|| Family::Matmul {
            a,
            shape: g.shape(products[0]).to_vec(),
            k: matmul_k(g, products[0]),
        })
}

/// The stored values (buffer owners) the kernel of root `v` reads, directly or through
/// inlined producers and hosted matmuls.
fn reads(g: &Graph, plan: &FusionPlan, v: ValueId) -> Vec<ValueId> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let mut stack: Vec<ValueId> = g.node(v).inputs.clone();
    while let Some(x) = stack.pop() {
        if seen.contains(&x) {
            continue;
        }
        seen.push(x);
        match plan.storage[x.index()] {
            Storage::Inline | Storage::Epilogue(_) => stack.extend(&g.node(x).inputs),
            _ if plan.is_stored(x) => out.push(plan.owner(x)),
            _ => {}
        }
    }
    out
}

/// The kernel schedule: groups of kernel roots in launch order (most of them singletons).
/// With `enabled` false every root is its own group.
pub(super) fn schedule(g: &Graph, plan: &FusionPlan, enabled: bool) -> Vec<Vec<ValueId>> {
    let mut groups: Vec<Vec<ValueId>> = Vec::new();
    // Per open group: its family and the newest group its members read from.
    let mut keys: Vec<(Option<Family>, Option<usize>)> = Vec::new();
    // The group that computes each stored value.
    let mut group_of = vec![None; g.len()];
    for v in plan.kernel_roots() {
        let fam = if enabled { family(g, plan, v) } else { None };
        let newest = reads(g, plan, v)
            .into_iter()
            .filter_map(|o| group_of[o.index()])
            .max();
        let cap = match fam {
            Some(Family::Matmul { .. }) => MAX_MATMULS,
            _ => MAX_ELEMENTWISE,
        };
        let joined = fam.as_ref().and_then(|f| {
            keys.iter().zip(&groups).position(|((kf, kn), members)| {
                kf.as_ref() == Some(f) && *kn == newest && members.len() < cap
            })
        });
        let gi = match joined {
            Some(gi) => {
                groups[gi].push(v);
                gi
            }
            None => {
                groups.push(vec![v]);
                keys.push((fam, newest));
                groups.len() - 1
            }
        };
        group_of[v.index()] = Some(gi);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::plan_fusion;
    use crate::ir::{DType, GraphBuilder};

    #[test]
    fn siblings_sharing_an_operand_group_and_dependents_do_not() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[6, 8], DType::F32);
        let wq = b.input("wq", &[8, 8], DType::F32);
        let wk = b.input("wk", &[8, 8], DType::F32);
        let wv = b.input("wv", &[8, 8], DType::F32);
        let w2 = b.input("w2", &[8, 8], DType::F32);
        let q = b.matmul(x, wq).unwrap();
        let k = b.matmul(x, wk).unwrap();
        let v = b.matmul(x, wv).unwrap();
        // Reads q: must not join q's group.
        let q2 = b.matmul(q, w2).unwrap();
        let kt = b.permute(k, &[1, 0]).unwrap();
        let vt = b.permute(v, &[1, 0]).unwrap();
        for (n, o) in [("q2", q2), ("kt", kt), ("vt", vt)] {
            b.output(n, o);
        }
        let g = b.finish().unwrap();
        let plan = plan_fusion(
            &g,
            &[q2, kt, vt],
            &crate::codegen::CodegenOptions::default(),
            &[],
        );
        let s = schedule(&g, &plan, true);
        assert_eq!(s, vec![vec![q, k, v], vec![q2], vec![kt, vt]]);
        let off = schedule(&g, &plan, false);
        assert!(off.iter().all(|grp| grp.len() == 1));
        assert_eq!(off.len(), 6);
    }
}
