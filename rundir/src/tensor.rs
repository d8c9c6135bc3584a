use serde::{Deserialize, Serialize};

/// Element storage of a host tensor.
///
/// `F64` exists only on the host: the CPU backend's f64 mode (used for gradient checks)
/// accepts and returns it for values the graph types as f32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    F64(Vec<f64>),
}

/// A dense row-major host tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

fn check_len(shape: &[usize], len: usize) {
    let n: usize = shape.iter().product();
    assert_eq!(
        n, len,
        "tensor of shape {shape:?} needs {n} elements, got {len}"
    );
}

impl Tensor {
    /// An f32 tensor.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape` (a caller bug, like a bad slice index).
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Self {
        check_len(shape, data.len());
        Tensor {
            shape: shape.to_vec(),
            data: TensorData::F32(data),
        }
    }

    /// An i32 tensor. Panics like [`Tensor::f32`].
    pub fn i32(shape: &[usize], data: Vec<i32>) -> Self {
        check_len(shape, data.len());
        Tensor {
            shape: shape.to_vec(),
            data: TensorData::I32(data),
        }
    }

    /// An f64 tensor (host-side, for the CPU backend's f64 mode). Panics like [`Tensor::f32`].
    pub fn f64(shape: &[usize], data: Vec<f64>) -> Self {
        check_len(shape, data.len());
        Tensor {
            shape: shape.to_vec(),
            data: TensorData::F64(data),
        }
    }

    /// An f32 tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::f32(shape, vec![0.0; shape.iter().product()])
    }

    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `"f32"`, `"i32"` or `"f64"`.
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            TensorData::F32(_) => "f32",
            TensorData::I32(_) => "i32",
            TensorData::F64(_) => "f64",
        }
    }

    /// The f32 data, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i32 data, if this is an i32 tensor.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The f64 data, if this is an f64 tensor.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// Every element widened to f64 (exact for all three element types).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
        }
    }

    /// Every element as f32 (f64 is rounded).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}
