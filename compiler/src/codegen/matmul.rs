//! Matmul kernels: batched, broadcast batch dims, transpose flags as strides, with an
//! optional prologue (an inlined A operand) and epilogue (an inlined elementwise consumer).
//! One kernel may compute a horizontally fused group of products of the same size.
//! Two tilings ([`TileConfig`], chosen per shape by `CodegenOptions::tiles`): register tiles
//! per invocation (`templates/matmul.wgsl`, no workgroup memory) or workgroup blocks staged
//! through workgroup memory (`templates/matmul_shared.wgsl`). Both share the operand
//! functions, the hoisted row factor, the per-product accumulators and the store/epilogue
//! code generated here; only the K loop differs.

use super::fusion::Storage;
use super::shader::{dispatch_groups, u, Shader};
use super::template::Template;
use super::tiling::{MatmulShape, TileConfig, SLICE_PAD};
use super::{CodegenError, CodegenOptions, Kernel};
use crate::ir::{numel, BinaryOp, DType, Op, ValueId};

const TEMPLATE: &str = include_str!("templates/matmul.wgsl");
const TEMPLATE_SHARED: &str = include_str!("templates/matmul_shared.wgsl");

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
///
/// The tiling is `opts.tiles`' choice for the kernel's [`MatmulShape`]. A workgroup-tiled
/// choice the adapter cannot hold (more invocations or workgroup memory than
/// `opts.max_invocations_per_workgroup` / `opts.max_workgroup_storage_bytes`, e.g. three
/// products' B slices at once) falls back to the default register kernel; the kernel
/// records what it used ([`Kernel::tile`]).
pub(super) fn kernel(
    mut s: Shader,
    roots: &[ValueId],
    opts: &CodegenOptions,
) -> Result<Kernel, CodegenError> {
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
    let shape = shape_of(g, products[0].value, products.len());
    let MatmulShape { batch, m, n, k, .. } = shape;
    // Each distinct A (function and layout) is loaded, or staged, once per k.
    let mut a_keys: Vec<(String, usize, usize, String)> = Vec::new();
    let a_of: Vec<usize> = products
        .iter()
        .map(|p| {
            let key = (p.a.clone(), p.a_rs, p.a_cs, p.a_batch.clone());
            a_keys.iter().position(|x| *x == key).unwrap_or_else(|| {
                a_keys.push(key);
                a_keys.len() - 1
            })
        })
        .collect();
    let mut config = opts.tiles.get(&shape);
    config.check().map_err(|message| CodegenError::Template {
        template: "matmul".into(),
        message: format!("kernel `{}`: {message}", s.name()),
    })?;
    if config.invocations() > opts.max_invocations_per_workgroup
        || config.workgroup_bytes(a_keys.len(), products.len())
            > u64::from(opts.max_workgroup_storage_bytes)
    {
        config = TileConfig::default();
    }
    let tm = config.rows() as usize;
    // vec4 column chunks per invocation.
    let cv = config.cols() as usize / 4;
    let wg = config.invocations();
    let (block_m, block_n) = match config {
        TileConfig::Workgroup { bm, bn, .. } => (bm as usize, bn as usize),
        TileConfig::Register { rows, .. } => (rows as usize, 4 * cv),
    };
    let lanes = ["x", "y", "z", "w"];
    let shared = matches!(config, TileConfig::Workgroup { .. });
    let mut rows: Vec<String> = (0..tm / 4)
        .map(|h| {
            format!(
                "    let rows{h} = min(vec4<u32>(m0) + vec4<u32>({}u, {}u, {}u, {}u), vec4<u32>(M - 1u));",
                4 * h,
                4 * h + 1,
                4 * h + 2,
                4 * h + 3
            )
        })
        .collect();
    if !shared {
        // The register kernel's column chunks are adjacent.
        rows.extend((0..cv).map(|c| {
            format!(
                "    let cols{c} = min(vec4<u32>(n0 + {}u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(N - 1u));",
                4 * c
            )
        }));
    }
    let (mut setup, mut stage, mut step, mut tiles) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut shared_decls = Vec::new();
    for (ai, (a, a_rs, a_cs, a_batch)) in a_keys.iter().enumerate() {
        for h in 0..tm / 4 {
            setup.push(format!(
                "    let ra{ai}_{h} = rows{h} * {} + vec4<u32>({a_batch});",
                u(*a_rs)
            ));
        }
        if !shared {
            for h in 0..tm / 4 {
                step.push(format!(
                    "        let a{ai}_{h} = {};",
                    load4(a, &format!("ra{ai}_{h}"), &format!("k * {}", u(*a_cs)))
                ));
            }
            continue;
        }
        // vec4 elements, so the K loop reads four rows (or columns) in one load.
        shared_decls.push(format!(
            "var<workgroup> sa{ai}: array<vec4<f32>, BK * SA / 4u>;"
        ));
        setup.push(format!("    let ab{ai} = {a_batch};"));
        // Consecutive invocations walk the operand's contiguous axis (coalesced loads).
        let (r, kk) = if *a_cs == 1 {
            ("e / BK", "e % BK")
        } else {
            ("e % BM", "e / BM")
        };
        stage.push(format!(
            "        for (var e = lid; e < BM * BK; e = e + {wg}u) {{
            let r = {r};
            let kk = {kk};
            let k = k0 + kk;
            let v = {a}(ab{ai} + min(bm0 + r, M - 1u) * {} + min(k, K - 1u) * {});
            let i = kk * SA + r;
            sa{ai}[i / 4u][i % 4u] = select(0.0, v, k < K);
        }}",
            u(*a_rs),
            u(*a_cs)
        ));
        for h in 0..tm / 4 {
            step.push(format!(
                "            let a{ai}_{h} = sa{ai}[(kk * SA + lr) / 4u + {h}u];"
            ));
        }
    }
    for (j, p) in products.iter().enumerate() {
        let ai = a_of[j];
        // acc{j}_{t}: row t / cv, column chunk t % cv.
        for t in 0..tm * cv {
            setup.push(format!("    var acc{j}_{t} = vec4<f32>(0.0);"));
        }
        let indent = if shared { "            " } else { "        " };
        if shared {
            shared_decls.push(format!(
                "var<workgroup> sb{j}: array<vec4<f32>, BK * SB / 4u>;"
            ));
            setup.push(format!("    let bb{j} = {};", p.b_batch));
            let (c, kk) = if p.b_cs == 1 {
                ("e % BN", "e / BN")
            } else {
                ("e / BK", "e % BK")
            };
            stage.push(format!(
                "        for (var e = lid; e < BK * BN; e = e + {wg}u) {{
            let c = {c};
            let kk = {kk};
            let k = k0 + kk;
            let v = {}(bb{j} + min(k, K - 1u) * {} + min(bn0 + c, N - 1u) * {});
            let i = kk * SB + c;
            sb{j}[i / 4u][i % 4u] = select(0.0, v, k < K);
        }}",
                p.b,
                u(p.b_rs),
                u(p.b_cs)
            ));
            // Chunk c of this invocation's columns is c·BN/cv columns right of its first.
            for c in 0..cv {
                step.push(format!(
                    "{indent}let b{j}_{c} = sb{j}[(kk * SB + lc) / 4u + {}u];",
                    c * block_n / (4 * cv)
                ));
            }
        } else {
            for c in 0..cv {
                setup.push(format!(
                    "    let cb{j}_{c} = cols{c} * {} + vec4<u32>({});",
                    u(p.b_cs),
                    p.b_batch
                ));
                step.push(format!(
                    "{indent}let b{j}_{c} = {};",
                    load4(&p.b, &format!("cb{j}_{c}"), &format!("k * {}", u(p.b_rs)))
                ));
            }
        }
        for t in 0..tm * cv {
            let (r, c) = (t / cv, t % cv);
            step.push(format!(
                "{indent}acc{j}_{t} = acc{j}_{t} + a{ai}_{}.{} * b{j}_{c};",
                r / 4,
                lanes[r % 4]
            ));
        }
        let cell = |t: usize| {
            let r = t / cv;
            match &p.row_factor {
                Some(f) => format!("acc{j}_{t} * {f}(ra{ai}_{}.{})", r / 4, lanes[r % 4]),
                None => format!("acc{j}_{t}"),
            }
        };
        tiles.push(format!(
            "    let tile{j} = array<vec4<f32>, {}>({});",
            tm * cv,
            (0..tm * cv).map(cell).collect::<Vec<_>>().join(", ")
        ));
    }
    let tile_of = |v: ValueId| products.iter().position(|p| p.value == v).unwrap_or(0);
    let indent = if shared {
        "                    "
    } else {
        "                "
    };
    let mut store = Vec::new();
    for (root, ms) in &stores {
        let out = s.write(*root);
        if plan.epilogue_of(*root).is_empty() {
            store.push(format!(
                "{indent}{out}[idx] = tile{}[r * CV + c / 4u][c % 4u];",
                tile_of(*root)
            ));
            continue;
        }
        for &mm in ms {
            s.private_f32(&super::shader::accumulator(mm));
            store.push(format!(
                "{indent}{} = tile{}[r * CV + c / 4u][c % 4u];",
                super::shader::accumulator(mm),
                tile_of(mm)
            ));
        }
        let body = super::expr::inline_body(&mut s, *root);
        s.function(format!(
            "// epilogue: {root}\nfn epilogue_{}(i: u32) -> f32 {{\n{body}\n}}",
            root.0
        ));
        store.push(format!("{indent}{out}[idx] = epilogue_{}(idx);", root.0));
    }
    for (name, v) in [
        ("M", m),
        ("N", n),
        ("K", k),
        ("BATCH", batch),
        ("TM", tm),
        ("TN", 4 * cv),
        ("CV", cv),
        ("TILES_M", m.div_ceil(block_m)),
        ("TILES_N", n.div_ceil(block_n)),
    ] {
        s.const_u32(name, v);
    }
    let blocks = batch * m.div_ceil(block_m) * n.div_ceil(block_n);
    let (main, dispatch) = match config {
        TileConfig::Register { .. } => (
            Template::new("matmul", TEMPLATE)
                .set("WG", wg.to_string())
                .set("ROWS", rows.join("\n"))
                .set("SETUP", setup.join("\n"))
                .set("STEP", step.join("\n"))
                .set("TILES", tiles.join("\n"))
                .set("STORE", store.join("\n"))
                .render()?,
            dispatch_groups(blocks.div_ceil(wg as usize)),
        ),
        TileConfig::Workgroup { bm, bn, bk, .. } => {
            // SA, SB: slice row strides (padded, see `tiling::SLICE_PAD`).
            for (name, v) in [
                ("BM", bm),
                ("BN", bn),
                ("BK", bk),
                ("SA", bm + SLICE_PAD),
                ("SB", bn + SLICE_PAD),
            ] {
                s.const_u32(name, v as usize);
            }
            (
                Template::new("matmul_shared", TEMPLATE_SHARED)
                    .set("WG", wg.to_string())
                    .set("SHARED", shared_decls.join("\n"))
                    .set("ROWS", rows.join("\n"))
                    .set("SETUP", setup.join("\n"))
                    .set("STAGE", stage.join("\n"))
                    .set("STEP", step.join("\n"))
                    .set("TILES", tiles.join("\n"))
                    .set("STORE", store.join("\n"))
                    .render()?,
                dispatch_groups(blocks),
            )
        }
    };
    let mut kernel = s.finish(main, wg, dispatch, roots);
    kernel.matmul = Some(shape);
    kernel.tile = Some(config);
    Ok(kernel)
}

/// The tuning key of a kernel computing `products` products like matmul `v`.
fn shape_of(g: &crate::ir::Graph, v: ValueId, products: usize) -> MatmulShape {
    let (batch, m, n, k) = dims(g, v);
    let (transpose_a, transpose_b) = match g.node(v).op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => (transpose_a, transpose_b),
        _ => (false, false),
    };
    MatmulShape {
        batch,
        m,
        n,
        k,
        transpose_a,
        transpose_b,
        products,
    }
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
        assert_eq!(k_loop.matches("let a0_0 =").count(), 1, "{k_loop}");
        assert!(!k_loop.contains("let a1_0 ="), "{k_loop}");
        assert!(src.contains("fn a_row_"), "{src}");
    }

    #[test]
    fn every_tiling_generates_valid_wgsl_for_every_matmul_form() {
        use crate::codegen::{compile, CodegenOptions, TuningTable};
        let g = super::super::tiling::every_matmul_form();
        for fuse in [true, false] {
            for cfg in TileConfig::candidates() {
                let opts = CodegenOptions {
                    fuse,
                    tiles: TuningTable::uniform(cfg),
                    ..CodegenOptions::default()
                };
                // `compile` runs naga and the barrier check on every kernel.
                let p = compile(&g, &[], &opts).unwrap_or_else(|e| panic!("{cfg}: {e}"));
                let mm: Vec<&Kernel> = p.kernels.iter().filter(|k| k.matmul.is_some()).collect();
                assert!(mm.len() >= 7, "{cfg}: {} matmul kernels", mm.len());
                let grouped = mm.iter().any(|k| k.matmul.unwrap().products > 1);
                assert_eq!(grouped, fuse, "{cfg}");
                for k in mm {
                    // Grouped products whose slices exceed 16 KiB take the default kernel.
                    let products = k.matmul.unwrap().products;
                    let fits = cfg.workgroup_bytes(1, products) <= 16384;
                    let want = if fits { cfg } else { TileConfig::default() };
                    assert_eq!(k.tile, Some(want), "{cfg}: {}", k.name);
                    assert!(fits || products > 1, "{cfg}: {}", k.name);
                    let shared = matches!(want, TileConfig::Workgroup { .. });
                    assert_eq!(k.wgsl.contains("workgroupBarrier()"), shared, "{}", k.name);
                    assert_eq!(k.workgroup_size, want.invocations());
                }
            }
        }
    }

    #[test]
    fn tilings_the_adapter_cannot_hold_fall_back_and_shape_entries_win() {
        use crate::codegen::{compile, CodegenOptions, TuningTable};
        let g = super::super::tiling::every_matmul_form();
        let big = TileConfig::Workgroup {
            bm: 64,
            bn: 64,
            bk: 16,
            rows: 8,
            cols: 4,
        };
        // Room for one product's slices, not for two or three products'.
        let opts = CodegenOptions {
            tiles: TuningTable::uniform(big),
            max_workgroup_storage_bytes: big.workgroup_bytes(1, 1) as u32,
            ..CodegenOptions::default()
        };
        let p = compile(&g, &[], &opts).unwrap();
        for k in p.kernels.iter().filter(|k| k.matmul.is_some()) {
            let want = if k.matmul.unwrap().products == 1 {
                big
            } else {
                TileConfig::default()
            };
            assert_eq!(k.tile, Some(want), "{}", k.name);
        }
        let small = CodegenOptions {
            max_invocations_per_workgroup: 64,
            ..opts.clone()
        };
        let p = compile(&g, &[], &small).unwrap();
        assert!(p
            .kernels
            .iter()
            .filter_map(|k| k.tile)
            .all(|t| t == TileConfig::default()));
        // A per-shape entry overrides the table's default for that shape only.
        let first = p.kernels.iter().find_map(|k| k.matmul).unwrap();
        let reg8 = TileConfig::Register {
            workgroup: 128,
            rows: 8,
            cols: 4,
        };
        let mut tiles = TuningTable::default();
        tiles.shapes.insert(first, reg8);
        let p = compile(
            &g,
            &[],
            &CodegenOptions {
                tiles,
                ..CodegenOptions::default()
            },
        )
        .unwrap();
        for k in p.kernels.iter().filter(|k| k.matmul.is_some()) {
            let want = if k.matmul == Some(first) {
                reg8
            } else {
                TileConfig::default()
            };
            assert_eq!(k.tile, Some(want), "{}", k.name);
        }
        // A malformed entry (a hand-edited cache) is an error naming the kernel, not a panic.
        let bad = CodegenOptions {
            tiles: TuningTable::uniform(TileConfig::Register {
                workgroup: 64,
                rows: 5,
                cols: 4,
            }),
            ..CodegenOptions::default()
        };
        let e = compile(&g, &[], &bad).unwrap_err().to_string();
        assert!(e.contains("matmul_") && e.contains("rows"), "{e}");
    }
}
