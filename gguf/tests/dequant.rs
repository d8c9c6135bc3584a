//! Dequantisation against an independent implementation: the fixtures hold random blocks and
//! the values the `gguf` Python package's dequantiser makes of them
//! (`fixtures/make_fixtures.py`); ours must reproduce them bit for bit.

mod common;

use weft_gguf::write::GgufWriter;
use weft_gguf::{dequantize, GgmlType, GgufError, GgufFile};

struct Fixture {
    ty: GgmlType,
    blocks: &'static [u8],
    expected: &'static [u8],
}

macro_rules! fixture {
    ($ty:ident, $name:literal) => {
        Fixture {
            ty: GgmlType::$ty,
            blocks: include_bytes!(concat!("fixtures/", $name, ".blocks")),
            expected: include_bytes!(concat!("fixtures/", $name, ".expected")),
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    vec![
        fixture!(F32, "f32"),
        fixture!(F16, "f16"),
        fixture!(BF16, "bf16"),
        fixture!(Q8_0, "q8_0"),
        fixture!(Q4_0, "q4_0"),
        fixture!(Q4_1, "q4_1"),
        fixture!(Q4_K, "q4_k"),
        fixture!(Q5_K, "q5_k"),
        fixture!(Q6_K, "q6_k"),
    ]
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Exact equality, bit for bit (so -0.0 differs from 0.0), with the first mismatch named.
fn assert_bits_equal(ty: GgmlType, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{ty}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{ty}: element {i} (block {}) is {g:e} ({:#010x}), the oracle says {w:e} ({:#010x})",
            i / ty.layout().unwrap().0 as usize,
            g.to_bits(),
            w.to_bits()
        );
    }
}

#[test]
fn every_type_matches_the_python_oracle_bit_for_bit() {
    for f in fixtures() {
        let want = floats(f.expected);
        // The fixtures are not degenerate: many distinct values, both signs.
        let distinct: std::collections::BTreeSet<u32> = want.iter().map(|v| v.to_bits()).collect();
        assert!(
            distinct.len() > want.len() / 8,
            "{}: fixture too uniform",
            f.ty
        );
        assert!(want.iter().any(|v| *v < 0.0) && want.iter().any(|v| *v > 0.0));
        let got = dequantize(f.ty, f.blocks, want.len()).unwrap();
        assert_bits_equal(f.ty, &got, &want);
    }
}

#[test]
fn every_type_reads_back_through_a_gguf_file() {
    let mut w = GgufWriter::new();
    let fx = fixtures();
    for f in &fx {
        let n = f.expected.len() as u64 / 4;
        let block = f.ty.layout().unwrap().0;
        // Two dims when the count allows: rows of whole blocks.
        let dims = if n.is_multiple_of(2 * block) {
            vec![n / 2, 2]
        } else {
            vec![n]
        };
        w.tensor_raw(&format!("{}", f.ty), &dims, f.ty, f.blocks.to_vec());
    }
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    for f in &fx {
        let got = file.tensor_f32(&format!("{}", f.ty)).unwrap();
        assert_bits_equal(f.ty, &got, &floats(f.expected));
    }
}

#[test]
fn large_tensors_split_across_threads_equal_the_fixture_repeated() {
    // Beyond one parallel chunk: the fixture's blocks repeated, so the answer is known.
    for f in fixtures() {
        let reps = 40;
        let bytes = f.blocks.repeat(reps);
        let want = floats(f.expected).repeat(reps);
        let got = dequantize(f.ty, &bytes, want.len()).unwrap();
        assert_bits_equal(f.ty, &got, &want);
    }
}

#[test]
fn a_hand_built_q4_0_block_gives_the_documented_values() {
    // d = 2.0 (f16 0x4000); byte j holds code j in its low nibble and 15 - j in its high.
    let mut b = vec![0x00, 0x40];
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 2.0);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 2.0);
    }
}

#[test]
fn a_hand_built_q4_1_block_adds_its_minimum() {
    // d = 0.5 (0x3800), m = -1.0 (0xbc00); codes j and 15 - j.
    let mut b = vec![0x00, 0x38, 0x00, 0xbc];
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
    for j in 0..16 {
        assert_eq!(y[j], 0.5 * j as f32 - 1.0);
        assert_eq!(y[j + 16], 0.5 * (15 - j) as f32 - 1.0);
    }
}

#[test]
fn sizes_that_do_not_fit_the_type_are_errors() {
    let f = &fixtures()[6]; // Q4_K
    let n = f.expected.len() / 4;
    let e = dequantize(f.ty, &f.blocks[1..], n).unwrap_err();
    assert!(matches!(e, GgufError::Size { .. }), "{e}");
    assert!(e.to_string().contains("Q4_K"), "{e}");
    let e = dequantize(f.ty, f.blocks, n - 1).unwrap_err();
    assert!(
        e.to_string()
            .contains("not a whole number of blocks of 256"),
        "{e}"
    );
    let e = dequantize(GgmlType::F32, &[0; 7], 2).unwrap_err();
    assert!(e.to_string().contains("need 8 bytes, got 7"), "{e}");
}

#[test]
fn unsupported_types_are_refused_by_name() {
    // Q5_0 (id 6) is a ggml type, just not one this crate dequantises.
    let e = dequantize(GgmlType::from_id(6), &[0; 22], 32).unwrap_err();
    assert!(matches!(e, GgufError::Unsupported { .. }));
    assert!(e.to_string().contains("cannot dequantise Q5_0"), "{e}");
    let e = dequantize(GgmlType::from_id(999), &[], 0).unwrap_err();
    assert!(e.to_string().contains("unknown ggml type 999"), "{e}");
}
