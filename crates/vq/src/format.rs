//! The quantized-model file (`.vqst`): a safetensors file with AQLM-compatible tensor names plus a
//! `vqllm` JSON metadata entry. See `docs/FORMAT.md` for the full specification.
//!
//! Per quantized tensor `NAME`:
//! - `NAME.codes` (I8 when b ≤ 8, I16 otherwise, `[out, in/v, r]`, AQLM signed values) or
//!   `NAME.codes_packed` (U8 `[out, ceil(in/v · r · b / 8)]`, one LSB-first bitstream per output row);
//! - `NAME.codebooks` F16 `[sets·r, 2^b, 1, v]` (absent for the E8P lattice);
//! - `NAME.scales` F16 `[out, 1, 1, 1]` when `per_channel_scale`;
//! - `NAME.rht_signs` F16 `[in]` when `hadamard`;
//! - `NAME.stage_scales` F32 `[r]`.
//!
//! Unquantized tensors are stored under their own names as F32 (default) or F16; BF16 is accepted on load.
//! Loading validates every tensor against the JSON and the config and never panics on corrupt bytes.

use crate::config::{CodebookKind, VqConfig};
use crate::error::{check_finite, Result, VqError};
use crate::pack;
use crate::weight::{QuantizedWeight, Rht};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// File extension of quantized-model files.
pub const FILE_EXTENSION: &str = "vqst";
/// Key of the safetensors `__metadata__` entry that holds the vqllm JSON.
pub const METADATA_KEY: &str = "vqllm";
/// Value of the JSON `format` field.
pub const FORMAT_NAME: &str = "vqllm-vqst";
/// Format version written by this crate; loading any other version is an error.
pub const FORMAT_VERSION: u32 = 1;

/// How codes are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStorage {
    /// AQLM int8/int16 `NAME.codes` for b ∈ {8, 16}, the packed bitstream `NAME.codes_packed` otherwise.
    #[default]
    Auto,
    /// Always AQLM int8 (b ≤ 8) / int16 (b ≤ 16) `NAME.codes`: readable by AQLM tooling, wastes bits for other b.
    Aqlm,
    /// Always the `b`-bit bitstream `NAME.codes_packed`.
    Packed,
}

impl CodeStorage {
    /// The concrete storage (never `Auto`) used for `b`-bit codes.
    pub fn resolve(self, b: u32) -> CodeStorage {
        match self {
            CodeStorage::Auto if b == 8 || b == 16 => CodeStorage::Aqlm,
            CodeStorage::Auto => CodeStorage::Packed,
            other => other,
        }
    }
}

/// Dtype of unquantized (dense) tensors on save.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenseDtype {
    /// Lossless.
    #[default]
    F32,
    /// Half the size; values are rounded to the nearest fp16 (overflow is an error).
    F16,
}

/// Options of [`QuantizedModel::save_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    pub codes: CodeStorage,
    pub dense: DenseDtype,
}

/// A quantized model: VQ-quantized weights, unquantized tensors and free-form model information.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    /// Quantized weights by name (order preserved by the file).
    pub tensors: Vec<(String, QuantizedWeight)>,
    /// Unquantized tensors: name, shape, row-major values.
    pub dense: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Free-form model information (source file, preset, architecture...), stored in the metadata JSON.
    pub info: serde_json::Value,
}

/// Per-quantized-tensor entry of the metadata JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorEntry {
    name: String,
    config: VqConfig,
    rows: usize,
    cols: usize,
    /// `aqlm` (`NAME.codes`) or `packed` (`NAME.codes_packed`).
    code_storage: CodeStorage,
    /// Hadamard block size when `config.hadamard`.
    rht_block: Option<usize>,
}

/// Per-dense-tensor entry of the metadata JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenseEntry {
    name: String,
    shape: Vec<usize>,
    /// `F32`, `F16` or `BF16`.
    dtype: String,
}

/// The metadata JSON stored under [`METADATA_KEY`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    info: serde_json::Value,
    tensors: Vec<TensorEntry>,
    dense: Vec<DenseEntry>,
}

/// Every file tensor of a model, with its name, ready for `safetensors::serialize`.
type FileTensors = Vec<(String, OwnedTensor)>;

/// Owned tensor bytes for `safetensors::serialize`.
struct OwnedTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &OwnedTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn fmt_err(msg: impl Into<String>) -> VqError {
    VqError::Format(msg.into())
}

/// A Format error that names quantized tensor `name` and keeps `err`'s message without a second prefix.
fn in_tensor(name: &str, err: VqError) -> VqError {
    let inner = match err {
        VqError::Format(m) => m,
        other => other.to_string(),
    };
    fmt_err(format!("quantized tensor `{name}`: {inner}"))
}

/// Name of a derived tensor of quantized weight `name`.
fn part(name: &str, suffix: &str) -> String {
    format!("{name}.{suffix}")
}

/// fp16 bytes of `values`, failing when a value is non-finite or overflows fp16.
fn f16_checked(what: &str, values: &[f32]) -> Result<Vec<u8>> {
    check_finite(what, values)?;
    let bytes = pack::to_f16_bytes(values);
    if let Some(i) = bytes
        .chunks_exact(2)
        .position(|p| half::f16::from_le_bytes([p[0], p[1]]).is_infinite())
    {
        return Err(VqError::Shape(format!(
            "{what}[{i}] = {} overflows fp16",
            values[i]
        )));
    }
    Ok(bytes)
}

/// Bytes per output row of the packed code stream.
fn packed_row_bytes(groups: usize, r: usize, b: u32) -> Option<usize> {
    groups
        .checked_mul(r)?
        .checked_mul(b as usize)
        .map(|bits| bits.div_ceil(8))
}

/// Encodes one quantized weight into its file tensors.
fn encode_weight(
    name: &str,
    w: &QuantizedWeight,
    storage: CodeStorage,
) -> Result<Vec<(String, OwnedTensor)>> {
    w.validate().map_err(|e| in_tensor(name, e))?;
    let c = &w.config;
    let mut out = Vec::new();
    match storage {
        CodeStorage::Packed => {
            let per_row = w.groups() * c.r;
            let row_bytes = packed_row_bytes(w.groups(), c.r, c.b)
                .ok_or_else(|| fmt_err("code stream too large"))?;
            let rows: Vec<Vec<u8>> = if per_row == 0 {
                vec![Vec::new(); w.rows]
            } else {
                w.codes
                    .par_chunks(per_row)
                    .map(|row| pack::pack_codes(row, c.b))
                    .collect::<Result<_>>()?
            };
            out.push((
                part(name, "codes_packed"),
                OwnedTensor {
                    dtype: Dtype::U8,
                    shape: vec![w.rows, row_bytes],
                    data: rows.concat(),
                },
            ));
        }
        _ => {
            let (dtype, data) = if c.b <= 8 {
                (Dtype::I8, pack::codes_to_aqlm_i8_bytes(&w.codes, c.b)?)
            } else {
                (Dtype::I16, pack::codes_to_aqlm_i16_bytes(&w.codes, c.b)?)
            };
            out.push((
                part(name, "codes"),
                OwnedTensor {
                    dtype,
                    shape: vec![w.rows, w.groups(), c.r],
                    data,
                },
            ));
        }
    }
    if c.codebook == CodebookKind::Learned {
        out.push((
            part(name, "codebooks"),
            OwnedTensor {
                dtype: Dtype::F16,
                shape: vec![w.codebook_sets() * c.r, c.entries(), 1, c.v],
                data: f16_checked(&format!("{name} codebooks"), &w.codebooks)?,
            },
        ));
    }
    if let Some(s) = &w.scales {
        out.push((
            part(name, "scales"),
            OwnedTensor {
                dtype: Dtype::F16,
                shape: vec![w.rows, 1, 1, 1],
                data: f16_checked(&format!("{name} scales"), s)?,
            },
        ));
    }
    if let Some(h) = &w.rht {
        out.push((
            part(name, "rht_signs"),
            OwnedTensor {
                dtype: Dtype::F16,
                shape: vec![w.cols],
                data: f16_checked(&format!("{name} rht_signs"), &h.signs)?,
            },
        ));
    }
    out.push((
        part(name, "stage_scales"),
        OwnedTensor {
            dtype: Dtype::F32,
            shape: vec![c.r],
            data: pack::to_f32_bytes(&w.stage_scales),
        },
    ));
    Ok(out)
}

/// Checks the safetensors header's data offsets against the buffer before handing it to `safetensors`
/// (whose own size arithmetic can overflow on crafted offsets). Malformed headers are left to it.
fn precheck_offsets(buffer: &[u8]) -> Result<()> {
    let Some(len_bytes) = buffer.get(..8) else {
        return Ok(());
    };
    let mut arr = [0u8; 8];
    arr.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(arr);
    let data_len = (buffer.len() as u64).saturating_sub(8).checked_sub(n);
    let (Some(data_len), Ok(n)) = (data_len, usize::try_from(n)) else {
        return Ok(());
    };
    let Some(header) = buffer.get(8..8 + n) else {
        return Ok(());
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(header)
    else {
        return Ok(());
    };
    for (name, entry) in map.iter().filter(|(k, _)| *k != "__metadata__") {
        if let Some(offsets) = entry.get("data_offsets").and_then(|o| o.as_array()) {
            for o in offsets.iter().filter_map(|o| o.as_u64()) {
                if o > data_len {
                    return Err(fmt_err(format!(
                        "tensor `{name}` data offset {o} lies beyond the {data_len} data bytes"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Reads the raw tensor `name` and checks its dtype and shape.
fn expect<'a>(
    st: &'a SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8]> {
    let t = st
        .tensor(name)
        .map_err(|_| fmt_err(format!("missing tensor `{name}`")))?;
    if t.dtype() != dtype {
        return Err(fmt_err(format!(
            "tensor `{name}` has dtype {}, expected {dtype}",
            t.dtype()
        )));
    }
    if t.shape() != shape {
        return Err(fmt_err(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    Ok(t.data())
}

/// Decodes and validates one quantized weight; returns it with the file tensor names it used.
fn decode_weight(st: &SafeTensors<'_>, e: &TensorEntry) -> Result<QuantizedWeight> {
    let c = e.config;
    c.validate()?;
    c.check_weight_shape(e.rows, e.cols)?;
    let name = &e.name;
    let groups = e.cols / c.v;
    let codes = match e.code_storage {
        CodeStorage::Aqlm => {
            let shape = [e.rows, groups, c.r];
            if c.b <= 8 {
                pack::codes_from_aqlm_i8_bytes(
                    expect(st, &part(name, "codes"), Dtype::I8, &shape)?,
                    c.b,
                )?
            } else {
                pack::codes_from_aqlm_i16_bytes(
                    expect(st, &part(name, "codes"), Dtype::I16, &shape)?,
                    c.b,
                )?
            }
        }
        CodeStorage::Packed => {
            let row_bytes = packed_row_bytes(groups, c.r, c.b)
                .ok_or_else(|| fmt_err("code stream size overflows"))?;
            let bytes = expect(
                st,
                &part(name, "codes_packed"),
                Dtype::U8,
                &[e.rows, row_bytes],
            )?;
            let per_row = groups * c.r;
            let used_bits = (per_row * c.b as usize) % 8;
            let rows: Vec<Vec<u16>> = if row_bytes == 0 {
                vec![Vec::new(); e.rows]
            } else {
                bytes
                    .par_chunks(row_bytes)
                    .map(|row| {
                        if used_bits != 0 && row[row_bytes - 1] >> used_bits != 0 {
                            return Err(fmt_err("nonzero padding bits in packed codes"));
                        }
                        pack::unpack_codes(row, c.b, per_row)
                    })
                    .collect::<Result<_>>()?
            };
            rows.concat()
        }
        CodeStorage::Auto => return Err(fmt_err("code_storage must be `aqlm` or `packed`")),
    };
    // The codes tensor's shape matched [rows, cols / v, r] with real bytes behind it, so these products fit.
    let codebooks = match c.codebook {
        CodebookKind::Learned => {
            let sets_r = c
                .num_codebook_sets(e.rows, e.cols)
                .checked_mul(c.r)
                .ok_or_else(|| fmt_err("codebook count overflows"))?;
            pack::from_f16_bytes(expect(
                st,
                &part(name, "codebooks"),
                Dtype::F16,
                &[sets_r, c.entries(), 1, c.v],
            )?)?
        }
        CodebookKind::E8p => Vec::new(),
    };
    let scales = if c.per_channel_scale {
        Some(pack::from_f16_bytes(expect(
            st,
            &part(name, "scales"),
            Dtype::F16,
            &[e.rows, 1, 1, 1],
        )?)?)
    } else {
        None
    };
    let rht = match (c.hadamard, e.rht_block) {
        (true, Some(block)) => {
            let signs =
                pack::from_f16_bytes(expect(st, &part(name, "rht_signs"), Dtype::F16, &[e.cols])?)?;
            check_finite(&format!("{name} rht_signs"), &signs)?;
            Some(Rht { block, signs })
        }
        (false, None) => None,
        (true, None) => return Err(fmt_err("Hadamard config without rht_block")),
        (false, Some(_)) => return Err(fmt_err("rht_block without a Hadamard config")),
    };
    let stage_scales =
        pack::from_f32_bytes(expect(st, &part(name, "stage_scales"), Dtype::F32, &[c.r])?)?;
    let w = QuantizedWeight {
        config: c,
        rows: e.rows,
        cols: e.cols,
        codes,
        codebooks,
        stage_scales,
        scales,
        rht,
    };
    w.validate()?;
    Ok(w)
}

/// File tensor names of a quantized weight stored with `storage`.
fn part_names(name: &str, w_config: &VqConfig, storage: CodeStorage) -> Vec<String> {
    let mut names = vec![part(
        name,
        if storage == CodeStorage::Packed {
            "codes_packed"
        } else {
            "codes"
        },
    )];
    if w_config.codebook == CodebookKind::Learned {
        names.push(part(name, "codebooks"));
    }
    if w_config.per_channel_scale {
        names.push(part(name, "scales"));
    }
    if w_config.hadamard {
        names.push(part(name, "rht_signs"));
    }
    names.push(part(name, "stage_scales"));
    names
}

impl QuantizedModel {
    /// An empty model carrying `info`.
    pub fn new(info: serde_json::Value) -> Self {
        Self {
            tensors: Vec::new(),
            dense: Vec::new(),
            info,
        }
    }

    /// The quantized weight called `name`.
    pub fn tensor(&self, name: &str) -> Option<&QuantizedWeight> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, w)| w)
    }

    /// Shape and values of the unquantized tensor called `name`.
    pub fn dense_tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.dense
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, d)| (s.as_slice(), d.as_slice()))
    }

    /// Serializes with default options ([`CodeStorage::Auto`], F32 dense tensors) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with(path, &SaveOptions::default())
    }

    /// Serializes to `path`, streaming the tensors into a temporary sibling (`PATH.tmp`) that is then
    /// renamed into place, so a failed save never leaves a half-written file under `path`.
    pub fn save_with(&self, path: impl AsRef<Path>, options: &SaveOptions) -> Result<()> {
        let path = path.as_ref();
        let (files, metadata) = self.encode(options)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let views = files.iter().map(|(n, t)| (n.as_str(), t));
        if let Err(e) = safetensors::serialize_to_file(views, Some(metadata), &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                safetensors::SafeTensorError::IoError(io) => VqError::Io(io),
                other => fmt_err(format!("safetensors: {other}")),
            });
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The file bytes. Errors on invalid weights, duplicate or colliding names, dense shape mismatches,
    /// non-finite values or fp16 overflow. fp16 tensors are rounded to the nearest fp16.
    pub fn to_bytes(&self, options: &SaveOptions) -> Result<Vec<u8>> {
        let (files, metadata) = self.encode(options)?;
        let views = files.iter().map(|(n, t)| (n.as_str(), t));
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| fmt_err(format!("safetensors: {e}")))
    }

    /// Every file tensor and the safetensors metadata map, after all save-time checks.
    fn encode(&self, options: &SaveOptions) -> Result<(FileTensors, HashMap<String, String>)> {
        if let Some((name, _)) = self
            .tensors
            .iter()
            .find(|(n, _)| n.is_empty() || n == "__metadata__")
        {
            return Err(fmt_err(format!("invalid quantized tensor name `{name}`")));
        }
        let mut entries = Vec::with_capacity(self.tensors.len());
        for (name, w) in &self.tensors {
            let storage = options.codes.resolve(w.config.b);
            entries.push(TensorEntry {
                name: name.clone(),
                config: w.config,
                rows: w.rows,
                cols: w.cols,
                code_storage: storage,
                rht_block: w.rht.as_ref().map(|h| h.block),
            });
        }
        let encoded: Vec<Vec<(String, OwnedTensor)>> = self
            .tensors
            .par_iter()
            .zip(&entries)
            .map(|((name, w), e)| encode_weight(name, w, e.code_storage))
            .collect::<Result<_>>()?;
        let mut files: FileTensors = encoded.into_iter().flatten().collect();

        let mut dense_entries = Vec::with_capacity(self.dense.len());
        for (name, shape, data) in &self.dense {
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if count != Some(data.len()) {
                return Err(VqError::Shape(format!(
                    "dense tensor `{name}`: shape {shape:?} but {} values",
                    data.len()
                )));
            }
            let (dtype, bytes) = match options.dense {
                DenseDtype::F32 => {
                    check_finite(name, data)?;
                    (Dtype::F32, pack::to_f32_bytes(data))
                }
                DenseDtype::F16 => (Dtype::F16, f16_checked(name, data)?),
            };
            dense_entries.push(DenseEntry {
                name: name.clone(),
                shape: shape.clone(),
                dtype: dtype.to_string(),
            });
            files.push((
                name.clone(),
                OwnedTensor {
                    dtype,
                    shape: shape.clone(),
                    data: bytes,
                },
            ));
        }

        let mut seen = HashSet::new();
        for (name, _) in &files {
            if name.is_empty() || name == "__metadata__" {
                return Err(fmt_err(format!("invalid tensor name `{name}`")));
            }
            if !seen.insert(name.as_str()) {
                return Err(fmt_err(format!("tensor name `{name}` is used twice")));
            }
        }

        let header = Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            info: self.info.clone(),
            tensors: entries,
            dense: dense_entries,
        };
        let json = serde_json::to_string(&header)
            .map_err(|e| fmt_err(format!("cannot encode metadata: {e}")))?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), json)]);
        Ok((files, metadata))
    }

    /// Reads and validates a `.vqst` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            VqError::Format(m) => VqError::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates file bytes. Every malformed input is a [`VqError::Format`] naming the problem
    /// (invalid configs, shape/dtype mismatches, NaN/inf values, bad codes, unknown or missing tensors).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes).map_err(|e| match e {
            VqError::Format(m) => VqError::Format(m),
            other => VqError::Format(other.to_string()),
        })
    }

    fn parse(bytes: &[u8]) -> Result<Self> {
        precheck_offsets(bytes)?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| fmt_err(format!("not a valid safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fmt_err(format!("not a valid safetensors file: {e}")))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| {
                fmt_err(format!(
                    "not a vqllm file: no `{METADATA_KEY}` metadata entry"
                ))
            })?;
        let header: Header = serde_json::from_str(json)
            .map_err(|e| fmt_err(format!("bad `{METADATA_KEY}` metadata JSON: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(fmt_err(format!(
                "format `{}` is not `{FORMAT_NAME}`",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(fmt_err(format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                header.version
            )));
        }

        let mut expected: HashSet<String> = HashSet::new();
        let mut claim = |name: String| {
            if expected.insert(name.clone()) {
                Ok(())
            } else {
                Err(fmt_err(format!(
                    "tensor name `{name}` is claimed twice in the metadata"
                )))
            }
        };
        for e in &header.tensors {
            if e.name.is_empty() {
                return Err(fmt_err("empty quantized tensor name"));
            }
            e.config.validate().map_err(|err| in_tensor(&e.name, err))?;
            if e.code_storage == CodeStorage::Auto {
                return Err(fmt_err(format!(
                    "quantized tensor `{}`: code_storage must be `aqlm` or `packed`",
                    e.name
                )));
            }
            for n in part_names(&e.name, &e.config, e.code_storage) {
                claim(n)?;
            }
        }
        for d in &header.dense {
            claim(d.name.clone())?;
        }
        let present: HashSet<String> = st.names().into_iter().map(str::to_string).collect();
        if let Some(missing) = expected.difference(&present).next() {
            return Err(fmt_err(format!("missing tensor `{missing}`")));
        }
        if let Some(extra) = present.difference(&expected).next() {
            return Err(fmt_err(format!(
                "tensor `{extra}` is not described by the metadata"
            )));
        }

        let tensors = header
            .tensors
            .par_iter()
            .map(|e| {
                decode_weight(&st, e)
                    .map(|w| (e.name.clone(), w))
                    .map_err(|err| in_tensor(&e.name, err))
            })
            .collect::<Result<Vec<_>>>()?;

        let mut dense = Vec::with_capacity(header.dense.len());
        for d in &header.dense {
            let t = st
                .tensor(&d.name)
                .map_err(|_| fmt_err(format!("missing tensor `{}`", d.name)))?;
            if t.dtype().to_string() != d.dtype || t.shape() != d.shape.as_slice() {
                return Err(fmt_err(format!(
                    "dense tensor `{}` is {} {:?} in the file but {} {:?} in the metadata",
                    d.name,
                    t.dtype(),
                    t.shape(),
                    d.dtype,
                    d.shape
                )));
            }
            let values = match t.dtype() {
                Dtype::F32 => pack::from_f32_bytes(t.data())?,
                Dtype::F16 => pack::from_f16_bytes(t.data())?,
                Dtype::BF16 => pack::from_bf16_bytes(t.data())?,
                other => {
                    return Err(fmt_err(format!(
                        "dense tensor `{}` has unsupported dtype {other}",
                        d.name
                    )))
                }
            };
            check_finite(&d.name, &values)?;
            dense.push((d.name.clone(), d.shape.clone(), values));
        }
        Ok(Self {
            tensors,
            dense,
            info: header.info,
        })
    }
}
