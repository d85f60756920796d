//! vqllm-cuda (work in progress)
pub mod error;
pub mod headers;
pub mod libs;
pub mod nvrtc;
