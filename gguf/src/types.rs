//! ggml's tensor types: ids as stored in GGUF, names, and block layouts.

use std::fmt;

/// A tensor's element type. The variants are the types this crate dequantises; every other
/// type ggml defines is `Other(id)`, which still has a name and a block layout (so a file
/// holding one opens, and only dequantising that tensor is refused by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: an f16 scale and 32 signed bytes.
    Q8_0,
    /// Blocks of 32: an f16 scale and 32 4-bit codes offset by 8.
    Q4_0,
    /// Blocks of 32: f16 scale and minimum and 32 4-bit codes.
    Q4_1,
    /// Super-blocks of 256: 8 sub-blocks with 6-bit scales and minima, 4-bit codes.
    Q4_K,
    /// Super-blocks of 256: as `Q4_K` with a fifth bit per code.
    Q5_K,
    /// Super-blocks of 256: 16 sub-blocks with 8-bit scales, 6-bit codes offset by 32.
    Q6_K,
    /// Any other ggml type id (known to ggml or not).
    Other(u32),
}

/// ggml's types by id: name, elements per block, bytes per block. Ids that ggml retired
/// (4, 5, 31-33, 36-38) are absent: a file using them is refused when it is opened. Sizes
/// are ggml's `sizeof(block_*)`; they equal the `gguf` Python package's except Q8_1, which
/// that package still lists with f32 scales (40 bytes, not 36).
const TABLE: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            8 => GgmlType::Q8_0,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            other => GgmlType::Other(other),
        }
    }

    /// The id GGUF stores for this type.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Other(id) => id,
        }
    }

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        let id = self.id();
        TABLE.iter().find(|e| e.0 == id)
    }

    /// ggml's name of the type (`Q4_K`, `IQ2_XS`), or `None` for an id ggml does not define.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// `(elements per block, bytes per block)`, or `None` for an id ggml does not define.
    pub fn layout(self) -> Option<(u64, u64)> {
        self.entry().map(|e| (e.2, e.3))
    }

    /// True for the types [`crate::dequantize`] handles.
    pub fn is_supported(self) -> bool {
        !matches!(self, GgmlType::Other(_))
    }

    /// Bytes holding `n_elements` of this type: `None` for an unknown type, a count that is
    /// not a whole number of blocks, or one whose size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (block, size) = self.layout()?;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown ggml type {}", self.id()),
        }
    }
}
