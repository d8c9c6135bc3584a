//! The crate's table of ggml types against the `gguf` Python package's
//! (`fixtures/ggml_types.tsv`, written by `fixtures/make_fixtures.py`): same ids, names and
//! block layouts, and no type the package does not know.

use weft_gguf::GgmlType;

#[test]
fn ids_names_and_layouts_equal_the_gguf_package() {
    let tsv = include_str!("fixtures/ggml_types.tsv");
    let mut ids = Vec::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let id: u32 = f[0].parse().unwrap();
        let (block, size): (u64, u64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        let t = GgmlType::from_id(id);
        assert_eq!(t.id(), id);
        assert_eq!(t.name(), Some(f[1]), "id {id}");
        assert_eq!(t.to_string(), f[1]);
        // The one known difference: gguf-py still lists Q8_1 with f32 `d` and `s` (40
        // bytes); ggml's `block_q8_1` holds two f16s (static_assert: 2 * sizeof(ggml_half)
        // + QK8_1 = 36), and ggml reads files by its own size. (Q8_1 is an intermediate
        // of ggml's dot products; converters do not store it.)
        let size = if f[1] == "Q8_1" { 36 } else { size };
        assert_eq!(t.layout(), Some((block, size)), "{}", f[1]);
        ids.push(id);
    }
    assert!(ids.len() > 30);
    for id in 0..256 {
        if !ids.contains(&id) {
            let t = GgmlType::from_id(id);
            assert_eq!((t.name(), t.layout()), (None, None), "id {id}");
            assert_eq!(t.to_string(), format!("unknown ggml type {id}"));
        }
    }
    let supported: Vec<String> = (0..256)
        .map(GgmlType::from_id)
        .filter(|t| t.is_supported())
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        supported,
        ["F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "BF16"]
    );
}
