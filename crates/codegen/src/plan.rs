//! Plans for the VQ weight kernels: which kernel, which optimisation level, every parameter, and why.
//!
//! The levels follow the paper's Table IV, plus the lookup-table GeMV of DESIGN.md section 8:
//! - `Gc`:  codebook read from global memory inside the dequantization loop;
//! - `Sc`:  the whole codebook staged in shared memory per block (when it fits);
//! - `O1`:  codebook cache, shared tier: the `n_shared` most frequent entries (after the offline frequency
//!   permutation) in shared memory, the rest from global memory;
//! - `O2`:  O1 + register tier: the `n_reg` hottest entries held one per lane, fetched with shuffles;
//! - `O3`:  O2 + codebook-centric dataflow: the reduction axis is split `s` ways (global reduction) so each block
//!   loads its codebook set once and the grid fills the GPU;
//! - `O4`:  O3 + register-level fusion. The tile layout permutes the reduction index so each lane decodes exactly the
//!   `mma` fragment elements it needs (no shuffles, no shared-memory exchange); the CUDA-core GeMV needs no
//!   exchange at all. Both kernels use this layout at every level, so O4 = O3 in practice;
//! - `Lut`: lookup-table GeMV (batch 1, one codebook set per tensor).

use crate::error::{CodegenError, Result};
use crate::gpu_spec::GpuSpec;
use crate::layout::TileGeometry;
use serde::{Deserialize, Serialize};
use std::fmt;
use vqllm_vq::{CodebookKind, Scope, VqConfig};

/// The computation a kernel performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Gemv,
    Gemm,
}

/// `__launch_bounds__` minimum blocks per SM of the row-block GeMVs. LUT: 3 blocks of 8 warps (<= 85 registers), 2
/// of 16 or 1 of 32 (<= 64 registers); its 64-128 KiB table allows no more. Replica: up to 32 warps and 3 blocks per
/// SM (8 warps: <= 80 registers, of which 32 hold the lane's activations and 4 a row block's next code word; a
/// staged set of 256-entry rows, 64 KiB, allows no more than 3; shared memory may allow fewer, see the planner). At
/// 4 blocks (64 registers) the kernel spilled and took 32.5 us instead of 26.0 on gptvq2 8192x22016 (perf-notes v0.28).
pub fn row_block_min_blocks(kernel: KernelKind, warps: u32) -> u32 {
    match (kernel, warps) {
        (KernelKind::Replica, w) => (32 / w.max(1)).clamp(1, 3),
        (_, 32..) => 1,
        (_, 16..) => 2,
        _ => 3,
    }
}

/// Floats per row of the LUT GeMV table for k tiles of `tg` groups (kernels/vq_lut_gemv.cuh `vq_lut_row`): 8-bit
/// codes with 32 groups outside per-tile codebooks pad the row to 64 floats, so one PRMT forms the lookup address.
pub fn lut_row_floats(tg: u32, bits: u32, tile_scope: bool) -> u32 {
    if bits == 8 && (tg == 64 || (tg == 32 && !tile_scope)) {
        64
    } else {
        tg
    }
}

/// Optimisation level (paper Table IV, plus `Lut` and `Replica`). `Auto` lets the heuristics choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Gc,
    Sc,
    O1,
    O2,
    O3,
    O4,
    Lut,
    /// Batch 1: the whole codebook set in shared memory with one copy per lane of a load wavefront.
    Replica,
    /// Batch 1, codebooks too large for shared memory: one chunk per block, codes re-packed by chunk (`sorted`).
    Sorted,
    Auto,
}

impl Level {
    /// The ablation ladder in order (every op: weight kernels and decode attention).
    pub const LADDER: [Level; 7] = [
        Level::Gc,
        Level::Sc,
        Level::O1,
        Level::O2,
        Level::O3,
        Level::O4,
        Level::Lut,
    ];

    /// The weight kernels' levels: the ladder plus `Replica` and `Sorted` (batch-1 GeMVs, no attention
    /// counterpart).
    pub const WEIGHT_LEVELS: [Level; 9] = {
        let mut levels = [Level::Sorted; 9];
        let mut i = 0;
        while i < Self::LADDER.len() {
            levels[i] = Self::LADDER[i];
            i += 1;
        }
        levels[Self::LADDER.len()] = Level::Replica;
        levels
    };

    pub fn parse(s: &str) -> Result<Level> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "gc" => Level::Gc,
            "sc" => Level::Sc,
            "o1" => Level::O1,
            "o2" => Level::O2,
            "o3" => Level::O3,
            "o4" => Level::O4,
            "lut" => Level::Lut,
            "rep" | "replica" => Level::Replica,
            "srt" | "sorted" => Level::Sorted,
            "auto" | "best" => Level::Auto,
            _ => {
                return Err(CodegenError::Invalid(format!(
                    "unknown level `{s}` (gc, sc, o1, o2, o3, o4, lut, rep, srt, auto)"
                )))
            }
        })
    }

    fn rank(self) -> u8 {
        match self {
            Level::Gc => 0,
            Level::Sc => 1,
            Level::O1 => 2,
            Level::O2 => 3,
            Level::O3 => 4,
            Level::O4 | Level::Lut | Level::Replica | Level::Sorted | Level::Auto => 5,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Level::Gc => "GC",
            Level::Sc => "SC",
            Level::O1 => "O1",
            Level::O2 => "O2",
            Level::O3 => "O3",
            Level::O4 => "O4",
            Level::Lut => "LUT",
            Level::Replica => "REP",
            Level::Sorted => "SRT",
            Level::Auto => "auto",
        };
        f.write_str(s)
    }
}

/// Which kernel template runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// `kernels/vq_gemv.cuh`: CUDA-core dequantize + FMA, batch <= 8.
    Dequant,
    /// `kernels/vq_lut_gemv.cuh`: lookup-table GeMV, batch 1.
    Lut,
    /// `kernels/vq_lut_large.cuh`: lookup-table GeMV for batch 1 with codebooks too large for `Lut` (aqlm3): one
    /// fp16 table per (k tile, lane column, stage).
    LutLarge,
    /// `kernels/vq_replica_gemv.cuh`: batch-1 GeMV reading V-wide entries from bank-spread copies of the
    /// codebook set in shared memory (per-tile codebooks, whose LUT table would not be amortised).
    Replica,
    /// `kernels/vq_mma.cuh`: tensor cores (batch 16 GeMV, GeMM).
    Mma,
    /// `kernels/vq_dequant.cuh` into an fp16 scratch matrix, then cuBLAS: large-batch GeMM.
    DequantGemm,
    /// `kernels/vq_sorted_gemv.cuh`: batch-1 GeMV, one codebook chunk per block in shared memory, codes re-packed by
    /// chunk (`crate::sorted`).
    Sorted,
    /// `kernels/vq_e8p_lut.cuh`: batch-1 GeMV for E8P lattice codes: two fp16 tables per input group, two table reads
    /// per code instead of the bit-operation decode (codes re-coded at upload, `crate::e8p_lut`).
    E8pLut,
}

impl KernelKind {
    /// The batch-1 GeMVs beyond the paper's ladder (lookup tables, replicated codebooks): no codebook cache tiers,
    /// no O3 split.
    pub fn is_batch1(self) -> bool {
        matches!(
            self,
            KernelKind::Lut
                | KernelKind::LutLarge
                | KernelKind::Replica
                | KernelKind::Sorted
                | KernelKind::E8pLut
        )
    }
}

/// One decision of the planner with its reason, for `vqllm plan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub what: String,
    pub value: String,
    pub why: String,
}

/// User overrides for any heuristic choice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    pub n_reg: Option<u32>,
    pub n_shared: Option<u32>,
    pub split: Option<u32>,
    pub warps: Option<u32>,
    /// LUT and replica GeMVs: 8-row blocks per warp per chunk (LUT) or code piece (replica); mma kernel: 8-row blocks
    /// per warp (WN). 1, 2, 4 or 8.
    #[serde(default)]
    pub rows_per_warp: Option<u32>,
    pub kernel: Option<KernelKind>,
    /// Mma kernel: copies of each staged codebook entry (1, 2, 4 or 8).
    pub cb_copies: Option<u32>,
    /// Mma kernel: activation fragments hoisted out of the row-block loop.
    pub x_hoist: Option<bool>,
    /// LUT-large GeMV: code chunks staged by TMA copies (sm_90+) instead of per-lane loads.
    #[serde(default)]
    pub code_tma: Option<bool>,
    /// Mma kernel: load the next k tile's codes and activations during this tile's compute (batch <= 16).
    #[serde(default)]
    pub pipe: Option<bool>,
    /// LUT GeMV: chunks of codes in flight per warp (2 to 8).
    #[serde(default)]
    pub in_flight: Option<u32>,
    /// E8P LUT GeMV: groups of each unit whose codes are decoded by bit operations instead of read from the tables
    /// (0 to the unit size).
    #[serde(default)]
    pub decode_groups: Option<u32>,
    /// Registers per thread of the kernel without a register tier, read from a first compile (slack analysis);
    /// a per-kernel estimate is used when absent.
    pub base_registers: Option<u32>,
}

/// Resource usage of a compiled kernel, used to refine slack-based decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompiledUsage {
    pub registers: u32,
    pub spill_bytes: u32,
}

/// A complete plan for one VQ weight op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: VqConfig,
    pub op: Op,
    pub m: usize,
    /// Reduction size (input features).
    pub k: usize,
    /// Output features (weight rows).
    pub n: usize,
    pub level: Level,
    pub kernel: KernelKind,
    pub geometry: (u32, u32, u32),
    pub warps: u32,
    /// LUT: row blocks per warp.
    pub rows_per_warp: u32,
    /// Mma: m16 slices per block and row blocks per warp.
    pub mt: u32,
    pub wn: u32,
    /// LUT: row chunks (8·warps·rows_per_warp rows each) per block.
    pub lut_chunks: u32,
    /// Compile-time batch for the CUDA-core GeMV.
    pub m_tile: u32,
    pub split: u32,
    pub tiles_per_split: u32,
    pub n_reg: u32,
    pub n_shared: u32,
    /// Mma kernel: copies of each staged 16-byte codebook entry (lane l reads copy l % copies: fewer bank conflicts).
    #[serde(default = "one")]
    pub cb_copies: u32,
    /// Mma kernel: vector slots outer, row blocks inner (activation fragments loaded once per slot).
    #[serde(default)]
    pub x_hoist: bool,
    /// Mma kernel: the next k tile's codes and activations loaded into registers during this tile's compute (one m16
    /// slice whose activation tile is at most 4 16-byte pieces per thread).
    #[serde(default)]
    pub mma_pipe: bool,
    /// LUT-large GeMV: code chunks staged by TMA copies (else per-lane loads).
    #[serde(default)]
    pub code_tma: bool,
    /// LUT-large GeMV: the stage's codebook is copied into shared memory for the table build (else read through L1).
    #[serde(default)]
    pub cb_stage: bool,
    /// LUT GeMV: chunks of codes in flight per warp (a ring of buffers; the rest of the kernels ignore it).
    #[serde(default = "two")]
    pub in_flight: u32,
    /// E8P LUT GeMV: groups per unit decoded by bit operations rather than looked up (the rest of the kernels ignore
    /// it).
    #[serde(default)]
    pub e8p_decode: u32,
    /// Codes are rewritten in descending-frequency order (needed by O1 and above).
    pub frequency_ordered: bool,
    pub smem_bytes: u32,
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub decisions: Vec<Decision>,
}

const SMEM_RESERVED_PER_BLOCK: u32 = 1024;
/// LUT GeMV: row blocks of codes in flight per warp (in chunks of `rows_per_warp`, at least 2 chunks). On an H100,
/// aqlm-2x8 at 32 warps x 1 row block, 4096x11008 / 8192x22016: 2 / 3 / 4 / 6 chunks took 10.74 / 24.58,
/// 10.51 / 22.36, 10.35 / 22.35 and 11.21 / 22.54 us (perf-notes v0.22).
const LUT_IN_FLIGHT: u32 = 4;
/// Whether the auto level takes the sorted GeMV where it runs (batch 1, codebooks of 2^13 entries or more): on an H100
/// aqlm-1x16 at 4096x11008 / 8192x22016 took 31.0 / 76.6 us against the L1-read dequant GeMV's 48.2 / 187.1 (v0.19).
const AUTO_SORTED: bool = true;
/// Fewest weight rows for which the auto level takes the E8P LUT GeMV at batch 1: a block builds 12288 x 8 table
/// entries per unit, which the rows' lookups must amortise.
const AUTO_E8P_LUT_MIN_ROWS: usize = 2048;
/// E8P LUT GeMV: eighths of each unit's groups whose codes are decoded rather than looked up (where the abs-table
/// copies fit). On an H100, quip4 at 4096x11008 / 8192x22016 with 0 / 1 / 2 / 3 / 4 / 5 of 8 groups decoded took
/// 20.6 / 50.9, 21.1 / 49.5, 21.5 / 49.0, 20.9 / 48.8, 21.9 / 52.5, 22.4 / 55.6 us, and with the radix-16 transform
/// 2 / 3 took 17.84 / 45.90 and 17.66 / 45.80 us (perf-notes v0.24).
const AUTO_E8P_DECODE_EIGHTHS: u32 = 3;
/// Mma kernel without a staged codebook: input columns per block along the reduction axis.
const MMA_K_PER_BLOCK: u32 = 768;
/// Registers a thread of the pipelined batch <= 16 mma kernel holds (NVRTC sm_90: 108-142 at 4 warps, 116 at 8).
const MMA_PIPE_REGS: u32 = 128;
/// Registers of the 8-warp batch <= 16 mma kernel with 4096-entry codebooks through L1 (aqlm3: the 255 cap).
const MMA_WIDE_L1_REGS: u32 = 255;
/// Largest codebook the batch <= 16 mma kernel treats as cheap to read (4096 entries, aqlm3; not aqlm-1x16's 65536).
const MMA_WAVE_MAX_ENTRIES: u32 = 4096;

/// The plan of the E8P LUT GeMV (`kernels/vq_e8p_lut.cuh`), once [`Plan::new`] has chosen it; `u` is the unit size
/// that fits the device's shared memory next to the buffer of an in-kernel Hadamard transform of `hadamard`
/// columns, `decisions` the kernel choice so far.
#[allow(clippy::too_many_arguments)]
fn e8p_lut_plan(
    config: &VqConfig,
    m: usize,
    k: usize,
    n: usize,
    level: Level,
    gpu: &GpuSpec,
    ov: &Overrides,
    u: u32,
    hadamard: Option<usize>,
    mut decisions: Vec<Decision>,
) -> Result<Plan> {
    let unsupported = [
        (ov.n_reg.is_some(), "--n-reg"),
        (ov.n_shared.is_some(), "--n-shared"),
        (ov.split.is_some(), "--split"),
        (ov.rows_per_warp.is_some(), "--rows-per-warp"),
        (ov.cb_copies.is_some(), "--cb-copies"),
        (ov.x_hoist.is_some(), "--x-hoist"),
        (ov.code_tma.is_some(), "--tma"),
        (ov.pipe.is_some(), "--pipe"),
        (ov.in_flight.is_some(), "--in-flight"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(CodegenError::Unsupported(format!(
            "{flag} is not a parameter of the E8P LUT GeMV (it takes --warps 8, 16 or 32 and --decode-groups)"
        )));
    }
    let warps = match ov.warps {
        // 16 warps: on an H100, quip4 at 4096x11008 / 8192x22016 took 21.96 / 52.97 us against 22.82 / 53.49 at 32
        // (3 alternating rounds) and 24.2 / 58.3 at 8 (perf-notes v0.23).
        None => 16,
        Some(w @ (8 | 16 | 32)) => w,
        Some(w) => {
            return Err(CodegenError::Invalid(format!(
                "the E8P LUT GeMV runs 8, 16 or 32 warps, not {w}"
            )))
        }
    };
    // Decoded groups: the table reads are bound by bank conflicts while the integer pipes idle, so some of a row's
    // codes are decoded instead. The abs-table copies they read must fit next to the tables.
    let copies_fit = crate::e8p_lut::smem_bytes(u, hadamard, true) <= gpu.smem_per_block_optin;
    let decode = match ov.decode_groups {
        None if copies_fit => u * AUTO_E8P_DECODE_EIGHTHS / 8,
        None => 0,
        Some(d) if d > u => {
            return Err(CodegenError::Invalid(format!(
                "--decode-groups {d}: a unit has {u} groups"
            )))
        }
        Some(d) if d > 0 && !copies_fit => {
            return Err(CodegenError::Unsupported(format!(
                "--decode-groups {d}: the abs-table copies ({} B) do not fit next to the tables in {} B of shared memory",
                256 * 4 * crate::e8p_lut::ABS_COPIES,
                gpu.smem_per_block_optin
            )))
        }
        Some(d) => d,
    };
    let smem_bytes = crate::e8p_lut::smem_bytes(u, hadamard, decode > 0);
    let units = (k / 8).div_ceil(u as usize) as u32;
    let row_32 = n.div_ceil(32) as u32;
    // Stream mode over (unit, 32-row group) pairs, unit major. With fewer units than SMs, each unit's rows are cut
    // into the same number of ranges, so every block builds one unit's tables; else one block per SM.
    let blocks = if units <= gpu.sm_count {
        units * (gpu.sm_count / units)
    } else {
        gpu.sm_count
    }
    .min(units * row_32)
    .max(1);
    let mut note = |what: &str, value: String, why: String| {
        decisions.push(Decision {
            what: what.into(),
            value,
            why,
        })
    };
    note(
        "unit",
        format!(
            "{u} groups ({} KiB of tables{})",
            crate::e8p_lut::table_bytes(u) / 1024,
            match hadamard {
                Some(h) => format!(", a {h}-column Hadamard transform in the kernel"),
                None => String::new(),
            }
        ),
        format!(
            "the most input groups whose two tables ({} x {u} fp16 entries) fit in the {} KiB of shared memory a block \
             may use; {} units over k={k}",
            crate::e8p_lut::T1_ROWS + crate::e8p_lut::T2_ROWS,
            gpu.smem_per_block_optin / 1024,
            units
        ),
    );
    note(
        "warps",
        format!("{warps}{}", if ov.warps.is_some() { " (override)" } else { "" }),
        "one block per SM; every lane looks up one row, two 32-row groups in flight per warp, the first during the \
         table build"
            .into(),
    );
    note(
        "decoded groups",
        format!(
            "{decode} of {u}{}",
            if ov.decode_groups.is_some() {
                " (override)"
            } else {
                ""
            }
        ),
        if !copies_fit {
            "no room for the abs-table copies next to the tables: every step reads the tables"
                .into()
        } else if decode == 0 {
            "every step reads the tables".into()
        } else {
            format!(
                "a row's first {decode} steps decode their codes by bit operations (integer pipes) and the other {} read \
                 the tables (shared-memory bank conflicts bound them): the two run side by side",
                u - decode
            )
        },
    );
    note(
        "grid",
        format!("{blocks} x 1 x 1"),
        format!(
            "{units} units x {row_32} row groups cut into {blocks} equal ranges; partial sums reduced with atomics into \
             the fp32 workspace, then the finalize applies the row scales; {} threads, {smem_bytes} B shared memory per \
             block",
            32 * warps
        ),
    );
    let geo = TileGeometry::of(config);
    Ok(Plan {
        config: *config,
        op: Op::Gemv,
        m,
        k,
        n,
        level,
        kernel: KernelKind::E8pLut,
        geometry: (geo.rb, geo.l, u),
        warps,
        rows_per_warp: 1,
        mt: 1,
        wn: 1,
        lut_chunks: 0,
        m_tile: 1,
        split: units,
        tiles_per_split: 1,
        n_reg: 0,
        n_shared: 0,
        cb_copies: 1,
        x_hoist: false,
        mma_pipe: false,
        code_tma: false,
        cb_stage: false,
        in_flight: 2,
        e8p_decode: decode,
        frequency_ordered: false,
        smem_bytes,
        grid: (blocks, 1, 1),
        block: 32 * warps,
        decisions,
    })
}

/// The smallest split whose blocks make at least 0.9 of a wave and fill their last wave to at least 90%; else the
/// split with the fullest last wave.
fn wave_split(groups: u32, slots: u32, tiles: u32) -> u32 {
    let waves = |s: u32| (groups * s) as f64 / slots.max(1) as f64;
    let fill = |s: u32| waves(s) / waves(s).ceil();
    let max = tiles.clamp(1, 64);
    (1..=max)
        .find(|&s| waves(s) >= 0.9 && fill(s) >= 0.9)
        .unwrap_or_else(|| {
            (1..=max)
                .max_by(|&a, &b| fill(a).total_cmp(&fill(b)))
                .unwrap_or(1)
        })
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

impl Plan {
    /// Plans `op` for `y[m, n] = x[m, k] · W[n, k]ᵀ` with `config` on `gpu`, at `level`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &VqConfig,
        op: Op,
        m: usize,
        k: usize,
        n: usize,
        level: Level,
        gpu: &GpuSpec,
        ov: &Overrides,
    ) -> Result<Plan> {
        config.validate().map_err(CodegenError::Vq)?;
        config.check_weight_shape(n, k).map_err(CodegenError::Vq)?;
        if m == 0 {
            return Err(CodegenError::Invalid("batch m must be at least 1".into()));
        }
        let geo = TileGeometry::of(config);
        if !geo.vpc.is_multiple_of(2) {
            return Err(CodegenError::Unsupported(format!(
                "{config}: an odd number of vectors per chunk"
            )));
        }
        // A RefCell so that early returns can take the decisions while `note` is still in scope.
        let d = std::cell::RefCell::new(Vec::new());
        let note = |what: &str, value: String, why: String| {
            d.borrow_mut().push(Decision {
                what: what.into(),
                value,
                why,
            })
        };
        // The mma tile's decision, restated where the warps change after it is taken.
        let retile_mma = |mt: u32, wn: u32, warps: u32| {
            if let Some(t) = d.borrow_mut().iter_mut().find(|t| t.what == "mma tile") {
                t.value = format!(
                    "{} x {} (MT={mt}, WN={wn}, {warps} warps)",
                    16 * mt,
                    8 * wn * warps
                );
            }
        };
        let entries = config.entries() as u32;
        let entry_bytes = (config.v * 2) as u32;
        let tiles = k.div_ceil(config.v).div_ceil(geo.tile_vectors()) as u32;
        let row_blocks = n.div_ceil(8) as u32;
        let tensor_scope = config.scope == Scope::Tensor;
        let learned = config.codebook == CodebookKind::Learned;

        // 1. Kernel.
        let lut_table_bytes = (config.r as u32) * entries * (4 * geo.vpc) * 4;
        // Shared memory of the LUT GeMV (kernels/vq_lut_gemv.cuh): the table with rows padded per `lut_row_floats`,
        // the staged codebook set and the k tile's activations.
        let tile_scope = matches!(config.scope, Scope::Tile { .. });
        let lut_smem =
            config.r as u32 * entries * 4 * lut_row_floats(4 * geo.vpc, config.b, tile_scope)
                + config.r as u32 * entries * entry_bytes
                + 4 * geo.vpc * config.v as u32 * 2;
        // Tile scopes: a block's rows (8 warps x lut_rpw row blocks x 8) must lie in one codebook row band and a
        // k tile in one column span, so one table serves the whole block.
        // `band_rpw(warps, max)`: the most row blocks per warp (<= max) that keep a chunk inside one row band.
        let band_rpw = |warps: u32, max: u32| -> Option<u32> {
            match config.scope {
                Scope::Tile { rows, cols } if cols % (geo.tile_vectors() * config.v) == 0 => {
                    [8u32, 4, 2, 1]
                        .into_iter()
                        .filter(|r| *r <= max)
                        .find(|r| rows.is_multiple_of((8 * warps * r) as usize))
                }
                Scope::Tile { .. } => None,
                _ => Some(max),
            }
        };
        let lut_rpw = band_rpw(8, 8);
        let lut_ok = m == 1
            && learned
            && lut_rpw.is_some()
            && geo.l == 1
            && geo.vpc >= 8
            && lut_table_bytes <= 96 * 1024;
        // LUT-large (kernels/vq_lut_large.cuh): an fp16 table of one (k tile, lane column, stage) unit, 2^b x VPC
        // entries; lanes take whole rows, so the chunk (L words) must fit in registers twice.
        let lutl_table_bytes = entries * geo.vpc * 2;
        // Shared memory (kernels/vq_lut_large.cuh `LutLargeSmem`): the table, a staging region and the mbarriers.
        // With TMA (sm_90+) the region holds two code buffers per warp (32 rows x L x 16 B), and the stage's codebook
        // during the table build when it fits there; without, just the codebook, when it fits at all.
        // 32 warps where the TMA buffers fit, else 16. TMA is opt-in: on the H200 (aqlm3, batch 1, same run) it was
        // 4% faster at 4096x11008 (24.3 vs 25.3 us) but 12% slower at 8192x22016 (71.7 vs 63.2 us).
        let code_tma = ov.code_tma.unwrap_or(false) && gpu.cc_major >= 9;
        let cb_bytes = entries * entry_bytes;
        let lutl_region = |w: u32, with_cb: bool| {
            if code_tma {
                w * 2 * 512 * geo.l
            } else if with_cb {
                cb_bytes
            } else {
                0
            }
        };
        let lutl_smem = |w: u32, with_cb: bool| {
            lutl_table_bytes.div_ceil(128) * 128 + lutl_region(w, with_cb) + (2 * w + 1) * 8
        };
        let lutl_warps = [32u32, 16]
            .into_iter()
            .find(|w| lutl_smem(*w, false) <= gpu.smem_per_block_optin);
        let lutl_ok = m == 1
            && learned
            && tensor_scope
            && geo.l <= 4
            && geo.vpc.is_power_of_two()
            && lutl_warps.is_some();
        // Replica GeMV (kernels/vq_replica_gemv.cuh): the codebook set staged in shared memory with 128 / (2v) copies
        // of every entry (one 128-byte row per entry), the LUT GeMV's lane mapping (so the same row-band condition)
        // and the lane's activations in registers (v/2 half2 per vector, at most 32 registers).
        // Shared memory (kernels/vq_replica_gemv.cuh `ReplicaGeo`): the copies, one row per entry: 256 bytes for one
        // stage of 8-bit codes, whose two halves hold two sets (the codes stay in registers); else 128 bytes, then two
        // code buffers of `rpw` row blocks per warp.
        // One stage of 8-bit codes: 256-byte rows, codes in registers (`ReplicaGeo::PRMT_ROWS`).
        let replica_prmt_rows = config.b == 8 && config.r == 1;
        let replica_smem = |w: u32, rpw: u32| {
            let set_entries = config.r as u32 * entries;
            if replica_prmt_rows {
                set_entries * 256
            } else {
                set_entries * 128 + 2 * rpw * w * 512
            }
        };
        // A piece (`rpw` row blocks per warp) must lie inside one codebook row band, and a k tile in one column span.
        let replica_bands_ok = |w: u32, rpw: u32| match config.scope {
            Scope::Tile { rows, cols } => {
                cols.is_multiple_of(geo.tile_vectors() * config.v)
                    && rows.is_multiple_of((8 * rpw * w) as usize)
            }
            _ => true,
        };
        let replica_ok = m == 1
            && learned
            && replica_bands_ok(8, 1)
            && geo.l == 1
            && matches!(config.v, 2 | 4 | 8)
            && config.v as u32 * geo.vpc <= 64
            && replica_smem(8, 1) <= gpu.smem_per_block_optin;
        // Auto: per-tile codebooks, where the LUT table is rebuilt for every codebook row band.
        let want_replica =
            level == Level::Replica || (level == Level::Auto && tile_scope && replica_ok);
        let want_lut = match level {
            Level::Lut => true,
            // The table build (2^b entries x v FMAs per group) must cost less than the lookups it replaces.
            Level::Auto => {
                let rows_sharing = match config.scope {
                    Scope::Tile { rows, .. } => rows.min(n),
                    _ => n.min(512),
                };
                (lut_ok && config.entries() * config.v <= 4 * rows_sharing)
                    || (!lut_ok && lutl_ok && entries > 256 && n as u32 >= entries)
            }
            _ => false,
        };
        // Sorted GeMV (kernels/vq_sorted_gemv.cuh, crate::sorted): codebooks too large for shared memory, batch 1.
        let sorted_smem = crate::sorted::smem_bytes(config, k) + SMEM_RESERVED_PER_BLOCK;
        let sorted_why = crate::sorted::unsupported_reason(config, m, k)
            .or_else(|| (op != Op::Gemv).then(|| "it is a GeMV".to_string()))
            .or_else(|| {
                (sorted_smem > gpu.smem_per_block_optin).then(|| {
                    format!(
                        "its codebook chunk and activations need {sorted_smem} B of shared memory, the device allows {}",
                        gpu.smem_per_block_optin
                    )
                })
            });
        let want_sorted =
            level == Level::Sorted || (level == Level::Auto && sorted_why.is_none() && AUTO_SORTED);
        // E8P at batch <= 4: the decode (bit operations, ~23 instructions per code) and the multiply-adds share the
        // CUDA cores in the dequantizing GeMV; the mma kernel moves the multiply-adds to the tensor cores.
        let e8p_on_tensor_cores = config.codebook == CodebookKind::E8p && op == Op::Gemv;
        // E8P lookup-table GeMV (kernels/vq_e8p_lut.cuh, crate::e8p_lut): batch 1, two fp16 tables of 12288 x U
        // entries per unit of U input groups.
        // quip4's Hadamard transform runs inside the kernel (crate::instantiate), in a buffer after the tables.
        let e8p_hadamard = config.hadamard.then(|| crate::layout::hadamard_block(k));
        let e8p_lut_groups = crate::e8p_lut::unit_groups(gpu.smem_per_block_optin, e8p_hadamard);
        let e8p_lut_why = if config.codebook != CodebookKind::E8p {
            Some("its codes are not E8P lattice codes".to_string())
        } else if m != 1 {
            Some(format!("it is for batch 1, not {m}"))
        } else if op != Op::Gemv {
            Some("it is a GeMV".to_string())
        } else if e8p_lut_groups.is_none() {
            Some(format!(
                "its tables need at least {} B of shared memory, the device allows {}",
                crate::e8p_lut::smem_bytes(2, e8p_hadamard, false),
                gpu.smem_per_block_optin
            ))
        } else {
            None
        };
        let want_e8p_lut = config.codebook == CodebookKind::E8p
            && (level == Level::Lut
                || (level == Level::Auto && e8p_lut_why.is_none() && n >= AUTO_E8P_LUT_MIN_ROWS));
        let kernel = if let Some(kk) = ov.kernel {
            kk
        } else if want_e8p_lut {
            KernelKind::E8pLut
        } else if want_sorted {
            KernelKind::Sorted
        } else if want_replica {
            if !replica_ok {
                return Err(CodegenError::Unsupported(format!(
                    "the replica GeMV needs batch 1, learned codebooks of 4-, 8- or 16-byte entries, 16-byte lane chunks with \
                     <= 32 activation registers, per-tile codebooks whose rows are a multiple of 64 and columns of the k tile, and \
                     {} KiB of shared memory for the copies and code buffers ({config} at m={m})",
                    replica_smem(8, 1) / 1024
                )));
            }
            KernelKind::Replica
        } else if want_lut {
            if lut_ok {
                KernelKind::Lut
            } else if lutl_ok {
                KernelKind::LutLarge
            } else {
                return Err(CodegenError::Unsupported(format!(
                    "the LUT GeMV needs batch 1 and learned codebooks; with one table per k tile: per-tile codebooks whose rows are a multiple of 64 and \
                     columns of the k tile, 16-byte chunks with >= 8 vectors and a table <= 96 KiB; with one table per lane column and stage: one \
                     codebook set for the tensor, lane chunks of <= 4 words, a power-of-two vector count per chunk, sm_90 (TMA) and a table that \
                     fits in shared memory next to the code buffers ({config} at m={m}: {} KiB / {} KiB)",
                    lut_table_bytes / 1024,
                    lutl_table_bytes / 1024
                )));
            }
        } else if m <= 4 && op == Op::Gemv && !(e8p_on_tensor_cores && level == Level::Auto) {
            KernelKind::Dequant
        } else if m >= 128 && level == Level::Auto {
            KernelKind::DequantGemm
        } else {
            KernelKind::Mma
        };
        if config.codebook == CodebookKind::E8p && config.r > 2 && kernel != KernelKind::E8pLut {
            return Err(CodegenError::Unsupported(format!(
                "{config}: E8P codes with {} stages run only on the E8P LUT GeMV (batch 1, level LUT); the decoding \
                 kernels ({kernel:?}) read one or two stages a vector",
                config.r
            )));
        }
        if let (KernelKind::E8pLut, Some(why)) = (kernel, &e8p_lut_why) {
            return Err(CodegenError::Unsupported(format!(
                "the E8P LUT GeMV cannot run {config} at m={m}: {why}"
            )));
        }
        if let (KernelKind::Sorted, Some(why)) = (kernel, &sorted_why) {
            return Err(CodegenError::Unsupported(format!(
                "the sorted GeMV cannot run {config} at m={m}, k={k}: {why}"
            )));
        }
        if (kernel == KernelKind::Lut && !lut_ok)
            || (kernel == KernelKind::LutLarge && !lutl_ok)
            || (kernel == KernelKind::Replica && !replica_ok)
        {
            return Err(CodegenError::Unsupported(format!(
                "kernel {kernel:?} cannot run {config} at m={m} (see `vqllm plan --level lut` for its conditions)"
            )));
        }
        note(
            "kernel",
            format!("{kernel:?}"),
            match kernel {
                KernelKind::Lut => format!(
                    "batch 1 and one codebook per tensor: a {} KiB table of <x, entry> products is reused by every row, so each \
                     vector costs {} table reads instead of {} codebook bytes and {} FMAs",
                    lut_table_bytes / 1024,
                    config.r,
                    config.r as u32 * entry_bytes,
                    config.v
                ),
                KernelKind::LutLarge => format!(
                    "batch 1, {entries}-entry codebooks (a table for a whole k tile would be {} KiB): one {} KiB fp16 table per \
                     (k tile, lane column, stage) unit is reused by {n} rows, so each vector costs {} 2-byte table reads instead of \
                     {} codebook bytes and {} FMAs",
                    lut_table_bytes / 1024,
                    lutl_table_bytes / 1024,
                    config.r,
                    config.r as u32 * entry_bytes,
                    config.v
                ),
                KernelKind::Replica => format!(
                    "batch 1{}: each vector reads its {entry_bytes}-byte entry from one of {} copies in shared memory ({} KiB per set, \
                     conflict-free for any codes) and does {} HFMA2, instead of a LUT table of {} KiB rebuilt for every {}-row band",
                    if tile_scope { ", per-tile codebooks" } else { "" },
                    128 / entry_bytes,
                    config.r as u32 * entries * 128 / 1024,
                    config.v / 2,
                    lut_table_bytes / 1024,
                    match config.scope {
                        Scope::Tile { rows, .. } => rows.min(n),
                        _ => n,
                    }
                ),
                KernelKind::Sorted => format!(
                    "batch 1, a {} KiB codebook: each block keeps one {} KiB chunk in shared memory and reads only the codes \
                     that fall in it (re-packed offline as 32-bit words, twice the code bytes), instead of a random 32-byte \
                     L2 sector per 16-byte entry",
                    config.entries() * config.v * 2 / 1024,
                    (1usize << crate::sorted::CHUNK_BITS) * config.v * 2 / 1024
                ),
                KernelKind::E8pLut => "batch 1, E8P codes: per unit of input groups, two fp16 tables (8192 and 4096 rows) of \
                     the activations' dot products with the signed abs rows, so each 16-bit code costs 2 table reads and 2 adds \
                     instead of ~23 bit operations of decode and 4 HFMA2 (H100 quip4 8192x22016: 89.0 -> 51.4 us)"
                    .to_string(),
                KernelKind::Dequant => format!("batch {m} <= 4: CUDA-core dot products keep up with memory"),
                KernelKind::Mma if m <= 4 && config.codebook == CodebookKind::E8p => format!(
                    "batch {m}, E8P: the decode is computed on the CUDA cores, so the multiply-adds go to the tensor cores \
                     (mma.m16n8k16, {m} of 16 rows used; H100 quip4 8192x22016 112.5 -> 88.6 us against the dequantizing GeMV)"
                ),
                KernelKind::Mma => format!("batch {m} > 4: tensor cores (mma.m16n8k16) amortise each decoded vector over 16 rows"),
                KernelKind::DequantGemm => format!(
                    "batch {m} >= 128 is compute-bound: dequantize the weight once into fp16 ({:.1} MB written) and run cuBLAS; \
                     the fused mma kernel re-decodes per tile without cuBLAS's pipelining (measured 2.9 ms vs 0.25 ms at m=2048, 4096x11008)",
                    (n * k * 2) as f64 / 1e6
                ),
            },
        );

        if let (Some(g), false) = (ov.decode_groups, kernel == KernelKind::E8pLut) {
            return Err(CodegenError::Unsupported(format!(
                "--decode-groups {g}: decoded groups are a parameter of the E8P LUT GeMV, this plan uses the {kernel:?} kernel"
            )));
        }

        // 2. Level actually applied.
        let auto = level == Level::Auto;
        let level = match (level, kernel) {
            (Level::Auto, KernelKind::Lut | KernelKind::LutLarge | KernelKind::E8pLut) => {
                Level::Lut
            }
            (Level::Auto, KernelKind::Replica) => Level::Replica,
            (Level::Auto, KernelKind::Sorted) => Level::Sorted,
            (Level::Auto, _) => Level::O4,
            (l, _) => l,
        };
        let rank = level.rank();
        // Auto with the CUDA-core GeMV keeps O3's split but reads codebooks through L1 (GC tier): measured on an
        // H200 (docs/perf-notes.md), 16-byte entries from a shared tier lose to L1 for every learned preset at
        // batch <= 4 (bank conflicts, and the staging halves occupancy for large codebooks).
        // The same holds for the mma kernel (batch 5-127) with codebooks too large to stage whole (> 256 entries): a
        // partial shared tier with a global fallback makes every lookup branch, and costs occupancy (H200 m=16,
        // 4096x11008 / 8192x22016: aqlm3 86.2 / 273.6 -> 53.4 / 184.1 us, aqlm-1x16 83.2 / 252.6 -> 48.4 / 169.6,
        // with the activations hoisted and the short k ranges that come with no staged codebook).
        let mma_l1 = kernel == KernelKind::Mma && learned && entries > 256;
        let l1_codebooks = auto && (kernel == KernelKind::Dequant || mma_l1);

        // (A unit size exists here: without one, `e8p_lut_why` returned an error above.)
        if let (KernelKind::E8pLut, Some(u)) = (kernel, e8p_lut_groups) {
            return e8p_lut_plan(config, m, k, n, level, gpu, ov, u, e8p_hadamard, d.take());
        }
        if kernel == KernelKind::Sorted {
            let chunks = crate::sorted::chunks(config);
            let parts = crate::sorted::row_parts(config, gpu.sm_count);
            let in_flight = match ov.rows_per_warp {
                Some(r) if r.is_power_of_two() && r <= 8 => r,
                Some(r) => {
                    return Err(CodegenError::Invalid(format!(
                        "the sorted GeMV keeps 1, 2, 4 or 8 quads per lane in flight (--rows-per-warp), not {r}"
                    )))
                }
                None => crate::sorted::QUADS_IN_FLIGHT,
            };
            note(
                "grid",
                format!("{chunks} x {parts} x 1"),
                format!(
                    "one block per (codebook chunk, share of its words), one per SM ({} blocks on {} SMs) with {} KiB of \
                     shared memory; {} warps, each an even share of the block's words",
                    chunks * parts,
                    gpu.sm_count,
                    sorted_smem / 1024,
                    crate::sorted::WARPS,
                ),
            );
            note(
                "lanes",
                format!("1 row per lane, {in_flight} quads in flight"),
                format!(
                    "tiles of 32 rows of similar list length, a lane sums its row's words in a register (no reduction); \
                     {in_flight} x 16 bytes per lane in flight{}",
                    if ov.rows_per_warp.is_some() { " (override)" } else { "" }
                ),
            );
            return Ok(Plan {
                config: *config,
                op,
                m,
                k,
                n,
                level,
                kernel,
                geometry: (geo.rb, geo.l, geo.vpc),
                warps: crate::sorted::WARPS,
                rows_per_warp: in_flight,
                mt: 1,
                wn: 1,
                lut_chunks: 0,
                m_tile: 1,
                split: chunks,
                tiles_per_split: 0,
                n_reg: 0,
                n_shared: 0,
                cb_copies: 1,
                x_hoist: false,
                mma_pipe: false,
                code_tma: false,
                cb_stage: false,
                in_flight: 2,
                e8p_decode: 0,
                frequency_ordered: false,
                smem_bytes: sorted_smem - SMEM_RESERVED_PER_BLOCK,
                grid: (chunks, parts, 1),
                block: 32 * crate::sorted::WARPS,
                decisions: d.take(),
            });
        }

        // 3. Block shape.
        let (mut warps, mut rows_per_warp, mut mt, mut wn, m_tile) =
            (8u32, 1u32, 1u32, 1u32, m.min(8) as u32);
        match kernel {
            // (The sorted GeMV's plan was returned above.)
            KernelKind::Dequant
            | KernelKind::DequantGemm
            | KernelKind::Sorted
            | KernelKind::E8pLut => {}
            KernelKind::LutLarge => {
                warps = lutl_warps.unwrap_or(16);
                note(
                    "warps",
                    warps.to_string(),
                    if code_tma {
                        format!(
                            "one block per SM: a {} KiB table and two TMA code buffers per warp ({} KiB); every lane looks up one row",
                            lutl_table_bytes / 1024,
                            warps * 2 * 512 * geo.l / 1024
                        )
                    } else {
                        format!(
                            "one block per SM (a {} KiB table); every lane looks up one row, two chunks in flight",
                            lutl_table_bytes / 1024
                        )
                    },
                );
            }
            KernelKind::Replica => {
                // 8 warps (<= 80 registers, 32 of which hold the activations).
                // - One stage of 8-bit codes: the codes stay in registers and the set copies alternate between two
                //   halves of the rows, one barrier a piece, so small pieces cost little and balance best (H100 gptvq2
                //   4096x11008 / 8192x22016, 1 / 2 / 4 row blocks: 9.59 / 25.49, 9.83 / 25.96, 10.19 / 26.0 us).
                // - Otherwise codes go through shared memory in pieces of 4 row blocks per warp where a band allows
                //   (cp.async, the next piece in flight): fewer per-piece setups (H200 gptvq2 before v0.28, 1 / 2 / 4
                //   row blocks: 33.4 / 30.6 / 28.4 us; 8 warps x 4 with 3 blocks per SM beat 4 warps x 4 with 4).
                let order: &[u32] = if replica_prmt_rows { &[1] } else { &[4, 2, 1] };
                rows_per_warp = order
                    .iter()
                    .copied()
                    .find(|r| {
                        replica_bands_ok(warps, *r)
                            && replica_smem(warps, *r) <= gpu.smem_per_block_optin
                    })
                    .unwrap_or(1);
                note(
                    "warps",
                    format!("{warps} x {rows_per_warp} row blocks"),
                    format!(
                        "pieces of {} rows{}, {}",
                        8 * warps * rows_per_warp,
                        if tile_scope {
                            " (inside one codebook row band)"
                        } else {
                            ""
                        },
                        if replica_prmt_rows {
                            "each lane's code words loaded into registers one piece ahead; two staged sets in the \
                             halves of 256-byte rows, so one barrier a piece"
                        } else {
                            "copied into shared memory with cp.async one piece ahead"
                        }
                    ),
                );
            }
            KernelKind::Lut => {
                if tile_scope {
                    rows_per_warp = lut_rpw.unwrap_or(8);
                    note(
                        "rows_per_warp",
                        rows_per_warp.to_string(),
                        format!(
                            "a chunk is 8 warps x {rows_per_warp} row blocks = {} rows (inside one codebook row band); two chunks of codes in \
                             flight per warp at ~80 registers keep 3 blocks per SM",
                            64 * rows_per_warp
                        ),
                    );
                } else {
                    // 16 warps with 2 blocks per SM, or 32 warps where the (padded) table leaves room for one.
                    warps = if 2 * (lut_smem + 1024) + 1024 > gpu.smem_per_sm {
                        32
                    } else {
                        16
                    };
                    // Measured (perf-notes v0.21 sweep, aqlm-2x8 on an H100): at 32 warps one row block per warp is 8%
                    // faster than two on 4096x11008 and 1% on 8192x22016; at 16 warps two are faster.
                    rows_per_warp = if warps == 32 { 1 } else { 2 };
                    note(
                        "warps",
                        format!("{warps} x {rows_per_warp} row blocks"),
                        format!(
                            "stream mode: the table allows 1-2 blocks per SM, so blocks of 16 warps (2 per SM) or 32 (1 per SM), \
                             <= 64 registers, hide more latency than 8-warp ones; {rows_per_warp} row block(s) per warp per chunk \
                             (measured: 1 at 32 warps, 2 at 16)"
                        ),
                    );
                }
            }
            KernelKind::Mma => {
                mt = if m >= 128 {
                    8
                } else {
                    (m.div_ceil(16) as u32).min(8)
                };
                // Small batches: 4 row blocks per warp, so a block's 128 weight rows share one staged activation
                // tile (with 1, every 32 rows restaged it: ~4x the weight bytes of L2 traffic at m = 16).
                wn = if m >= 128 {
                    2
                } else if m <= 32 {
                    4
                } else {
                    1
                };
                if m < 128 {
                    warps = 4;
                }
                note(
                    "mma tile",
                    format!(
                        "{} x {} (MT={mt}, WN={wn}, {warps} warps)",
                        16 * mt,
                        8 * wn * warps
                    ),
                    "activation rows per block x weight rows per block".into(),
                );
            }
        }
        if let Some(r) = ov.rows_per_warp {
            if !(r.is_power_of_two() && r <= 8) {
                return Err(CodegenError::Invalid(format!(
                    "rows per warp must be 1, 2, 4 or 8, not {r}"
                )));
            }
            if matches!(kernel, KernelKind::Lut | KernelKind::Replica) {
                rows_per_warp = r;
            }
            if kernel == KernelKind::Mma {
                wn = r;
                note(
                    "mma tile",
                    format!("WN={wn} (override)"),
                    "8-row blocks per warp; the block's weight rows are 8 x WN x warps".into(),
                );
            }
        }
        if ov.warps.is_some() || ov.rows_per_warp.is_some() {
            warps = ov.warps.unwrap_or(warps).clamp(1, 32);
            // The row-block kernels' chunks (8·warps·rpw rows) must stay inside one codebook row band.
            let fits = match kernel {
                KernelKind::Lut if tile_scope => {
                    band_rpw(warps, rows_per_warp).map(|r| rows_per_warp = r)
                }
                KernelKind::Replica => replica_bands_ok(warps, rows_per_warp).then_some(()),
                _ => Some(()),
            };
            if fits.is_none() {
                return Err(CodegenError::Unsupported(format!(
                    "{warps} warps x {rows_per_warp} blocks of 8 rows do not fit in one codebook row band of {config}"
                )));
            }
            if matches!(kernel, KernelKind::Lut | KernelKind::Replica) {
                note(
                    "warps",
                    format!("{warps} x {rows_per_warp} row blocks (override)"),
                    "warps per block x row blocks per warp, replacing the choice above".into(),
                );
            }
            if kernel == KernelKind::Mma {
                retile_mma(mt, wn, warps);
            }
        }

        // Input columns per k tile, and the staged activations of the mma kernel (kernels/vq_mma.cuh `MmaShape`): BM x
        // TK halves in fragment order.
        let tk = geo.tile_vectors() as u32 * config.v as u32;
        let mma_x_bytes = 16 * mt * tk * 2;
        // Shared memory of `sets` staged codebook sets of `n_shared` entries per stage, and of the E8P abs table.
        let cb_stage = |sets: u32, n_shared: u32| {
            if learned && n_shared > 0 {
                sets * config.r as u32 * n_shared * entry_bytes
            } else {
                0
            }
        };
        let e8p_bytes = if learned { 0 } else { 1024 };

        // 4. Codebook cache tiers (n_shared, n_reg) from slack.
        let mut threads = 32 * warps;
        let est_regs: u32 = ov.base_registers.unwrap_or(match kernel {
            KernelKind::Dequant | KernelKind::DequantGemm => 40,
            KernelKind::Lut | KernelKind::Replica | KernelKind::Sorted | KernelKind::E8pLut => 80,
            KernelKind::LutLarge => 64,
            KernelKind::Mma => 48 + 8 * mt * wn,
        });
        let blocks_by_regs = (gpu.regs_per_sm / (threads * est_regs)).max(1);
        let blocks_by_threads = (gpu.max_threads_per_sm / threads).max(1);
        let resident = blocks_by_regs
            .min(blocks_by_threads)
            .min(gpu.max_blocks_per_sm);
        let smem_budget =
            (gpu.smem_per_sm / resident).min(gpu.smem_per_block_optin) - SMEM_RESERVED_PER_BLOCK;
        let (mut n_shared, mut n_reg) = (0u32, 0u32);
        let per_set_bytes = entries * entry_bytes * config.r as u32;
        if l1_codebooks {
            note(
                "codebook tier",
                "global (L1)".into(),
                if kernel == KernelKind::Mma {
                    format!("auto, {entries}-entry codebooks: L1-cached reads beat a partial shared tier with a global fallback (perf-notes v0.12)")
                } else {
                    "auto, batch <= 4: L1-cached 16-byte codebook reads beat the shared/register tiers on H200 (perf-notes v0.4)".into()
                },
            );
        } else if learned && !kernel.is_batch1() {
            let sets_per_block = if tensor_scope { 1 } else { 2 };
            let x_bytes = match kernel {
                KernelKind::Mma => mma_x_bytes,
                _ => smem_budget / 2,
            };
            let cb_room = smem_budget.saturating_sub(x_bytes + 1024) / sets_per_block;
            if (tensor_scope || kernel != KernelKind::Mma) && rank >= Level::Sc.rank() {
                let fit = cb_room / (entry_bytes * config.r as u32);
                n_shared = if rank == Level::Sc.rank() {
                    if per_set_bytes > cb_room {
                        return Err(CodegenError::Unsupported(format!(
                            "SC stages the whole codebook ({} KiB per set) but only {} KiB of shared memory are free per block; \
                             use O1 (frequency-ordered partial caching) or GC",
                            per_set_bytes / 1024,
                            cb_room / 1024
                        )));
                    }
                    entries
                } else {
                    fit.min(entries)
                };
                note(
                    "n_shared",
                    n_shared.to_string(),
                    format!(
                        "{resident} resident blocks/SM leave {} KiB shared memory per block; a set is {} KiB ({} entries x {} B x {} stages)",
                        smem_budget / 1024,
                        per_set_bytes / 1024,
                        entries,
                        entry_bytes,
                        config.r
                    ),
                );
            }
            if rank >= Level::O2.rank() && tensor_scope {
                let reg_limit = (gpu.regs_per_sm / (threads * resident)).min(255) & !7;
                let need = (config.r * config.v / 2) as u32;
                let slack = reg_limit.saturating_sub(est_regs);
                n_reg = if slack >= need { 32.min(entries) } else { 0 };
                note("n_reg", n_reg.to_string(), format!(
                    "register slack {slack} (limit {reg_limit}/thread at {resident} blocks/SM, ~{est_regs} used); one entry per lane costs {need} registers"
                ));
            } else if rank >= Level::O2.rank() {
                note(
                    "n_reg",
                    "0".into(),
                    "per-tile codebooks change along the row: no register tier".into(),
                );
            }
        }
        if let Some(v) = ov.n_shared {
            n_shared = v.min(entries);
        }
        if let Some(v) = ov.n_reg {
            n_reg = v.min(32).min(entries);
        }
        if n_reg > n_shared && n_shared > 0 {
            n_shared = n_shared.max(n_reg);
        }
        // O1/O2 rely on the hot entries sitting at the front of the codebook.
        let frequency_ordered =
            !kernel.is_batch1() && ((n_shared > 0 && n_shared < entries) || n_reg > 0);

        // 4b. Mma: loop order and codebook copies.
        let mut x_hoist = false;
        let mut cb_copies = 1u32;
        let whole_16b_codebook = learned && tensor_scope && config.v == 8 && n_shared >= entries;
        if kernel == KernelKind::Mma {
            // Small codebooks (<= 256 entries) are cheap to read, so the activation fragments reloaded per row block
            // dominate: hoist them (H200 m=16: aqlm-2x8 -19/-26%, gptvq2 -17/-22%). Large ones are read from L2,
            // and row blocks outer keep more lookups in flight (aqlm3 +28/+37% when hoisted).
            // E8P keeps row blocks outer as well (H100, quip4 m=16: 26.0 / 72.1 us against 26.5 / 72.6 hoisted).
            x_hoist = learned && (entries <= 256 || l1_codebooks) && wn > 1;
            if whole_16b_codebook {
                // As many copies as keep 3 blocks on an SM (H200, aqlm-2x8 m=16, 4096x11008 / 8192x22016: 1 copy
                // 39.6 / 118.5 us, 2: 33.6 / 108.9, 4: 33.2 / 100.9, 8: 32.4 / 91.1 at 3 blocks per SM).
                let block_bytes = |c: u32| mma_x_bytes + per_set_bytes * c + 1024;
                cb_copies = 8;
                while cb_copies > 1
                    && (gpu.smem_per_sm / (block_bytes(cb_copies) + SMEM_RESERVED_PER_BLOCK) < 3
                        || block_bytes(cb_copies) > gpu.smem_per_block_optin)
                {
                    cb_copies /= 2;
                }
            }
        }
        // Batch <= 16 (one m16 slice): the pipelined mma kernel holds ~120 registers a thread at 4 warps, so blocks of 8
        // warps put more lookups in flight where lookups are the limit (H200 m=16, 4096x11008 / 8192x22016, 4 -> 8
        // warps at the split of one wave: aqlm-2x8 25.6 / 62.2 -> 21.9 / 49.6 us, aqlm3 51.1 / 171.4 -> 38.1 / 124.3;
        // quip4 and aqlm-1x16 gain nothing or lose, perf-notes v0.15). gptvq2 lost at 8 warps too while it gathered its
        // entries through L1 (v0.15); with its sets staged per k tile (v0.16) it gains (v0.29).
        let one_slice_mma = kernel == KernelKind::Mma && mt == 1;
        // Per-tile codebooks staged per k tile (below) need the block's rows inside one codebook row band.
        let tile_stage_fits = |warps: u32| {
            one_slice_mma
                && learned
                && matches!(config.v, 2 | 4 | 8)
                && match config.scope {
                    Scope::Tile { rows, cols } => {
                        (cols as u32).is_multiple_of(tk)
                            && (rows as u32).is_multiple_of(8 * wn * warps)
                    }
                    _ => false,
                }
                && config.r as u32 * entries * 128 <= 48 * 1024
        };
        let staged_tile_wide = tile_stage_fits(8) && auto && ov.cb_copies != Some(1);
        let mma_wide = one_slice_mma
            && ov.warps.is_none()
            && (whole_16b_codebook
                || staged_tile_wide
                || (l1_codebooks && entries <= MMA_WAVE_MAX_ENTRIES));
        if mma_wide {
            warps = 8;
            threads = 32 * warps;
            retile_mma(mt, wn, warps);
            note(
                "warps",
                format!("8 (tile 16 x {})", 64 * wn),
                if staged_tile_wide {
                    "batch <= 16 with per-tile codebooks staged per k tile: each staged set serves twice the rows it \
                     does at 4 warps (gptvq2: a whole 256-row codebook band), half the staging a weight (H100 m=16, \
                     gptvq2 4096x11008 / 8192x22016: 14.25 / 38.75 us at 4 warps, 12.77 / 34.60 at 8, perf-notes v0.29)"
                } else {
                    "batch <= 16 with a staged 16-byte codebook or 4096-entry codebooks through L1: 8 warps keep more \
                     lookups in flight than 4 (~120 registers a thread leave few resident warps)"
                }
                .into(),
            );
        }
        if let Some(h) = ov.x_hoist {
            x_hoist = h && kernel == KernelKind::Mma;
        }
        // kernels/vq_mma.cuh PIPE: a 16 x TK activation tile of at most 4 16-byte pieces per thread.
        let pipe_fits = one_slice_mma && tk <= 64 * warps;
        let pipe = match ov.pipe {
            Some(true) if !pipe_fits => {
                return Err(CodegenError::Unsupported(
                    "the pipelined k loop needs the mma kernel with one m16 slice (batch <= 16) and at most 4 16-byte \
                     activation pieces per thread (k tile <= 64 x warps columns)"
                        .into(),
                ))
            }
            Some(p) => p && pipe_fits,
            None => pipe_fits,
        };
        if pipe {
            note(
                "k loop",
                "pipelined".into(),
                "the next k tile's codes and activations are loaded into registers during this tile's lookups".into(),
            );
        }
        // Batch <= 16 with per-tile codebooks (gptvq2): stage each k tile's set in shared memory, 128 bytes of copies
        // per entry (lane l reads copy l mod copies: conflict-free), instead of gathering entries through L1, which
        // bounds the kernel (ncu: L1 88-90%, perf-notes v0.15). Needs the block inside one codebook row band and k
        // tiles inside codebook tiles.
        let tile_copies = 64 / config.v as u32;
        let tile_stage_ok = tile_stage_fits(warps);
        let tile_stage = tile_stage_ok
            && auto
            && match ov.cb_copies {
                None => true,
                Some(c) if c == tile_copies => true,
                Some(1) => false,
                Some(c) => {
                    return Err(CodegenError::Unsupported(format!(
                        "--cb-copies {c}: this plan stages per-tile codebooks with {tile_copies} copies per entry \
                         (128-byte rows); pass {tile_copies}, or 1 to read them through L1"
                    )))
                }
            };
        if tile_stage {
            n_shared = entries;
            cb_copies = tile_copies;
            note(
                "codebook tier",
                format!("shared, {tile_copies} copies"),
                format!(
                    "per-tile codebooks at batch <= 16: each k tile's set ({} KiB of copies) staged with the codes a tile \
                     ahead, so lookups read shared memory without bank conflicts instead of gathering through L1",
                    config.r as u32 * entries * 128 / 1024
                ),
            );
        }
        if let Some(c) = ov.cb_copies.filter(|_| !(tile_stage_ok && auto)) {
            if !(c.is_power_of_two() && c <= 8) {
                return Err(CodegenError::Invalid(format!(
                    "codebook copies must be 1, 2, 4 or 8, not {c}"
                )));
            }
            if c > 1 && !(kernel == KernelKind::Mma && whole_16b_codebook) {
                return Err(CodegenError::Unsupported(
                    "codebook copies need the mma kernel with the whole 16-byte-entry codebook in shared memory".into(),
                ));
            }
            cb_copies = c;
        }
        // The mma kernel's shared memory: activation tile, staged codebook copies, E8P table.
        let mma_smem = mma_x_bytes + cb_stage(1, n_shared) * cb_copies + e8p_bytes;
        if kernel == KernelKind::Mma {
            note(
                "loop order",
                if x_hoist {
                    "slots outer"
                } else {
                    "row blocks outer"
                }
                .into(),
                if x_hoist && l1_codebooks {
                    format!("codebooks through L1: each slot's activation fragments are loaded once for the {wn} row blocks")
                } else if x_hoist {
                    format!("{entries} entries: cheap lookups, so each slot's activation fragments are loaded once for the {wn} row blocks")
                } else if wn == 1 {
                    "one row block per warp: no activation fragments to share".into()
                } else {
                    "large codebooks in a partial shared tier, or computed ones: a row block's lookups in flight together \
                     hide their latency"
                        .into()
                },
            );
            if whole_16b_codebook {
                note(
                    "codebook copies",
                    cb_copies.to_string(),
                    format!(
                        "lane l reads copy l % {cb_copies} of a 16-byte entry (with 8 the 8 lanes of a load phase always hit 8 \
                         different bank groups; fewer copies, fewer collisions than random entries); as many copies (<= 8) \
                         as keep 3 blocks per SM ({} KiB of codebooks per block)",
                        per_set_bytes * cb_copies / 1024
                    ),
                );
            }
        }

        // 5. Split of the reduction axis (O3): balance the reduction traffic s·m·n·4 against codebook traffic / s,
        //    and fill the GPU.
        let row_groups = match kernel {
            KernelKind::Dequant | KernelKind::DequantGemm => row_blocks.div_ceil(warps),
            KernelKind::Lut | KernelKind::Replica => row_blocks.div_ceil(warps * rows_per_warp),
            KernelKind::LutLarge | KernelKind::Sorted | KernelKind::E8pLut => 1,
            KernelKind::Mma => row_blocks.div_ceil(warps * wn),
        };
        let m_groups = if kernel == KernelKind::Mma {
            (m as u32).div_ceil(16 * mt)
        } else {
            1
        };
        let mut split = 1u32;
        let x_tile_bytes = (m_tile as usize * geo.tile_vectors() * config.v * 2) as u32;
        if rank >= Level::O3.rank() && !kernel.is_batch1() {
            let target_blocks = 2 * gpu.sm_count;
            let fill = target_blocks.div_ceil((row_groups * m_groups).max(1));
            let cb_traffic = (row_groups * m_groups) as f64
                * (n_shared.max(if kernel == KernelKind::Lut {
                    entries
                } else {
                    0
                }) * entry_bytes
                    * config.r as u32) as f64;
            let out_bytes = (m * n * 4) as f64;
            let balance = if out_bytes > 0.0 {
                (cb_traffic / out_bytes).sqrt().ceil() as u32
            } else {
                1
            };
            split = fill.max(balance).clamp(1, tiles);
            if kernel == KernelKind::Dequant {
                // The staged activations of one split must fit next to the codebook tier.
                while x_tile_bytes * tiles.div_ceil(split) > smem_budget / 2 && split < tiles {
                    split += 1;
                }
            }
            // Mma without a staged codebook (read through L1, or computed): a block has no setup to amortise, and
            // short k ranges put more blocks in flight to hide the lookup latency (H200 m=16 8192x22016, splits
            // 2 / 4 / 8 / 11 / 16: gptvq2 79.0 / 81.7 / 72.0 / 65.9 / 71.8 us, quip4 130.8 / 115.6 / 108.5 / 104.0 /
            // 106.6: best at ~768 columns per block; with a staged codebook aqlm-2x8 91.1 / 98.8 / 114.0 and aqlm3
            // 273.5 / 345.0 / 304.1 get slower).
            let short_split = (k as u32).div_ceil(MMA_K_PER_BLOCK).min(tiles);
            let short_k = kernel == KernelKind::Mma && n_shared == 0 && split < short_split;
            if short_k {
                split = short_split;
            }
            // The pipelined batch <= 16 kernel (codes and activations one tile ahead) has no latency left for extra
            // blocks to hide: one full wave of resident blocks, no partial one, is best (H200 m=16 8192x22016, splits
            // 2 / 3 / 4: aqlm3 at 8 warps 158.7 / 124.3 / 128.2 us; gptvq2 split 3 / 6 / 11: 60.2 / 64.8 / 69.8 at
            // 8192x22016, 25.2 / 23.1 at 4096x11008 with splits 3 / 6). Not for 65536-entry codebooks, read from L2,
            // where more blocks still hide latency (aqlm-1x16 split 3 / 6 / 11: 172.7 / 166.0 / 159.2 us).
            let wave = pipe && (entries <= MMA_WAVE_MAX_ENTRIES || !learned);
            let mut wave_note = String::new();
            if wave {
                let regs = if warps >= 8 && l1_codebooks {
                    MMA_WIDE_L1_REGS
                } else {
                    MMA_PIPE_REGS
                };
                let per_sm = (gpu.regs_per_sm / (32 * warps * regs))
                    .min(gpu.smem_per_sm / (mma_smem + SMEM_RESERVED_PER_BLOCK))
                    .clamp(1, gpu.max_blocks_per_sm);
                let slots = per_sm * gpu.sm_count;
                split = wave_split(row_groups * m_groups, slots, tiles);
                wave_note = format!(
                    "{row_groups} row groups x {m_groups} batch groups; the pipelined kernel fills whole waves of {slots} \
                     resident blocks ({per_sm} per SM at ~{regs} registers): {} blocks = {:.2} waves",
                    row_groups * m_groups * split,
                    (row_groups * m_groups * split) as f64 / slots as f64
                );
            }
            note(
                "split",
                split.to_string(),
                if wave {
                    wave_note
                } else if short_k {
                    format!(
                    "{row_groups} row groups x {m_groups} batch groups; no staged codebook to amortise: k ranges of \
                     ~{MMA_K_PER_BLOCK} columns put more blocks in flight to hide the codebook latency"
                )
                } else {
                    format!(
                    "{row_groups} row groups x {m_groups} batch groups; {target_blocks} blocks fill {} SMs twice; traffic balance sqrt(codebook {:.0} KB / output {:.0} KB) = {balance}",
                    gpu.sm_count, cb_traffic / 1e3, out_bytes / 1e3
                )
                },
            );
        } else if kernel == KernelKind::Dequant {
            while x_tile_bytes * tiles.div_ceil(split) > smem_budget / 2 && split < tiles {
                split += 1;
            }
            if split > 1 {
                note(
                    "split",
                    split.to_string(),
                    "the activations of a whole row do not fit in shared memory".into(),
                );
            }
        }
        if let Some(s) = ov.split {
            split = s.clamp(1, tiles);
        }
        let mut tiles_per_split = tiles.div_ceil(split);
        split = tiles.div_ceil(tiles_per_split);
        let mut row_groups = row_groups;
        let mut lut_chunks = 0u32;
        if kernel == KernelKind::DequantGemm {
            // One warp per (row block, k tile); codebooks through L1.
            split = tiles;
            tiles_per_split = 1;
            n_shared = 0;
            n_reg = 0;
        }
        if kernel == KernelKind::Replica {
            // Units of one codebook row band (or one piece) x one k tile, k tile major, cut into equal ranges, one per
            // resident block: a block loads its activations once per k tile it touches and stages each band's set
            // from registers loaded during the piece before.
            let band_rb = match config.scope {
                Scope::Tile { rows, .. } => rows as u32 / 8,
                _ => warps * rows_per_warp,
            };
            let units = tiles * row_blocks.div_ceil(band_rb);
            let per_sm = row_block_min_blocks(kernel, warps)
                .min(gpu.smem_per_sm / (replica_smem(warps, rows_per_warp) + 1024))
                .max(1);
            row_groups = (per_sm * gpu.sm_count).min(units).max(1);
            split = tiles;
            tiles_per_split = 1;
            note(
                "replica blocks",
                row_groups.to_string(),
                format!(
                    "{units} (k tile, {} rows) units cut into {row_groups} equal ranges ({per_sm} resident blocks per SM); \
                     partial sums reduced with atomics",
                    8 * band_rb
                ),
            );
        }
        if kernel == KernelKind::Lut {
            // One k tile per block (one table), reused by `lut_chunks` chunks of 8·warps·rpw rows; enough blocks for
            // three waves of 3 resident blocks per SM, the rest of the rows amortise the table build.
            let slots = row_block_min_blocks(kernel, warps) * gpu.sm_count;
            tiles_per_split = 1;
            if tile_scope {
                // A block's rows must stay inside one codebook row band: one chunk per block, one k tile each.
                lut_chunks = 1;
                row_groups = row_blocks.div_ceil(warps * rows_per_warp);
                split = tiles;
                note("lut chunks", "1".into(), format!(
                    "per-tile codebooks: each block builds one table for one k tile and one chunk of {} rows; {row_groups} x \
                     {tiles} blocks, partial sums reduced with atomics",
                    8 * warps * rows_per_warp
                ));
            } else {
                // Stream mode (lut_chunks = 0): the (k tile, row block) units are cut into equal ranges, one per
                // resident block, so there is no partial last wave (a whole-chunk split left 1.21 waves on
                // 8192x22016); ranges of at least one chunk of row blocks amortise the table build.
                lut_chunks = 0;
                let units = row_blocks * tiles;
                row_groups = slots.min(units.div_ceil(warps * rows_per_warp)).max(1);
                split = tiles; // the kernel's SPLIT: partial sums of the k tiles go through the workspace
                               // A range that crosses a k tile builds a second table, on the critical path of the grid. With a
                               // multiple of `tiles` ranges (vq_for_block_range cuts them at tile boundaries then), every block
                               // builds one; worth up to 10% of the slots.
                let aligned = tiles * (row_groups / tiles);
                let one_table = aligned > 0
                    && 10 * aligned >= 9 * row_groups
                    && row_blocks >= row_groups / tiles;
                if one_table {
                    row_groups = aligned;
                }
                note("lut blocks", row_groups.to_string(), format!(
                    "stream mode: {units} (k tile, row block) units cut into {row_groups} equal ranges ({} resident blocks per SM, \
                     >= {} row blocks each); {}, partial sums reduced with atomics",
                    row_block_min_blocks(kernel, warps),
                    warps * rows_per_warp,
                    if one_table {
                        format!("{} ranges per k tile, so a block builds one table", row_groups / tiles)
                    } else {
                        "a block builds one table per k tile it touches (1-2)".to_string()
                    }
                ));
            }
        }
        if kernel == KernelKind::LutLarge {
            // Stream mode over (unit, 32-row group) pairs, unit major (kernels/vq_lut_large.cuh). With fewer units
            // than SMs, each unit's rows are cut into the same number of ranges (every block builds one table);
            // otherwise one block per SM and ranges that cross units rebuild once.
            let units = tiles * 4 * config.r as u32;
            let row_32 = (n as u32).div_ceil(32);
            let blocks = if units <= gpu.sm_count {
                units * (gpu.sm_count / units)
            } else {
                gpu.sm_count
            };
            row_groups = blocks.min(units * row_32).max(1);
            split = tiles;
            tiles_per_split = 1;
            note(
                "lut units",
                format!("{units} x {row_32}"),
                format!(
                    "{tiles} k tiles x 4 lane columns x {} stages, each a {} KiB table ({entries} entries x {} groups) for \
                     {n} rows in groups of 32; cut into {row_groups} equal ranges, one block per SM; partial sums reduced \
                     with atomics",
                    config.r,
                    lutl_table_bytes / 1024,
                    geo.vpc
                ),
            );
        }

        // LUT-large: the table build reads the stage's codebook from shared memory when it fits in the staging region
        // (one bulk copy, instead of ~2^b / (threads / row words) dependent rounds of L2 loads per thread).
        let lutl_cb_stage = kernel == KernelKind::LutLarge
            && if code_tma {
                cb_bytes <= lutl_region(warps, false)
            } else {
                lutl_smem(warps, true) <= gpu.smem_per_block_optin
            };
        if kernel == KernelKind::LutLarge {
            note(
                "code loads",
                if code_tma { "TMA" } else { "lane layout" }.into(),
                if code_tma {
                    "tile layout, where a warp's 32 chunks sit 4·L words apart: one tensor copy per warp step (override)".into()
                } else {
                    "codes re-packed at upload per (unit, 32 rows), word-major across the lanes: each load is one 128-byte \
                     line and a unit reads only its stage's bits (--tma true: the tile layout through TMA copies)"
                        .into()
                },
            );
            note(
                "codebook",
                if lutl_cb_stage { "staged" } else { "L1" }.into(),
                format!(
                    "{} KiB per stage for the table build{}",
                    cb_bytes / 1024,
                    if lutl_cb_stage {
                        ": one bulk copy into shared memory"
                    } else {
                        ": does not fit next to the table, read through L1"
                    }
                ),
            );
        }

        // 6. Shared memory and launch shape (must match the device-side layout in the templates).
        let smem_bytes = match kernel {
            KernelKind::Dequant => {
                let sets = match config.scope {
                    Scope::Tile { cols, .. } => (tiles_per_split * tk).div_ceil(cols as u32) + 1,
                    _ => 1,
                };
                m_tile * tiles_per_split * tk * 2 + cb_stage(sets, n_shared) + e8p_bytes
            }
            KernelKind::Lut => lut_smem,
            KernelKind::Replica => replica_smem(warps, rows_per_warp),
            KernelKind::LutLarge => lutl_smem(warps, lutl_cb_stage),
            KernelKind::Mma => mma_smem,
            KernelKind::DequantGemm | KernelKind::Sorted | KernelKind::E8pLut => 0,
        };
        if smem_bytes > gpu.smem_per_block_optin {
            return Err(CodegenError::DoesNotFit(format!(
                "plan needs {smem_bytes} B of shared memory per block, the device allows {}",
                gpu.smem_per_block_optin
            )));
        }
        if let Scope::Tile { rows, .. } = config.scope {
            if kernel == KernelKind::Dequant
                && n_shared > 0
                && !(rows as u32).is_multiple_of(8 * warps)
            {
                return Err(CodegenError::Unsupported(format!(
                    "a block of {} rows must lie inside one {rows}-row codebook tile",
                    8 * warps
                )));
            }
        }
        let grid = if (kernel == KernelKind::Lut && lut_chunks == 0)
            || matches!(kernel, KernelKind::LutLarge | KernelKind::Replica)
        {
            (row_groups, 1, 1) // stream mode: blockIdx.x picks a range of (k tile, row block) units
        } else {
            (row_groups, split, m_groups)
        };
        note(
            "grid",
            format!("{} x {} x {}", grid.0, grid.1, grid.2),
            format!("{threads} threads, {smem_bytes} B shared memory per block"),
        );
        let in_flight = match ov.in_flight {
            Some(f) if kernel != KernelKind::Lut => {
                return Err(CodegenError::Unsupported(format!(
                    "--in-flight {f}: chunks of codes in flight are a parameter of the LUT GeMV, this plan uses the {kernel:?} kernel"
                )))
            }
            Some(f) if !(2..=8).contains(&f) => {
                return Err(CodegenError::Invalid(format!(
                    "chunks of codes in flight must be 2 to 8, not {f}"
                )))
            }
            Some(f) => f,
            None => (LUT_IN_FLIGHT / rows_per_warp).max(2),
        };
        if kernel == KernelKind::Lut {
            note(
                "in flight",
                format!("{in_flight} chunks{}", if ov.in_flight.is_some() { " (override)" } else { "" }),
                format!(
                    "a ring of chunk buffers: a warp's codes for the next {} chunk(s) ({} bytes a lane) are loaded before \
                     the table build and kept in flight after it",
                    in_flight - 1,
                    16 * (in_flight - 1) * rows_per_warp
                ),
            );
        }
        Ok(Plan {
            config: *config,
            op,
            m,
            k,
            n,
            level,
            kernel,
            geometry: (geo.rb, geo.l, geo.vpc),
            warps,
            rows_per_warp,
            lut_chunks,
            mt,
            wn,
            m_tile,
            split,
            tiles_per_split,
            n_reg,
            n_shared,
            cb_copies,
            x_hoist,
            mma_pipe: pipe,
            code_tma: kernel == KernelKind::LutLarge && code_tma,
            cb_stage: lutl_cb_stage,
            in_flight,
            e8p_decode: 0,
            frequency_ordered,
            smem_bytes,
            grid,
            block: threads,
            decisions: d.into_inner(),
        })
    }

    /// Whether the main kernel leaves fp32 partial sums in the workspace, for the finalize kernel to scale and
    /// convert (split-K and the LUT-large GeMV).
    pub fn uses_workspace(&self) -> bool {
        self.split > 1
            || matches!(
                self.kernel,
                KernelKind::LutLarge | KernelKind::Sorted | KernelKind::E8pLut
            )
    }

    /// Number of k tiles per row.
    pub fn k_tiles(&self) -> u32 {
        let geo = TileGeometry::of(&self.config);
        self.k.div_ceil(self.config.v).div_ceil(geo.tile_vectors()) as u32
    }

    /// Bytes that must move for one call: codes + codebooks + scales + activations in + outputs out.
    pub fn min_bytes(&self) -> usize {
        let c = &self.config;
        let codes = (self.n * (self.k / c.v) * c.r * c.b as usize).div_ceil(8);
        let cb = if c.codebook == CodebookKind::Learned {
            c.num_codebook_sets(self.n, self.k) * c.r * c.entries() * c.v * 2
        } else {
            1024
        };
        let scales = if c.per_channel_scale { self.n * 2 } else { 0 };
        codes + cb + scales + self.m * self.k * 2 + self.m * self.n * 2
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} {:?} m={} k={} n={} level={} kernel={:?}",
            self.config, self.op, self.m, self.k, self.n, self.level, self.kernel
        )?;
        for d in &self.decisions {
            writeln!(f, "  {:<14} {:<22} {}", d.what, d.value, d.why)?;
        }
        write!(
            f,
            "  summary        n_reg={} n_shared={} split={} tiles/split={} freq-ordered={} smem={}B grid={:?} block={}",
            self.n_reg, self.n_shared, self.split, self.tiles_per_split, self.frequency_ordered, self.smem_bytes, self.grid, self.block
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under programmatic launches a weight kernel may start before the kernel that writes its activations has
    /// finished, so it must call `vq_pdl_wait` before it reads them: the mma kernel in its body, after the loads that
    /// read only the weights, the others first thing in the entry.
    #[test]
    fn every_weight_kernel_waits_before_reading_the_activations() {
        use KernelKind::*;
        for (preset, m, kernel) in [
            ("aqlm-2x8", 1, Lut),
            ("gptvq2", 1, Replica),
            ("aqlm3", 1, LutLarge),
            ("quip4", 1, E8pLut),
            ("aqlm-1x16", 1, Sorted),
            ("quip4", 16, Mma),
            ("aqlm-2x8", 16, Mma),
            ("aqlm3", 48, Mma),
        ] {
            let p = gemv(preset, Level::Auto, m, 4096, 11008, &Overrides::default()).unwrap();
            assert_eq!(p.kernel, kernel, "{preset} m={m}");
            let unit = crate::instantiate(&p, None);
            let src = &unit.source;
            let entry_at = src.find(&format!("{}(", unit.entry)).unwrap();
            let entry = &src[entry_at..entry_at + src[entry_at..].find("\n}\n").unwrap()];
            if kernel == Mma {
                assert!(!entry.contains("vq_pdl_wait"), "{preset} m={m}: {entry}");
                let body = &src[src.find("void vq_mma_body(").unwrap()..];
                let wait = body.find("vq_pdl_wait();").expect("the mma body waits");
                assert!(
                    wait < body.find("x_frag(tile0").unwrap()
                        && wait < body.find("for (int tile").unwrap()
                );
            } else {
                assert!(entry.contains("vq_pdl_wait();"), "{preset} m={m}: {entry}");
            }
        }
    }

    /// The kernel of a default GeMV plan on sm_90 (panics when the planner rejects it).
    fn kernel_of(preset: &str, level: Level, m: usize, k: usize, n: usize) -> KernelKind {
        gemv(preset, level, m, k, n, &Overrides::default())
            .unwrap()
            .kernel
    }

    /// A GeMV plan on sm_90 with input features `k` and output features `n`.
    fn gemv(
        preset: &str,
        level: Level,
        m: usize,
        k: usize,
        n: usize,
        ov: &Overrides,
    ) -> Result<Plan> {
        let c: VqConfig = preset.parse().unwrap();
        Plan::new(
            &c,
            Op::Gemv,
            m,
            k,
            n,
            level,
            &GpuSpec::for_arch("sm_90").unwrap(),
            ov,
        )
    }

    fn unsupported<T>(r: Result<T>) -> bool {
        matches!(r, Err(CodegenError::Unsupported(_)))
    }

    fn mma_plan(preset: &str, m: usize, ov: &Overrides) -> Result<Plan> {
        gemv(preset, Level::Auto, m, 11008, 4096, ov)
    }

    #[test]
    fn e8p_lut_takes_batch_1_e8p_with_the_largest_unit_that_fits() {
        let ov = Overrides::default();
        // H100: 8 groups a unit (192 KiB of tables), 128 units on 8192 columns, one block per unit.
        let p = gemv("quip4", Level::Auto, 1, 8192, 22016, &ov).unwrap();
        assert_eq!((p.kernel, p.level), (KernelKind::E8pLut, Level::Lut));
        assert_eq!(
            (p.geometry.2, p.smem_bytes, p.block),
            (8, 196_608 + 8_192 + 264 + 16_384, 512)
        );
        assert_eq!(p.grid, (128, 1, 1));
        assert!(p.uses_workspace());
        // 64 units on 4096 columns: each unit's rows in two ranges.
        let small = gemv("quip4", Level::Auto, 1, 4096, 11008, &ov).unwrap();
        assert_eq!(small.grid, (128, 1, 1));
        let src = crate::instantiate(&p, None).source;
        assert!(src.contains("vq_e8p_lut_body") && src.contains("VPC = 8"));
        // sm_80 (163 KiB a block): 4 groups a unit.
        let c: VqConfig = "quip4".parse().unwrap();
        let a100 = Plan::new(
            &c,
            Op::Gemv,
            1,
            8192,
            22016,
            Level::Lut,
            &GpuSpec::for_arch("sm_80").unwrap(),
            &ov,
        )
        .unwrap();
        assert_eq!(
            (a100.kernel, a100.geometry.2, a100.smem_bytes),
            (KernelKind::E8pLut, 4, 98_304 + 4_096 + 132 + 16_384)
        );
        assert_eq!((p.e8p_decode, a100.e8p_decode), (3, 1));
        // Decoded groups: at most a unit, only on this kernel.
        let dg = |g: u32| Overrides {
            decode_groups: Some(g),
            ..Overrides::default()
        };
        assert_eq!(
            gemv("quip4", Level::Lut, 1, 8192, 22016, &dg(8))
                .unwrap()
                .e8p_decode,
            8
        );
        assert!(matches!(
            gemv("quip4", Level::Lut, 1, 8192, 22016, &dg(9)),
            Err(CodegenError::Invalid(_))
        ));
        assert!(unsupported(gemv(
            "aqlm3",
            Level::Lut,
            1,
            8192,
            22016,
            &dg(1)
        )));
        // Few rows (auto keeps the mma kernel: the tables would not be amortised), batch > 1 and learned codebooks.
        assert_eq!(
            kernel_of("quip4", Level::Auto, 1, 4096, 1024),
            KernelKind::Mma
        );
        assert_eq!(
            kernel_of("quip4", Level::Lut, 1, 4096, 1024),
            KernelKind::E8pLut
        );
        assert_eq!(
            kernel_of("quip4", Level::Auto, 16, 8192, 22016),
            KernelKind::Mma
        );
        assert!(unsupported(gemv("quip4", Level::Lut, 2, 8192, 22016, &ov)));
        let forced = |preset: &str| {
            gemv(
                preset,
                Level::Auto,
                1,
                8192,
                22016,
                &Overrides {
                    kernel: Some(KernelKind::E8pLut),
                    ..Overrides::default()
                },
            )
        };
        assert!(unsupported(forced("aqlm3")));
        assert!(forced("quip4").is_ok());
        // Parameters of other kernels are typed errors; warps 8, 16 or 32.
        let with = |o: Overrides| gemv("quip4", Level::Lut, 1, 8192, 22016, &o);
        assert!(unsupported(with(Overrides {
            in_flight: Some(3),
            ..Overrides::default()
        })));
        assert!(unsupported(with(Overrides {
            code_tma: Some(true),
            ..Overrides::default()
        })));
        assert_eq!(
            with(Overrides {
                warps: Some(32),
                ..Overrides::default()
            })
            .unwrap()
            .block,
            1024
        );
        assert!(matches!(
            with(Overrides {
                warps: Some(12),
                ..Overrides::default()
            }),
            Err(CodegenError::Invalid(_))
        ));
    }

    #[test]
    fn mma_small_codebooks_hoist_activations_and_replicate_entries() {
        let p = mma_plan("aqlm-2x8", 16, &Overrides::default()).unwrap();
        assert_eq!(p.kernel, KernelKind::Mma);
        assert!(p.x_hoist);
        assert_eq!(p.cb_copies, 8);
        // 2 stages x 256 entries x 16 B, 8 copies, next to the activation tile; 3 blocks per SM.
        assert!(p.smem_bytes >= 2 * 256 * 16 * 8);
        assert!(GpuSpec::for_arch("sm_90").unwrap().smem_per_sm / (p.smem_bytes + 1024) >= 3);
        let src = crate::instantiate(&p, None).source;
        assert!(src.contains("CB_COPIES = 8") && src.contains("XHOIST = true"));
        // Auto reads large codebooks through L1 (no shared tier), hoisted, in short k ranges; the explicit O4 level
        // keeps the paper's partial shared tier with row blocks outer.
        let big = mma_plan("aqlm3", 16, &Overrides::default()).unwrap();
        assert!(big.n_shared == 0 && big.x_hoist && big.cb_copies == 1);
        let o4 = gemv("aqlm3", Level::O4, 16, 11008, 4096, &Overrides::default()).unwrap();
        assert!(o4.n_shared > 0 && !o4.x_hoist);
        let wide = mma_plan("aqlm-2x8", 64, &Overrides::default()).unwrap();
        assert!(wide.wn == 1 && !wide.x_hoist);
    }

    #[test]
    fn batch_16_mma_fills_whole_waves_and_widens_blocks_where_lookups_limit() {
        let ov = Overrides::default();
        // gptvq2 (k tile's set staged): blocks of 8 warps x 4 row blocks cover a 256-row codebook band; 86 row groups
        // x 3 = 258 blocks, 2 per SM on 132 SMs (264 slots).
        let p = gemv("gptvq2", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!(
            (p.kernel, p.n_shared, p.warps, p.block, p.split),
            (KernelKind::Mma, 256, 8, 256, 3)
        );
        assert_eq!(p.cb_copies, 16);
        let small = gemv("gptvq2", Level::Auto, 16, 4096, 11008, &ov).unwrap();
        assert_eq!((small.warps, small.split), (8, 6));
        // A codebook band of 128 rows does not hold 8 warps x 4 row blocks (--cb-copies 1: see the next test).
        let narrow = gemv("vq<4,8,1>:tile=128x256", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!((narrow.warps, narrow.cb_copies), (4, 16));
        // aqlm-2x8 (staged codebook) and aqlm3 (4096 entries through L1): blocks of 8 warps.
        let staged = gemv("aqlm-2x8", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!((staged.warps, staged.block, staged.split), (8, 256, 3));
        let big = gemv("aqlm3", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!((big.warps, big.split), (8, 3));
        assert!(p.mma_pipe && staged.mma_pipe && big.mma_pipe);
        assert!(crate::instantiate(&big, None)
            .source
            .contains("PIPE = true"));
        // aqlm3's 512-column k tile at 4 warps (explicit O4) is 8 pieces a thread: not pipelined, old split rule.
        let o4 = gemv("aqlm3", Level::O4, 16, 8192, 22016, &ov).unwrap();
        assert!(o4.warps == 4 && !o4.mma_pipe);
        // aqlm-1x16 (65536 entries, read from L2) keeps short k ranges: more blocks hide its latency.
        let huge = gemv("aqlm-1x16", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!(
            (huge.warps, huge.split),
            (4, 8192u32.div_ceil(MMA_K_PER_BLOCK))
        );
        // Two m16 slices: the 4-warp kernel without the pipeline, as before.
        let m20 = gemv("aqlm-2x8", Level::Auto, 20, 8192, 22016, &ov).unwrap();
        assert!(m20.warps == 4 && !m20.mma_pipe);
        // An explicit --warps wins.
        let four = gemv(
            "aqlm3",
            Level::Auto,
            16,
            8192,
            22016,
            &Overrides {
                warps: Some(4),
                ..ov.clone()
            },
        )
        .unwrap();
        assert_eq!(four.warps, 4);
    }

    #[test]
    fn mma_row_blocks_per_warp_and_pipeline_overrides() {
        let ov = Overrides {
            rows_per_warp: Some(2),
            ..Overrides::default()
        };
        let p = gemv("aqlm3", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!((p.wn, p.warps), (2, 8));
        assert!(crate::instantiate(&p, None).source.contains("WN = 2"));
        let off = Overrides {
            pipe: Some(false),
            ..Overrides::default()
        };
        let q = gemv("aqlm-2x8", Level::Auto, 16, 8192, 22016, &off).unwrap();
        assert!(!q.mma_pipe && q.split != 3); // not pipelined: the older split rule
        let on = Overrides {
            pipe: Some(true),
            ..Overrides::default()
        };
        assert!(unsupported(gemv(
            "aqlm-2x8",
            Level::Auto,
            20,
            8192,
            22016,
            &on
        )));
    }

    #[test]
    fn per_tile_codebooks_at_batch_16_stage_the_k_tiles_set() {
        let ov = Overrides::default();
        let p = gemv("gptvq2", Level::Auto, 16, 8192, 22016, &ov).unwrap();
        assert_eq!(
            (p.n_shared, p.cb_copies, p.frequency_ordered),
            (256, 16, false)
        );
        assert_eq!(p.smem_bytes, 16 * 256 * 2 + 256 * 8 * 16);
        let src = crate::instantiate(&p, None).source;
        assert!(src.contains("CB_COPIES = 16") && src.contains("N_SHARED = 256"));
        // --cb-copies 1 reads the sets through L1; other counts are errors.
        let copies = |c: u32| {
            gemv(
                "gptvq2",
                Level::Auto,
                16,
                8192,
                22016,
                &Overrides {
                    cb_copies: Some(c),
                    ..ov.clone()
                },
            )
        };
        let l1 = copies(1).unwrap();
        // Nothing staged, so the blocks stay at 4 warps.
        assert_eq!((l1.n_shared, l1.cb_copies, l1.warps), (0, 1, 4));
        assert!(unsupported(copies(8)));
        // Codebook tiles narrower than a k tile (128 < 256 columns) keep the L1 path; so does batch 20.
        let narrow = gemv("vq<4,8,1>:tile=64x128", Level::Auto, 16, 4096, 4096, &ov).unwrap();
        assert_eq!(narrow.n_shared, 0);
        assert_eq!(
            gemv("gptvq2", Level::Auto, 20, 8192, 22016, &ov)
                .unwrap()
                .n_shared,
            0
        );
    }

    #[test]
    fn wave_split_takes_the_first_split_with_full_waves() {
        assert_eq!(wave_split(172, 528, 32), 3); // 516 / 528
        assert_eq!(wave_split(86, 528, 16), 6); // 516 / 528; 3 would leave half the slots idle
        assert_eq!(wave_split(86, 132, 52), 3); // 1.30 waves at 2, 1.95 at 3
        assert_eq!(wave_split(500, 132, 1), 1); // no room to split
    }

    #[test]
    fn large_codebooks_at_batch_1_take_the_lut_large_kernel() {
        let ov = Overrides::default();
        // aqlm3: a per-k-tile table would be 2 MiB; one (k tile, lane column, stage) table is 128 KiB.
        let p = gemv("aqlm3", Level::Auto, 1, 8192, 22016, &ov).unwrap();
        assert_eq!((p.kernel, p.level), (KernelKind::LutLarge, Level::Lut));
        assert!(p.uses_workspace() && !p.code_tma && p.cb_stage);
        let gpu = GpuSpec::for_arch("sm_90").unwrap();
        assert!(
            p.smem_bytes >= 4096 * 16 * 2 + 4096 * 16 && p.smem_bytes <= gpu.smem_per_block_optin
        );
        // 16 k tiles x 4 lane columns x 2 stages = 128 units: one block per unit.
        assert_eq!(p.grid, (128, 1, 1));
        let src = crate::instantiate(&p, None).source;
        assert!(
            src.contains("vq_lut_large_body") && src.contains("CODE_TMA = false, CB_STAGE = true")
        );
        // 4096x11008: 64 units, each split over two blocks.
        assert_eq!(
            gemv("aqlm3", Level::Auto, 1, 4096, 11008, &ov)
                .unwrap()
                .grid,
            (128, 1, 1)
        );
        // TMA on request (sm_90+): two code buffers per warp next to the table, still within the opt-in limit.
        let tma = Overrides {
            code_tma: Some(true),
            ..Overrides::default()
        };
        let t = gemv("aqlm3", Level::Lut, 1, 8192, 22016, &tma).unwrap();
        assert!(
            t.code_tma
                && t.smem_bytes <= gpu.smem_per_block_optin
                && t.smem_bytes >= 128 * 1024 + 96 * 1024
        );
        // Few rows: the table build would cost more than the lookups, so auto keeps the dequantizing GeMV, while the
        // explicit LUT level still runs it.
        assert_eq!(
            kernel_of("aqlm3", Level::Auto, 1, 4096, 1000),
            KernelKind::Dequant
        );
        assert_eq!(
            kernel_of("aqlm3", Level::Lut, 1, 4096, 1000),
            KernelKind::LutLarge
        );
        // Small codebooks keep the per-k-tile LUT; a 1 MiB codebook fits neither table.
        assert_eq!(
            kernel_of("aqlm-2x8", Level::Auto, 1, 8192, 22016),
            KernelKind::Lut
        );
        assert!(unsupported(gemv(
            "aqlm-1x16",
            Level::Lut,
            1,
            8192,
            22016,
            &ov
        )));
        // The kernel override cannot force it where it does not apply.
        let force = Overrides {
            kernel: Some(KernelKind::LutLarge),
            ..Overrides::default()
        };
        assert!(unsupported(gemv(
            "aqlm3",
            Level::Auto,
            4,
            8192,
            22016,
            &force
        )));
    }

    #[test]
    fn per_tile_codebooks_at_batch_1_take_the_replica_kernel() {
        let ov = Overrides::default();
        // gptvq2: 16 copies of 8-byte entries in 256-byte rows (64 KiB), whose two halves hold two sets; the codes
        // stay in registers, in pieces of 8 warps x 1 row block.
        let p = gemv("gptvq2", Level::Auto, 1, 8192, 22016, &ov).unwrap();
        assert_eq!((p.kernel, p.level), (KernelKind::Replica, Level::Replica));
        assert_eq!((p.warps, p.rows_per_warp), (8, 1));
        assert_eq!(p.smem_bytes, 256 * 256);
        // Two stages (aqlm-2x8 at REP): 128-byte rows (2 x 32 KiB), the code pieces after them.
        let p2 = gemv("aqlm-2x8", Level::Replica, 1, 8192, 22016, &ov).unwrap();
        assert_eq!(
            p2.smem_bytes,
            2 * 256 * 128 + 2 * p2.rows_per_warp * 8 * 512
        );
        assert!(p.uses_workspace() && p.n_shared == 0 && !p.frequency_ordered);
        // 3 resident blocks per SM (shared memory) over 32 k tiles x 86 bands.
        assert_eq!(p.grid, (3 * 132, 1, 1));
        let src = crate::instantiate(&p, None).source;
        assert!(src.contains("vq_replica_gemv_body") && src.contains("ROWS_PER_WARP = 1"));
        // Three blocks of 8 warps per SM in the launch bounds (<= 80 registers).
        assert!(
            src.contains("__launch_bounds__(256, 3)"),
            "{}",
            src.lines().last().unwrap_or("")
        );
        // Codebooks shared by the whole tensor keep the LUT at auto; the REP level still runs there.
        for (level, want) in [
            (Level::Auto, KernelKind::Lut),
            (Level::Replica, KernelKind::Replica),
        ] {
            assert_eq!(kernel_of("aqlm-2x8", level, 1, 8192, 22016), want);
        }
        // Batch > 1, 4096-entry codebooks and E8P are typed errors at the REP level.
        for (preset, m) in [("gptvq2", 2), ("aqlm3", 1), ("quip4", 1)] {
            assert!(unsupported(gemv(
                preset,
                Level::Replica,
                m,
                8192,
                22016,
                &ov
            )));
        }
        // Row-block overrides: a piece must stay inside one 256-row band, and the count is 1, 2, 4 or 8.
        let rpw = |r: u32, w: Option<u32>| {
            gemv(
                "gptvq2",
                Level::Replica,
                1,
                8192,
                22016,
                &Overrides {
                    rows_per_warp: Some(r),
                    warps: w,
                    ..Overrides::default()
                },
            )
        };
        // 256-byte rows of copies for one stage of 8-bit codes, whatever the piece (the codes are in registers).
        assert_eq!(rpw(4, None).unwrap().smem_bytes, 256 * 256);
        assert!(unsupported(rpw(8, None)));
        assert!(unsupported(rpw(4, Some(16))));
        assert!(matches!(rpw(3, None), Err(CodegenError::Invalid(_))));
        // Attention has no replica level.
        let g = GpuSpec::for_arch("sm_90").unwrap();
        let cq2 = VqConfig::preset("cq2").unwrap();
        assert!(unsupported(crate::attention::AttentionPlan::new(
            &cq2,
            1,
            1024,
            32,
            32,
            128,
            Level::Replica,
            &g
        )));
    }

    #[test]
    fn bad_codebook_copy_overrides_are_errors() {
        let copies = |preset: &str, c: u32| {
            mma_plan(
                preset,
                16,
                &Overrides {
                    cb_copies: Some(c),
                    ..Overrides::default()
                },
            )
        };
        assert!(matches!(
            copies("aqlm-2x8", 3),
            Err(CodegenError::Invalid(_))
        ));
        assert!(matches!(
            copies("aqlm-2x8", 16),
            Err(CodegenError::Invalid(_))
        ));
        assert!(unsupported(copies("aqlm3", 2)));
        assert_eq!(copies("aqlm-2x8", 2).unwrap().cb_copies, 2);
    }

    #[test]
    fn lut_stream_mode_builds_one_table_per_block_and_keeps_chunks_in_flight() {
        let lut = |k: usize, n: usize, ov: &Overrides| gemv("aqlm-2x8", Level::Auto, 1, k, n, ov);
        let none = Overrides::default();
        // 16 and 32 k tiles on 132 SMs: 8 and 4 ranges per k tile (128 blocks), so no range crosses a tile.
        for (k, n) in [(4096, 11008), (8192, 22016)] {
            let p = lut(k, n, &none).unwrap();
            assert_eq!(p.kernel, KernelKind::Lut);
            assert_eq!((p.lut_chunks, p.split, p.grid.0), (0, k as u32 / 256, 128));
            assert_eq!((p.warps, p.rows_per_warp, p.in_flight), (32, 1, 4));
        }
        // 48 k tiles: a multiple of them would leave 36 of 132 SMs idle, so the ranges cross tiles.
        assert_eq!(lut(12288, 4096, &none).unwrap().grid.0, 132);
        let flight = |f: u32| Overrides {
            in_flight: Some(f),
            ..Overrides::default()
        };
        assert_eq!(lut(4096, 11008, &flight(6)).unwrap().in_flight, 6);
        assert!(matches!(
            lut(4096, 11008, &flight(1)),
            Err(CodegenError::Invalid(_))
        ));
        assert!(matches!(
            lut(4096, 11008, &flight(9)),
            Err(CodegenError::Invalid(_))
        ));
        // Two row blocks per warp: two chunks in flight by default (the same row blocks as 4 x 1).
        let two_rb = Overrides {
            rows_per_warp: Some(2),
            ..Overrides::default()
        };
        assert_eq!(lut(4096, 11008, &two_rb).unwrap().in_flight, 2);
        // Other kernels have no ring of chunks.
        assert!(unsupported(gemv(
            "aqlm3",
            Level::Auto,
            1,
            4096,
            11008,
            &flight(4)
        )));
    }
}
