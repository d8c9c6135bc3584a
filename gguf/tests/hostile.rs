//! Hostile input: every truncation of a valid file, and thousands of files with mutated
//! bytes, counts and offsets, give `Err` (or, when the mutation left a valid file, values),
//! never a panic.

mod common;

use common::sample_bytes;
use proptest::prelude::*;
use weft_gguf::GgufFile;

/// Parses and, if that succeeds, reads every tensor and every metadata value through the
/// getters: none of it may panic.
fn exercise(bytes: Vec<u8>) {
    match GgufFile::from_bytes(bytes) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(f) => {
            for t in &f.tensors {
                let _ = f.tensor_f32(&t.name);
            }
            for (k, _) in &f.metadata {
                let _ = (f.get_u32(k), f.get_u64(k), f.get_f32(k), f.get_str(k));
                let _ = f.get_str_array(k);
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error_naming_a_field() {
    // Ours and one the gguf Python package wrote (64-byte alignment, K-quant tensors).
    for full in [base(false), base(true)] {
        every_truncation_fails(&full);
    }
}

/// Every cut before the end of the last tensor's data is an error; the padding a writer
/// may leave after it is not needed.
fn every_truncation_fails(full: &[u8]) {
    let f = GgufFile::from_bytes(full.to_vec()).unwrap();
    let data_end = (f.tensors.iter())
        .map(|t| f.data_offset + t.offset + t.n_bytes().unwrap())
        .max()
        .unwrap() as usize;
    assert!(data_end > f.data_offset as usize && data_end <= full.len());
    for cut in 0..full.len() {
        let r = GgufFile::from_bytes(full[..cut].to_vec());
        if cut >= data_end {
            assert!(r.is_ok(), "cut at {cut} (data ends at {data_end})");
            continue;
        }
        let msg = r.unwrap_err().to_string();
        // Either the header runs out (a field is named, with its offset) or a tensor's
        // data does (the tensor is named).
        assert!(
            msg.starts_with("truncated file: ") || msg.contains("of tensor `"),
            "cut at {cut}: {msg}"
        );
    }
}

/// The file the mutations start from: ours or the gguf Python package's.
fn base(python: bool) -> Vec<u8> {
    if python {
        include_bytes!("fixtures/python_written.gguf").to_vec()
    } else {
        sample_bytes()
    }
}

/// Values that break counts, lengths and offsets.
fn nasty_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(4),
        Just(31),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 60),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        (0u64..16).prop_map(|k| u64::MAX - k),
        (0u64..4096),
        any::<u64>(),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn flipped_bytes_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        python in any::<bool>(),
    ) {
        let mut b = base(python);
        for (i, v) in flips {
            let at = i.index(b.len());
            b[at] = v;
        }
        exercise(b);
    }

    #[test]
    fn overwritten_words_never_panic(
        words in prop::collection::vec((any::<prop::sample::Index>(), nasty_u64(), 0usize..4), 1..4),
        python in any::<bool>(),
    ) {
        // Aligned or not, 1 to 8 bytes wide: counts, lengths, dims, types and offsets all
        // get hit somewhere.
        let mut b = base(python);
        for (i, v, width) in words {
            let width = [1, 2, 4, 8][width];
            let at = i.index(b.len() - width + 1);
            b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        exercise(b);
    }

    #[test]
    fn random_bodies_after_a_valid_preamble_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        counts in (0u64..8, 0u64..8),
    ) {
        let mut b = b"GGUF\x03\x00\x00\x00".to_vec();
        b.extend_from_slice(&counts.0.to_le_bytes());
        b.extend_from_slice(&counts.1.to_le_bytes());
        b.extend_from_slice(&body);
        exercise(b);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn truncated_and_mutated_files_never_panic(
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        v in nasty_u64(),
        python in any::<bool>(),
    ) {
        let mut b = base(python);
        let len = cut.index(b.len());
        b.truncate(len.max(8));
        let at = at.index(b.len() - 7);
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        exercise(b);
    }
}
