//! vqllm-vq: vector-quantization configurations, quantizers, packed formats, codebook-frequency
//! profiling and CPU reference ops. Everything here runs on the CPU; GPU kernels are checked against it.

pub mod config;
pub mod error;
pub mod kv;
pub mod weight;

pub use config::{CodebookKind, Scope, VqConfig, PRESET_NAMES, WEIGHT_PRESETS};
pub use error::{Result, VqError};
pub use kv::KvCodebooks;
pub use weight::{QuantizedWeight, Rht};
pub mod cq;
pub mod kmeans;
pub mod profile;
pub mod quantize;
pub mod residual;
pub mod tile;
