//! A file written by the `gguf` Python package's `GGUFWriter` (`fixtures/python_written.gguf`,
//! made by `fixtures/make_fixtures.py`): our reader agrees with an independent writer on
//! header, metadata types and values, alignment, dims order and tensor data.

use weft_gguf::{GgmlType, GgufFile, MetaValue};

fn file() -> GgufFile {
    GgufFile::from_bytes(include_bytes!("fixtures/python_written.gguf").to_vec()).unwrap()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn metadata_has_the_types_and_values_the_script_wrote() {
    use MetaValue::*;
    let f = file();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    let want = [
        ("general.architecture", String("weft-test".into())),
        ("general.alignment", U32(64)),
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
        ("t.bool", Bool(true)),
        ("t.str", String("héllo · 世界 🙂".into())),
        (
            "t.strs",
            Array(vec![
                String("a".into()),
                String("Ġthe".into()),
                String("".into()),
            ]),
        ),
        ("t.ints", Array(vec![I32(1), I32(-2), I32(3)])),
        ("t.floats", Array(vec![F32(0.5), F32(-0.25)])),
        (
            "t.nested",
            Array(vec![Array(vec![I32(1), I32(2)]), Array(vec![I32(3)])]),
        ),
    ];
    let got: Vec<(&str, &MetaValue)> = f.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let want: Vec<(&str, &MetaValue)> = want.iter().map(|(k, v)| (*k, v)).collect();
    assert_eq!(got, want);
}

#[test]
fn tensors_have_reversed_dims_and_the_written_values() {
    let f = file();
    let row_major: Vec<f32> = (0..15).map(|i| (i as f32 - 7.0) / 4.0).collect();
    for (name, ty) in [
        ("f32.weight", GgmlType::F32),
        ("f16.weight", GgmlType::F16),
        ("bf16.weight", GgmlType::BF16),
    ] {
        let t = f.tensor(name).unwrap();
        // numpy shape (3, 5) is GGUF dims [5, 3]: fastest first.
        assert_eq!((t.dims.as_slice(), t.ggml_type), (&[5u64, 3][..], ty));
        assert_eq!(t.offset % 64, 0);
        // Quarters are exact in every one of these formats.
        assert_eq!(f.tensor_f32(name).unwrap(), row_major, "{name}");
    }
    for (name, ty, expected) in [
        (
            "q4_k.weight",
            GgmlType::Q4_K,
            &include_bytes!("fixtures/q4_k.expected")[..],
        ),
        (
            "q6_k.weight",
            GgmlType::Q6_K,
            &include_bytes!("fixtures/q6_k.expected")[..],
        ),
    ] {
        let t = f.tensor(name).unwrap();
        assert_eq!((t.dims.as_slice(), t.ggml_type), (&[512u64, 4][..], ty));
        let got = f.tensor_f32(name).unwrap();
        let want = floats(expected);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "{name}"
        );
    }
}
