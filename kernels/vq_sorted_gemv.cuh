// vq_sorted_gemv.cuh — batch-1 GeMV for one codebook too large for shared memory (aqlm-1x16: 65536 x 16 bytes).
//
// The codebook-centric dataflow taken to its end (crates/codegen/src/sorted.rs has the layout): block (c, p) keeps
// codebook chunk c (2^CHUNK_BITS entries of 8 halves) and the activations in shared memory, and walks the lists of
// its row part p: for each row, the words `code mod 2^CHUNK_BITS | group << CHUNK_BITS` of that row's vectors whose
// code falls in chunk c. Every lookup is then a shared-memory load instead of a random 32-byte L2 sector; the lists
// are ordered offline so that each aligned 8-word phase hits distinct banks for both loads.
//
// Warps own contiguous row ranges and take a row at a time with the whole warp (lane i: words i, i + 32, ...). The
// next row's ROWS_PER_WARP words per lane are loaded before the current row is computed, so one row's memory latency
// overlaps the previous row's work. Each row's partial sum goes to the fp32 workspace with one atomic; the finalize
// kernel scales and converts.
//
// Cfg: CHUNK_BITS, WARPS, ROWS_PER_WARP (= words per lane and row in flight).
#pragma once
#include "vq_common.cuh"

// "No word": all ones (the planner keeps groups below 2^(32 - CHUNK_BITS) - 1).
#define VQ_SORTED_NONE 0xffffffffu

// acc + <entry, x> of one 8-wide vector: four HFMA2. A lane accumulates only its few words of a row in fp16 (about
// k / 8 / chunks / 32 vectors, 4 at k = 8192); the row sum is taken in fp32.
__device__ __forceinline__ __half2 vq_sorted_fma(uint4 e, uint4 xv, __half2 acc) {
    const __half2* a = reinterpret_cast<const __half2*>(&e);
    const __half2* b = reinterpret_cast<const __half2*>(&xv);
    acc = __hfma2(a[0], b[0], acc);
    acc = __hfma2(a[1], b[1], acc);
    acc = __hfma2(a[2], b[2], acc);
    return __hfma2(a[3], b[3], acc);
}

// Lane's words of list [s, e), starting at the 32-aligned position at or below s (streamed: read once).
template <class Cfg>
__device__ __forceinline__ void vq_sorted_load(const uint32_t* __restrict__ words, uint32_t s, uint32_t e,
                                               uint32_t (&w)[Cfg::ROWS_PER_WARP]) {
    const uint32_t base = (s & ~31u) + (threadIdx.x & 31);
#pragma unroll
    for (int u = 0; u < Cfg::ROWS_PER_WARP; ++u) {
        const uint32_t i = base + 32u * u;
        w[u] = (i >= s && i < e) ? __ldcs(words + i) : VQ_SORTED_NONE;
    }
}

template <class Cfg>
__device__ __forceinline__ void vq_sorted_gemv_body(const uint32_t* __restrict__ words, const uint32_t* __restrict__ starts,
                                                    const __half* __restrict__ codebooks, const __half* __restrict__ x,
                                                    float* __restrict__ ws, int rows, int cols) {
    constexpr int U = Cfg::ROWS_PER_WARP;
    constexpr uint32_t ENTRIES = 1u << Cfg::CHUNK_BITS, MASK = ENTRIES - 1;
    extern __shared__ uint4 vq_sorted_smem[];
    uint4* cb = vq_sorted_smem;            // the chunk's entries
    uint4* xs = vq_sorted_smem + ENTRIES;  // the activations, one 16-byte word per group
    const int chunk = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    // This warp's rows: a contiguous range of the block's part.
    const int per_block = (rows + gridDim.y - 1) / gridDim.y;
    const int r0 = blockIdx.y * per_block, r1 = min(rows, r0 + per_block);
    const int per_warp = max(0, (r1 - r0 + Cfg::WARPS - 1) / Cfg::WARPS);
    const int w0 = r0 + warp * per_warp, w1 = min(r1, w0 + per_warp);
    const uint32_t* st = starts + (size_t)chunk * rows;

    // The first row's words are in flight while the chunk and the activations are staged.
    uint32_t w[U];
    uint32_t s = 0, e = 0;
    if (w0 < w1) {
        s = st[w0];
        e = st[w0 + 1];
        vq_sorted_load<Cfg>(words, s, e, w);
    }
    const uint4* cbg = reinterpret_cast<const uint4*>(codebooks) + (size_t)chunk * ENTRIES;
    for (uint32_t i = threadIdx.x; i < ENTRIES; i += blockDim.x) cb[i] = __ldg(cbg + i);
    const uint4* xg = reinterpret_cast<const uint4*>(x);
    for (int i = threadIdx.x; i < cols / 8; i += blockDim.x) xs[i] = __ldg(xg + i);
    __syncthreads();

    for (int r = w0; r < w1; ++r) {
        // Next row's words first (the next list starts where this one ends).
        uint32_t nw[U];
        uint32_t ne = e;
        if (r + 1 < w1) {
            ne = st[r + 2];
            vq_sorted_load<Cfg>(words, e, ne, nw);
        }
        __half2 acc2 = __float2half2_rn(0.f);
        const uint32_t base = s & ~31u;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (base + 32u * u >= e) break;  // warp-uniform
            if (w[u] != VQ_SORTED_NONE) acc2 = vq_sorted_fma(cb[w[u] & MASK], xs[w[u] >> Cfg::CHUNK_BITS], acc2);
        }
        // A list longer than the words in flight (rare by the planner's choice of U): the rest word by word.
        for (uint32_t i = base + 32u * U + lane; i < e; i += 32) {
            const uint32_t v = __ldcs(words + i);
            acc2 = vq_sorted_fma(cb[v & MASK], xs[v >> Cfg::CHUNK_BITS], acc2);
        }
        const float2 f = __half22float2(acc2);
        float acc = f.x + f.y;
#pragma unroll
        for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(VQ_FULL_MASK, acc, o);
        if (lane == 0 && e > s) atomicAdd(ws + r, acc);
        s = e;
        e = ne;
#pragma unroll
        for (int u = 0; u < U; ++u) w[u] = nw[u];
    }
}
