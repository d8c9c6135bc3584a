//! Named tensors in safetensors files (weights for `weft eval`, captured hook values,
//! `--replace` inputs): the format PyTorch's `safetensors` reads.

use crate::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::checkpoint::write_atomic;

/// What went wrong reading or writing a tensor file; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Format { path: String, msg: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}; weft reads F32, F16, BF16 and I32/I64")]
    Dtype {
        path: String,
        name: String,
        dtype: String,
    },
}

/// Reads every tensor; f16/bf16 become f32, i64 becomes i32.
pub fn load(path: &Path) -> Result<BTreeMap<String, Tensor>, TensorFileError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TensorFileError::Io {
        path: p.clone(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TensorFileError::Format {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        out.insert(name.clone(), to_tensor(&p, &name, &view)?);
    }
    Ok(out)
}

fn to_tensor(path: &str, name: &str, v: &TensorView) -> Result<Tensor, TensorFileError> {
    let d = v.data();
    let shape = v.shape().to_vec();
    let le2 = |c: &[u8]| [c[0], c[1]];
    let le4 = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    Ok(match v.dtype() {
        Dtype::F32 => Tensor::f32(
            &shape,
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes(le4(c)))
                .collect(),
        ),
        Dtype::F16 => Tensor::f32(
            &shape,
            d.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(le2(c)).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Tensor::f32(
            &shape,
            d.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes(le2(c)).to_f32())
                .collect(),
        ),
        Dtype::I32 => Tensor::i32(
            &shape,
            d.chunks_exact(4)
                .map(|c| i32::from_le_bytes(le4(c)))
                .collect(),
        ),
        Dtype::I64 => Tensor::i32(
            &shape,
            d.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as i32)
                .collect(),
        ),
        other => {
            return Err(TensorFileError::Dtype {
                path: path.into(),
                name: name.into(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Writes tensors (f64 is stored as f32) atomically: temp file, fsync, rename.
pub fn save(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), TensorFileError> {
    save_with_metadata(path, tensors, None)
}

/// Like [`save`], with the header's `__metadata__` (HF checkpoints carry `format: pt`,
/// which transformers checks).
pub fn save_with_metadata(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), TensorFileError> {
    let p = path.display().to_string();
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let (dtype, bytes) = match t.as_i32() {
            Some(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            None => (
                Dtype::F32,
                t.to_f32_vec()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
        };
        bufs.push((name.clone(), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| TensorFileError::Format {
            path: p.clone(),
            msg: e.to_string(),
        })?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| TensorFileError::Format {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes).map_err(|source| TensorFileError::Io { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("weft-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            Tensor::f32(&[2, 2], vec![1.5, -2.0, 3.25, 1e-7]),
        );
        m.insert("ids".to_string(), Tensor::i32(&[3], vec![1, -1, 7]));
        save(&path, &m).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back["a"].to_f32_vec(), m["a"].to_f32_vec());
        assert_eq!(back["ids"].as_i32().unwrap(), &[1, -1, 7]);
        std::fs::write(&path, b"garbage").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("t.safetensors") && err.contains("not a valid safetensors"),
            "{err}"
        );
    }
}
