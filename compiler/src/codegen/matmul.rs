//! Matmul kernels: batched, broadcast batch dims, transpose flags as strides, 4×4 register
//! tiles per invocation (see `templates/matmul.wgsl` for why no workgroup memory), with an
//! optional prologue (an inlined A operand) and epilogue (an inlined elementwise consumer).
//! One kernel may compute a horizontally fused group of products of the same size.

use super::fusion::Storage;
use super::shader::{dispatch_for, u, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{numel, BinaryOp, DType, Op, ValueId};

const TEMPLATE: &str = include_str!("templates/matmul.wgsl");

/// `Σ_k coord_k(bi) · stride_k`: the element offset of the operand matrix that output batch
/// entry `bi` uses, with broadcast (extent-1) operand axes contributing nothing.
fn batch_offset(out_batch: &[usize], operand_batch: &[usize], matrix: usize) -> String {
    let off = out_batch.len() - operand_batch.len();
    let mut terms = Vec::new();
    let mut out_stride = 1;
    let mut op_stride = matrix;
    let mut out_strides = vec![0; out_batch.len()];
    for k in (0..out_batch.len()).rev() {
        out_strides[k] = out_stride;
        out_stride *= out_batch[k];
    }
    for k in (0..operand_batch.len()).rev() {
        let ext = operand_batch[k];
        if ext != 1 {
            let ok = off + k;
            let coord = if ok == 0 {
                format!("(bi / {})", u(out_strides[ok]))
            } else {
                format!("((bi / {}) % {})", u(out_strides[ok]), u(out_batch[ok]))
            };
            terms.push(format!("{coord} * {}", u(op_stride)));
        }
        op_stride *= ext;
    }
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// One product of a matmul kernel: its operands' functions and layout.
struct Product {
    value: ValueId,
    a: String,
    /// A factor of A constant along each row (a norm's `rsqrt(mean(x²) + eps)`), hoisted
    /// out of the K loop: the accumulated row is multiplied by it once.
    row_factor: Option<String>,
    b: String,
    /// op(A) as m×k and op(B) as k×n in their stored layouts: row and column strides.
    a_rs: usize,
    a_cs: usize,
    b_rs: usize,
    b_cs: usize,
    a_batch: String,
    b_batch: String,
}

/// `(batch, M, N, K)` of matmul `v`.
fn dims(g: &crate::ir::Graph, v: ValueId) -> (usize, usize, usize, usize) {
    let so = g.shape(v);
    let ro = so.len();
    (
        numel(&so[..ro - 2]),
        so[ro - 2],
        so[ro - 1],
        super::fusion::matmul_k(g, v),
    )
}

/// The layout of product `v`; `a_fns` reuses A functions already emitted for its A operand.
fn product_with(
    s: &mut Shader,
    v: ValueId,
    a_fns: Option<(String, Option<String>)>,
) -> Result<Product, CodegenError> {
    let g = s.g;
    let node = g.node(v);
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = node.op
    else {
        return Err(CodegenError::Template {
            template: "matmul".into(),
            message: format!("`{}` is not a matmul", node.op.name()),
        });
    };
    let (sa, sb, so) = (
        g.shape(node.inputs[0]),
        g.shape(node.inputs[1]),
        &node.shape,
    );
    let (ra, rb, ro) = (sa.len(), sb.len(), so.len());
    let (_, m, n, k) = dims(g, v);
    let (a_rs, a_cs) = if transpose_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if transpose_b { (1, k) } else { (n, 1) };
    let (a, row_factor) = match (a_fns, transpose_a) {
        (Some(fns), _) => fns,
        (None, false) => a_with_row_factor(s, node.inputs[0]),
        (None, true) => (s.value_fn(node.inputs[0]), None),
    };
    Ok(Product {
        value: v,
        a,
        row_factor,
        b: s.value_fn(node.inputs[1]),
        a_rs,
        a_cs,
        b_rs,
        b_cs,
        a_batch: batch_offset(&so[..ro - 2], &sa[..ra - 2], m * k),
        b_batch: batch_offset(&so[..ro - 2], &sb[..rb - 2], k * n),
    })
}

/// The A operand's load function and, when A is an inlined product with factors constant
/// along its rows (broadcast over the last axis, K), a separate function for those factors:
/// `Σ_k r_m·x_mk·w_k·B_kn = r_m · Σ_k x_mk·w_k·B_kn`, so an RMSNorm prologue costs two loads
/// and a multiply per element instead of a square root and a division.
fn a_with_row_factor(s: &mut Shader, a: ValueId) -> (String, Option<String>) {
    let g = s.g;
    let shape = g.shape(a).to_vec();
    let is_inline_mul = |v: ValueId| {
        s.plan.storage[v.index()] == Storage::Inline
            && g.node(v).op == Op::Binary(BinaryOp::Mul)
            && g.dtype(v) == DType::F32
    };
    if !is_inline_mul(a) {
        return (s.value_fn(a), None);
    }
    let mut leaves = Vec::new();
    let mut stack = vec![a];
    while let Some(v) = stack.pop() {
        if is_inline_mul(v) {
            stack.extend(g.node(v).inputs.iter().rev());
        } else {
            leaves.push(v);
        }
    }
    let per_row = |v: &ValueId| g.shape(*v).last().is_none_or(|&d| d == 1);
    let (rows, rest): (Vec<ValueId>, Vec<ValueId>) = leaves.into_iter().partition(per_row);
    if rows.is_empty() || rest.is_empty() {
        return (s.value_fn(a), None);
    }
    let mut product = |name: String, factors: &[ValueId]| {
        let terms: Vec<String> = factors
            .iter()
            .map(|&f| {
                let idx = super::expr::broadcast_index("i", &shape, g.shape(f));
                format!("{}({idx})", s.value_fn(f))
            })
            .collect();
        s.function(format!(
            "// {a} without its per-row factors, or those factors\nfn {name}(i: u32) -> f32 {{\n    return {};\n}}",
            terms.join(" * ")
        ));
        name
    };
    let main = product(format!("a_rest_{}", a.0), &rest);
    let row = product(format!("a_row_{}", a.0), &rows);
    (main, Some(row))
}

/// `vec4(f(base.x + off), …, f(base.w + off))`.
fn load4(f: &str, base: &str, off: &str) -> String {
    let lane = |l: &str| format!("{f}({base}.{l} + {off})");
    format!(
        "vec4<f32>({}, {}, {}, {})",
        lane("x"),
        lane("y"),
        lane("z"),
        lane("w")
    )
}

/// The kernel computing `roots`: each a matmul stored as is, or the host of matmul
/// epilogues (see `Storage::Epilogue`), whose elementwise chain runs on the accumulators
/// and is stored instead of the products. Every product in one kernel has the same
/// `(batch, M, N, K)` ([`super::group`] only groups such roots). Operands are read through
/// their value functions, so an inlined A (a prologue such as a norm's scale) is evaluated
/// at each load.
pub(super) fn kernel(mut s: Shader, roots: &[ValueId]) -> Result<Kernel, CodegenError> {
    let g = s.g;
    let plan = s.plan;
    // (root, the products it stores: itself, or the matmuls its epilogue consumes)
    let stores: Vec<(ValueId, Vec<ValueId>)> = roots
        .iter()
        .map(|&r| {
            let hosted = plan.epilogue_of(r);
            (r, if hosted.is_empty() { vec![r] } else { hosted })
        })
        .collect();
    let mut products: Vec<Product> = Vec::new();
    for (_, ms) in &stores {
        for &m in ms {
            let a = g.node(m).inputs[0];
            // Products sharing an A operand share its functions (emitted once).
            let shared = products.iter().find(|p| g.node(p.value).inputs[0] == a);
            let p = match shared {
                Some(p)
                    if !matches!(
                        g.node(m).op,
                        Op::MatMul {
                            transpose_a: true,
                            ..
                        }
                    ) =>
                {
                    let fns = (p.a.clone(), p.row_factor.clone());
                    product_with(&mut s, m, Some(fns))?
                }
                _ => product_with(&mut s, m, None)?,
            };
            products.push(p);
        }
    }
    let (batch, m, n, k) = dims(g, products[0].value);
    // Loads of A shared by several products happen once per k.
    let mut a_loads: Vec<(String, usize, usize, String)> = Vec::new();
    let (mut setup, mut step, mut tiles) = (Vec::new(), Vec::new(), Vec::new());
    for (j, p) in products.iter().enumerate() {
        let key = (p.a.clone(), p.a_rs, p.a_cs, p.a_batch.clone());
        let ai = match a_loads.iter().position(|x| *x == key) {
            Some(ai) => ai,
            None => {
                let ai = a_loads.len();
                setup.push(format!(
                    "    let ra{ai} = rows * {} + vec4<u32>({});",
                    u(p.a_rs),
                    p.a_batch
                ));
                step.push(format!(
                    "        let a{ai} = {};",
                    load4(&p.a, &format!("ra{ai}"), &format!("k * {}", u(p.a_cs)))
                ));
                a_loads.push(key);
                ai
            }
        };
        setup.push(format!(
            "    let cb{j} = cols * {} + vec4<u32>({});",
            u(p.b_cs),
            p.b_batch
        ));
        for r in 0..4 {
            setup.push(format!("    var acc{j}_{r} = vec4<f32>(0.0);"));
        }
        step.push(format!(
            "        let b{j} = {};",
            load4(&p.b, &format!("cb{j}"), &format!("k * {}", u(p.b_rs)))
        ));
        for (r, l) in ["x", "y", "z", "w"].iter().enumerate() {
            step.push(format!(
                "        acc{j}_{r} = acc{j}_{r} + a{ai}.{l} * b{j};"
            ));
        }
        let row = |r: usize, l: &str| match &p.row_factor {
            Some(f) => format!("acc{j}_{r} * {f}(ra{ai}.{l})"),
            None => format!("acc{j}_{r}"),
        };
        tiles.push(format!(
            "    let tile{j} = array<vec4<f32>, 4>({}, {}, {}, {});",
            row(0, "x"),
            row(1, "y"),
            row(2, "z"),
            row(3, "w")
        ));
    }
    let tile_of = |v: ValueId| products.iter().position(|p| p.value == v).unwrap_or(0);
    let mut store = Vec::new();
    for (root, ms) in &stores {
        let out = s.write(*root);
        if plan.epilogue_of(*root).is_empty() {
            store.push(format!(
                "                {out}[idx] = tile{}[r][c];",
                tile_of(*root)
            ));
            continue;
        }
        for &mm in ms {
            s.private_f32(&super::shader::accumulator(mm));
            store.push(format!(
                "                {} = tile{}[r][c];",
                super::shader::accumulator(mm),
                tile_of(mm)
            ));
        }
        let body = super::expr::inline_body(&mut s, *root);
        s.function(format!(
            "// epilogue: {root}\nfn epilogue_{}(i: u32) -> f32 {{\n{body}\n}}",
            root.0
        ));
        store.push(format!(
            "                {out}[idx] = epilogue_{}(idx);",
            root.0
        ));
    }
    for (name, v) in [
        ("M", m),
        ("N", n),
        ("K", k),
        ("BATCH", batch),
        ("TILES_M", m.div_ceil(4)),
        ("TILES_N", n.div_ceil(4)),
    ] {
        s.const_u32(name, v);
    }
    let main = Template::new("matmul", TEMPLATE)
        .set("WG", WORKGROUP.to_string())
        .set("SETUP", setup.join("\n"))
        .set("STEP", step.join("\n"))
        .set("TILES", tiles.join("\n"))
        .set("STORE", store.join("\n"))
        .render()?;
    let items = batch * m.div_ceil(4) * n.div_ceil(4);
    Ok(s.finish(main, WORKGROUP, dispatch_for(items), roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_offsets_skip_broadcast_axes() {
        assert_eq!(batch_offset(&[2, 3], &[], 12), "0u");
        assert_eq!(batch_offset(&[2, 3], &[3], 12), "((bi / 1u) % 3u) * 12u");
        assert_eq!(batch_offset(&[2, 3], &[2, 1], 12), "(bi / 3u) * 12u");
    }

    #[test]
    fn a_norms_row_scale_leaves_the_k_loop_and_siblings_load_a_once() {
        use crate::codegen::{compile, CodegenOptions};
        use crate::ir::GraphBuilder;
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 3, 8], DType::F32);
        let w = b.input("w", &[8], DType::F32);
        let n = b.rms_norm(x, w, 1e-6).unwrap();
        let wq = b.input("wq", &[8, 8], DType::F32);
        let wk = b.input("wk", &[8, 8], DType::F32);
        let q = b.matmul(n, wq).unwrap();
        let k = b.matmul(n, wk).unwrap();
        b.output("q", q);
        b.output("k", k);
        let g = b.finish().unwrap();
        let p = compile(&g, &[], &CodegenOptions::default()).unwrap();
        let mm: Vec<_> = p
            .kernels
            .iter()
            .filter(|k| k.name.starts_with("matmul_"))
            .collect();
        assert_eq!(mm.len(), 1, "q and k share one kernel");
        let src = &mm[0].wgsl;
        let k_loop = &src[src.find("for (var k = 0u").unwrap()..src.find("let tile0").unwrap()];
        assert!(!k_loop.contains("sqrt"), "{k_loop}");
        assert_eq!(k_loop.matches("let a0 =").count(), 1, "{k_loop}");
        assert!(!k_loop.contains("let a1 ="), "{k_loop}");
        assert!(src.contains("fn a_row_"), "{src}");
    }
}
