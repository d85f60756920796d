//! Hugging Face safetensors reader (single file or sharded with `model.safetensors.index.json`).
//!
//! Headers are parsed with the `safetensors` crate's [`Metadata`] (which checks that tensors are
//! contiguous and sized by their shapes); tensor data is then read on demand with positioned
//! reads, so multi-gigabyte shards are never loaded whole. F32, F16, BF16 and F64 convert to f32.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::tensor::Metadata;
use safetensors::Dtype;

use crate::byte_source::{FileSource, ReadAt};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::source::{files_with_extension, TensorDesc, TensorDtype, WeightFormat, WeightSource};

/// Name of the shard index Hugging Face writes beside sharded checkpoints.
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
/// Name of a single-file checkpoint.
pub const SAFETENSORS_SINGLE: &str = "model.safetensors";
/// Largest header accepted (the `safetensors` crate's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Largest index JSON accepted.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// One `.safetensors` file.
struct Shard {
    path: PathBuf,
    source: FileSource,
    data_start: u64,
    metadata: Metadata,
}

/// A safetensors checkpoint: one or more shard files plus the directory holding `config.json`.
pub struct SafetensorsModel {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor names in (shard, offset) order.
    names: Vec<String>,
    /// name -> shard index.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsModel")
            .field("dir", &self.dir)
            .field(
                "shards",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("n_tensors", &self.names.len())
            .finish()
    }
}

impl SafetensorsModel {
    /// Whether `dir` holds an index or any `.safetensors` file.
    pub fn dir_has_weights(dir: &Path) -> Result<bool> {
        Ok(dir.join(SAFETENSORS_INDEX).is_file()
            || !files_with_extension(dir, "safetensors")?.is_empty())
    }

    /// Opens a checkpoint from a directory (index, `model.safetensors`, or all `*.safetensors`),
    /// an index `.json` file, or a single `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(SAFETENSORS_INDEX);
            if index.is_file() {
                return Self::open_index(&index);
            }
            let single = path.join(SAFETENSORS_SINGLE);
            let files = if single.is_file() {
                vec![single]
            } else {
                files_with_extension(path, "safetensors")?
            };
            if files.is_empty() {
                return Err(ModelError::format(
                    path.display().to_string(),
                    "no safetensors files in directory",
                ));
            }
            return Self::from_shards(path.to_path_buf(), files);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "json") {
            Self::open_index(path)
        } else {
            Self::from_shards(dir, vec![path.to_path_buf()])
        }
    }

    /// Opens the shards listed in a `model.safetensors.index.json` and checks the index matches them.
    pub fn open_index(index_path: &Path) -> Result<Self> {
        let label = index_path.display().to_string();
        let len = std::fs::metadata(index_path)
            .map_err(|e| ModelError::io(format!("reading {label}"), e))?
            .len();
        if len > MAX_INDEX_BYTES {
            return Err(ModelError::format(
                &label,
                format!("index is {len} bytes, more than {MAX_INDEX_BYTES}"),
            ));
        }
        let text =
            std::fs::read(index_path).map_err(|e| ModelError::io(format!("reading {label}"), e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| ModelError::Json {
                path: index_path.to_path_buf(),
                source,
            })?;
        let map = v
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| ModelError::format(&label, "no `weight_map` object"))?;
        let dir = index_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut files: Vec<String> = Vec::new();
        let mut expected: Vec<(&str, &str)> = Vec::with_capacity(map.len());
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                ModelError::format(&label, format!("shard of `{tensor}` is not a string"))
            })?;
            let plain = Path::new(file).file_name().is_some_and(|n| n == file) && file != "..";
            if !plain {
                return Err(ModelError::format(
                    &label,
                    format!("shard name `{file}` is not a plain file name"),
                ));
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
            expected.push((tensor, file));
        }
        files.sort();
        let model = Self::from_shards(dir.clone(), files.iter().map(|f| dir.join(f)).collect())?;
        for (tensor, file) in expected {
            let in_file = model.index.get(tensor).map(|&s| &model.shards[s].path);
            if in_file != Some(&dir.join(file)) {
                return Err(ModelError::format(
                    &label,
                    format!(
                        "index puts `{tensor}` in `{file}`, but that shard does not contain it"
                    ),
                ));
            }
        }
        Ok(model)
    }

    fn from_shards(dir: PathBuf, files: Vec<PathBuf>) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut names = Vec::new();
        let mut index = HashMap::new();
        for path in files {
            let shard = open_shard(path)?;
            for name in shard.metadata.offset_keys() {
                if index.insert(name.clone(), shards.len()).is_some() {
                    return Err(ModelError::format(
                        shard.path.display().to_string(),
                        format!("tensor `{name}` appears in more than one shard"),
                    ));
                }
                names.push(name);
            }
            shards.push(shard);
        }
        Ok(SafetensorsModel {
            dir,
            shards,
            names,
            index,
        })
    }

    /// Directory of the checkpoint (where `config.json` is looked for).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the shard files.
    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    fn lookup(&self, name: &str) -> Result<(&Shard, &safetensors::tensor::TensorInfo)> {
        let unknown = || ModelError::UnknownTensor {
            name: name.to_string(),
        };
        let shard = &self.shards[*self.index.get(name).ok_or_else(unknown)?];
        let info = shard.metadata.info(name).ok_or_else(unknown)?;
        Ok((shard, info))
    }
}

fn open_shard(path: PathBuf) -> Result<Shard> {
    let label = path.display().to_string();
    let source =
        FileSource::open(&path).map_err(|e| ModelError::io(format!("opening {label}"), e))?;
    let file_len = source.len();
    let truncated = |what: &str, offset: u64, needed: u64| ModelError::Truncated {
        what: format!("{what} of {label}"),
        offset,
        needed,
        file_len,
    };
    if file_len < 8 {
        return Err(truncated("header length", 0, 8));
    }
    let mut n = [0u8; 8];
    source
        .read_exact_at(0, &mut n)
        .map_err(|e| ModelError::io(format!("reading {label}"), e))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES {
        return Err(ModelError::format(
            &label,
            format!("header of {n} bytes exceeds {MAX_HEADER_BYTES}"),
        ));
    }
    if n > file_len - 8 {
        return Err(truncated("JSON header", 8, n));
    }
    let mut header = vec![0u8; n as usize];
    source
        .read_exact_at(8, &mut header)
        .map_err(|e| ModelError::io(format!("reading {label}"), e))?;
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| ModelError::format(&label, format!("bad header: {e}")))?;
    let data_start = 8 + n;
    let data_len = metadata.data_len() as u64;
    let in_bounds = matches!(data_start.checked_add(data_len), Some(end) if end <= file_len);
    if !in_bounds {
        let name = metadata.offset_keys().pop().unwrap_or_default();
        return Err(ModelError::TensorOutOfBounds {
            name,
            start: data_start,
            end: data_start.saturating_add(data_len),
            file_len,
        });
    }
    Ok(Shard {
        path,
        source,
        data_start,
        metadata,
    })
}

/// Converts little-endian `bytes` of `dtype` to f32 (in parallel for large tensors).
fn to_f32(dtype: Dtype, bytes: &[u8], name: &str) -> Result<Vec<f32>> {
    let (width, conv): (usize, fn(&[u8]) -> f32) = match dtype {
        Dtype::F32 => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F16 => (2, |b| {
            f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
        }),
        Dtype::BF16 => (2, |b| {
            bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
        }),
        Dtype::F64 => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        other => {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    let mut out = vec![0f32; bytes.len() / width];
    const TASK: usize = 1 << 16;
    out.par_chunks_mut(TASK)
        .zip(bytes.par_chunks(TASK * width))
        .for_each(|(o, b)| {
            for (o, b) in o.iter_mut().zip(b.chunks_exact(width)) {
                *o = conv(b);
            }
        });
    Ok(out)
}

impl WeightSource for SafetensorsModel {
    fn format(&self) -> WeightFormat {
        WeightFormat::Safetensors
    }

    fn tensor_descs(&self) -> Vec<TensorDesc> {
        self.names
            .iter()
            .filter_map(|n| self.tensor_desc(n))
            .collect()
    }

    fn tensor_desc(&self, name: &str) -> Option<TensorDesc> {
        let (_, info) = self.lookup(name).ok()?;
        Some(TensorDesc {
            name: name.to_string(),
            shape: info.shape.clone(),
            dtype: TensorDtype::Safetensors(info.dtype),
        })
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (shard, info) = self.lookup(name)?;
        if !matches!(
            info.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        ) {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{:?}", info.dtype),
            });
        }
        let (s, e) = info.data_offsets;
        // Within the file: checked when the shard was opened.
        let mut bytes = vec![0u8; e - s];
        shard
            .source
            .read_exact_at(shard.data_start + s as u64, &mut bytes)
            .map_err(|err| {
                ModelError::io(
                    format!("reading `{name}` from {}", shard.path.display()),
                    err,
                )
            })?;
        to_f32(info.dtype, &bytes, name)
    }

    /// Reads `config.json` beside the weights; when it has no `tie_word_embeddings` key, the
    /// embeddings count as tied exactly when there is no `lm_head.weight` tensor.
    fn config(&self) -> Result<ModelConfig> {
        let path = self.dir.join("config.json");
        let text = std::fs::read(&path)
            .map_err(|e| ModelError::io(format!("reading {}", path.display()), e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| ModelError::Json {
                path: path.clone(),
                source,
            })?;
        let mut cfg = ModelConfig::from_hf_json(&v)?;
        if v.get("tie_word_embeddings").is_none() {
            cfg.tie_word_embeddings = !self.index.contains_key("lm_head.weight");
        }
        Ok(cfg)
    }
}
