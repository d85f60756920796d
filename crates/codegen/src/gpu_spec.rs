//! What the heuristics need to know about a GPU. Filled from the device by `vqllm-cuda`, or from a
//! built-in table for code generation without a GPU (`--arch sm_90`).

use serde::{Deserialize, Serialize};

/// Device limits that plans and heuristics depend on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    pub name: String,
    /// Compute capability, e.g. (9, 0).
    pub cc_major: u32,
    pub cc_minor: u32,
    pub sm_count: u32,
    /// Shared memory per SM in bytes.
    pub smem_per_sm: u32,
    /// Shared memory one block may use after opting in (`MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`).
    pub smem_per_block_optin: u32,
    /// 32-bit registers per SM.
    pub regs_per_sm: u32,
    /// 32-bit registers one block may use.
    pub regs_per_block: u32,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    /// L2 cache size in bytes.
    pub l2_bytes: u64,
    /// Global memory in bytes (0 when unknown).
    pub mem_bytes: u64,
}

impl GpuSpec {
    /// The NVRTC architecture name, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.cc_major, self.cc_minor)
    }

    /// Typical limits for an architecture, for planning and code generation without a GPU.
    /// Known: sm_80 (A100), sm_86 (RTX 30xx), sm_89 (L40S / RTX 40xx), sm_90 (H100 SXM).
    pub fn for_arch(arch: &str) -> Option<GpuSpec> {
        let (name, cc, sms, smem_sm, optin, threads, blocks, l2) = match arch {
            "sm_80" => (
                "A100 (typical)",
                (8, 0),
                108,
                167_936,
                166_912,
                2048,
                32,
                40u64 << 20,
            ),
            "sm_86" => (
                "RTX 30xx (typical)",
                (8, 6),
                84,
                102_400,
                101_376,
                1536,
                16,
                6u64 << 20,
            ),
            "sm_89" => (
                "L40S (typical)",
                (8, 9),
                142,
                102_400,
                101_376,
                1536,
                24,
                96u64 << 20,
            ),
            "sm_90" | "sm_90a" => (
                "H100 SXM (typical)",
                (9, 0),
                132,
                233_472,
                232_448,
                2048,
                32,
                50u64 << 20,
            ),
            _ => return None,
        };
        Some(GpuSpec {
            name: name.to_string(),
            cc_major: cc.0,
            cc_minor: cc.1,
            sm_count: sms,
            smem_per_sm: smem_sm,
            smem_per_block_optin: optin,
            regs_per_sm: 65_536,
            regs_per_block: 65_536,
            max_threads_per_sm: threads,
            max_blocks_per_sm: blocks,
            l2_bytes: l2,
            mem_bytes: 0,
        })
    }
}
