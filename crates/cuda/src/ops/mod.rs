//! Ops that launch generated kernels: the VQ linear layer (GeMV / GeMM).

pub mod linear;
