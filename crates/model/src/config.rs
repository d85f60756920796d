//! Llama-family hyper-parameters, read from GGUF metadata or a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf_meta::MetaValue;

/// Hyper-parameters of a Llama-family decoder (Llama, Mistral, SmolLM, Qwen2-style layouts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Architecture name (`general.architecture` in GGUF, `model_type` in HF), e.g. `llama`.
    pub architecture: String,
    /// Model (embedding) width.
    pub hidden_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA); equals `num_heads` for plain multi-head attention.
    pub num_kv_heads: usize,
    /// Per-head dimension (usually `hidden_size / num_heads`).
    pub head_dim: usize,
    /// Width of the MLP's gate/up projections.
    pub intermediate_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Training context length.
    pub max_position_embeddings: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Dimensions per head that RoPE rotates (usually `head_dim`).
    pub rope_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Whether the output head reuses the token embedding.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id, if known.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, if known.
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Width of the K (or V) projection output: `num_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Width of the Q projection output: `num_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Checks the values are positive and consistent (heads divide, rope fits the head).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ModelError::InvalidConfig(format!("{name} is 0")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(ModelError::InvalidConfig(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return Err(ModelError::InvalidConfig(format!(
                "rope_dim {} must be even and at most head_dim {}",
                self.rope_dim, self.head_dim
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(ModelError::InvalidConfig(format!(
                "rope_theta {} is not positive",
                self.rope_theta
            )));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(ModelError::InvalidConfig(format!(
                "rms_norm_eps {} is invalid",
                self.rms_norm_eps
            )));
        }
        Ok(())
    }

    /// Reads `{arch}.*` keys of a GGUF file (`arch` = `general.architecture`).
    ///
    /// Required: `embedding_length`, `block_count`, `attention.head_count`, `feed_forward_length`.
    /// Defaults: `head_count_kv` = head count, `context_length` = 2048, `rope.freq_base` = 10000,
    /// `layer_norm_rms_epsilon` = 1e-5, `rope.dimension_count` = head dim; the vocabulary comes from
    /// `vocab_size`, else the token list, else the embedding's shape. Tied embeddings = no
    /// `output.weight` tensor.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = f
            .architecture()
            .ok_or_else(|| ModelError::BadMetadata {
                key: "general.architecture".into(),
                reason: "missing or not a string".into(),
            })?
            .to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| -> Result<Option<usize>> { gguf_usize(f, &key(k)) };
        let req = |k: &str| -> Result<usize> {
            int(k)?.ok_or_else(|| ModelError::BadMetadata {
                key: key(k),
                reason: "missing".into(),
            })
        };
        let float = |k: &str, default: f32| -> Result<f32> {
            match f.get(&key(k)) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| ModelError::BadMetadata {
                        key: key(k),
                        reason: format!("{v} is not a number"),
                    }),
            }
        };
        let hidden_size = req("embedding_length")?;
        let num_heads = req("attention.head_count")?;
        let num_kv_heads = int("attention.head_count_kv")?.unwrap_or(num_heads);
        let head_dim = match int("attention.key_length")? {
            Some(d) => d,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let vocab_size = match int("vocab_size")? {
            Some(v) => v,
            None => match f.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array) {
                Some(tokens) => tokens.len(),
                None => f
                    .tensor("token_embd.weight")
                    .and_then(|t| t.shape().first().copied())
                    .unwrap_or(0),
            },
        };
        let token_id = |k: &str| {
            f.get(k)
                .and_then(MetaValue::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let cfg = ModelConfig {
            hidden_size,
            num_layers: req("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: req("feed_forward_length")?,
            vocab_size,
            max_position_embeddings: int("context_length")?.unwrap_or(2048),
            rope_theta: float("rope.freq_base", 10000.0)?,
            rope_dim: int("rope.dimension_count")?.unwrap_or(head_dim),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            tie_word_embeddings: f.tensor("output.weight").is_none(),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
            architecture: arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a Hugging Face `config.json` file.
    pub fn from_hf_config_file(path: &Path) -> Result<Self> {
        let text = std::fs::read(path)
            .map_err(|e| ModelError::io(format!("reading {}", path.display()), e))?;
        let v: Value = serde_json::from_slice(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&v)
    }

    /// Reads a Hugging Face `config.json` value.
    ///
    /// Required: `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `intermediate_size`,
    /// `vocab_size`. Defaults: `num_key_value_heads` = heads, `head_dim` = hidden / heads,
    /// `max_position_embeddings` = 2048, `rope_theta` = 10000, `rms_norm_eps` = 1e-6,
    /// `tie_word_embeddings` = false. An `eos_token_id` list yields its first entry.
    pub fn from_hf_json(v: &Value) -> Result<Self> {
        let int = |k: &str| -> Result<Option<usize>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        ModelError::InvalidConfig(format!(
                            "`{k}` = {x} is not a non-negative integer"
                        ))
                    }),
            }
        };
        let req = |k: &str| -> Result<usize> {
            int(k)?.ok_or_else(|| ModelError::InvalidConfig(format!("config.json lacks `{k}`")))
        };
        let float = |k: &str, default: f32| -> Result<f32> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_f64().map(|f| f as f32).ok_or_else(|| {
                    ModelError::InvalidConfig(format!("`{k}` = {x} is not a number"))
                }),
            }
        };
        let token = |k: &str| -> Option<u32> {
            let x = v.get(k)?;
            let x = x.as_array().and_then(|a| a.first()).unwrap_or(x);
            x.as_u64().and_then(|n| u32::try_from(n).ok())
        };
        let hidden_size = req("hidden_size")?;
        let num_heads = req("num_attention_heads")?;
        let head_dim = match int("head_dim")? {
            Some(d) => d,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let cfg = ModelConfig {
            architecture: v
                .get("model_type")
                .and_then(Value::as_str)
                .unwrap_or("llama")
                .to_string(),
            hidden_size,
            num_layers: req("num_hidden_layers")?,
            num_heads,
            num_kv_heads: int("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            intermediate_size: req("intermediate_size")?,
            vocab_size: req("vocab_size")?,
            max_position_embeddings: int("max_position_embeddings")?.unwrap_or(2048),
            rope_theta: float("rope_theta", 10000.0)?,
            rope_dim: head_dim,
            rms_norm_eps: float("rms_norm_eps", 1e-6)?,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// An integer GGUF metadata value as usize; an error if present but not a non-negative integer.
fn gguf_usize(f: &GgufFile, key: &str) -> Result<Option<usize>> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ModelError::BadMetadata {
                key: key.to_string(),
                reason: format!(
                    "{v} is not a non-negative integer (per-layer arrays are not supported)"
                ),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_config_smollm2_like() {
        let v: Value = serde_json::from_str(
            r#"{"model_type":"llama","hidden_size":576,"num_hidden_layers":30,"num_attention_heads":9,
                "num_key_value_heads":3,"intermediate_size":1536,"vocab_size":49152,
                "max_position_embeddings":8192,"rope_theta":100000.0,"rms_norm_eps":1e-05,
                "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":[2, 7]}"#,
        )
        .unwrap();
        let c = ModelConfig::from_hf_json(&v).unwrap();
        assert_eq!(
            (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads),
            (576, 30, 9, 3)
        );
        assert_eq!(
            (c.head_dim, c.kv_dim(), c.q_dim(), c.rope_dim),
            (64, 192, 576, 64)
        );
        assert_eq!((c.rope_theta, c.rms_norm_eps), (100000.0, 1e-5));
        assert!(c.tie_word_embeddings);
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
    }

    #[test]
    fn hf_config_errors() {
        let missing: Value = serde_json::from_str(r#"{"hidden_size":64}"#).unwrap();
        assert!(matches!(
            ModelConfig::from_hf_json(&missing),
            Err(ModelError::InvalidConfig(_))
        ));
        let bad_gqa: Value = serde_json::from_str(
            r#"{"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,
                "intermediate_size":128,"vocab_size":10}"#,
        )
        .unwrap();
        let e = ModelConfig::from_hf_json(&bad_gqa).unwrap_err();
        assert!(e.to_string().contains("not a multiple"), "{e}");
        let wrong_type: Value = serde_json::from_str(
            r#"{"hidden_size":"64","num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":128,"vocab_size":10}"#,
        )
        .unwrap();
        assert!(ModelConfig::from_hf_json(&wrong_type).is_err());
    }
}
