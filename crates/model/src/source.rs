//! A common interface over GGUF and safetensors checkpoints.

use std::fmt;
use std::path::Path;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::ggml_type::GgmlType;
use crate::gguf::GgufFile;
use crate::safetensors::SafetensorsModel;

/// Storage type of a tensor, in the vocabulary of its file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorDtype {
    /// A ggml type (GGUF).
    Ggml(GgmlType),
    /// A ggml type id this crate does not know (GGUF).
    GgmlUnknown(u32),
    /// A safetensors dtype.
    Safetensors(safetensors::Dtype),
}

impl fmt::Display for TensorDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorDtype::Ggml(t) => write!(f, "{t}"),
            TensorDtype::GgmlUnknown(id) => write!(f, "unknown ggml type {id}"),
            TensorDtype::Safetensors(d) => write!(f, "{d:?}"),
        }
    }
}

/// Name, row-major shape (outermost first) and storage type of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    /// Name as stored in the file.
    pub name: String,
    /// Row-major shape: `[out, in]` for a linear weight, in both formats.
    pub shape: Vec<usize>,
    /// Storage type.
    pub dtype: TensorDtype,
}

/// The file format of a checkpoint, which also fixes its tensor naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// GGUF (`blk.N.attn_q.weight`, ...).
    Gguf,
    /// Hugging Face safetensors (`model.layers.N.self_attn.q_proj.weight`, ...).
    Safetensors,
}

/// The seven projection weights of a Llama-family decoder block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinearKind {
    /// Attention query projection `[q_dim, hidden]`.
    Q,
    /// Attention key projection `[kv_dim, hidden]`.
    K,
    /// Attention value projection `[kv_dim, hidden]`.
    V,
    /// Attention output projection `[hidden, q_dim]`.
    O,
    /// MLP gate projection `[intermediate, hidden]`.
    Gate,
    /// MLP up projection `[intermediate, hidden]`.
    Up,
    /// MLP down projection `[hidden, intermediate]`.
    Down,
}

impl LinearKind {
    /// All kinds in block order.
    pub const ALL: [LinearKind; 7] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Gate,
        LinearKind::Up,
        LinearKind::Down,
    ];

    /// The GGUF tensor name of this projection in block `layer`.
    pub fn gguf_name(self, layer: usize) -> String {
        let s = match self {
            LinearKind::Q => "attn_q",
            LinearKind::K => "attn_k",
            LinearKind::V => "attn_v",
            LinearKind::O => "attn_output",
            LinearKind::Gate => "ffn_gate",
            LinearKind::Up => "ffn_up",
            LinearKind::Down => "ffn_down",
        };
        format!("blk.{layer}.{s}.weight")
    }

    /// The Hugging Face tensor name of this projection in block `layer`.
    pub fn hf_name(self, layer: usize) -> String {
        let s = match self {
            LinearKind::Q => "self_attn.q_proj",
            LinearKind::K => "self_attn.k_proj",
            LinearKind::V => "self_attn.v_proj",
            LinearKind::O => "self_attn.o_proj",
            LinearKind::Gate => "mlp.gate_proj",
            LinearKind::Up => "mlp.up_proj",
            LinearKind::Down => "mlp.down_proj",
        };
        format!("model.layers.{layer}.{s}.weight")
    }

    /// `(layer, kind)` if `name` is a projection weight in `format`'s naming scheme.
    pub fn parse(format: WeightFormat, name: &str) -> Option<(usize, LinearKind)> {
        let (prefix, layer_and_rest) = match format {
            WeightFormat::Gguf => ("blk.", name.strip_prefix("blk.")?),
            WeightFormat::Safetensors => ("model.layers.", name.strip_prefix("model.layers.")?),
        };
        let (layer, _) = layer_and_rest.split_once('.')?;
        if layer.is_empty()
            || !layer.bytes().all(|b| b.is_ascii_digit())
            || (layer.len() > 1 && layer.starts_with('0'))
        {
            return None;
        }
        let layer: usize = layer.parse().ok()?;
        debug_assert!(name.starts_with(prefix));
        LinearKind::ALL.into_iter().find_map(|k| {
            let canonical = match format {
                WeightFormat::Gguf => k.gguf_name(layer),
                WeightFormat::Safetensors => k.hf_name(layer),
            };
            (canonical == name).then_some((layer, k))
        })
    }
}

impl fmt::Display for LinearKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LinearKind::Q => "q",
            LinearKind::K => "k",
            LinearKind::V => "v",
            LinearKind::O => "o",
            LinearKind::Gate => "gate",
            LinearKind::Up => "up",
            LinearKind::Down => "down",
        };
        f.write_str(s)
    }
}

/// One projection weight of a decoder block: what VQ quantizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearWeight {
    /// Tensor name in the file.
    pub name: String,
    /// Decoder block index.
    pub layer: usize,
    /// Which projection.
    pub kind: LinearKind,
    /// Rows of the row-major `[out, in]` matrix.
    pub out_features: usize,
    /// Columns (reduction dimension).
    pub in_features: usize,
    /// Storage type.
    pub dtype: TensorDtype,
}

/// Read access to a checkpoint's tensors and hyper-parameters, whatever its format.
pub trait WeightSource: Send + Sync {
    /// The file format (and naming scheme).
    fn format(&self) -> WeightFormat;

    /// All tensors, in file order.
    fn tensor_descs(&self) -> Vec<TensorDesc>;

    /// The tensor called `name`.
    fn tensor_desc(&self, name: &str) -> Option<TensorDesc>;

    /// Tensor `name` converted to f32, row-major in the order of [`TensorDesc::shape`].
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;

    /// The model's hyper-parameters.
    fn config(&self) -> Result<ModelConfig>;

    /// The 2-D projection weights (q/k/v/o, gate/up/down) of every block, sorted by
    /// (layer, kind); embeddings, the output head and norms are excluded.
    fn linear_weights(&self) -> Vec<LinearWeight> {
        let format = self.format();
        let mut out: Vec<LinearWeight> = self
            .tensor_descs()
            .into_iter()
            .filter(|d| d.shape.len() == 2)
            .filter_map(|d| {
                let (layer, kind) = LinearKind::parse(format, &d.name)?;
                Some(LinearWeight {
                    layer,
                    kind,
                    out_features: d.shape[0],
                    in_features: d.shape[1],
                    dtype: d.dtype,
                    name: d.name,
                })
            })
            .collect();
        out.sort_by_key(|w| (w.layer, w.kind));
        out
    }
}

impl WeightSource for GgufFile {
    fn format(&self) -> WeightFormat {
        WeightFormat::Gguf
    }

    fn tensor_descs(&self) -> Vec<TensorDesc> {
        self.tensors().iter().map(gguf_desc).collect()
    }

    fn tensor_desc(&self, name: &str) -> Option<TensorDesc> {
        self.tensor(name).map(gguf_desc)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        GgufFile::read_f32(self, name)
    }

    fn config(&self) -> Result<ModelConfig> {
        ModelConfig::from_gguf(self)
    }
}

fn gguf_desc(t: &crate::gguf::GgufTensorInfo) -> TensorDesc {
    TensorDesc {
        name: t.name.clone(),
        shape: t.shape(),
        dtype: match t.ggml_type {
            Some(g) => TensorDtype::Ggml(g),
            None => TensorDtype::GgmlUnknown(t.type_id),
        },
    }
}

/// A checkpoint of either format, chosen by [`ModelWeights::open`].
#[derive(Debug)]
pub enum ModelWeights {
    /// A GGUF file.
    Gguf(GgufFile),
    /// One or more safetensors files (with `config.json` beside them).
    Safetensors(SafetensorsModel),
}

impl ModelWeights {
    /// Opens a checkpoint: a `.gguf` file (detected by its magic), a `.safetensors` file, a
    /// `model.safetensors.index.json`, or a directory holding safetensors files or one GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let has_safetensors = SafetensorsModel::dir_has_weights(path)?;
            if has_safetensors {
                return Ok(ModelWeights::Safetensors(SafetensorsModel::open(path)?));
            }
            let ggufs = files_with_extension(path, "gguf")?;
            return match ggufs.as_slice() {
                [one] => Ok(ModelWeights::Gguf(GgufFile::open(one)?)),
                [] => Err(ModelError::format(
                    path.display().to_string(),
                    "no .safetensors or .gguf weights in directory",
                )),
                _ => Err(ModelError::format(
                    path.display().to_string(),
                    format!("{} .gguf files in directory; name one", ggufs.len()),
                )),
            };
        }
        let mut magic = [0u8; 4];
        let is_gguf = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && magic == crate::gguf::GGUF_MAGIC;
        if is_gguf || path.extension().is_some_and(|e| e == "gguf") {
            Ok(ModelWeights::Gguf(GgufFile::open(path)?))
        } else {
            Ok(ModelWeights::Safetensors(SafetensorsModel::open(path)?))
        }
    }

    /// The checkpoint as a trait object.
    pub fn as_source(&self) -> &dyn WeightSource {
        match self {
            ModelWeights::Gguf(g) => g,
            ModelWeights::Safetensors(s) => s,
        }
    }
}

impl WeightSource for ModelWeights {
    fn format(&self) -> WeightFormat {
        self.as_source().format()
    }
    fn tensor_descs(&self) -> Vec<TensorDesc> {
        self.as_source().tensor_descs()
    }
    fn tensor_desc(&self, name: &str) -> Option<TensorDesc> {
        self.as_source().tensor_desc(name)
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.as_source().read_f32(name)
    }
    fn config(&self) -> Result<ModelConfig> {
        self.as_source().config()
    }
}

/// Files in `dir` ending in `.{ext}`, sorted by name.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in rd {
        let p = entry
            .map_err(|e| ModelError::io(format!("listing {}", dir.display()), e))?
            .path();
        if p.is_file() && p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_linear_names() {
        use LinearKind::*;
        use WeightFormat::*;
        assert_eq!(LinearKind::parse(Gguf, "blk.0.attn_q.weight"), Some((0, Q)));
        assert_eq!(
            LinearKind::parse(Gguf, "blk.29.ffn_down.weight"),
            Some((29, Down))
        );
        assert_eq!(
            LinearKind::parse(Gguf, "blk.3.attn_output.weight"),
            Some((3, O))
        );
        assert_eq!(LinearKind::parse(Gguf, "blk.3.attn_norm.weight"), None);
        assert_eq!(LinearKind::parse(Gguf, "blk.3.attn_q.bias"), None);
        assert_eq!(LinearKind::parse(Gguf, "blk.03.attn_q.weight"), None);
        assert_eq!(LinearKind::parse(Gguf, "blk..attn_q.weight"), None);
        assert_eq!(LinearKind::parse(Gguf, "token_embd.weight"), None);
        assert_eq!(
            LinearKind::parse(Gguf, "model.layers.0.self_attn.q_proj.weight"),
            None
        );
        assert_eq!(
            LinearKind::parse(Safetensors, "model.layers.7.self_attn.v_proj.weight"),
            Some((7, V))
        );
        assert_eq!(
            LinearKind::parse(Safetensors, "model.layers.12.mlp.gate_proj.weight"),
            Some((12, Gate))
        );
        assert_eq!(
            LinearKind::parse(Safetensors, "model.layers.12.mlp.up_proj.weight"),
            Some((12, Up))
        );
        assert_eq!(
            LinearKind::parse(Safetensors, "model.layers.1.input_layernorm.weight"),
            None
        );
        assert_eq!(LinearKind::parse(Safetensors, "lm_head.weight"), None);
        assert_eq!(
            LinearKind::parse(Safetensors, "model.embed_tokens.weight"),
            None
        );
        for k in LinearKind::ALL {
            assert_eq!(LinearKind::parse(Gguf, &k.gguf_name(5)), Some((5, k)));
            assert_eq!(LinearKind::parse(Safetensors, &k.hf_name(5)), Some((5, k)));
        }
    }
}
