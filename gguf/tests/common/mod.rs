//! A small GGUF file with metadata of every value type and tensors of several types, shared
//! by the reader and hostile-input tests.

#![allow(dead_code)]

use weft_gguf::write::GgufWriter;
use weft_gguf::{GgmlType, MetaValue};

/// Every value type once, including nesting, an empty array and non-ASCII text.
pub fn every_value() -> Vec<(&'static str, MetaValue)> {
    use MetaValue::*;
    vec![
        ("general.architecture", String("llama".into())),
        ("t.u8", U8(250)),
        ("t.i8", I8(-7)),
        ("t.u16", U16(65000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX - 3)),
        ("t.i64", I64(i64::MIN + 5)),
        ("t.f32", F32(-1.5e-3)),
        ("t.f64", F64(std::f64::consts::PI)),
        ("t.true", Bool(true)),
        ("t.false", Bool(false)),
        ("t.str", String("héllo · 世界 🙂".into())),
        ("t.empty_str", String(std::string::String::new())),
        (
            "t.strs",
            Array(vec![
                String("a".into()),
                String("Ġthe".into()),
                String("".into()),
            ]),
        ),
        ("t.i32s", Array(vec![I32(1), I32(-2), I32(3)])),
        ("t.f32s", Array(vec![F32(0.5), F32(-0.25)])),
        ("t.bools", Array(vec![Bool(true), Bool(false)])),
        ("t.u64s", Array(vec![U64(1 << 40)])),
        ("t.empty", Array(vec![])),
        (
            "t.nested",
            Array(vec![Array(vec![U8(1), U8(2)]), Array(vec![U8(3)])]),
        ),
    ]
}

/// A writer holding `every_value()` and four tensors (F32, F16, BF16, and raw Q8_0).
pub fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in every_value() {
        w.meta(k, v);
    }
    let a: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    w.tensor_f32("a.weight", &[3, 2], &a);
    w.tensor_f16("b.weight", &[4], &[1.0, -2.0, 0.5, 65504.0]);
    w.tensor_bf16("c.weight", &[2], &[3.0, -0.125]);
    // One Q8_0 block: d = 0.5 (f16 0x3800), codes -16..16.
    let mut q = vec![0x00, 0x38];
    q.extend((0..32).map(|i| (i as i8 - 16) as u8));
    w.tensor_raw("d.weight", &[32], GgmlType::Q8_0, q);
    w
}

/// `sample_writer()`'s bytes.
pub fn sample_bytes() -> Vec<u8> {
    sample_writer()
        .to_bytes()
        .expect("the sample file is valid")
}

/// Offset just past the first occurrence of `needle` in `hay`.
pub fn after(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
        + needle.len()
}
