//! vqllm-model: the model-input layer.
//!
//! Reads Llama-family checkpoints from GGUF (v2/v3, with dequantization of F32/F16/BF16 and the
//! ggml block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K) and from Hugging
//! Face safetensors (single file or sharded), behind one [`WeightSource`] trait that lists tensors,
//! reads them as f32, picks out the projection weights VQ quantizes ([`WeightSource::linear_weights`])
//! and yields the hyper-parameters ([`ModelConfig`]).
//!
//! Shapes are row-major everywhere (`[out, in]` for linear weights); see [`gguf`] for how GGUF's
//! innermost-first `ne` maps onto that, and for the RoPE row permutation of GGUF Q/K weights.

pub mod byte_source;
pub mod config;
pub mod dequant;
pub mod error;
pub mod ggml_type;
pub mod gguf;
pub mod gguf_meta;
pub mod locate;
pub mod safetensors;
pub mod source;

#[cfg(test)]
mod tests;

pub use byte_source::{FileSource, ReadAt};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use ggml_type::GgmlType;
pub use gguf::{GgufFile, GgufTensorInfo};
pub use gguf_meta::{MetaType, MetaValue};
pub use locate::{find_smollm2_gguf, smollm2_gguf_candidates};
pub use safetensors::SafetensorsModel;
pub use source::{
    LinearKind, LinearWeight, ModelWeights, TensorDesc, TensorDtype, WeightFormat, WeightSource,
};
