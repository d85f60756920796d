//! GGUF (versions 2 and 3) reader: header, metadata, tensor infos, bounds-checked tensor data.
//!
//! Layout (all little-endian): magic `"GGUF"`, `u32 version`, `u64 n_tensors`, `u64 n_kv`, then
//! `n_kv` key/value pairs (`string key, u32 type, value`), then `n_tensors` tensor infos
//! (`string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset`), then padding up to the
//! alignment (`general.alignment`, default 32), then the data section; tensor offsets are relative
//! to the start of the data section and multiples of the alignment.
//!
//! **Dimension order.** GGUF stores `ne[0]` as the innermost (fastest-varying, contiguous) axis.
//! A linear weight stored with `ne = [in, out]` is therefore our row-major `[out, in]` matrix
//! (`out` rows of `in` contiguous elements). [`GgufTensorInfo::shape`] returns the row-major
//! shape (`ne` reversed); [`GgufTensorInfo::ne`] keeps the stored order. Quantized blocks always
//! run along `ne[0]`, i.e. along the input (reduction) dimension of a weight.
//!
//! **RoPE permutation.** llama.cpp's converter permutes the rows of Llama `attn_q` / `attn_k`
//! weights relative to Hugging Face checkpoints (per head, rows `[0, d/2)` and `[d/2, d)` are
//! interleaved) because GGUF llama models apply RoPE to adjacent pairs `(2i, 2i+1)` while HF rotates
//! `(i, i + d/2)`. This reader returns the weights exactly as stored; a decoder that loads GGUF
//! Q/K weights must use the interleaved-pair RoPE (or un-permute the rows).
//!
//! Every count and length in the header is checked against the file size before anything is
//! allocated, so corrupt files produce [`ModelError`]s, never panics or huge allocations.

use std::collections::HashMap;
use std::path::Path;

use crate::byte_source::{Cursor, FileSource, ReadAt};
use crate::dequant::dequantize;
use crate::error::{ModelError, Result};
use crate::ggml_type::GgmlType;
use crate::gguf_meta::{read_string, read_value, MetaType, MetaValue};

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data-section alignment when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor can have.
pub const GGML_MAX_DIMS: usize = 4;

/// Description of one tensor in a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dims as stored: `ne[0]` is the innermost (contiguous) axis.
    pub ne: Vec<u64>,
    /// Raw ggml type id.
    pub type_id: u32,
    /// The type, if this crate knows the id.
    pub ggml_type: Option<GgmlType>,
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elems: u64,
    /// Size of the data in bytes (`None` for unknown types).
    pub n_bytes: Option<u64>,
}

impl GgufTensorInfo {
    /// Row-major shape (outermost first): `ne` reversed, e.g. `[out, in]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        // n_elems (hence every dim) was checked to fit in usize at open time.
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }

    /// The type's name, or `unknown ggml type N`.
    pub fn type_name(&self) -> String {
        match self.ggml_type {
            Some(t) => t.name().to_string(),
            None => format!("unknown ggml type {}", self.type_id),
        }
    }
}

/// An open GGUF file: parsed header plus a handle for reading tensor data on demand.
pub struct GgufFile {
    source: Box<dyn ReadAt>,
    label: String,
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("label", &self.label)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses the GGUF file at `path` (tensor data is read later, on demand).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let src = FileSource::open(path)
            .map_err(|e| ModelError::io(format!("opening {}", path.display()), e))?;
        Self::from_source(Box::new(src), path.display().to_string())
    }

    /// Parses a GGUF image from any byte source; `label` names it in messages.
    pub fn from_source(source: Box<dyn ReadAt>, label: impl Into<String>) -> Result<Self> {
        let label = label.into();
        let header = parse_header(source.as_ref())?;
        Ok(GgufFile {
            source,
            label,
            version: header.version,
            metadata: header.metadata,
            meta_index: header.meta_index,
            tensors: header.tensors,
            tensor_index: header.tensor_index,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The file's label (its path when opened from disk).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// File length in bytes.
    pub fn file_len(&self) -> u64 {
        self.source.len()
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The metadata value for `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(MetaValue::as_str)
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn tensor_or_err(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor(name).ok_or_else(|| ModelError::UnknownTensor {
            name: name.to_string(),
        })
    }

    /// The stored bytes of tensor `name` (still quantized).
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>> {
        let info = self.tensor_or_err(name)?;
        let n_bytes = info.n_bytes.ok_or_else(|| ModelError::UnsupportedDtype {
            name: name.to_string(),
            dtype: info.type_name(),
        })?;
        // In bounds of the file (checked at open), so the allocation is bounded by the file size.
        let mut buf = vec![0u8; n_bytes as usize];
        let start = self.data_offset + info.offset;
        self.source.read_exact_at(start, &mut buf).map_err(|e| {
            ModelError::io(format!("reading tensor `{name}` from {}", self.label), e)
        })?;
        Ok(buf)
    }

    /// Tensor `name` converted to f32, in row-major order of [`GgufTensorInfo::shape`].
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor_or_err(name)?;
        let ty = info
            .ggml_type
            .filter(|t| t.can_dequantize())
            .ok_or_else(|| ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: info.type_name(),
            })?;
        let raw = self.read_raw(name)?;
        dequantize(ty, &raw, info.n_elems as usize, name)
    }
}

/// Everything parsed from the header.
struct Header {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

fn parse_header(src: &dyn ReadAt) -> Result<Header> {
    let mut c = Cursor::new(src);
    let magic: [u8; 4] = c.array("GGUF magic")?;
    if magic != GGUF_MAGIC {
        return Err(ModelError::BadMagic { found: magic });
    }
    let version = c.u32("GGUF version")?;
    if version != 2 && version != 3 {
        let hint = if version == 1 {
            ": GGUF v1 files predate 64-bit counts; re-convert the model".to_string()
        } else if matches!(version.swap_bytes(), 2 | 3) {
            ": this looks like a big-endian GGUF file, which is not supported".to_string()
        } else {
            String::new()
        };
        return Err(ModelError::BadVersion { version, hint });
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // Smallest possible entries: kv = key length + type + 1-byte value; tensor info = name length
    // + n_dims + type + offset.
    let min_needed = n_kv
        .saturating_mul(13)
        .saturating_add(n_tensors.saturating_mul(24));
    if min_needed > c.remaining() {
        return Err(ModelError::Truncated {
            what: format!("{n_kv} metadata entries and {n_tensors} tensor infos"),
            offset: c.pos(),
            needed: min_needed,
            file_len: c.len(),
        });
    }

    let (metadata, meta_index) = parse_metadata(&mut c, n_kv)?;
    let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 30 => a,
            _ => {
                return Err(ModelError::BadMetadata {
                    key: "general.alignment".into(),
                    reason: format!("{v} is not a power of two"),
                })
            }
        },
    };

    let (tensors, tensor_index) = parse_tensor_infos(&mut c, n_tensors, alignment)?;
    let data_offset = c
        .pos()
        .div_ceil(alignment)
        .checked_mul(alignment)
        .ok_or_else(|| ModelError::format("GGUF", "data offset overflows"))?;
    check_tensor_bounds(&tensors, data_offset, c.len())?;
    Ok(Header {
        version,
        metadata,
        meta_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

type Metadata = (Vec<(String, MetaValue)>, HashMap<String, usize>);

fn parse_metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<Metadata> {
    let mut metadata = Vec::with_capacity(n_kv.min(1 << 16) as usize);
    let mut index = HashMap::new();
    for i in 0..n_kv {
        let key = read_string(c, &format!("metadata key #{i}"))?;
        let type_id = c.u32(&format!("type of metadata `{key}`"))?;
        let ty = MetaType::from_id(type_id).ok_or_else(|| ModelError::BadMetadata {
            key: key.clone(),
            reason: format!("unknown value type {type_id}"),
        })?;
        let value = read_value(c, ty, &key, 0)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return Err(ModelError::BadMetadata {
                key,
                reason: "duplicate key".into(),
            });
        }
        metadata.push((key, value));
    }
    Ok((metadata, index))
}

type TensorInfos = (Vec<GgufTensorInfo>, HashMap<String, usize>);

fn parse_tensor_infos(c: &mut Cursor<'_>, n_tensors: u64, alignment: u64) -> Result<TensorInfos> {
    let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
    let mut index = HashMap::new();
    for i in 0..n_tensors {
        let name = read_string(c, &format!("name of tensor #{i}"))?;
        let n_dims = c.u32(&format!("n_dims of tensor `{name}`"))? as usize;
        if n_dims == 0 || n_dims > GGML_MAX_DIMS {
            return Err(ModelError::BadShape {
                name,
                dims: vec![],
                reason: format!("{n_dims} dimensions (ggml allows 1..={GGML_MAX_DIMS})"),
            });
        }
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            ne.push(c.u64(&format!("dims of tensor `{name}`"))?);
        }
        let type_id = c.u32(&format!("type of tensor `{name}`"))?;
        let offset = c.u64(&format!("offset of tensor `{name}`"))?;
        let info = tensor_info(name, ne, type_id, offset, alignment)?;
        if index.insert(info.name.clone(), tensors.len()).is_some() {
            return Err(ModelError::format(
                "GGUF",
                format!("duplicate tensor name `{}`", info.name),
            ));
        }
        tensors.push(info);
    }
    Ok((tensors, index))
}

/// Validates one tensor's shape, type and offset and computes its sizes.
fn tensor_info(
    name: String,
    ne: Vec<u64>,
    type_id: u32,
    offset: u64,
    alignment: u64,
) -> Result<GgufTensorInfo> {
    let n_elems = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let n_elems = match n_elems {
        Some(n) if usize::try_from(n).is_ok() && n <= i64::MAX as u64 => n,
        _ => return Err(ModelError::ShapeOverflow { name, dims: ne }),
    };
    let ggml_type = GgmlType::from_id(type_id);
    let n_bytes = match ggml_type {
        None => None,
        Some(t) => {
            if !ne[0].is_multiple_of(t.block_elems() as u64) {
                let reason = format!(
                    "ne[0] = {} is not a multiple of the {t} block size {}",
                    ne[0],
                    t.block_elems()
                );
                return Err(ModelError::BadShape {
                    name,
                    dims: ne,
                    reason,
                });
            }
            match t.bytes_for(n_elems) {
                Some(b) => Some(b),
                None => return Err(ModelError::ShapeOverflow { name, dims: ne }),
            }
        }
    };
    if !offset.is_multiple_of(alignment) {
        return Err(ModelError::format(
            "GGUF",
            format!(
                "tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}"
            ),
        ));
    }
    Ok(GgufTensorInfo {
        name,
        ne,
        type_id,
        ggml_type,
        offset,
        n_elems,
        n_bytes,
    })
}

/// Checks every tensor of known size lies inside the file.
fn check_tensor_bounds(tensors: &[GgufTensorInfo], data_offset: u64, file_len: u64) -> Result<()> {
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes.unwrap_or(0)));
        match (start, end) {
            (Some(_), Some(e)) if e <= file_len => {}
            _ => {
                return Err(ModelError::TensorOutOfBounds {
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    Ok(())
}
