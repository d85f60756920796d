// vq_sorted_gemv.cuh — batch-1 GeMV for one codebook too large for shared memory (aqlm-1x16: 65536 x 16 bytes).
//
// The codebook-centric dataflow taken to its end (crates/codegen/src/sorted.rs has the layout): block (c, p) keeps
// codebook chunk c (2^CHUNK_BITS entries of 8 halves) and the activations in shared memory and reads only the codes
// that fall in chunk c, each as a word `code mod 2^CHUNK_BITS | group << CHUNK_BITS`. Every lookup is a shared-memory
// load instead of a random 32-byte L2 sector.
//
// Lane = row. Chunk c's words form a stream of tiles; a tile is 32 rows (one per lane, rows of similar list length
// next to each other) by L steps, and step s of a tile is one word per lane. Four steps (a "quad") are one 16-byte
// load per lane, 512 contiguous bytes per warp. A lane keeps its row's sum in a register for the whole tile: no
// per-row reduction, one atomic per lane and tile. Lanes whose row's list is shorter than the tile read padding words
// that point at zero activations (8 zero slots after the real ones, so padding, too, can take any bank).
//
// Each warp takes an even share of its chunk's quads, whatever the tile boundaries (a share may start or end inside a
// tile; both warps add into the same rows). The words of each step are ordered offline so that the 8 lanes of each
// shared-memory phase read 8 different entry slots and 8 different activation slots where the lists allow.
//
// Cfg: CHUNK_BITS, WARPS, ROWS_PER_WARP (= quads in flight per lane).
#pragma once
#include "vq_common.cuh"

// acc + <entry, x> of one 8-wide vector: four HFMA2.
__device__ __forceinline__ __half2 vq_sorted_fma(uint4 e, uint4 xv, __half2 acc) {
    const __half2* a = reinterpret_cast<const __half2*>(&e);
    const __half2* b = reinterpret_cast<const __half2*>(&xv);
    acc = __hfma2(a[0], b[0], acc);
    acc = __hfma2(a[1], b[1], acc);
    acc = __hfma2(a[2], b[2], acc);
    return __hfma2(a[3], b[3], acc);
}

// The four words of one quad: 32 products summed in fp16 (short enough), then added to the row's fp32 sum.
template <class Cfg>
__device__ __forceinline__ float vq_sorted_quad(const uint4* cb, const uint4* xs, uint4 w) {
    constexpr uint32_t MASK = (1u << Cfg::CHUNK_BITS) - 1;
    __half2 h = __float2half2_rn(0.f);
    h = vq_sorted_fma(cb[w.x & MASK], xs[w.x >> Cfg::CHUNK_BITS], h);
    h = vq_sorted_fma(cb[w.y & MASK], xs[w.y >> Cfg::CHUNK_BITS], h);
    h = vq_sorted_fma(cb[w.z & MASK], xs[w.z >> Cfg::CHUNK_BITS], h);
    h = vq_sorted_fma(cb[w.w & MASK], xs[w.w >> Cfg::CHUNK_BITS], h);
    const float2 f = __half22float2(h);
    return f.x + f.y;
}

// aux: the tiles' first quads, `chunks x (tiles + 1)` (global quad indices, the last entry of a chunk is its end), then
// each tile's rows, `chunks x tiles x 32` (all ones: no row).
template <class Cfg>
__device__ __forceinline__ void vq_sorted_gemv_body(const uint4* __restrict__ words, const uint32_t* __restrict__ aux,
                                                    const __half* __restrict__ codebooks, const __half* __restrict__ x,
                                                    float* __restrict__ ws, int rows, int cols) {
    constexpr int D = Cfg::ROWS_PER_WARP;
    constexpr uint32_t ENTRIES = 1u << Cfg::CHUNK_BITS;
    extern __shared__ uint4 vq_sorted_smem[];
    uint4* cb = vq_sorted_smem;            // the chunk's entries
    uint4* xs = vq_sorted_smem + ENTRIES;  // the activations, one 16-byte word per group, then 8 zero words
    const int chunk = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t tiles = (rows + 31) / 32;
    const uint32_t* tile_start = aux + (size_t)chunk * (tiles + 1);
    const uint32_t* tile_rows = aux + (size_t)gridDim.x * (tiles + 1) + (size_t)chunk * tiles * 32;

    // This warp's share of the chunk's quads.
    const uint32_t c0 = __ldg(tile_start), len = __ldg(tile_start + tiles) - c0;
    const uint32_t shares = gridDim.y * Cfg::WARPS, share = blockIdx.y * Cfg::WARPS + warp;
    const uint32_t q0 = c0 + (uint32_t)((uint64_t)len * share / shares);
    const uint32_t q1 = c0 + (uint32_t)((uint64_t)len * (share + 1) / shares);

    // The first quads are in flight while the chunk and the activations are staged.
    uint4 buf[D];
#pragma unroll
    for (int d = 0; d < D; ++d)
        buf[d] = q0 + d < q1 ? __ldcs(words + (size_t)(q0 + d) * 32 + lane) : make_uint4(0, 0, 0, 0);
    // The tile holding q0: the last one starting at or before it.
    uint32_t t = 0;
    if (q0 < q1) {
        uint32_t hi = tiles;
        while (hi - t > 1) {
            const uint32_t mid = (t + hi) / 2;
            if (__ldg(tile_start + mid) <= q0) t = mid; else hi = mid;
        }
    }
    uint32_t t_end = __ldg(tile_start + t + 1);

    const uint4* cbg = reinterpret_cast<const uint4*>(codebooks) + (size_t)chunk * ENTRIES;
    for (uint32_t i = threadIdx.x; i < ENTRIES; i += blockDim.x) cb[i] = __ldg(cbg + i);
    const uint4* xg = reinterpret_cast<const uint4*>(x);
    const int groups = cols / 8;
    for (int i = threadIdx.x; i < groups + 8; i += blockDim.x) xs[i] = i < groups ? __ldg(xg + i) : make_uint4(0, 0, 0, 0);
    __syncthreads();
    if (q0 >= q1) return;

    float acc = 0.f;
    for (uint32_t q = q0; q < q1; q += D) {
#pragma unroll
        for (int d = 0; d < D; ++d) {
            const uint32_t qd = q + d;
            if (qd >= q1) break;  // warp-uniform
            // Entering the next tile (a tile with no quads in this chunk is passed over): the last one's sums out.
            while (qd == t_end) {
                const uint32_t row = __ldg(tile_rows + t * 32 + lane);
                if (row < (uint32_t)rows) atomicAdd(ws + row, acc);
                acc = 0.f;
                ++t;
                t_end = __ldg(tile_start + t + 1);
            }
            const uint4 w = buf[d];
            if (qd + D < q1) buf[d] = __ldcs(words + (size_t)(qd + D) * 32 + lane);
            acc += vq_sorted_quad<Cfg>(cb, xs, w);
        }
    }
    const uint32_t row = __ldg(tile_rows + t * 32 + lane);
    if (row < (uint32_t)rows) atomicAdd(ws + row, acc);
}
