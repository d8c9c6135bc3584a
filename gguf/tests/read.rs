//! The reader on files the writer makes: metadata of every type round-trips, the getters
//! convert or name the key, tensors read back, alignment is honoured, and each kind of
//! invalid header is refused with the field named.

mod common;

use common::{after, every_value, sample_bytes, sample_writer};
use weft_gguf::write::GgufWriter;
use weft_gguf::{GgmlType, GgufError, GgufFile, MetaValue};

fn err(bytes: Vec<u8>) -> String {
    GgufFile::from_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn metadata_of_every_type_round_trips_in_order() {
    let f = GgufFile::from_bytes(sample_bytes()).unwrap();
    assert_eq!(f.version, 3);
    let want = every_value();
    assert_eq!(f.metadata.len(), want.len());
    for ((k, v), (wk, wv)) in f.metadata.iter().zip(&want) {
        assert_eq!(k, wk);
        assert_eq!(v, wv, "{k}");
        assert_eq!(f.get(k), Some(wv));
    }
    assert_eq!(f.get("missing"), None);
}

#[test]
fn version_2_files_read_the_same() {
    let mut w = sample_writer();
    w.version(2);
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.get_str("t.str").unwrap(), "héllo · 世界 🙂");
}

#[test]
fn getters_convert_integers_that_fit_and_name_the_key_otherwise() {
    let f = GgufFile::from_bytes(sample_bytes()).unwrap();
    assert_eq!(f.get_u32("t.u8").unwrap(), 250);
    assert_eq!(f.get_u32("t.u16").unwrap(), 65000);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX - 3);
    assert_eq!(f.get_i64("t.i64").unwrap(), i64::MIN + 5);
    assert_eq!(f.get_f32("t.f32").unwrap(), -1.5e-3);
    assert_eq!(f.get_f32("t.f64").unwrap(), std::f64::consts::PI as f32);
    assert!(f.get_bool("t.true").unwrap());
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_str_array("t.strs").unwrap(), vec!["a", "Ġthe", ""]);

    for (key, getter, says) in [
        (
            "t.i8",
            "u32",
            "is the int8 -7, not an integer in the range of uint32",
        ),
        ("t.u64", "u32", "not an integer in the range of uint32"),
        ("t.str", "u32", "is the string \"héllo · 世界 🙂\", not"),
        ("t.f32", "u64", "is the float32 -0.0015, not"),
        ("t.u32", "f32", "is the uint32 4000000000, not a float"),
        ("t.i32s", "strs", "element 0 is the int32 1, not a string"),
        ("t.u8", "str", "is the uint8 250, not a string"),
        ("t.u8", "bool", "not a bool"),
        ("nope", "u32", "missing"),
    ] {
        let e = match getter {
            "u32" => f.get_u32(key).map(|_| ()),
            "u64" => f.get_u64(key).map(|_| ()),
            "f32" => f.get_f32(key).map(|_| ()),
            "str" => f.get_str(key).map(|_| ()),
            "bool" => f.get_bool(key).map(|_| ()),
            _ => f.get_str_array(key).map(|_| ()),
        }
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(&format!("metadata key `{key}`")), "{e}");
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn tensors_read_back_with_dims_types_and_values() {
    let f = GgufFile::from_bytes(sample_bytes()).unwrap();
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.weight", "b.weight", "c.weight", "d.weight"]);
    let a = f.tensor("a.weight").unwrap();
    assert_eq!(
        (a.dims.as_slice(), a.ggml_type),
        (&[3u64, 2][..], GgmlType::F32)
    );
    assert_eq!(
        f.tensor_f32("a.weight").unwrap(),
        [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    );
    assert_eq!(f.tensor_f32("b.weight").unwrap(), [1.0, -2.0, 0.5, 65504.0]);
    assert_eq!(f.tensor("c.weight").unwrap().ggml_type, GgmlType::BF16);
    assert_eq!(f.tensor_f32("c.weight").unwrap(), [3.0, -0.125]);
    let d = f.tensor_f32("d.weight").unwrap();
    assert_eq!(
        d,
        (0..32).map(|i| (i - 16) as f32 * 0.5).collect::<Vec<_>>()
    );
    for t in &f.tensors {
        assert_eq!(t.offset % 32, 0);
        assert_eq!((f.data_offset + t.offset) % 32, 0);
    }
    let e = f.tensor_f32("e.weight").unwrap_err().to_string();
    assert_eq!(e, "tensor `e.weight`: not in the file (it has 4 tensors)");
}

#[test]
fn open_reads_from_disk_and_seeks_to_each_tensor() {
    let path = std::env::temp_dir().join(format!("weft-gguf-open-{}.gguf", std::process::id()));
    sample_writer().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let mem = GgufFile::from_bytes(sample_bytes()).unwrap();
    assert_eq!(f.metadata, mem.metadata);
    assert_eq!(f.tensors, mem.tensors);
    for t in &f.tensors {
        assert_eq!(
            f.tensor_f32(&t.name).unwrap(),
            mem.tensor_f32(&t.name).unwrap()
        );
    }
    // Truncated on disk: the error names the tensor whose data is cut.
    let bytes = sample_bytes();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let e = GgufFile::open(&path).unwrap_err().to_string();
    assert!(e.contains("data offset of tensor `d.weight`"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = GgufFile::open(&path).unwrap_err().to_string();
    assert!(
        e.starts_with("opening ") && e.contains("weft-gguf-open"),
        "{e}"
    );
}

#[test]
fn general_alignment_places_the_data() {
    let mut w = sample_writer();
    w.alignment(256);
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment, 256);
    assert_eq!(f.data_offset % 256, 0);
    assert!(f.tensors.iter().all(|t| t.offset % 256 == 0));
    assert_eq!(f.tensor_f32("b.weight").unwrap(), [1.0, -2.0, 0.5, 65504.0]);

    // 48 is not a power of two: patch the value the writer wrote.
    let mut bytes = w.to_bytes().unwrap();
    let at = after(&bytes, b"general.alignment") + 4;
    bytes[at..at + 4].copy_from_slice(&48u32.to_le_bytes());
    let e = err(bytes);
    assert!(e.starts_with("`general.alignment` at offset"), "{e}");
    assert!(
        e.contains("is the uint32 48; the alignment is a power of two"),
        "{e}"
    );
}

#[test]
fn bad_magic_and_versions_are_refused_by_name() {
    let mut b = sample_bytes();
    b[0] = b'X';
    assert!(err(b).starts_with("not a GGUF file"));
    assert!(err(b"PK\x03".to_vec()).starts_with("not a GGUF file"));
    assert!(err(Vec::new()).contains("magic"));
    for (v, says) in [
        (
            1u32,
            "GGUF version 1 is not supported (weft reads versions 2 and 3)",
        ),
        (4, "GGUF version 4 is not supported"),
        (0x0300_0000, "big-endian GGUF"),
    ] {
        let mut b = sample_bytes();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = err(b);
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn a_count_of_2_pow_60_strings_is_an_error_not_an_allocation() {
    let mut w = GgufWriter::new();
    w.meta(
        "tokenizer.ggml.tokens",
        MetaValue::Array(vec![MetaValue::String("a".into())]),
    );
    let mut b = w.to_bytes().unwrap();
    let at = after(&b, b"tokenizer.ggml.tokens") + 4 + 4; // value type, element type
    b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = err(b);
    assert!(e.starts_with("truncated file: elements of `tokenizer.ggml.tokens` (string) (1152921504606846976 of them)"), "{e}");

    // The same for the header counts.
    for (at, field) in [(8, "tensor infos"), (16, "metadata entries")] {
        let mut b = sample_bytes();
        b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = err(b);
        assert!(
            e.contains(field) && e.contains("1152921504606846976 of them"),
            "{e}"
        );
    }
    // And a string length.
    let mut b = sample_bytes();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = err(b);
    assert!(
        e.contains("key of metadata entry 0: 18446744073709551615 bytes needed at offset 32"),
        "{e}"
    );
}

/// The sample file with one tensor info field overwritten.
fn patched_tensor(name: &str, field: usize, value: &[u8]) -> String {
    let mut b = sample_bytes();
    // After the name: n_dims u32, dims u64 * n, type u32, offset u64.
    let at = after(&b, name.as_bytes());
    let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let pos = match field {
        0 => at,
        1 => at + 4,
        2 => at + 4 + 8 * n_dims,
        _ => at + 4 + 8 * n_dims + 4,
    };
    b[pos..pos + value.len()].copy_from_slice(value);
    err(b)
}

#[test]
fn invalid_tensor_infos_name_the_tensor_and_field() {
    let cases: [(&str, usize, Vec<u8>, &str); 7] = [
        (
            "a.weight",
            0,
            5u32.to_le_bytes().to_vec(),
            "dimension count of tensor `a.weight` at offset",
        ),
        (
            "a.weight",
            0,
            5u32.to_le_bytes().to_vec(),
            "5 dimensions; ggml allows at most 4",
        ),
        (
            "a.weight",
            1,
            (1u64 << 63).to_le_bytes().to_vec(),
            "overflow the element count",
        ),
        (
            "d.weight",
            1,
            33u64.to_le_bytes().to_vec(),
            "33 is not a multiple of Q8_0's block of 32",
        ),
        (
            "a.weight",
            2,
            4u32.to_le_bytes().to_vec(),
            "type of tensor `a.weight` at offset",
        ),
        (
            "b.weight",
            3,
            8u64.to_le_bytes().to_vec(),
            "8 is not a multiple of the alignment 32",
        ),
        (
            "c.weight",
            3,
            (1u64 << 40).to_le_bytes().to_vec(),
            "data offset of tensor `c.weight`",
        ),
    ];
    for (name, field, value, says) in cases {
        let e = patched_tensor(name, field, &value);
        assert!(e.contains(says), "{name} field {field}: {e}");
    }
    let e = patched_tensor("a.weight", 2, &4u32.to_le_bytes());
    assert!(
        e.contains("unknown ggml type 4 (not a ggml type this reader knows)"),
        "{e}"
    );
}

#[test]
fn duplicates_unknown_value_types_and_bad_bools_are_refused() {
    let mut w = GgufWriter::new();
    w.meta("k1", MetaValue::U8(1)).meta("k2", MetaValue::U8(2));
    let mut b = w.to_bytes().unwrap();
    let at = after(&b, b"k2") - 1;
    b[at] = b'1';
    let e = err(b);
    assert!(
        e.contains("key of metadata entry 1") && e.contains("`k1` appears twice"),
        "{e}"
    );

    let mut w = GgufWriter::new();
    w.tensor_f32("x", &[1], &[1.0])
        .tensor_f32("y", &[1], &[2.0]);
    let mut b = w.to_bytes().unwrap();
    let at = after(&b, b"\x01\x00\x00\x00\x00\x00\x00\x00y") - 1;
    b[at] = b'x';
    assert!(err(b).contains("`x` appears twice"));

    let mut w = GgufWriter::new();
    w.meta("flag", MetaValue::Bool(true));
    let good = w.to_bytes().unwrap();
    let at = after(&good, b"flag");
    let mut b = good.clone();
    b[at + 4] = 2;
    let e = err(b);
    assert!(
        e.contains("value of `flag`") && e.contains("a bool is 0 or 1, not 2"),
        "{e}"
    );
    let mut b = good;
    b[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    let e = err(b);
    assert!(
        e.contains("type of `flag`") && e.contains("unknown value type 13"),
        "{e}"
    );
}

#[test]
fn invalid_utf8_and_deep_nesting_are_refused() {
    let mut w = GgufWriter::new();
    w.meta("s", MetaValue::String("ab".into()));
    let mut b = w.to_bytes().unwrap();
    let at = after(&b, b"\x02\x00\x00\x00\x00\x00\x00\x00ab") - 2;
    b[at] = 0xff;
    let e = err(b);
    assert!(
        e.contains("value of `s` at offset") && e.contains("not UTF-8"),
        "{e}"
    );

    let mut v = MetaValue::U8(0);
    for _ in 0..12 {
        v = MetaValue::Array(vec![v]);
    }
    let mut w = GgufWriter::new();
    w.meta("deep", v);
    let e = err(w.to_bytes().unwrap());
    assert!(e.contains("arrays nested more than 8 deep"), "{e}");
}

#[test]
fn types_the_crate_cannot_dequantise_open_and_are_refused_by_name() {
    let mut w = sample_writer();
    w.tensor_raw("q5.weight", &[32], GgmlType::from_id(6), vec![0; 22]);
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let t = f.tensor("q5.weight").unwrap();
    assert_eq!(t.ggml_type.to_string(), "Q5_0");
    assert_eq!(f.tensor_bytes("q5.weight").unwrap().len(), 22);
    let e = f.tensor_f32("q5.weight").unwrap_err().to_string();
    assert!(
        e.starts_with("tensor `q5.weight`: cannot dequantise Q5_0 data"),
        "{e}"
    );
}

#[test]
fn the_writer_refuses_what_gguf_cannot_hold() {
    let mut w = GgufWriter::new();
    w.tensor_raw("x", &[32], GgmlType::Q8_0, vec![0; 33]);
    assert!(matches!(w.to_bytes(), Err(GgufError::Write(_))));
    let mut w = GgufWriter::new();
    w.meta(
        "mixed",
        MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)]),
    );
    let e = w.to_bytes().unwrap_err().to_string();
    assert_eq!(e, "GGUF writer: array `mixed` mixes uint8 and int8");
}
