//! Metadata values and the typed getters' conversions.

use std::fmt;

/// One metadata value, as GGUF types it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `uint8` (type 0).
    U8(u8),
    /// `int8` (type 1).
    I8(i8),
    /// `uint16` (type 2).
    U16(u16),
    /// `int16` (type 3).
    I16(i16),
    /// `uint32` (type 4).
    U32(u32),
    /// `int32` (type 5).
    I32(i32),
    /// `uint64` (type 10).
    U64(u64),
    /// `int64` (type 11).
    I64(i64),
    /// `float32` (type 6).
    F32(f32),
    /// `float64` (type 12).
    F64(f64),
    /// `bool` (type 7), stored as one byte 0 or 1.
    Bool(bool),
    /// `string` (type 8): a u64 length and UTF-8 bytes.
    String(String),
    /// `array` (type 9): an element type, a u64 count and the elements, all of that type.
    Array(Vec<MetaValue>),
}

/// GGUF's value type ids.
pub(crate) mod ty {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// The fewest bytes one value of type `t` occupies in a file (strings: their length field;
/// arrays: element type and count), or `None` for an unknown type. Counts are checked
/// against this before anything is allocated.
pub(crate) fn min_size(t: u32) -> Option<u64> {
    Some(match t {
        ty::U8 | ty::I8 | ty::BOOL => 1,
        ty::U16 | ty::I16 => 2,
        ty::U32 | ty::I32 | ty::F32 => 4,
        ty::U64 | ty::I64 | ty::F64 | ty::STRING => 8,
        ty::ARRAY => 12,
        _ => return None,
    })
}

/// GGUF's name of value type `t`.
pub(crate) fn type_name(t: u32) -> &'static str {
    match t {
        ty::U8 => "uint8",
        ty::I8 => "int8",
        ty::U16 => "uint16",
        ty::I16 => "int16",
        ty::U32 => "uint32",
        ty::I32 => "int32",
        ty::F32 => "float32",
        ty::BOOL => "bool",
        ty::STRING => "string",
        ty::ARRAY => "array",
        ty::U64 => "uint64",
        ty::I64 => "int64",
        ty::F64 => "float64",
        _ => "unknown",
    }
}

impl MetaValue {
    /// GGUF's type id of this value.
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => ty::U8,
            MetaValue::I8(_) => ty::I8,
            MetaValue::U16(_) => ty::U16,
            MetaValue::I16(_) => ty::I16,
            MetaValue::U32(_) => ty::U32,
            MetaValue::I32(_) => ty::I32,
            MetaValue::U64(_) => ty::U64,
            MetaValue::I64(_) => ty::I64,
            MetaValue::F32(_) => ty::F32,
            MetaValue::F64(_) => ty::F64,
            MetaValue::Bool(_) => ty::BOOL,
            MetaValue::String(_) => ty::STRING,
            MetaValue::Array(_) => ty::ARRAY,
        }
    }

    /// GGUF's name of this value's type (`uint32`, `string`, `array`, ...).
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id())
    }

    /// The value as an integer, when it is one of the eight integer types.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(x) => x.into(),
            MetaValue::I8(x) => x.into(),
            MetaValue::U16(x) => x.into(),
            MetaValue::I16(x) => x.into(),
            MetaValue::U32(x) => x.into(),
            MetaValue::I32(x) => x.into(),
            MetaValue::U64(x) => x.into(),
            MetaValue::I64(x) => x.into(),
            _ => return None,
        })
    }

    /// The value as a float, when it is `float32` or `float64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(x) => Some(x.into()),
            MetaValue::F64(x) => Some(x),
            _ => None,
        }
    }

    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, when the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A short description for error messages: the type and, for scalars, the value.
impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::String(s) => {
                let head: String = s.chars().take(40).collect();
                let more = if head.len() < s.len() { "..." } else { "" };
                write!(f, "the string {head:?}{more}")
            }
            MetaValue::Array(a) => match a.first() {
                Some(v) => write!(f, "an array of {} {}", a.len(), v.type_name()),
                None => f.write_str("an empty array"),
            },
            MetaValue::Bool(b) => write!(f, "the bool {b}"),
            MetaValue::F32(x) => write!(f, "the float32 {x}"),
            MetaValue::F64(x) => write!(f, "the float64 {x}"),
            other => match other.as_i128() {
                Some(x) => write!(f, "the {} {x}", other.type_name()),
                None => f.write_str(other.type_name()),
            },
        }
    }
}
