//! Ops that launch generated kernels: the VQ linear layer (GeMV / GeMM) and decode attention over a VQ KV cache.

pub mod attention;
pub mod linear;
