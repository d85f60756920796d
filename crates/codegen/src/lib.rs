//! vqllm-codegen: GPU description, plans and adaptive heuristics, thread mapping, and instantiation of the
//! CUDA templates in `kernels/`. No GPU needed.

pub mod gpu_spec;

pub use gpu_spec::GpuSpec;
