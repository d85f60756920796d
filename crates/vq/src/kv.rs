//! CPU-side VQ KV cache for one layer: codebooks per (KV head, channel group), codes per token.
//!
//! Layout (what the GPU kernels read too):
//! - `codebooks`: `[kv_heads, head_dim / v, 2^b, v]` f32 (fp16-representable);
//! - codes: `[batch, kv_heads, capacity, head_dim / v]` u16 on the CPU (u8 on the GPU when b <= 8).

use crate::config::VqConfig;
use crate::error::{Result, VqError};
use serde::{Deserialize, Serialize};

/// Codebooks of one layer's K or V cache (CQ style: one codebook per KV head and channel group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvCodebooks {
    /// A KV config: `scope == Scope::KvChannelGroup`, `r == 1`.
    pub config: VqConfig,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `[kv_heads, head_dim / v, 2^b, v]`.
    pub codebooks: Vec<f32>,
}

impl KvCodebooks {
    /// Channel groups per head, `head_dim / v`.
    pub fn groups(&self) -> usize {
        self.head_dim / self.config.v
    }

    /// Offset of entry `e` of the codebook for `(head, group)` in [`Self::codebooks`].
    pub fn entry_offset(&self, head: usize, group: usize, e: usize) -> usize {
        ((head * self.groups() + group) * self.config.entries() + e) * self.config.v
    }

    /// Errors ([`VqError::Format`]) at the first code that names no entry of a `2^b`-entry codebook; `what` names
    /// the codes in the message (`"KV"`, `"K"`, `"V"`).
    pub fn check_code_range(&self, what: &str, codes: &[u16]) -> Result<()> {
        match codes
            .iter()
            .position(|&c| c as usize >= self.config.entries())
        {
            Some(p) => Err(VqError::Format(format!(
                "{what} code {} at {p} exceeds 2^{}",
                codes[p], self.config.b
            ))),
            None => Ok(()),
        }
    }
}
