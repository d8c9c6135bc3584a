//! Matmul tile configurations and the per-shape table that picks one.
//!
//! A matmul kernel can be written several ways, and which is fastest depends on the adapter
//! (a software rasteriser runs barriers slowly, a real GPU starves without workgroup memory)
//! and on the shape (a skinny product leaves big tiles idle). Codegen therefore takes a
//! [`TuningTable`] in [`super::CodegenOptions`]: for each [`MatmulShape`] a [`TileConfig`],
//! and a default for every other shape. The table is filled by measuring (the runtime's
//! autotuner); absent entries get [`TileConfig::default`], the register-tiled kernel.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What identifies a matmul kernel for tuning: the sizes of its products, their transposes
/// (which change the memory access pattern) and how many products it computes side by side
/// (a horizontally fused group; see `group.rs`). Computable from a compiled kernel
/// ([`super::Kernel::matmul`]), so the runtime can look its choice up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MatmulShape {
    /// Product of the output's batch dimensions (1 for a plain 2-D product).
    pub batch: usize,
    /// Rows of the output (of op(A)).
    pub m: usize,
    /// Columns of the output (of op(B)).
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// Of the kernel's first product (grouped products share A and sizes, see `group.rs`).
    pub transpose_a: bool,
    pub transpose_b: bool,
    /// Products the kernel computes (1, or up to `group::MAX_MATMULS`).
    pub products: usize,
}

impl fmt::Display for MatmulShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}x{}", self.batch, self.m, self.n, self.k)?;
        match (self.transpose_a, self.transpose_b) {
            (false, false) => {}
            (true, false) => write!(f, " Aᵀ")?,
            (false, true) => write!(f, " Bᵀ")?,
            (true, true) => write!(f, " AᵀBᵀ")?,
        }
        if self.products > 1 {
            write!(f, " ×{}", self.products)?;
        }
        Ok(())
    }
}

/// How one matmul kernel is tiled. Both variants give each invocation a `rows × cols` block
/// of outputs in registers (`cols / 4` vec4s of B per step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TileConfig {
    /// `templates/matmul.wgsl`: invocations are independent, each streams all of K from
    /// global memory; no workgroup memory, no barriers. Best on software adapters.
    Register {
        /// Invocations per workgroup.
        workgroup: u32,
        /// Output rows per invocation: 4 or 8.
        rows: u32,
        /// Output columns per invocation, adjacent: 4 or 8 (cache files written before this
        /// field existed mean 4).
        #[serde(default = "four")]
        cols: u32,
    },
    /// `templates/matmul_shared.wgsl`: a workgroup computes a `bm × bn` block, staging
    /// `bk`-deep slices of A and B in `var<workgroup>` arrays between barriers, so each
    /// operand element is read from global memory once per block instead of once per
    /// invocation. The standard GEMM of real GPUs. A group of products whose staged slices
    /// would exceed the workgroup-memory limit falls back to the default register kernel.
    Workgroup {
        /// Output rows per workgroup.
        bm: u32,
        /// Output columns per workgroup.
        bn: u32,
        /// Depth of the K chunk staged per barrier pair.
        bk: u32,
        /// Output rows per invocation: 4 or 8.
        rows: u32,
        /// Output columns per invocation: 4 or 8, as `cols / 4` vec4 chunks `bn / (cols / 4)`
        /// columns apart (so `(bm / rows) · (bn / cols)` invocations). More outputs per
        /// invocation means more multiply-adds per workgroup-memory read: 8×8 is the usual
        /// tile of a fast GPU GEMM. Cache files written before this field existed mean 4.
        #[serde(default = "four")]
        cols: u32,
    },
}

fn four() -> u32 {
    4
}

/// Floats of padding after each `bk`-row of a staged slice in workgroup memory. Staging
/// walks the operand's contiguous axis (coalesced global loads), which for A (and for a
/// transposed B) is K: consecutive invocations then write one slice row apart, and without
/// padding a row of 32 or 64 floats maps them all to the same memory bank.
pub const SLICE_PAD: u32 = 4;

impl Default for TileConfig {
    /// The kernel every matmul used before tuning existed: 4×4 register tiles, 64
    /// invocations per workgroup (fits the most limited adapters).
    fn default() -> Self {
        TileConfig::Register {
            workgroup: 64,
            rows: 4,
            cols: 4,
        }
    }
}

impl fmt::Display for TileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TileConfig::Register {
                workgroup,
                rows,
                cols,
            } => {
                write!(f, "register {rows}x{cols} wg{workgroup}")
            }
            TileConfig::Workgroup {
                bm,
                bn,
                bk,
                rows,
                cols,
            } => {
                write!(
                    f,
                    "shared {bm}x{bn} k{bk} {rows}x{cols} wg{}",
                    self.invocations()
                )
            }
        }
    }
}

impl TileConfig {
    /// The configurations the autotuner tries for every shape: the register kernel with
    /// 4×4 and 8×4 tiles, and workgroup-tiled blocks from 32×32 to 128×128 (all within
    /// WebGPU's default limits of 256 invocations and 16 KiB of workgroup memory for one
    /// product). On an H200 the 8×4 register kernel won 4096² and the big products, the
    /// 64×64 block the others; 8×8 register tiles and 8×8 blocks of 64 and 128 invocations
    /// won no shape of gpt.weft or GPT-2 small and are not tried (BENCHMARKS.md), though
    /// codegen writes them for a table that names them.
    pub fn candidates() -> Vec<TileConfig> {
        let mut out = Vec::new();
        for (rows, cols) in [(4, 4), (8, 4)] {
            for workgroup in [64, 128, 256] {
                out.push(TileConfig::Register {
                    workgroup,
                    rows,
                    cols,
                });
            }
        }
        for (bm, bn, bk, rows, cols) in [
            (32, 32, 8, 4, 4),
            (64, 64, 8, 4, 4),
            (64, 64, 16, 8, 4),
            (128, 128, 8, 8, 8),
        ] {
            out.push(TileConfig::Workgroup {
                bm,
                bn,
                bk,
                rows,
                cols,
            });
        }
        out
    }

    /// Output rows per invocation.
    pub fn rows(&self) -> u32 {
        match *self {
            TileConfig::Register { rows, .. } | TileConfig::Workgroup { rows, .. } => rows,
        }
    }

    /// Output columns per invocation.
    pub fn cols(&self) -> u32 {
        match *self {
            TileConfig::Register { cols, .. } | TileConfig::Workgroup { cols, .. } => cols,
        }
    }

    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        match *self {
            TileConfig::Register { workgroup, .. } => workgroup,
            TileConfig::Workgroup {
                bm, bn, rows, cols, ..
            } => (bm / rows.max(1)).saturating_mul(bn / cols.max(1)),
        }
    }

    /// Bytes of workgroup memory a kernel of this configuration declares when it stages
    /// `a_slices` distinct A operands and `b_slices` B operands (0 for the register kernel).
    /// Each `bk`-row of a slice is padded by [`SLICE_PAD`] floats.
    pub fn workgroup_bytes(&self, a_slices: usize, b_slices: usize) -> u64 {
        match *self {
            TileConfig::Register { .. } => 0,
            TileConfig::Workgroup { bm, bn, bk, .. } => {
                let (bm, bn) = (u64::from(bm + SLICE_PAD), u64::from(bn + SLICE_PAD));
                4 * u64::from(bk) * (a_slices as u64 * bm + b_slices as u64 * bn)
            }
        }
    }

    /// Whether the parameters describe a kernel codegen can write (a cache file edited by
    /// hand may hold anything): rows and columns 4 or 8, blocks a whole number of
    /// sub-tiles, and 1 to 1024 invocations.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.rows(), 4 | 8) {
            return Err(format!("{self}: rows must be 4 or 8"));
        }
        if !matches!(self.cols(), 4 | 8) {
            return Err(format!("{self}: columns must be 4 or 8"));
        }
        if let TileConfig::Workgroup {
            bm,
            bn,
            bk,
            rows,
            cols,
        } = *self
        {
            if bm == 0 || bm % rows != 0 || bn == 0 || bn % cols != 0 {
                return Err(format!(
                    "{self}: the block must be a whole number of {rows}x{cols} sub-tiles"
                ));
            }
            if !(1..=64).contains(&bk) {
                return Err(format!("{self}: the K chunk must be 1 to 64 deep"));
            }
        }
        if !(1..=1024).contains(&self.invocations()) {
            return Err(format!("{self}: 1 to 1024 invocations per workgroup"));
        }
        Ok(())
    }
}

/// Per-shape tile choices: [`TuningTable::shapes`] where measured, [`TuningTable::default`]
/// elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TuningTable {
    /// The configuration of every shape the table does not name.
    pub default: TileConfig,
    /// Chosen configurations by shape.
    pub shapes: BTreeMap<MatmulShape, TileConfig>,
}

impl TuningTable {
    /// A table that gives every shape `config` (for tests and for timing one candidate).
    pub fn uniform(config: TileConfig) -> Self {
        TuningTable {
            default: config,
            shapes: BTreeMap::new(),
        }
    }

    /// The configuration for `shape`.
    pub fn get(&self, shape: &MatmulShape) -> TileConfig {
        self.shapes.get(shape).copied().unwrap_or(self.default)
    }
}

/// Every matmul form codegen handles, at sizes that are not multiples of any tile:
/// four transposes, a broadcast batch, an RMSNorm prologue feeding three grouped
/// products (q, k, v), a residual epilogue and SwiGLU's shared gate/up epilogue. The
/// compiler's tiling tests compile it; the runtime's run it on the adapter against the CPU.
pub fn every_matmul_form() -> crate::ir::Graph {
    use crate::ir::{DType, GraphBuilder, UnaryOp};
    let mut b = GraphBuilder::new();
    let input =
        |b: &mut GraphBuilder, name: &str, shape: &[usize]| b.input(name, shape, DType::F32);
    let a = input(&mut b, "a", &[37, 70]);
    let at = input(&mut b, "at", &[70, 37]);
    let w = input(&mut b, "w", &[70, 29]);
    let wt = input(&mut b, "wt", &[29, 70]);
    for (name, x, y, ta, tb) in [
        ("nn", a, w, false, false),
        ("tn", at, w, true, false),
        ("nt", a, wt, false, true),
        ("tt", at, wt, true, true),
    ] {
        let m = b.matmul_t(x, y, ta, tb).unwrap();
        b.output(name, m);
    }
    // Several blocks of the largest tiles in both directions.
    let big = input(&mut b, "big", &[2, 70, 45]);
    let wbig = input(&mut b, "wbig", &[45, 70]);
    let m = b.matmul(big, wbig).unwrap();
    b.output("big_out", m);
    let a3 = input(&mut b, "a3", &[2, 5, 7]);
    let bb = input(&mut b, "bb", &[3, 1, 7, 6]);
    let m = b.matmul(a3, bb).unwrap();
    b.output("bcast", m);
    let x = input(&mut b, "x", &[2, 9, 20]);
    let nw = input(&mut b, "nw", &[20]);
    let n = b.rms_norm(x, nw, 1e-5).unwrap();
    for name in ["q", "k", "v"] {
        let wq = input(&mut b, &format!("w{name}"), &[20, 13]);
        let q = b.matmul(n, wq).unwrap();
        b.output(name, q);
    }
    let wo = input(&mut b, "wo", &[20, 20]);
    let o = b.matmul(n, wo).unwrap();
    let res = b.add(o, x).unwrap();
    b.output("residual", res);
    let wg = input(&mut b, "wg", &[20, 33]);
    let wu = input(&mut b, "wu", &[20, 33]);
    let gate = b.matmul(n, wg).unwrap();
    let up = b.matmul(n, wu).unwrap();
    let act = b.unary(UnaryOp::Silu, gate).unwrap();
    let h = b.mul(act, up).unwrap();
    b.output("swiglu", h);
    b.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_valid_distinct_and_include_the_default() {
        let c = TileConfig::candidates();
        assert!(c.contains(&TileConfig::default()));
        for (i, x) in c.iter().enumerate() {
            x.check().unwrap();
            assert!(x.invocations() <= 256, "{x}");
            assert!(x.workgroup_bytes(1, 1) <= 16384, "{x}");
            assert!(!c[..i].contains(x), "{x} twice");
        }
        assert!(c.iter().any(|x| matches!(x, TileConfig::Workgroup { .. })));
    }

    #[test]
    fn configs_round_trip_through_json_and_bad_ones_are_caught() {
        let w = TileConfig::Workgroup {
            bm: 64,
            bn: 32,
            bk: 8,
            rows: 8,
            cols: 4,
        };
        let s = serde_json::to_string(&w).unwrap();
        assert_eq!(
            s,
            r#"{"kind":"workgroup","bm":64,"bn":32,"bk":8,"rows":8,"cols":4}"#
        );
        assert_eq!(serde_json::from_str::<TileConfig>(&s).unwrap(), w);
        // A cache written before `cols` existed still reads, as 4 columns.
        let old = r#"{"kind":"workgroup","bm":64,"bn":32,"bk":8,"rows":8}"#;
        assert_eq!(serde_json::from_str::<TileConfig>(old).unwrap(), w);
        assert_eq!(w.invocations(), 64);
        let with_cols = |cols| TileConfig::Workgroup {
            bm: 64,
            bn: 32,
            bk: 8,
            rows: 8,
            cols,
        };
        let wide = with_cols(8);
        assert_eq!(wide.invocations(), 32);
        wide.check().unwrap();
        let bad = TileConfig::Workgroup {
            bm: 30,
            bn: 32,
            bk: 8,
            rows: 4,
            cols: 4,
        };
        assert!(bad.check().is_err());
        assert!(with_cols(6).check().is_err());
        assert!(TileConfig::Register {
            workgroup: 64,
            rows: 3,
            cols: 4,
        }
        .check()
        .is_err());
        assert!(TileConfig::Register {
            workgroup: 0,
            rows: 4,
            cols: 4,
        }
        .check()
        .is_err());
    }

    #[test]
    fn absent_shapes_get_the_default() {
        let s = MatmulShape {
            batch: 1,
            m: 37,
            n: 29,
            k: 70,
            transpose_a: false,
            transpose_b: true,
            products: 2,
        };
        assert_eq!(s.to_string(), "1x37x29x70 Bᵀ ×2");
        let mut t = TuningTable::default();
        assert_eq!(t.get(&s), TileConfig::default());
        let w = TileConfig::candidates().pop().unwrap();
        t.shapes.insert(s, w);
        assert_eq!(t.get(&s), w);
        assert_eq!(
            t.get(&MatmulShape { products: 1, ..s }),
            TileConfig::default()
        );
    }
}
