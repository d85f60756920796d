//! Plans and code generation for decode attention over a VQ-compressed KV cache (`kernels/attention_vq.cuh`),
//! the GPU encoder of new K/V rows (`kernels/kv_quantize.cuh`) and our FP16 flash-decoding baseline
//! (`kernels/attention_fp16.cuh`).
//!
//! Levels (DESIGN.md section 4, paper Table IV) map to kernels as follows:
//! - `Gc`, `Sc`, `O1`, `O2`: token split (flash-decoding); codebooks from global memory, all in shared memory,
//!   a frequency-ordered shared tier, plus a register tier; V goes through a shared-memory tile (paper Fig. 6);
//! - `O3`: codebook-centric group split (paper Fig. 11): a scores kernel per channel-group slice writes partial
//!   scores, a values kernel sums them (global reduction before the softmax) and handles V per slice;
//! - `O4`: O3 with register-level V fusion (mini-warp reduce-scatter with shuffles) when it takes at most 5
//!   shuffles, otherwise the shared-memory tile;
//! - `Lut` (and `Auto`): token split with lookup tables: q·k from a per-block table of <q, entry> products, V from
//!   a fixed-point histogram of probabilities per (group, entry), multiplied by the V codebook once at the end.
//!
//! Buffers and launch sequence are documented on [`AttentionPlan`] and in the kernel templates.

use crate::error::{CodegenError, Result};
use crate::gpu_spec::GpuSpec;
use crate::instantiate::expand;
use crate::plan::{Decision, Level};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write};
use std::hash::{DefaultHasher, Hash, Hasher};
use vqllm_vq::{CodebookKind, Scope, VqConfig};

/// Head dimensions the kernels support.
pub const SUPPORTED_HEAD_DIMS: [usize; 2] = [64, 128];

/// Shared memory the driver reserves per resident block.
const SMEM_RESERVED_PER_BLOCK: u32 = 1024;
/// Rough HBM and L2 bandwidths per SM (bytes per microsecond) for the split heuristics; only ratios matter.
const HBM_BYTES_PER_US_PER_SM: f64 = 3.0e6 / 132.0;
const L2_BYTES_PER_US_PER_SM: f64 = 7.0e6 / 132.0;
/// Tokens of probabilities the group-split values kernel keeps in shared memory at once.
const VALUES_TILE: u32 = 1024;
/// Threads per block of the kernels (8 warps).
const WARPS: u32 = 8;
/// LUT table row stride in floats for G groups and E entries (kernels/attention_vq.cuh `VqaDims::ROW`): one float
/// per group, at least 32 (a row spans the banks); 8-bit codes with 32 groups pad to 64 floats so that one PRMT
/// forms the lookup address code·256 + column (one q head per block only: GQA blocks keep their tables small and
/// share the code loads instead).
fn lut_row(g: u32, e: u32, qpb: u32) -> u32 {
    if g == 32 && e == 256 && qpb == 1 {
        64
    } else {
        g.max(32)
    }
}

/// Warps per block of the LUT level: its shared-memory table caps the SM at 2 blocks, and the K / V passes need
/// the warps to hide latency (H200, B=16 T=4096: cq2 63 us at 16 warps against 67 at 8; cq4 78.5 against 88.0,
/// once the per-lane offsets were pinned in registers, see `vqa_pin`). 16 warps cap registers at 64. Dequantizing
/// levels: 8.
fn lut_warps(level: Level) -> u32 {
    if level == Level::Lut {
        16
    } else {
        WARPS
    }
}
/// Auto picks the LUT level from this many cached tokens x sequences (measured down to B=1, T=1024).
const LUT_MIN_TOKENS: usize = 1024;
/// LUT token split: split further only while fewer warps than this per SM would stream the codes ...
const LUT_WARPS_PER_SM: u32 = 12;
/// ... and never into chunks shorter than this (each block rebuilds the table).
const LUT_MIN_CHUNK: u32 = 1024;
/// Longest LUT chunk (4 B of scores per token and q head in shared memory).
const LUT_MAX_CHUNK: u32 = 8192;

/// How the work of one (sequence, q head) is spread over blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttnDataflow {
    /// Blocks split the tokens (flash-decoding); partials merged by the combine kernel when `token_splits > 1`.
    TokenSplit,
    /// Blocks split the channel groups (codebook-centric, O3/O4): scores kernel + values kernel.
    GroupSplit,
}

/// How V's column-wise accumulation meets the row-wise dequantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VFusion {
    /// Dequantized rows go through a per-warp shared-memory tile (the paper's baseline).
    SharedMemory,
    /// Mini-warp reduce-scatter with shuffles, accumulators in registers (O4).
    Register,
    /// LUT level: fixed-point histogram of probabilities per (group, entry).
    Histogram,
}

impl VFusion {
    fn code(self) -> u32 {
        match self {
            VFusion::SharedMemory => 0,
            VFusion::Register => 1,
            VFusion::Histogram => 2,
        }
    }
}

/// The LUT kernels' lane mapping for `groups` (8, 16, 32 or 64) channel groups: mirrors `KvLutGeometry` and
/// `kv_lut_rot` in `kernels/kv_layout.cuh`.
#[derive(Clone, Copy, Debug)]
struct LutGeometry {
    groups: usize,
    /// Codes of one token in a 16-byte chunk.
    seg: usize,
    /// Chunks (lanes) per token.
    cpl: usize,
    /// Tokens per chunk.
    tpc: usize,
    /// Tokens per warp step.
    tpw: usize,
    /// Replicas of the table columns in a row.
    rep: usize,
}

impl LutGeometry {
    fn of(groups: usize) -> LutGeometry {
        let cpl = (groups / 16).max(1);
        let tpc = if groups >= 16 { 1 } else { 16 / groups };
        LutGeometry {
            groups,
            seg: groups.min(16),
            cpl,
            tpc,
            tpw: 32 / cpl * tpc,
            rep: if groups >= 32 { 1 } else { 32 / groups },
        }
    }

    /// Rotation of the chunk that token slot `slot` of a warp step takes, chunk index `c`.
    fn rot(&self, slot: usize, c: usize) -> usize {
        if self.groups >= 32 {
            (slot * (self.cpl / 2) + c / 2) & 15
        } else {
            slot / self.rep
        }
    }
}

/// Byte order of the codes inside a token's row of the VQ KV cache (`kernels/kv_layout.cuh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeLayout {
    /// Group g at byte g (the dequantizing levels).
    #[default]
    Logical,
    /// Every 16-byte chunk stored in the rotated order the LUT kernels' lanes walk it, so that they need not rotate
    /// it in registers at every decode step.
    LutRotated,
}

impl CodeLayout {
    /// Byte of the code of channel group `group` in the row of token `token`, for `groups` (8, 16, 32 or 64)
    /// groups per token. Mirrors `kv_code_byte` in `kernels/kv_layout.cuh`.
    pub fn byte_of(self, groups: usize, token: usize, group: usize) -> usize {
        match self {
            CodeLayout::Logical => group,
            CodeLayout::LutRotated => {
                let geo = LutGeometry::of(groups);
                let (c, i) = (group / geo.seg, group % geo.seg);
                let rot = geo.rot((token % geo.tpw) / geo.tpc, c);
                c * geo.seg + (i + geo.seg - rot) % geo.seg
            }
        }
    }

    /// Rewrites `[rows, cap, groups]` codes from the logical order into this layout (`to_layout`) or back.
    pub fn permute(self, codes: &mut [u8], cap: usize, groups: usize, to_layout: bool) {
        if self == CodeLayout::Logical || groups == 0 || cap == 0 {
            return;
        }
        let mut row = vec![0u8; groups];
        for (i, chunk) in codes.chunks_exact_mut(groups).enumerate() {
            let t = i % cap;
            for g in 0..groups {
                let b = self.byte_of(groups, t, g);
                if to_layout {
                    row[b] = chunk[g];
                } else {
                    row[g] = chunk[b];
                }
            }
            chunk.copy_from_slice(&row);
        }
    }
}

/// Grid, block and dynamic shared memory of one kernel launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub smem_bytes: u32,
}

/// Token split of a flash-decoding style kernel for a given longest sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSplit {
    /// Blocks per (sequence, q-head group) along the tokens (`gridDim.z`).
    pub splits: u32,
    /// Tokens per block (the kernels' `chunk` argument), a multiple of 64.
    pub chunk: u32,
    pub launch: Launch,
}

/// Workspace sizes (in f32 elements) for the plan's `seq`. None of them needs zeroing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// `ws_o [batch, q_heads, splits, head_dim]` of the VQ token-split kernel (0 when it writes `out` directly).
    pub partial_o: usize,
    /// `ws_ml [batch, q_heads, splits, 2]`.
    pub partial_ml: usize,
    /// `ws_sc [slices, batch, q_heads, ws_stride]` of the group-split kernels (0 for token split).
    pub scores: usize,
    /// Row stride of `ws_sc` (the plan's `seq` rounded up to 64).
    pub ws_stride: u32,
    /// `ws_o` / `ws_ml` of the FP16 baseline.
    pub fp16_partial_o: usize,
    pub fp16_partial_ml: usize,
}

/// Launch parameters of the FP16 flash-decoding baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fp16Plan {
    pub qpb: u32,
    pub warps: u32,
    pub unroll: u32,
    pub min_blocks: u32,
    pub split: TokenSplit,
}

/// A complete plan for VQ decode attention on one layer shape.
///
/// Launch sequence for one decode step of a layer (all on one stream):
/// 1. `quantize` (`vqa_quantize_*`): encode the new K and V rows; grid from [`AttentionPlan::quantize_launch`];
///    then the host advances `lens` (the attention kernels read the updated lengths).
/// 2. Token split: `attention` (`vqa_attn_*`) with `split`; if `split.splits > 1`, `combine` with
///    `combine_launch`. Group split: `attention` (`vqa_scores_*`) with `split`, then `values` (`vqa_values_*`) with
///    `values_launch`; no combine.
///
/// The FP16 baseline is `fp16` (`attn_fp16_*`) then, when its splits > 1, `combine` with its own grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionPlan {
    pub config: VqConfig,
    pub batch: usize,
    /// Longest sequence the launch parameters are sized for (use [`AttentionPlan::split_for`] for others).
    pub seq: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub level: Level,
    pub dataflow: AttnDataflow,
    pub lut: bool,
    pub v_fusion: VFusion,
    /// q heads per block (they share every code load; divides q_heads / kv_heads).
    pub qpb: u32,
    pub warps: u32,
    /// Code loads in flight per lane.
    pub unroll: u32,
    /// `__launch_bounds__` minimum resident blocks per SM (caps registers at 65536 / (threads · min_blocks)).
    pub min_blocks: u32,
    pub n_shared: u32,
    pub n_reg: u32,
    /// The codebooks (and hence the codes) must be stored in descending-frequency order per (head, group).
    pub frequency_ordered: bool,
    /// LUT: the block asks L2 for its K and V code chunks and V codebook before building the table, so the later
    /// passes find them in L2 (small caches, where each block's phases are latency-bound).
    #[serde(default)]
    pub prefetch: bool,
    /// Byte order of the codes in the cache this plan reads and its quantize kernel writes.
    #[serde(default)]
    pub code_layout: CodeLayout,
    /// Channel-group slices S (1 for token split).
    pub group_slices: u32,
    /// Main kernel: token split for `seq` (for group split, `splits` is the token ranges per slice).
    pub split: TokenSplit,
    /// Group split: the values kernel.
    pub values_launch: Option<Launch>,
    /// Token-split combine kernel (used when `split.splits > 1`).
    pub combine_launch: Launch,
    /// kv_quantize: groups per block and warps.
    pub quantize_groups_per_block: u32,
    pub quantize_warps: u32,
    pub fp16: Fp16Plan,
    pub workspace: Workspace,
    pub decisions: Vec<Decision>,
}

/// Shared-memory layout of `attention_vq.cuh` (`VqaSmem`); offsets in bytes.
#[derive(Clone, Copy, Debug)]
struct VqaSmem {
    /// Bytes before the run-time sized score / probability buffer.
    fixed: u32,
}

fn al16(x: u32) -> u32 {
    x.div_ceil(16) * 16
}

struct SmemInputs {
    lut: bool,
    v_fusion: VFusion,
    qpb: u32,
    d: u32,
    v: u32,
    e: u32,
    slices: u32,
    n_shared: u32,
    warps: u32,
}

impl VqaSmem {
    /// Mirrors `VqaSmem<Cfg>` in `kernels/attention_vq.cuh` exactly.
    fn of(i: &SmemInputs) -> VqaSmem {
        let g = i.d / i.v;
        let row = lut_row(g, i.e, i.qpb);
        let cs = i.d / i.slices;
        let gs = g / i.slices;
        let nt = 32 * i.warps;
        let npart = nt / g;
        let qs = al16(32 * i.qpb * 4);
        let tbl = qs + al16(i.qpb * i.d * 4);
        let tbl_bytes = if i.lut { i.qpb * i.e * row * 4 } else { 0 };
        let fin = tbl + al16(tbl_bytes);
        let fin_bytes = if i.lut { npart * i.qpb * i.d * 4 } else { 0 };
        let cbs = fin + al16(fin_bytes);
        let cbs_bytes = if i.lut { 0 } else { gs * i.n_shared * i.v * 2 };
        let vt = cbs + al16(cbs_bytes);
        let vt_bytes = if !i.lut && i.v_fusion == VFusion::SharedMemory {
            i.warps * 32 * (cs + i.v) * 2
        } else {
            0
        };
        let vred = vt + al16(vt_bytes);
        let vred_bytes = if i.lut { 0 } else { i.warps * i.qpb * cs * 4 };
        VqaSmem {
            fixed: vred + al16(vred_bytes),
        }
    }
}

/// Blocks of `threads` threads using `smem` bytes and about `regs` registers per thread that fit on one SM.
fn resident_blocks(gpu: &GpuSpec, threads: u32, smem: u32, regs: u32) -> u32 {
    let by_smem = gpu.smem_per_sm / (smem + SMEM_RESERVED_PER_BLOCK).max(1);
    let by_threads = gpu.max_threads_per_sm / threads;
    let by_regs = gpu.regs_per_sm / (threads * regs.max(1));
    by_smem
        .min(by_threads)
        .min(by_regs)
        .min(gpu.max_blocks_per_sm)
}

/// Largest divisor of `n` that is at most `cap` (at least 1).
fn largest_divisor_at_most(n: u32, cap: u32) -> u32 {
    (1..=cap.max(1))
        .rev()
        .find(|&d| n.is_multiple_of(d))
        .unwrap_or(1)
}

impl AttentionPlan {
    /// Plans decode attention for `batch` sequences of at most `seq` tokens, `q_heads` query heads over
    /// `kv_heads` KV heads of `head_dim` channels, with a KV `config` (`Scope::KvChannelGroup`, r = 1,
    /// v in {2, 4, 8}, b <= 8), at `level` (`Level::Auto` picks the LUT kernel).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &VqConfig,
        batch: usize,
        seq: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
        level: Level,
        gpu: &GpuSpec,
    ) -> Result<AttentionPlan> {
        config.validate().map_err(CodegenError::Vq)?;
        check_shape(config, batch, seq, q_heads, kv_heads, head_dim)?;
        if level == Level::Replica {
            return Err(CodegenError::Unsupported(
                "the replica level is a batch-1 weight GeMV; attention levels are gc, sc, o1-o4, lut and auto".into(),
            ));
        }
        let mut d: Vec<Decision> = Vec::new();
        let mut note = |what: &str, value: String, why: String| {
            d.push(Decision {
                what: what.into(),
                value,
                why,
            })
        };
        let v = config.v as u32;
        let dim = head_dim as u32;
        let g = dim / v;
        let e = config.entries() as u32;
        let n_rep = (q_heads / kv_heads) as u32;
        // Auto: the LUT kernel builds a table of <q, entry> products per block, which pays off over many tokens;
        // for tiny caches the shared-codebook kernel (SC) is the safer choice (H200, B=1 T=1024: LUT 14.4 us,
        // O3 17.4, SC 24.4; B=16 T=4096: LUT 67-90 us, SC 264-320 us).
        let level = if level == Level::Auto {
            let tokens = batch * seq;
            let pick = if tokens >= LUT_MIN_TOKENS {
                Level::Lut
            } else {
                Level::Sc
            };
            note(
                "level",
                pick.to_string(),
                if tokens >= LUT_MIN_TOKENS {
                    format!("auto: {tokens} cached tokens x sequences >= {LUT_MIN_TOKENS}: the table build is amortised -> LUT")
                } else {
                    format!("auto: {tokens} cached tokens x sequences < {LUT_MIN_TOKENS}: the table build is amortised poorly -> SC")
                },
            );
            pick
        } else {
            level
        };
        let warps = lut_warps(level);
        let threads = 32 * warps;
        let entry_bytes = 2 * v;
        let head_codebook_bytes = g * e * entry_bytes; // one of K or V, one kv head

        // 1. Kernel family.
        let lut = level == Level::Lut;
        let dataflow = match level {
            Level::O3 | Level::O4 => AttnDataflow::GroupSplit,
            _ => AttnDataflow::TokenSplit,
        };
        let v_fusion = match level {
            Level::Lut => VFusion::Histogram,
            Level::O4 if v <= 4 => VFusion::Register,
            _ => VFusion::SharedMemory,
        };
        note(
            "dataflow",
            format!("{dataflow:?}"),
            match dataflow {
                AttnDataflow::TokenSplit => format!(
                    "{level}: blocks split the tokens (flash-decoding) and each loads its kv head's whole K and V codebooks \
                     ({} KiB each)",
                    head_codebook_bytes / 1024
                ),
                AttnDataflow::GroupSplit => "codebook-centric (paper Fig. 11): blocks split the channel groups, so each loads only its \
                     slice's codebooks; partial q.k sums are reduced in a second kernel before the softmax"
                    .into(),
            },
        );
        note(
            "v fusion",
            format!("{v_fusion:?}"),
            match v_fusion {
                VFusion::Histogram => "LUT: each token adds its probability to a (group, entry) histogram (u32 fixed point, \
                    native shared atomics); V codebook applied once per block"
                    .into(),
                VFusion::Register => format!(
                    "O4: mini-warps of {v} lanes reduce-scatter p*entry with {} shuffles per group (<= 5), accumulators in registers",
                    v - 1
                ),
                VFusion::SharedMemory if level == Level::O4 => format!(
                    "O4 wanted register fusion, but v={v} needs {} shuffles per group (> 5): shared-memory tile instead",
                    v - 1
                ),
                VFusion::SharedMemory => "dequantized V rows go through a per-warp shared-memory tile read column-wise (paper Fig. 6)".into(),
            },
        );

        // 2. q heads per block (GQA: they share every code load).
        let qpb = if lut {
            let table = e * g.max(32) * 4; // unpadded rows: q heads sharing code loads come first
            largest_divisor_at_most(n_rep, (64 * 1024 / table).max(1))
        } else {
            largest_divisor_at_most(n_rep, 4)
        };
        note(
            "q heads/block",
            qpb.to_string(),
            format!(
                "{n_rep} q heads per kv head; {qpb} per block share the code loads{}",
                if lut {
                    " (bounded by the <= 64 KiB of lookup tables per block)"
                } else {
                    " (bounded by register accumulators)"
                }
            ),
        );

        // 3. Group slices (O3/O4).
        let pairs = batch as u32 * (q_heads as u32 / qpb);
        let target_blocks = 2 * gpu.sm_count;
        let (slices, slice_why) = if dataflow == AttnDataflow::GroupSplit {
            // Slices keep >= 4 groups and >= 32 channels; register fusion wants GS * qpb <= 32 accumulators.
            let max_s = (g / 4).min(dim / 32).max(1);
            let want = target_blocks.div_ceil(pairs).next_power_of_two();
            // At least two slices: splitting the channel groups is what makes the dataflow codebook-centric.
            let mut s = want.clamp(2.min(max_s), max_s);
            if v_fusion == VFusion::Register {
                s = s.max((g * qpb).div_ceil(32).next_power_of_two().min(max_s));
            }
            let s = (1..=s).rev().find(|&x| g.is_multiple_of(x)).unwrap_or(1);
            let reduce_kb = s as f64 * pairs as f64 * qpb as f64 * seq as f64 * 4.0 / 1024.0;
            (
                s,
                format!(
                    "{pairs} (sequence, head group) pairs x S fill {target_blocks} block slots; S <= {max_s} (>= 4 groups and 32 channels per slice); \
                     Traffic_reduce = S x scores = {reduce_kb:.0} KiB, codebook traffic per sequence stays one head's codebooks ({} KiB) for any S",
                    2 * head_codebook_bytes / 1024
                ),
            )
        } else {
            (
                1,
                "token split: every block covers all channel groups".into(),
            )
        };
        note("group slices", slices.to_string(), slice_why);
        let gs = g / slices;
        if gs < 4 || !gs.is_multiple_of(4) {
            return Err(CodegenError::Unsupported(format!(
                "{config} with head_dim {head_dim}: {gs} groups per slice (needs a multiple of 4)"
            )));
        }

        // 4. Codebook cache tiers (dequantizing levels).
        // Dequantizing levels unroll every group of a token already (GS lookups, each possibly a global load);
        // a second token in flight makes ptxas hoist twice as many loads and spill.
        let unroll: u32 = if lut { 4 } else { 1 };
        // Registers per thread measured with ptxas (sm_90): LUT at 16 warps 64-71 uncapped (the table build holds
        // EPP = 2^b·G/512 entries), fits 64 (2 blocks/SM) without spills; at 8 warps 64-80 for G <= 32, ~118 for
        // G = 64; more per extra q head; dequantizing levels ~80.
        let base_regs: u32 = if lut {
            (if warps == 16 {
                60
            } else if g >= 64 {
                120
            } else {
                80
            }) + if v == 8 { 8 } else { 0 }
                + 24 * (qpb - 1)
        } else {
            80 + 16 * (qpb - 1)
        };
        let (mut n_shared, mut n_reg) = (0u32, 0u32);
        let smem_in = |n_shared: u32, qpb: u32| SmemInputs {
            lut,
            v_fusion,
            qpb,
            d: dim,
            v,
            e,
            slices,
            n_shared,
            warps,
        };
        if !lut && level != Level::Gc {
            let per_entry = gs * entry_bytes; // one entry of every codebook of the slice
            let without = VqaSmem::of(&smem_in(0, qpb)).fixed + qpb * 1024 * 4;
            match level {
                Level::Sc => {
                    n_shared = e;
                    let need = without + e * per_entry;
                    if need > gpu.smem_per_block_optin {
                        return Err(CodegenError::DoesNotFit(format!(
                            "SC stages {} KiB of codebooks per block; the device allows {} KiB",
                            e * per_entry / 1024,
                            gpu.smem_per_block_optin / 1024
                        )));
                    }
                    note(
                        "n_shared",
                        e.to_string(),
                        format!(
                            "SC: every entry of the block's {gs} codebooks in shared memory ({} KiB)",
                            e * per_entry / 1024
                        ),
                    );
                }
                _ => {
                    // Slack: keep two resident blocks per SM (one for O3/O4 slices is plenty: they are long-lived).
                    let resident = 2u32;
                    let budget = (gpu.smem_per_sm / resident)
                        .min(gpu.smem_per_block_optin)
                        .saturating_sub(SMEM_RESERVED_PER_BLOCK + without);
                    n_shared = (budget / per_entry).min(e);
                    // Keep a power-of-two-ish boundary to help the index comparison stay cheap.
                    if n_shared < e {
                        n_shared = if n_shared >= 32 {
                            n_shared & !31
                        } else {
                            n_shared
                        };
                    }
                    note(
                        "n_shared",
                        n_shared.to_string(),
                        format!(
                            "{resident} resident blocks/SM leave {} KiB of shared memory per block for codebooks; an entry of all {gs} \
                             codebooks of the slice costs {per_entry} B",
                            budget / 1024
                        ),
                    );
                }
            }
            if matches!(level, Level::O2 | Level::O3 | Level::O4) {
                // Register tier: n_reg entries of each of the gs codebooks, spread over the 32 lanes.
                // With a global tier the kernel runs at one block per SM anyway (see the launch bounds).
                let mixed = n_shared < e;
                let blocks = if mixed { 1 } else { 2 };
                let limit = (gpu.regs_per_sm / (threads * blocks)).min(255);
                let acc = if v_fusion == VFusion::Register {
                    gs * qpb
                } else {
                    0
                } + if mixed { 72 } else { 0 };
                let slack = limit.saturating_sub(base_regs + acc);
                let cost = |nr: u32| gs.div_ceil(32 / nr) * v / 2;
                n_reg = [32u32, 16, 8, 4, 2, 1]
                    .into_iter()
                    .filter(|&nr| nr <= e)
                    .find(|&nr| cost(nr) <= slack)
                    .unwrap_or(0);
                note(
                    "n_reg",
                    n_reg.to_string(),
                    format!(
                        "register slack {slack} (limit {limit}/thread at {blocks} blocks/SM, ~{} used); {} entries of each of {gs} codebooks \
                         spread over the lanes cost {} registers",
                        base_regs + acc,
                        n_reg.max(1),
                        if n_reg > 0 { cost(n_reg) } else { cost(1) }
                    ),
                );
            }
        }
        let frequency_ordered = !lut && (n_reg > 0 || (n_shared > 0 && n_shared < e));
        if frequency_ordered {
            note(
                "frequency order",
                "required".into(),
                "the cached tiers hold entries [0, n) per codebook: store each (head, group) codebook in descending \
                 calibration frequency (codes produced by kv_quantize follow automatically)"
                    .into(),
            );
        }

        // 5. Occupancy and launch bounds.
        let smem_fixed = VqaSmem::of(&smem_in(n_shared, qpb)).fixed;
        // A global tier next to the cached ones makes ptxas hoist many predicated loads (~150 registers measured).
        let mixed_tiers = !lut && n_shared < e && level != Level::Gc;
        let regs_est = base_regs
            + if mixed_tiers { 72 } else { 0 }
            + 32u32
                .checked_div(n_reg)
                .map_or(0, |gps| gs.div_ceil(gps) * v / 2)
            + if v_fusion == VFusion::Register {
                2 * gs * qpb
            } else {
                0
            };
        let budget_per_block = gpu.smem_per_block_optin;
        let max_chunk = (budget_per_block.saturating_sub(smem_fixed) / (4 * qpb)) / 64 * 64;
        if max_chunk < 64 {
            return Err(CodegenError::DoesNotFit(format!(
                "{smem_fixed} B of fixed shared memory leave no room for scores (device allows {budget_per_block} B per block)"
            )));
        }
        let (split, min_blocks, values_launch) = match dataflow {
            AttnDataflow::TokenSplit => {
                let split = if lut {
                    choose_lut_split(
                        gpu,
                        seq as u32,
                        pairs,
                        warps,
                        smem_fixed,
                        qpb,
                        max_chunk,
                        (q_heads as u32 / qpb, batch as u32),
                    )
                } else {
                    choose_token_split(
                        gpu,
                        seq as u32,
                        pairs,
                        threads,
                        smem_fixed,
                        qpb,
                        max_chunk,
                        regs_est,
                        (2 * g) as f64, // code bytes per token (K + V), loaded once for the qpb heads
                        (2 * head_codebook_bytes) as f64,
                        (q_heads as u32 / qpb, batch as u32),
                    )
                };
                let resident =
                    resident_blocks(gpu, threads, split.launch.smem_bytes, regs_est).max(1);
                let cb_kib = 2 * head_codebook_bytes / 1024;
                let why = if lut {
                    format!(
                        "{pairs} (sequence, head group) pairs x {warps} warps; more splits only while fewer than \
                         {LUT_WARPS_PER_SM} warps per SM would stream and each chunk keeps >= {LUT_MIN_CHUNK} tokens: \
                         every block rebuilds the table ({cb_kib} KiB of codebooks) and splits add a combine kernel; \
                         {resident} resident blocks/SM"
                    )
                } else {
                    format!(
                        "{pairs} (sequence, head group) pairs, {resident} resident blocks/SM; per block a fixed cost of {cb_kib} KiB of \
                         codebooks (L2) against {} B of codes per token; scores of a chunk stay in shared memory (<= {max_chunk} tokens)",
                        2 * g
                    )
                };
                note(
                    "token split",
                    format!("{} x {} tokens", split.splits, split.chunk),
                    why,
                );
                (split, resident.min(4), None)
            }
            AttnDataflow::GroupSplit => {
                let per_slice = pairs * slices;
                let ts = target_blocks
                    .div_ceil(per_slice)
                    .clamp(1, (seq as u32).div_ceil(512).max(1));
                let chunk = (seq as u32).div_ceil(ts).div_ceil(64) * 64;
                let ts = (seq as u32).div_ceil(chunk);
                let launch = Launch {
                    grid: (q_heads as u32 / qpb, batch as u32, slices * ts),
                    block: threads,
                    smem_bytes: smem_fixed,
                };
                let values_smem = smem_fixed + 4 * qpb * VALUES_TILE;
                let values = Launch {
                    grid: (q_heads as u32 / qpb, batch as u32, slices),
                    block: threads,
                    smem_bytes: values_smem,
                };
                let resident = resident_blocks(gpu, threads, values_smem, regs_est).max(1);
                note(
                    "token ranges",
                    format!("{ts} x {chunk} tokens"),
                    format!("scores kernel: {per_slice} blocks per token range; ranges bring the grid to ~{target_blocks} blocks"),
                );
                (
                    TokenSplit {
                        splits: ts,
                        chunk,
                        launch,
                    },
                    resident.min(4),
                    Some(values),
                )
            }
        };
        let min_blocks = min_blocks.min((gpu.regs_per_sm / (threads * regs_est)).max(1));
        note(
            "launch bounds",
            format!("{threads} threads, >= {min_blocks} blocks/SM"),
            format!(
                "caps registers at {} per thread (~{regs_est} needed); without a minimum this ptxas trades registers for spills",
                (gpu.regs_per_sm / (threads * min_blocks)).min(255)
            ),
        );
        // L2 prefetch (LUT): worth it when the bytes every resident block asks for at once fit a quarter of L2.
        let prefetch = lut && {
            let resident = resident_blocks(gpu, threads, split.launch.smem_bytes, regs_est).max(1);
            let in_flight = (resident * gpu.sm_count).min(pairs * split.splits) as u64;
            // Code chunks are distinct per block; a KV head's V codebook is shared by its blocks.
            let codes = in_flight * 2 * split.chunk as u64 * g as u64;
            let codebooks = (kv_heads as u64).min(in_flight) * head_codebook_bytes as u64;
            codes + codebooks <= gpu.l2_bytes / 4
        };
        if lut {
            note(
                "L2 prefetch",
                if prefetch { "on" } else { "off" }.into(),
                "each block's K/V code chunks and V codebook requested from L2 up front (bulk prefetch) when all resident \
                 blocks' bytes fit a quarter of L2: small caches, latency-bound phases"
                    .into(),
            );
        }
        let code_layout = if lut {
            CodeLayout::LutRotated
        } else {
            CodeLayout::Logical
        };
        note(
            "code layout",
            format!("{code_layout:?}"),
            if lut {
                "kv_quantize stores each 16-byte chunk of codes in the rotated order the LUT lanes walk it (bank-conflict-free \
                 table reads), so the K and V passes do not rotate it in registers: ~18% fewer instructions in their loops"
                    .into()
            } else {
                "the dequantizing kernels read a token's codes in group order".into()
            },
        );
        let combine_launch = Launch {
            grid: (q_heads as u32, batch as u32, 1),
            block: dim,
            smem_bytes: 0,
        };

        // 6. kv_quantize.
        let gpb = 8u32.min(g);
        note(
            "quantize",
            format!("{gpb} groups/block, {WARPS} warps"),
            format!(
                "a block stages {gpb} codebooks ({} KiB) once; a warp per (row, group), lanes split the {e} entries and argmin \
                 with 5 shuffles",
                gpb * e * entry_bytes / 1024
            ),
        );

        // 7. FP16 baseline.
        let fp16 = plan_fp16(gpu, batch as u32, seq as u32, q_heads as u32, n_rep, dim)?;
        note(
            "fp16 baseline",
            format!(
                "{} x {} tokens, {} q heads/block",
                fp16.split.splits, fp16.split.chunk, fp16.qpb
            ),
            format!(
                "flash-decoding: 16-byte loads, {} in flight per lane, {} lanes per token",
                fp16.unroll,
                dim / 8
            ),
        );

        // 8. Workspace.
        let ws_stride = (seq as u32).div_ceil(64) * 64;
        let bh = batch * q_heads;
        let tsplits = if dataflow == AttnDataflow::TokenSplit && split.splits > 1 {
            split.splits as usize
        } else {
            0
        };
        let f16_splits = if fp16.split.splits > 1 {
            fp16.split.splits as usize
        } else {
            0
        };
        let workspace = Workspace {
            partial_o: bh * tsplits * head_dim,
            partial_ml: bh * tsplits * 2,
            scores: if dataflow == AttnDataflow::GroupSplit {
                slices as usize * bh * ws_stride as usize
            } else {
                0
            },
            ws_stride,
            fp16_partial_o: bh * f16_splits * head_dim,
            fp16_partial_ml: bh * f16_splits * 2,
        };
        note(
            "workspace",
            format!(
                "{} KiB",
                (workspace.partial_o
                    + workspace.partial_ml
                    + workspace.scores
                    + workspace.fp16_partial_o
                    + workspace.fp16_partial_ml)
                    * 4
                    / 1024
            ),
            "f32 partials; every element read is written first in the same step, so no zeroing"
                .into(),
        );
        note(
            "grid",
            format!(
                "{} x {} x {}",
                split.launch.grid.0, split.launch.grid.1, split.launch.grid.2
            ),
            format!(
                "{threads} threads, {} B shared memory per block",
                split.launch.smem_bytes
            ),
        );

        Ok(AttentionPlan {
            config: *config,
            batch,
            seq,
            q_heads,
            kv_heads,
            head_dim,
            level,
            dataflow,
            lut,
            v_fusion,
            qpb,
            warps,
            unroll,
            min_blocks,
            n_shared,
            n_reg,
            frequency_ordered,
            prefetch,
            code_layout,
            group_slices: slices,
            split,
            values_launch,
            combine_launch,
            quantize_groups_per_block: gpb,
            quantize_warps: WARPS,
            fp16,
            workspace,
            decisions: d,
        })
    }

    /// Overrides the planner's token split of the token-split dataflow with `splits` blocks per (sequence, q-head
    /// group) (the chunk is rounded up to 64 tokens, so the effective number can be lower). An error for the
    /// group-split dataflow or when the chunk's scores do not fit the device's shared memory.
    pub fn with_token_splits(mut self, splits: u32, gpu: &GpuSpec) -> Result<AttentionPlan> {
        if self.dataflow != AttnDataflow::TokenSplit {
            return Err(CodegenError::Invalid(format!(
                "--token-splits applies to the token-split levels, not {:?}",
                self.level
            )));
        }
        let seq = self.seq as u32;
        self.split.chunk = seq.div_ceil(splits.clamp(1, seq)).div_ceil(64) * 64;
        self.split = self.split_for(self.seq);
        let (splits, chunk, smem) = (
            self.split.splits,
            self.split.chunk,
            self.split.launch.smem_bytes,
        );
        if smem > gpu.smem_per_block_optin {
            return Err(CodegenError::DoesNotFit(format!(
                "{chunk} tokens per block need {smem} B of shared memory; the device allows {} B",
                gpu.smem_per_block_optin
            )));
        }
        let bh = self.batch * self.q_heads;
        let ts = if splits > 1 { splits as usize } else { 0 };
        self.workspace.partial_o = bh * ts * self.head_dim;
        self.workspace.partial_ml = bh * ts * 2;
        self.decisions.push(Decision {
            what: "token split".into(),
            value: format!("{splits} x {chunk} tokens"),
            why: "override (--token-splits)".into(),
        });
        Ok(self)
    }

    /// Overrides the code layout: the LUT level reads either layout (rotating logical chunks in registers); the
    /// dequantizing levels need [`CodeLayout::Logical`].
    pub fn with_code_layout(mut self, layout: CodeLayout) -> Result<AttentionPlan> {
        if !self.lut && layout != CodeLayout::Logical {
            return Err(CodegenError::Invalid(format!(
                "the {} level reads codes in the logical layout only",
                self.level
            )));
        }
        self.code_layout = layout;
        self.decisions.push(Decision {
            what: "code layout".into(),
            value: format!("{layout:?}"),
            why: "override (--code-layout)".into(),
        });
        Ok(self)
    }

    /// Overrides the LUT level's L2 prefetch decision (ignored by the other levels, which do not prefetch).
    pub fn with_prefetch(mut self, on: bool) -> AttentionPlan {
        self.prefetch = on && self.lut;
        self.decisions.push(Decision {
            what: "L2 prefetch".into(),
            value: if self.prefetch { "on" } else { "off" }.into(),
            why: "override (--l2-prefetch)".into(),
        });
        self
    }

    /// Channel groups per head, `head_dim / v`.
    pub fn groups(&self) -> u32 {
        (self.head_dim / self.config.v) as u32
    }

    /// Fixed shared memory of the VQ attention kernel (before the run-time sized score buffer).
    fn smem_fixed(&self) -> u32 {
        VqaSmem::of(&SmemInputs {
            lut: self.lut,
            v_fusion: self.v_fusion,
            qpb: self.qpb,
            d: self.head_dim as u32,
            v: self.config.v as u32,
            e: self.config.entries() as u32,
            slices: self.group_slices,
            n_shared: self.n_shared,
            warps: self.warps,
        })
        .fixed
    }

    /// Token split of the VQ attention kernel for a longest sequence of `max_len` tokens (the plan was sized for
    /// `seq`; a longer one gets more splits, never a bigger shared-memory buffer than the device allows).
    /// For group split this is the scores kernel's token ranges.
    pub fn split_for(&self, max_len: usize) -> TokenSplit {
        let max_len = max_len.max(1) as u32;
        let chunk = self.split.chunk.max(64);
        let splits = max_len.div_ceil(chunk);
        let z = match self.dataflow {
            AttnDataflow::TokenSplit => splits,
            AttnDataflow::GroupSplit => splits * self.group_slices,
        };
        let smem_bytes = match self.dataflow {
            AttnDataflow::TokenSplit => self.smem_fixed() + 4 * self.qpb * chunk,
            AttnDataflow::GroupSplit => self.smem_fixed(),
        };
        TokenSplit {
            splits,
            chunk,
            launch: Launch {
                grid: (self.split.launch.grid.0, self.split.launch.grid.1, z),
                block: self.split.launch.block,
                smem_bytes,
            },
        }
    }

    /// Launch of `vqa_quantize_*` for `t_new` new rows per sequence; returns the launch and its
    /// `tokens_per_block` argument.
    pub fn quantize_launch(&self, t_new: usize, gpu: &GpuSpec) -> (Launch, u32) {
        let g = self.groups();
        let blocks_x = self.kv_heads as u32 * (g / self.quantize_groups_per_block);
        let rows = (self.batch * t_new.max(1)) as u32;
        // Enough blocks to fill the GPU 4 times over, but each block reuses its staged codebooks over its rows.
        let want_y = (4 * gpu.sm_count).div_ceil(2 * blocks_x).max(1);
        let tpb = rows.div_ceil(want_y).max(1);
        let e = self.config.entries() as u32;
        (
            Launch {
                grid: (blocks_x, rows.div_ceil(tpb), 2),
                block: 32 * self.quantize_warps,
                smem_bytes: self.quantize_groups_per_block * e * self.config.v as u32 * 2,
            },
            tpb,
        )
    }

    /// Bytes that must move for one attention call on sequences of `len` tokens: K and V codes, codebooks once,
    /// q in, out out.
    pub fn min_bytes(&self, len: usize) -> usize {
        let g = self.head_dim / self.config.v;
        let codes = 2 * self.batch * self.kv_heads * len * g;
        let cb = 2 * self.kv_heads * g * self.config.entries() * self.config.v * 2;
        codes + cb + 2 * 2 * self.batch * self.q_heads * self.head_dim
    }
}

fn check_shape(
    config: &VqConfig,
    batch: usize,
    seq: usize,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<()> {
    if config.scope != Scope::KvChannelGroup || config.codebook != CodebookKind::Learned {
        return Err(CodegenError::Invalid(format!(
            "{config} is not a KV-cache config (use cq2, cq4 or vq<v,b,1>:kv)"
        )));
    }
    if config.r != 1 || config.b > 8 || ![2, 4, 8].contains(&config.v) {
        return Err(CodegenError::Unsupported(format!(
            "{config}: KV attention supports v in {{2, 4, 8}}, b <= 8 (u8 codes) and r = 1"
        )));
    }
    if !SUPPORTED_HEAD_DIMS.contains(&head_dim) {
        return Err(CodegenError::Unsupported(format!(
            "head_dim {head_dim} (supported: 64, 128)"
        )));
    }
    if !head_dim.is_multiple_of(config.v) {
        return Err(CodegenError::Invalid(format!(
            "head_dim {head_dim} is not divisible by v={}",
            config.v
        )));
    }
    if batch == 0 || seq == 0 || q_heads == 0 || kv_heads == 0 {
        return Err(CodegenError::Invalid(format!(
            "batch, seq, q_heads and kv_heads must be positive (got {batch}, {seq}, {q_heads}, {kv_heads})"
        )));
    }
    if !q_heads.is_multiple_of(kv_heads) {
        return Err(CodegenError::Invalid(format!(
            "q_heads {q_heads} is not a multiple of kv_heads {kv_heads} (GQA)"
        )));
    }
    if batch > 65_535 || q_heads > 65_535 {
        return Err(CodegenError::Invalid(format!(
            "batch {batch} and q_heads {q_heads} must fit a grid dimension (<= 65535)"
        )));
    }
    Ok(())
}

/// LUT token split. Each block pays a large fixed cost (building a table from its head's codebooks, applying
/// the V codebook to the histogram) and any split > 1 adds the combine kernel (~3 us), so: one split unless fewer
/// than LUT_WARPS_PER_SM warps per SM would stream the codes, and never chunks under LUT_MIN_CHUNK tokens. Measured
/// on an H200 with `--token-splits`: B=1 T=1024 best at 1 split (cq2 9.1 / cq4 12.2 us against 11.3 / 12.8 at 2);
/// B=16 T=4096 cq2 63.1 us at 1, 74.3 at 2; with 8-warp blocks B=4 T=4096 cq4 was best at 2 (31.4 against 37.0
/// us), the case this rule splits. Chunks stay <= LUT_MAX_CHUNK tokens (score buffer).
#[allow(clippy::too_many_arguments)]
fn choose_lut_split(
    gpu: &GpuSpec,
    seq: u32,
    pairs: u32,
    warps: u32,
    smem_fixed: u32,
    qpb: u32,
    max_chunk: u32,
    grid_xy: (u32, u32),
) -> TokenSplit {
    let max_chunk = max_chunk.min(LUT_MAX_CHUNK);
    let min_splits = seq.div_ceil(max_chunk).max(1);
    let want = (gpu.sm_count * LUT_WARPS_PER_SM).div_ceil((pairs * warps).max(1));
    let most = (seq / LUT_MIN_CHUNK).max(1);
    let splits = want.min(most).max(min_splits);
    let chunk = seq.div_ceil(splits).div_ceil(64) * 64;
    let splits = seq.div_ceil(chunk);
    TokenSplit {
        splits,
        chunk,
        launch: Launch {
            grid: (grid_xy.0, grid_xy.1, splits),
            block: 32 * warps,
            smem_bytes: smem_fixed + 4 * qpb * chunk,
        },
    }
}

/// Picks the number of token chunks: minimise an estimate of waves x (fixed per-block cost + streaming time of
/// a chunk), where a resident block gets its share of the SM's bandwidth.
#[allow(clippy::too_many_arguments)]
fn choose_token_split(
    gpu: &GpuSpec,
    seq: u32,
    pairs: u32,
    threads: u32,
    smem_fixed: u32,
    qpb: u32,
    max_chunk: u32,
    regs: u32,
    bytes_per_token: f64,
    fixed_bytes: f64,
    grid_xy: (u32, u32),
) -> TokenSplit {
    let min_splits = seq.div_ceil(max_chunk).max(1);
    let mut best: Option<(f64, TokenSplit)> = None;
    for splits in min_splits..=min_splits.max(64) {
        let chunk = seq.div_ceil(splits).div_ceil(64) * 64;
        let splits = seq.div_ceil(chunk);
        let smem = smem_fixed + 4 * qpb * chunk;
        let resident = resident_blocks(gpu, threads, smem, regs).max(1);
        let slots = gpu.sm_count * resident;
        let blocks = pairs * splits;
        let waves = blocks.div_ceil(slots) as f64;
        let share = resident as f64;
        let t_fixed = fixed_bytes / (L2_BYTES_PER_US_PER_SM / share) + 1.0;
        let t_stream = chunk as f64 * bytes_per_token / (HBM_BYTES_PER_US_PER_SM / share);
        let cost = waves * (t_fixed + t_stream) + if splits > 1 { 2.0 } else { 0.0 };
        let cand = TokenSplit {
            splits,
            chunk,
            launch: Launch {
                grid: (grid_xy.0, grid_xy.1, splits),
                block: threads,
                smem_bytes: smem,
            },
        };
        if best.as_ref().is_none_or(|(c, _)| cost < *c - 1e-9) {
            best = Some((cost, cand));
        }
        if chunk == 64 {
            break;
        }
    }
    best.map(|(_, s)| s).unwrap_or(TokenSplit {
        splits: min_splits,
        chunk: max_chunk,
        launch: Launch {
            grid: (grid_xy.0, grid_xy.1, min_splits),
            block: threads,
            smem_bytes: smem_fixed + 4 * qpb * max_chunk,
        },
    })
}

fn plan_fp16(
    gpu: &GpuSpec,
    batch: u32,
    seq: u32,
    q_heads: u32,
    n_rep: u32,
    dim: u32,
) -> Result<Fp16Plan> {
    let qpb = largest_divisor_at_most(n_rep, 4);
    let warps = WARPS;
    let threads = 32 * warps;
    let fixed = (32 * qpb + warps * qpb * dim) * 4;
    let max_chunk = (gpu.smem_per_block_optin.saturating_sub(fixed) / (4 * qpb)) / 64 * 64;
    if max_chunk < 64 {
        return Err(CodegenError::DoesNotFit(
            "FP16 baseline scores buffer".into(),
        ));
    }
    let regs = 64 + 16 * (qpb - 1);
    let pairs = batch * (q_heads / qpb);
    let split = choose_token_split(
        gpu,
        seq,
        pairs,
        threads,
        fixed,
        qpb,
        max_chunk,
        regs,
        (2 * dim * 2) as f64,
        0.0,
        (q_heads / qpb, batch),
    );
    let resident = resident_blocks(gpu, threads, split.launch.smem_bytes, regs).max(1);
    Ok(Fp16Plan {
        qpb,
        warps,
        unroll: 8,
        min_blocks: resident
            .min(4)
            .min(gpu.regs_per_sm / (threads * regs))
            .max(1),
        split,
    })
}

impl fmt::Display for AttentionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} attention batch={} seq={} q_heads={} kv_heads={} head_dim={} level={} dataflow={:?}",
            self.config,
            self.batch,
            self.seq,
            self.q_heads,
            self.kv_heads,
            self.head_dim,
            self.level,
            self.dataflow
        )?;
        for d in &self.decisions {
            writeln!(f, "  {:<16} {:<26} {}", d.what, d.value, d.why)?;
        }
        write!(
            f,
            "  summary          qpb={} n_reg={} n_shared={} slices={} splits={} chunk={} freq-ordered={} smem={}B grid={:?} block={}",
            self.qpb,
            self.n_reg,
            self.n_shared,
            self.group_slices,
            self.split.splits,
            self.split.chunk,
            self.frequency_ordered,
            self.split.launch.smem_bytes,
            self.split.launch.grid,
            self.split.launch.block
        )
    }
}

/// A generated translation unit with every attention entry point of a plan.
#[derive(Clone, Debug)]
pub struct AttentionSource {
    pub source: String,
    /// `vqa_quantize_*`: encodes new K/V rows.
    pub quantize: String,
    /// Token split: `vqa_attn_*`; group split: `vqa_scores_*`.
    pub attention: String,
    /// Group split only: `vqa_values_*`.
    pub values: Option<String>,
    /// `vqa_combine_*`: merges token-split partials (VQ and FP16 alike).
    pub combine: String,
    /// `attn_fp16_*`: the FP16 flash-decoding baseline.
    pub fp16: String,
}

/// Emits the instantiation of every kernel of `plan`: the templates inlined, one `Cfg` struct, and `extern "C"`
/// wrappers named from a hash of the configuration.
pub fn instantiate_attention(plan: &AttentionPlan) -> AttentionSource {
    let c = &plan.config;
    let cfg = format!(
        "  static constexpr int V = {}, BITS = {}, D = {}, QPB = {}, WARPS = {}, UNROLL = {};\n\
         \x20 static constexpr int N_SHARED = {}, N_REG = {}, S = {}, VFUSION = {};\n\
         \x20 static constexpr bool LUT = {}, PREFETCH = {}, PREROT = {};\n\
         \x20 static constexpr int GPB = {}, QWARPS = {};\n",
        c.v,
        c.b,
        plan.head_dim,
        plan.qpb,
        plan.warps,
        plan.unroll,
        plan.n_shared,
        plan.n_reg,
        plan.group_slices,
        plan.v_fusion.code(),
        plan.lut,
        plan.prefetch,
        plan.code_layout == CodeLayout::LutRotated,
        plan.quantize_groups_per_block,
        plan.quantize_warps
    );
    let f16cfg = format!(
        "  static constexpr int D = {}, QPB = {}, WARPS = {}, UNROLL = {};\n",
        plan.head_dim, plan.fp16.qpb, plan.fp16.warps, plan.fp16.unroll
    );
    let mut h = DefaultHasher::new();
    cfg.hash(&mut h);
    f16cfg.hash(&mut h);
    plan.min_blocks.hash(&mut h);
    plan.fp16.min_blocks.hash(&mut h);
    plan.dataflow.hash(&mut h);
    let key = format!("{:016x}", h.finish());

    let mut src = String::new();
    let _ = writeln!(
        src,
        "// vqllm generated: {} attention level {} head_dim {} ({:?}, {:?})",
        c, plan.level, plan.head_dim, plan.dataflow, plan.v_fusion
    );
    src.push_str(&expand(&["attention_vq.cuh", "kv_quantize.cuh"]));
    let _ = write!(
        src,
        "\nstruct Cfg_{key} {{\n{cfg}}};\nstruct F16Cfg_{key} {{\n{f16cfg}}};\n"
    );
    let nt = 32 * plan.warps;
    let mb = plan.min_blocks;

    let quantize = format!("vqa_quantize_{key}");
    let _ = write!(
        src,
        "extern \"C\" __global__ void __launch_bounds__({}) {quantize}(const __half* k_rows, const __half* v_rows, \
         const __half* k_cb, const __half* v_cb, unsigned char* k_codes, unsigned char* v_codes, const int* lens, int* lens_next, \
         int batch, int t_new, int kv_heads, int cap, int tokens_per_block) {{\n  kv_quantize_body<Cfg_{key}>(k_rows, v_rows, k_cb, \
         v_cb, k_codes, v_codes, lens, lens_next, batch, t_new, kv_heads, cap, tokens_per_block);\n}}\n",
        32 * plan.quantize_warps
    );
    let (attention, values) = match plan.dataflow {
        AttnDataflow::TokenSplit => {
            let name = format!("vqa_attn_{key}");
            let _ = write!(
                src,
                "extern \"C\" __global__ void __launch_bounds__({nt}, {mb}) {name}(const __half* q, const unsigned char* k_codes, \
                 const unsigned char* v_codes, const __half* k_cb, const __half* v_cb, const int* lens, __half* out, float* ws_o, \
                 float* ws_ml, int q_heads, int kv_heads, int cap, int chunk, float scale_log2) {{\n  vqa_fused_body<Cfg_{key}>(q, \
                 k_codes, v_codes, k_cb, v_cb, lens, out, ws_o, ws_ml, q_heads, kv_heads, cap, chunk, scale_log2);\n}}\n"
            );
            (name, None)
        }
        AttnDataflow::GroupSplit => {
            let scores = format!("vqa_scores_{key}");
            let values = format!("vqa_values_{key}");
            let _ = write!(
                src,
                "extern \"C\" __global__ void __launch_bounds__({nt}, {mb}) {scores}(const __half* q, const unsigned char* k_codes, \
                 const __half* k_cb, const int* lens, float* ws_sc, int q_heads, int kv_heads, int cap, int chunk, int ws_stride, \
                 float scale_log2) {{\n  vqa_scores_body<Cfg_{key}>(q, k_codes, k_cb, lens, ws_sc, q_heads, kv_heads, cap, chunk, \
                 ws_stride, scale_log2);\n}}\n"
            );
            let _ = write!(
                src,
                "extern \"C\" __global__ void __launch_bounds__({nt}, {mb}) {values}(const unsigned char* v_codes, const __half* v_cb, \
                 const int* lens, const float* ws_sc, __half* out, int q_heads, int kv_heads, int cap, int tile, int ws_stride) {{\n  \
                 vqa_values_body<Cfg_{key}>(v_codes, v_cb, lens, ws_sc, out, q_heads, kv_heads, cap, tile, ws_stride);\n}}\n"
            );
            (scores, Some(values))
        }
    };
    let combine = format!("vqa_combine_{key}");
    let _ = write!(
        src,
        "extern \"C\" __global__ void {combine}(const float* ws_o, const float* ws_ml, __half* out, int splits, int q_heads, int head_dim) {{\n  \
         attn_combine_body(ws_o, ws_ml, out, splits, q_heads, head_dim);\n}}\n"
    );
    let fp16 = format!("attn_fp16_{key}");
    let _ = write!(
        src,
        "extern \"C\" __global__ void __launch_bounds__({}, {}) {fp16}(const __half* q, const __half* k, const __half* v, \
         const int* lens, __half* out, float* ws_o, float* ws_ml, int q_heads, int kv_heads, int cap, int chunk, float scale_log2) {{\n  \
         attn_fp16_body<F16Cfg_{key}>(q, k, v, lens, out, ws_o, ws_ml, q_heads, kv_heads, cap, chunk, scale_log2);\n}}\n",
        32 * plan.fp16.warps,
        plan.fp16.min_blocks
    );
    AttentionSource {
        source: src,
        quantize,
        attention,
        values,
        combine,
        fp16,
    }
}

/// The values kernel's token tile (its `tile` argument).
pub const fn values_tile() -> u32 {
    VALUES_TILE
}

/// `log2(e) / sqrt(head_dim)`: the kernels' `scale_log2` argument for standard attention scaling.
pub fn scale_log2(head_dim: usize) -> f32 {
    (std::f64::consts::LOG2_E / (head_dim as f64).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu() -> GpuSpec {
        GpuSpec::for_arch("sm_90").unwrap()
    }

    fn kv(name: &str) -> VqConfig {
        VqConfig::preset(name).unwrap()
    }

    #[test]
    fn every_level_instantiates_for_cq2_cq4_and_both_head_dims() {
        for preset in ["cq2", "cq4"] {
            for hd in [64, 128] {
                for level in Level::LADDER.iter().copied().chain([Level::Auto]) {
                    let p = AttentionPlan::new(&kv(preset), 16, 4096, 32, 32, hd, level, &gpu())
                        .unwrap_or_else(|e| panic!("{preset} hd={hd} {level}: {e}"));
                    let s = instantiate_attention(&p);
                    for name in [&s.quantize, &s.attention, &s.combine, &s.fp16] {
                        assert!(
                            s.source.contains(&format!(" {name}(")),
                            "{preset} {hd} {level}: {name} missing"
                        );
                    }
                    assert_eq!(s.values.is_some(), p.dataflow == AttnDataflow::GroupSplit);
                    if let Some(v) = &s.values {
                        assert!(s.source.contains(&format!(" {v}(")));
                    }
                    assert!(
                        !s.source.contains("#include \""),
                        "templates must be inlined"
                    );
                    assert!(p.split.launch.smem_bytes <= gpu().smem_per_block_optin);
                    assert_eq!(p.split.launch.block, 32 * lut_warps(p.level));
                }
            }
        }
    }

    #[test]
    fn levels_select_the_documented_kernels() {
        let c = kv("cq2");
        let g = gpu();
        let p = |l| AttentionPlan::new(&c, 4, 2048, 32, 8, 128, l, &g).unwrap();
        let gc = p(Level::Gc);
        assert_eq!((gc.n_shared, gc.n_reg, gc.lut), (0, 0, false));
        assert_eq!(p(Level::Sc).n_shared, 256);
        let o1 = p(Level::O1);
        assert!(o1.n_shared > 0 && o1.n_reg == 0);
        assert!(p(Level::O2).n_reg > 0);
        let o3 = p(Level::O3);
        assert_eq!(o3.dataflow, AttnDataflow::GroupSplit);
        assert!(o3.group_slices > 1);
        assert_eq!(p(Level::O4).v_fusion, VFusion::Register);
        let lut = p(Level::Lut);
        assert!(lut.lut && lut.v_fusion == VFusion::Histogram);
        assert_eq!(p(Level::Auto).level, Level::Lut);
        // Tiny caches: auto picks the shared-codebook kernel; from LUT_MIN_TOKENS on the LUT kernel.
        let small = AttentionPlan::new(&c, 1, 512, 32, 8, 128, Level::Auto, &g).unwrap();
        assert_eq!(small.level, Level::Sc);
        let b1 = AttentionPlan::new(&c, 1, 1024, 32, 8, 128, Level::Auto, &g).unwrap();
        assert_eq!(b1.level, Level::Lut);
        // GQA: 4 q heads per kv head share code loads.
        assert_eq!(gc.qpb, 4);
        assert_eq!(lut.qpb, 2);
        // v = 8 needs 7 shuffles: O4 falls back to shared memory.
        let c8: VqConfig = "vq<8,8,1>:kv".parse().unwrap();
        let o4 = AttentionPlan::new(&c8, 4, 2048, 32, 32, 128, Level::O4, &g).unwrap();
        assert_eq!(o4.v_fusion, VFusion::SharedMemory);
    }

    #[test]
    fn lut_split_rule_and_override() {
        let g = gpu();
        let plan = |name: &str, b, t| {
            AttentionPlan::new(&kv(name), b, t, 32, 32, 128, Level::Lut, &g).unwrap()
        };
        // Busy SMs: one split (no combine); few pairs x 8 warps: split while chunks stay >= 1024 tokens.
        assert_eq!(plan("cq2", 16, 4096).split.splits, 1);
        assert_eq!(plan("cq4", 16, 4096).split.splits, 1);
        assert_eq!(plan("cq2", 1, 1024).split.splits, 1);
        assert_eq!(plan("cq4", 4, 4096).split.splits, 1);
        assert_eq!(plan("cq4", 2, 4096).split.splits, 2);
        assert_eq!(plan("cq2", 1, 4096).split.splits, 4);
        // Chunks never exceed LUT_MAX_CHUNK tokens.
        let long = plan("cq4", 1, 40_000);
        assert!(
            long.split.chunk <= LUT_MAX_CHUNK && long.split.splits * long.split.chunk >= 40_000
        );
        assert_eq!(plan("cq2", 16, 4096).split.launch.block, 512);
        assert_eq!(plan("cq4", 16, 4096).split.launch.block, 512);
        // Prefetch only where the resident blocks' bytes fit a quarter of L2.
        assert!(plan("cq4", 1, 1024).prefetch);
        assert!(!plan("cq2", 16, 4096).prefetch);

        // Override: chunk rounded to 64, workspace sized for the partials, shared memory for the scores.
        let p = plan("cq2", 16, 4096).with_token_splits(3, &g).unwrap();
        assert_eq!((p.split.splits, p.split.chunk), (3, 1408));
        assert_eq!(p.split.launch.grid.2, 3);
        assert_eq!(p.workspace.partial_o, 16 * 32 * 3 * 128);
        assert_eq!(p.split.launch.smem_bytes, p.smem_fixed() + 4 * 1408);
        assert_eq!(p.split_for(4096).splits, 3);
        let one = plan("cq2", 16, 4096).with_token_splits(1, &g).unwrap();
        assert_eq!((one.split.splits, one.workspace.partial_o), (1, 0));
        // Group-split levels have no token split to override.
        let o3 = AttentionPlan::new(&kv("cq2"), 16, 4096, 32, 32, 128, Level::O3, &g).unwrap();
        assert!(matches!(
            o3.with_token_splits(2, &g),
            Err(CodegenError::Invalid(_))
        ));
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let g = gpu();
        let c = kv("cq2");
        assert!(matches!(
            AttentionPlan::new(&c, 1, 128, 30, 8, 128, Level::Lut, &g),
            Err(CodegenError::Invalid(_))
        ));
        assert!(matches!(
            AttentionPlan::new(&c, 1, 128, 32, 32, 96, Level::Lut, &g),
            Err(CodegenError::Unsupported(_))
        ));
        assert!(matches!(
            AttentionPlan::new(&c, 0, 128, 32, 32, 128, Level::Lut, &g),
            Err(CodegenError::Invalid(_))
        ));
        let w = VqConfig::preset("aqlm-2x8").unwrap();
        assert!(matches!(
            AttentionPlan::new(&w, 1, 128, 32, 32, 128, Level::Lut, &g),
            Err(CodegenError::Invalid(_))
        ));
        let big_b: VqConfig = "vq<4,10,1>:kv".parse().unwrap();
        assert!(matches!(
            AttentionPlan::new(&big_b, 1, 128, 32, 32, 128, Level::Lut, &g),
            Err(CodegenError::Unsupported(_))
        ));
    }

    #[test]
    fn lut_rotated_layout_permutes_each_row_and_round_trips() {
        for groups in [8usize, 16, 32, 64] {
            for t in 0..130 {
                let mut seen = vec![false; groups];
                for g in 0..groups {
                    let b = CodeLayout::LutRotated.byte_of(groups, t, g);
                    assert!(
                        b < groups && !seen[b],
                        "groups {groups} token {t}: byte {b} twice"
                    );
                    seen[b] = true;
                    // A chunk's codes stay in their own 16-byte chunk (8-byte segment for 8 groups).
                    assert_eq!(b / groups.min(16), g / groups.min(16));
                    assert_eq!(CodeLayout::Logical.byte_of(groups, t, g), g);
                }
            }
            // Some token slots of a warp step are rotated: the layout is not the identity.
            assert!((0..64)
                .any(|t| (0..groups).any(|g| CodeLayout::LutRotated.byte_of(groups, t, g) != g)));
            let (cap, rows) = (70usize, 3usize);
            let codes: Vec<u8> = (0..rows * cap * groups)
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let mut x = codes.clone();
            CodeLayout::LutRotated.permute(&mut x, cap, groups, true);
            assert_ne!(x, codes);
            CodeLayout::LutRotated.permute(&mut x, cap, groups, false);
            assert_eq!(x, codes);
        }
    }

    #[test]
    fn the_lut_level_reads_rotated_codes_and_the_others_logical_ones() {
        let g = gpu();
        let cq4 = kv("cq4");
        let lut = AttentionPlan::new(&cq4, 16, 4096, 32, 32, 128, Level::Lut, &g).unwrap();
        assert_eq!(lut.code_layout, CodeLayout::LutRotated);
        assert!(instantiate_attention(&lut).source.contains("PREROT = true"));
        let lut = lut.with_code_layout(CodeLayout::Logical).unwrap();
        assert!(instantiate_attention(&lut)
            .source
            .contains("PREROT = false"));
        let sc = AttentionPlan::new(&cq4, 16, 4096, 32, 32, 128, Level::Sc, &g).unwrap();
        assert_eq!(sc.code_layout, CodeLayout::Logical);
        assert!(sc.with_code_layout(CodeLayout::LutRotated).is_err());
    }

    #[test]
    fn smem_layout_matches_the_template_formula() {
        // cq2, head_dim 128, LUT, one q head: red 128 + q 512 + table 256*64*4 (rows padded to 64 floats for the
        // one-PRMT address) + fin 8*128*4.
        let i = SmemInputs {
            lut: true,
            v_fusion: VFusion::Histogram,
            qpb: 1,
            d: 128,
            v: 4,
            e: 256,
            slices: 1,
            n_shared: 0,
            warps: 8,
        };
        assert_eq!(VqaSmem::of(&i).fixed, 128 + 512 + 65536 + 4096);
        // Two q heads (GQA) keep unpadded 32-float rows: 2 tables of 32 KiB.
        let i2 = SmemInputs { qpb: 2, ..i };
        assert_eq!(VqaSmem::of(&i2).fixed, 256 + 1024 + 65536 + 8192);
        // cq4 (G = 64): table rows of 64 floats, 4 parts.
        let i = SmemInputs { v: 2, ..i };
        assert_eq!(VqaSmem::of(&i).fixed, 128 + 512 + 65536 + 2048);
    }

    #[test]
    fn splits_cover_the_sequence_and_respect_shared_memory() {
        let g = gpu();
        for (batch, seq) in [
            (1usize, 4096usize),
            (16, 4096),
            (1, 128),
            (4, 100_000),
            (16, 1),
        ] {
            for level in Level::LADDER {
                let p = AttentionPlan::new(&kv("cq2"), batch, seq, 32, 32, 128, level, &g).unwrap();
                let s = p.split;
                assert!(s.chunk.is_multiple_of(64) && s.chunk >= 64);
                assert!(
                    s.splits as usize * s.chunk as usize >= seq,
                    "{level} {batch} {seq}"
                );
                assert!((s.splits as usize - 1) * (s.chunk as usize) < seq);
                assert!(s.launch.smem_bytes <= g.smem_per_block_optin);
                let f = &p.fp16.split;
                assert!(f.splits as usize * f.chunk as usize >= seq);
                // A longer run-time sequence gets more splits with the same chunk.
                assert_eq!(p.split_for(seq), s);
                let longer = p.split_for(seq * 3);
                assert_eq!(longer.chunk, s.chunk);
                assert!(longer.splits as usize * longer.chunk as usize >= seq * 3);
            }
        }
    }

    #[test]
    fn batch_16_uses_one_chunk_per_sequence_for_lut() {
        // 512 (sequence, head) pairs already fill 132 SMs; splitting would only repeat the codebook work.
        let p = AttentionPlan::new(&kv("cq2"), 16, 4096, 32, 32, 128, Level::Lut, &gpu()).unwrap();
        assert!(p.split.splits <= 2, "{}", p);
        let p1 = AttentionPlan::new(&kv("cq2"), 1, 4096, 32, 32, 128, Level::Lut, &gpu()).unwrap();
        assert!(
            p1.split.splits > 1,
            "batch 1 must split tokens to fill the GPU"
        );
    }

    #[test]
    fn quantize_launch_covers_all_rows() {
        let g = gpu();
        let p = AttentionPlan::new(&kv("cq2"), 16, 4096, 32, 32, 128, Level::Lut, &g).unwrap();
        for t_new in [1usize, 7, 4096] {
            let (l, tpb) = p.quantize_launch(t_new, &g);
            assert!(l.grid.1 as usize * tpb as usize >= 16 * t_new);
            assert_eq!(l.grid.0, 32 * 4);
            assert_eq!(l.smem_bytes, 8 * 256 * 4 * 2);
        }
    }

    #[test]
    fn display_lists_decisions() {
        let p = AttentionPlan::new(&kv("cq4"), 16, 4096, 32, 32, 128, Level::O3, &gpu()).unwrap();
        let s = p.to_string();
        for key in [
            "dataflow",
            "group slices",
            "n_shared",
            "workspace",
            "fp16 baseline",
        ] {
            assert!(s.contains(key), "{s}");
        }
    }

    // ---- CPU models of the LUT kernel's mapping and numerics (transliterations of attention_vq.cuh) ----

    fn funnelshift_r(lo: u32, hi: u32, s: u32) -> u32 {
        ((((hi as u64) << 32) | lo as u64) >> (s & 31)) as u32
    }

    /// `vqa_rotate<SEG>` as written in the template.
    fn rotate(w: [u32; 4], rot: u32, seg: u32) -> [u32; 4] {
        let s = (rot & 3) * 8;
        let [mut a0, mut a1, mut a2, mut a3] = w;
        if seg == 16 {
            if rot & 4 != 0 {
                (a0, a1, a2, a3) = (a1, a2, a3, a0);
            }
            if rot & 8 != 0 {
                (a0, a1, a2, a3) = (a2, a3, a0, a1);
            }
            [
                funnelshift_r(a0, a1, s),
                funnelshift_r(a1, a2, s),
                funnelshift_r(a2, a3, s),
                funnelshift_r(a3, a0, s),
            ]
        } else {
            if rot & 4 != 0 {
                (a0, a1, a2, a3) = (a1, a0, a3, a2);
            }
            [
                funnelshift_r(a0, a1, s),
                funnelshift_r(a1, a0, s),
                funnelshift_r(a2, a3, s),
                funnelshift_r(a3, a2, s),
            ]
        }
    }

    /// `VqaLutLane`: (rot, slot, c, column of rotated code j).
    fn lut_lane(g: u32, lane: u32) -> (u32, u32, u32, Vec<u32>) {
        let geo = LutGeometry::of(g as usize);
        let (seg, cpl, rep) = (geo.seg as u32, geo.cpl as u32, geo.rep as u32);
        let (c, slot, colbase) = if g >= 32 {
            (lane % cpl, lane / cpl, 16 * (lane % cpl))
        } else {
            (0, lane, (lane % rep) * g)
        };
        let rot = geo.rot(slot as usize, c as usize) as u32;
        let cols = (0..seg).map(|j| colbase + (j + rot) % seg).collect();
        (rot, slot, c, cols)
    }

    #[test]
    fn lut_lane_mapping_reads_every_code_once_without_bank_conflicts() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for g in [8u32, 16, 32, 64] {
            let geo = LutGeometry::of(g as usize);
            let (seg, tpc) = (geo.seg as u32, geo.tpc as u32);
            let row = lut_row(g, 256, 1);
            // One warp step: 512 bytes of codes = rows of g codes starting at token 0.
            let bytes: Vec<u8> = (0..512).map(|_| rng.random()).collect();
            let mut seen = vec![0u32; 512];
            for j in 0..16u32 {
                let mut banks = std::collections::HashSet::new();
                for lane in 0..32u32 {
                    let (rot, slot, c, cols) = lut_lane(g, lane);
                    let chunk = &bytes[(lane * 16) as usize..(lane * 16 + 16) as usize];
                    let w: [u32; 4] = std::array::from_fn(|i| {
                        u32::from_le_bytes(chunk[4 * i..4 * i + 4].try_into().unwrap())
                    });
                    let r = rotate(w, rot, seg);
                    let code = (r[(j / 4) as usize] >> (8 * (j % 4))) & 0xff;
                    // Which original byte is it, and is the column that byte's group?
                    let seg_base = (j / seg) * seg;
                    let orig = lane * 16 + seg_base + (j % seg + rot) % seg;
                    assert_eq!(code, bytes[orig as usize] as u32, "G={g} lane={lane} j={j}");
                    seen[orig as usize] += 1;
                    let token = orig / g;
                    let group = orig % g;
                    assert_eq!(token, slot * tpc + j / seg);
                    assert_eq!(
                        group,
                        if g >= 32 {
                            16 * c + (j + rot) % 16
                        } else {
                            (j + rot) % seg
                        }
                    );
                    let col = cols[(j % seg) as usize];
                    assert_eq!(col % g, group, "column holds the group (or a replica)");
                    // Address = code * row + col floats: its bank must be unique in this step.
                    assert!(
                        banks.insert((code * row + col) % 32),
                        "G={g} j={j}: bank conflict"
                    );
                }
            }
            assert!(
                seen.iter().all(|&n| n == 1),
                "G={g}: every code exactly once"
            );
        }
    }

    /// The LUT algorithm on the CPU exactly as the kernels run it (f32 table, per-chunk softmax in the log2
    /// domain, u32 fixed-point histogram scaled by 2^31 / l, combine over chunks) against f64 attention.
    #[test]
    fn lut_fixed_point_attention_matches_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        for (v, d, t, chunk) in [
            (4usize, 128usize, 1000usize, 384usize),
            (2, 64, 777, 256),
            (8, 128, 300, 300),
        ] {
            let g = d / v;
            let e = 256usize;
            let cb = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f32> {
                (0..g * e * v)
                    .map(|_| half::f16::from_f32(rng.random_range(-2.0f32..2.0)).to_f32())
                    .collect()
            };
            let (ck, cv) = (cb(&mut rng), cb(&mut rng));
            let q: Vec<f32> = (0..d)
                .map(|_| half::f16::from_f32(rng.random_range(-1.5f32..1.5)).to_f32())
                .collect();
            let kc: Vec<u8> = (0..t * g).map(|_| rng.random()).collect();
            let vc: Vec<u8> = (0..t * g).map(|_| rng.random()).collect();
            let entry = |c: &[f32], grp: usize, ent: usize, i: usize| c[(grp * e + ent) * v + i];
            // Reference in f64.
            let sc = 1.0 / (d as f64).sqrt();
            let s: Vec<f64> = (0..t)
                .map(|tok| {
                    (0..g)
                        .map(|grp| {
                            (0..v)
                                .map(|i| {
                                    q[grp * v + i] as f64
                                        * entry(&ck, grp, kc[tok * g + grp] as usize, i) as f64
                                })
                                .sum::<f64>()
                        })
                        .sum::<f64>()
                        * sc
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let l: f64 = p.iter().sum();
            let reference: Vec<f64> = (0..d)
                .map(|ch| {
                    (0..t)
                        .map(|tok| {
                            p[tok]
                                * entry(&cv, ch / v, vc[tok * g + ch / v] as usize, ch % v) as f64
                        })
                        .sum::<f64>()
                        / l
                })
                .collect();
            // Kernel model.
            let sl = scale_log2(d);
            let table: Vec<f32> = (0..e * g)
                .map(|i| {
                    let (ent, grp) = (i / g, i % g);
                    let mut dot = 0f32;
                    for i in 0..v {
                        dot = (q[grp * v + i] * sl).mul_add(entry(&ck, grp, ent, i), dot);
                    }
                    dot
                })
                .collect();
            let mut parts = Vec::new(); // (m, l, o[d])
            for t0 in (0..t).step_by(chunk) {
                let t1 = (t0 + chunk).min(t);
                let sco: Vec<f32> = (t0..t1)
                    .map(|tok| {
                        (0..g)
                            .map(|grp| table[kc[tok * g + grp] as usize * g + grp])
                            .sum()
                    })
                    .collect();
                let mx = sco.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let pk: Vec<f32> = sco.iter().map(|x| (x - mx).exp2()).collect();
                let lk: f32 = pk.iter().sum();
                let fs = 2147483648.0f32 / lk;
                let mut hist = vec![0u32; e * g];
                for (k, tok) in (t0..t1).enumerate() {
                    let pfix = (pk[k] * fs).round() as u32;
                    for grp in 0..g {
                        let h = &mut hist[vc[tok * g + grp] as usize * g + grp];
                        *h = h.checked_add(pfix).expect("fixed-point histogram overflow");
                    }
                }
                let o: Vec<f32> = (0..d)
                    .map(|ch| {
                        let (grp, i) = (ch / v, ch % v);
                        let acc: f32 = (0..e)
                            .map(|ent| hist[ent * g + grp] as f32 * entry(&cv, grp, ent, i))
                            .sum();
                        acc * (lk * 4.656_613e-10)
                    })
                    .collect();
                parts.push((mx, lk, o));
            }
            let mm = parts.iter().map(|p| p.0).fold(f32::NEG_INFINITY, f32::max);
            let (mut num, mut den) = (vec![0f32; d], 0f32);
            for (m, l, o) in &parts {
                let w = (m - mm).exp2();
                den += w * l;
                for (n, x) in num.iter_mut().zip(o) {
                    *n += w * x;
                }
            }
            let out: Vec<f64> = num.iter().map(|x| (x / den) as f64).collect();
            let err: f64 = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(
                err / norm < 1e-4,
                "v={v} d={d}: relative error {}",
                err / norm
            );
        }
    }
}
