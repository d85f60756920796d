//! Turns a [`Plan`] into one self-contained CUDA translation unit: the templates from `kernels/` (inlined, since
//! NVRTC sees no files) followed by a small instantiation — a `Cfg` struct of compile-time constants and one
//! `extern "C"` wrapper per specialisation, named from a hash of its key.

use crate::plan::{KernelKind, Plan};
use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{DefaultHasher, Hash, Hasher};
use vqllm_vq::{CodebookKind, Scope};

/// The CUDA templates, embedded at build time.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "vq_common.cuh",
        include_str!("../../../kernels/vq_common.cuh"),
    ),
    (
        "e8p_fast.cuh",
        include_str!("../../../kernels/e8p_fast.cuh"),
    ),
    ("vq_gemv.cuh", include_str!("../../../kernels/vq_gemv.cuh")),
    (
        "vq_lut_gemv.cuh",
        include_str!("../../../kernels/vq_lut_gemv.cuh"),
    ),
    (
        "vq_replica_gemv.cuh",
        include_str!("../../../kernels/vq_replica_gemv.cuh"),
    ),
    (
        "vq_lut_large.cuh",
        include_str!("../../../kernels/vq_lut_large.cuh"),
    ),
    (
        "vq_sorted_gemv.cuh",
        include_str!("../../../kernels/vq_sorted_gemv.cuh"),
    ),
    (
        "vq_e8p_lut.cuh",
        include_str!("../../../kernels/vq_e8p_lut.cuh"),
    ),
    ("vq_mma.cuh", include_str!("../../../kernels/vq_mma.cuh")),
    (
        "vq_dequant.cuh",
        include_str!("../../../kernels/vq_dequant.cuh"),
    ),
    (
        "hadamard.cuh",
        include_str!("../../../kernels/hadamard.cuh"),
    ),
    (
        "attention_fp16.cuh",
        include_str!("../../../kernels/attention_fp16.cuh"),
    ),
    (
        "attention_vq.cuh",
        include_str!("../../../kernels/attention_vq.cuh"),
    ),
    (
        "kv_quantize.cuh",
        include_str!("../../../kernels/kv_quantize.cuh"),
    ),
    (
        "kv_layout.cuh",
        include_str!("../../../kernels/kv_layout.cuh"),
    ),
    (
        "read_floor.cuh",
        include_str!("../../../kernels/read_floor.cuh"),
    ),
];

/// Threads per block of the streaming-floor kernel (`kernels/read_floor.cuh`).
pub const READ_FLOOR_THREADS: u32 = 512;

/// The translation unit of the streaming-floor kernel, `vq_read_floor(src, words, sink)`, and its entry name: four
/// 16-byte loads in flight a thread, [`READ_FLOOR_THREADS`] threads a block.
pub fn read_floor_unit() -> (String, &'static str) {
    const ENTRY: &str = "vq_read_floor";
    let mut source = expand(&["read_floor.cuh"]);
    let _ = writeln!(
        source,
        "extern \"C\" __global__ void __launch_bounds__({READ_FLOOR_THREADS}) {ENTRY}(const uint4* __restrict__ src, \
         int words, unsigned* __restrict__ sink) {{ vq_read_floor_body<4>(src, words, sink); }}"
    );
    (source, ENTRY)
}

/// Source text of template `name` with its local `#include "..."` lines expanded once.
pub fn expand(names: &[&str]) -> String {
    let mut out = String::new();
    let mut seen = HashSet::new();
    for name in names {
        expand_into(name, &mut seen, &mut out);
    }
    out
}

fn expand_into(name: &str, seen: &mut HashSet<String>, out: &mut String) {
    if !seen.insert(name.to_string()) {
        return;
    }
    let Some((_, text)) = TEMPLATES.iter().find(|(n, _)| *n == name) else {
        let _ = writeln!(out, "#error \"template {name} is not embedded\"");
        return;
    };
    for line in text.lines() {
        let t = line.trim();
        if t == "#pragma once" {
            continue;
        }
        if let Some(inc) = t
            .strip_prefix("#include \"")
            .and_then(|s| s.strip_suffix('"'))
        {
            expand_into(inc, seen, out);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// A generated translation unit and the names of its entry points.
#[derive(Clone, Debug)]
pub struct KernelSource {
    pub source: String,
    /// The main kernel's `extern "C"` name.
    pub entry: String,
    /// The split-K epilogue's name (present in every unit).
    pub finalize: String,
    /// The Hadamard kernel's name, when the config needs one and the main kernel does not transform itself.
    pub hadamard: Option<String>,
    /// The main kernel applies the Hadamard transform to its activations itself (the E8P LUT GeMV), reading the signs
    /// from its `aux` argument.
    pub hadamard_in_main: bool,
}

/// Generates the translation unit for `plan`. `hadamard_block` is the activation transform's block size for
/// Hadamard configs.
pub fn instantiate(plan: &Plan, hadamard_block: Option<usize>) -> KernelSource {
    let c = &plan.config;
    let (rb, l, vpc) = plan.geometry;
    let _ = rb;
    let (tile_rows, tile_cols) = match c.scope {
        Scope::Tile { rows, cols } => (rows, cols),
        _ => (0, 0),
    };
    let e8p = c.codebook == CodebookKind::E8p;
    let cfg = format!(
        "  static constexpr int V = {}, B = {}, R = {}, L = {l}, VPC = {vpc};\n\
         \x20 static constexpr int TILE_ROWS = {tile_rows}, TILE_COLS = {tile_cols};\n\
         \x20 static constexpr int N_REG = {}, N_SHARED = {};\n\
         \x20 static constexpr int M = {}, WARPS = {}, SPLIT = {}, ROWS_PER_WARP = {}, MT = {}, WN = {};\n\
         \x20 static constexpr bool E8P = {e8p}, SCALE = {};\n\
         \x20 static constexpr int CB_COPIES = {};\n\
         \x20 static constexpr bool XHOIST = {}, PIPE = {};\n\
         \x20 static constexpr bool CODE_TMA = {}, CB_STAGE = {};\n\
         \x20 static constexpr int IN_FLIGHT = {};\n",
        c.v, c.b, c.r, plan.n_reg, plan.n_shared, plan.m_tile, plan.warps, plan.split, plan.rows_per_warp, plan.mt, plan.wn,
        c.per_channel_scale, plan.cb_copies, plan.x_hoist, plan.mma_pipe, plan.code_tma, plan.cb_stage,
        plan.in_flight
    );
    // The E8P LUT GeMV transforms the activations itself where its plan reserved the buffer for it: the transform's
    // block is the one the planner assumed (`hadamard_block(k)`, not a different block stored with the weight).
    let fused_hadamard = hadamard_block.filter(|&b| {
        plan.kernel == KernelKind::E8pLut
            && c.hadamard
            && b == crate::layout::hadamard_block(plan.k)
    });
    let cfg = match plan.kernel {
        KernelKind::Sorted => format!(
            "{cfg}  static constexpr int CHUNK_BITS = {};\n",
            crate::sorted::CHUNK_BITS
        ),
        KernelKind::E8pLut => format!(
            "{cfg}  static constexpr int HADAMARD = {}, DECODE = {};\n",
            fused_hadamard.unwrap_or(0),
            plan.e8p_decode
        ),
        _ => cfg,
    };
    let mut h = DefaultHasher::new();
    cfg.hash(&mut h);
    plan.kernel.hash(&mut h);
    hadamard_block.hash(&mut h);
    let key = format!("{:016x}", h.finish());
    let (template, prefix) = match plan.kernel {
        KernelKind::Dequant => ("vq_gemv.cuh", "vq_gemv"),
        KernelKind::Lut => ("vq_lut_gemv.cuh", "vq_lut_gemv"),
        KernelKind::LutLarge => ("vq_lut_large.cuh", "vq_lut_large"),
        KernelKind::Replica => ("vq_replica_gemv.cuh", "vq_replica_gemv"),
        KernelKind::Mma => ("vq_mma.cuh", "vq_mma"),
        KernelKind::DequantGemm => ("vq_dequant.cuh", "vq_dequant"),
        KernelKind::Sorted => ("vq_sorted_gemv.cuh", "vq_sorted_gemv"),
        KernelKind::E8pLut => ("vq_e8p_lut.cuh", "vq_e8p_lut"),
    };
    let mut src = String::new();
    let _ = writeln!(
        src,
        "// vqllm generated: {} {:?} level {} kernel {:?}",
        c, plan.op, plan.level, plan.kernel
    );
    let mut templates = vec![template, "vq_gemv.cuh"];
    // A separate transform kernel, unless the main kernel does it.
    let hadamard_block = hadamard_block.filter(|_| fused_hadamard.is_none());
    if hadamard_block.is_some() {
        templates.push("hadamard.cuh");
    }
    src.push_str(&expand(&templates));
    let _ = write!(src, "\nstruct Cfg_{key} {{\n{cfg}}};\n");
    let entry = format!("{prefix}_{key}");
    let args = "const uint4* __restrict__ codes, const __half* __restrict__ codebooks, const __half* __restrict__ scales, \
                const uint32_t* __restrict__ e8p_abs, const __half* __restrict__ x, __half* __restrict__ y, float* __restrict__ ws, \
                int m_total, int rows, int cols, int kb, int tiles_per_split, float ss0, float ss1, float ss2, float ss3, \
                const void* __restrict__ aux";
    let call = match plan.kernel {
        KernelKind::Dequant => format!(
            "vq_gemv_body<Cfg_{key}>(codes, codebooks, scales, e8p_abs, x, y, ws, rows, cols, kb, tiles_per_split, ss0, ss1, ss2, ss3);"
        ),
        KernelKind::Lut => format!("vq_lut_gemv_body<Cfg_{key}>(codes, codebooks, scales, x, y, ws, rows, cols, kb, /* chunks */ tiles_per_split);"),
        KernelKind::Replica => format!("vq_replica_gemv_body<Cfg_{key}>(codes, codebooks, scales, x, y, ws, rows, cols, kb); (void)tiles_per_split;"),
        KernelKind::LutLarge => format!(
            "vq_lut_large_body<Cfg_{key}>(Cfg_{key}::CODE_TMA ? aux /* code tensor map */ : (const void*)codes, codebooks, x, ws, rows, cols, kb); (void)scales; (void)y; (void)tiles_per_split;"
        ),
        KernelKind::DequantGemm => format!(
            "vq_dequant_body<Cfg_{key}>(codes, codebooks, scales, e8p_abs, y, rows, cols, kb, ss0, ss1); (void)x; (void)ws; (void)tiles_per_split;"
        ),
        KernelKind::Sorted => format!(
            "vq_sorted_gemv_body<Cfg_{key}>(codes, static_cast<const uint32_t*>(aux) /* tile starts and rows */, \
             codebooks, x, ws, rows, cols); (void)scales; (void)y; (void)kb; (void)tiles_per_split;"
        ),
        KernelKind::Mma => format!(
            "vq_mma_body<Cfg_{key}>(codes, codebooks, scales, e8p_abs, x, y, ws, m_total, rows, cols, kb, tiles_per_split, ss0, ss1);"
        ),
        KernelKind::E8pLut => format!(
            "vq_e8p_lut_body<Cfg_{key}>(reinterpret_cast<const uint32_t*>(codes), e8p_abs, x, \
             static_cast<const __half*>(aux) /* Hadamard signs, when fused */, ws, rows, cols, ss0, ss1, ss2, ss3); \
             (void)codebooks; (void)scales; (void)y; (void)kb; (void)tiles_per_split;"
        ),
    };
    // Programmatic dependent launch (crates/cuda/src/pdl.rs): a kernel followed by the split-K finalize lets it be
    // scheduled at once (its blocks are small and only wait). Without a finalize, the next kernel is the next
    // layer's or call's weight kernel: triggering early let its blocks crowd the SMs this one still runs on
    // (aqlm-1x16 at batch 1, 184 -> 258 us on an H100, perf-notes v0.18), so it is left to the implicit trigger at exit.
    let trigger = if plan.uses_workspace() {
        "vq_pdl_trigger();\n  "
    } else {
        ""
    };
    // The mma kernel waits inside, after the loads that read only the weights (kernels/vq_mma.cuh), so those overlap
    // the kernel before it.
    let wait = if plan.kernel == KernelKind::Mma {
        ""
    } else {
        "vq_pdl_wait();\n  "
    };
    let _ = write!(
        src,
        "extern \"C\" __global__ void __launch_bounds__({}{}) {entry}({args}) {{\n  (void)m_total; (void)ss2; (void)ss3; (void)aux;\n  {trigger}{wait}{call}\n}}\n",
        plan.block,
        // LUT: 3 resident blocks of 256 (<= 85 registers) or 2 of 512 (<= 64) per SM (ptxas's default choice spills).
        // Others: no minimum (a minimum of 1 made ptxas raise the dequant kernel to 106 registers, 30% slower).
        match plan.kernel {
            KernelKind::Lut | KernelKind::Replica => format!(
                ", {}",
                crate::plan::row_block_min_blocks(plan.kernel, plan.warps)
            ),
            KernelKind::LutLarge | KernelKind::Sorted | KernelKind::E8pLut => ", 1".into(),
            _ => String::new(),
        }
    );
    let finalize = format!("vq_finalize_{key}");
    let _ = write!(
        src,
        "extern \"C\" __global__ void {finalize}(float* ws, const __half* scales, int has_scale, __half* y, int rows, int total) {{\n  \
         vq_pdl_wait();\n  vq_gemv_finalize_body(ws, scales, has_scale != 0, y, rows, total);\n}}\n"
    );
    // The separate transform runs before the weight kernel (batch > 1): launched programmatically it waits for the
    // kernel before it, and it triggers at once so that the weight kernel's blocks are scheduled while it runs (its
    // few small blocks leave them room) and only wait for its output.
    let hadamard = hadamard_block.map(|b| {
        let name = format!("vq_hadamard_{b}_{key}");
        let _ = write!(
            src,
            "extern \"C\" __global__ void {name}(const __half* x, const __half* signs, __half* out, int cols) {{\n  \
             vq_pdl_trigger();\n  vq_pdl_wait();\n  vq_hadamard_body<{b}>(x, signs, out, cols);\n}}\n"
        );
        name
    });
    KernelSource {
        source: src,
        entry,
        finalize,
        hadamard,
        hadamard_in_main: fused_hadamard.is_some(),
    }
}
