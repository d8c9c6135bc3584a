//! Lane kernels: reductions, log-sum-exp, cross-entropy, softmax, scans, top-k and
//! scatter-add. One invocation per lane (or per output element for scatter-add); inputs are
//! read through their value functions, so an elementwise prologue fuses in.

use super::shader::{dispatch_for, dispatch_groups, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{numel, DType, Op, ReduceOp, ValueId};

const REDUCE: &str = include_str!("templates/reduce.wgsl");
const REDUCE_WIDE: &str = include_str!("templates/reduce_wide.wgsl");
const LOGSUMEXP: &str = include_str!("templates/logsumexp.wgsl");
const SOFTMAX: &str = include_str!("templates/softmax.wgsl");
const SCAN: &str = include_str!("templates/scan.wgsl");
const TOPK: &str = include_str!("templates/topk.wgsl");
const SCATTER: &str = include_str!("templates/scatter_add.wgsl");

/// Lanes at least this long are reduced by a workgroup each (`templates/reduce_wide.wgsl`):
/// one invocation folding a whole lane serially took a quarter of a second for a 4M-element
/// sum on an H200 (BENCHMARKS.md).
pub(super) const WIDE_EXTENT: usize = 1024;

/// Invocations of a wide reduction's workgroup (at most `WIDE_EXTENT`).
const WIDE_WORKGROUP: u32 = 256;

/// `(outer, extent, inner)` of `shape` around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// The kernel computing lane op `root`.
pub(super) fn kernel(mut s: Shader, root: ValueId) -> Result<Kernel, CodegenError> {
    let g = s.g;
    let node = g.node(root);
    let x = node.inputs[0];
    let xs = g.shape(x).to_vec();
    let load = s.value_fn(x);
    let out = s.write(root);
    let wg = WORKGROUP.to_string();
    // Lane ops over `axis`: declare the lane geometry once.
    let lanes = |s: &mut Shader, axis: usize| {
        let (outer, extent, inner) = split(&xs, axis);
        s.const_u32("LANES", outer * inner);
        s.const_u32("EXTENT", extent);
        s.const_u32("INNER", inner);
        outer * inner
    };
    let (main, items) = match &node.op {
        Op::Reduce { op, axis, .. } => {
            let items = lanes(&mut s, *axis);
            let (combine, result) = match op {
                ReduceOp::Sum => ("acc = acc + x;", "acc".to_string()),
                ReduceOp::Mean => ("acc = acc + x;", "acc / f32(EXTENT)".to_string()),
                ReduceOp::Max => ("if (x > acc) { acc = x; }", "acc".to_string()),
            };
            if xs[*axis] >= WIDE_EXTENT && node.dtype == DType::F32 {
                let t = Template::new("reduce_wide", REDUCE_WIDE)
                    .set("WG", WIDE_WORKGROUP.to_string())
                    .set("LOAD", load)
                    .set("COMBINE", combine)
                    .set("RESULT", result)
                    .set("OUT", out);
                let main = t.render()?;
                return Ok(s.finish(main, WIDE_WORKGROUP, dispatch_groups(items), &[root]));
            }
            let t = Template::new("reduce", REDUCE)
                .set("WG", wg)
                .set("LOAD", load)
                .set("COMBINE", combine)
                .set("RESULT", result)
                .set("OUT", out);
            (t.render()?, items)
        }
        Op::ArgMax { axis, .. } => {
            let items = lanes(&mut s, *axis);
            let t = Template::new("reduce", REDUCE)
                .set("WG", wg)
                .set("LOAD", load)
                .set("COMBINE", "if (x > acc) { acc = x; arg = j; }")
                .set("RESULT", "i32(arg)")
                .set("OUT", out);
            (t.render()?, items)
        }
        Op::LogSumExp { axis, .. } => {
            let items = lanes(&mut s, *axis);
            let t = Template::new("logsumexp", LOGSUMEXP)
                .set("WG", wg)
                .set("LOAD", load.clone())
                .set("STORE", format!("{out}[lane] = lse;"));
            (t.render()?, items)
        }
        Op::CrossEntropy => {
            let items = lanes(&mut s, 1);
            let target = s.value_fn(node.inputs[1]);
            // Ignored rows (t < 0) give 0; an id past the vocabulary too (the CPU reports it).
            let store = format!(
                "let tg = {target}(lane);\n    \
                 if (tg < 0i || tg >= i32(EXTENT)) {{ {out}[lane] = 0.0; }} else {{\n        \
                 {out}[lane] = lse - {load}(base + u32(tg));\n    }}"
            );
            let t = Template::new("logsumexp", LOGSUMEXP)
                .set("WG", wg)
                .set("LOAD", load.clone())
                .set("STORE", store);
            (t.render()?, items)
        }
        Op::Softmax { axis } => {
            let items = lanes(&mut s, *axis);
            let t = Template::new("softmax", SOFTMAX)
                .set("WG", wg)
                .set("LOAD", load)
                .set("OUT", out);
            (t.render()?, items)
        }
        Op::CumSum { axis, reverse } => {
            let items = lanes(&mut s, *axis);
            let order = if *reverse { "EXTENT - 1u - jj" } else { "jj" };
            let zero = match node.dtype {
                DType::I32 => "0i",
                _ => "0.0",
            };
            let t = Template::new("scan", SCAN)
                .set("WG", wg)
                .set("LOAD", load)
                .set("ORDER", order)
                .set("ZERO", zero)
                .set("OUT", out);
            (t.render()?, items)
        }
        Op::TopKMask { k, axis } => {
            let items = lanes(&mut s, *axis);
            s.const_u32("K", *k);
            let t = Template::new("topk", TOPK)
                .set("WG", wg)
                .set("LOAD", load)
                .set("OUT", out);
            (t.render()?, items)
        }
        Op::ScatterAdd { rows } => {
            let ids = node.inputs[1];
            let n_ids = numel(g.shape(ids));
            let row = numel(&xs) / n_ids.max(1);
            let idf = s.value_fn(ids);
            s.const_u32("N", rows * row);
            s.const_u32("ROW", row.max(1));
            s.const_u32("IDS", n_ids);
            let t = Template::new("scatter_add", SCATTER)
                .set("WG", wg)
                .set("IDS", idf)
                .set("SRC", load)
                .set("OUT", out);
            (t.render()?, rows * row)
        }
        other => {
            return Err(CodegenError::Template {
                template: "lane".into(),
                message: format!("`{}` is not a lane op", other.name()),
            })
        }
    };
    Ok(s.finish(main, WORKGROUP, dispatch_for(items), &[root]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::{compile, CodegenOptions};
    use crate::ir::{GraphBuilder, ReduceOp};

    /// Long f32 lanes get a workgroup each (validated by naga and the barrier check); short
    /// lanes and i32 ones keep one invocation per lane.
    #[test]
    fn long_lanes_are_reduced_by_a_workgroup_each() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, WIDE_EXTENT + 5, 3], DType::F32);
        let xi = b.input("xi", &[2, WIDE_EXTENT + 5, 3], DType::I32);
        let short = b.input("short", &[4, WIDE_EXTENT - 1], DType::F32);
        for (name, v, axis) in [("wide", x, 1), ("int", xi, 1), ("short", short, 1)] {
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                if op == ReduceOp::Mean && v == xi {
                    continue;
                }
                let y = b.reduce(op, v, axis, false).unwrap();
                b.output(&format!("{name}_{op:?}"), y);
            }
        }
        let g = b.finish().unwrap();
        let opts = CodegenOptions {
            fuse: false,
            ..CodegenOptions::default()
        };
        let p = compile(&g, &[], &opts).unwrap();
        let reduces: Vec<_> = p
            .kernels
            .iter()
            .filter(|k| k.name.starts_with("reduce"))
            .collect();
        assert_eq!(reduces.len(), 8);
        let wide: Vec<_> = reduces
            .iter()
            .filter(|k| k.wgsl.contains("workgroupBarrier()"))
            .collect();
        assert_eq!(wide.len(), 3, "only the long f32 lanes");
        for k in wide {
            assert_eq!(k.workgroup_size, WIDE_WORKGROUP);
            // One workgroup per lane: 2 × 3 lanes.
            assert_eq!(k.dispatch, [6, 1, 1], "{}", k.name);
        }
    }
}
