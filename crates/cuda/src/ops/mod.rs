//! Ops that launch generated kernels: the VQ linear layer (GeMV / GeMM), decode attention over a VQ KV cache, and the
//! streaming floor the benchmarks set a GeMV against.

pub mod attention;
pub mod linear;
pub mod read_floor;
