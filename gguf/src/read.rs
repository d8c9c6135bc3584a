//! Parsing a GGUF file: header, metadata, tensor infos; reading a tensor's bytes.
//!
//! Nothing is allocated from a count or length in the file before that count has been
//! checked against the bytes that remain (each element of a count occupies at least a known
//! number of bytes), and all offset arithmetic is checked, so a hostile file gives an error
//! naming the field, never a panic or an allocation of its choosing.

use crate::meta::{min_size, ty, type_name};
use crate::{GgmlType, GgufError, MetaValue, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// ggml's limit on a tensor's dimensions.
pub const MAX_DIMS: u32 = 4;
/// Arrays nested deeper than this are refused (GGUF writers nest one level at most; a bound
/// keeps a hostile file from exhausting the stack).
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Metadata values (array elements included) in one file. A value takes 32 bytes in memory
/// but may take one in the file; this caps what a small hostile file can make us hold
/// (about 1 GiB) while leaving room for vocabularies a hundred times SmolLM2's.
pub const MAX_META_VALUES: u64 = 1 << 25;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Extents, GGUF order: `dims[0]` varies fastest (so a row-major `[rows, cols]` matrix
    /// is stored as `[cols, rows]`).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset of its data from the start of the data section ([`GgufFile::data_offset`]).
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements, or `None` if the product overflows (never for a tensor of a file
    /// that opened: `open` checks it).
    pub fn n_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes of its data, or `None` for a type without a known layout or an element count
    /// that is not whole blocks (never for a tensor of a file that opened).
    pub fn n_bytes(&self) -> Option<u64> {
        self.ggml_type.bytes_for(self.n_elements()?)
    }
}

/// Where tensor data is read from.
#[derive(Debug)]
enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// A parsed GGUF file: its metadata and tensor infos; tensor data is read on demand.
#[derive(Debug)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Every metadata entry in file order (keys are unique).
    pub metadata: Vec<(String, MetaValue)>,
    /// Every tensor in file order (names are unique).
    pub tensors: Vec<TensorInfo>,
    /// Alignment of tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the data section; tensor offsets are relative to it.
    pub data_offset: u64,
    /// The file's size in bytes.
    pub file_len: u64,
    source: Source,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Reads the header, metadata and tensor infos of the file at `path` and checks every
    /// tensor's data range against its size; tensor data is read by [`GgufFile::tensor_f32`].
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |what: &str, source| GgufError::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        let file = File::open(path).map_err(|e| io("opening", e))?;
        let len = file
            .metadata()
            .map_err(|e| io("reading the size of", e))?
            .len();
        let mut r = Reader {
            inner: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            len,
        };
        let header = parse(&mut r)?;
        Ok(GgufFile::new(header, len, Source::Path(path.to_path_buf())))
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        let len = bytes.len() as u64;
        let mut r = Reader {
            inner: bytes.as_slice(),
            pos: 0,
            len,
        };
        let header = parse(&mut r)?;
        Ok(GgufFile::new(header, len, Source::Bytes(bytes)))
    }

    fn new(h: Header, file_len: u64, source: Source) -> GgufFile {
        let meta_index = (h.metadata.iter().enumerate())
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = (h.tensors.iter().enumerate())
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        GgufFile {
            version: h.version,
            metadata: h.metadata,
            tensors: h.tensors,
            alignment: h.alignment,
            data_offset: h.data_offset,
            file_len,
            source,
            meta_index,
            tensor_index,
        }
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key).ok_or_else(|| GgufError::Meta {
            key: key.to_string(),
            msg: "missing".to_string(),
        })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, what: &str) -> Result<T> {
        let v = self.require(key)?;
        let wrong = || GgufError::Meta {
            key: key.to_string(),
            msg: format!("is {v}, not {what}"),
        };
        let x = v.as_i128().ok_or_else(wrong)?;
        T::try_from(x).map_err(|_| wrong())
    }

    /// Metadata `key` as a u32: any integer type whose value fits.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.integer(key, "an integer in the range of uint32")
    }

    /// Metadata `key` as a u64: any integer type whose value fits.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.integer(key, "an integer in the range of uint64")
    }

    /// Metadata `key` as an i64: any integer type whose value fits.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.integer(key, "an integer in the range of int64")
    }

    /// Metadata `key` as an f32: `float32`, or `float64` rounded.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        match *v {
            MetaValue::F32(x) => Ok(x),
            MetaValue::F64(x) => Ok(x as f32),
            _ => Err(GgufError::Meta {
                key: key.to_string(),
                msg: format!("is {v}, not a float"),
            }),
        }
    }

    /// Metadata `key` as a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => Err(GgufError::Meta {
                key: key.to_string(),
                msg: format!("is {v}, not a bool"),
            }),
        }
    }

    /// Metadata `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| GgufError::Meta {
            key: key.to_string(),
            msg: format!("is {v}, not a string"),
        })
    }

    /// Metadata `key` as an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let items = v.as_array().ok_or_else(|| GgufError::Meta {
            key: key.to_string(),
            msg: format!("is {v}, not an array of strings"),
        })?;
        (items.iter().enumerate())
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| GgufError::Meta {
                    key: key.to_string(),
                    msg: format!("element {i} is {item}, not a string"),
                })
            })
            .collect()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn find(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::Tensor {
            name: name.to_string(),
            msg: format!("not in the file (it has {} tensors)", self.tensors.len()),
        })
    }

    /// The raw bytes of tensor `name` as stored (quantised blocks for quantised types).
    pub fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let info = self.find(name)?;
        let bad = |msg: String| GgufError::Tensor {
            name: name.to_string(),
            msg,
        };
        let n = info
            .n_bytes()
            .ok_or_else(|| bad(format!("{} data has no size", info.ggml_type)))?;
        let start = (self.data_offset.checked_add(info.offset))
            .ok_or_else(|| bad("data offset overflows".to_string()))?;
        let end = (start.checked_add(n))
            .filter(|&e| e <= self.file_len)
            .ok_or_else(|| bad(format!("data at {start}+{n} runs past the end of the file")))?;
        match &self.source {
            Source::Bytes(b) => {
                let (s, e) = (usize::try_from(start), usize::try_from(end));
                match (s, e) {
                    (Ok(s), Ok(e)) if e <= b.len() => Ok(Cow::Borrowed(&b[s..e])),
                    _ => Err(bad(format!("data at {start}..{end} is outside the buffer"))),
                }
            }
            Source::Path(path) => {
                let io = |source| GgufError::Io {
                    what: format!(
                        "reading tensor `{name}` ({n} bytes at offset {start}) of {}",
                        path.display()
                    ),
                    source,
                };
                let mut f = File::open(path).map_err(io)?;
                f.seek(SeekFrom::Start(start)).map_err(io)?;
                let len = usize::try_from(n).map_err(|_| bad(format!("{n} bytes")))?;
                let mut buf = vec![0u8; len];
                f.read_exact(&mut buf).map_err(io)?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Tensor `name` dequantised to f32, in GGUF's element order (`dims[0]` fastest, so
    /// row-major with the dims reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.find(name)?;
        let bad = |msg: String| GgufError::Tensor {
            name: name.to_string(),
            msg,
        };
        if !info.ggml_type.is_supported() {
            return Err(bad(
                GgufError::Unsupported { ty: info.ggml_type }.to_string()
            ));
        }
        let n = (info.n_elements())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(format!("dims {:?} are too many elements", info.dims)))?;
        let bytes = self.tensor_bytes(name)?;
        crate::dequantize(info.ggml_type, &bytes, n).map_err(|e| bad(e.to_string()))
    }
}

/// What `parse` returns.
struct Header {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// A reader that knows its position and the file's length, so every read is checked
/// against the end before it is attempted.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

/// Names a field lazily: built only when an error needs it.
type Field<'a> = &'a dyn Fn() -> String;

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    /// Errs unless `n` more bytes are there.
    fn need(&self, n: u64, field: Field) -> Result<()> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.pos,
                need: n,
                len: self.len,
            });
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], field: Field) -> Result<()> {
        self.need(buf.len() as u64, field)?;
        self.inner.read_exact(buf).map_err(|source| GgufError::Io {
            what: format!("reading {} at offset {}", field(), self.pos),
            source,
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, field: Field) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, field)?;
        Ok(b)
    }

    fn u32(&mut self, field: Field) -> Result<u32> {
        self.bytes(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: Field) -> Result<u64> {
        self.bytes(field).map(u64::from_le_bytes)
    }

    fn string(&mut self, field: Field) -> Result<String> {
        let n = self.u64(&|| format!("length of {}", field()))?;
        self.need(n, field)?;
        let at = self.pos;
        // `need` bounded n by the file size, which fits in memory's address space only if
        // usize can hold it.
        let n = usize::try_from(n).map_err(|_| GgufError::Invalid {
            field: field(),
            offset: at,
            msg: format!("{n} bytes do not fit in memory"),
        })?;
        let mut buf = vec![0u8; n];
        self.fill(&mut buf, field)?;
        String::from_utf8(buf).map_err(|e| GgufError::Invalid {
            field: field(),
            offset: at,
            msg: format!("not UTF-8 ({e})"),
        })
    }

    /// Errs unless `count` elements of at least `each` bytes fit in what remains.
    fn need_count(&self, count: u64, each: u64, field: Field) -> Result<()> {
        let need = count.saturating_mul(each);
        self.need(need, &|| format!("{} ({count} of them)", field()))
    }

    /// One value of type `t` for key `key`; `values` counts values read so far.
    fn value(&mut self, t: u32, key: &str, depth: u32, values: &mut u64) -> Result<MetaValue> {
        *values += 1;
        if *values > MAX_META_VALUES {
            return Err(GgufError::Invalid {
                field: format!("value of `{key}`"),
                offset: self.pos,
                msg: format!("the file holds more than {MAX_META_VALUES} metadata values"),
            });
        }
        let f = &|| format!("value of `{key}`");
        Ok(match t {
            ty::U8 => MetaValue::U8(u8::from_le_bytes(self.bytes(f)?)),
            ty::I8 => MetaValue::I8(i8::from_le_bytes(self.bytes(f)?)),
            ty::U16 => MetaValue::U16(u16::from_le_bytes(self.bytes(f)?)),
            ty::I16 => MetaValue::I16(i16::from_le_bytes(self.bytes(f)?)),
            ty::U32 => MetaValue::U32(u32::from_le_bytes(self.bytes(f)?)),
            ty::I32 => MetaValue::I32(i32::from_le_bytes(self.bytes(f)?)),
            ty::U64 => MetaValue::U64(u64::from_le_bytes(self.bytes(f)?)),
            ty::I64 => MetaValue::I64(i64::from_le_bytes(self.bytes(f)?)),
            ty::F32 => MetaValue::F32(f32::from_le_bytes(self.bytes(f)?)),
            ty::F64 => MetaValue::F64(f64::from_le_bytes(self.bytes(f)?)),
            ty::BOOL => {
                let at = self.pos;
                match self.bytes::<1>(f)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(GgufError::Invalid {
                            field: f(),
                            offset: at,
                            msg: format!("a bool is 0 or 1, not {b}"),
                        })
                    }
                }
            }
            ty::STRING => MetaValue::String(self.string(f)?),
            ty::ARRAY => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Invalid {
                        field: f(),
                        offset: at,
                        msg: format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
                    });
                }
                let et = self.u32(&|| format!("element type of `{key}`"))?;
                let each = min_size(et).ok_or_else(|| GgufError::Invalid {
                    field: format!("element type of `{key}`"),
                    offset: at,
                    msg: format!("unknown value type {et}"),
                })?;
                let count = self.u64(&|| format!("element count of `{key}`"))?;
                let ef = &|| format!("elements of `{key}` ({})", type_name(et));
                self.need_count(count, each, ef)?;
                if count > MAX_META_VALUES - *values {
                    return Err(GgufError::Invalid {
                        field: ef(),
                        offset: at,
                        msg: format!("{count} elements; a file holds at most {MAX_META_VALUES} metadata values"),
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(et, key, depth + 1, values)?);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(GgufError::Invalid {
                    field: format!("type of `{key}`"),
                    offset: self.pos.saturating_sub(4),
                    msg: format!("unknown value type {other}"),
                })
            }
        })
    }
}

/// Parses everything before the data section and checks each tensor's data range.
fn parse<R: Read>(r: &mut Reader<R>) -> Result<Header> {
    let head = (r.len.min(4)) as usize;
    let mut magic = vec![0u8; head];
    r.fill(&mut magic, &|| "magic".to_string())?;
    if magic != b"GGUF"[..head] {
        return Err(GgufError::BadMagic { found: magic });
    }
    r.need(4, &|| "magic".to_string())?;
    let version = r.u32(&|| "version".to_string())?;
    match version {
        2 | 3 => {}
        v if v > 0xffff && matches!(v.swap_bytes(), 1..=3) => return Err(GgufError::BigEndian(v)),
        v => return Err(GgufError::Version(v)),
    }
    let n_tensors = r.u64(&|| "tensor count".to_string())?;
    let n_meta = r.u64(&|| "metadata count".to_string())?;
    // An entry is at least a key length, a type and one byte of value.
    r.need_count(n_meta, 8 + 4 + 1, &|| "metadata entries".to_string())?;
    // A tensor info is at least a name length, a dim count, a type and an offset.
    const MIN_INFO: u64 = 8 + 4 + 4 + 8;
    r.need_count(n_tensors, MIN_INFO, &|| "tensor infos".to_string())?;

    let mut metadata = Vec::with_capacity(n_meta as usize);
    let mut seen = HashMap::with_capacity(n_meta as usize);
    let mut values = 0u64;
    for i in 0..n_meta {
        let at = r.pos;
        let key = r.string(&|| format!("key of metadata entry {i}"))?;
        let t = r.u32(&|| format!("type of `{key}`"))?;
        let value = r.value(t, &key, 0, &mut values)?;
        if seen.insert(key.clone(), at).is_some() {
            return Err(GgufError::Invalid {
                field: format!("key of metadata entry {i}"),
                offset: at,
                msg: format!("`{key}` appears twice"),
            });
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_i128() {
            Some(a) if a > 0 && a <= u32::MAX as i128 && (a as u64).is_power_of_two() => a as u64,
            _ => {
                return Err(GgufError::Invalid {
                    field: format!("`{ALIGNMENT_KEY}`"),
                    offset: seen[ALIGNMENT_KEY],
                    msg: format!("is {v}; the alignment is a power of two that fits uint32"),
                })
            }
        },
    };

    r.need_count(n_tensors, MIN_INFO, &|| "tensor infos".to_string())?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut names: HashMap<String, u64> = HashMap::with_capacity(n_tensors as usize);
    let mut info_at = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let at = r.pos;
        let name = r.string(&|| format!("name of tensor {i}"))?;
        let field = |what: &str| format!("{what} of tensor `{name}`");
        let dims_at = r.pos;
        let n_dims = r.u32(&|| field("dimension count"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::Invalid {
                field: field("dimension count"),
                offset: dims_at,
                msg: format!("{n_dims} dimensions; ggml allows at most {MAX_DIMS}"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(r.u64(&|| field(&format!("dimension {d}")))?);
        }
        let type_at = r.pos;
        let ggml_type = GgmlType::from_id(r.u32(&|| field("type"))?);
        let offset_at = r.pos;
        let offset = r.u64(&|| field("data offset"))?;
        let Some((block, _)) = ggml_type.layout() else {
            return Err(GgufError::Invalid {
                field: field("type"),
                offset: type_at,
                msg: format!("{ggml_type} (not a ggml type this reader knows)"),
            });
        };
        let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        if n.is_none_or(|n| n > i64::MAX as u64) {
            return Err(GgufError::Invalid {
                field: field("dimensions"),
                offset: dims_at,
                msg: format!("{dims:?} overflow the element count"),
            });
        };
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block) {
            return Err(GgufError::Invalid {
                field: field("dimension 0"),
                offset: dims_at + 4,
                msg: format!("{row} is not a multiple of {ggml_type}'s block of {block}"),
            });
        }
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::Invalid {
                field: field("data offset"),
                offset: offset_at,
                msg: format!("{offset} is not a multiple of the alignment {alignment}"),
            });
        }
        if names.insert(name.clone(), at).is_some() {
            return Err(GgufError::Invalid {
                field: format!("name of tensor {i}"),
                offset: at,
                msg: format!("`{name}` appears twice"),
            });
        }
        info_at.push(offset_at);
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let data_offset = (r.pos.checked_add(alignment - 1))
        .map(|p| p / alignment * alignment)
        .ok_or_else(|| GgufError::Invalid {
            field: "data section".to_string(),
            offset: r.pos,
            msg: "its aligned start overflows".to_string(),
        })?;
    for (t, &at) in tensors.iter().zip(&info_at) {
        let n_bytes = t.n_bytes().ok_or_else(|| GgufError::Invalid {
            field: format!("dimensions of tensor `{}`", t.name),
            offset: at,
            msg: format!("{:?} of {} overflow the byte count", t.dims, t.ggml_type),
        })?;
        let end = (data_offset.checked_add(t.offset)).and_then(|s| s.checked_add(n_bytes));
        if end.is_none_or(|e| e > r.len) {
            return Err(GgufError::Invalid {
                field: format!("data offset of tensor `{}`", t.name),
                offset: at,
                msg: format!(
                    "{} bytes of {} at data offset {} (absolute {}) run past the end of the {}-byte file",
                    n_bytes,
                    t.ggml_type,
                    t.offset,
                    data_offset.saturating_add(t.offset),
                    r.len
                ),
            });
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}
