// vq_common.cuh — pieces shared by every VQ weight kernel: reading codes from the tile layout, the codebook
// cache (register / shared / global tiers) and decoding one vector.
//
// A configuration struct `Cfg`, emitted by vqllm-codegen, carries the compile-time parameters:
//   V, B, R          VQ<v, b, r>
//   L, VPC           16-byte words per lane chunk and vectors per chunk (docs/kernel-layout.md)
//   E8P              codes are QuIP# E8P lattice codes (decoded by bit operations)
//   TILE_ROWS/COLS   per-tile codebook sets (0 = one set for the tensor)
//   SCALE            per-output-row fp16 scale
//   N_REG, N_SHARED  codebook-cache boundaries: entries [0, N_REG) in registers, [N_REG, N_SHARED) in shared
//                    memory, the rest in global memory (entries are frequency-ordered offline)
#pragma once
#include <cuda_fp16.h>
// NVRTC has no C library headers: the fixed-width types we use.
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;

#define VQ_FULL_MASK 0xffffffffu

// log2 of a power of two, at compile time (NVRTC has no __builtin_ctz in constant expressions).
__host__ __device__ constexpr int vq_log2(int x) { return x <= 1 ? 0 : 1 + vq_log2(x / 2); }

// Programmatic dependent launch (crates/cuda/src/pdl.rs, sm_90+). A kernel launched programmatically may be
// scheduled before the kernel ahead of it in the stream has finished, so every weight kernel and the split-K finalize
// call `vq_pdl_wait` before they read anything that kernel may write: it holds the grid until the kernel before it has
// finished and its writes are visible. Most call it first thing; the mma kernel first loads what depends on the
// weights only (its first codes, the E8P table, staged codebooks), so that work overlaps the kernel before it. A
// weight kernel followed by the finalize calls `vq_pdl_trigger` first, which lets the finalize be scheduled once all
// of this grid's blocks are resident (without it, the trigger is implicit when the grid exits). The finalize does not
// trigger: the next weight kernel's blocks would take the SMs the finalize's blocks still need (quip4 at batch 16,
// 69.4 -> 73.5 us on 8192x22016, perf-notes v0.26). Both are no-ops for a plain launch.
__device__ __forceinline__ void vq_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void vq_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Adds two floats to a split-K partial sum, ws[0..1] (8-byte aligned): on sm_90+ one vector reduction
// (`red.global.add.v2.f32`) instead of two scalar atomics (see vq_mma_reduce_fragment in vq_mma.cuh).
__device__ __forceinline__ void vq_red_add2(float* ws, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" ::"l"(ws), "f"(a), "f"(b) : "memory");
#else
    atomicAdd(ws, a);
    atomicAdd(ws + 1, b);
#endif
}

// Loads a lane's chunk (L uint4 words) of tile `tile` into registers, bypassing L1 (streamed once).
// Makes x opaque to the optimiser: under a tight register cap ptxas otherwise rematerialises per-lane constants
// (table offsets) inside hot loops, ~50-100 extra instructions per step in the SASS of the LUT kernels.
__device__ __forceinline__ void vq_pin(uint32_t& x) { asm volatile("mov.b32 %0, %0;" : "+r"(x)); }

// One-PRMT lookup addresses into a table of 256-byte rows indexed by 8-bit codes (the LUT GeMV and the LUT
// attention level): two column byte offsets (< 256) sit in the low bytes of the two 16-bit halves of a pinned
// register, and code·256 + column is one PRMT of the code word and that register.
__device__ __forceinline__ uint32_t vq_lut_offset_pair(uint32_t even, uint32_t odd) {
    uint32_t pair = even | odd << 16;
    vq_pin(pair);
    return pair;
}

// byte 0 = the column offset of half `odd` of `pair`, byte 1 = code byte k of `codes`, bytes 2-3 = 0 (the pair's
// zero bytes).
__device__ __forceinline__ uint32_t vq_lut_addr_pair(uint32_t codes, uint32_t pair, uint32_t k, bool odd) {
    return __byte_perm(codes, pair, 0x7500u | k << 4 | (odd ? 6u : 4u));
}

// The B-bit code at bit `bit` (a compile-time constant after unrolling) of a lane's chunk of W words: one PRMT for
// byte-aligned 8-bit codes, else a shift and mask, or a funnel shift across two words.
template <int B, int W>
__device__ __forceinline__ uint32_t vq_code_at(const uint32_t (&w)[W], int bit) {
    constexpr uint32_t MASK = (1u << B) - 1;
    if (B == 8 && bit % 8 == 0) return __byte_perm(w[bit / 32], 0u, 0x4440u | ((bit % 32) / 8));
    if ((bit % 32) + B <= 32) return (w[bit / 32] >> (bit % 32)) & MASK;
    return __funnelshift_r(w[bit / 32], w[min(bit / 32 + 1, W - 1)], bit % 32) & MASK;
}

// Stream mode of the batch-1 kernels: the (unit, part) pairs, unit major (`units` x `parts`), are cut into gridDim.x
// equal ranges, so every block gets the same amount of work (no partial last wave); `fn(unit, part_lo, part_hi)` runs
// once for each unit the block's range touches.
template <class Fn>
__device__ __forceinline__ void vq_for_block_range(long long units, int parts, Fn&& fn) {
    const long long total = units * parts;
    long long u = total * blockIdx.x / gridDim.x;
    const long long u1 = total * (blockIdx.x + 1) / gridDim.x;
    while (u < u1) {
        const int unit = (int)(u / parts), lo = (int)(u % parts);
        const int hi = (int)min((long long)parts, lo + (u1 - u));
        fn(unit, lo, hi);
        u += hi - lo;
    }
}

// Lane layout of the batch-1 kernels that take one weight row per lane (vq_lut_large.cuh, vq_e8p_lut.cuh): a unit's
// codes are W words per row, stored [unit][32-row group][word][lane], so lane = row and each load is one coalesced
// 128-byte line. This lane's words of row group rw of `unit` (nothing past rw_hi).
template <int W>
__device__ __forceinline__ void vq_load_lane_words(const uint32_t* __restrict__ codes, int row_groups, int unit, int rw,
                                                   int rw_hi, uint32_t (&w)[W]) {
    const uint32_t* unit_codes = codes + (size_t)unit * row_groups * 32 * W + threadIdx.x % 32;
    if (rw < rw_hi) {
#pragma unroll
        for (int i = 0; i < W; ++i) w[i] = __ldcs(unit_codes + ((size_t)rw * W + i) * 32);
    }
}

// A warp's row groups rw_lo + warp, + WARPS, ... below rw_hi, two in flight: `first` holds the first one (loaded
// early, e.g. before a table build), load(rw, w) fetches one into w, process(rw, w) consumes it.
template <int W, int WARPS, class Load, class Process>
__device__ __forceinline__ void vq_lane_row_groups(int rw_lo, int rw_hi, const uint32_t (&first)[W], Load&& load,
                                                   Process&& process) {
    uint32_t buf[2][W];
#pragma unroll
    for (int i = 0; i < W; ++i) buf[0][i] = first[i];
    for (int rw = rw_lo + (int)(threadIdx.x / 32); rw < rw_hi; rw += 2 * WARPS) {
        load(rw + WARPS, buf[1]);
        process(rw, buf[0]);
        if (rw + WARPS >= rw_hi) break;
        load(rw + 2 * WARPS, buf[0]);
        process(rw + WARPS, buf[1]);
    }
}

// KEEP_IN_L1: allocate in L1 instead, for callers whose lanes' chunks share sectors (vq_lut_large.cuh).
template <int L, bool KEEP_IN_L1 = false>
__device__ __forceinline__ void vq_load_chunk(const uint4* __restrict__ codes, size_t tile, int lane, uint32_t (&w)[4 * L]) {
    const uint4* p = codes + (tile * 32 + lane) * L;
#pragma unroll
    for (int i = 0; i < L; ++i) {
        uint4 u;
        if constexpr (KEEP_IN_L1)
            asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
                         : "l"(p + i));
        else
            asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
                         : "l"(p + i));
        w[4 * i + 0] = u.x;
        w[4 * i + 1] = u.y;
        w[4 * i + 2] = u.z;
        w[4 * i + 3] = u.w;
    }
}

// One codebook entry of V fp16 values as V/2 half2 registers.
template <int V>
struct Entry {
    static constexpr int H2 = V / 2;
    __half2 h[H2];
};

template <int V>
__device__ __forceinline__ void vq_load_entry_global(const __half* __restrict__ p, Entry<V>& e) {
    if constexpr (V == 8) {
        uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
        e.h[0] = *reinterpret_cast<__half2*>(&u.x);
        e.h[1] = *reinterpret_cast<__half2*>(&u.y);
        e.h[2] = *reinterpret_cast<__half2*>(&u.z);
        e.h[3] = *reinterpret_cast<__half2*>(&u.w);
    } else if constexpr (V == 4) {
        uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        e.h[0] = *reinterpret_cast<__half2*>(&u.x);
        e.h[1] = *reinterpret_cast<__half2*>(&u.y);
    } else if constexpr (V == 2) {
        e.h[0] = __ldg(reinterpret_cast<const __half2*>(p));
    } else {
#pragma unroll
        for (int i = 0; i < V / 8; ++i) {
            uint4 u = __ldg(reinterpret_cast<const uint4*>(p) + i);
            e.h[4 * i + 0] = *reinterpret_cast<__half2*>(&u.x);
            e.h[4 * i + 1] = *reinterpret_cast<__half2*>(&u.y);
            e.h[4 * i + 2] = *reinterpret_cast<__half2*>(&u.z);
            e.h[4 * i + 3] = *reinterpret_cast<__half2*>(&u.w);
        }
    }
}

template <int V>
__device__ __forceinline__ void vq_load_entry_shared(const __half* p, Entry<V>& e) {
#pragma unroll
    for (int i = 0; i < V / 2; ++i) e.h[i] = reinterpret_cast<const __half2*>(p)[i];
}

// The same from a 32-bit shared-window address known to be 2V-byte aligned (one vector load; ptxas cannot see the
// alignment of an address formed by PRMT, and would split the load).
template <int V>
__device__ __forceinline__ void vq_load_entry_shared_at(uint32_t addr, Entry<V>& e) {
    uint32_t* r = reinterpret_cast<uint32_t*>(e.h);
    if constexpr (V == 2) {
        asm volatile("ld.shared.b32 %0, [%1];" : "=r"(r[0]) : "r"(addr));
    } else if constexpr (V == 4) {
        asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    } else {
        static_assert(V == 8, "entries of 4, 8 or 16 bytes");
        asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    }
}

// Bank-spread codebook copies (replica GeMV, mma kernel's per-k-tile stage): an entry of V halves (V/2 32-bit words at
// `w`) repeated across a 16-byte word, 16 / (2V) copies ...
template <int V>
__device__ __forceinline__ uint4 vq_entry_word(const uint32_t* w) {
    return make_uint4(w[0], w[1 % (V / 2)], w[2 % (V / 2)], w[3 % (V / 2)]);
}

// ... and that word written 8 times as the entry's 128-byte row, word k at slot (k + rot) % 8, so that 8 lanes with
// different rot % 8 write 8 different bank groups in one store phase.
__device__ __forceinline__ void vq_store_copy_row(uint4* row, uint4 word, int rot) {
#pragma unroll
    for (int k = 0; k < 8; ++k) row[(k + rot) & 7] = word;
}

// The register tier: lane `l` holds entry `l` of each residual stage (when l < N_REG); any lane obtains entry
// `idx < N_REG` with V/2 shuffles. All lanes of the warp must call this together (no divergence).
template <class Cfg>
struct RegTier {
    static constexpr int WORDS = (Cfg::N_REG > 0) ? Cfg::V / 2 : 1;
    __half2 held[Cfg::R][WORDS];

    __device__ __forceinline__ void load(const __half* __restrict__ cb_set, int lane) {
        if constexpr (Cfg::N_REG > 0) {
#pragma unroll
            for (int s = 0; s < Cfg::R; ++s) {
                const int e = lane < Cfg::N_REG ? lane : 0;
                const __half2* p = reinterpret_cast<const __half2*>(cb_set + ((size_t)s * (1 << Cfg::B) + e) * Cfg::V);
#pragma unroll
                for (int i = 0; i < WORDS; ++i) held[s][i] = p[i];
            }
        }
    }

    __device__ __forceinline__ void fetch(int stage_unused, const __half2 (&src)[WORDS], int idx, Entry<Cfg::V>& e) const {
#pragma unroll
        for (int i = 0; i < WORDS; ++i) {
            uint32_t u = __shfl_sync(VQ_FULL_MASK, *reinterpret_cast<const uint32_t*>(&src[i]), idx & 31);
            e.h[i] = *reinterpret_cast<__half2*>(&u);
        }
    }
};

// Codebook access through the three tiers. `cb_set` points at this vector's codebook set in global memory
// ([R][2^B][V]); `smem_set` at its copy of the first N_SHARED entries per stage in shared memory
// ([R][N_SHARED][CB_COPIES][V]).
template <class Cfg>
__device__ __forceinline__ void vq_lookup(const RegTier<Cfg>& reg, int s, uint32_t idx, const __half* __restrict__ cb_set,
                                          const __half* smem_set, Entry<Cfg::V>& e) {
    constexpr int ENTRIES = 1 << Cfg::B;
    if constexpr (Cfg::N_REG > 0) {
        Entry<Cfg::V> r;
        reg.fetch(s, reg.held[s], (int)idx, r);
        if (idx < (uint32_t)Cfg::N_REG) {
            e = r;
            return;
        }
    }
    if constexpr (Cfg::N_SHARED >= ENTRIES && Cfg::CB_COPIES > 1) {
        // CB_COPIES > 1 (mma kernel, whole codebook or the k tile's set staged): the caller passes smem_set already
        // offset to copy lane % CB_COPIES of entry 0, so that the lanes of a load phase read different bank groups
        // whatever their entries, at one shift-add per lookup.
        constexpr int EB = 2 * Cfg::V;  // entry bytes
        static_assert(EB == 4 || EB == 8 || EB == 16, "codebook copies: 4-, 8- or 16-byte entries");
        const uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_set) +
                              ((uint32_t)s * Cfg::N_SHARED + idx) * (Cfg::CB_COPIES * EB);
        uint32_t u[4];
        if constexpr (EB == 16)
            asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(u[0]), "=r"(u[1]), "=r"(u[2]), "=r"(u[3]) : "r"(addr));
        else if constexpr (EB == 8)
            asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(u[0]), "=r"(u[1]) : "r"(addr));
        else
            asm volatile("ld.shared.u32 %0, [%1];" : "=r"(u[0]) : "r"(addr));
#pragma unroll
        for (int i = 0; i < Cfg::V / 2; ++i) e.h[i] = *reinterpret_cast<__half2*>(&u[i]);
    } else if constexpr (Cfg::N_SHARED >= ENTRIES) {
        vq_load_entry_shared<Cfg::V>(smem_set + ((size_t)s * Cfg::N_SHARED + idx) * Cfg::V, e);
    } else if constexpr (Cfg::N_SHARED > 0) {
        static_assert(Cfg::CB_COPIES == 1, "codebook copies need the whole codebook in shared memory");
        if (idx < (uint32_t)Cfg::N_SHARED)
            vq_load_entry_shared<Cfg::V>(smem_set + ((size_t)s * Cfg::N_SHARED + idx) * Cfg::V, e);
        else
            vq_load_entry_global<Cfg::V>(cb_set + ((size_t)s * ENTRIES + idx) * Cfg::V, e);
    } else {
        vq_load_entry_global<Cfg::V>(cb_set + ((size_t)s * ENTRIES + idx) * Cfg::V, e);
    }
}

#include "e8p_fast.cuh"

// E8P decode of both stages of a vector, scaled and summed in half2: w = d0 * ss0 + d1 * ss1 (pairs in natural
// coordinate order). ss0 is 1 for QuIP#-style weights, so the first product is skipped.
template <int R>
__device__ __forceinline__ void vq_decode_e8p_stages(uint32_t word, const uint32_t* abs_table, float ss0, float ss1, __half2 (&w)[4]) {
    vq_decode_e8p_h2(word & 0xffffu, abs_table, w);
    if (ss0 != 1.f) {
        const __half2 s0 = __float2half2_rn(ss0);
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = __hmul2(w[i], s0);
    }
    if constexpr (R > 1) {
        __half2 d1[4];
        vq_decode_e8p_h2(word >> 16, abs_table, d1);
        const __half2 s1 = __float2half2_rn(ss1);
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = __hfma2(d1[i], s1, w[i]);
    }
}

// E8P decode of vector j of a lane's chunk (R·16 bits a vector, j a compile-time constant after unrolling): two
// stages share one word (vq_decode_e8p_stages), one stage takes half a word. More stages run only on the E8P LUT GeMV
// (the planner rejects them here).
template <int R, int W>
__device__ __forceinline__ void vq_decode_e8p_vec(const uint32_t (&chunk)[W], int j, const uint32_t* abs_table, float ss0, float ss1,
                                                  __half2 (&w)[4]) {
    static_assert(R == 1 || R == 2, "one or two E8P stages");
    if constexpr (R == 2) {
        vq_decode_e8p_stages<2>(chunk[j], abs_table, ss0, ss1, w);
    } else {
        vq_decode_e8p_stages<1>(j % 2 ? chunk[j / 2] >> 16 : chunk[j / 2], abs_table, ss0, ss1, w);
    }
}

// Index of the codebook set for weight row `row` and input column `col` (tile scopes; 0 otherwise).
template <class Cfg>
__device__ __forceinline__ int vq_set_of(int row, int col, int cols) {
    if constexpr (Cfg::TILE_ROWS > 0) {
        const int tiles_per_row = (cols + Cfg::TILE_COLS - 1) / Cfg::TILE_COLS;
        return (row / Cfg::TILE_ROWS) * tiles_per_row + col / Cfg::TILE_COLS;
    } else {
        return 0;
    }
}
