//! vqllm-vq: vector-quantization configurations, quantizers, packed formats, codebook-frequency
//! profiling and CPU reference ops. Everything here runs on the CPU; GPU kernels are checked against it.

pub mod config;
pub mod error;
pub mod format;
pub mod kv;
pub mod metrics;
pub mod pack;
pub mod synthetic;
pub mod weight;

pub use config::{split_config_list, CodebookKind, Scope, VqConfig, PRESET_NAMES, WEIGHT_PRESETS};
pub use error::{Result, VqError};
pub use format::{CodeStorage, DenseDtype, QuantizedModel, SaveOptions};
pub use kv::KvCodebooks;
pub use weight::{QuantizedWeight, Rht};

// Lattice codebooks, Hadamard transforms and CPU reference ops (helper "lattice").
pub mod attention;
pub mod cq;
pub mod e8p;
pub mod hadamard;
pub mod int4;
pub mod kmeans;
pub mod profile;
pub mod quantize;
pub mod reference;
pub mod residual;
pub mod tile;
