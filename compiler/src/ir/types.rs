use serde::{Deserialize, Serialize};
use std::fmt;

/// A handle to one node of a [`Graph`](super::Graph): the index of the node in the arena.
///
/// Nodes are appended in construction order and may only use earlier nodes, so handle order
/// is a topological order and the text form can print handles as stable ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub u32);

impl ValueId {
    /// The arena index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Element type of a value. Only `F32` and `I32` exist today; the enum is non-exhaustive so
/// half precision and unsigned ids can be added without breaking matches downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DType {
    F32,
    I32,
}

impl DType {
    /// Bytes per element (what the memory planner and the GPU buffers use).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        })
    }
}

/// A static shape: one extent per axis, row-major. `[]` is a scalar.
pub type Shape = Vec<usize>;

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
