//! A small GGUF writer, for tests and fixtures: metadata of every value type and tensors of
//! F32, F16, BF16 or already-quantised bytes of any ggml type.
//!
//! The writer lays tensors out in the order they were added, each at the next multiple of
//! the alignment, and checks what it writes (sizes, array element types), so a file it
//! produces opens with [`crate::GgufFile`]. Tests that need broken files patch its bytes.

use crate::meta::ty;
use crate::read::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use crate::{GgmlType, GgufError, MetaValue, Result};
use half::{bf16, f16};
use std::path::Path;

/// Builds a GGUF file in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes this version number in the header (the layout of 2 and 3 is the same; other
    /// numbers make files a reader must refuse).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Adds (or replaces) a metadata entry. `general.alignment` sets the tensor alignment.
    pub fn meta(&mut self, key: &str, value: MetaValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Sets `general.alignment`.
    pub fn alignment(&mut self, alignment: u32) -> &mut Self {
        self.meta(ALIGNMENT_KEY, MetaValue::U32(alignment))
    }

    /// Adds an F32 tensor; `dims` in GGUF order (fastest first).
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, dims, GgmlType::F32, data)
    }

    /// Adds an F16 tensor, rounding each value to the nearest half.
    pub fn tensor_f16(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = (values.iter())
            .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        self.tensor_raw(name, dims, GgmlType::F16, data)
    }

    /// Adds a BF16 tensor, rounding each value to the nearest bfloat16.
    pub fn tensor_bf16(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = (values.iter())
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        self.tensor_raw(name, dims, GgmlType::BF16, data)
    }

    /// Adds a tensor of type `ty` whose stored bytes are `data` (quantised blocks for
    /// quantised types); checked against `dims` when the file is built.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let alignment = match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_i128() {
                Some(a) if a > 0 && a <= u32::MAX as i128 && (a as u64).is_power_of_two() => {
                    a as u64
                }
                _ => return Err(GgufError::Write(format!("{ALIGNMENT_KEY} is {v}"))),
            },
        };
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, key, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let n = (t.dims.iter()).try_fold(1u64, |a, &d| a.checked_mul(d));
            let want = n.and_then(|n| t.ty.bytes_for(n));
            if want != Some(t.data.len() as u64) {
                return Err(GgufError::Write(format!(
                    "tensor `{}`: dims {:?} of {} need {want:?} bytes, got {}",
                    t.name,
                    t.dims,
                    t.ty,
                    t.data.len()
                )));
            }
            string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64, alignment);
        }
        let data_start = align(out.len() as u64, alignment);
        out.resize(data_start as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| GgufError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    }
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, key: &str, v: &MetaValue) -> Result<()> {
    match v {
        MetaValue::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(b) => out.push(u8::from(*b)),
        MetaValue::String(s) => string(out, s),
        MetaValue::Array(items) => {
            // An empty array still names an element type; uint8 is as good as any.
            let et = items.first().map_or(ty::U8, MetaValue::type_id);
            if let Some(bad) = items.iter().find(|i| i.type_id() != et) {
                return Err(GgufError::Write(format!(
                    "array `{key}` mixes {} and {}",
                    crate::meta::type_name(et),
                    bad.type_name()
                )));
            }
            out.extend_from_slice(&et.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, key, item)?;
            }
        }
    }
    Ok(())
}
